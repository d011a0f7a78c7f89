"""PromQL shared by the dashboards and the rules: template-variable filters and the joins that
put a DeepSeekDeployment's name on series that only know the pod.

Engine series (vLLM) carry the Prometheus target labels namespace, pod, dsd, colour, mode and
node (deepseek_operator.labels); DCGM series carry gpu, UUID, modelName, Hostname, namespace,
pod and container; the operator's own series carry namespace and dsd (scraped with
honor_labels, so `namespace` is the DeepSeekDeployment's, not the operator pod's).
"""

from __future__ import annotations

import re

from deepseek_operator.labels import PROM_COLOUR, PROM_DSD, PROM_NAMESPACE, PROM_POD
from deepseek_operator.signals import Signal, promql

# Dashboard template variables. `$deployment` selects on the `dsd` label.
NS_VAR = "$namespace"
DSD_VAR = "$deployment"
NODE_VAR = "$node"
RATE_VAR = "$__rate_interval"

# Label matchers of the dashboard variables, for engine and operator series.
FILT = f'{PROM_NAMESPACE}=~"{NS_VAR}",{PROM_DSD}=~"{DSD_VAR}"'

OPERATOR_JOB = "deepseek-operator"  # the job label the chart's ServiceMonitor gives the operator

# The vLLM histogram behind the operator's tpotP99 signal (and spec.scaling.slo.tpotP99Seconds),
# taken from signals.py so that panels and alerts measure TPOT as the autoscaler does.
_TPOT = re.search(r"rate\((vllm:\w+)_bucket", promql(Signal.TPOT_P99))
assert _TPOT is not None, "signals.py's TPOT_P99 is not a histogram_quantile over vllm buckets"
TPOT_HISTOGRAM = _TPOT[1]
TPOT_P99_RECORD = f"namespace_dsd:vllm_{TPOT_HISTOGRAM.removeprefix('vllm:')}:p99_rate5m"

# Value of the `slo` label of deepseek_operator_slo_target.
SLO_TTFT = "ttft_p99_seconds"
SLO_TPOT = "tpot_p99_seconds"
SLO_ERROR_RATE = "error_rate"


def sel(*matchers: str) -> str:
    """`{a,b}` from label matchers, empty ones dropped; `` when none."""
    inner = ",".join(m for m in matchers if m)
    return "{" + inner + "}" if inner else ""


def slo_target(slo: str, filt: str = "") -> str:
    """A DeepSeekDeployment's own objective, one series per (namespace, dsd). `max` because two
    operator replicas may both have exported it around a leader change."""
    matcher = f'slo="{slo}"'
    return (
        f"max by ({PROM_NAMESPACE}, {PROM_DSD}) (deepseek_operator_slo_target{sel(matcher, filt)})"
    )


def operator_gauge(name: str, filt: str = "", by: tuple[str, ...] = ()) -> str:
    """An operator gauge per (namespace, dsd[, by...]), deduplicated across replicas."""
    labels = ", ".join((PROM_NAMESPACE, PROM_DSD, *by))
    return f"max by ({labels}) ({name}{sel(filt)})"


def engine_pods(filt: str) -> str:
    """(namespace, pod) -> (dsd, colour) for the engine pods that match `filt`; joins the
    DeepSeekDeployment's name onto DCGM series, which only know the pod."""
    return (
        f"group by ({PROM_NAMESPACE}, {PROM_POD}, {PROM_DSD}, {PROM_COLOUR}) "
        f"(vllm:num_requests_running{sel(filt)})"
    )


def on_engine_pods(expr: str, filt: str) -> str:
    """`expr` (a DCGM series) restricted to the GPUs of matching engine pods, with dsd and
    colour attached."""
    return (
        f"{expr} * on ({PROM_NAMESPACE}, {PROM_POD}) group_left ({PROM_DSD}, {PROM_COLOUR}) "
        f"{engine_pods(filt)}"
    )


def latency_quantile(metric: str, q: float, filt: str, window: str, by: str) -> str:
    """histogram_quantile over a vLLM latency histogram, aggregated by `by`."""
    return (
        f"histogram_quantile({q:g}, sum by ({by}, le) (rate({metric}_bucket{sel(filt)}[{window}])))"
    )
