"""GPUs: DCGM-exporter metrics per deployment, per GPU (with the pod using it) and per node."""

from __future__ import annotations

from deepseek_operator.signals import GROUP_BY, Signal, promql

from .grafana import Dashboard, Panel, QueryVariable, Row, Target, Threshold
from .queries import FILT, NODE_VAR, RATE_VAR, on_engine_pods, sel

NODE = f'Hostname=~"{NODE_VAR}"'
PER_GPU = "{{Hostname}} GPU {{gpu}} {{namespace}}/{{pod}}"
BY_COLOUR = "{{namespace}}/{{dsd}} {{colour}}"


def _gpu(metric: str) -> str:
    """A DCGM metric on the GPUs of the selected deployments' pods (dsd/colour attached)."""
    return on_engine_pods(f"{metric}{sel(NODE)}", FILT)


def _per_deployment(metric: str, agg: str = "avg") -> Target:
    return Target(f"{agg} by ({GROUP_BY}) ({_gpu(metric)})", BY_COLOUR)


TEMP = (Threshold(None, "green"), Threshold(80, "orange"), Threshold(85, "red"))

VARIABLES = (
    QueryVariable("namespace", "Namespace", "label_values(vllm:num_requests_running, namespace)"),
    QueryVariable(
        "deployment",
        "DeepSeekDeployment",
        'label_values(vllm:num_requests_running{namespace=~"$namespace"}, dsd)',
    ),
    QueryVariable("node", "Node", "label_values(DCGM_FI_DEV_GPU_UTIL, Hostname)"),
)

GPUS = Dashboard(
    uid="deepseek-gpus",
    title="DeepSeek / GPUs",
    description="DCGM-exporter metrics of the GPUs that serve DeepSeekDeployments: per "
    "deployment, per GPU with the pod using it, and per node (including idle GPUs). "
    "DCGM_FI_DEV_GPU_UTIL is the share of time any kernel ran, not the share of capacity "
    "used: a decoding engine keeps it near 100% at any batch size; SM activity "
    "(DCGM_FI_PROF_GR_ENGINE_ACTIVE), power and the engine's own queue and KV-cache say more.",
    tags=("deepseek", "gpu", "dcgm"),
    variables=VARIABLES,
    links=(("Fleet overview", "deepseek-fleet"), ("Operator", "deepseek-operator")),
    items=(
        Row("Per deployment"),
        Panel(
            "GPU utilization",
            "Mean DCGM_FI_DEV_GPU_UTIL over the deployment's GPUs (the gpuUtilization signal).",
            (Target(promql(Signal.GPU_UTILIZATION, FILT), BY_COLOUR),),
            unit="percentunit",
            width=8,
            min=0,
            max=1,
        ),
        Panel(
            "GPU memory used",
            "Mean framebuffer used / (used + free) over the deployment's GPUs "
            "(the gpuMemoryUsed signal). vLLM reserves gpu-memory-utilization of it at start.",
            (Target(promql(Signal.GPU_MEMORY_USED, FILT), BY_COLOUR),),
            unit="percentunit",
            width=8,
            min=0,
            max=1,
        ),
        Panel(
            "Power draw",
            "Sum of DCGM_FI_DEV_POWER_USAGE over the deployment's GPUs.",
            (_per_deployment("DCGM_FI_DEV_POWER_USAGE", "sum"),),
            unit="watt",
            width=8,
        ),
        Row("Per GPU (with the pod using it)"),
        Panel(
            "GPU utilization per GPU",
            "DCGM_FI_DEV_GPU_UTIL (0-100) of each GPU of the selected deployments.",
            (Target(_gpu("DCGM_FI_DEV_GPU_UTIL"), PER_GPU),),
            unit="percent",
            width=12,
            min=0,
            max=100,
        ),
        Panel(
            "SM activity per GPU",
            "DCGM_FI_PROF_GR_ENGINE_ACTIVE: share of time the graphics/compute engine was busy.",
            (Target(_gpu("DCGM_FI_PROF_GR_ENGINE_ACTIVE"), PER_GPU),),
            unit="percentunit",
            width=12,
            min=0,
            max=1,
        ),
        Panel(
            "Framebuffer used per GPU",
            "DCGM_FI_DEV_FB_USED (MiB).",
            (Target(_gpu("DCGM_FI_DEV_FB_USED"), PER_GPU),),
            unit="mbytes",
            width=12,
        ),
        Panel(
            "Framebuffer free per GPU",
            "DCGM_FI_DEV_FB_FREE (MiB).",
            (Target(_gpu("DCGM_FI_DEV_FB_FREE"), PER_GPU),),
            unit="mbytes",
            width=12,
        ),
        Panel(
            "Power per GPU",
            "DCGM_FI_DEV_POWER_USAGE (W). An H100 SXM draws ~75 W idle and up to its 700 W cap.",
            (Target(_gpu("DCGM_FI_DEV_POWER_USAGE"), PER_GPU),),
            unit="watt",
            width=12,
        ),
        Panel(
            "Temperature per GPU",
            "DCGM_FI_DEV_GPU_TEMP (C). The GPUTemperatureHigh alert warns above 85 C.",
            (Target(_gpu("DCGM_FI_DEV_GPU_TEMP"), PER_GPU),),
            unit="celsius",
            width=12,
            thresholds=TEMP,
        ),
        Row("Per node (all GPUs, idle ones included)"),
        Panel(
            "XID errors",
            "Last XID error code of each GPU (DCGM_FI_DEV_XID_ERRORS; 0 = none) over the "
            "interval. Any non-zero value is an alert; see the GPUXidError runbook for codes.",
            (
                Target(
                    f"max by (Hostname, gpu, UUID, namespace, pod) "
                    f"(max_over_time(DCGM_FI_DEV_XID_ERRORS{sel(NODE)}[{RATE_VAR}]))",
                    PER_GPU,
                ),
            ),
            width=12,
            decimals=0,
            thresholds=(Threshold(None, "green"), Threshold(1, "red")),
        ),
        Panel(
            "GPU utilization per node",
            "Mean DCGM_FI_DEV_GPU_UTIL over every GPU of the node, allocated or not.",
            (
                Target(
                    f"avg by (Hostname) (DCGM_FI_DEV_GPU_UTIL{sel(NODE)})",
                    "{{Hostname}}",
                ),
            ),
            unit="percent",
            width=12,
            min=0,
            max=100,
        ),
        Panel(
            "GPUs per node by model",
            "How many GPUs each node reports, by modelName.",
            (
                Target(
                    f"count by (Hostname, modelName) (DCGM_FI_DEV_GPU_TEMP{sel(NODE)})",
                    "{{Hostname}} {{modelName}}",
                ),
            ),
            width=12,
            decimals=0,
        ),
        Panel(
            "Hottest GPU per node",
            "Highest DCGM_FI_DEV_GPU_TEMP on the node.",
            (
                Target(
                    f"max by (Hostname) (DCGM_FI_DEV_GPU_TEMP{sel(NODE)})",
                    "{{Hostname}}",
                ),
            ),
            unit="celsius",
            width=12,
            thresholds=TEMP,
        ),
    ),
)
