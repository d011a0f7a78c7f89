"""Prometheus recording and alerting rules for DeepSeekDeployments, as code.

Recording rules are named `level:metric:operations` (the aggregation labels, the metric, the
operations, newest first). Alerts carry `severity` and the annotations `summary`,
`description` and `runbook_url` (docs/runbooks/<alert>.md). Each alert also lists `probes`:
the expressions under its threshold, which must return data on a running fleet; the e2e test
runs them against the local cluster's Prometheus (an alert that is silent because a metric
is misspelt would otherwise look healthy).

SLO alerts follow the Google SRE workbook's multi-window, multi-burn-rate recipe (chapter
"Alerting on SLOs", 30-day budget): page when 2% of the budget goes in 1 hour (burn 14.4, 1h
and 5m windows) or 5% in 6 hours (burn 6, 6h and 30m); open a ticket when 10% goes in 3 days
(burn 1, 3d and 6h) or in 1 day (burn 3, 1d and 2h). Two SLIs per DeepSeekDeployment, each
against its own objectives (deepseek_operator_slo_target):
- TTFT: a request is bad when its time to first token exceeds spec.scaling.slo.ttftP99Seconds;
  a p99 objective allows 1% bad requests.
- Errors: 5xx completion responses; spec.scaling.slo.maxErrorRate is the budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from deepseek_operator.labels import PROM_COLOUR, PROM_DSD, PROM_NAMESPACE
from deepseek_operator.signals import (
    COMPLETION_HANDLERS,
    GATE_ABORTED,
    GATE_REFUSED,
    Signal,
    promql,
)

from .queries import (
    EJECTED_WINDOW,
    MAIN_POOL,
    OPERATOR_JOB,
    ROUTER_LIMIT,
    ROUTER_POD,
    ROUTER_POOL,
    SLO_ATTAINMENT,
    SLO_ERROR_RATE,
    SLO_TPOT,
    SLO_TTFT,
    TPOT_HISTOGRAM,
    TPOT_P99_RECORD,
    router_ejected,
    router_limit,
    sel,
)

RUNBOOK_BASE = "https://github.com/deepseek-operator/deepseek-operator/blob/main/docs/runbooks"

Severity = Literal["critical", "warning", "info"]

NS_DSD = f"{PROM_NAMESPACE}, {PROM_DSD}"
NS_DSD_COLOUR = f"{PROM_NAMESPACE}, {PROM_DSD}, {PROM_COLOUR}"

# vLLM 0.32's bucket boundaries of vllm:time_to_first_token_seconds (tests check them against
# the real server's exposition in shared/reference).
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
TTFT_BUDGET = 0.01  # a p99 objective: 1% of requests may be slower than the SLO

# (long window, short window, burn rate, severity, for)
BURN_WINDOWS: tuple[tuple[str, str, float, Severity], ...] = (
    ("1h", "5m", 14.4, "critical"),
    ("6h", "30m", 6.0, "critical"),
    ("1d", "2h", 3.0, "warning"),
    ("3d", "6h", 1.0, "warning"),
)
SLI_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
FOR_BY_SEVERITY = {"critical": "2m", "warning": "15m"}

KV_CACHE_SATURATED = 0.9
QUEUE_PER_POD = 4.0  # twice the default spec.scaling.targets.queueDepthPerReplica
GPU_TEMP_WARNING = 85.0
GPU_TEMP_CRITICAL = 90.0
# XIDs after which the GPU needs a reset or replacement (NVIDIA's XID catalogue): double-bit
# ECC (48), row-remapping failure (64), NVLink (74), fallen off the bus (79), high single-bit
# ECC rate (92), contained/uncontained ECC (94, 95), GSP timeouts/errors (119, 120).
XID_FATAL = (48, 64, 74, 79, 92, 94, 95, 119, 120)
NOT_RECONCILING_SECONDS = 600  # the reconcile loop resyncs every 60 s
ROLLOUT_STUCK_FOR = "90m"  # default spec.rollout.readyTimeoutSeconds (1h) + analysis + margin


@dataclass(frozen=True)
class Recording:
    record: str
    expr: str

    def to_yaml(self) -> dict[str, object]:
        return {"record": self.record, "expr": self.expr}


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    severity: Severity
    summary: str
    description: str
    probes: tuple[str, ...]
    for_: str | None = None

    @property
    def runbook_url(self) -> str:
        return f"{RUNBOOK_BASE}/{self.name}.md"

    def to_yaml(self) -> dict[str, object]:
        out: dict[str, object] = {"alert": self.name, "expr": self.expr}
        if self.for_:
            out["for"] = self.for_
        out["labels"] = {"severity": self.severity}
        out["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": self.runbook_url,
        }
        return out


@dataclass(frozen=True)
class Group:
    name: str
    file: str  # dashboards/generated/rules/<file>.yaml
    rules: tuple[Recording | Alert, ...] = field(default=())

    def to_yaml(self) -> dict[str, object]:
        return {"name": self.name, "rules": [r.to_yaml() for r in self.rules]}


def _le_matcher(bound: float) -> str:
    """`le` as a client exposes it ("1.0") or as Prometheus 3 normalises it ("1")."""
    forms = {repr(float(bound)), f"{bound:g}"}
    return "le=~`" + "|".join(re.escape(f) for f in sorted(forms)) + "`"


STATUS_5XX = 'status="5xx"'
WHO = "DeepSeekDeployment {{ $labels.namespace }}/{{ $labels.dsd }}"
WHO_COLOUR = WHO + " ({{ $labels.colour }})"
GPU = "GPU {{ $labels.gpu }} ({{ $labels.UUID }}) on {{ $labels.Hostname }}"

# --- SLIs ----------------------------------------------------------------------------------

SLO_TARGETS = "namespace_dsd_slo:deepseek_operator_slo_target:max"
TTFT_BUCKET_RATE = "namespace_dsd_le:vllm_time_to_first_token_seconds_bucket:rate5m"
TTFT_COUNT_RATE = "namespace_dsd:vllm_time_to_first_token_seconds_count:rate5m"
TTFT_GOOD_RATE = "namespace_dsd:vllm_time_to_first_token_seconds_within_slo:rate5m"
REQUESTS_RATE = "namespace_dsd:vllm_http_requests:rate5m"
ERRORS_RATE = "namespace_dsd:vllm_http_requests_errors:rate5m"


def ttft_violation(window: str) -> str:
    return f"namespace_dsd:vllm_ttft_slo_violation:ratio_rate{window}"


def error_ratio(window: str) -> str:
    return f"namespace_dsd:vllm_http_requests_errors:ratio_rate{window}"


def slo(name: str) -> str:
    return f'{SLO_TARGETS}{{slo="{name}"}}'


def _ttft_within_slo() -> str:
    """Requests per second whose TTFT was within the deployment's SLO: for each deployment, the
    rate of the largest histogram bucket at or below its ttftP99Seconds. PromQL cannot turn a
    gauge into a label value, so each bucket is a clause selected by comparing the gauge."""
    clauses = []
    for i, bound in enumerate(TTFT_BUCKETS):
        upper = f" < {TTFT_BUCKETS[i + 1]:g}" if i + 1 < len(TTFT_BUCKETS) else ""
        clauses.append(
            f"{TTFT_BUCKET_RATE}{{{_le_matcher(bound)}}} and on ({NS_DSD}) "
            f"({slo(SLO_TTFT)} >= {bound:g}{upper})"
        )
    return f"sum by ({NS_DSD}) (\n  " + "\n  or ".join(clauses) + "\n)"


def _window_ratio(num: str, den: str, window: str) -> str:
    if window == "5m":
        return f"{num} / {den}"
    # Ratio of summed 5m rates: weighs each moment by its traffic, like a ratio of increases,
    # at a fraction of the cost of rate() over days of raw histogram buckets.
    return f"sum_over_time({num}[{window}]) / sum_over_time({den}[{window}])"


SLO_RECORDING = Group(
    name="deepseek-slo.rules",
    file="deepseek-slo",
    rules=(
        Recording(SLO_TARGETS, f"max by ({NS_DSD}, slo) (deepseek_operator_slo_target)"),
        Recording(
            TTFT_BUCKET_RATE,
            f"sum by ({NS_DSD}, le) (rate(vllm:time_to_first_token_seconds_bucket[5m]))",
        ),
        Recording(
            TTFT_COUNT_RATE,
            f"sum by ({NS_DSD}) (rate(vllm:time_to_first_token_seconds_count[5m]))",
        ),
        Recording(TTFT_GOOD_RATE, _ttft_within_slo()),
        *(
            Recording(
                ttft_violation(w),
                "1 - (" + _window_ratio(TTFT_GOOD_RATE, TTFT_COUNT_RATE, w) + ")",
            )
            for w in SLI_WINDOWS
        ),
        # The engine pods' admission gate answers 503 itself: a refused request never reached
        # vLLM (one more request, failed), an aborted stream did (vLLM counted it, as 200)
        Recording(
            REQUESTS_RATE,
            f"sum by ({NS_DSD}) (rate(http_requests_total{sel(COMPLETION_HANDLERS)}[5m]))\n"
            f"+ (\n  sum by ({NS_DSD}) (rate({GATE_REFUSED}[5m]))\n  or 0 * sum by ({NS_DSD}) "
            f"(rate(http_requests_total{sel(COMPLETION_HANDLERS)}[5m]))\n)",
        ),
        Recording(
            ERRORS_RATE,
            f"(\n  sum by ({NS_DSD}) "
            f"(rate(http_requests_total{sel(COMPLETION_HANDLERS, STATUS_5XX)}[5m]))\n"
            f"  or 0 * {REQUESTS_RATE}\n)\n"
            f"+ (\n  sum by ({NS_DSD}) (rate({GATE_REFUSED}[5m]))\n"
            f"  + sum by ({NS_DSD}) (rate({GATE_ABORTED}[5m]))\n  or 0 * {REQUESTS_RATE}\n)",
        ),
        *(
            Recording(error_ratio(w), _window_ratio(ERRORS_RATE, REQUESTS_RATE, w))
            for w in SLI_WINDOWS
        ),
        Recording(
            "namespace_dsd:vllm_time_to_first_token_seconds:p99_rate5m",
            f"histogram_quantile(0.99, sum by ({NS_DSD}, le) "
            "(rate(vllm:time_to_first_token_seconds_bucket[5m])))",
        ),
        Recording(
            TPOT_P99_RECORD,
            f"histogram_quantile(0.99, sum by ({NS_DSD}, le) (rate({TPOT_HISTOGRAM}_bucket[5m])))",
        ),
    ),
)


def _burn(sli: str, budget: Callable[[float], str], severity: Severity) -> str:
    parts = []
    for long, short, rate, sev in BURN_WINDOWS:
        if sev != severity:
            continue
        parts.append(
            f"(\n  {sli.format(w=long)} > {budget(rate)}\n"
            f"and\n  {sli.format(w=short)} > {budget(rate)}\n)"
        )
    return "\nor\n".join(parts)


BURN_SEVERITIES: tuple[tuple[Severity, str, str], ...] = (
    ("critical", "fast", "2% of its 30-day error budget in an hour or 5% in 6 hours"),
    ("warning", "steadily", "10% of its 30-day error budget in a day or in 3 days"),
)


def _burn_alerts(
    name: str, sli: str, budget: Callable[[float], str], what: str, probes: tuple[str, ...]
) -> tuple[Alert, ...]:
    return tuple(
        Alert(
            name=name,
            expr=_burn(sli, budget, severity),
            for_=FOR_BY_SEVERITY[severity],
            severity=severity,
            summary=f"{WHO} burns its {what} error budget {speed}.",
            description=(
                f"{{{{ $value | humanizePercentage }}}} of requests {what_description(what)} "
                f"over the long window; at this rate the deployment spends {horizon}."
            ),
            probes=probes,
        )
        for severity, speed, horizon in BURN_SEVERITIES
    )


def what_description(what: str) -> str:
    return {
        "TTFT": "waited longer than the TTFT SLO (spec.scaling.slo.ttftP99Seconds) for a first "
        "token",
        "error-rate": "failed with a 5xx",
    }[what]


SLO_MET_FALSE = 'deepseek_operator_condition{type="SLOMet",status="False"}'


def _attainment_target() -> str:
    """The alerted deployment's spec.scaling.slo.attainment, read by the annotation's template
    (an alert's value is one number: here the measured attainment)."""
    series = f'{SLO_TARGETS}{{slo="{SLO_ATTAINMENT}",{PROM_NAMESPACE}="%s",{PROM_DSD}="%s"}}'
    return (
        f"{{{{ with printf `{series}` $labels.{PROM_NAMESPACE} $labels.{PROM_DSD} | query }}}}"
        "{{ . | first | value | humanizePercentage }}{{ else }}(not exported){{ end }}"
    )


TTFT_SLI = "namespace_dsd:vllm_ttft_slo_violation:ratio_rate{w}"
ERROR_SLI = "namespace_dsd:vllm_http_requests_errors:ratio_rate{w}"

SLO_ALERTS = Group(
    name="deepseek-slo.alerts",
    file="deepseek-slo",
    rules=(
        *_burn_alerts(
            "DeepSeekTTFTBudgetBurn",
            TTFT_SLI,
            lambda rate: f"({rate:g} * {TTFT_BUDGET:g})",
            "TTFT",
            probes=tuple(ttft_violation(w) for w in SLI_WINDOWS),
        ),
        *_burn_alerts(
            "DeepSeekErrorBudgetBurn",
            ERROR_SLI,
            lambda rate: f"on ({NS_DSD}) ({rate:g} * {slo(SLO_ERROR_RATE)})",
            "error-rate",
            probes=(*(error_ratio(w) for w in SLI_WINDOWS), slo(SLO_ERROR_RATE)),
        ),
        Alert(
            name="DeepSeekAtMaxReplicasBreachingSLO",
            expr=(
                f"(\n  max by ({NS_DSD}) (deepseek_operator_desired_replicas)\n"
                f"  >= on ({NS_DSD}) max by ({NS_DSD}) (deepseek_operator_max_replicas)\n)\n"
                f"and on ({NS_DSD})\n(\n"
                f"  namespace_dsd:vllm_time_to_first_token_seconds:p99_rate5m "
                f"> on ({NS_DSD}) {slo(SLO_TTFT)}\n"
                f"  or {TPOT_P99_RECORD} "
                f"> on ({NS_DSD}) {slo(SLO_TPOT)}\n"
                f"  or {error_ratio('5m')} > on ({NS_DSD}) {slo(SLO_ERROR_RATE)}\n)"
            ),
            for_="15m",
            severity="warning",
            summary=f"{WHO} runs at spec.scaling.maxReplicas and still misses its SLO.",
            description=(
                "The autoscaler has asked for the maximum number of replicas for 15 minutes "
                "while TTFT p99, TPOT p99 or the error ratio is above the deployment's SLO: it "
                "cannot add capacity. Raise maxReplicas (if GPUs are free), move down the "
                "quantization ladder, or shed load."
            ),
            probes=(
                "deepseek_operator_desired_replicas",
                "deepseek_operator_max_replicas",
                "namespace_dsd:vllm_time_to_first_token_seconds:p99_rate5m",
                TPOT_P99_RECORD,
                error_ratio("5m"),
                SLO_TARGETS,
            ),
        ),
        Alert(
            name="DeepSeekSLOAttainmentBelowTarget",
            expr=(
                f"max by ({NS_DSD}) (deepseek_operator_slo_attainment)\n"
                f"and on ({NS_DSD})\n"
                f"(max by ({NS_DSD}) ({SLO_MET_FALSE}) == 1)"
            ),
            for_="15m",
            severity="warning",
            summary=(
                f"{WHO} serves fewer requests within its SLOs than spec.scaling.slo.attainment "
                "asks."
            ),
            description=(
                "The autoscaler measured {{ $value | humanizePercentage }} of requests within "
                "the TTFT and TPOT SLOs and without error, weighted over "
                "spec.scaling.slo.windowSeconds, against a target (spec.scaling.slo.attainment) "
                f"of {_attainment_target()}, and has kept the SLOMet condition False for 15 "
                "minutes: the error budget is being spent faster than the target allows. "
                "`kubectl describe dsd` says why the autoscaler does not add capacity."
            ),
            probes=(
                "deepseek_operator_slo_attainment",
                'deepseek_operator_condition{type="SLOMet"}',
                f'{SLO_TARGETS}{{slo="{SLO_ATTAINMENT}"}}',
            ),
        ),
    ),
)

# --- engines -------------------------------------------------------------------------------

QUEUE = "namespace_dsd_colour:vllm_num_requests_waiting:sum"
PODS = "namespace_dsd_colour:vllm_engine_pods:count"
KV_AVG = "namespace_dsd_colour:vllm_kv_cache_usage_perc:avg"
PREEMPTIONS = "namespace_dsd_colour:vllm_num_preemptions:rate5m"

# The per-colour signals exactly as the operator queries them (deepseek_operator.signals).
ENGINE_RECORDING = Group(
    name="deepseek-engine.rules",
    file="deepseek-engine",
    rules=(
        Recording(QUEUE, promql(Signal.QUEUE_DEPTH)),
        Recording("namespace_dsd_colour:vllm_num_requests_running:sum", promql(Signal.RUNNING)),
        Recording(KV_AVG, promql(Signal.KV_CACHE_USAGE)),
        Recording(
            "namespace_dsd_colour:vllm_kv_cache_usage_perc:max", promql(Signal.KV_CACHE_USAGE_MAX)
        ),
        Recording(PODS, promql(Signal.PODS_REPORTING)),
        Recording("namespace_dsd_colour:vllm_request_success:rate1m", promql(Signal.REQUEST_RATE)),
        Recording(
            PREEMPTIONS,
            f"sum by ({NS_DSD_COLOUR}) (rate(vllm:num_preemptions_total[5m]))",
        ),
        Recording("namespace_dsd_colour:dcgm_gpu_utilization:avg", promql(Signal.GPU_UTILIZATION)),
        Recording("namespace_dsd_colour:dcgm_fb_used:ratio_avg", promql(Signal.GPU_MEMORY_USED)),
    ),
)

ENGINE_ALERTS = Group(
    name="deepseek-engine.alerts",
    file="deepseek-engine",
    rules=(
        Alert(
            name="DeepSeekKVCacheSaturated",
            expr=(
                f"{KV_AVG} > {KV_CACHE_SATURATED:g}\nand on ({NS_DSD_COLOUR})\n{PREEMPTIONS} > 0"
            ),
            for_="10m",
            severity="warning",
            summary=f"{WHO_COLOUR} has its KV cache full and preempts requests.",
            description=(
                "Mean KV-cache usage is {{ $value | humanizePercentage }} and the engines "
                "evict running requests to make room (vllm:num_preemptions_total rising): "
                "latency suffers and work is recomputed."
            ),
            probes=(KV_AVG, PREEMPTIONS),
        ),
        Alert(
            name="DeepSeekQueueGrowing",
            expr=(
                f"{QUEUE} / on ({NS_DSD_COLOUR}) {PODS} > {QUEUE_PER_POD:g}\n"
                f"and on ({NS_DSD_COLOUR})\nderiv({QUEUE}[15m]) > 0"
            ),
            for_="10m",
            severity="warning",
            summary=f"{WHO_COLOUR} has a long and growing request queue.",
            description=(
                "{{ $value | humanize }} requests wait per engine pod and the queue kept "
                "growing over 15 minutes: arrivals exceed what the replicas serve."
            ),
            probes=(QUEUE, PODS),
        ),
        Alert(
            name="DeepSeekEnginePodsUnschedulable",
            expr=(
                f'max by ({NS_DSD}) (deepseek_operator_pending_pods{{reason="Unschedulable"}}) > 0'
            ),
            for_="15m",
            severity="warning",
            summary=f"{WHO} has engine pods Pending that no node can take.",
            description=(
                "{{ $value }} engine pod(s) have been unschedulable for 15 minutes: no node has "
                "the free GPUs (nvidia.com/gpu), GPU product, zone spread or selectors they "
                "need. The deployment runs below its desired replicas."
            ),
            probes=("deepseek_operator_pending_pods",),
        ),
        Alert(
            name="DeepSeekEngineMetricsMissing",
            expr=(
                f"max by ({NS_DSD}) (deepseek_operator_ready_replicas) > 0\n"
                f"unless on ({NS_DSD})\n"
                f"count by ({NS_DSD}) (vllm:num_requests_running)"
            ),
            for_="10m",
            severity="warning",
            summary=f"{WHO} has Ready engine pods but no engine metrics in Prometheus.",
            description=(
                "{{ $value }} Ready replica(s), yet no vllm:* series carries this deployment's "
                "namespace and dsd labels: the autoscaler and rollout analysis are blind and "
                "hold, and the SLO alerts cannot fire."
            ),
            probes=("deepseek_operator_ready_replicas", "vllm:num_requests_running"),
        ),
    ),
)

# --- the router (spec.router) ---------------------------------------------------------------
# vllm-router 0.1.17's own metrics (docs/resource.md, "Router metrics"); it counts no request it
# refuses itself, so the admission alert reads the two conditions every refusal needs.

ROUTER_IN_FLIGHT = f"sum by ({ROUTER_POD}) (vllm_router_running_requests{{{MAIN_POOL}}})"
# Over 1m, not 5m: rate() divides by the window, so a router pod younger than the window (a
# restart, a roll) would read below its true rate for minutes (measured on the local cluster:
# 2.2 attempts/s read as 0.4/s one minute after the roll). The alert's 5 minutes keep it
# sustained.
ROUTER_ATTEMPTS = (
    f"sum by ({ROUTER_POD}) (rate(vllm_router_processed_requests_total{{{MAIN_POOL}}}[1m]))"
)
WHO_POOL = WHO + " (router pool {{ $labels.component }})"

ROUTER_ALERTS = Group(
    name="deepseek-router.alerts",
    file="deepseek-router",
    rules=(
        Alert(
            name="DeepSeekRouterCircuitOpen",
            expr=f"max by ({ROUTER_POOL}, worker) ({router_ejected()})",
            for_="10m",
            severity="warning",
            summary=f"{WHO_POOL} keeps engine {{{{ $labels.worker }}}} ejected.",
            description=(
                "For 10 minutes the router's circuit breaker has kept this engine out "
                "(vllm_router_cb_state open or half-open) and the engine kept failing the "
                f"attempts it got after each timeout (within {EJECTED_WINDOW}): it is Ready and "
                "discovered, but answers 5xx or refuses connections. The other engines carry "
                "its share; requests whose every attempt met it failed."
            ),
            probes=(
                "vllm_router_cb_state",
                'vllm_router_cb_outcomes_total{outcome="failure"}',
            ),
        ),
        Alert(
            name="DeepSeekRouterAtAdmissionLimit",
            expr=(
                f"(\n  {ROUTER_IN_FLIGHT}\n  >= on ({ROUTER_POOL}) group_left ()\n"
                f"  {router_limit('max_concurrent_requests', MAIN_POOL)}\n)\n"
                f"and on ({ROUTER_POD})\n"
                f"(\n  {ROUTER_ATTEMPTS}\n  >= on ({ROUTER_POOL}) group_left ()\n"
                f"  {router_limit('rate_limit_tokens_per_second', MAIN_POOL)}\n)"
            ),
            for_="5m",
            severity="critical",
            summary=(
                f"A router pod of {WHO} is at its admission limits: it may be refusing P0 requests."
            ),
            description=(
                "For 5 minutes router pod {{ $labels.pod }} (the main pool, behind the Service "
                "{{ $labels.dsd }}) has had as many requests in flight as its token bucket holds "
                "(spec.router.maxConcurrentRequests; {{ $value }} now) while sending at least "
                "its refill per second (rateLimitTokensPerSecond): the two conditions under "
                "which vllm-router answers new requests, P0 included, 429 or 408. vllm-router "
                "0.1.17 counts no refusal, so this is the closest signal; clients see the 429s "
                "and 408s."
            ),
            probes=(
                "vllm_router_running_requests",
                "vllm_router_processed_requests_total",
                ROUTER_LIMIT,
            ),
        ),
    ),
)

# --- GPUs ----------------------------------------------------------------------------------

XID_LAST = "max_over_time(DCGM_FI_DEV_XID_ERRORS[10m])"
XID_FATAL_EXPR = "\nor ".join(f"{XID_LAST} == {x}" for x in XID_FATAL)

GPU_ALERTS = Group(
    name="deepseek-gpu.alerts",
    file="deepseek-gpu",
    rules=(
        Alert(
            name="DeepSeekGPUXidError",
            expr=XID_FATAL_EXPR,
            severity="critical",
            summary=f"{GPU} reported XID {{{{ $value }}}}: the GPU needs a reset or repair.",
            description=(
                "XID {{ $value }} (double-bit ECC, row-remapping failure, NVLink, fallen off "
                "the bus or GSP error) on a GPU used by {{ $labels.namespace }}/"
                "{{ $labels.pod }}. The engine on it is likely failing; cordon the node."
            ),
            probes=("DCGM_FI_DEV_XID_ERRORS",),
        ),
        Alert(
            name="DeepSeekGPUXidError",
            expr=f"{XID_LAST} > 0\nunless (\n{XID_FATAL_EXPR}\n)",
            severity="warning",
            summary=f"{GPU} reported XID {{{{ $value }}}}.",
            description=(
                "XID {{ $value }} on a GPU used by {{ $labels.namespace }}/{{ $labels.pod }}. "
                "Most other XIDs (13, 31, 43, 45) come from the application (illegal memory "
                "access, a killed process); repeated ones point at the engine or the driver."
            ),
            probes=("DCGM_FI_DEV_XID_ERRORS",),
        ),
        Alert(
            name="DeepSeekGPUTemperatureHigh",
            expr=f"DCGM_FI_DEV_GPU_TEMP > {GPU_TEMP_CRITICAL:g}",
            for_="5m",
            severity="critical",
            summary=f"{GPU} runs at {{{{ $value }}}} C.",
            description=(
                f"The GPU has been above {GPU_TEMP_CRITICAL:g} C for 5 minutes: it throttles its "
                "clocks (slower tokens) and approaches its shutdown temperature."
            ),
            probes=("DCGM_FI_DEV_GPU_TEMP",),
        ),
        Alert(
            name="DeepSeekGPUTemperatureHigh",
            expr=f"DCGM_FI_DEV_GPU_TEMP > {GPU_TEMP_WARNING:g}",
            for_="10m",
            severity="warning",
            summary=f"{GPU} runs hot at {{{{ $value }}}} C.",
            description=(
                f"The GPU has been above {GPU_TEMP_WARNING:g} C for 10 minutes; check cooling "
                "before it throttles."
            ),
            probes=("DCGM_FI_DEV_GPU_TEMP",),
        ),
    ),
)

# --- the operator --------------------------------------------------------------------------

JOB = f'job="{OPERATOR_JOB}"'


def _phase(phase: str) -> str:
    return f'max by ({NS_DSD}) (deepseek_operator_rollout_phase{{phase=~"{phase}"}}) == 1'


REGION = f"{NS_DSD}, region"
REGION_DOWN = f"max by ({REGION}) (deepseek_operator_region_healthy) == 0"
REGION_WEIGHTED = f"max by ({REGION}) (deepseek_operator_region_weight) > 0"

OPERATOR_ALERTS = Group(
    name="deepseek-operator.alerts",
    file="deepseek-operator",
    rules=(
        Alert(
            name="DeepSeekOperatorDown",
            expr=f"absent(up{{{JOB}}} == 1)",
            for_="5m",
            severity="critical",
            summary="No deepseek-operator replica is up.",
            description=(
                f"Prometheus has scraped no healthy target with {JOB} for 5 minutes. "
                "DeepSeekDeployments keep serving, but nothing scales, rolls out, fails over "
                "or repairs them."
            ),
            probes=(f"up{{{JOB}}}",),
        ),
        Alert(
            name="DeepSeekOperatorNotReconciling",
            expr=(
                f"time() - max by ({NS_DSD}) "
                f"(deepseek_operator_last_reconcile_timestamp_seconds) > {NOT_RECONCILING_SECONDS}"
            ),
            for_="5m",
            severity="warning",
            summary=f"The operator has not reconciled {WHO} for over 10 minutes.",
            description=(
                "The last successful reconcile was {{ $value | humanizeDuration }} ago; the "
                "loop resyncs every minute. Reconciles fail or hang (API server, Prometheus, "
                "RBAC) or the leader lost its peering."
            ),
            probes=("deepseek_operator_last_reconcile_timestamp_seconds",),
        ),
        Alert(
            name="DeepSeekOperatorReconcileErrors",
            expr=(
                "sum by (handler) (rate(deepseek_operator_reconcile_errors_total[5m]))\n/ "
                "(\n  sum by (handler) (rate(deepseek_operator_reconcile_errors_total[5m]))\n"
                "  + sum by (handler) "
                "(rate(deepseek_operator_reconcile_duration_seconds_count[5m]))\n) > 0.1"
            ),
            for_="15m",
            severity="warning",
            summary="More than 10% of the operator's reconciles fail.",
            description=(
                "{{ $value | humanizePercentage }} of {{ $labels.handler }} reconciles failed "
                "over 5 minutes, for 15 minutes."
            ),
            probes=("deepseek_operator_reconcile_duration_seconds_count",),
        ),
        Alert(
            name="DeepSeekOperatorSignalQueriesFailing",
            expr=(
                "sum by (signal) (rate(deepseek_operator_prometheus_query_errors_total[5m]))\n/ "
                "sum by (signal) "
                "(rate(deepseek_operator_prometheus_query_duration_seconds_count[5m])) > 0.5"
            ),
            for_="10m",
            severity="warning",
            summary="The operator cannot read its {{ $labels.signal }} signal from Prometheus.",
            description=(
                "{{ $value | humanizePercentage }} of the queries for {{ $labels.signal }} "
                "fail. Without signals the autoscaler holds and rollout analysis is "
                "inconclusive."
            ),
            probes=("deepseek_operator_prometheus_query_duration_seconds_count",),
        ),
        Alert(
            name="DeepSeekRolloutStuck",
            expr=_phase("Progressing|Analyzing"),
            for_=ROLLOUT_STUCK_FOR,
            severity="warning",
            summary=f"The blue-green rollout of {WHO} has not finished in 90 minutes.",
            description=(
                "The preview colour has stayed Progressing or Analyzing for 90 minutes: its "
                "pods do not become Ready (GPUs, image, model download) or the analysis "
                "cannot conclude (no traffic, no metrics)."
            ),
            probes=("deepseek_operator_rollout_phase",),
        ),
        Alert(
            name="DeepSeekRolloutRolledBack",
            expr=_phase("RolledBack"),
            severity="warning",
            summary=f"The last rollout of {WHO} was rolled back.",
            description=(
                "The preview colour failed its analysis or its ready timeout, so traffic stays "
                "on the previous version; the spec asks for a version that is not served. "
                "`kubectl describe dsd` says why."
            ),
            probes=("deepseek_operator_rollout_phase",),
        ),
        Alert(
            name="DeepSeekServingBelowFullPrecision",
            expr=f"max by ({NS_DSD}) (deepseek_operator_quantization_rung) > 0",
            for_="6h",
            severity="warning",
            summary=f"{WHO} has served a compressed quantization rung for 6 hours.",
            description=(
                "It serves rung {{ $value }} of its quantization ladder (0 is full precision) "
                "since at least 6 hours: answers may be of lower quality. Under GPU pressure "
                "this is the ladder doing its job; for this long, add GPUs or replicas, or "
                "check why the policy does not step back up."
            ),
            probes=("deepseek_operator_quantization_rung",),
        ),
        Alert(
            name="DeepSeekRegionUnhealthy",
            expr=f"{REGION_DOWN}\nand on ({REGION})\n{REGION_WEIGHTED}",
            for_="5m",
            severity="critical",
            summary=(
                f"Region {{{{ $labels.region }}}} of {WHO} fails its health checks and "
                "still gets traffic."
            ),
            description=(
                "The operator marks the region unhealthy but has not moved its traffic away "
                "(weight still above 0): failover is not happening."
            ),
            probes=("deepseek_operator_region_healthy", "deepseek_operator_region_weight"),
        ),
        Alert(
            name="DeepSeekRegionUnhealthy",
            expr=f"{REGION_DOWN}\nunless on ({REGION})\n{REGION_WEIGHTED}",
            for_="5m",
            severity="warning",
            summary=f"Region {{{{ $labels.region }}}} of {WHO} fails its health checks.",
            description=(
                "Its traffic has failed over to the other regions; the deployment runs "
                "without that region's capacity until it recovers and the failback delay "
                "passes."
            ),
            probes=("deepseek_operator_region_healthy", "deepseek_operator_region_weight"),
        ),
    ),
)

GROUPS: tuple[Group, ...] = (
    SLO_RECORDING,
    SLO_ALERTS,
    ENGINE_RECORDING,
    ENGINE_ALERTS,
    ROUTER_ALERTS,
    GPU_ALERTS,
    OPERATOR_ALERTS,
)


def alerts() -> list[Alert]:
    return [r for g in GROUPS for r in g.rules if isinstance(r, Alert)]


def recordings() -> list[Recording]:
    return [r for g in GROUPS for r in g.rules if isinstance(r, Recording)]


def alert_names() -> list[str]:
    """Each alert name once, in order."""
    return list(dict.fromkeys(a.name for a in alerts()))


def files() -> dict[str, list[Group]]:
    out: dict[str, list[Group]] = {}
    for g in GROUPS:
        out.setdefault(g.file, []).append(g)
    return out
