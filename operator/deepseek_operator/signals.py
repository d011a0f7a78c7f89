"""The signals a policy sees, and the PromQL that fills them.

One query per signal covers every DeepSeekDeployment at once (grouped by namespace, dsd and
colour), so the number of Prometheus queries per tick does not grow with the number of
resources. The same expressions, with a label filter, back the dashboards and alert rules, and
the contract test runs them against a real vLLM server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from .labels import PROM_COLOUR, PROM_DSD, PROM_NAMESPACE

GROUP_BY = f"{PROM_NAMESPACE}, {PROM_DSD}, {PROM_COLOUR}"
RATE_WINDOW = "1m"
COMPLETION_HANDLERS = 'handler=~"/v1/completions|/v1/chat/completions"'


class Signal(StrEnum):
    """A named, per-(namespace, dsd, colour) measurement."""

    # The engine pods' admission gate (spec.engine.admission) answers some requests itself:
    # those count as arrivals and failures, and its waiting requests as queued, so that the
    # signals see the demand and the failures the gate keeps from vLLM.
    REQUEST_RATE = "requestRate"  # finished requests per second (+ the gate's refusals)
    QUEUE_DEPTH = "queueDepth"  # requests waiting, summed over pods (+ waiting at the gate)
    RUNNING = "running"  # requests in the batch, summed over pods
    RUNNING_MEAN = "runningMean"  # the same, averaged over the rate window (as the rates are)
    KV_CACHE_USAGE = "kvCacheUsage"  # mean KV-cache usage over pods, 0..1
    KV_CACHE_USAGE_MAX = "kvCacheUsageMax"  # highest KV-cache usage of any pod, 0..1
    TTFT_P50 = "ttftP50"  # seconds
    TTFT_P99 = "ttftP99"  # seconds
    TPOT_P99 = "tpotP99"  # p99 over requests of each request's time per output token
    TPOT_MEAN = "tpotMean"  # mean over requests of the same (exact: the histogram's sum/count)
    ERROR_RATE = "errorRate"  # failed / all completion requests, 0..1 (+ the gate's 503s)
    GPU_UTILIZATION = "gpuUtilization"  # mean DCGM_FI_DEV_GPU_UTIL / 100 over the pods' GPUs
    GPU_MEMORY_USED = "gpuMemoryUsed"  # mean FB used / (used + free), 0..1
    REQUESTS_TOTAL = "requestsTotal"  # completion requests since the pods started (+ refused)
    ERRORS_TOTAL = "errorsTotal"  # of which failed with a 5xx (+ the gate's 503s)
    PODS_REPORTING = "podsReporting"  # engine pods with fresh metrics
    SAMPLE_AGE = "sampleAge"  # seconds since the newest engine sample
    # Histograms, by bucket (Signals.buckets, not .values): the share of requests over an SLO
    TTFT_BUCKETS = "ttftBuckets"  # rate of requests by TTFT bucket (cumulative, by le)
    TPOT_BUCKETS = "tpotBuckets"  # the same for each request's time per output token


BUCKET_SIGNALS = frozenset({Signal.TTFT_BUCKETS, Signal.TPOT_BUCKETS})


# Bucket upper bounds of vllm:request_time_per_output_token_seconds (vLLM 0.32, as in
# shared/reference/vllm-0.32-metrics.txt). histogram_quantile interpolates inside a bucket, so a
# p99 that reads at the top of one is only an upper bound of the requests' own p99.
TPOT_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip


def _sel(extra: str) -> str:
    return "{" + extra + "}" if extra else ""


def _join(*parts: str) -> str:
    return ",".join(p for p in parts if p)


# Series that carry (namespace, pod, dsd, colour); used to attach dsd/colour to the DCGM
# series, which only know namespace and pod.
def _pod_info(filt: str) -> str:
    return (
        f"group by ({PROM_NAMESPACE}, pod, {PROM_DSD}, {PROM_COLOUR}) "
        f"(vllm:num_requests_running{_sel(filt)})"
    )


def _or_zero(expr: str, like: str) -> str:
    """`expr`, or 0 for the groups of `like` where it has no series (pods without the gate)."""
    return f"({expr} or 0 * {like})"


# The admission gate's counters (serving/deepseek_serving/admission.py): refused = answered 503
# without reaching vLLM; aborted = a stream vLLM had, aborted without its first token (vLLM
# counts it as an aborted request, its HTTP status as 200).
GATE_REFUSED = "deepseek_admission_refused_total"
GATE_ABORTED = "deepseek_admission_aborted_total"
GATE_WAITING = "deepseek_admission_waiting"


def promql(signal: Signal, filt: str = "") -> str:
    """PromQL for one signal over every DeepSeekDeployment (filt: extra label matchers,
    e.g. `namespace="prod",dsd="r1"` for a dashboard)."""
    s = _sel(filt)
    w = RATE_WINDOW
    g = GROUP_BY
    match signal:
        case Signal.REQUEST_RATE:
            done = f"sum by ({g}) (rate(vllm:request_success_total{s}[{w}]))"
            refused = f"sum by ({g}) (rate({GATE_REFUSED}{s}[{w}]))"
            return f"{done} + {_or_zero(refused, done)}"
        case Signal.QUEUE_DEPTH:
            waiting = f"sum by ({g}) (vllm:num_requests_waiting{s})"
            gate = f"sum by ({g}) ({GATE_WAITING}{s})"
            return f"{waiting} + {_or_zero(gate, waiting)}"
        case Signal.RUNNING:
            return f"sum by ({g}) (vllm:num_requests_running{s})"
        case Signal.RUNNING_MEAN:
            return f"sum by ({g}) (avg_over_time(vllm:num_requests_running{s}[{w}]))"
        case Signal.KV_CACHE_USAGE:
            return f"avg by ({g}) (vllm:kv_cache_usage_perc{s})"
        case Signal.KV_CACHE_USAGE_MAX:
            return f"max by ({g}) (vllm:kv_cache_usage_perc{s})"
        case Signal.TTFT_P50 | Signal.TTFT_P99:
            q = 0.5 if signal is Signal.TTFT_P50 else 0.99
            return f"histogram_quantile({q}, {promql(Signal.TTFT_BUCKETS, filt)})"
        case Signal.TPOT_P99:
            return f"histogram_quantile(0.99, {promql(Signal.TPOT_BUCKETS, filt)})"
        case Signal.TTFT_BUCKETS:
            return f"sum by ({g}, le) (rate(vllm:time_to_first_token_seconds_bucket{s}[{w}]))"
        case Signal.TPOT_BUCKETS:
            return (
                f"sum by ({g}, le) "
                f"(rate(vllm:request_time_per_output_token_seconds_bucket{s}[{w}]))"
            )
        case Signal.TPOT_MEAN:
            m = "vllm:request_time_per_output_token_seconds"
            return f"sum by ({g}) (rate({m}_sum{s}[{w}])) / sum by ({g}) (rate({m}_count{s}[{w}]))"
        case Signal.ERROR_RATE:
            err = _sel(_join(COMPLETION_HANDLERS, 'status="5xx"', filt))
            allr = _sel(_join(COMPLETION_HANDLERS, filt))
            every = f"sum by ({g}) (rate(http_requests_total{allr}[{w}]))"
            failed = _or_zero(f"sum by ({g}) (rate(http_requests_total{err}[{w}]))", every)
            refused = f"sum by ({g}) (rate({GATE_REFUSED}{s}[{w}]))"
            shed = f"{refused} + sum by ({g}) (rate({GATE_ABORTED}{s}[{w}]))"
            return f"({failed} + {_or_zero(shed, every)})\n/ ({every} + {_or_zero(refused, every)})"
        case Signal.GPU_UTILIZATION:
            return (
                f"avg by ({g}) (DCGM_FI_DEV_GPU_UTIL * on ({PROM_NAMESPACE}, pod) "
                f"group_left ({PROM_DSD}, {PROM_COLOUR}) {_pod_info(filt)}) / 100"
            )
        case Signal.GPU_MEMORY_USED:
            return (
                f"avg by ({g}) ((DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE))"
                f" * on ({PROM_NAMESPACE}, pod) group_left ({PROM_DSD}, {PROM_COLOUR}) "
                f"{_pod_info(filt)})"
            )
        case Signal.REQUESTS_TOTAL:
            every = f"sum by ({g}) (http_requests_total{_sel(_join(COMPLETION_HANDLERS, filt))})"
            return f"{every} + {_or_zero(f'sum by ({g}) ({GATE_REFUSED}{s})', every)}"
        case Signal.ERRORS_TOTAL:
            err = _sel(_join(COMPLETION_HANDLERS, 'status="5xx"', filt))
            allr = _sel(_join(COMPLETION_HANDLERS, filt))
            every = f"sum by ({g}) (http_requests_total{allr})"
            shed = f"sum by ({g}) ({GATE_REFUSED}{s}) + sum by ({g}) ({GATE_ABORTED}{s})"
            return (
                f"{_or_zero(f'sum by ({g}) (http_requests_total{err})', every)} + "
                f"{_or_zero(shed, every)}"
            )
        case Signal.PODS_REPORTING:
            return f"count by ({g}) (vllm:num_requests_running{s})"
        case Signal.SAMPLE_AGE:
            return f"time() - max by ({g}) (timestamp(vllm:num_requests_running{s}))"
    raise ValueError(signal)  # pragma: no cover


@dataclass(frozen=True)
class Key:
    """Which engine pods a set of signals describes."""

    namespace: str
    dsd: str
    colour: str


@dataclass(frozen=True)
class Signals:
    """What one tick observed for one (namespace, dsd, colour). A missing value is None."""

    values: dict[Signal, float] = field(default_factory=dict)
    observed_at: float = 0.0
    # BUCKET_SIGNALS: (le, cumulative rate) ascending, the last le math.inf
    buckets: dict[Signal, tuple[tuple[float, float], ...]] = field(default_factory=dict)

    def get(self, signal: Signal) -> float | None:
        return self.values.get(signal)

    def as_status(self) -> dict[str, float]:
        """Signal values keyed by name, for status.lastScalingDecision.signals."""
        return {s.value: round(v, 6) for s, v in sorted(self.values.items())}


def share_over(buckets: tuple[tuple[float, float], ...] | None, threshold: float) -> float | None:
    """Share of a histogram's observations above `threshold`, from its cumulative buckets
    (le, count or rate), interpolating linearly inside the bucket that holds the threshold as
    histogram_quantile does. None when the histogram is empty or absent.

    E.g. ((0.5, 90), (1.0, 98), (inf, 100)) over 0.75: 90 + (98 - 90) / 2 = 94 within, 0.06
    over. Over 2.0 (past the last finite bound) every observation in +Inf counts as over: 0.02.
    """
    if not buckets:
        return None
    # rate() extrapolates each bucket series on its own, so the cumulative rates can dip a
    # little; histogram_quantile raises each to the largest below it, and so does this.
    total = max(cum for _, cum in buckets)
    if total <= 0:
        return None
    below, lo = 0.0, 0.0
    for le, raw in buckets:
        cum = max(raw, below)
        if threshold <= le:
            if math.isinf(le):
                within = below  # beyond the last finite bound: nothing is known to be within
            else:
                within = below + (cum - below) * (threshold - lo) / (le - lo) if le > lo else cum
            return min(max(1.0 - within / total, 0.0), 1.0)
        below, lo = cum, le
    return min(max(1.0 - below / total, 0.0), 1.0)


def tail_quantile(buckets: tuple[tuple[float, float], ...] | None, q: float) -> float | None:
    """The q-quantile of a latency histogram from its cumulative buckets (le, count or rate),
    reading the tail inside the bucket that holds it as exponential: the share of observations
    above x falls log-linearly from the bucket's lower bound to its upper one. None where it
    cannot be read: no observations, or the bucket holds the whole tail (nothing lies above its
    bound, so only the bound is known). Past the last finite bound, that bound (as
    histogram_quantile reads it).

    histogram_quantile interpolates linearly, as if a bucket's observations were spread evenly
    over it; a tail thins out inside a bucket, so in a wide one the linear read is above the
    requests' quantile (vLLM's TPOT buckets are 25 to 50 ms wide around a 100 ms SLO: a p99 of
    87 ms reads as 98 ms). An exponential tail is read exactly, a heavier one still from above.

    E.g. 2% of the requests above 0.1 s and 0.5% above 0.15 s: the share above falls 4x over
    the 50 ms bucket, so the p99 (1% above) lies ln 2 / ln 4 of the way in, at 0.125 s (the
    linear read: 0.133 s).
    """
    if not buckets:
        return None
    total = max(cum for _, cum in buckets)
    if total <= 0:
        return None
    target = 1.0 - q
    below, lo = 0.0, 0.0
    for le, raw in buckets:
        cum = max(raw, below)  # rate() extrapolation can make the cumulative rates dip
        if cum / total >= q:
            if math.isinf(le):
                return lo
            above_lo, above_hi = 1.0 - below / total, 1.0 - cum / total
            if above_hi <= 0:
                return None
            return lo + (le - lo) * math.log(above_lo / target) / math.log(above_lo / above_hi)
        below, lo = cum, le
    return lo
