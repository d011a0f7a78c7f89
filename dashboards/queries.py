"""PromQL shared by the dashboards and the rules: template-variable filters and the joins that
put a DeepSeekDeployment's name on series that only know the pod.

Engine series (vLLM) carry the Prometheus target labels namespace, pod, dsd, colour, mode and
node (deepseek_operator.labels); router series (vllm-router, spec.router) namespace, pod, dsd
and component (the pool: router, or router-batch for the batch pool); DCGM series carry gpu,
UUID, modelName, Hostname, namespace, pod and container; the operator's own series carry
namespace and dsd (scraped with honor_labels, so `namespace` is the DeepSeekDeployment's, not
the operator pod's).
"""

from __future__ import annotations

import re

from deepseek_operator.labels import (
    PROM_COLOUR,
    PROM_COMPONENT,
    PROM_DSD,
    PROM_NAMESPACE,
    PROM_POD,
    ROUTER_COMPONENT,
)
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
SLO_ATTAINMENT = "attainment"


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


# --- the router (vllm-router 0.1.17, spec.router) -----------------------------------------------
# What each family counts, measured against the real binary: docs/resource.md, "Router metrics".

ROUTER_POOL = f"{PROM_NAMESPACE}, {PROM_DSD}, {PROM_COMPONENT}"  # one router Deployment
ROUTER_POD = f"{ROUTER_POOL}, {PROM_POD}"
MAIN_POOL = f'{PROM_COMPONENT}="{ROUTER_COMPONENT}"'  # the pool behind the Service <name> (P0)
ROUTER_LIMIT = "deepseek_operator_router_limit"


def router_limit(limit: str, filt: str = "") -> str:
    """A pool's admission limit per router pod (the operator's gauge), one series per pool."""
    matcher = f'limit="{limit}"'
    return f"max by ({ROUTER_POOL}) ({ROUTER_LIMIT}{sel(matcher, filt)})"


def router_rate(metric: str, filt: str, window: str, by: str = ROUTER_POOL, match: str = "") -> str:
    return f"sum by ({by}) (rate({metric}{sel(match, filt)}[{window}]))"


def router_zero(filt: str, by: str = ROUTER_POOL) -> str:
    """0 for every router pool (or pod) that reports: vllm-router creates a counter's series at
    its first increment, so a rate of failures that never happened would be no data, not 0."""
    return f"0 * max by ({by}) (vllm_router_active_workers{sel(filt)})"


def router_rate_or_zero(metric: str, filt: str, window: str, match: str = "") -> str:
    return f"{router_rate(metric, filt, window, match=match)}\nor\n{router_zero(filt)}"


# An engine's circuit is open (1) or half-open (2) in a router pod, and the engine failed an
# attempt there within this window: vllm-router keeps the last state of an engine it no longer
# routes to (a deleted pod) for the router pod's life, and a still-sick engine is tried again
# (and fails) every circuitBreaker.timeoutSeconds (30 s by default) while requests arrive.
EJECTED_WINDOW = "10m"


def router_ejected(filt: str = "") -> str:
    """Per router pod and engine (worker), the circuit state of the engines taken out that
    failed within EJECTED_WINDOW. The failure counter of an engine is created at its first
    failure (already at 5 when a scrape first sees it, on the local cluster): a series younger
    than the window counts as failures within it, as increase() sees no rise in it."""
    failure = 'outcome="failure"'
    failures = f"vllm_router_cb_outcomes_total{sel(failure, filt)}"
    return (
        f"\n  vllm_router_cb_state{sel(filt)} > 0\n"
        f"  and on ({PROM_NAMESPACE}, {PROM_POD}, worker)\n"
        f"  (\n    increase({failures}[{EJECTED_WINDOW}]) > 0\n"
        f"    or ({failures} unless {failures} offset {EJECTED_WINDOW})\n  )\n"
    )
