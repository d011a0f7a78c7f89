"""Thin I/O adapters: Kubernetes writes, Prometheus queries, the operator's own /metrics."""
