"""What runs in (or stands in for) the GPU pods: vLLM entrypoint, NVML exporter, simulated fleet."""
