"""Benchmarks of deepseek-operator (see bench/README.md)."""
