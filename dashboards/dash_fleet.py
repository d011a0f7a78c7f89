"""Fleet overview: what users of the served models see, and the state the operator keeps."""

from __future__ import annotations

from deepseek_operator.signals import (
    COMPLETION_HANDLERS,
    GATE_ABORTED,
    GATE_REFUSED,
    GATE_WAITING,
    GROUP_BY,
    RATE_WINDOW,
    Signal,
    promql,
)

from .grafana import Dashboard, Panel, QueryVariable, Row, Target, Threshold
from .queries import (
    FILT,
    ROUTER_POD,
    ROUTER_POOL,
    SLO_ATTAINMENT,
    SLO_ERROR_RATE,
    SLO_TPOT,
    SLO_TTFT,
    TPOT_HISTOGRAM,
    latency_quantile,
    operator_gauge,
    router_ejected,
    router_limit,
    router_rate,
    router_rate_or_zero,
    router_zero,
    sel,
    slo_target,
)

BY_COLOUR = "{{namespace}}/{{dsd}} {{colour}}"
BY_DSD = "{{namespace}}/{{dsd}}"
BY_POOL = "{{namespace}}/{{dsd}} {{component}}"


def _sig(signal: Signal, legend: str = BY_COLOUR) -> Target:
    return Target(promql(signal, FILT), legend)


def _slo(slo: str) -> Target:
    return Target(slo_target(slo, FILT), f"SLO {BY_DSD}")


def _rate_expr(metric: str) -> str:
    return f"sum by ({GROUP_BY}) (rate({metric}{sel(FILT)}[{RATE_WINDOW}]))"


def _rate(metric: str, legend: str = BY_COLOUR) -> Target:
    return Target(_rate_expr(metric), legend)


def _or_zero(expr: str) -> str:
    """`expr`, or 0 for each colour whose pods report running requests but not `expr`'s
    series (engine pods without the admission gate)."""
    return f"{expr}\nor\n0 * sum by ({GROUP_BY}) (vllm:num_requests_running{sel(FILT)})"


def _state(metric: str, label: str) -> Target:
    """The label value whose 0/1 gauge is 1 (active colour, mode, rollout phase)."""
    return Target(
        f"{operator_gauge(metric, FILT, by=(label,))} == 1",
        f"{BY_DSD}: {{{{{label}}}}}",
        instant=True,
    )


VARIABLES = (
    QueryVariable("namespace", "Namespace", "label_values(vllm:num_requests_running, namespace)"),
    QueryVariable(
        "deployment",
        "DeepSeekDeployment",
        'label_values(vllm:num_requests_running{namespace=~"$namespace"}, dsd)',
    ),
)

RED_AT_1 = (Threshold(None, "green"), Threshold(0.8, "orange"), Threshold(0.95, "red"))

FLEET = Dashboard(
    uid="deepseek-fleet",
    title="DeepSeek / Fleet overview",
    description="Traffic, latency against each DeepSeekDeployment's own SLO, load, and the "
    "state the operator keeps (replicas, quantization mode, active colour, regions).",
    tags=("deepseek", "vllm", "llm-serving"),
    variables=VARIABLES,
    links=(("GPUs", "deepseek-gpus"), ("Operator", "deepseek-operator")),
    items=(
        Row("Service level"),
        Panel(
            "Requests per second",
            "Finished requests per second (vllm:request_success_total), per colour. The "
            "operator's requestRate signal.",
            (_sig(Signal.REQUEST_RATE),),
            unit="reqps",
            width=8,
        ),
        Panel(
            "Time to first token, p50 / p99, vs SLO",
            "vllm:time_to_first_token_seconds quantiles over 1m (the operator's ttftP50/ttftP99 "
            "signals); dashed: the deployment's spec.scaling.slo.ttftP99Seconds.",
            (
                _sig(Signal.TTFT_P50, f"p50 {BY_COLOUR}"),
                _sig(Signal.TTFT_P99, f"p99 {BY_COLOUR}"),
                _slo(SLO_TTFT),
            ),
            unit="s",
            width=8,
            dashed="^SLO .*",
        ),
        Panel(
            "Time per output token, p50 / p99, vs SLO",
            f"{TPOT_HISTOGRAM} quantiles over 1m (p99 is the operator's tpotP99 signal); "
            "dashed: spec.scaling.slo.tpotP99Seconds.",
            (
                Target(
                    latency_quantile(TPOT_HISTOGRAM, 0.5, FILT, RATE_WINDOW, GROUP_BY),
                    f"p50 {BY_COLOUR}",
                ),
                _sig(Signal.TPOT_P99, f"p99 {BY_COLOUR}"),
                _slo(SLO_TPOT),
            ),
            unit="s",
            width=8,
            dashed="^SLO .*",
        ),
        Panel(
            "Error ratio vs SLO",
            "5xx responses / all completion requests (http_requests_total; the operator's "
            "errorRate signal); dashed: spec.scaling.slo.maxErrorRate.",
            (_sig(Signal.ERROR_RATE), _slo(SLO_ERROR_RATE)),
            unit="percentunit",
            width=8,
            min=0,
            dashed="^SLO .*",
        ),
        Panel(
            "Error budget burn rate (1h)",
            "How fast each deployment spends its error budget: 1 spends exactly the budget in "
            "30 days; the page fires above 14.4 (with the 5m window agreeing). TTFT: share of "
            "requests slower than the TTFT SLO over the 1% a p99 objective allows. From the "
            "recording rules of the chart's PrometheusRule.",
            (
                Target(
                    f"namespace_dsd:vllm_ttft_slo_violation:ratio_rate1h{sel(FILT)} / 0.01",
                    f"TTFT {BY_DSD}",
                ),
                Target(
                    f"namespace_dsd:vllm_http_requests_errors:ratio_rate1h{sel(FILT)} "
                    f"/ on (namespace, dsd) {slo_target(SLO_ERROR_RATE, FILT)}",
                    f"errors {BY_DSD}",
                ),
            ),
            unit="x",
            width=8,
            min=0,
            thresholds=(Threshold(None, "green"), Threshold(6, "orange"), Threshold(14.4, "red")),
        ),
        Panel(
            "SLO attainment (operator, weighted over slo.windowSeconds)",
            "Share of requests served within both latency SLOs (TTFT and TPOT p99) and without "
            "error, as the autoscaler measures it from the latency histograms: recent requests "
            "count most, those older than spec.scaling.slo.windowSeconds little "
            "(status.scaling.sloBudget). Dashed: the target, spec.scaling.slo.attainment. "
            "Once enough requests were measured, the SLOMet condition says whether it is met "
            "(DeepSeekSLOAttainmentBelowTarget fires after 15 minutes below). No line while "
            "autoscaling is off or before the first requests were measured.",
            (
                Target(operator_gauge("deepseek_operator_slo_attainment", FILT), BY_DSD),
                _slo(SLO_ATTAINMENT),
            ),
            unit="percentunit",
            width=8,
            max=1,
            decimals=2,
            dashed="^SLO .*",
        ),
        Panel(
            "Responses per second by status",
            "Completion responses by HTTP status class (http_requests_total).",
            (
                Target(
                    f"sum by (namespace, dsd, status) "
                    f"(rate(http_requests_total{sel(FILT, COMPLETION_HANDLERS)}[{RATE_WINDOW}]))",
                    "{{namespace}}/{{dsd}} {{status}}",
                ),
            ),
            unit="reqps",
            width=8,
            stacked=True,
        ),
        Row("Load"),
        Panel(
            "Requests waiting and running",
            "vllm:num_requests_waiting and vllm:num_requests_running summed over the pods of a "
            "colour (the queueDepth and running signals).",
            (
                _sig(Signal.QUEUE_DEPTH, f"waiting {BY_COLOUR}"),
                _sig(Signal.RUNNING, f"running {BY_COLOUR}"),
            ),
            width=8,
        ),
        Panel(
            "Admission gate: refused, aborted, waiting",
            "The engine pods' admission gate (spec.engine.admission), per colour: requests "
            "answered 503 without reaching vLLM per second (no place within maxWaitSeconds, "
            "or draining; deepseek_admission_refused_total), streams aborted and answered 503 "
            "without a first token in time (deepseek_admission_aborted_total), and requests "
            "waiting at the gate for a place (deepseek_admission_waiting, dashed). 0 for pods "
            "without the gate. The operator's request rate, queue and error rate include them.",
            (
                Target(_or_zero(_rate_expr(GATE_REFUSED)), f"refused/s {BY_COLOUR}"),
                Target(_or_zero(_rate_expr(GATE_ABORTED)), f"aborted/s {BY_COLOUR}"),
                Target(
                    _or_zero(f"sum by ({GROUP_BY}) ({GATE_WAITING}{sel(FILT)})"),
                    f"waiting {BY_COLOUR}",
                ),
            ),
            width=8,
            min=0,
            dashed="^waiting .*",
        ),
        Panel(
            "KV-cache usage",
            "vllm:kv_cache_usage_perc: mean over pods (kvCacheUsage) and the fullest pod "
            "(kvCacheUsageMax). Near 100% the engine preempts requests.",
            (
                _sig(Signal.KV_CACHE_USAGE, f"mean {BY_COLOUR}"),
                _sig(Signal.KV_CACHE_USAGE_MAX, f"max {BY_COLOUR}"),
            ),
            unit="percentunit",
            width=8,
            min=0,
            max=1,
            thresholds=RED_AT_1,
        ),
        Panel(
            "Tokens per second",
            "Prompt (prefill) and generated tokens per second.",
            (
                _rate("vllm:prompt_tokens_total", f"prompt {BY_COLOUR}"),
                _rate("vllm:generation_tokens_total", f"generated {BY_COLOUR}"),
            ),
            unit="short",
            width=8,
        ),
        Panel(
            "Preemptions per second",
            "Requests the engine evicted from the batch for lack of KV-cache "
            "(vllm:num_preemptions_total).",
            (_rate("vllm:num_preemptions_total"),),
            unit="short",
            width=8,
        ),
        Panel(
            "Engine pods reporting",
            "Engine pods with metrics in Prometheus, per colour (podsReporting).",
            (_sig(Signal.PODS_REPORTING),),
            width=8,
            decimals=0,
        ),
        Panel(
            "Seconds since the newest engine sample",
            "Age of the freshest engine sample (sampleAge); the autoscaler holds when it is old.",
            (_sig(Signal.SAMPLE_AGE),),
            unit="s",
            width=8,
        ),
        Row("Router (spec.router)"),
        Panel(
            "Router: requests by outcome",
            "Per pool (router: the Service <name>; router-batch: <name>-batch), per second: "
            "answered by an engine (vllm_router_requests_total: 2xx only), failed with a 5xx "
            "after every attempt (vllm_router_retries_exhausted_total, 503 'no available "
            "workers' included), answered 4xx by an engine and not retried "
            '(vllm_router_request_errors_total{error_type="non_retryable_error"}). Not '
            "here: requests the router refuses itself (429 with no queue, 408 after waiting "
            "for a token): vllm-router 0.1.17 counts them nowhere.",
            (
                Target(
                    router_rate("vllm_router_requests_total", FILT, RATE_WINDOW),
                    f"answered {BY_POOL}",
                ),
                Target(
                    router_rate_or_zero("vllm_router_retries_exhausted_total", FILT, RATE_WINDOW),
                    f"failed 5xx {BY_POOL}",
                ),
                Target(
                    router_rate_or_zero(
                        "vllm_router_request_errors_total",
                        FILT,
                        RATE_WINDOW,
                        match='error_type="non_retryable_error"',
                    ),
                    f"engine 4xx {BY_POOL}",
                ),
            ),
            unit="reqps",
            width=8,
            stacked=True,
        ),
        Panel(
            "Router: retries and failed attempts",
            "Per pool, per second: retries (attempts after a request's first, "
            "vllm_router_retries_total) and attempts an engine failed (5xx or no connection; "
            "each counts towards that engine's circuit, vllm_router_cb_outcomes_total"
            '{outcome="failure"}).',
            (
                Target(
                    router_rate_or_zero("vllm_router_retries_total", FILT, RATE_WINDOW),
                    f"retries {BY_POOL}",
                ),
                Target(
                    router_rate_or_zero(
                        "vllm_router_cb_outcomes_total",
                        FILT,
                        RATE_WINDOW,
                        match='outcome="failure"',
                    ),
                    f"failed attempts {BY_POOL}",
                ),
            ),
            unit="reqps",
            width=8,
        ),
        Panel(
            "Router: attempts per engine",
            "Attempts each pool sent to each engine (worker: the engine pod's "
            "http://<pod IP>:<port>), per second (vllm_router_processed_requests_total, retries "
            "included). An engine whose circuit is open gets none.",
            (
                Target(
                    router_rate(
                        "vllm_router_processed_requests_total",
                        FILT,
                        RATE_WINDOW,
                        by=f"{ROUTER_POOL}, worker",
                    ),
                    f"{BY_POOL} -> {{{{worker}}}}",
                ),
            ),
            unit="reqps",
            width=8,
        ),
        Panel(
            "Router: engines with an open circuit",
            "Per router pod, engines its circuit breaker has taken out (vllm_router_cb_state "
            "1 open or 2 half-open) that failed an attempt in the last 10 minutes; vllm-router "
            "keeps the last state of an engine it no longer knows (a deleted pod) until the "
            "router pod restarts, so those are left out. Dashed: engines each pod routes to "
            "(vllm_router_active_workers).",
            (
                Target(
                    f"count by ({ROUTER_POD}) ({router_ejected(FILT)})\n"
                    f"or\n{router_zero(FILT, by=ROUTER_POD)}",
                    "open {{pod}}",
                ),
                Target(
                    f"max by ({ROUTER_POD}) (vllm_router_active_workers{sel(FILT)})",
                    "engines {{pod}}",
                ),
            ),
            width=8,
            decimals=0,
            min=0,
            dashed="^engines .*",
        ),
        Panel(
            "Router: requests in flight per pod vs its admission bucket",
            "Requests each router pod has sent to an engine and not finished "
            "(vllm_router_running_requests summed over engines); dashed: the pool's "
            "maxConcurrentRequests, the size of each pod's admission token bucket "
            "(deepseek_operator_router_limit). A pod can refuse (429, or 408 after waiting) "
            "only while at least that many requests await their first byte, so below the line "
            "it refuses nothing; at or above it, it may (streams keep counting after their "
            "token is back). vllm-router 0.1.17 exports no queue length and no refusal count.",
            (
                Target(
                    f"sum by ({ROUTER_POD}) (vllm_router_running_requests{sel(FILT)})",
                    "{{pod}}",
                ),
                Target(router_limit("max_concurrent_requests", FILT), f"bucket {BY_POOL}"),
            ),
            width=8,
            min=0,
            dashed="^bucket .*",
        ),
        Panel(
            "Router: admissions per pod vs the bucket's refill",
            "Attempts each router pod sends per second (vllm_router_processed_requests_total, "
            "an upper bound of the requests it admits); dashed: the pool's refill "
            "(rateLimitTokensPerSecond, the bucket size when unset). Refusing for minutes "
            "takes admitting at least the refill: the batch pool lives there under P2 load "
            "(by design), the main pool should not.",
            (
                Target(
                    router_rate(
                        "vllm_router_processed_requests_total", FILT, RATE_WINDOW, by=ROUTER_POD
                    ),
                    "{{pod}}",
                ),
                Target(router_limit("rate_limit_tokens_per_second", FILT), f"refill {BY_POOL}"),
            ),
            unit="reqps",
            width=8,
            min=0,
            dashed="^refill .*",
        ),
        Row("Capacity and state"),
        Panel(
            "Replicas: desired, ready, maximum",
            "The operator's desired and ready replicas of the active colour, and "
            "spec.scaling.maxReplicas (dashed).",
            (
                Target(
                    operator_gauge("deepseek_operator_desired_replicas", FILT),
                    f"desired {BY_DSD}",
                ),
                Target(operator_gauge("deepseek_operator_ready_replicas", FILT), f"ready {BY_DSD}"),
                Target(operator_gauge("deepseek_operator_max_replicas", FILT), f"max {BY_DSD}"),
            ),
            width=12,
            decimals=0,
            dashed="^max .*",
        ),
        Panel(
            "Pending engine pods",
            "Engine pods the scheduler could not place (no node with free GPUs in the allowed "
            "zones), from the operator's deepseek_operator_pending_pods.",
            (
                Target(
                    operator_gauge("deepseek_operator_pending_pods", FILT, by=("reason",)),
                    f"{BY_DSD} {{{{reason}}}}",
                ),
            ),
            width=12,
            decimals=0,
        ),
        Panel(
            "Quantization mode",
            "The rung of spec.quantization.ladder the active colour serves.",
            (_state("deepseek_operator_quantization_mode", "mode"),),
            type="stat",
            text_mode="name",
            width=6,
            height=5,
        ),
        Panel(
            "Active colour",
            "The colour the stable Service sends traffic to.",
            (_state("deepseek_operator_active_colour", "colour"),),
            type="stat",
            text_mode="name",
            width=6,
            height=5,
        ),
        Panel(
            "Rollout phase",
            "Phase of the current (or last) blue-green rollout.",
            (_state("deepseek_operator_rollout_phase", "phase"),),
            type="stat",
            text_mode="name",
            width=6,
            height=5,
        ),
        Panel(
            "Regions healthy",
            "1: the member region is Healthy (in rotation); 0: Pending, Unhealthy or "
            "Recovering (out of rotation while failover is enabled). status.regions says which.",
            (
                Target(
                    operator_gauge("deepseek_operator_region_healthy", FILT, by=("region",)),
                    f"{BY_DSD} {{{{region}}}}",
                    instant=True,
                ),
            ),
            type="stat",
            text_mode="value_and_name",
            width=6,
            height=5,
            thresholds=(Threshold(None, "red"), Threshold(1, "green")),
        ),
        Panel(
            "Region traffic weights",
            "Relative traffic weight (0-100) the operator gives each member region, for the "
            "global load balancer to apply.",
            (
                Target(
                    operator_gauge("deepseek_operator_region_weight", FILT, by=("region",)),
                    f"{BY_DSD} {{{{region}}}}",
                ),
            ),
            unit="percent",
            width=24,
            min=0,
            max=100,
        ),
    ),
)
