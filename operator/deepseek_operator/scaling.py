"""The autoscaling policy: (signals, current state, settings, now) -> decision with reasons. Pure.

Demand is counted in concurrent requests (running + waiting beyond a tolerated queue), and a
replica's capacity is the concurrency it would hold at the target KV-cache usage, calibrated
from what the replicas report now: an LLM replica fills its KV cache long before its GPU
"utilization" says anything (NVML reports ~100% for any batch size). On top of that target
tracking:

- target tracking on TPOT p99 at `targets.tpotSloFraction` (70%) of its SLO (decode time
  grows with the batch, so a replica whose KV cache is large reaches the TPOT SLO before it
  fills), sized on throughput:
  the request rate arriving (finished + backlog growth) over what one replica serves at that
  TPOT. That per-replica rate is learned from steady periods (every replica Ready for a whole
  rate window, no queue) as weighted means of TPOT p99 and the rate per replica. Until a
  steady period has been seen, the fleet is sized in proportion to TPOT p99 / aim. Sizing on
  the arrival rate matters under overload: TPOT saturates and running requests pile up
  (Little's law), so sizing on TPOT now asks for several times what the load needs;
- an SLO guard adds replicas when TTFT or TPOT p99 breach the spec's SLO (once the latency
  window describes the Ready replicas: not in the minute after their count changed), and no
  replica is removed while latency is above 80% of its SLO or pods are still starting;
- lead-time compensation (opt-in, scaleUp.projectRisingLoad): a pod ordered now serves only
  once it has loaded its model (minutes for R1), so while the request rate rises steadily (a
  least-squares trend over 3 minutes, t-statistic >= 4) the fleet is sized for the rate
  projected to when a new pod would be Ready. That start time is learned from the operator's
  own scale-ups (scale-up -> all pods Ready); until one has been seen nothing is projected;
- panic mode (as Knative's KPA) scales up at once when demand jumps past `panicThreshold` x
  capacity, and forbids scale-down until the burst has been gone a whole down-window;
- stabilization windows (as the HPA's): up uses the lowest recommendation of the up-window
  (0 s: the newest), down the highest of the down-window (300 s), so one quiet minute does not
  remove a replica that takes ten minutes to bring back;
- step limits, min/max, scale to zero only when asked;
- it never asks for pods the cluster cannot place (unschedulable pods -> CapacityLimited), and
  it holds on missing or stale metrics: it never scales down on missing data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .api.spec import ScalingSpec
from .api.status import CapacityModel, Recommendation, ScalingState
from .signals import Signal, Signals

MIN_KV_FOR_CALIBRATION = 0.05  # below this, KV usage says too little about capacity
MAX_CAPACITY_STRETCH = 20.0  # at low usage, extrapolate capacity at most this far
TOLERANCE = 0.1  # like the HPA: ratios within 10% of 1.0 do not move replicas
# No scale-down while TTFT or TPOT p99 is above this fraction of its SLO: KV-cache usage can be
# low while latency is already near the limit (a large KV cache, e.g. R1 on H200, is bound by
# decode speed long before it fills), and removing a replica then breaches the SLO.
LATENCY_HEADROOM = 0.8
HISTORY_LIMIT = 256
TREND_WINDOW = 180.0  # seconds of request-rate history the trend is fitted on
TREND_MIN_POINTS = 6
TREND_MIN_TSTAT = 4.0  # slope / its standard error: noise on a flat load projects nothing
TREND_MAX_GROWTH = 1.0  # project at most a doubling of the load
START_SECONDS_WEIGHT = 0.5  # weight of the newest observed start time in the learned one
# Capacity learning (see CapacityModel): a sample is taken on a tick where every replica has been
# Ready and reporting for a whole rate window and nothing queues beyond the tolerated queue.
STEADY_SECONDS = 60.0  # the PromQL rate window: the rates then describe this replica count
CAPACITY_DECAY = 0.98  # weight of older samples per new one (~50 samples, ~12 min at 15 s)
CAPACITY_MIN_SAMPLES = 4  # fewer: size in proportion to TPOT p99 instead
BACKLOG_LOOKBACK = (30.0, 120.0)  # age range of the history entry backlog growth is taken from


@dataclass(frozen=True)
class ScalingInputs:
    """What the autoscaler observes for the serving colour of one DeepSeekDeployment."""

    replicas: int  # spec.replicas now (includes pods still starting)
    ready: int  # Ready engine pods
    signals: Signals | None  # from the latest Prometheus poll; None if none
    unschedulable: int = 0  # engine pods the scheduler cannot place
    signal_age: float | None = None  # seconds since the newest engine sample
    rollout_in_flight: bool = False
    colour: str = "blue"  # the serving colour (what the learned capacity describes)


@dataclass(frozen=True)
class ScalingDecision:
    replicas: int
    direction: str  # up | down | hold
    reason: str  # CamelCase
    message: str
    signals: dict[str, float] = field(default_factory=dict)
    limited: tuple[str, str] | None = None  # (reason, message) for the ScalingLimited condition
    metrics_ok: bool = True
    state: ScalingState = field(default_factory=ScalingState)


def _history(state: ScalingState, now: float, keep: float, current: int) -> list[Recommendation]:
    """Recommendations still inside the longest window. A fresh history starts with the current
    replica count (as the HPA seeds it), so a restart or a new resource never scales down
    before a whole down-window has been observed."""
    if not state.recommendations:
        # just before now, so a 0 s up-window (react to the newest) does not see it
        return [Recommendation(time=now - 0.001, replicas=current)]
    return [r for r in state.recommendations if now - r.time <= keep][-HISTORY_LIMIT:]


def learn_start(
    state: ScalingState, inp: ScalingInputs, now: float
) -> tuple[float | None, float | None]:
    """(scale_up_since, start_seconds) after this tick: a pending scale-up whose pods are all
    Ready now teaches how long pods take to start (scheduling, image, model load)."""
    since, learned = state.scale_up_since, state.start_seconds
    if since is not None and inp.ready >= inp.replicas:
        took = max(0.0, now - since)
        w = START_SECONDS_WEIGHT
        learned = took if learned is None else w * took + (1 - w) * learned
        since = None
    return since, (None if learned is None else round(learned, 1))


def rate_trend(points: list[tuple[float, float]], now: float) -> tuple[float, float, float] | None:
    """(slope in req/s per second, fitted rate now, t-statistic of the slope) of a least-squares
    line through (time, request rate) points; None when there are too few or they span too
    little time."""
    k = len(points)
    if k < TREND_MIN_POINTS or points[-1][0] - points[0][0] < TREND_WINDOW / 2:
        return None
    mt = sum(p[0] for p in points) / k
    mr = sum(p[1] for p in points) / k
    var = sum((p[0] - mt) ** 2 for p in points)
    if var <= 0:
        return None
    slope = sum((p[0] - mt) * (p[1] - mr) for p in points) / var
    resid = sum((p[1] - mr - slope * (p[0] - mt)) ** 2 for p in points) / (k - 2)
    se = math.sqrt(resid / var)
    tstat = slope / se if se > 0 else (math.inf if slope > 0 else 0.0)
    return slope, mr + slope * (now - mt), tstat


def learn_capacity(
    model: CapacityModel | None, colour: str, rate: float, tpot: float
) -> CapacityModel:
    """Add one steady sample (requests/s per Ready replica, TPOT p99) to the weighted means
    (older samples decay by CAPACITY_DECAY). A new serving colour starts a new model: after a
    rollout the replicas are a different build."""
    if model is None or model.colour != colour:
        model = CapacityModel(colour=colour)
    w = CAPACITY_DECAY * model.weight + 1.0
    return CapacityModel(
        colour=colour,
        samples=model.samples + 1,
        weight=round(w, 6),
        mean_rate=round(model.mean_rate + (rate - model.mean_rate) / w, 6),
        mean_tpot=round(model.mean_tpot + (tpot - model.mean_tpot) / w, 8),
    )


def replica_capacity(model: CapacityModel | None, colour: str, aim: float) -> float | None:
    """Requests/s one replica of `colour` serves with TPOT p99 at `aim`, or None while fewer
    than CAPACITY_MIN_SAMPLES steady samples were taken. TPOT is taken as proportional to the
    rate per replica (a line through the origin and the weighted means). The real line has a
    positive intercept (the fixed cost of a decode step): below the rates seen this model
    underestimates what a replica takes, which keeps some headroom at low load, where a
    burst of a few times the load would otherwise meet a fleet sized to the last request."""
    if (
        model is None
        or model.colour != colour
        or model.samples < CAPACITY_MIN_SAMPLES
        or model.mean_rate <= 0
        or model.mean_tpot <= 0
    ):
        return None
    return aim * model.mean_rate / model.mean_tpot


def arrival_rate(
    history: list[Recommendation], finished: float, backlog: float, now: float
) -> tuple[float, float]:
    """(requests/s arriving, of which backlog growth): the finished rate plus how fast the
    requests running or waiting grew since the history entry nearest a rate window ago. Under
    overload the finished rate says what the replicas manage, not what arrives."""
    lo, hi = BACKLOG_LOOKBACK
    past = [r for r in history if r.backlog is not None and lo <= now - r.time <= hi]
    if not past:
        return finished, 0.0
    ref = min(past, key=lambda r: abs(now - r.time - STEADY_SECONDS))
    assert ref.backlog is not None
    growth = (backlog - ref.backlog) / (now - ref.time)
    return max(0.0, finished + growth), growth


def decide(
    spec: ScalingSpec, inp: ScalingInputs, state: ScalingState, now: float, interval: float
) -> ScalingDecision:
    """One autoscaling decision."""
    n = inp.replicas
    lo = spec.min_replicas  # 0 only with scaleToZero (the CRD enforces it)
    hi = spec.max_replicas
    vals = inp.signals.values if inp.signals is not None else {}
    seen = {k.value: round(v, 6) for k, v in sorted(vals.items())}
    keep = (
        max(spec.scale_down.stabilization_seconds, spec.scale_up.stabilization_seconds) + interval
    )

    since, learned = learn_start(state, inp, now)
    reporting = vals.get(Signal.PODS_REPORTING, 0.0)
    # Since when the Ready count is what it is now: the rate and latency windows describe these
    # replicas once a whole window has passed.
    ready_since = now
    if state.ready_count == inp.ready and state.ready_since is not None:
        ready_since = state.ready_since
    elif state.last_decision_time is None:  # first decision: no change known of
        ready_since = now - STEADY_SECONDS
    settled = inp.ready > 0 and now - ready_since >= STEADY_SECONDS
    # Every replica that can run is Ready: pods the scheduler cannot place (no GPUs) never will.
    placeable = max(0, n - inp.unschedulable)
    steady = (
        settled
        and inp.ready > 0
        and inp.ready >= placeable
        and reporting >= inp.ready
        and not inp.rollout_in_flight
    )
    cap_model = state.capacity

    def next_state(history: list[Recommendation], panic: float | None, up: bool) -> ScalingState:
        return ScalingState(
            recommendations=history[-HISTORY_LIMIT:],
            panic_until=panic,
            last_decision_time=now,
            scale_up_since=now if up else since,
            start_seconds=learned,
            ready_since=ready_since,
            ready_count=inp.ready,
            capacity=cap_model,
        )

    def hold(reason: str, message: str, metrics_ok: bool = True) -> ScalingDecision:
        target = min(max(n, lo), hi)  # bounds still apply (e.g. after maxReplicas was lowered)
        direction = "hold" if target == n else ("up" if target > n else "down")
        if n > hi:
            reason, message = "AboveMaxReplicas", f"clamped {n} to maxReplicas {hi}"
        elif n < lo:
            reason, message = "BelowMinReplicas", f"raised {n} to minReplicas {lo}"
        new_state = next_state(_history(state, now, keep, n), state.panic_until, target > n)
        return ScalingDecision(
            target, direction, reason, message, seen, metrics_ok=metrics_ok, state=new_state
        )

    if not spec.enabled:
        return hold(
            "AutoscalingDisabled", "scaling.enabled is false; replicas follow spec.replicas"
        )

    # -- missing or stale data: hold, never scale down ------------------------------------
    running = vals.get(Signal.RUNNING)
    waiting = vals.get(Signal.QUEUE_DEPTH)
    kv = vals.get(Signal.KV_CACHE_USAGE)
    stale_after = max(3 * interval, 60.0)
    if inp.ready > 0 and (running is None or waiting is None or kv is None):
        return hold(
            "MetricsMissing",
            "no engine metrics for the serving colour; holding replicas",
            metrics_ok=False,
        )
    if inp.ready > 0 and inp.signal_age is not None and inp.signal_age > stale_after:
        return hold(
            "MetricsStale",
            f"newest engine sample is {inp.signal_age:.0f}s old; holding replicas",
            metrics_ok=False,
        )
    if inp.ready > 0 and reporting < inp.ready / 2:
        return hold(
            "MetricsIncomplete",
            f"only {reporting:.0f} of {inp.ready} Ready pods report metrics; holding replicas",
            metrics_ok=False,
        )
    if inp.ready == 0:
        return hold("NoReadyReplicas", "no Ready replica reports load yet; holding replicas")

    assert running is not None and waiting is not None and kv is not None
    t = spec.targets
    per_pod = max(reporting, 1.0)

    tolerated_queue = t.queue_depth_per_replica * per_pod
    rate_now = vals.get(Signal.REQUEST_RATE)
    tpot_now = vals.get(Signal.TPOT_P99)
    backlog = running + waiting
    past = _history(state, now, keep, n)
    arriving, growth = arrival_rate(past, rate_now or 0.0, backlog, now)

    # -- capacity learning: a steady tick adds a sample ------------------------------------
    if (
        steady
        and waiting <= tolerated_queue
        and rate_now is not None
        and rate_now > 0
        and abs(growth) <= 0.1 * rate_now
        and tpot_now is not None
    ):
        cap_model = learn_capacity(cap_model, inp.colour, rate_now / inp.ready, tpot_now)

    # -- target tracking -----------------------------------------------------------------
    demand = running + max(0.0, waiting - tolerated_queue)
    reasons: list[tuple[float, str, str]] = []  # (replicas wanted, reason, why)
    if kv >= MIN_KV_FOR_CALIBRATION and running > 0:
        stretch = min(t.kv_cache_usage / kv, MAX_CAPACITY_STRETCH)
        capacity = (running / per_pod) * stretch
        want = demand / capacity
        why = (
            f"{running:.0f} running + {waiting:.0f} waiting; a replica holds ~{capacity:.1f} "
            f"requests at {t.kv_cache_usage:.0%} KV cache (now {kv:.0%})"
        )
        reasons.append(
            (
                want,
                "QueueBuildup"
                if waiting > tolerated_queue
                else ("HighKVCacheUsage" if kv > t.kv_cache_usage else "LowLoad"),
                why,
            )
        )
    elif waiting > tolerated_queue:
        want = per_pod * (1 + (waiting - tolerated_queue) / max(running, per_pod))
        reasons.append((want, "QueueBuildup", f"{waiting:.0f} requests waiting"))
    else:
        reasons.append(
            (
                per_pod * kv / t.kv_cache_usage,
                "LowLoad",
                f"KV cache {kv:.0%} of target {t.kv_cache_usage:.0%}",
            )
        )
    if t.running_per_replica is not None:
        reasons.append(
            (
                running / t.running_per_replica,
                "HighConcurrency",
                f"{running / per_pod:.1f} running per replica, target {t.running_per_replica:g}",
            )
        )
    fraction = t.tpot_slo_fraction
    aim = fraction * spec.slo.tpot_p99_seconds
    per_replica = replica_capacity(cap_model, inp.colour, aim)
    if per_replica is not None and rate_now is not None and cap_model is not None:
        want_tp = arriving / per_replica
        reasons.append(
            (
                want_tp,
                "HighTPOT" if want_tp > per_pod else "LowLoad",
                f"{arriving:.2f} req/s arriving ({rate_now:.2f} finished, backlog "
                f"{growth:+.2f}/s); a replica serves ~{per_replica:.2f} req/s at TPOT p99 "
                f"{aim:.3g}s ({fraction:.0%} of the SLO; learned from "
                f"{cap_model.samples} steady samples)",
            )
        )
    elif tpot_now is not None and running > 0:
        reasons.append(
            (
                per_pod * tpot_now / aim,
                "HighTPOT" if tpot_now > aim else "LowLoad",
                f"TPOT p99 {tpot_now:.3g}s, aiming at {aim:.3g}s ({fraction:.0%} of the SLO)",
            )
        )
    gpu = vals.get(Signal.GPU_UTILIZATION)
    if t.gpu_utilization is not None and gpu is not None:
        reasons.append(
            (
                per_pod * gpu / t.gpu_utilization,
                "HighGPUUtilization",
                f"GPU utilization {gpu:.0%}, target {t.gpu_utilization:.0%}",
            )
        )

    want, reason, why = max(reasons, key=lambda r: r[0])

    # -- lead-time compensation ----------------------------------------------------------
    if spec.scale_up.project_rising_load and learned and rate_now is not None:
        points = [
            (r.time, r.request_rate)
            for r in state.recommendations
            if r.request_rate is not None and 0 < now - r.time <= TREND_WINDOW
        ]
        trend = rate_trend([*points, (now, rate_now)], now)
        if trend is not None:
            slope, fitted, tstat = trend
            if slope > 0 and fitted > 0 and tstat >= TREND_MIN_TSTAT:
                growth = min(slope * learned / fitted, TREND_MAX_GROWTH)
                want, reason = want * (1 + growth), "RisingLoad"
                why = (
                    f"request rate rising {slope * 60:.2f} req/s per minute, +{growth:.0%} by "
                    f"the time a new pod is Ready (~{learned:.0f}s); now {why}"
                )

    ratio = want / per_pod
    if abs(ratio - 1.0) <= TOLERANCE:
        raw = n
        reason, why = "WithinTarget", f"load within {TOLERANCE:.0%} of target ({why})"
    else:
        # An absolute count: pods still starting are part of it, so a scale-up is not
        # repeated while they load.
        raw = math.ceil(want - 1e-9)

    # -- SLO guard ----------------------------------------------------------------------
    slo = spec.slo
    ttft, tpot = vals.get(Signal.TTFT_P99), vals.get(Signal.TPOT_P99)
    breach = max(
        (ttft / slo.ttft_p99_seconds) if ttft is not None else 0.0,
        (tpot / slo.tpot_p99_seconds) if tpot is not None else 0.0,
    )
    # Pods the scheduler cannot place are not starting: they would wait for GPUs forever, and a
    # scale-down removes them first (a ReplicaSet deletes unscheduled pods before running ones).
    starting = max(0, n - inp.ready - inp.unschedulable)
    if breach > 1.0 and settled and not inp.rollout_in_flight:
        # Sized on the Ready replicas that breach: pods still starting count towards it, so
        # the guard acts during a cold start without piling up more pods each tick. It waits
        # a rate window after the Ready count changed: until then the latency window shows the
        # fleet before (and pods just Ready take a burst of prefills as the router fills them).
        guard = math.ceil(inp.ready * min(2.0, breach))
        guard = max(guard, inp.ready + 1)
        if guard > raw and guard > n:
            which = "TTFT" if ttft is not None and ttft / slo.ttft_p99_seconds >= breach else "TPOT"
            value = ttft if which == "TTFT" else tpot
            limit = slo.ttft_p99_seconds if which == "TTFT" else slo.tpot_p99_seconds
            raw = guard
            reason = f"{which}AboveSLO"
            why = f"{which} p99 {value:.3g}s > SLO {limit:g}s"

    # -- panic mode ----------------------------------------------------------------------
    panic_until = state.panic_until if state.panic_until and state.panic_until > now else None
    if n > 0 and raw >= spec.panic_threshold * n:
        panic_until = now + spec.scale_down.stabilization_seconds
        reason, why = "Panic", f"demand {raw} replicas >= {spec.panic_threshold:g} x {n}: {why}"

    history = [
        *past,
        Recommendation(
            time=now,
            replicas=raw,
            request_rate=None if rate_now is None else round(rate_now, 4),
            backlog=backlog,
        ),
    ]

    # -- stabilization -------------------------------------------------------------------
    target = raw
    if raw > n:
        window = [
            r.replicas for r in history if now - r.time <= spec.scale_up.stabilization_seconds
        ]
        target = max(n, min(window or [raw]))
        step = spec.scale_up.max_step_replicas
        if panic_until is not None:
            step = max(step, n)  # panic: at least double
        target = min(target, n + step)
    elif raw < n:
        if panic_until is not None:
            target = n
            reason, why = (
                "PanicHold",
                f"panic mode until {panic_until - now:.0f}s from now; not scaling down",
            )
        elif starting > 0:
            target = n
            reason, why = "WaitingForStartingPods", f"{starting} pod(s) still starting"
        elif breach > LATENCY_HEADROOM:
            target = n
            reason, why = (
                "LatencyNearSLO",
                f"latency at {breach:.0%} of its SLO (> {LATENCY_HEADROOM:.0%}); not scaling down",
            )
        else:
            window = [
                r.replicas for r in history if now - r.time <= spec.scale_down.stabilization_seconds
            ]
            target = min(n, max(window or [raw]))
            target = max(target, n - spec.scale_down.max_step_replicas)
            if target == n:
                reason, why = (
                    "Stabilizing",
                    (
                        f"lower load ({raw} replicas would do) must last "
                        f"{spec.scale_down.stabilization_seconds}s before scaling down"
                    ),
                )

    # -- capacity and bounds ---------------------------------------------------------------
    limited: tuple[str, str] | None = None
    if target > n and inp.unschedulable > 0:
        limited = (
            "InsufficientGPUCapacity",
            f"wanted {target} replicas but {inp.unschedulable} pod(s) cannot be scheduled; "
            f"holding at {n}",
        )
        target, reason, why = n, "CapacityLimited", limited[1]
    if target > hi:
        limited = ("AtMaxReplicas", f"wanted {target} replicas; maxReplicas is {hi}")
        target, why = hi, f"{why}; capped at maxReplicas {hi}"
    floor = lo
    if target < floor:
        target = floor
    if spec.scale_to_zero and target == 0 and (running > 0 or waiting > 0):
        target = max(1, min(n, hi))

    direction = "up" if target > n else "down" if target < n else "hold"
    new_state = next_state(history, panic_until, target > n)
    return ScalingDecision(
        replicas=target,
        direction=direction,
        reason=reason,
        message=f"{n} -> {target}: {why}",
        signals=seen,
        limited=limited,
        state=new_state,
    )


def scale_event(decision: ScalingDecision, current: int) -> tuple[str, str] | None:
    """(reason, message) of the Event for a decision that changes replicas."""
    if decision.replicas == current:
        return None
    verb = "ScaledUp" if decision.replicas > current else "ScaledDown"
    return verb, f"{decision.reason}: {decision.message}"


def replicas_to_write(spec_replicas: int | None, decision: ScalingDecision) -> int | None:
    """What the autoscaler writes to spec.replicas after a decision (None: nothing). An unset
    spec.replicas (it defaults to minReplicas) is written once, as an HPA owns its target's
    replicas: until then the scale subresource cannot even be read."""
    if spec_replicas is None or decision.replicas != spec_replicas:
        return decision.replicas
    return None
