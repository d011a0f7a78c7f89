"""The quantization-ladder policy: (spec, SLO, observations, memory, now) -> the rung to serve.
Pure: no clock, no I/O; everything it remembers is in the QuantizationStatus it returns.

The ladder is ordered from highest precision to most compressed (e.g. fp8 -> fp8-kv8 -> int4).
A lighter rung is lever 3 of the design's "acting under GPU pressure": it is used when more
replicas cannot come, never instead of them, and the policy climbs back with hysteresis.

`decide_mode` runs these steps; the first that decides returns:

| step                  | when                                             | reason              |
|-----------------------|--------------------------------------------------|---------------------|
| `_pinned`             | policy.automatic is false                        | Pinned              |
| `_hold`               | the switch's rollout was rolled back / no        | SwitchRolledBack,   |
|                       | trustworthy metrics / a transition running       | MetricsMissing,     |
|                       |                                                  | TransitionInFlight  |
| (`_track` updates the pressure and relief clocks for the steps below)                   |
| `_leave_slower_rung`  | the served rung was learned to carry no more     | LighterRungNoGain   |
|                       | than the rung above on our GPUs                  |                     |
| `_step_down`          | pressure for stepDownAfterSeconds, replicas      | StepDown (or why    |
|                       | cannot help (or cannot carry the forecast), a    | not: ScalingCanHelp,|
|                       | lighter rung carries more, and the forecast has  | StepDownNoGain,     |
|                       | the pressure outlast the switch or it has paid   | AwaitingPayback ...)|
|                       | for itself (`_payback_seconds`); straight to the |                     |
|                       | rung `_pick` names                               |                     |
| `_step_up`            | relief for stepUpAfterSeconds, to the highest    | StepUp (or          |
|                       | rung with headroom                               | ReliefBuilding)     |
| `_steady`             | otherwise                                        | Steady              |

Both switches pass `_switch_allowed` (minDwellSeconds since the last switch, at most
maxSwitchesPerHour in the last hour): a switch is a rollout that replaces every replica, and
under a GPU cap it is a stepped one: each step takes a replica out, waits for it to finish what
it holds (its drain) and for the new rung's replica to start (a cold start). A switch therefore
lasts `switch_seconds` (Distill-70B on 16 H100s: 4 x (~280 s + ~120 s), ~27 minutes), and the
policy plans over that duration, not over the next minute.

Pressure: the SLO is breached (TTFT p99 > slo.ttft or TPOT p99 > slo.tpot), or about to be: the
arriving rate is above what the Ready replicas carry on the served rung, or the forecast over a
switch's duration (`forecast_load`: the period's profile where the autoscaler has seen one, else
a sustained trend over the ladder's own minute-by-minute memory of the load) rises above what the
served rung carries on all the GPUs it can have. A rising forecast starts the switch while the
load is still low, when the drains are short and the replicas left carry what arrives. Relief: a
rung above, on the GPUs held plus the free ones (at most maxReplicas replicas), would carry the
arriving rate, the forecast over a switch, and the busiest minute of the time a step back down
would take (`back_down_seconds`) at <= stepUpHeadroom of its capacity.

Capacity is requests/s per replica within the SLO, learned per rung (`learn_rung_capacity`, fed
by the caller from steady periods). A rung not yet learned gets a prior: the capacity of a
learned rung times the ratio of their capacity factors, which is the rung's declared
`capacityFactor` or a factor derived from its weights and KV cache, per GPU, times its GPUs per
replica; the fp8 KV cache's share of a prior counts only while the served rung's KV cache binds
and its decode steps are within the TPOT SLO (`_kv_why_not`). Worked example (R1 on 32 H200s,
fp8 learned at 4.7 req/s per 8-GPU replica): fp8-kv8 (8 GPUs) ~4.7 x 1.25 = 5.9 req/s per
replica, 4 replicas ~23.5 req/s; int4 AWQ (4 GPUs) ~4.7 x 1.0/1.6 x 4/8 = 1.5 req/s per
replica, 8 replicas ~11.8 req/s. Where the autoscaler has learned the served rung's capacity it
says whether the KV cache sets it (then the fp8 KV credit counts). Priors are guesses;
learned values replace them, and a lighter rung that turns out no faster is left (step up).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from .api.spec import KVCacheDtype, QuantizationRung, QuantizationSpec, SloSpec, WeightPrecision
from .api.status import LoadSample, QuantizationStatus, QuantizationSwitch
from .scaling import TREND_MAX_FACTOR, Demand, ScalingDecision, outlook, sustained_slope
from .signals import Signal

# Prior throughput per GPU by weight precision, relative to bf16. fp8: vLLM's FP8 announcement
# (Neural Magic / vLLM blog, 2024-07: "up to 1.6x" throughput). int4: 1.0. Marlin's W4A16
# kernels decode near 4x faster than fp16 at small batches (IST-DASLab/marlin: up to batch
# 16-32), but the ladder acts under pressure, where batches are large, and there W4A16 runs at
# bf16's speed (gpustack's vLLM measurements: W4A16 13,605 vs BF16 13,305 tok/s on H100; AWQ
# 9,756). An int4 rung still gains by needing fewer GPUs per replica (its gpusPerReplica).
# These are guesses: learned capacity replaces them (testbed/sim/presets.py models int4 as
# compute-bound at large batches).
WEIGHT_FACTOR: dict[WeightPrecision, float] = {
    WeightPrecision.BF16: 1.0,
    WeightPrecision.FP8: 1.6,
    WeightPrecision.INT4: 1.0,
}
# An fp8 KV cache holds twice the tokens: more concurrent requests where the cache is the limit
# (estimate; gpustack measured +1.6% where it was not).
FP8_KV_FACTOR = 1.25
# A larger (fp8) KV cache adds concurrency, which carries more only where the cache is what
# limits a replica: vLLM admits requests until its blocks run out, so a KV-bound replica reads
# ~95-100% usage (R1 on 8xH200 with reasoning-length outputs: 99%), a decode-bound one far less
# (the same with chat lengths at 1.5x overload: ~50%, TPOT over the SLO; bench/README.md).
# Usage alone is not enough: under a deep overload any fleet's cache fills (chat at 2x: 99%)
# while its steps already take longer than the TPOT SLO allows; more concurrency there only
# lengthens every step, so the credit also needs TPOT p99 within slo.tpot (reasoning at 2x:
# 0.1 s at a 0.1 s SLO, chat at 2x: 0.39 s; bench/README.md).
KV_BOUND = 0.9
# An fp8 KV cache holds twice the tokens of a 16-bit one: where the cache binds, up to twice
# the running requests. The prior of a step down counts the least such a cache adds
# (FP8_KV_FACTOR), the prior of a step up to a rung without it the most it may have added: each
# prior is taken on the side where the switch it justifies is the less likely mistake (the
# Distill-70B reasoning preset: 2.01 req/s per replica with an fp8 KV cache, 1.25 without,
# a ratio of 1.6, where FP8_KV_FACTOR alone would have promised fp8 1.6 req/s).
KV_MAX_GAIN = 2.0
MIN_GAIN = 1.1  # a lighter rung must carry 10% more on our GPUs to be worth a rollout
LEARN_WEIGHT = 0.3  # weight of the newest capacity sample in the learned mean
# A replica taken out of service finishes what it holds before its GPUs are free: its queue,
# then its running requests, the last of which ends some mean request times later. Reasoning
# lengths (bench.quantization: lognormal, sd 0.6, capped at 8,000 tokens) put the longest of a
# replica's ~30 running requests at 2-3x the mean; 2 is the estimate.
DRAIN_TAIL = 2.0
# The ladder's own memory of the load: the autoscaler keeps one cold start of rate points, too
# short to tell a trend over a switch that takes tens of minutes.
LOAD_EVERY = 60.0  # a point a minute
LOAD_KEEP = 3600.0  # for an hour
TREND_MIN_SPAN = 600.0  # the trend a switch is planned on spans at least ten minutes
HOUR = 3600.0
SWITCH_HISTORY = 20

PINNED = "Pinned"
METRICS_MISSING = "MetricsMissing"
TRANSITION_IN_FLIGHT = "TransitionInFlight"
SWITCH_ROLLED_BACK = "SwitchRolledBack"
STEP_DOWN = "StepDown"
STEP_UP = "StepUp"
LIGHTER_RUNG_NO_GAIN = "LighterRungNoGain"
PRESSURE_BUILDING = "PressureBuilding"
SCALING_CAN_HELP = "ScalingCanHelp"
AT_LOWEST_RUNG = "AtLowestRung"
STEP_DOWN_NO_GAIN = "StepDownNoGain"
AWAITING_PAYBACK = "AwaitingPayback"
RELIEF_BUILDING = "ReliefBuilding"
DWELL_TIME = "DwellTime"
SWITCH_LIMIT = "SwitchLimit"
STEADY = "Steady"


@dataclass(frozen=True)
class ModeInputs:
    """What the policy observes for one DeepSeekDeployment."""

    served: str  # rung the active colour serves now
    replicas: int  # replicas asked for now
    ready: int
    max_replicas: int
    wanted_replicas: int  # what the autoscaler wanted before limits
    scaling_limited: bool  # autoscaler capped by maxReplicas or lack of GPUs
    free_gpus: int  # free allocatable GPUs of the right product, not ours
    held_gpus: int  # GPUs our serving pods hold now
    arrival_rate: float | None  # req/s arriving (None: unknown)
    ttft_p99: float | None
    tpot_p99: float | None
    cold_start_s: float | None  # learned seconds for a new replica to be Ready
    metrics_ok: bool
    transition_in_flight: bool  # a rollout/transition is running: hold
    default_gpus_per_replica: int = 1  # resources.gpusPerReplica (rungs without their own)
    kv_cache_usage: float | None = None  # mean KV-cache usage of the Ready replicas (0..1)
    # the rollout to the target rung was rolled back or aborted (its version is kept out)
    switch_rolled_back: bool = False
    drain_s: float | None = None  # seconds a replica taken out finishes its requests in
    # the part of that drain whose capacity goes unused (`drain_idle_seconds`); None: all of it
    drain_idle_s: float | None = None
    # whether the served rung's learned capacity is set by its KV cache (scaling.Capacity);
    # None: not learned yet
    kv_binds: bool | None = None
    # the demand forecast h seconds ahead (scaling.outlook bound to this tick); None: no forecast
    outlook: Callable[[float], Demand] | None = None


@dataclass(frozen=True)
class QuantizationDecision:
    target: str  # rung to serve
    reason: str  # CamelCase
    message: str
    state: QuantizationStatus
    switched: bool  # target differs from the previous target


@dataclass(frozen=True)
class _Clocks:
    """What `_track` derived for this tick."""

    pressure_for: float | None  # seconds of pressure so far (None: none now)
    relief_for: float | None  # seconds a rung above has had headroom (None: not now)
    why_pressure: str  # the numbers behind the pressure, for messages
    why_relief: str
    need: float | None = None  # req/s to carry until a switch started now is done
    why_need: str = ""  # "6.0 req/s arriving" or "7.1 req/s forecast within 1900s (...)"
    beyond: str | None = None  # why the served rung on all its GPUs falls short of the forecast
    lasts: bool = False  # the forecast has the pressure outlast a switch started now
    rising: bool = False  # the forecast rises (a significant trend or the period's profile)
    up: str | None = None  # the rung to step up to while relief lasts
    held_back: str = ""  # why a rung that carries the load now is not stepped up to


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(s: str | None) -> float | None:
    return None if not s else datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _names(spec: QuantizationSpec) -> list[str]:
    return [r.name for r in spec.ladder]


def _gpus(rung: QuantizationRung, default_gpus_per_replica: int) -> int:
    return rung.gpus_per_replica or default_gpus_per_replica


def derived_factor(rung: QuantizationRung, default_gpus_per_replica: int = 1) -> float:
    """Prior capacity of one replica in arbitrary units: per-GPU factor of its weights, x1.25
    for an fp8 KV cache, times its GPUs."""
    kv = 1.0 if rung.kv_cache_dtype is KVCacheDtype.AUTO else FP8_KV_FACTOR
    return WEIGHT_FACTOR[rung.weights] * kv * _gpus(rung, default_gpus_per_replica)


def capacity_factor(
    spec: QuantizationSpec, rung: QuantizationRung, default_gpus_per_replica: int = 1
) -> float:
    """Capacity of one replica of `rung` relative to one replica of the first rung: the declared
    capacityFactor, else the ratio of derived factors (the first rung is 1 unless declared)."""
    if rung.capacity_factor is not None:
        return rung.capacity_factor
    first = spec.ladder[0]
    unit = first.capacity_factor or 1.0
    if rung is first:
        return unit
    g = default_gpus_per_replica
    return unit * derived_factor(rung, g) / derived_factor(first, g)


def rung_capacity(
    spec: QuantizationSpec,
    rung: str,
    learned: Mapping[str, float],
    default_gpus_per_replica: int = 1,
) -> float | None:
    """Requests/s one replica of `rung` serves within the SLO: learned when it has been, else a
    prior from the first learned rung (ladder order) times the ratio of capacity factors; None
    when no rung has been learned or `rung` is not on the ladder."""
    r = spec.rung(rung)
    if r is None:
        return None
    if rung in learned:
        return learned[rung]
    ref = next((x for x in spec.ladder if x.name in learned), None)
    if ref is None:
        return None
    g = default_gpus_per_replica
    return learned[ref.name] * capacity_factor(spec, r, g) / capacity_factor(spec, ref, g)


def replicas_on(spec: QuantizationSpec, rung: str, gpus: int, default_gpus_per_replica: int) -> int:
    """How many replicas of `rung` fit in `gpus` GPUs (R1: 32 H200s hold 4 fp8 replicas of 8
    GPUs or 8 int4 replicas of 4)."""
    r = spec.rung(rung)
    if r is None or gpus <= 0:
        return 0
    return gpus // _gpus(r, default_gpus_per_replica)


def learn_rung_capacity(
    state: QuantizationStatus | None, rung: str, req_per_s_per_replica: float
) -> QuantizationStatus:
    """Add one sample of what a replica of `rung` serves within the SLO (from a steady period)
    to the learned capacity: an exponentially weighted mean, the newest weighing LEARN_WEIGHT."""
    state = state or QuantizationStatus()
    old = state.capacity.get(rung)
    x = max(0.0, req_per_s_per_replica)
    new = x if old is None else old + LEARN_WEIGHT * (x - old)
    return state.model_copy(update={"capacity": {**state.capacity, rung: round(new, 4)}})


def _carried(
    spec: QuantizationSpec, rung: str, inp: ModeInputs, learned: Mapping[str, float]
) -> tuple[int, float | None]:
    """(replicas, requests/s) `rung` would serve on the GPUs held plus the free ones, at most
    maxReplicas replicas; the rate is None while no capacity is known."""
    n = min(
        replicas_on(spec, rung, inp.held_gpus + inp.free_gpus, inp.default_gpus_per_replica),
        inp.max_replicas,
    )
    cap = rung_capacity(spec, rung, learned, inp.default_gpus_per_replica)
    return n, None if cap is None else n * cap


def _relative(
    spec: QuantizationSpec, rung: str, inp: ModeInputs, learned: Mapping[str, float]
) -> float:
    """What `rung` carries on the GPUs we can have, in req/s when any rung was learned, else in
    replicas of the first rung (both rungs of a comparison use the same unit)."""
    n, rate = _carried(spec, rung, inp, learned)
    if rate is not None:
        return rate
    r = spec.rung(rung)
    assert r is not None
    return n * capacity_factor(spec, r, inp.default_gpus_per_replica)


def _state(
    prev: QuantizationStatus | None, spec: QuantizationSpec, inp: ModeInputs, **changes: object
) -> QuantizationStatus:
    base = prev or QuantizationStatus()
    fields: dict[str, object] = {
        "automatic": spec.policy.automatic,
        "served": inp.served,
        "target": base.target or inp.served,
    }
    fields.update(changes)
    return base.model_copy(update=fields)


def _pinned(
    spec: QuantizationSpec, inp: ModeInputs, state: QuantizationStatus | None, now: float
) -> QuantizationDecision | None:
    """Automatic off: serve quantization.mode (the user's pin) or the first rung."""
    if spec.policy.automatic:
        return None
    target = spec.current().name
    prev = state.target if state else None
    changed = prev is not None and prev != target
    msg = f"quantization.policy.automatic is false; serving quantization.mode {target}"
    since = rfc3339(now) if changed else (state.since if state else None)
    new = _state(
        state,
        spec,
        inp,
        target=target,
        reason=PINNED,
        message=msg,
        since=since,
        pressure_since=None,
        relief_since=None,
    )
    return QuantizationDecision(target, PINNED, msg, new, changed)


def _hold(
    spec: QuantizationSpec, inp: ModeInputs, state: QuantizationStatus | None
) -> QuantizationDecision | None:
    """Keep the target while the metrics cannot be trusted or a transition runs. A transition
    also restarts the pressure and relief clocks: what they measured was the fleet before. A
    switch whose rollout was rolled back (or aborted) gives its target up for the rung still
    served: holding it would wait for a rollout that will not come (a rolled-back version is
    not retried); the switch it recorded keeps the next one minDwellSeconds away."""
    target = (state.target if state else None) or inp.served
    if inp.switch_rolled_back and target != inp.served:
        msg = (
            f"the switch {inp.served} -> {target} was rolled back or aborted; serving "
            f"{inp.served}, the next switch waits minDwellSeconds "
            f"({spec.policy.min_dwell_seconds}s) from the last one"
        )
        new = _state(
            state,
            spec,
            inp,
            target=inp.served,
            reason=SWITCH_ROLLED_BACK,
            message=msg,
            pressure_since=None,
            relief_since=None,
        )
        return QuantizationDecision(inp.served, SWITCH_ROLLED_BACK, msg, new, True)
    if not inp.metrics_ok:
        reason, msg = METRICS_MISSING, "no trustworthy engine metrics; keeping the rung"
        clocks: dict[str, object] = {}
    elif inp.transition_in_flight:
        reason, msg = TRANSITION_IN_FLIGHT, "a rollout is in flight; keeping the rung"
        clocks = {"pressure_since": None, "relief_since": None}
    else:
        return None
    new = _state(state, spec, inp, target=target, reason=reason, message=msg, **clocks)
    return QuantizationDecision(target, reason, f"{msg} {target}", new, False)


def drain_seconds(
    running: float | None, waiting: float | None, finished: float | None, ready: int
) -> float | None:
    """Seconds a replica taken out of service takes to finish what it holds: its share of the
    queue at the rate a replica finishes requests, then its running requests, the last ending
    DRAIN_TAIL mean request times later (Little's law: a request's mean time is running /
    finished). None without a finished rate. 30 running and 10 waiting per replica finishing
    0.25 req/s: 10 / 0.25 + 2 x 30 / 0.25 = 280 s."""
    if ready <= 0 or running is None or not finished or finished <= 0:
        return None
    per = finished / ready
    return ((waiting or 0.0) / ready + DRAIN_TAIL * running / ready) / per


def drain_idle_seconds(running: float | None, finished: float | None) -> float | None:
    """Replica-seconds of capacity a drain leaves unused. While a replica taken out of service
    works through its queue its batch stays full: that part of the drain serves as much as it
    would have in service. Only the tail, DRAIN_TAIL mean request times (running / finished,
    Little's law) in which its running requests end one by one, thins the batch: half its
    capacity goes unused then, on average. 30 running finishing 1 req/s: 2 x 30 / 2 = 30 s."""
    if running is None or not finished or finished <= 0:
        return None
    return DRAIN_TAIL * (running / finished) / 2.0


@dataclass(frozen=True)
class LoadView:
    """What the policy reads of the load from the autoscaler's tick: ModeInputs' arrival_rate,
    drain_s, outlook and drain_idle_s."""

    arrival_rate: float | None
    drain_s: float | None
    outlook: Callable[[float], Demand] | None
    drain_idle_s: float | None = None


def load_view(
    decision: ScalingDecision | None, values: Mapping[Signal, float], ready: int, now: float
) -> LoadView:
    """The arriving rate the autoscaler computed this tick (the finished rate plus the
    backlog's growth; the finished rate alone without a decision), the drain of one replica
    from the signals (`drain_seconds`) and the capacity it leaves unused
    (`drain_idle_seconds`), and the autoscaler's forecast, extendable to any
    horizon (`scaling.outlook`)."""
    demand = decision.demand if decision is not None else None
    finished = values.get(Signal.REQUEST_RATE)
    running = values.get(Signal.RUNNING)
    drain = drain_seconds(running, values.get(Signal.QUEUE_DEPTH), finished, ready)
    idle = drain_idle_seconds(running, finished)
    if demand is None or decision is None:
        return LoadView(finished, drain, None, idle)
    return LoadView(demand.now, drain, partial(outlook, demand, decision.state.load, now), idle)


def _served_gpus(spec: QuantizationSpec, inp: ModeInputs) -> int:
    """GPUs per replica of the served rung."""
    r = spec.rung(inp.served)
    return _gpus(r, inp.default_gpus_per_replica) if r is not None else inp.default_gpus_per_replica


def _removals(spec: QuantizationSpec, inp: ModeInputs) -> tuple[int, int]:
    """(replicas a switch must take out before the new rung has its GPUs, replicas served).
    A switch keeps every replica that fits (`keeps_replicas`): the new rung is counted on all
    the GPUs held plus the free ones, at most maxReplicas (in replicas of the served rung's
    size), and every served replica whose GPUs those need is taken out. 3 of 4 replicas held
    and one replica's GPUs free: the new rung needs all 4 replicas' GPUs, so all 3 go (not 2)."""
    g = _served_gpus(spec, inp)
    n = max(1, inp.held_gpus // g)
    wanted = min(inp.max_replicas, (inp.held_gpus + inp.free_gpus) // g) * g
    return max(0, min(n, math.ceil((wanted - inp.free_gpus) / g))), n


def switch_seconds(spec: QuantizationSpec, inp: ModeInputs) -> float:
    """How long a switch started now runs: with free GPUs for the whole new rung, one cold
    start (blue-green); under a GPU cap, the replicas the free GPUs hold start first (one cold
    start), then per replica taken out, its drain and then the new replica's cold start (each
    step gives one replica's GPUs to the new rung). 4 replicas, nothing free, 280 s drains,
    276 s cold starts: 4 x 556 = 2224 s; 3 held and 1 free: 276 + 3 x 556 = 1944 s."""
    removals, _ = _removals(spec, inp)
    cold = inp.cold_start_s or 0.0
    if removals == 0:
        return cold
    g = _served_gpus(spec, inp)
    first = cold if inp.free_gpus >= g else 0.0
    return first + removals * ((inp.drain_s or 0.0) + cold)


def remember_load(
    state: QuantizationStatus | None, rate: float | None, now: float
) -> QuantizationStatus:
    """Add the arriving rate to the ladder's memory of the load (a point per LOAD_EVERY,
    LOAD_KEEP of them)."""
    state = state or QuantizationStatus()
    if rate is None or (state.load and now - state.load[-1].time < LOAD_EVERY):
        return state
    kept = [p for p in state.load if now - p.time < LOAD_KEEP]
    point = LoadSample(time=now, rate=round(max(rate, 0.0), 4))
    return state.model_copy(update={"load": [*kept, point][-64:]})


def forecast_load(
    inp: ModeInputs, state: QuantizationStatus | None, now: float, horizon: float
) -> Demand | None:
    """The load `horizon` ahead: the period's profile where the autoscaler has seen one
    (`inp.outlook`), else a sustained trend (`scaling.sustained_slope`) over the last
    `horizon` of the ladder's own points (TREND_MIN_SPAN at least, LOAD_KEEP at most, and
    covered for half of it) extended by `horizon`, within [rate / 2, rate x 2]; no trend
    while the autoscaler's past trends forecast worse than the rate held flat
    (`scaling.trend_skill`: the outlook's trend is dropped). None without an arriving rate."""
    rate = inp.arrival_rate
    if rate is None:
        return None
    if inp.outlook is not None and horizon > 0:
        d = inp.outlook(horizon)
        if d.seasonal or d.dropped is not None:  # the profile's forecast, or the rate held
            return d
    span = min(max(horizon, TREND_MIN_SPAN), LOAD_KEEP)
    points = [(p.time, p.rate) for p in (state.load if state else []) if 0 < now - p.time <= span]
    slope = 0.0
    if points and now - points[0][0] >= span / 2:
        slope = sustained_slope([*points, (now, rate)])
    ahead = max(rate / TREND_MAX_FACTOR, min(rate * TREND_MAX_FACTOR, rate + slope * horizon))
    return Demand(rate, rate, 0.0, slope, ahead, horizon, max(rate, ahead))


def _outlook(
    inp: ModeInputs, state: QuantizationStatus | None, now: float, horizon: float
) -> tuple[float | None, str, Demand | None]:
    """(the highest rate to carry from now until `horizon`, in words, the forecast): the
    arriving rate, or the forecast's peak until then where it is higher."""
    rate = inp.arrival_rate
    d = forecast_load(inp, state, now, horizon) if horizon > 0 else None
    if rate is None:
        return None, "", None
    if d is None:
        return rate, f"{rate:.1f} req/s arriving", None
    if d.until_ready <= rate:
        return rate, f"{rate:.1f} req/s arriving", d
    how = "seasonal profile" if d.seasonal else f"trend {d.slope * 60:+.2f} req/s per min"
    return (
        d.until_ready,
        (f"{d.until_ready:.1f} req/s forecast within {horizon:.0f}s ({rate:.1f} arriving, {how})"),
        d,
    )


def back_down_seconds(spec: QuantizationSpec, horizon: float) -> float:
    """How far back a step up looks at the load: the time it would take to come back down if
    the load returned, i.e. stepDownAfterSeconds of pressure plus a switch (`horizon`, the
    switch from the served rung, is of the same size); stepUpAfterSeconds at least, the
    ladder's memory (LOAD_KEEP) at most."""
    p = spec.policy
    return min(LOAD_KEEP, max(float(p.step_up_after_seconds), p.step_down_after_seconds + horizon))


def _relief_need(
    spec: QuantizationSpec,
    state: QuantizationStatus | None,
    now: float,
    horizon: float,
    need: float,
    why_need: str,
) -> tuple[float, str]:
    """(req/s a rung above must carry to be stepped up to, in words): the load to carry until
    a switch is done (`need`), and the highest minute of the ladder's memory within
    `back_down_seconds`. A step up is a bet that the load stays below the higher rung until a
    step back down could be done; a load that came that high within that time can again
    (volatile arrivals: the public trace's minutes swing by a third within half an hour)."""
    window = back_down_seconds(spec, horizon)
    recent = [p.rate for p in (state.load if state else []) if 0 < now - p.time <= window]
    peak = max(recent, default=0.0)
    if peak <= need:
        return need, why_need
    return peak, (
        f"{peak:.1f} req/s at the busiest minute of the last {window:.0f}s (the time a step "
        f"back down would take; {why_need})"
    )


def _track(
    spec: QuantizationSpec,
    slo: SloSpec,
    inp: ModeInputs,
    state: QuantizationStatus | None,
    now: float,
) -> tuple[_Clocks, QuantizationStatus]:
    """Pressure: the SLO is breached, the arrival rate is above what the Ready replicas carry
    on the served rung, or a rising forecast (a significant trend or the period's profile)
    goes above what the served rung carries on all the GPUs it can have before a switch
    started now would be done. Relief: no pressure and a rung above would carry the arrival
    rate, or the forecast's peak until a switch would be done, at <= stepUpHeadroom of what
    it carries on our GPUs (the highest such rung is the one to step up to). Returns the
    clocks and the state with pressureSince/reliefSince updated."""
    learned = state.capacity if state else {}
    why: list[str] = []
    if inp.ttft_p99 is not None and inp.ttft_p99 > slo.ttft_p99_seconds:
        why.append(f"TTFT p99 {inp.ttft_p99:.3g}s > SLO {slo.ttft_p99_seconds:g}s")
    if inp.tpot_p99 is not None and inp.tpot_p99 > slo.tpot_p99_seconds:
        why.append(f"TPOT p99 {inp.tpot_p99:.3g}s > SLO {slo.tpot_p99_seconds:g}s")
    cap = rung_capacity(spec, inp.served, learned, inp.default_gpus_per_replica)
    if inp.arrival_rate is not None and cap is not None and inp.arrival_rate > inp.ready * cap:
        why.append(
            f"{inp.arrival_rate:.1f} req/s arriving > {inp.ready} Ready x ~{cap:.2f} req/s "
            f"on {inp.served}"
        )
    horizon = switch_seconds(spec, inp)
    need, why_need, d = _outlook(inp, state, now, horizon)
    # rising: a significant trend upwards, or the period's profile higher ahead
    rising = d is not None and inp.arrival_rate is not None and d.until_ready > inp.arrival_rate
    n_most, most = _carried(spec, inp.served, inp, learned)
    beyond: str | None = None
    lasts = False
    if rising and d is not None and need is not None and most is not None and need > most:
        beyond = (
            f"{inp.served} on {inp.held_gpus + inp.free_gpus} GPUs ({n_most} replicas) carries "
            f"~{most:.1f} req/s"
        )
        why.append(f"{why_need} > what {beyond}")
        lasts = d.ahead > most
    pressure = bool(why)
    prev_p = _parse(state.pressure_since) if state else None
    p_since = (prev_p if prev_p is not None else now) if pressure else None

    idx = _names(spec).index(inp.served) if inp.served in _names(spec) else 0
    why_relief, r_since, up, held_back = "", None, None, ""
    if idx > 0 and not pressure and need is not None:
        if cap is None and inp.ready > 0 and inp.arrival_rate is not None:
            # nothing learned yet: the Ready replicas carry what arrives, at least (a lower
            # bound, so the step up stays conservative)
            learned = {inp.served: inp.arrival_rate / inp.ready}
        need_up, why_up = _relief_need(spec, state, now, horizon, need, why_need)
        for higher in spec.ladder[:idx]:  # highest precision first
            n_up, carried = _carried(spec, higher.name, inp, learned)
            cut, why_cut = _kv_loss(spec, slo, inp, higher.name, learned)
            carried = None if carried is None else carried * cut
            if carried is None or need_up > spec.policy.step_up_headroom * carried:
                if (
                    carried is not None
                    and not held_back
                    and need <= (spec.policy.step_up_headroom * carried)
                ):
                    held_back = (
                        f"{higher.name} on {inp.held_gpus + inp.free_gpus} GPUs ({n_up} "
                        f"replicas) would carry {why_need} within stepUpHeadroom, but not "
                        f"{why_up.split(' (')[0]}{why_cut}"
                    )
                continue
            share = need_up / carried if carried > 0 else 0.0
            prev_r = _parse(state.relief_since) if state else None
            r_since = prev_r if prev_r is not None else now
            up = higher.name
            why_relief = (
                f"{up} on {inp.held_gpus + inp.free_gpus} GPUs ({n_up} replicas) carries "
                f"~{carried:.1f} req/s{why_cut}; {why_up} is {share:.0%} of it "
                f"(<= {spec.policy.step_up_headroom:.0%})"
            )
            break
    clocks = _Clocks(
        pressure_for=None if p_since is None else now - p_since,
        relief_for=None if r_since is None else now - r_since,
        why_pressure="; ".join(why),
        why_relief=why_relief,
        need=need,
        why_need=why_need,
        beyond=beyond,
        lasts=lasts,
        rising=rising,
        up=up,
        held_back=held_back,
    )
    new = _state(
        state,
        spec,
        inp,
        pressure_since=None if p_since is None else rfc3339(p_since),
        relief_since=None if r_since is None else rfc3339(r_since),
    )
    return clocks, new


def _switch_allowed(
    spec: QuantizationSpec, state: QuantizationStatus, now: float
) -> tuple[str, str] | None:
    """(reason, why) a switch must wait, or None: minDwellSeconds since the last switch, at most
    maxSwitchesPerHour switches in the last hour."""
    p = spec.policy
    times = [t for t in (_parse(s.at) for s in state.switches) if t is not None]
    if times and now - times[-1] < p.min_dwell_seconds:
        return DWELL_TIME, (
            f"last switch {now - times[-1]:.0f}s ago, minDwellSeconds {p.min_dwell_seconds}"
        )
    recent = [t for t in times if now - t < HOUR]
    if len(recent) >= p.max_switches_per_hour:
        return SWITCH_LIMIT, (
            f"{len(recent)} switches in the last hour, maxSwitchesPerHour {p.max_switches_per_hour}"
        )
    return None


def _switch(
    spec: QuantizationSpec,
    inp: ModeInputs,
    state: QuantizationStatus,
    target: str,
    reason: str,
    message: str,
    now: float,
) -> QuantizationDecision:
    """Record a switch to `target`. Below the first rung it also records the replicas the
    decision counted on (all that fit on the GPUs held plus the free ones, at most
    maxReplicas): the autoscaler keeps them (`keeps_replicas`)."""
    at = rfc3339(now)
    hop = QuantizationSwitch(at=at, from_=state.served or target, to=target, reason=reason)
    first = _names(spec)[0] if spec.ladder else target
    counted = None if target == first else _carried(spec, target, inp, state.capacity)[0]
    new = state.model_copy(
        update={
            "replicas": counted,
            "target": target,
            "reason": reason,
            "message": message,
            "since": at,
            "pressure_since": None,
            "relief_since": None,
            "switches": [*state.switches, hop][-SWITCH_HISTORY:],
        }
    )
    return QuantizationDecision(target, reason, message, new, True)


def _wait(state: QuantizationStatus, reason: str, message: str) -> QuantizationDecision:
    target = state.target or state.served or ""
    new = state.model_copy(update={"target": target, "reason": reason, "message": message})
    return QuantizationDecision(target, reason, message, new, False)


def _scaling_cannot_help(
    spec: QuantizationSpec, inp: ModeInputs, learned: Mapping[str, float], need: float | None
) -> str | None:
    """Why more replicas of the served rung cannot relieve the pressure (None: they can).
    Replicas asked for and still starting on GPUs they hold count as coming: where they would
    carry `need`, scaling is already helping (an autoscaler going from 2 to maxReplicas 4 is
    at maxReplicas before its new replicas are Ready)."""
    fit = replicas_on(spec, inp.served, inp.held_gpus + inp.free_gpus, inp.default_gpus_per_replica)
    coming = min(inp.replicas, fit)
    cap = rung_capacity(spec, inp.served, learned, inp.default_gpus_per_replica)
    if coming > inp.ready and cap is not None and need is not None and need <= coming * cap:
        return None
    if inp.replicas >= inp.max_replicas:
        return f"at maxReplicas {inp.max_replicas}"
    if inp.wanted_replicas > fit:
        return (
            f"{inp.wanted_replicas} {inp.served} replicas wanted, {inp.held_gpus} held + "
            f"{inp.free_gpus} free GPUs fit {fit}"
        )
    if inp.scaling_limited:
        return f"scaling limited at {inp.replicas} replicas"
    return None


def _kv_why_not(slo: SloSpec, inp: ModeInputs) -> str | None:
    """Why a bigger KV cache would not carry more on the served rung (None: it would, or the
    signals to tell are missing). Where the autoscaler has learned the served rung's capacity,
    it says whether the KV cache sets it (`scaling.Capacity.kv_binds`). Before that, from the
    signals: the cache is not full, or the decode steps are already slower than the TPOT SLO,
    so more concurrent requests would only slow every step."""
    if inp.kv_binds is not None:  # the autoscaler's learned capacity knows
        if inp.kv_binds:
            return None
        return "the decode step's time, not the KV cache, sets the learned capacity"
    if inp.kv_cache_usage is not None and inp.kv_cache_usage < KV_BOUND:
        return f"KV cache at {inp.kv_cache_usage:.0%} < {KV_BOUND:.0%}: not what binds"
    if inp.tpot_p99 is not None and inp.tpot_p99 > slo.tpot_p99_seconds:
        return (
            f"TPOT p99 {inp.tpot_p99:.3f}s > SLO {slo.tpot_p99_seconds:g}s: the decode step, "
            "not the KV cache, binds"
        )
    return None


def _kv_discount(
    spec: QuantizationSpec,
    slo: SloSpec,
    inp: ModeInputs,
    lower: str,
    learned: Mapping[str, float],
) -> tuple[float, str | None]:
    """(FP8_KV_FACTOR, why) when the lighter rung's prior counts an fp8 KV cache the served
    rung lacks but a bigger cache would not carry more here (`_kv_why_not`): that part of the
    prior would not materialise. (1.0, None) otherwise (learned or declared capacity, a cache
    that binds with steps within the SLO, unknown signals)."""
    low, cur = spec.rung(lower), spec.rung(inp.served)
    if low is None or cur is None or lower in learned or low.capacity_factor is not None:
        return 1.0, None
    adds_kv = (
        low.kv_cache_dtype is not KVCacheDtype.AUTO and cur.kv_cache_dtype is KVCacheDtype.AUTO
    )
    why = _kv_why_not(slo, inp) if adds_kv else None
    return (FP8_KV_FACTOR, why) if why is not None else (1.0, None)


def _kv_loss(
    spec: QuantizationSpec,
    slo: SloSpec,
    inp: ModeInputs,
    higher: str,
    learned: Mapping[str, float],
) -> tuple[float, str]:
    """(factor on the prior of `higher`, why) for a step up to a rung whose prior comes from a
    learned rung with an fp8 KV cache it lacks, while the cache may be what sets capacity (the
    served rung's signals: `_kv_why_not` finds no reason it is not). That prior divided by
    FP8_KV_FACTOR, the least an fp8 KV cache adds; a step up counts the most it may have added
    (KV_MAX_GAIN). (1.0, "") otherwise: learned or declared capacity, a prior from a rung of
    the same KV cache, a cache that does not bind."""
    up = spec.rung(higher)
    ref = next((x for x in spec.ladder if x.name in learned), None)
    if up is None or ref is None or higher in learned or up.capacity_factor is not None:
        return 1.0, ""
    drops_kv = (
        ref.kv_cache_dtype is not KVCacheDtype.AUTO and up.kv_cache_dtype is KVCacheDtype.AUTO
    )
    if not drops_kv or ref.capacity_factor is not None or _kv_why_not(slo, inp) is not None:
        return 1.0, ""
    return FP8_KV_FACTOR / KV_MAX_GAIN, (
        f" (a prior from {ref.name}: without its fp8 KV cache, which may be what binds, "
        f"counted at 1/{KV_MAX_GAIN:g} of its capacity)"
    )


def _payback_seconds(spec: QuantizationSpec, inp: ModeInputs, gain: float) -> tuple[float, str]:
    """(seconds of pressure after which a step down pays for itself, the cost in words).

    Under a GPU cap the switch is stepped: each old replica that free GPUs cannot cover is
    taken out, finishes what it holds (its drain) and its GPUs serve again only after the new
    rung's cold start. What a step costs is the capacity it leaves unused: the cold start, and
    the drain's tail, where the batch thins (`drain_idle_seconds`; a drain through a queue
    keeps the replica as busy as it was in service). Once switched, the fleet carries
    (gain - 1) x more. Like renting skis until the rent paid equals the price (the
    2-competitive rule for not knowing how long the need lasts), the policy switches once the
    capacity the pressure has cost so far, (gain - 1) x n replicas x seconds, equals what the
    switch costs, removals x (unused drain + cold start): at gain 1.25 with 4 replicas to
    replace, no drain and a 344 s cold start, 4 x 344 s / (4 x 0.25) = 1376 s; at gain 2,
    344 s. A rising forecast that outlasts the switch needs no such wait (`_step_down`).
    Unknown cold start or enough free GPUs: nothing to pay back. Without drain_idle_s, the
    whole drain counts as unused."""
    removals, n = _removals(spec, inp)
    if not inp.cold_start_s or removals == 0 or gain <= 1.0:
        return 0.0, ""
    idle = inp.drain_idle_s if inp.drain_idle_s is not None else (inp.drain_s or 0.0)
    seconds = removals * (inp.cold_start_s + idle) / (n * (gain - 1.0))
    drain = ""
    if inp.drain_s:
        drain = f"a ~{inp.drain_s:.0f}s drain"
        drain += f" (~{idle:.0f}s of it a thinning batch) and " if idle < inp.drain_s else " and "
    cost = f"a stepped switch takes {removals} of {n} replicas out for {drain}a "
    cost += f"~{inp.cold_start_s:.0f}s cold start each"
    return seconds, cost


@dataclass(frozen=True)
class _Option:
    """A lighter rung the policy could step down to."""

    name: str
    gain: float  # what it carries on our GPUs over what the served rung carries
    carried: float | None  # req/s on our GPUs (None: no capacity learned yet)
    words: str


def _options(
    spec: QuantizationSpec,
    slo: SloSpec,
    inp: ModeInputs,
    learned: Mapping[str, float],
    clocks: _Clocks,
) -> list[_Option]:
    """Every rung below the served one down to the floor, with what it carries on the GPUs we
    can have (its fp8 KV cache's prior credit removed where the cache does not bind)."""
    names = _names(spec)
    idx = names.index(inp.served) if inp.served in names else 0
    base = max(_relative(spec, inp.served, inp, learned), 1e-9)
    gpus = inp.held_gpus + inp.free_gpus
    out: list[_Option] = []
    for lower in names[idx + 1 : spec.floor_index() + 1]:
        discount, kv_why = _kv_discount(spec, slo, inp, lower, learned)
        gain = _relative(spec, lower, inp, learned) / discount / base
        n_low, carried = _carried(spec, lower, inp, learned)
        rate = None if carried is None else carried / discount
        words = (
            f"{lower} on {gpus} GPUs ({n_low} replicas) carries ~{rate:.1f} req/s"
            if rate is not None
            else f"{lower} on {gpus} GPUs ({n_low} replicas) carries ~{gain:.2f}x"
        )
        if clocks.need is not None and rate is not None:
            words += f" vs {clocks.why_need}"
        if kv_why is not None:
            words += f" ({kv_why}, so no credit for its fp8 KV cache)"
        out.append(_Option(lower, gain, rate, words))
    return out


def _pick(options: list[_Option], need: float | None, headroom: float, rising: bool) -> _Option:
    """The rung to step down to, straight, not one rung at a time (each switch under a GPU cap
    replaces every replica). Among the rungs worth a switch (MIN_GAIN): while the forecast
    rises, or where what the rungs carry or what arrives is unknown (an overload from the
    start leaves nothing learned), the one that carries the most: how far the load goes
    is then the least certain number, a rung that falls short costs a second stepped switch
    under a deeper overload, and one that carries more costs only precision until the step
    back up. On a load that does not rise, the highest-precision rung that carries `need`
    with stepUpHeadroom to spare (so that no step up undoes it), else the first that carries
    it, else the one that carries the most."""
    worth = [o for o in options if o.gain >= MIN_GAIN]
    if not worth:
        return options[0]
    most = max(worth, key=lambda o: o.gain)
    if rising or need is None or any(o.carried is None for o in worth):
        return most
    for share in (headroom, 1.0):
        hit = next((o for o in worth if o.carried is not None and need <= share * o.carried), None)
        if hit is not None:
            return hit
    return most


def _step_down(
    spec: QuantizationSpec,
    slo: SloSpec,
    inp: ModeInputs,
    state: QuantizationStatus,
    clocks: _Clocks,
    now: float,
) -> QuantizationDecision | None:
    """Down the ladder when the pressure has lasted stepDownAfterSeconds, more replicas cannot
    come (or cannot carry the forecast), the floor allows it, a lighter rung carries at least
    MIN_GAIN x more on the GPUs we can have, and either the forecast has the pressure outlast
    the switch or the pressure has lasted long enough to pay for it. Straight to the rung
    `_pick` names, not one rung at a time: each switch under a GPU cap replaces every replica."""
    if clocks.pressure_for is None:
        return None
    p = spec.policy
    names = _names(spec)
    idx = names.index(inp.served) if inp.served in names else 0
    head = f"{clocks.why_pressure} for {clocks.pressure_for:.0f}s"
    if clocks.pressure_for < p.step_down_after_seconds:
        return _wait(
            state, PRESSURE_BUILDING, f"{head} (stepDownAfterSeconds {p.step_down_after_seconds})"
        )
    blocked = _scaling_cannot_help(spec, inp, state.capacity, clocks.need)
    if blocked is None and clocks.beyond is not None:
        blocked = f"more {inp.served} replicas cannot carry the forecast"
    if blocked is None:
        coming = inp.replicas - inp.ready
        more = f"{coming} more {inp.served} replicas are starting" if coming > 0 else ""
        more = more or f"more {inp.served} replicas can come"
        return _wait(state, SCALING_CAN_HELP, f"{head}; {more}")
    if idx >= spec.floor_index():
        return _wait(state, AT_LOWEST_RUNG, f"{head}; {blocked}; {inp.served} is the lowest rung")
    options = _options(spec, slo, inp, state.capacity, clocks)
    pick = _pick(options, clocks.need, p.step_up_headroom, clocks.rising)
    if pick.gain < MIN_GAIN:
        return _wait(
            state,
            STEP_DOWN_NO_GAIN,
            f"{head}; {blocked}; {pick.words}, {pick.gain:.2f}x {inp.served}: not worth a rollout",
        )
    payback, cost = _payback_seconds(spec, inp, pick.gain)
    if clocks.lasts:
        payback = 0.0  # the forecast has the pressure outlast the switch: it pays for itself
    if clocks.pressure_for < payback:
        return _wait(
            state,
            AWAITING_PAYBACK,
            f"{head}; {blocked}; {pick.words}; {cost}: it pays back after {payback:.0f}s of "
            "pressure",
        )
    gate = _switch_allowed(spec, state, now)
    if gate is not None:
        return _wait(state, gate[0], f"{head}; {blocked}; {pick.words}; waiting: {gate[1]}")
    msg = f"{head}; {blocked}; {pick.words} -> stepping down {inp.served} -> {pick.name}"
    return _switch(spec, inp, state, pick.name, STEP_DOWN, msg, now)


def _leave_slower_rung(
    spec: QuantizationSpec, inp: ModeInputs, state: QuantizationStatus, now: float
) -> QuantizationDecision | None:
    """One rung up, pressure or not, once the served rung has been learned to carry no more
    than the rung above would on our GPUs: a prior that promised more was wrong, and the
    learned value keeps `_step_down` from coming back."""
    names = _names(spec)
    idx = names.index(inp.served) if inp.served in names else 0
    learned = state.capacity
    if idx == 0 or inp.served not in learned:
        return None
    up = names[idx - 1]
    gain = _relative(spec, inp.served, inp, learned) / max(_relative(spec, up, inp, learned), 1e-9)
    if gain > 1.0:
        return None
    why = (
        f"{inp.served} learned at ~{learned[inp.served]:.2f} req/s per replica carries "
        f"{gain:.2f}x what {up} would on {inp.held_gpus + inp.free_gpus} GPUs"
    )
    gate = _switch_allowed(spec, state, now)
    if gate is not None:
        return _wait(state, gate[0], f"{why}; waiting: {gate[1]}")
    msg = f"{why} -> stepping up {inp.served} -> {up}"
    return _switch(spec, inp, state, up, LIGHTER_RUNG_NO_GAIN, msg, now)


def _step_up(
    spec: QuantizationSpec,
    inp: ModeInputs,
    state: QuantizationStatus,
    clocks: _Clocks,
    now: float,
) -> QuantizationDecision | None:
    """Up to the highest rung with headroom (`_track`: it would carry the load, and the
    forecast until a switch is done, with stepUpHeadroom to spare) once relief has lasted
    stepUpAfterSeconds."""
    if clocks.relief_for is None or clocks.up is None:
        return None
    up = clocks.up
    p = spec.policy
    head = f"{clocks.why_relief} for {clocks.relief_for:.0f}s"
    if clocks.relief_for < p.step_up_after_seconds:
        return _wait(
            state, RELIEF_BUILDING, f"{head} (stepUpAfterSeconds {p.step_up_after_seconds})"
        )
    gate = _switch_allowed(spec, state, now)
    if gate is not None:
        return _wait(state, gate[0], f"{head}; waiting: {gate[1]}")
    return _switch(
        spec, inp, state, up, STEP_UP, f"{head} -> stepping up {inp.served} -> {up}", now
    )


def _steady(inp: ModeInputs, state: QuantizationStatus, clocks: _Clocks) -> QuantizationDecision:
    """Nothing to do: no pressure and no headroom for a higher rung (or already at the top)."""
    if clocks.held_back:
        return _wait(state, STEADY, f"serving {inp.served}; no pressure; {clocks.held_back}")
    return _wait(state, STEADY, f"serving {inp.served}; no pressure, no room to step up")


def keeps_replicas(
    spec: QuantizationSpec, served: str | None, state: QuantizationStatus | None
) -> tuple[int, str] | None:
    """(replicas the autoscaler keeps at least, why), or None. A lighter rung is used when more
    replicas cannot come, never instead of them: while the policy serves, or switches to, a
    rung below the first, the autoscaler keeps the replicas its switch counted on (all that
    fit, `_switch`) and scales none down: fewer would contradict the reason it stepped down,
    and capacity goes back by stepping up (relief), not by shedding replicas. From the switch
    on, not only once it is done: the transition moves as many replicas as are asked for, and
    a switch that started from 3 of the 4 that fit would otherwise serve the climb on 3 and
    add the 4th one cold start after it ends (the Distill-70B day of the benchmark: 0.972
    against 1.000). Without it at all, an autoscaler that learned the lighter rung's capacity
    serves a climbing load with 3 of the 4 fp8-kv8 replicas that fit."""
    names = _names(spec)
    if not spec.policy.automatic:
        return None
    target = state.target if state is not None else None
    below = [r for r in (served, target) if r in names and names.index(r) > 0]
    if not below:
        return None
    floor = (state.replicas if state is not None else None) or 0
    return floor, (
        f"the quantization policy {'serves' if below[0] == served else 'switches to'} "
        f"{below[0]}, below {names[0]}, because more replicas "
        f"could not carry the load; it steps back up before replicas go"
    )


def effective_mode(spec: QuantizationSpec, state: QuantizationStatus | None) -> str:
    """The rung the engine pods are rendered with: while policy.automatic, the policy's target
    (the first rung before it decided anything); otherwise quantization.mode, the user's pin."""
    names = _names(spec)
    if spec.policy.automatic:
        target = state.target if state is not None else None
        return target if target in names else names[0]
    return spec.current().name


def direction(spec: QuantizationSpec, frm: str, to: str) -> str:
    """down (to a more compressed rung), up, or none."""
    names = _names(spec)
    if frm not in names or to not in names or frm == to:
        return "none"
    return "down" if names.index(to) > names.index(frm) else "up"


def decide_mode(
    spec: QuantizationSpec,
    slo: SloSpec,
    inp: ModeInputs,
    state: QuantizationStatus | None,
    now: float,
) -> QuantizationDecision:
    """The rung to serve now, why, and the memory to keep (see the module docstring)."""
    if not inp.transition_in_flight:  # mid-switch, the rates describe half a fleet
        state = remember_load(state, inp.arrival_rate, now)
    decided = _pinned(spec, inp, state, now) or _hold(spec, inp, state)
    if decided is not None:
        return decided
    clocks, tracked = _track(spec, slo, inp, state, now)
    return (
        _leave_slower_rung(spec, inp, tracked, now)
        or _step_down(spec, slo, inp, tracked, clocks, now)
        or _step_up(spec, inp, tracked, clocks, now)
        or _steady(inp, tracked, clocks)
    )
