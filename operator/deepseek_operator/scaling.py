"""The autoscaling planner: (spec, observations, memory, now) -> ScalingDecision. Pure.

A replica of a large model takes minutes to become Ready (R1 on 8xH200: ~6 minutes of model
load), so the question each decision answers is not "is the fleet busy now?" but "what will the
load be when a pod ordered now serves, and how far above that may it go before the next pod
could come?". One model, in five named steps, each a small pure function with its own table
(tests/unit/test_scaling_steps.py):

1. Demand (`arrival_rate`, `forecast`): the request rate arriving now (the finished rate plus
   the growth of what runs or waits: under overload the finished rate says what the replicas
   manage, not what arrives), and its forecast one horizon ahead. The horizon is the learned
   time from a scale-up to as many pods as it asked for being Ready (`learn_start`,
   `observe_start`: the first scale-up of a rise is timed, later steps leave its clock be;
   START_PRIOR_SECONDS until one was seen). The forecast is a least-squares trend over the
   last horizon of rate points, used only where the slope is significant and still there in
   the later half (noise on a flat load projects nothing; a step is a jump, a rise within one
   rate window beyond the rate windows' counting noise, and not a trend) and at most a
   doubling or a halving, and only while past trends
   forecast better than the rate held flat (`trend_skill`: each window a horizon long that
   began with a trend compares both with the rate at its end); once a whole period
   (`seasonalPeriodSeconds`) was seen, the period's profile says how the rate changes instead.
2. Capacity (`learn_capacity`, `replica_capacity`, `prior_capacity`): the requests/s one Ready
   replica serves with TPOT p99 at `targets.tpotSloFraction` of the SLO, learned per serving
   colour and quantization mode from steady periods (the Ready count unchanged for a rate
   window, no queue; pods still starting hold back only minutes over the aim, the shortfall
   their scale-up fixes), as the line TPOT p99 = a + b x rate
   (decode steps have a fixed cost, so TPOT is not proportional to the rate). Where the KV
   cache binds first (long outputs, e.g. reasoning), from running requests per replica n
   (`running_capacity`): n* = `targets.kvCacheUsage` / the cache per running request (exact
   by Little's law at any load), and capacity = n* / (a request's time in mean TPOTs x the
   mean TPOT at n*), read off the step-time curve (the mean TPOT by band of n: an exact signal
   where the p99 is a staircase of vLLM's buckets). Where TPOT binds the curve is not trusted
   to decide (past the loads seen its bend is unknown: a mixture of experts flattens once a
   batch touches all experts; near the aim it holds overloaded minutes), so the line stands
   in, bounded by the cache (`kv_bound`) and, for a dense model (`ScalingInputs.moe` false),
   by the curve (`step_capacity`: a dense model's step time keeps growing with the batch, so
   its TPOT turns up steeply where a line through lighter loads sees none of it). Until
   CAPACITY_MIN_SAMPLES were taken, a prior
   from what the replicas report now: their served rate per replica stretched to the
   KV-cache target and to the TPOT aim.
3. Headroom (`remember_load`, `headroom`): how far the load rose above its forecast within one
   horizon, as a HEADROOM_QUANTILE quantile of the completed windows so far (relative: 0.5 is
   50% above the forecast). A flat load keeps little; a bursty one enough to ride out the bursts
   no scale-up can catch. The headroom covers the errors of the forecast in use: once enough
   windows were forecast from the period's profile, only theirs count; until then the profile's
   forecast is not stacked with the trend forecast's headroom (whose misses were the rise the
   profile forecasts): the plan takes the higher of the two. Never planned beyond the highest
   rate seen (a burst is not stacked on a burst).
4. Plan (`plan`): replicas = ceil((forecast + headroom) / capacity). Scale up only for load
   that will still be there when the new pods are Ready (the forecast at the horizon); keep
   what the load until then needs (the higher of now and the forecast, with headroom: a
   replica removed now takes a horizon to come back). Then the stabilization windows (as the
   HPA's; the down window, where the spec leaves it unset, as long as bringing a replica back
   takes, a rate window plus the horizon, at most DOWN_WINDOW_MAX: `down_window`; pods still
   starting that the plan has not asked for over a rate window are removed without it: they
   serve nothing yet, and a burst shorter than a start would otherwise leave a fleet loading
   for load that is gone; not while latency is near its SLO,
   nor during a rollout), step limits (lifted to a doubling when the plan is `panicThreshold`
   x the fleet), min/max and the GPUs the cluster has (unschedulable pods -> CapacityLimited).
   Load the owner knows of (`scaling.schedules`: business hours, a launch) is a floor
   (`scheduled`): a window's replicas are due one horizon before it opens, so they are Ready
   when it does, and until it closes; missing metrics do not hold them back.
5. Guards (`guard`, the holds in `decide`): safety nets over the plan. The SLO guard adds
   replicas when TTFT or TPOT p99 breach the SLO (once the latency window describes the Ready
   replicas, not while a backlog drains, and, where a plan exists, once the breach has lasted
   one rate window: the plan sizes at the SLO, so one window over it is noise): the plan's
   count where it asks for more than the Ready replicas, one replica more where it does not
   (its capacity is off near the knee, by an amount no p99 tells), Ready x breach without a
   plan; the queue/KV-cache guard, where there is no plan yet, when requests queue or the KV
   cache runs past its target; no scale-down while requests queue or latency is near its SLO;
   an idle fleet (nothing arriving, running or waiting) needs no capacity model to scale down;
   missing, stale or incomplete metrics hold (never read as "no load").

Worked numbers (R1 fp8 on 8xH200, horizon 344 s): 16 req/s arriving, rising 0.6 req/s per
minute -> 19.4 req/s forecast in 344 s; a replica learned at 30 ms + 12 ms per req/s with a 90 ms
aim serves 5.0 req/s; the load rose at most 25% above its forecast in 90% of its windows ->
headroom 4.9 req/s; plan ceil((19.4 + 4.9) / 5.0) = 5 replicas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .api.spec import WEEKDAYS, ScalingSchedule, ScalingSpec, SloSpec
from .api.status import (
    CapacityModel,
    LoadMemory,
    RatePoint,
    Recommendation,
    ScalingState,
    SeasonProfile,
    SloBudget,
    StepBin,
)
from .signals import TPOT_BUCKETS, Signal, Signals, share_over, tail_quantile

HISTORY_LIMIT = 256
TOLERANCE = 0.1  # a scale-up waits until the load is 10% past the fleet's learned capacity
# Step 1: demand
START_PRIOR_SECONDS = 300.0  # horizon before a scale-up was seen: model servers load in minutes
START_SECONDS_WEIGHT = 0.5  # weight of the newest observed start time in the learned one
BACKLOG_LOOKBACK = (30.0, 120.0)  # age range of the history entry backlog growth is taken from
STEADY_SECONDS = 60.0  # the PromQL rate window: the rates then describe this replica count
TREND_MIN_POINTS = 4
TREND_MIN_TSTAT = 3.0  # slope / its standard error
TREND_MAX_JUMP = 0.5  # a trend: no one rate window holds more than half of its rise
NOISE_SIGMAS = 2.0  # a change between two rate windows within this many deviations is chance
TREND_MAX_FACTOR = 2.0  # the forecast stays within [rate / 2, rate x 2]
POINTS_PER_HORIZON = 16  # rate points kept per horizon (at most one per decision)
SEASON_BINS = 48  # bins of the period's profile (half an hour each for a day)
# Step 2: capacity
MIN_KV_FOR_CALIBRATION = 0.05  # below this, KV usage says too little about capacity
MAX_CAPACITY_STRETCH = 20.0  # the prior extrapolates a lightly loaded replica at most this far
MIN_CAPACITY_STRETCH = 0.5  # an overloaded replica still serves half of what it finishes
CAPACITY_DECAY = 0.98  # weight of older samples per new one (~50 samples, ~12 min at 15 s)
CAPACITY_MIN_SAMPLES = 4
LINE_MIN_SPREAD = 0.1  # a line needs rates spread by 10% (coefficient of variation)
LINE_MAX_GAIN = 2.0  # the line may at most double the through-the-origin estimate
STEP_DECAY = 0.999  # the step-time curve forgets slowly (half in ~700 samples, ~3 h at 15 s):
# it needs loads that differ, and the engine's step time does not change with the hour
BAND_RATIO = 1.25  # the curve keeps one point per band of running requests 25% wide
BAND_MIN_WEIGHT = 2.0  # a band used for the curve has about two samples or more
BAND_MIN_KEPT = 0.05  # a band whose weight decayed below this is dropped
TAIL_MIN_WEIGHT = 2.0  # samples inside a bucket before their p99 / mean ratio is used
BOUND_SHARE = 0.05  # a p99 in the top 5% of its bucket: the bucket holds the whole tail
ADMISSION_LIMIT_CHANGE = 0.1  # a learned admission limit is rewritten once it moves by 10%
# Step 3: headroom
HEADROOM_QUANTILE = 0.9
BUDGET_MIN_MISSES = 10.0  # attainment is judged once the budget allowed this many misses
RISE_MAX = 10.0  # a window from (almost) no load counts as at most an elevenfold rise
MEMORY_WINDOWS = 128
SKILL_DECAY = 1.0 - 1.0 / MEMORY_WINDOWS  # trend and flat errors forget as the rises do
SEASON_MIN_WINDOWS = 4  # windows forecast from the profile before their rises size the headroom
# Step 5: guards
DOWN_WINDOW_MAX = 300.0  # unset scaleDown.stabilizationSeconds: at most this (the HPA's default)
BREACH_SECONDS = STEADY_SECONDS  # a planned fleet's latency guard waits out one rate window
CANCEL_SECONDS = STEADY_SECONDS  # pods still starting that the plan has not asked for this long
# are removed without waiting for the down window
DRAINING_SHARE = 0.1  # the backlog shrinks by a tenth of the finished rate or more: draining
LATENCY_HEADROOM = 0.8  # no scale-down while TTFT or TPOT p99 is above 80% of its SLO


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
    mode: str | None = None  # the quantization mode it serves (idem)
    # a mixture of experts (spec.model.is_moe()): its step time flattens with the batch, so
    # the running-requests curve does not bound the TPOT line (`replica_capacity`)
    moe: bool = False
    # (replicas to keep at least, why): the quantization ladder serves below its top rung
    # because more replicas could not carry the load (quantization.keeps_replicas)
    keep_replicas: tuple[int, str] | None = None


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
    demand: Demand | None = None  # step 1's demand, where this tick computed one
    slo: tuple[bool, str, str] | None = None  # SLOMet (met, reason, message), once judged


# ---------------------------------------------------------------------------- 1. demand --
@dataclass(frozen=True)
class Demand:
    """Requests/s arriving now and forecast one horizon ahead."""

    now: float
    finished: float
    growth: float  # of the backlog (running + waiting), requests/s
    slope: float  # req/s per second used for the forecast (0: no significant trend)
    ahead: float  # forecast at now + horizon
    horizon: float
    until_ready: float  # the highest rate forecast until a pod ordered now is Ready
    seasonal: bool = False  # the forecast follows the period's profile
    # a trend left out (slope, past trend error, past flat error): it forecast worse than none
    dropped: tuple[float, float, float] | None = None

    def words(self) -> str:
        if self.seasonal:
            trend = f"seasonal profile, peak {self.until_ready:.2f} until then"
        elif self.slope:
            trend = f"trend {self.slope * 60:+.2f} req/s per min"
        elif self.dropped is not None:
            slope, missed, flat = self.dropped
            how = f"{missed / flat:.1f}x as far as" if flat > 0 else "where"
            trend = (
                f"trend {slope * 60:+.2f} req/s per min not used: past trend forecasts missed "
                f"{how} the rate held flat"
            )
        else:
            trend = "no sustained trend"
        return (
            f"demand {self.now:.2f} req/s ({self.finished:.2f} finished, backlog "
            f"{self.growth:+.2f}/s), {self.ahead:.2f} forecast in {self.horizon:.0f}s ({trend})"
        )


def learn_start(
    state: ScalingState, inp: ScalingInputs, now: float
) -> tuple[float | None, int | None, float | None]:
    """(scale_up_since, scale_up_target, start_seconds) after this tick: once as many pods are
    Ready as the observed scale-up asked for, it teaches how long pods take to start
    (scheduling, image, model load). A state written before the target was kept waits for
    all replicas."""
    since, goal, learned = state.scale_up_since, state.scale_up_target, state.start_seconds
    if since is not None and inp.ready >= (goal if goal is not None else inp.replicas):
        took = max(0.0, now - since)
        w = START_SECONDS_WEIGHT
        learned = took if learned is None else w * took + (1 - w) * learned
        since, goal = None, None
    return since, goal, (None if learned is None else round(learned, 1))


def observe_start(
    since: float | None, goal: int | None, current: int, target: int, now: float
) -> tuple[float | None, int | None]:
    """(scale_up_since, scale_up_target) after deciding `target` replicas from `current`. A
    scale-up is observed from when it was ordered until `target` pods are Ready. While one is
    observed, a later scale-up leaves it be: its pods are the first to start, and restarting the
    clock at every step of a long rise would never see one finish. A scale-down below its
    target ends it: the pods still starting are the first a ReplicaSet deletes."""
    if target > current and since is None:
        return now, target
    if target < current and (goal is None or target < goal):
        return None, None
    return since, goal


def arrival_rate(
    history: list[Recommendation], finished: float, backlog: float, now: float
) -> tuple[float, float]:
    """(requests/s arriving, of which backlog growth): the finished rate plus how fast the
    requests running or waiting grew since the history entry nearest a rate window ago."""
    lo, hi = BACKLOG_LOOKBACK
    past = [r for r in history if r.backlog is not None and lo <= now - r.time <= hi]
    if not past:
        return finished, 0.0
    ref = min(past, key=lambda r: abs(now - r.time - STEADY_SECONDS))
    assert ref.backlog is not None
    growth = (backlog - ref.backlog) / (now - ref.time)
    return max(0.0, finished + growth), growth


def rate_trend(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(slope in req/s per second, its t-statistic) of a least-squares line through (time,
    rate) points; None with too few points."""
    k = len(points)
    if k < TREND_MIN_POINTS:
        return None
    mt = sum(p[0] for p in points) / k
    mr = sum(p[1] for p in points) / k
    var = sum((p[0] - mt) ** 2 for p in points)
    if var <= 0:
        return None
    slope = sum((p[0] - mt) * (p[1] - mr) for p in points) / var
    resid = sum((p[1] - mr - slope * (p[0] - mt)) ** 2 for p in points) / (k - 2)
    se = math.sqrt(resid / var)
    tstat = slope / se if se > 0 else (math.inf if slope != 0 else 0.0)
    return slope, tstat


def sustained_slope(points: list[tuple[float, float]]) -> float:
    """The slope of a least-squares line through the points when it is significant (t-statistic
    >= TREND_MIN_TSTAT) and sustained: the later half of the span still rises (or falls) at a
    third of it or more, and no rate window (STEADY_SECONDS) holds more than TREND_MAX_JUMP of
    the rise (the fitted line's, at most the points' own range) beyond what the counting noise
    explains. A step or a burst start is a jump, not a trend: its rise happens within one rate
    window, and after it the rate is flat. A ramp that starts slowly and steepens (a daily rise
    out of its trough) is a trend: its first half may be flat."""
    fit = rate_trend(points)
    if fit is None or abs(fit[1]) < TREND_MIN_TSTAT:
        return 0.0
    span = points[-1][0] - points[0][0]
    # A jump is a rise concentrated in one rate window; a trend spreads over the span.
    jump = max(
        (
            abs(b[1] - a[1]) - counting_noise(a[1], b[1])
            for i, a in enumerate(points)
            for b in points[i + 1 :]
            if b[0] - a[0] <= STEADY_SECONDS
        ),
        default=0.0,
    )
    # The rise is the line's, but no more than the points' own: a line fitted through a flat
    # stretch that ends in a step rises by more than the step itself.
    rise = min(abs(fit[0]) * span, max(p[1] for p in points) - min(p[1] for p in points))
    if jump > TREND_MAX_JUMP * rise:
        return 0.0
    mid = (points[0][0] + points[-1][0]) / 2
    later = [p for p in points if p[0] >= mid]
    part = rate_trend(later) if len(later) >= 3 else None
    if part is None or part[0] / fit[0] < 1 / 3:
        return 0.0
    return fit[0]


def counting_noise(a: float, b: float) -> float:
    """How far two rates (req/s) read over STEADY_SECONDS each differ by chance alone:
    NOISE_SIGMAS standard deviations of the difference of two Poisson counts' rates."""
    return NOISE_SIGMAS * math.sqrt(max(0.0, a + b) / STEADY_SECONDS)


def season_deltas(
    season: SeasonProfile | None, now: float, horizon: float
) -> tuple[float, float] | None:
    """(profile at now + horizon, highest profile until then), each minus the profile now, in
    req/s; None until a whole period has been seen or where a bin is unseen. Differences, not
    ratios: near a trough a ratio of two small rates says little."""
    if season is None or now - season.since < season.period or not season.bins:
        return None
    width = season.period / len(season.bins)

    def level(t: float) -> float | None:
        b = int((t % season.period) // width)
        near = [season.bins[(b + d) % len(season.bins)] for d in (-1, 0, 1)]
        seen = [x for x in near if x is not None]
        return sum(seen) / len(seen) if seen else None

    base = level(now)
    if base is None:
        return None
    steps = [now + k * width for k in range(1, int(horizon // width) + 1)] + [now + horizon]
    levels = [level(t) for t in steps]
    if any(x is None for x in levels):
        return None
    deltas = [x - base for x in levels if x is not None]
    return deltas[-1], max([0.0, *deltas])


def remember_season(
    season: SeasonProfile | None, now: float, rate: float, period: float
) -> SeasonProfile | None:
    """Fold the rate now into its bin of the period's profile (the mean of the old value and
    the new); a changed period starts over. None without a period."""
    if period <= 0:
        return None
    if season is None or season.period != period:
        season = SeasonProfile(period=period, since=now, bins=[None] * SEASON_BINS)
    bins = list(season.bins)
    b = int((now % period) // (period / len(bins)))
    old = bins[b]
    bins[b] = round(rate if old is None else (old + rate) / 2, 4)
    return SeasonProfile(period=period, since=season.since, bins=bins)


def forecast(
    rate: float,
    finished: float,
    growth: float,
    points: list[RatePoint],
    now: float,
    horizon: float,
    season: SeasonProfile | None = None,
    fit_span: float | None = None,
) -> Demand:
    """Step 1: the rate now and one horizon ahead. Once a whole period has been seen, the
    period's profile says how much the rate changes until then (added to the rate now, never
    below half of it); otherwise a sustained trend over the last `fit_span` (default: one
    horizon) of rate points (spanning half of it at least) extends it, at most by
    TREND_MAX_FACTOR."""
    deltas = season_deltas(season, now, horizon)
    if deltas is not None:
        ahead = max(rate / TREND_MAX_FACTOR, rate + deltas[0])
        return Demand(rate, finished, growth, 0.0, ahead, horizon, rate + deltas[1], True)
    span = horizon if fit_span is None else fit_span
    recent = [(p.time, p.rate) for p in points if 0 < now - p.time <= span]
    slope = 0.0
    if recent and now - recent[0][0] >= span / 2:
        slope = sustained_slope([*recent, (now, rate)])
    ahead = max(rate / TREND_MAX_FACTOR, min(rate * TREND_MAX_FACTOR, rate + slope * horizon))
    ahead = max(0.0, ahead)
    return Demand(rate, finished, growth, slope, ahead, horizon, max(rate, ahead))


def trend_skill(demand: Demand, memory: LoadMemory | None) -> Demand:
    """A trend forecast is kept only while it has earned it: over the completed windows that
    began with a trend (used or not), the trend's forecast missed the rate one horizon later by
    no more than the rate at the window's start did (`memory.trend_error` <= `flat_error`).
    Otherwise the load's slopes do not last a horizon (noise on a flat load that a 15-minute
    start extends into replicas), and the demand is the rate now. No windows yet: kept."""
    if not demand.slope or memory is None:  # a profile's forecast has no slope
        return demand
    if memory.trend_error <= memory.flat_error:
        return demand
    return replace(
        demand,
        slope=0.0,
        ahead=demand.now,
        until_ready=demand.now,
        dropped=(demand.slope, memory.trend_error, memory.flat_error),
    )


def outlook(demand: Demand, memory: LoadMemory | None, now: float, horizon: float) -> Demand:
    """The demand of a tick forecast `horizon` ahead instead of the autoscaler's own horizon
    (the quantization ladder asks how far the load goes while a switch runs): from the
    period's profile once one was seen, else the trend fitted over the rate points the
    autoscaler keeps (one of its horizons) extended to `horizon`, at most a doubling, while
    past trends have earned it (`trend_skill`)."""
    points = memory.points if memory is not None else []
    season = memory.season if memory is not None else None
    ahead = forecast(
        demand.now,
        demand.finished,
        demand.growth,
        points,
        now,
        horizon,
        season,
        fit_span=demand.horizon,
    )
    return trend_skill(ahead, memory)


# -------------------------------------------------------------------------- 2. capacity --
@dataclass(frozen=True)
class Capacity:
    """Requests/s one Ready replica serves within the SLO, and where the number comes from."""

    per_replica: float
    source: str
    kv_binds: bool = False  # the KV cache, not the decode step's time, sets it


def learn_capacity(
    model: CapacityModel | None,
    colour: str,
    mode: str | None,
    rate: float,
    tpot: float,
    kv: float = 0.0,
    running: float | None = None,
    tpot_mean: float | None = None,
    aim: float = 0.1,
    tpot_exact: float | None = None,
) -> CapacityModel:
    """Add one steady sample (per Ready replica: requests/s finished, TPOT p99, KV-cache usage,
    and where known running requests and the mean TPOT) to the weighted moments (older samples
    decay by CAPACITY_DECAY, the running-requests line by STEP_DECAY). `tpot_exact`, the p99
    read off the buckets' tails (`signals.tail_quantile`), where it lies near the aim
    (`near_aim`), goes into the mean point near the aim (decayed as the line's moments: a
    replica's requests/s at the aim move with the workload's lengths). A new
    colour or mode starts a new model: the replicas are a different build or precision."""
    if model is None or model.colour != colour or model.mode != mode:
        model = CapacityModel(colour=colour, mode=mode)
    w = CAPACITY_DECAY * model.weight + 1.0

    def upd(mean: float, x: float) -> float:
        return mean + (x - mean) / w

    out = model.model_copy(
        update={
            "samples": model.samples + 1,
            "weight": round(w, 6),
            "mean_rate": round(upd(model.mean_rate, rate), 6),
            "mean_tpot": round(upd(model.mean_tpot, tpot), 8),
            "mean_rate_sq": round(upd(model.mean_rate_sq, rate * rate), 6),
            "mean_rate_tpot": round(upd(model.mean_rate_tpot, rate * tpot), 8),
            "mean_kv": round(min(max(upd(model.mean_kv, kv), 0.0), 1.0), 6),
            "near_weight": round(CAPACITY_DECAY * model.near_weight, 6),
        }
    )
    if tpot_exact is not None and near_aim(tpot_exact, aim):
        nw = out.near_weight + 1.0
        out = out.model_copy(
            update={
                "near_weight": round(nw, 6),
                "near_rate": round(out.near_rate + (rate - out.near_rate) / nw, 6),
                "near_tpot": round(out.near_tpot + (tpot_exact - out.near_tpot) / nw, 8),
            }
        )
    if running is None or tpot_mean is None or running <= 0 or tpot_mean <= 0 or rate <= 0:
        return out
    return learn_steps(out, rate, tpot, kv, running, tpot_mean, aim, tpot_exact)


def learn_steps(
    model: CapacityModel,
    rate: float,
    tpot: float,
    kv: float,
    n: float,
    m: float,
    aim: float,
    tpot_exact: float | None = None,
) -> CapacityModel:
    """The running-requests model's part of a sample (per replica: n running, m mean TPOT):
    m goes into the curve's band of n (every band decays by STEP_DECAY, bands that faded out
    are dropped), and the sample updates tokens per request, KV per running request and the
    ratio of TPOT p99 to the mean (in the aim's bucket the p99 read off the buckets' tail,
    `tpot_exact`, where there is one: the linear read is high there, R1 chat 98 ms for 87)."""
    band = math.floor(math.log(max(n, 1e-6)) / math.log(BAND_RATIO))
    curve: list[StepBin] = []
    hit = False
    for b in model.step_curve:
        w = b.weight * STEP_DECAY
        if b.band == band:
            hit = True
            w += 1.0
            b = b.model_copy(
                update={
                    "running": round(b.running + (n - b.running) / w, 6),
                    "step": round(b.step + (m - b.step) / w, 8),
                }
            )
        if w >= BAND_MIN_KEPT:
            curve.append(b.model_copy(update={"weight": round(w, 6)}))
    if not hit:
        curve.append(StepBin(band=band, running=round(n, 6), step=round(m, 8), weight=1.0))
    curve.sort(key=lambda b: b.band)
    w = max(model.weight, 1.0)  # the plain weight learn_capacity has just updated

    def upd(mean: float, x: float) -> float:
        return x if mean <= 0 else mean + (x - mean) / w

    update: dict[str, Any] = {
        "curve_samples": model.curve_samples + 1,
        "step_curve": curve,
        "tokens_per_request": round(upd(model.tokens_per_request, n / (rate * m)), 4),
    }
    if kv >= MIN_KV_FOR_CALIBRATION:
        update["kv_per_running"] = round(upd(model.kv_per_running, kv / n), 8)
    lo, hi = bucket_of(aim)
    ratio = tpot / m
    if lo < tpot <= hi:
        if tpot_exact is not None and lo < tpot_exact <= hi:
            ratio = tpot_exact / m
        tw = STEP_DECAY * model.tail_weight + 1.0
        update["tail_weight"] = round(tw, 6)
        update["tail_ratio"] = round(model.tail_ratio + (ratio - model.tail_ratio) / tw, 6)
    elif tpot <= lo and at_bucket_top(tpot) and (model.tail_bound <= 0 or ratio < model.tail_bound):
        update["tail_bound"] = round(max(ratio, 1.0), 6)
    return model.model_copy(update=update)


def near_aim(p99: float, aim: float, bounds: tuple[float, ...] = TPOT_BUCKETS) -> bool:
    """Whether a p99 lies in the aim's bucket or the one above it."""
    lo, hi = bucket_of(aim, bounds)
    _, top = bucket_of(hi * 1.0001, bounds)
    return lo < p99 <= top


def bucket_of(value: float, bounds: tuple[float, ...] = TPOT_BUCKETS) -> tuple[float, float]:
    """The (lower, upper] bounds of the histogram bucket that holds `value`."""
    for i, hi in enumerate(bounds):
        if value <= hi:
            return (bounds[i - 1] if i else 0.0), hi
    return bounds[-1], math.inf


def at_bucket_top(p99: float, bounds: tuple[float, ...] = TPOT_BUCKETS) -> bool:
    """Whether a histogram_quantile p99 reads in the top BOUND_SHARE of its bucket: then the
    bucket holds the whole tail and the reading is only an upper bound of the requests' p99
    (vLLM's TPOT buckets are wide: 25 ms from 50 ms to 100 ms)."""
    lo, hi = bucket_of(p99, bounds)
    return hi == math.inf or p99 >= hi - BOUND_SHARE * (hi - lo)


def kv_bound(model: CapacityModel, a: float, b: float, kv_target: float) -> float | None:
    """Requests/s per replica at which the KV cache reaches `kv_target`, or None when the
    samples' usage is too low to say. By Little's law a replica holds rate x request time
    requests, and a request's time grows with TPOT: usage = k x rate x TPOT(rate), with k
    from the weighted means and TPOT(rate) = a + b x rate (b = 0: TPOT held at a). A cache
    that fills before TPOT reaches the aim (long outputs: reasoning) is the tighter bound."""
    if model.mean_kv < MIN_KV_FOR_CALIBRATION or model.mean_rate_tpot <= 0:
        return None
    c = kv_target * model.mean_rate_tpot / model.mean_kv  # rate x TPOT at the target
    if b <= 0:
        return c / a if a > 0 else None
    return (-a + math.sqrt(a * a + 4.0 * b * c)) / (2.0 * b)


def replica_capacity(
    model: CapacityModel | None,
    colour: str,
    mode: str | None,
    aim: float,
    kv_target: float | None = None,
    moe: bool = False,
) -> Capacity | None:
    """Requests/s one replica of (colour, mode) serves with TPOT p99 at `aim`, from the learned
    line TPOT = a + b x rate; None while fewer than CAPACITY_MIN_SAMPLES were taken. With rates
    too little spread for a line (or a line that does not rise) the line through the origin
    and the means stands in: it underestimates a replica below the rates seen, never over.
    Once samples near the aim were read off the buckets' tails (`near_weight`), their mean
    point sets the level and the line (or the origin's) only the slope: histogram_quantile's
    linear read is high inside a wide bucket (R1 chat at 4.8 req/s: 98 ms read, 87 ms the
    requests' own p99), so the line alone stops short of the replica by ~10%. Unless the
    model is a mixture of experts (`moe`), no more than the step-time curve says
    (`step_capacity`): a dense model's TPOT turns up steeply as its batch grows (R1-Distill
    7B chat: TPOT p99 22 ms at 6 req/s, 61 at 12, 138 at 14.6), and a line through lighter
    loads promised 1.2-2x what it carries. With `kv_target`, no more than the KV cache holds
    at that usage (`kv_bound`)."""
    if (
        model is None
        or model.colour != colour
        or model.mode != mode
        or model.samples < CAPACITY_MIN_SAMPLES
        or model.mean_rate <= 0
        or model.mean_tpot <= 0
    ):
        return None
    steps = running_capacity(model, aim, kv_target)
    if steps is not None:
        return steps
    per = origin = aim * model.mean_rate / model.mean_tpot
    a, b = model.mean_tpot, 0.0
    slope = model.mean_tpot / model.mean_rate  # TPOT per req/s along the line through the origin
    source = f"proportional to TPOT, learned from {model.samples} samples"
    var = model.mean_rate_sq - model.mean_rate**2
    if var > (LINE_MIN_SPREAD * model.mean_rate) ** 2:
        b_fit = (model.mean_rate_tpot - model.mean_rate * model.mean_tpot) / var
        a_fit = model.mean_tpot - b_fit * model.mean_rate
        if b_fit > 0 and 0 <= a_fit < aim:
            a, b = a_fit, b_fit
            slope = b
            per = min(max((aim - a) / b, origin), LINE_MAX_GAIN * origin)
            source = (
                f"TPOT {a * 1000:.0f}ms + {b * 1000:.1f}ms per req/s, learned from "
                f"{model.samples} steady samples"
            )
    if model.near_weight >= TAIL_MIN_WEIGHT and model.near_rate > 0:
        # the level near the aim from the tails' read there, along the line's slope (a
        # replica read past the aim still serves half of what it finished there)
        near = model.near_rate + (aim - model.near_tpot) / slope
        per = min(max(near, MIN_CAPACITY_STRETCH * model.near_rate), LINE_MAX_GAIN * origin)
        source += (
            f"; near the aim {model.near_tpot * 1000:.0f}ms at {model.near_rate:.2f} req/s "
            "(the buckets' tails)"
        )
    curve = None if moe else step_capacity(model, aim)
    if curve is not None and curve.per_replica < per:
        per = curve.per_replica
        source += f"; the step-time curve bounds it (a dense model): {curve.source}"
    bound = kv_bound(model, a, b, kv_target) if kv_target else None
    if bound is not None and bound < per:
        source += (
            f"; the KV cache ({model.mean_kv:.0%} at {model.mean_rate:.2f} req/s) reaches "
            f"{kv_target:.0%} first"
        )
        return Capacity(bound, source, kv_binds=True)
    return Capacity(per, source)


def _segments(model: CapacityModel) -> list[tuple[float, float]]:
    """The curve's points (n, m) with enough weight, rising: a band whose mean TPOT is not
    above the last kept one's (noise) is left out."""
    pts: list[tuple[float, float]] = []
    for b in model.step_curve:
        if b.weight >= BAND_MIN_WEIGHT and (not pts or b.step > pts[-1][1]):
            pts.append((b.running, b.step))
    return pts


def _segment(pts: list[tuple[float, float]], i: int) -> tuple[float, float, float, float]:
    """The segment from point i - 1 to point i."""
    (n0, m0), (n1, m1) = pts[i - 1], pts[i]
    return n0, m0, n1, m1


def _top(pts: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    """The line past the heaviest point: least squares through the three heaviest (two where
    there are two), as a segment ending at the heaviest point's load."""
    last = pts[-3:]
    n = sum(p[0] for p in last) / len(last)
    m = sum(p[1] for p in last) / len(last)
    var = sum((p[0] - n) ** 2 for p in last)
    b = sum((p[0] - n) * (p[1] - m) for p in last) / var
    if b <= 0:  # noise: the two heaviest
        (n0, m0), (n1, m1) = pts[-2], pts[-1]
        return n0, m0, n1, m1
    n1 = pts[-1][0]
    return n, m, n1, m + b * (n1 - n)


def step_at(pts: list[tuple[float, float]], n: float) -> float:
    """The mean TPOT at n running: piecewise linear between the points; below them along the
    lightest segment; past the heaviest, along the line through the three heaviest (local:
    for a concave step time, e.g. a mixture of experts touching more experts as the batch
    grows, the tightest line that stays conservative; three points: one band's noise does
    not tilt it)."""
    if n > pts[-1][0]:
        n0, m0, n1, m1 = _top(pts)
    else:
        i = next(k for k in range(1, len(pts)) if n <= pts[k][0])
        n0, m0, n1, m1 = _segment(pts, i)
    return m0 + (m1 - m0) * (n - n0) / (n1 - n0)


def running_at(pts: list[tuple[float, float]], m: float) -> float:
    """The running requests at which the mean TPOT reaches m (the inverse of step_at)."""
    if m > pts[-1][1]:
        n0, m0, n1, m1 = _top(pts)
    else:
        i = next(k for k in range(1, len(pts)) if m <= pts[k][1])
        n0, m0, n1, m1 = _segment(pts, i)
    return n0 + (n1 - n0) * (m - m0) / (m1 - m0)


def _curve(model: CapacityModel) -> tuple[list[tuple[float, float]], float] | None:
    """The step-time curve's rising points and the ratio of TPOT p99 to its mean (as read in
    the aim's bucket; before that the lowest upper bound read at the top of a lower bucket),
    or None while the curve has fewer than two rising points or CAPACITY_MIN_SAMPLES, or the
    ratio or the tokens per request are unknown."""
    pts = _segments(model)
    ratio = model.tail_ratio if model.tail_weight >= TAIL_MIN_WEIGHT else model.tail_bound
    if (
        len(pts) < 2
        or ratio <= 0
        or model.curve_samples < CAPACITY_MIN_SAMPLES
        or model.tokens_per_request <= 0
    ):
        return None
    return pts, max(ratio, 1.0)


def step_capacity(model: CapacityModel, aim: float) -> Capacity | None:
    """Requests/s per replica where TPOT binds, from the step-time curve: the running requests
    n at which the curve's mean TPOT reaches the aim over the p99/mean ratio (past the loads
    seen, along its heaviest points), by Little's law n / (tokens per request x that mean
    TPOT). For a dense model (step time growing with the batch: each step reads the weights
    once and every running request's cache) this is where its TPOT turns up steeply, which a
    line through lighter loads misses; a mixture of experts' curve flattens past the loads
    seen, and this underestimates it. None as `_curve`, or where the curve puts n at or
    below zero (an aim under its lightest points)."""
    curve = _curve(model)
    if curve is None:
        return None
    pts, ratio = curve
    mean = aim / ratio
    n = running_at(pts, mean)
    if n <= 0:
        return None
    seen = "within" if n <= pts[-1][0] else "beyond"
    return Capacity(
        n / (model.tokens_per_request * mean),
        f"{n:.0f} running at mean TPOT {mean * 1000:.1f}ms (p99 / mean {ratio:.2f}; {seen} "
        f"the {pts[-1][0]:.0f} seen), {model.tokens_per_request:.0f} TPOTs per request",
    )


def running_capacity(model: CapacityModel, aim: float, kv_target: float | None) -> Capacity | None:
    """Requests/s per replica where the KV cache binds: n* = `kv_target` / KV per running
    request, then by Little's law n* / (tokens per request x TPOT(n*)), the mean TPOT read off
    the step-time curve (past the loads seen, along its heaviest points). None where TPOT
    binds first (n* past where the curve reaches the aim over the p99/mean ratio), while the
    curve has fewer than two rising points, or the ratio is unknown."""
    curve = _curve(model)
    if curve is None:
        return None
    pts, ratio = curve
    n_tpot = running_at(pts, aim / ratio)
    if not kv_target or model.kv_per_running <= 0 or kv_target / model.kv_per_running >= n_tpot:
        # TPOT binds: the rate line decides, bounded for a dense model by the curve
        # (`step_capacity`; past the loads seen a mixture of experts' curve flattens as all
        # experts are touched, so there the line alone)
        return None
    n = kv_target / model.kv_per_running
    why = f"KV cache {kv_target:.0%} ({model.kv_per_running:.2%} per request)"
    step = step_at(pts, n)
    if n <= 0 or step <= 0:
        return None
    per = n / (model.tokens_per_request * step)
    seen = "within" if n <= pts[-1][0] else "beyond"
    return Capacity(
        per,
        f"{n:.0f} running at {why}, mean TPOT {step * 1000:.1f}ms there ({seen} the "
        f"{pts[-1][0]:.0f} seen), {model.tokens_per_request:.0f} TPOTs per request; "
        f"{model.curve_samples} samples",
        kv_binds=True,
    )


def tpot_aim(spec: ScalingSpec) -> float:
    """The TPOT the plan sizes for: the SLO's p99 times targets.tpotSloFraction."""
    return spec.targets.tpot_slo_fraction * spec.slo.tpot_p99_seconds


def admission_limit(model: CapacityModel | None, aim: float) -> tuple[int, str] | None:
    """The learned limit of the engine pod's admission gate (spec.engine.admission without
    maxRunning): the running requests at which the step-time curve's mean TPOT reaches the
    aim (the TPOT SLO times targets.tpotSloFraction), past the loads seen along its heaviest
    points. Past it every admitted request's steps are slower than its SLO allows, so one more
    request in vLLM costs all of them their TPOT; below it the gate only holds the overflow.
    The mean, not the p99: the p99 / mean ratio is the spread of TPOT over changing loads, and
    with the gate the load on a pod stops at the limit. A limit too low is corrected upward:
    the curve then sees the mean TPOT below the aim at the limit and reads the aim further on.
    None while the curve has fewer than two rising points or CAPACITY_MIN_SAMPLES samples, or
    where it puts the aim at or below one running request."""
    if model is None or model.curve_samples < CAPACITY_MIN_SAMPLES:
        return None
    pts = _segments(model)
    if len(pts) < 2:
        return None
    n = running_at(pts, aim)
    if n < 1:
        return None
    seen = "within" if n <= pts[-1][0] else "beyond"
    return int(n), (
        f"mean TPOT reaches {aim * 1000:.0f}ms at {int(n)} running per pod on the learned "
        f"step-time curve ({seen} the {pts[-1][0]:.0f} seen; {model.curve_samples} samples)"
    )


def next_admission_limit(
    written: int | None, learned: tuple[int, str] | None
) -> tuple[int | None, str | None]:
    """The limit to publish and why (None for the why: keep what is written). A first learned
    limit is published; later ones once they differ from the written one by
    ADMISSION_LIMIT_CHANGE or more (every change reaches each pod through a volume refresh,
    and the curve's noise is not news). While nothing is learned (a new colour or mode starts
    a new curve) the written limit stays: it is the best that is known."""
    if learned is None:
        return written, None
    n, why = learned
    if written is not None and abs(n - written) < ADMISSION_LIMIT_CHANGE * written:
        return written, None
    return n, why


def learned_admission(spec: ScalingSpec, state: ScalingState) -> tuple[ScalingState, str | None]:
    """The autoscaler's memory with the admission limit to publish (spec.engine.admission
    without maxRunning), and the Event's words where it changed (None: unchanged)."""
    aim = tpot_aim(spec)
    limit, why = next_admission_limit(state.admission_limit, admission_limit(state.capacity, aim))
    if why is None:
        return state, None
    before = state.admission_limit
    state = state.model_copy(update={"admission_limit": limit, "admission_limit_source": why[:512]})
    was = "none" if before is None else str(before)
    return state, f"admission limit {was} -> {limit} requests per pod: {why}"


def prior_capacity(
    served: float | None,
    ready: int,
    kv: float,
    kv_target: float,
    tpot: float | None,
    aim: float,
    queued: bool = False,
) -> Capacity | None:
    """Before samples: the rate each Ready replica finishes now, stretched to the KV-cache
    target and to the TPOT aim (the lower of the two), within [MIN, MAX]_CAPACITY_STRETCH. A
    replica with a queue is at a limit (its batch, its memory): it is not stretched up."""
    if served is None or served <= 0 or ready <= 0:
        return None
    stretches: list[tuple[float, str]] = []
    if kv >= MIN_KV_FOR_CALIBRATION:
        stretches.append((kv_target / kv, f"KV cache {kv:.0%} -> {kv_target:.0%}"))
    if tpot is not None and tpot > 0:
        stretches.append((aim / tpot, f"TPOT p99 {tpot:.3g}s -> {aim:.3g}s"))
    if not stretches:
        return None
    stretch, why = min(stretches)
    stretch = min(max(stretch, MIN_CAPACITY_STRETCH), 1.0 if queued else MAX_CAPACITY_STRETCH)
    return Capacity(served / ready * stretch, f"prior: {served / ready:.2f} req/s now at {why}")


# -------------------------------------------------------------------------- 3. headroom --
@dataclass(frozen=True)
class Headroom:
    """Requests/s kept above the forecast, and the numbers it came from."""

    fraction: float  # the quantile of the relative rises
    windows: int  # completed windows it was taken from
    top: float | None  # highest rate seen in them
    seasonal: bool = False  # taken from the windows forecast from the period's profile

    def over(self, base: float) -> float:
        """Headroom above `base`: the quantile's share, never planning past the highest rate
        seen (when base is below it)."""
        extra = self.fraction * base
        if self.top is not None:
            extra = min(extra, max(0.0, self.top - base))
        return extra

    def words(self) -> str:
        if not self.windows:
            return "headroom none (no whole horizon seen yet)"
        top = f", capped at the {self.top:.2f} req/s peak seen" if self.top is not None else ""
        kind = " forecast from the season's profile" if self.seasonal else ""
        return (
            f"headroom +{self.fraction:.0%} (q{HEADROOM_QUANTILE * 100:.0f} of rises over "
            f"{self.windows} horizon windows{kind}{top})"
        )


def remember_load(
    memory: LoadMemory | None,
    now: float,
    rate: float,
    base: float,
    horizon: float,
    every: float,
    seasonal: bool = False,
    trend: float | None = None,
) -> LoadMemory:
    """Add the rate now (at most one point per `every` seconds) and close the windows a
    horizon old: each closed window adds how far the rate rose above the forecast made at its
    start (relative) and the highest rate in it; a window whose forecast came from the
    period's profile adds its rise to the seasonal rises as well. A window that began with a
    `trend` forecast (used or not) adds how far it and the rate at the start were from the
    rate now to `trend_error` and `flat_error` (decayed by SKILL_DECAY: `trend_skill`)."""
    m = memory or LoadMemory()
    points, rises, tops = list(m.points), list(m.rises), list(m.tops)
    seasonal_rises = list(m.seasonal_rises)
    trend_error, flat_error = m.trend_error, m.flat_error
    if not points or now - points[-1].time >= every:
        points.append(
            RatePoint(
                time=now,
                rate=round(rate, 4),
                base=round(base, 4),
                seasonal=seasonal,
                trend=None if trend is None else round(trend, 4),
            )
        )
    while points and now - points[0].time >= horizon:
        start = points.pop(0)
        if start.trend is not None:
            trend_error = SKILL_DECAY * trend_error + abs(rate - start.trend)
            flat_error = SKILL_DECAY * flat_error + abs(rate - start.rate)
        top = max([p.rate for p in points if p.time - start.time <= horizon] + [start.rate])
        rise = top / start.base - 1.0 if start.base > 0 else (RISE_MAX if top > 0 else 0.0)
        rise = round(min(max(rise, 0.0), RISE_MAX), 4)
        rises.append(rise)
        tops.append(round(top, 4))
        if start.seasonal:
            seasonal_rises.append(rise)
    return LoadMemory(
        points=points[-40:],
        rises=rises[-MEMORY_WINDOWS:],
        tops=tops[-MEMORY_WINDOWS:],
        seasonal_rises=seasonal_rises[-MEMORY_WINDOWS:],
        trend_error=round(trend_error, 4),
        flat_error=round(flat_error, 4),
        season=m.season,
    )


def missed_share(signals: Signals | None, slo: SloSpec) -> float | None:
    """The share of requests in the rate window that missed the SLO: over the TTFT or the TPOT
    p99 SLO (from the histograms' buckets; one over both counts twice, so this is never below
    the truth) or failed. None while neither histogram saw a request."""
    if signals is None:
        return None
    ttft = share_over(signals.buckets.get(Signal.TTFT_BUCKETS), slo.ttft_p99_seconds)
    tpot = share_over(signals.buckets.get(Signal.TPOT_BUCKETS), slo.tpot_p99_seconds)
    if ttft is None and tpot is None:
        return None
    failed = signals.values.get(Signal.ERROR_RATE, 0.0)
    return min(1.0, (ttft or 0.0) + (tpot or 0.0) + failed)


def spend_budget(
    budget: SloBudget | None, now: float, rate: float | None, missed: float | None, window: float
) -> SloBudget | None:
    """Add one reading (requests/s finished, the share of them that missed) to the requests
    and misses weighted over `window` (exponentially: older ones count less by e per window).
    A reading covers the time since the last one, at most its rate window: a gap without
    readings is not counted as served. No reading: the budget as it was."""
    if rate is None or missed is None or rate < 0:
        return budget
    if budget is None:
        requests, misses, dt = 0.0, 0.0, STEADY_SECONDS
    else:
        dt = max(0.0, now - budget.time)
        decay = math.exp(-dt / window)
        requests, misses = budget.requests * decay, budget.missed * decay
        dt = min(dt, STEADY_SECONDS)
    requests += rate * dt
    misses += rate * min(max(missed, 0.0), 1.0) * dt
    return SloBudget(
        requests=round(requests, 4),
        missed=round(misses, 4),
        time=now,
        attainment=round(1.0 - misses / requests, 6) if requests > 0 else None,
    )


def slo_judged(budget: SloBudget | None, slo: SloSpec) -> bool:
    """Whether the budget saw enough requests to judge attainment: BUDGET_MIN_MISSES allowed."""
    return (
        budget is not None
        and budget.attainment is not None
        and budget.requests * (1.0 - slo.attainment) >= BUDGET_MIN_MISSES
    )


def slo_condition(budget: SloBudget | None, slo: SloSpec) -> tuple[bool, str, str] | None:
    """The SLOMet condition (met, reason, message) once attainment can be judged."""
    if not slo_judged(budget, slo):
        return None
    assert budget is not None and budget.attainment is not None  # slo_judged says so
    met = budget.attainment >= slo.attainment
    return (
        met,
        "AttainmentMet" if met else "AttainmentBelowTarget",
        f"{budget.attainment:.2%} of requests within TTFT p99 {slo.ttft_p99_seconds:g}s and "
        f"TPOT p99 {slo.tpot_p99_seconds:g}s and without error over the last "
        f"{slo.window_seconds / 60:.0f} min (weighted; target {slo.attainment:.2%})",
    )


def budget_words(budget: SloBudget | None, slo: SloSpec) -> str:
    """The attainment measured, for the decision's message."""
    target = f"target {slo.attainment:.2%} over {slo.window_seconds / 60:.0f} min"
    if budget is None or budget.attainment is None or not slo_judged(budget, slo):
        return f"SLO attainment: too few requests yet ({target})"
    return f"SLO attainment {budget.attainment:.2%} ({target})"


def headroom(memory: LoadMemory | None, seasonal: bool = False) -> Headroom:
    """Step 3: the HEADROOM_QUANTILE quantile of the relative rises (nearest rank). The
    headroom covers the errors of the forecast in use: while the forecast follows the period's
    profile, and once SEASON_MIN_WINDOWS windows were forecast that way, only their rises
    count (the rises of a trend forecast on a daily ramp say nothing of the profile's)."""
    if memory is None or not memory.rises:
        return Headroom(0.0, 0, None)
    top = max(memory.tops) if memory.tops else None
    by_season = seasonal and len(memory.seasonal_rises) >= SEASON_MIN_WINDOWS
    xs = sorted(memory.seasonal_rises if by_season else memory.rises)
    q = xs[min(len(xs) - 1, math.ceil(HEADROOM_QUANTILE * len(xs)) - 1)]
    return Headroom(q, len(xs), top, by_season)


# ------------------------------------------------------------------------------ 4. plan --
@dataclass(frozen=True)
class Plan:
    """Replicas for the load when a new pod would be Ready (`up`), and the fewest the load
    until then leaves room for (`keep`)."""

    up: int
    keep: int
    up_rate: float  # req/s sized for a scale-up (forecast + headroom)
    keep_rate: float  # req/s sized for a scale-down

    def recommend(self, current: int, capacity: float) -> tuple[int, str]:
        # Up only past the tolerance: a learned capacity is good to ~10%, so a load that needs
        # 5.04 replicas of it is served by 5 (the SLO guard is there if it was not).
        if self.up > current and self.up_rate > current * capacity * (1 + TOLERANCE):
            return self.up, "DemandForecast"
        if self.keep < current:
            return self.keep, "LowLoad"
        return current, "WithinTarget"

    def words(self, capacity: float) -> str:
        return (
            f"plan ceil({self.up_rate:.2f} / {capacity:.2f}) = {self.up} for when a new pod is "
            f"Ready, keep {self.keep} for {self.keep_rate:.2f} req/s until then"
        )


def plan(demand: Demand, capacity: float, room: Headroom) -> Plan:
    """Step 4: replicas = ceil((forecast + headroom) / capacity). The headroom is the only
    margin: a scale-up waits until the load is past the fleet by TOLERANCE (the capacity is
    learned to about that), and flapping is the stabilization windows' to prevent.

    A forecast from the period's profile whose own errors are not known yet (the headroom is
    still the trend forecast's: `room.seasonal` is false) is not stacked with that headroom:
    the trend's misses were mostly the very rise the profile now forecasts. The plan then
    takes the higher of the profile's forecast and the rate now plus that headroom."""

    def sized(rate: float) -> float:
        if demand.seasonal and not room.seasonal:
            return max(rate, demand.now + room.over(demand.now))
        return rate + room.over(rate)

    up_rate = sized(demand.ahead)
    keep_rate = sized(demand.until_ready)
    up = math.ceil(up_rate / capacity - 1e-9)
    keep = math.ceil(keep_rate / capacity - 1e-9)
    return Plan(up, max(keep, up), up_rate, keep_rate)


@dataclass(frozen=True)
class Scheduled:
    """A schedule window whose replicas are due now (`scheduled`)."""

    replicas: int
    name: str
    opens: float  # epoch seconds
    closes: float
    lead: float  # seconds before `opens` the replicas are due (the learned start time)
    time_zone: str

    def words(self) -> str:
        tz = ZoneInfo(self.time_zone)
        o, c = datetime.fromtimestamp(self.opens, tz), datetime.fromtimestamp(self.closes, tz)
        return (
            f"schedule {self.name} wants {self.replicas} replica{'' if self.replicas == 1 else 's'}"
            f" Ready {o:%a %H:%M}-{c:%H:%M} {self.time_zone} (due {self.lead:.0f}s before it "
            "opens: the start time)"
        )


def scheduled(schedules: list[ScalingSchedule], now: float, lead: float) -> Scheduled | None:
    """The window of `schedules` that asks for the most replicas at `now`: one that opens
    within `lead` seconds (its pods take that long to be Ready) or is open. A window opens on
    its days at `start` local time in its zone and closes at `end`, the next day where `end`
    is not after `start`; daylight saving time follows the zone."""
    best: Scheduled | None = None
    for w in schedules:
        tz = ZoneInfo(w.time_zone)
        today = datetime.fromtimestamp(now, tz).date()
        h0, m0 = (int(x) for x in w.start.split(":"))
        h1, m1 = (int(x) for x in w.end.split(":"))
        overnight = (h1, m1) <= (h0, m0)
        # from the day before (a window open overnight) to as far as the lead reaches
        for d in range(-1, 2 + int(lead // 86400)):
            day = today + timedelta(days=d)
            if WEEKDAYS[day.weekday()] not in w.days:
                continue
            last = day + timedelta(days=1) if overnight else day
            opens = datetime(day.year, day.month, day.day, h0, m0, tzinfo=tz).timestamp()
            closes = datetime(last.year, last.month, last.day, h1, m1, tzinfo=tz).timestamp()
            if opens - lead <= now < closes and (best is None or w.min_replicas > best.replicas):
                best = Scheduled(w.min_replicas, w.name, opens, closes, lead, w.time_zone)
    return best


# ---------------------------------------------------------------------------- 5. guards --
def guard(
    spec: ScalingSpec,
    vals: dict[Signal, float],
    ready: int,
    latency_settled: bool,
    planned: bool = False,
    draining: bool = False,
    breach_held: bool = True,
    plan_up: int | None = None,
) -> tuple[int, str, str] | None:
    """Step 5: the most replicas a safety net asks for now, with its reason; None when none
    asks. The SLO guard (once the latency window describes the Ready replicas): TTFT or TPOT
    p99 above the SLO -> ready x breach (at most doubled, at least one more), except while the
    backlog drains (`draining`: the replicas finish more than arrives, so the latency window
    shows requests that waited before, not what the fleet does now) and, where there is a
    plan, until the breach has held for BREACH_SECONDS (`breach_held`: the plan sizes the
    fleet at the SLO, so a p99 over it for one window is noise the plan already answers; a
    breach that lasts says the capacity model is wrong). A breach on fewer Ready replicas than
    the plan asks for (`plan_up`, before its tolerance) is the shortfall the plan already knows
    of: the guard asks for the plan's count (at least one more), not ready x breach, which
    overshoots near the knee where TPOT rises faster than the load. A breach where the plan
    asks for no more than Ready says its capacity is off, near the knee too (a queue's TTFT
    says even less of how far): one replica more, again once the new one is Ready and the
    breach still lasts a window, while the capacity model learns from the breach. Without a
    plan (no rate, or no capacity yet) ready x breach stands: nothing better is known. The
    queue / KV-cache guard, when there is no plan (`planned` false: no rate or capacity yet):
    requests waiting beyond the tolerated queue or KV usage past its target -> the concurrency
    the replicas would hold at the KV target. User targets when set."""
    per_pod = max(vals.get(Signal.PODS_REPORTING, float(ready)), 1.0)
    running = vals.get(Signal.RUNNING, 0.0)
    waiting = vals.get(Signal.QUEUE_DEPTH, 0.0)
    kv = vals.get(Signal.KV_CACHE_USAGE, 0.0)
    t, slo = spec.targets, spec.slo
    asks: list[tuple[float, str, str]] = []
    ttft, tpot = vals.get(Signal.TTFT_P99), vals.get(Signal.TPOT_P99)
    breaches = [
        (v / limit, name, v, limit)
        for name, v, limit in (
            ("TTFT", ttft, slo.ttft_p99_seconds),
            ("TPOT", tpot, slo.tpot_p99_seconds),
        )
        if v is not None
    ]
    worst = max(breaches, default=None)
    held = breach_held or not planned
    if worst is not None and worst[0] > 1.0 and latency_settled and not draining and held:
        more = max(math.ceil(ready * min(2.0, worst[0])), ready + 1)
        if plan_up is not None:
            # a plan above Ready counts the shortfall itself; one at or below Ready says the
            # fleet suffices, so its capacity is off near the knee: one replica more at a time
            more = min(more, plan_up) if plan_up > ready else ready + 1
        asks.append(
            (more, f"{worst[1]}AboveSLO", f"{worst[1]} p99 {worst[2]:.3g}s > SLO {worst[3]:g}s")
        )
    tolerated = t.queue_depth_per_replica * per_pod
    excess = max(0.0, waiting - tolerated)
    if planned:
        pass
    elif running > 0 and kv >= MIN_KV_FOR_CALIBRATION and (excess > 0 or kv > t.kv_cache_usage):
        want_c = per_pod * max(kv / t.kv_cache_usage, 1.0) * (1 + excess / running)
        asks.append(
            (
                want_c,
                "QueueBuildup" if excess > 0 else "HighKVCacheUsage",
                f"{running:.0f} running + {waiting:.0f} waiting at KV cache {kv:.0%} "
                f"(target {t.kv_cache_usage:.0%})",
            )
        )
    elif excess > 0:
        want_q = per_pod * (1 + excess / max(running, per_pod))
        asks.append((want_q, "QueueBuildup", f"{waiting:.0f} requests waiting"))
    if t.running_per_replica is not None:
        asks.append(
            (
                running / t.running_per_replica,
                "HighConcurrency",
                f"{running / per_pod:.1f} running per replica, target {t.running_per_replica:g}",
            )
        )
    gpu = vals.get(Signal.GPU_UTILIZATION)
    if t.gpu_utilization is not None and gpu is not None:
        asks.append(
            (
                per_pod * gpu / t.gpu_utilization,
                "HighGPUUtilization",
                f"GPU utilization {gpu:.0%}, target {t.gpu_utilization:.0%}",
            )
        )
    if not asks:
        return None
    want, reason, why = max(asks, key=lambda a: a[0])
    return math.ceil(want - 1e-9), reason, why


def breach_held(past: list[Recommendation], now: float, breach: float) -> bool:
    """Latency has been above its SLO (breach > 1) at every recommendation for BREACH_SECONDS
    up to now (a recommendation without the number ends the run)."""
    if breach <= 1.0:
        return False
    since = now
    for r in reversed(past):
        if r.breach is None or r.breach <= 1.0:
            break
        since = r.time
    return now - since >= BREACH_SECONDS


def latency_breach(spec: ScalingSpec, vals: dict[Signal, float]) -> float:
    """The larger of TTFT p99 / its SLO and TPOT p99 / its SLO (0 without data)."""
    ttft, tpot = vals.get(Signal.TTFT_P99), vals.get(Signal.TPOT_P99)
    return max(
        (ttft / spec.slo.ttft_p99_seconds) if ttft is not None else 0.0,
        (tpot / spec.slo.tpot_p99_seconds) if tpot is not None else 0.0,
    )


# ---------------------------------------------------------------------------- decide --
def _history(state: ScalingState, now: float, keep: float, current: int) -> list[Recommendation]:
    """Recommendations still inside the longest window. A fresh history starts with the current
    replica count (as the HPA seeds it), so a restart or a new resource never scales down
    before a whole down-window has been observed."""
    if not state.recommendations:
        # just before now, so a 0 s up-window (react to the newest) does not see it
        return [Recommendation(time=now - 0.001, replicas=current)]
    return [r for r in state.recommendations if now - r.time <= keep][-HISTORY_LIMIT:]


def down_window(spec: ScalingSpec, start_seconds: float | None) -> tuple[float, str]:
    """Seconds low load must last before Ready replicas leave, and why: the user's
    scaleDown.stabilizationSeconds, or where unset the time it takes to bring a replica back,
    one rate window (STEADY_SECONDS: the load's return is seen) plus the learned start time, at
    most DOWN_WINDOW_MAX (DOWN_WINDOW_MAX until a start was timed). A replica held idle longer
    than that costs more GPU time than starting it again when the load returns would (the
    rent-or-buy break-even); a long start keeps the usual window."""
    if spec.scale_down.stabilization_seconds is not None:
        return float(spec.scale_down.stabilization_seconds), ""
    if start_seconds is None:
        return DOWN_WINDOW_MAX, " (no start timed yet)"
    back = STEADY_SECONDS + start_seconds
    if back >= DOWN_WINDOW_MAX:
        return DOWN_WINDOW_MAX, ""
    return back, (
        f" (the time to bring a replica back: {STEADY_SECONDS:.0f}s to see the load return + "
        f"{start_seconds:.0f}s to start one)"
    )


def _stabilize(
    spec: ScalingSpec,
    history: list[Recommendation],
    n: int,
    raw: int,
    now: float,
    breach: float,
    starting: int = 0,
    start_seconds: float | None = None,
) -> tuple[int, str | None, str]:
    """Stabilization windows and step limits: (target, reason if a hold or a cancel replaced
    the plan's, why). Up: the lowest recommendation of the up-window, at most maxStepReplicas
    (a doubling when the plan is panicThreshold x the fleet). Down: the highest recommendation
    of the down-window (the window is named first: it is what a scale-down waits for), not
    while latency is near its SLO, at most maxStepReplicas. The down-window keeps Ready
    replicas from flapping; `starting` pods (not Ready yet) serve nothing, so those the plan
    has not asked for over CANCEL_SECONDS are removed without it (a ReplicaSet deletes
    not-Ready pods first): a burst shorter than a start leaves no fleet loading for it. The
    down-window is `down_window`'s (the learned `start_seconds` where the spec leaves it
    unset)."""
    if raw > n:
        window = [
            r.replicas for r in history if now - r.time <= spec.scale_up.stabilization_seconds
        ]
        target = max(n, min(window or [raw]))
        step = spec.scale_up.max_step_replicas
        if n > 0 and raw >= spec.panic_threshold * n:
            step = max(step, n)
        return min(target, n + step), None, ""
    if raw < n:
        down, down_why = down_window(spec, start_seconds)
        window = [r.replicas for r in history if now - r.time <= down]
        step = spec.scale_down.max_step_replicas
        target = max(min(n, max(window or [raw])), n - step)
        if target == n and starting > 0 and breach <= LATENCY_HEADROOM:
            recent = max(r.replicas for r in history if now - r.time <= CANCEL_SECONDS)
            cancel = max(min(n, recent), n - starting, n - step)
            if cancel < n:
                gone = n - cancel
                return (
                    cancel,
                    "StartingNotNeeded",
                    f"{gone} pod{'' if gone == 1 else 's'} still starting no longer needed (the "
                    f"plan has asked for at most {recent} for {CANCEL_SECONDS:.0f}s): removed "
                    "before loading; the down window holds Ready replicas only",
                )
        if target == n:
            return (
                n,
                "Stabilizing",
                f"lower load ({raw} replica{'' if raw == 1 else 's'} would do) must last "
                f"{down:.0f}s{down_why} before scaling down",
            )
        if breach > LATENCY_HEADROOM:
            return (
                n,
                "LatencyNearSLO",
                f"latency at {breach:.0%} of its SLO (> {LATENCY_HEADROOM:.0%}); not scaling down",
            )
        return target, None, ""
    return n, None, ""


def decide(
    spec: ScalingSpec, inp: ScalingInputs, state: ScalingState, now: float, interval: float
) -> ScalingDecision:
    """One autoscaling decision: the five steps of the module docstring, in order."""
    n, lo, hi = inp.replicas, spec.min_replicas, spec.max_replicas
    vals = inp.signals.values if inp.signals is not None else {}
    seen = {k.value: round(v, 6) for k, v in sorted(vals.items())}
    # the history kept: the longest either window can be (the down-window before a start is
    # timed), so that a shorter start time learned later still finds its window's entries
    keep = max(down_window(spec, None)[0], spec.scale_up.stabilization_seconds) + interval
    since, goal, learned = learn_start(state, inp, now)
    horizon = learned if learned else START_PRIOR_SECONDS
    # A window ordered stays so until it opens: a shorter start time learned meanwhile (its own
    # pods may start faster) does not take its replicas back in between.
    lead = horizon
    if state.schedule_opens is not None and now < state.schedule_opens:
        lead = max(lead, state.schedule_opens - now)
    due = scheduled(spec.schedules, now, lead) if spec.enabled else None
    reporting = vals.get(Signal.PODS_REPORTING, 0.0)
    # Since when the Ready count is what it is now: the rate and latency windows describe these
    # replicas once a whole window has passed.
    ready_since = now
    if state.ready_count == inp.ready and state.ready_since is not None:
        ready_since = state.ready_since
    elif state.last_decision_time is None:  # first decision: no change known of
        ready_since = now - STEADY_SECONDS
    settled = inp.ready > 0 and now - ready_since >= STEADY_SECONDS
    cap_model, memory, slo_budget = state.capacity, state.load, state.slo_budget

    def next_state(history: list[Recommendation], target: int) -> ScalingState:
        observed, observed_goal = observe_start(since, goal, n, target, now)
        return ScalingState(
            recommendations=history[-HISTORY_LIMIT:],
            last_decision_time=now,
            scale_up_since=observed,
            scale_up_target=observed_goal,
            start_seconds=learned,
            ready_since=ready_since,
            ready_count=inp.ready,
            capacity=cap_model,
            load=memory,
            slo_budget=slo_budget,
            schedule_opens=due.opens if due is not None else None,
            # published by the reconcile (learned_admission), kept across decisions
            admission_limit=state.admission_limit,
            admission_limit_source=state.admission_limit_source,
        )

    def hold(reason: str, message: str, metrics_ok: bool = True) -> ScalingDecision:
        target = min(max(n, lo), hi)  # bounds still apply (e.g. after maxReplicas was lowered)
        if n > hi:
            reason, message = "AboveMaxReplicas", f"clamped {n} to maxReplicas {hi}"
        elif n < lo:
            reason, message = "BelowMinReplicas", f"raised {n} to minReplicas {lo}"
        if due is not None and due.replicas > target:
            # a schedule needs no metrics: its replicas are ordered through a hold too
            target, reason = min(due.replicas, hi), "Scheduled"
            message = f"{due.words()} ({message})"
        direction = "hold" if target == n else ("up" if target > n else "down")
        new_state = next_state(_history(state, now, keep, n), target)
        return ScalingDecision(
            target, direction, reason, message, seen, metrics_ok=metrics_ok, state=new_state
        )

    if not spec.enabled:
        return hold(
            "AutoscalingDisabled", "scaling.enabled is false; replicas follow spec.replicas"
        )

    # Step 5 first where data is missing: hold, never scale down on no data.
    running = vals.get(Signal.RUNNING)
    waiting = vals.get(Signal.QUEUE_DEPTH)
    kv = vals.get(Signal.KV_CACHE_USAGE)
    # A pod count that could not be read (Prometheus failing between two queries) is missing
    # data too, not "no pod reports".
    count = vals.get(Signal.PODS_REPORTING)
    if inp.ready > 0 and (running is None or waiting is None or kv is None or count is None):
        return hold(
            "MetricsMissing",
            "no engine metrics for the serving colour; holding replicas",
            metrics_ok=False,
        )
    if inp.ready > 0 and inp.signal_age is not None and inp.signal_age > max(3 * interval, 60.0):
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

    # 1. demand
    finished = vals.get(Signal.REQUEST_RATE)
    tpot_now = vals.get(Signal.TPOT_P99)
    backlog = running + waiting
    past = _history(state, now, keep, n)
    arriving, growth = arrival_rate(past, finished or 0.0, backlog, now)
    prior_points = memory.points if memory is not None else []
    season = memory.season if memory is not None else None
    demand = forecast(arriving, finished or 0.0, growth, prior_points, now, horizon, season)
    trend = demand.ahead if demand.slope else None  # the profile's forecast has no slope
    demand = trend_skill(demand, memory)
    if finished is not None:
        every = max(interval, horizon / POINTS_PER_HORIZON)
        memory = remember_load(
            memory, now, arriving, demand.until_ready, horizon, every, demand.seasonal, trend
        )
        season = remember_season(season, now, arriving, float(spec.seasonal_period_seconds))
        memory = memory.model_copy(update={"season": season})

    # 2. capacity: a steady tick adds a sample
    aim = tpot_aim(spec)
    # The rates per Ready replica describe the Ready replicas once their count has held for a
    # rate window (`settled`), whether or not more pods are starting: a starting vLLM server
    # serves no metrics before its model is loaded, so it is in none of the signals (with a
    # 15-minute start, waiting for every pod left the prior in charge for most of a ramp).
    # While pods start, a minute over the TPOT aim is the shortfall their scale-up fixes, not
    # a replica's steady state: only minutes within the aim are samples then. Where more pods
    # report than are Ready, their sums are not the Ready ones': every replica that can run
    # must be Ready (pods the scheduler cannot place never will).
    placeable = max(0, n - inp.unschedulable)
    tpot_within = tpot_now is not None and tpot_now <= aim
    steady = (
        settled
        and inp.ready > 0
        and reporting >= inp.ready
        and (inp.ready >= placeable or (reporting == inp.ready and tpot_within))
        and not inp.rollout_in_flight
    )
    tolerated = spec.targets.queue_depth_per_replica * max(reporting, 1.0)
    if (
        steady
        and waiting <= tolerated
        and finished is not None
        and finished > 0
        and abs(growth) <= 0.1 * finished
        and tpot_now is not None
    ):
        cap_model = learn_capacity(
            cap_model,
            inp.colour,
            inp.mode,
            finished / inp.ready,
            tpot_now,
            kv or 0.0,
            vals.get(Signal.RUNNING_MEAN, running) / inp.ready,
            vals.get(Signal.TPOT_MEAN),
            aim,
            tail_quantile(inp.signals.buckets.get(Signal.TPOT_BUCKETS), 0.99)
            if inp.signals
            else None,
        )
    queued = waiting > tolerated
    kv_target = spec.targets.kv_cache_usage
    capacity = replica_capacity(
        cap_model, inp.colour, inp.mode, aim, kv_target, inp.moe
    ) or prior_capacity(finished, inp.ready, kv, spec.targets.kv_cache_usage, tpot_now, aim, queued)

    # the SLO attainment measured (reported in status, the message and the SloMet condition)
    slo_budget = spend_budget(
        slo_budget, now, finished, missed_share(inp.signals, spec.slo), spec.slo.window_seconds
    )
    # 3. headroom and 4. the plan
    room = headroom(memory, demand.seasonal)
    p: Plan | None = None
    if capacity is not None and finished is not None:
        p = plan(demand, capacity.per_replica, room)
        raw, reason = p.recommend(n, capacity.per_replica)
        why = (
            f"{demand.words()}; capacity {capacity.per_replica:.2f} req/s per replica "
            f"({capacity.source}); {room.words()}; {p.words(capacity.per_replica)}"
        )
        if demand.seasonal and not room.seasonal and room.windows:
            why += " (the headroom over the rate now, not stacked on the profile's forecast)"
        why += f"; {budget_words(slo_budget, spec.slo)}"
    elif finished is not None and backlog <= 0 and demand.until_ready <= 0:
        # Idle: nothing arrives, runs or waits, and nothing is forecast. No capacity is needed
        # to know that no replica serves load (a burst that ended before any steady sample
        # was learned left no capacity model, and the fleet would otherwise stay at its peak).
        raw, reason = 0, "LowLoad"
        why = f"{demand.words()}; nothing running or waiting: no replica is needed for load"
    else:
        raw, reason = n, "WithinTarget"
        why = "no request rate to plan on yet; holding unless a guard asks"

    # 5. guards over the plan (the queue / KV-cache one only where there is no plan: under
    # overload requests pile up by Little's law, and concurrency asks for several times what
    # the arriving rate needs)
    breach = latency_breach(spec, vals)
    asked = guard(
        spec,
        vals,
        inp.ready,
        settled and not inp.rollout_in_flight,
        planned=capacity is not None,
        draining=finished is not None and growth < -DRAINING_SHARE * finished,
        breach_held=breach_held(past, now, breach),
        plan_up=p.up if p is not None else None,
    )
    if asked is not None and asked[0] > raw:
        raw, reason, why = asked[0], asked[1], f"{asked[2]} (guard over the plan: {why})"
    if raw < n and queued:
        raw, reason = n, "QueueBuildup"
        why = f"{waiting:.0f} requests waiting; not scaling down ({why})"
    if inp.keep_replicas is not None:
        keep = min(max(n, inp.keep_replicas[0]), hi)
        if raw < keep:
            raw, reason = keep, "ReducedPrecision"
            why = f"{inp.keep_replicas[1]}; keeping {keep} replicas ({why})"
    if due is not None and raw < due.replicas:
        raw, reason, why = due.replicas, "Scheduled", f"{due.words()} ({why})"
    # never below minReplicas: a fleet at its minimum is not "stabilizing" towards fewer
    raw = max(raw, lo)

    history = [
        *past,
        Recommendation(
            time=now,
            replicas=raw,
            request_rate=None if finished is None else round(finished, 4),
            backlog=backlog,
            breach=round(breach, 4),
        ),
    ]
    # pods still starting for load: during a rollout the serving colour's Ready count is the
    # transition's (its steps remove Ready pods), not a count of pods loading for load
    starting = 0 if inp.rollout_in_flight else max(0, n - inp.ready)
    target, held, held_why = _stabilize(spec, history, n, raw, now, breach, starting, learned)
    if held is not None:
        reason, why = held, f"{held_why} ({why})"

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
    target = max(target, lo)
    if spec.scale_to_zero and target == 0 and (running > 0 or waiting > 0):
        target = max(1, min(n, hi))

    direction = "up" if target > n else "down" if target < n else "hold"
    return ScalingDecision(
        replicas=target,
        direction=direction,
        reason=reason,
        message=f"{n} -> {target}: {why}",
        signals=seen,
        limited=limited,
        state=next_state(history, target),
        demand=demand,
        slo=slo_condition(slo_budget, spec.slo),
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
