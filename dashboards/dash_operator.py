"""The operator itself: is it up, is it reconciling, what it decides, what it costs."""

from __future__ import annotations

from .grafana import Dashboard, Panel, QueryVariable, Row, Target, Threshold
from .queries import FILT, OPERATOR_JOB, RATE_VAR, operator_gauge, sel

JOB = f'job="{OPERATOR_JOB}"'
BY_DSD = "{{namespace}}/{{dsd}}"


def _quantiles(metric: str, by: str) -> tuple[Target, ...]:
    return tuple(
        Target(
            f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket[{RATE_VAR}])))",
            f"p{round(q * 100)} {{{{{by}}}}}",
        )
        for q in (0.5, 0.99)
    )


def _errors_or_zero(errors: str, requests: str, by: str, detail: str = "") -> str:
    """Error rate per `by` (and `detail`), 0 where no error was ever counted: client counters
    with labels appear only on their first increment, and a panel with no data looks broken."""
    err_by = f"{by}, {detail}" if detail else by
    return (
        f"sum by ({err_by}) (rate({errors}[{RATE_VAR}])) "
        f"or on ({by}) sum by ({by}) (0 * rate({requests}[{RATE_VAR}]))"
    )


VARIABLES = (
    QueryVariable(
        "namespace", "Namespace", "label_values(deepseek_operator_desired_replicas, namespace)"
    ),
    QueryVariable(
        "deployment",
        "DeepSeekDeployment",
        'label_values(deepseek_operator_desired_replicas{namespace=~"$namespace"}, dsd)',
    ),
)

OPERATOR = Dashboard(
    uid="deepseek-operator",
    title="DeepSeek / Operator",
    description="The deepseek-operator itself: replicas up, reconcile latency and errors, "
    "scaling and rollout decisions, the Prometheus queries behind its signals, and its cost.",
    tags=("deepseek", "operator"),
    variables=VARIABLES,
    links=(("Fleet overview", "deepseek-fleet"), ("GPUs", "deepseek-gpus")),
    items=(
        Row("Health"),
        Panel(
            "Operator replicas up",
            "Scrape targets of the operator that answer (job deepseek-operator). With peering, "
            "one of them is the leader; the others wait.",
            (Target(f"sum(up{{{JOB}}})", "up", instant=True),),
            type="stat",
            text_mode="value",
            width=6,
            height=5,
            thresholds=(Threshold(None, "red"), Threshold(1, "green")),
        ),
        Panel(
            "DeepSeekDeployments reconciled",
            "DeepSeekDeployments the operator exports state for.",
            (
                Target(
                    f"count({operator_gauge('deepseek_operator_desired_replicas', FILT)})",
                    "deployments",
                    instant=True,
                ),
            ),
            type="stat",
            text_mode="value",
            width=6,
            height=5,
        ),
        Panel(
            "Seconds since the last reconcile",
            "Per DeepSeekDeployment; the loop resyncs every 60 s, so this stays below a minute "
            "on a healthy operator. OperatorNotReconciling fires above 10 minutes.",
            (
                Target(
                    "time() - "
                    + operator_gauge("deepseek_operator_last_reconcile_timestamp_seconds", FILT),
                    BY_DSD,
                ),
            ),
            unit="s",
            width=12,
            height=5,
            thresholds=(Threshold(None, "green"), Threshold(120, "orange"), Threshold(600, "red")),
        ),
        Row("Reconcile"),
        Panel(
            "Reconcile latency",
            "deepseek_operator_reconcile_duration_seconds p50 / p99, by handler.",
            _quantiles("deepseek_operator_reconcile_duration_seconds", "handler"),
            unit="s",
            width=8,
        ),
        Panel(
            "Reconciles per second",
            "By handler.",
            (
                Target(
                    "sum by (handler) "
                    f"(rate(deepseek_operator_reconcile_duration_seconds_count[{RATE_VAR}]))",
                    "{{handler}}",
                ),
            ),
            unit="ops",
            width=8,
        ),
        Panel(
            "Reconcile errors per second",
            "Failed reconciles by handler and exception kind; 0 while none failed.",
            (
                Target(
                    _errors_or_zero(
                        "deepseek_operator_reconcile_errors_total",
                        "deepseek_operator_reconcile_duration_seconds_count",
                        "handler",
                        "kind",
                    ),
                    "{{handler}} {{kind}}",
                ),
            ),
            unit="ops",
            width=8,
        ),
        Row("Decisions"),
        Panel(
            "Scaling decisions",
            "Autoscaling decisions per DeepSeekDeployment by direction and reason, per interval.",
            (
                Target(
                    "sum by (namespace, dsd, direction, reason) (increase("
                    f"deepseek_operator_scaling_decisions_total{sel(FILT)}[{RATE_VAR}]))",
                    f"{BY_DSD} {{{{direction}}}} {{{{reason}}}}",
                ),
            ),
            width=12,
            stacked=True,
        ),
        Panel(
            "Desired and maximum replicas",
            "What the decisions converge to, against spec.scaling.maxReplicas (dashed).",
            (
                Target(
                    operator_gauge("deepseek_operator_desired_replicas", FILT),
                    f"desired {BY_DSD}",
                ),
                Target(operator_gauge("deepseek_operator_max_replicas", FILT), f"max {BY_DSD}"),
            ),
            width=12,
            decimals=0,
            dashed="^max .*",
        ),
        Panel(
            "Quantization rung served",
            "Position on spec.quantization.ladder of the mode each DeepSeekDeployment serves: 0 "
            "is full precision, higher is more compressed (a lighter rung under GPU pressure). "
            "DeepSeekServingBelowFullPrecision fires after 6 hours above 0.",
            (
                Target(
                    operator_gauge("deepseek_operator_quantization_rung", FILT),
                    BY_DSD,
                ),
            ),
            width=12,
            decimals=0,
            thresholds=(Threshold(None, "green"), Threshold(1, "orange")),
        ),
        Panel(
            "Finished rollouts (24h)",
            "Blue-green rollouts that ended in the last 24 hours, by result.",
            (
                Target(
                    "sum by (namespace, dsd, result) "
                    f"(increase(deepseek_operator_rollouts_total{sel(FILT)}[1d]))",
                    f"{BY_DSD} {{{{result}}}}",
                    instant=True,
                ),
            ),
            type="stat",
            text_mode="value_and_name",
            width=12,
            height=6,
            decimals=0,
        ),
        Panel(
            "Conditions",
            "Status conditions of each DeepSeekDeployment that are True.",
            (
                Target(
                    operator_gauge(
                        "deepseek_operator_condition", f'{FILT},status="True"', by=("type",)
                    )
                    + " == 1",
                    f"{BY_DSD} {{{{type}}}}",
                    instant=True,
                ),
            ),
            type="stat",
            text_mode="name",
            width=12,
            height=6,
        ),
        Row("Prometheus queries (signals)"),
        Panel(
            "Signal query latency",
            "deepseek_operator_prometheus_query_duration_seconds p50 / p99 by signal. One "
            "query per signal covers every DeepSeekDeployment.",
            _quantiles("deepseek_operator_prometheus_query_duration_seconds", "signal"),
            unit="s",
            width=8,
        ),
        Panel(
            "Signal query errors per second",
            "Failed signal queries; 0 while none failed.",
            (
                Target(
                    _errors_or_zero(
                        "deepseek_operator_prometheus_query_errors_total",
                        "deepseek_operator_prometheus_query_duration_seconds_count",
                        "signal",
                    ),
                    "{{signal}}",
                ),
            ),
            unit="ops",
            width=8,
        ),
        Panel(
            "Queries per signal tick",
            "Prometheus queries the last tick made for all DeepSeekDeployments together; it "
            "must not grow with their number.",
            (Target("max(deepseek_operator_prometheus_queries_per_tick)", "queries"),),
            width=8,
            decimals=0,
        ),
        Row("Cost"),
        Panel(
            "Operator memory",
            "Resident memory of each operator replica.",
            (Target(f"process_resident_memory_bytes{{{JOB}}}", "{{pod}}{{instance}}"),),
            unit="bytes",
            width=12,
        ),
        Panel(
            "Operator CPU",
            "CPU seconds per second of each operator replica.",
            (
                Target(
                    f"rate(process_cpu_seconds_total{{{JOB}}}[{RATE_VAR}])",
                    "{{pod}}{{instance}}",
                ),
            ),
            unit="short",
            width=12,
        ),
    ),
)
