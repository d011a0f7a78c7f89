"""deepseek-operator: keeps DeepSeek models served on vLLM, fast and without outages."""

__version__ = "0.2.0"
