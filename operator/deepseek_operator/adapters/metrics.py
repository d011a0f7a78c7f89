"""The operator's own Prometheus metrics, served on /metrics (--metrics-port).

Dashboards and alert rules refer to these names; change them here and there together.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
# process_resident_memory_bytes, process_cpu_seconds_total, ...: the operator dashboard and the
# benchmark's "operator cost" read them.
ProcessCollector(registry=REGISTRY)

_DSD = ["namespace", "dsd"]

INFO = Info("deepseek_operator", "Operator build information.", registry=REGISTRY)

RECONCILE_DURATION = Histogram(
    "deepseek_operator_reconcile_duration_seconds",
    "Time one reconcile of a DeepSeekDeployment took, by handler.",
    ["handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "deepseek_operator_reconcile_errors_total",
    "Reconciles that failed, by handler and kind (temporary, permanent, unexpected).",
    ["handler", "kind"],
    registry=REGISTRY,
)
LAST_RECONCILE = Gauge(
    "deepseek_operator_last_reconcile_timestamp_seconds",
    "Unix time of the last successful reconcile of a DeepSeekDeployment.",
    _DSD,
    registry=REGISTRY,
)
QUERY_DURATION = Histogram(
    "deepseek_operator_prometheus_query_duration_seconds",
    "Time one signal query to Prometheus took (one query covers every DeepSeekDeployment).",
    ["signal"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
QUERY_ERRORS = Counter(
    "deepseek_operator_prometheus_query_errors_total",
    "Signal queries that failed.",
    ["signal"],
    registry=REGISTRY,
)
QUERIES_PER_TICK = Gauge(
    "deepseek_operator_prometheus_queries_per_tick",
    "Prometheus queries the last signal tick made, for all DeepSeekDeployments together.",
    registry=REGISTRY,
)
SCALING_DECISIONS = Counter(
    "deepseek_operator_scaling_decisions_total",
    "Autoscaling decisions, by direction (up, down, hold) and CamelCase reason.",
    [*_DSD, "direction", "reason"],
    registry=REGISTRY,
)
DESIRED_REPLICAS = Gauge(
    "deepseek_operator_desired_replicas",
    "Replicas the operator converges the active colour to.",
    _DSD,
    registry=REGISTRY,
)
READY_REPLICAS = Gauge(
    "deepseek_operator_ready_replicas",
    "Ready engine pods of the active colour.",
    _DSD,
    registry=REGISTRY,
)
MAX_REPLICAS = Gauge(
    "deepseek_operator_max_replicas",
    "spec.scaling.maxReplicas.",
    _DSD,
    registry=REGISTRY,
)
SLO_TARGET = Gauge(
    "deepseek_operator_slo_target",
    "The DeepSeekDeployment's SLOs (slo: ttft_p99_seconds, tpot_p99_seconds, error_rate, "
    "attainment), so dashboards and alerts compare against each deployment's own objectives.",
    [*_DSD, "slo"],
    registry=REGISTRY,
)
SLO_ATTAINMENT = Gauge(
    "deepseek_operator_slo_attainment",
    "Share of requests served within both latency SLOs and without error, weighted over "
    "spec.scaling.slo.windowSeconds, as the autoscaler measured it "
    "(status.scaling.sloBudget.attainment); absent until it measured requests. Compare with "
    'deepseek_operator_slo_target{slo="attainment"}.',
    _DSD,
    registry=REGISTRY,
)
# Values of the `limit` label of ROUTER_LIMIT.
ROUTER_LIMITS = ("max_concurrent_requests", "queue_size", "rate_limit_tokens_per_second")
ROUTER_LIMIT = Gauge(
    "deepseek_operator_router_limit",
    "Admission limits of each vllm-router pod of a pool (component: router, router-batch), as "
    "the operator passes them (limit: max_concurrent_requests, the token bucket's size; "
    "queue_size; rate_limit_tokens_per_second, the refill, the bucket size when unset). "
    "vllm-router exports none of them, nor any count of the requests it refuses: the router "
    "dashboards and alerts compare its in-flight requests against these.",
    [*_DSD, "component", "limit"],
    registry=REGISTRY,
)
ACTIVE_COLOUR = Gauge(
    "deepseek_operator_active_colour",
    "1 for the colour the stable Service selects.",
    [*_DSD, "colour"],
    registry=REGISTRY,
)
QUANTIZATION_MODE = Gauge(
    "deepseek_operator_quantization_mode",
    "1 for the quantization mode the active colour serves.",
    [*_DSD, "mode"],
    registry=REGISTRY,
)
QUANTIZATION_RUNG = Gauge(
    "deepseek_operator_quantization_rung",
    "Position on spec.quantization.ladder of the mode the active colour serves: 0 is the "
    "highest precision, higher is more compressed.",
    _DSD,
    registry=REGISTRY,
)
QUANTIZATION_SWITCHES = Counter(
    "deepseek_operator_quantization_switches_total",
    "Quantization rung switches decided by the policy, by direction (down: more compressed).",
    [*_DSD, "direction"],
    registry=REGISTRY,
)
ROLLOUT_PHASE = Gauge(
    "deepseek_operator_rollout_phase",
    "1 for the current rollout phase (Idle, Progressing, Analyzing, Paused, Promoted, "
    "RolledBack, ...).",
    [*_DSD, "phase"],
    registry=REGISTRY,
)
# Every result's series exists from the first reconcile, at 0: increase() over a counter that
# first appears at 1 reads 0, so the first promotion or rollback would not show.
ROLLOUT_RESULTS = ("promoted", "rolled_back", "aborted", "superseded")
ROLLOUTS = Counter(
    "deepseek_operator_rollouts_total",
    "Finished rollouts by result (promoted, rolled_back, aborted, superseded).",
    [*_DSD, "result"],
    registry=REGISTRY,
)
CONDITION = Gauge(
    "deepseek_operator_condition",
    "1 when the DeepSeekDeployment's condition has that status (True/False/Unknown).",
    [*_DSD, "type", "status"],
    registry=REGISTRY,
)
REGION_WEIGHT = Gauge(
    "deepseek_operator_region_weight",
    "Traffic weight (0-100) the operator applies to a member region.",
    [*_DSD, "region"],
    registry=REGISTRY,
)
REGION_HEALTHY = Gauge(
    "deepseek_operator_region_healthy",
    "1 when the member region passes its health checks.",
    [*_DSD, "region"],
    registry=REGISTRY,
)
PENDING_PODS = Gauge(
    "deepseek_operator_pending_pods",
    "Engine pods of the DeepSeekDeployment that are Pending, by reason (Unschedulable: the "
    "scheduler found no node with the GPUs, zone spread or selectors the pod needs). Set to 0 "
    "when none, so the alert and dashboards tell 'none' from 'not exported'.",
    [*_DSD, "reason"],
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "deepseek_operator_api_requests_total",
    "Kubernetes API requests the reconciles made, by verb (get, list, apply, patch, delete) and "
    "resource. Kopf's watches and Event posts are not counted.",
    ["verb", "resource"],
    registry=REGISTRY,
)
