"""Simulated GPU fleet: vLLM engine model, replicas, DCGM metrics, router, traces, load.

- engine.py, presets.py: one vLLM replica as a discrete-time model (continuous batching, paged
  KV cache, preemption, cold start), calibrated presets (DeepSeek-R1 on 8xH100/8xH200, 7B).
- traces.py: the Azure LLM trace (CC BY 4.0, keep `AZURE_ATTRIBUTION`), BurstGPT, synthetic.
- replica.py: a vLLM-compatible HTTP server (OpenAI API, SSE streaming, vLLM 0.32 /metrics)
  driven by the engine model in real time.
- fleet.py: plays the container runtime and GPUs of a local cluster's engine pods (replica per
  pod on 127.x, model loading, engine-ready/drained annotations, dcgm-exporter per node).
- dcgm.py: dcgm-exporter metric names and labels, calibrated on real H100 NVML readings.
- router.py: least-outstanding-requests router over a Service's EndpointSlices.
- vllmrouter.py, apiproxy.py: router pods played by the real vllm-router binary, which reads
  pods through an API proxy that maps pod IPs to their sim addresses.
- loadgen.py: trace replay with per-request TTFT/TPOT/latency and a JSON summary.
- faults.py: slow / erroring / crashing replicas, zones going away.
Command line: `python -m testbed.sim fleet|router|load|fault|zone --help`.

Only the engine model is imported here; the I/O modules are imported where they are used.
"""

from .engine import (
    EngineModel,
    EngineStats,
    GpuStats,
    RequestRecord,
    SimRequest,
    TokenEvent,
)
from .presets import (
    GPUS,
    H100_SXM,
    H200_SXM,
    MODELS,
    PRESETS,
    EnginePreset,
    GpuSpec,
    ModelSpec,
    make_preset,
    preset,
)

__all__ = [
    "GPUS",
    "H100_SXM",
    "H200_SXM",
    "MODELS",
    "PRESETS",
    "EngineModel",
    "EnginePreset",
    "EngineStats",
    "GpuSpec",
    "GpuStats",
    "ModelSpec",
    "RequestRecord",
    "SimRequest",
    "TokenEvent",
    "make_preset",
    "preset",
]
