"""The planner's steps, one table each: demand and its forecast, capacity (prior and learned
line), headroom from the load's volatility, the plan, the guards and the stabilization."""

from __future__ import annotations

import math
from unittest.mock import ANY

import pytest
from deepseek_operator.api.spec import ScalingSpec
from deepseek_operator.api.status import CapacityModel, LoadMemory, RatePoint, Recommendation
from deepseek_operator.scaling import (
    CAPACITY_DECAY,
    SKILL_DECAY,
    Demand,
    Headroom,
    _stabilize,
    breach_held,
    counting_noise,
    down_window,
    forecast,
    guard,
    headroom,
    learn_capacity,
    near_aim,
    outlook,
    plan,
    prior_capacity,
    rate_trend,
    remember_load,
    remember_season,
    replica_capacity,
    season_deltas,
    sustained_slope,
    trend_skill,
)
from deepseek_operator.signals import Signal

NOW = 1000.0
H = 300.0  # horizon: a pod ordered now is Ready in 300 s


def points(rates: list[float], every: float = 30.0) -> list[RatePoint]:
    """Rate points `every` seconds apart ending one interval before NOW."""
    k = len(rates)
    return [RatePoint(time=NOW - (k - i) * every, rate=r, base=r) for i, r in enumerate(rates)]


# --- 1. demand: the forecast over the horizon ---------------------------------------------
RAMP = [6.0 + 0.3 * i for i in range(10)]  # +0.6 req/s per minute, steadily: 9.0 now
FORECAST_TABLE = [
    # (case, points, rate now, expected forecast at NOW + H, expected slope per minute)
    ("flat load: the rate now", points([6.0] * 10), 6.0, 6.0, 0.0),
    (
        "noise on a flat load projects nothing",
        points([6, 6.4, 5.7, 6.2, 5.8, 6.3, 5.9, 6.1, 6.2, 5.8]),
        6.0,
        6.0,
        0.0,
    ),
    ("a sustained ramp is extended", points(RAMP), 9.0, 12.0, 0.6),
    ("a falling ramp, at most halved", points(RAMP[::-1]), 5.7, 2.85, -0.6),
    ("a step is a jump, not a trend", points([6.0] * 5 + [24.0] * 5), 24.0, 24.0, 0.0),
    ("too little history: the rate now", points(RAMP[-3:]), 9.0, 9.0, 0.0),
    ("at most a doubling", points([1.0 + 2 * i for i in range(10)], 15.0), 21.0, 42.0, None),
]


@pytest.mark.parametrize(
    "case,pts,rate,ahead,slope", FORECAST_TABLE, ids=[c[0] for c in FORECAST_TABLE]
)
def test_forecast(
    case: str, pts: list[RatePoint], rate: float, ahead: float, slope: float | None
) -> None:
    d = forecast(rate, rate, 0.0, pts, NOW, H)
    assert d.ahead == pytest.approx(ahead, rel=0.02), d
    assert d.until_ready == pytest.approx(max(rate, ahead), rel=0.02)
    if slope is not None:
        assert d.slope * 60 == pytest.approx(slope, abs=0.02)


def test_sustained_slope_needs_the_later_half_to_rise() -> None:
    ramp = [(float(i * 30), 6.0 + 0.3 * i) for i in range(10)]
    assert sustained_slope(ramp) == pytest.approx(0.01)
    late_jump = [(float(i * 30), 6.0 if i < 7 else 12.0) for i in range(10)]
    assert sustained_slope(late_jump) == 0.0
    # a rise that ended: the later half is flat
    ended = [(float(i * 30), 6.0 + 0.6 * min(i, 5)) for i in range(10)]
    assert sustained_slope(ended) == 0.0
    # a daily rise out of its trough: flat, then steepening; a trend from where it steepens
    trough = [(float(i * 30), 4.0 + 0.05 * i * i) for i in range(10)]
    assert sustained_slope(trough) > 0.0


def test_counting_noise_is_not_a_jump() -> None:
    # a ramp of +0.2 req/s per minute at ~4 req/s read through one-minute rate windows: two
    # readings 30 s apart differ by ~0.5 req/s by chance (a Poisson count of ~240), more than
    # half of the fitted rise over five minutes (1 req/s) but within the counting noise
    wiggle = [0.0, 0.3, -0.2, 0.35, -0.3, 0.2, -0.15, 0.3, -0.25, 0.1, 0.0]
    noisy = [(float(i * 30), 4.0 + 0.2 * i / 2 + w) for i, w in enumerate(wiggle)]
    assert counting_noise(4.0, 4.0) == pytest.approx(2 * (8 / 60) ** 0.5)
    assert sustained_slope(noisy) > 0.0
    # the same wiggle on a step of 6 req/s is a jump
    step = [(t, r + (6.0 if t >= 150 else 0.0)) for t, r in noisy]
    assert sustained_slope(step) == 0.0


def test_a_step_in_the_middle_is_a_jump_not_a_trend() -> None:
    # a step from 6 to 24 req/s seen through a one-minute rate window is a ramp over 120-180 s:
    # both halves of the span rise, but one rate window holds all of the rise
    def rate(t: float) -> float:
        return 6.0 if t <= 120 else 24.0 if t >= 180 else 6.0 + 18.0 * (t - 120) / 60

    mid_step = [(float(i * 15), rate(i * 15)) for i in range(21)]
    assert sustained_slope(mid_step) == 0.0
    # the same rise spread over the span is a trend
    ramp = [(float(i * 15), 6.0 + 18.0 * i / 23) for i in range(24)]
    assert sustained_slope(ramp) == pytest.approx(18.0 / (23 * 15))


def test_a_line_through_steps_rises_more_than_the_points() -> None:
    # 6 req/s, 10 from minute 5, 20 from minute 8 (the step seen through a one-minute rate
    # window): a line fitted over the 15 minutes rises 19.5 req/s, more than the points' own
    # 14, and the step to 20 holds 10 of those 14 within one rate window: a jump, not a trend
    def rate(t: float) -> float:
        return 6.0 if t < 300 else 10.0 if t <= 450 else 10.0 + 10.0 * min(1.0, (t - 450) / 60)

    steps = [(float(i * 30), rate(i * 30)) for i in range(31)]
    fit = rate_trend(steps)
    assert fit is not None and fit[0] * 900 == pytest.approx(19.5, abs=0.1)
    assert sustained_slope(steps) == 0.0
    # the same 14 req/s spread over the span is a trend
    ramp = [(float(i * 30), 6.0 + 14.0 * i / 30) for i in range(31)]
    assert sustained_slope(ramp) == pytest.approx(14.0 / 900)


def trend_memory(rates: list[float], trends: list[float | None], every: float = 30.0) -> LoadMemory:
    """The memory after `rates` every `every` s, each with the trend forecast made then."""
    m: LoadMemory | None = None
    for i, (r, tr) in enumerate(zip(rates, trends, strict=True)):
        m = remember_load(m, i * every, r, r if tr is None else max(r, tr), H, every, False, tr)
    assert m is not None
    return m


RAMP_RATES = [6.0 + 0.3 * i for i in range(40)]  # +0.6 req/s per minute for 20 minutes
NOISE = [6.0 + (0.6 if (i // 4) % 2 else -0.6) for i in range(40)]  # 2-minute swings
SKILL_TABLE = [
    # (case, rates every 30 s, trend forecast made at each, expected: the trend kept)
    ("no window closed yet: kept", RAMP_RATES[:10], [r + 3.0 for r in RAMP_RATES[:10]], True),
    (
        "a ramp that lasts: the trend forecast hit, the flat one missed by 3 req/s",
        RAMP_RATES,
        [r + 0.01 * H for r in RAMP_RATES],
        True,
    ),
    (
        "swings read as trends that turn within the horizon: dropped",
        NOISE,
        [r + (3.0 if (i // 4) % 2 == 0 else -3.0) for i, r in enumerate(NOISE)],
        False,
    ),
    ("no trend was ever found: nothing to judge, kept", NOISE, [None] * 40, True),
]


@pytest.mark.parametrize("case,rates,trends,kept", SKILL_TABLE, ids=[c[0] for c in SKILL_TABLE])
def test_trend_skill(case: str, rates: list[float], trends: list[float | None], kept: bool) -> None:
    m = trend_memory(rates, trends)
    d = forecast(9.0, 9.0, 0.0, points(RAMP), NOW, H)
    assert d.slope > 0 and d.ahead == pytest.approx(12.0, rel=0.02)
    got = trend_skill(d, m)
    if kept:
        assert got == d
    else:
        assert (got.slope, got.ahead, got.until_ready) == (0.0, 9.0, 9.0)
        assert got.dropped == (d.slope, m.trend_error, m.flat_error)
        assert m.trend_error > m.flat_error
        ratio = m.trend_error / m.flat_error
        assert f"+0.60 req/s per min not used: past trend forecasts missed {ratio:.1f}x" in (
            got.words()
        )


def test_trend_skill_leaves_flat_and_seasonal_forecasts_alone() -> None:
    bad = LoadMemory(trend_error=10.0, flat_error=1.0)
    flat = forecast(6.0, 6.0, 0.0, points([6.0] * 10), NOW, H)
    assert trend_skill(flat, bad) == flat
    seasonal = Demand(6.0, 6.0, 0.0, 0.0, 9.0, H, 9.0, seasonal=True)
    assert trend_skill(seasonal, bad) == seasonal
    ramp = forecast(9.0, 9.0, 0.0, points(RAMP), NOW, H)
    assert trend_skill(ramp, None) == ramp
    assert trend_skill(ramp, LoadMemory(trend_error=1.0, flat_error=1.0)) == ramp  # a tie: kept
    never = trend_skill(ramp, LoadMemory(trend_error=2.0, flat_error=0.0))
    assert "missed where the rate held flat" in never.words()


def test_the_outlook_for_a_longer_horizon_keeps_the_trend_only_where_it_earned_it() -> None:
    # the quantization ladder asks how far the load goes while a 1600 s switch runs
    now = forecast(9.0, 9.0, 0.0, points(RAMP), NOW, H)
    good = LoadMemory(points=points(RAMP), trend_error=1.0, flat_error=3.0)
    d = outlook(now, good, NOW, 1600.0)
    assert d.slope > 0 and d.ahead == pytest.approx(18.0, rel=0.02)  # at most a doubling
    bad = good.model_copy(update={"trend_error": 9.0})
    d = outlook(now, bad, NOW, 1600.0)
    assert (d.slope, d.ahead, d.dropped is not None) == (0.0, 9.0, True)


def test_window_errors_of_a_trend_forecast() -> None:
    # every window on the ramp began with an exact trend forecast: its error is nil, while the
    # rate held flat missed by the ramp's rise over one horizon (3 req/s) each time
    m = trend_memory(RAMP_RATES, [r + 0.01 * H for r in RAMP_RATES])
    closed = 40 - int(H / 30.0)  # windows a horizon old by the last point
    assert m.trend_error == pytest.approx(0.0, abs=1e-6)
    decayed = sum(SKILL_DECAY**k for k in range(closed))
    assert m.flat_error == pytest.approx(3.0 * decayed, rel=0.01)
    assert m.points[-1].trend == pytest.approx(RAMP_RATES[-1] + 3.0)


def test_season_waits_for_a_whole_period_then_adds_its_change_to_the_rate_now() -> None:
    period = 4800.0  # 48 bins of 100 s
    season = None
    # one period of a rate that doubles from the first half to the second
    for t in range(0, 4800, 15):
        season = remember_season(season, float(t), 4.0 if t % 4800 < 2400 else 8.0, period)
    assert season is not None and all(b is not None for b in season.bins)
    assert season_deltas(season, 4000.0, H) is None  # not a whole period yet
    # at 2000 s into the next period: the rate rises by 4 req/s within the next 600 s
    ahead, peak = season_deltas(season, 4800.0 + 2000.0, 600.0) or (0.0, 0.0)
    assert (ahead, peak) == (pytest.approx(4.0), pytest.approx(4.0))
    d = forecast(5.0, 5.0, 0.0, [], 4800.0 + 2000.0, 600.0, season)
    assert d.seasonal and d.ahead == pytest.approx(9.0) and d.until_ready == pytest.approx(9.0)
    # falling into the trough: the profile drops by 4, never below half the rate now
    d = forecast(5.0, 5.0, 0.0, [], 4800.0 + 4400.0, 600.0, season)
    assert d.seasonal and d.ahead == pytest.approx(2.5) and d.until_ready == pytest.approx(5.0)
    # no period: no profile
    assert remember_season(None, 0.0, 5.0, 0.0) is None


# --- 2. capacity --------------------------------------------------------------------------
LINE = CapacityModel(colour="blue", mode="fp8")
for rate in (2.0, 3.0, 4.0, 5.0):  # TPOT = 30 ms + 10 ms per req/s
    LINE = learn_capacity(LINE, "blue", "fp8", rate, 0.03 + 0.01 * rate)
FLAT = CapacityModel(colour="blue", mode="fp8")
for rate in (2.0, 3.0, 4.0, 5.0):  # TPOT = 80 ms + 1 ms per req/s: the line says 10 at 90 ms
    FLAT = learn_capacity(FLAT, "blue", "fp8", rate, 0.08 + 0.001 * rate)
ORIGIN = CapacityModel(colour="blue", samples=20, weight=15.0, mean_rate=3.0, mean_tpot=0.07)
# Long outputs (reasoning): the KV cache holds 28.6 x rate x TPOT; at 0.5 req/s it is half full
KV_K = 0.5 / (0.5 * 0.035)
REASONING = CapacityModel(colour="blue", mode="fp8")
for rate in (0.2, 0.3, 0.4, 0.5):  # TPOT = 30 ms + 10 ms per req/s, as LINE
    tpot = 0.03 + 0.01 * rate
    REASONING = learn_capacity(REASONING, "blue", "fp8", rate, tpot, KV_K * rate * tpot)
CHAT = CapacityModel(colour="blue", mode="fp8")
for rate in (2.0, 3.0, 4.0, 5.0):  # as LINE, the cache at most 20% full at 6 req/s
    tpot = 0.03 + 0.01 * rate
    CHAT = learn_capacity(CHAT, "blue", "fp8", rate, tpot, 0.2 * rate * tpot / (6 * 0.09))


def _kv_full_at(target: float) -> float:
    """The rate at which REASONING's cache reaches `target` (bisection, independent of the
    closed form in kv_bound)."""
    lo, hi = 0.0, 10.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if KV_K * mid * (0.03 + 0.01 * mid) < target else (lo, mid)
    return lo


# LINE's samples near the aim read off the buckets' tails: 70 ms at 5 req/s (the line says 80)
NEAR = LINE.model_copy(update={"near_weight": 2.0, "near_rate": 5.0, "near_tpot": 0.07})
CAPACITY_TABLE = [
    # (case, model, colour, mode, aim, expected req/s per replica)
    ("the learned line: (90 - 30) / 10", LINE, "blue", "fp8", 0.09, 6.0),
    ("the line's slope through the tails' read near the aim: 5 + (90 - 70) / 10", NEAR,
     "blue", "fp8", 0.09, 7.0),
    ("too little weight near the aim: the line", NEAR.model_copy(update={"near_weight": 1.9}),
     "blue", "fp8", 0.09, 6.0),
    # no line (one steady load): the slope of the line through the origin, 70 / 3 ms per req/s
    ("no line: the origin's slope through the tails' read", ORIGIN.model_copy(
        update={"near_weight": 2.0, "near_rate": 4.0, "near_tpot": 0.08}), "blue", None, 0.09,
     4.0 + 0.01 * 3.0 / 0.07),
    ("read far past the aim: still half of what it served there", NEAR.model_copy(
        update={"near_tpot": 0.15}), "blue", "fp8", 0.09, 2.5),
    ("near the aim, still at most double the origin's", NEAR.model_copy(
        update={"near_tpot": 0.0}), "blue", "fp8", 0.09,
     2 * 0.09 * LINE.mean_rate / LINE.mean_tpot),
    ("without spread: the line through the origin", ORIGIN, "blue", None, 0.07, 3.0),
    ("nothing learned", None, "blue", None, 0.09, None),
    ("too few samples", ORIGIN.model_copy(update={"samples": 3}), "blue", None, 0.09, None),
    ("learned for the other colour", LINE, "green", "fp8", 0.09, None),
    ("learned for another mode", LINE, "blue", "int4", 0.09, None),
    # a line that would more than double the origin's estimate is held at twice it
    ("the line at most doubles", FLAT, "blue", "fp8", 0.09, 0.18 * FLAT.mean_rate / FLAT.mean_tpot),
]  # fmt: skip
KV_TABLE = [
    # (case, model, kv_target, expected req/s per replica)
    ("the cache fills before TPOT reaches the aim", REASONING, 0.8, _kv_full_at(0.8)),
    ("no KV target: TPOT alone (the line, at most doubled)", REASONING, None,
     2 * 0.09 * REASONING.mean_rate / REASONING.mean_tpot),
    ("a cache that never binds leaves the line", CHAT, 0.8, 6.0),
    ("usage too low to extrapolate", CHAT.model_copy(update={"mean_kv": 0.01}), 0.8, 6.0),
    ("no line: the cache's usage in proportion to the rate",
     ORIGIN.model_copy(update={"mean_kv": 0.7, "mean_rate_tpot": 3.0 * 0.07}), 0.8,
     3.0 * 0.8 / 0.7),
]  # fmt: skip


@pytest.mark.parametrize(
    "case,model,colour,mode,aim,expected", CAPACITY_TABLE, ids=[c[0] for c in CAPACITY_TABLE]
)
def test_replica_capacity(
    case: str,
    model: CapacityModel | None,
    colour: str,
    mode: str | None,
    aim: float,
    expected: float | None,
) -> None:
    got = replica_capacity(model, colour, mode, aim)
    assert (None if got is None else got.per_replica) == (
        None if expected is None else pytest.approx(expected, rel=1e-3)
    )


@pytest.mark.parametrize("case,model,kv_target,expected", KV_TABLE, ids=[c[0] for c in KV_TABLE])
def test_replica_capacity_is_bounded_by_the_kv_cache(
    case: str, model: CapacityModel, kv_target: float | None, expected: float
) -> None:
    got = replica_capacity(model, "blue", model.mode, 0.09, kv_target)
    assert got is not None
    assert got.per_replica == pytest.approx(expected, rel=1e-3)
    assert ("KV cache" in got.source) == (
        got.per_replica < 0.999 * replica_capacity(model, "blue", model.mode, 0.09).per_replica
    )  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "p99,aim,near",
    [
        (0.08, 0.1, True),  # the aim's bucket (75, 100] ms
        (0.1, 0.1, True),
        (0.14, 0.1, True),  # the one above, (100, 150]
        (0.15, 0.1, True),
        (0.075, 0.1, False),  # the bucket below
        (0.16, 0.1, False),
        (0.08, 0.09, True),  # an aim inside a bucket: the same two
        (0.12, 0.09, True),
        (0.06, 0.05, True),  # aim 50 ms: (25, 50] and (50, 75]
        (0.08, 0.05, False),
    ],
)
def test_near_aim(p99: float, aim: float, near: bool) -> None:
    assert near_aim(p99, aim) is near


def test_samples_near_the_aim_keep_their_own_means() -> None:
    """A sample whose tails' read lies near the aim moves near_rate / near_tpot; every
    sample decays their weight as the line's moments (CAPACITY_DECAY: what a replica serves
    at the aim moves with the workload), one without such a read (light loads, no buckets)
    adds nothing to them."""
    m = learn_capacity(None, "blue", None, 5.0, 0.098, aim=0.1, tpot_exact=0.088)
    assert (m.near_weight, m.near_rate, m.near_tpot) == (1.0, 5.0, 0.088)
    m = learn_capacity(m, "blue", None, 6.0, 0.12, aim=0.1, tpot_exact=0.104)
    w = 1.0 * CAPACITY_DECAY + 1.0
    assert m.near_weight == pytest.approx(w)
    assert m.near_rate == pytest.approx(5.0 + 1.0 / w, rel=1e-5)
    assert m.near_tpot == pytest.approx(0.088 + 0.016 / w, rel=1e-5)
    light = learn_capacity(m, "blue", None, 2.0, 0.05, aim=0.1, tpot_exact=0.04)
    none = learn_capacity(m, "blue", None, 2.0, 0.05, aim=0.1)
    for after in (light, none):
        assert after.near_weight == pytest.approx(w * CAPACITY_DECAY)
        assert (after.near_rate, after.near_tpot) == (m.near_rate, m.near_tpot)
    assert light.samples == m.samples + 1  # the line still takes it


def test_learn_capacity_decays_and_starts_over() -> None:
    m = learn_capacity(None, "blue", None, 2.0, 0.05)
    assert (m.samples, m.mean_rate, m.mean_tpot, m.mean_rate_sq) == (1, 2.0, 0.05, 4.0)
    m2 = learn_capacity(m, "blue", None, 4.0, 0.09)
    assert m2.mean_rate == pytest.approx(2.0 + 2.0 / 1.98, rel=1e-5)
    assert learn_capacity(m2, "green", None, 1.0, 0.03).samples == 1
    assert learn_capacity(m2, "blue", "int4", 1.0, 0.03).samples == 1


PRIOR_TABLE = [
    # (case, served, ready, kv, tpot, queued, expected)
    ("stretched to the KV target", 4.0, 2, 0.4, None, False, 4.0),
    ("stretched to the TPOT aim", 4.0, 2, 0.01, 0.045, False, 4.0),
    ("the lower of the two", 4.0, 2, 0.4, 0.06, False, 3.0),
    ("at most 20x", 4.0, 2, 0.01, 0.001, False, 40.0),
    ("an overloaded replica serves at least half what it finishes", 4.0, 2, 0.9, 0.9, False, 1.0),
    ("a queue: no stretch up", 4.0, 2, 0.2, 0.03, True, 2.0),
    ("nothing finished yet: no prior", 0.0, 2, 0.4, 0.05, False, None),
]


@pytest.mark.parametrize(
    "case,served,ready,kv,tpot,queued,expected", PRIOR_TABLE, ids=[c[0] for c in PRIOR_TABLE]
)
def test_prior_capacity(
    case: str,
    served: float,
    ready: int,
    kv: float,
    tpot: float | None,
    queued: bool,
    expected: float | None,
) -> None:
    got = prior_capacity(served, ready, kv, 0.8, tpot, 0.09, queued)
    assert (None if got is None else got.per_replica) == (
        None if expected is None else pytest.approx(expected)
    )


# --- 3. headroom --------------------------------------------------------------------------
def memory_of(
    rates: list[float], base: float, every: float = 30.0, seasonal_from: int | None = None
) -> LoadMemory:
    """The memory after `rates` every `every` s, forecast at `base`; from index
    `seasonal_from` on, the forecast came from the period's profile."""
    m: LoadMemory | None = None
    for i, r in enumerate(rates):
        seasonal = seasonal_from is not None and i >= seasonal_from
        m = remember_load(m, i * every, r, base, H, every, seasonal)
    assert m is not None
    return m


HEADROOM_TABLE = [
    # (case, rates every 30 s, forecast made, expected quantile, expected top)
    ("a flat load keeps none", [6.0] * 60, 6.0, 0.0, 6.0),
    ("bursts to 3x that nothing forecast", ([6.0] * 10 + [18.0] * 10) * 3, 6.0, 2.0, 18.0),
    (
        "one burst in a long flat load is below the quantile",
        [6.0] * 50 + [9.0] + [6.0] * 100,
        6.0,
        0.0,
        9.0,
    ),
]


@pytest.mark.parametrize(
    "case,rates,base,fraction,top", HEADROOM_TABLE, ids=[c[0] for c in HEADROOM_TABLE]
)
def test_headroom_from_rises_over_the_horizon(
    case: str, rates: list[float], base: float, fraction: float, top: float
) -> None:
    room = headroom(memory_of(rates, base))
    assert room.fraction == pytest.approx(fraction)
    assert room.top == pytest.approx(top)


def test_a_seasonal_forecast_is_sized_by_its_own_errors() -> None:
    # a trend forecast missed ramps of 3x; the period's profile then forecast well (its windows
    # rose 10% over it): once SEASON_MIN_WINDOWS windows were forecast from the profile, only
    # theirs count, and only while the forecast in use is the profile's
    rates = ([6.0] * 10 + [18.0] * 10) * 3 + [6.6] * 30
    m = memory_of(rates, 6.0, seasonal_from=60)
    assert len(m.seasonal_rises) == 20 and len(m.rises) > len(m.seasonal_rises)
    assert headroom(m, seasonal=True).fraction == pytest.approx(0.1)
    assert headroom(m, seasonal=True).seasonal
    assert headroom(m, seasonal=False).fraction == pytest.approx(2.0)
    # too few windows of the profile's yet: all windows count
    few = memory_of(rates[:73], 6.0, seasonal_from=60)
    assert 0 < len(few.seasonal_rises) < 4
    assert headroom(few, seasonal=True).fraction == pytest.approx(2.0)
    assert "forecast from the season's profile" in headroom(m, seasonal=True).words()


def test_headroom_never_plans_past_the_highest_rate_seen() -> None:
    room = Headroom(fraction=2.0, windows=50, top=18.0)
    assert room.over(6.0) == 12.0  # 6 + 12 = the 18 seen
    assert room.over(12.0) == 6.0  # not 24: a burst is not stacked on a burst
    assert room.over(20.0) == 0.0
    assert Headroom(0.0, 0, None).over(10.0) == 0.0


def test_memory_stays_bounded() -> None:
    m = memory_of([float(i % 7) for i in range(2000)], 3.0, every=15.0)
    assert len(m.points) <= 40 and len(m.rises) <= 128 and len(m.tops) <= 128


# --- 4. the plan --------------------------------------------------------------------------
def demand(now: float, ahead: float) -> Demand:
    return Demand(now, now, 0.0, 0.0, ahead, H, max(now, ahead))


PLAN_TABLE = [
    # (case, demand now, forecast, capacity, headroom fraction, current, expected, reason)
    ("at capacity", 10.0, 10.0, 5.0, 0.0, 2, 2, "WithinTarget"),
    ("forecast above: scale up for it", 10.0, 16.0, 5.0, 0.0, 2, 4, "DemandForecast"),
    ("headroom on top of the forecast", 10.0, 10.0, 5.0, 0.5, 2, 3, "DemandForecast"),
    ("load falling: no scale-up for what will be gone", 16.0, 9.0, 5.0, 0.0, 2, 2, "WithinTarget"),
    ("load falling: keep what it needs until then", 16.0, 9.0, 5.0, 0.0, 6, 4, "LowLoad"),
    ("one replica fewer carries it: it goes", 9.5, 9.5, 5.0, 0.0, 3, 2, "LowLoad"),
    ("low load", 4.0, 4.0, 5.0, 0.0, 3, 1, "LowLoad"),
    # a learned capacity is good to ~10%: 10.8 req/s on 2 x 5.0 is within it, 11.2 is not
    (
        "within the tolerance above the fleet: no scale-up",
        10.8,
        10.8,
        5.0,
        0.0,
        2,
        2,
        "WithinTarget",
    ),
    ("past the tolerance: scale up", 11.2, 11.2, 5.0, 0.0, 2, 3, "DemandForecast"),
]


@pytest.mark.parametrize(
    "case,now,ahead,cap,frac,current,expected,reason",
    PLAN_TABLE,
    ids=[c[0] for c in PLAN_TABLE],
)
def test_plan(
    case: str,
    now: float,
    ahead: float,
    cap: float,
    frac: float,
    current: int,
    expected: int,
    reason: str,
) -> None:
    p = plan(demand(now, ahead), cap, Headroom(frac, 10 if frac else 0, None))
    assert p.recommend(current, cap) == (expected, reason), p


def test_a_seasonal_forecast_is_not_stacked_with_the_trend_forecasts_headroom() -> None:
    # the profile forecasts 12 req/s in a horizon from 4 now; the headroom (+124%) is still the
    # trend forecast's, whose misses were that very rise: the plan takes the higher of the
    # profile's 12 and 4 + 124%, not 12 + 124% capped at the 21.3 peak seen
    raw = Headroom(fraction=1.24, windows=50, top=21.3)
    season = Demand(4.0, 4.0, 0.0, 0.0, 12.0, H, 12.0, seasonal=True)
    p = plan(season, 5.0, raw)
    assert (p.up_rate, p.keep_rate) == (12.0, 12.0)
    assert p.recommend(1, 5.0) == (3, "DemandForecast")
    # the rate now plus the headroom, where that is the higher
    flat = Demand(10.0, 10.0, 0.0, 0.0, 11.0, H, 11.0, seasonal=True)
    assert plan(flat, 5.0, raw).up_rate == pytest.approx(21.3)
    # once the profile's own errors size the headroom, it goes on top of its forecast
    own = Headroom(fraction=0.1, windows=20, top=21.3, seasonal=True)
    assert plan(season, 5.0, own).up_rate == pytest.approx(13.2)
    # a trend forecast keeps its headroom on top
    trend = Demand(4.0, 4.0, 0.0, 0.01, 12.0, H, 12.0)
    assert plan(trend, 5.0, raw).up_rate == pytest.approx(21.3)


# --- 5. guards and stabilization ----------------------------------------------------------
SPEC = ScalingSpec.model_validate(
    {
        "minReplicas": 1,
        "maxReplicas": 16,
        "slo": {"ttftP99Seconds": 2.0, "tpotP99Seconds": 0.1},
        "targets": {"queueDepthPerReplica": 2, "kvCacheUsage": 0.8},
        "scaleUp": {"stabilizationSeconds": 0, "maxStepReplicas": 4},
        "scaleDown": {"stabilizationSeconds": 300, "maxStepReplicas": 1},
    }
)


def vals(running: float, waiting: float, kv: float, **extra: float) -> dict[Signal, float]:
    out = {
        Signal.RUNNING: running,
        Signal.QUEUE_DEPTH: waiting,
        Signal.KV_CACHE_USAGE: kv,
        Signal.PODS_REPORTING: 2.0,
    }
    out.update({Signal(k): v for k, v in extra.items()})
    return out


GUARD_TABLE = [
    # (case, signals, latency settled, planned, expected (replicas, reason) or None)
    ("quiet", vals(10, 0, 0.2), True, False, None),
    ("TTFT breach: ready x breach", vals(10, 0, 0.2, ttftP99=3.0), True, True, (3, "TTFTAboveSLO")),
    ("TPOT breach at most doubles", vals(10, 0, 0.2, tpotP99=0.5), True, True, (4, "TPOTAboveSLO")),
    (
        "a breach on a window of other replicas waits",
        vals(10, 0, 0.2, ttftP99=3.0),
        False,
        True,
        None,
    ),
    ("queue with no plan", vals(40, 12, 0.95), True, False, (3, "QueueBuildup")),
    ("queue with a plan: the plan sizes it", vals(40, 12, 0.95), True, True, None),
    ("KV cache past target with no plan", vals(40, 0, 0.95), True, False, (3, "HighKVCacheUsage")),
]


@pytest.mark.parametrize(
    "case,signals,settled,planned,expected", GUARD_TABLE, ids=[c[0] for c in GUARD_TABLE]
)
def test_guard(
    case: str,
    signals: dict[Signal, float],
    settled: bool,
    planned: bool,
    expected: tuple[int, str] | None,
) -> None:
    got = guard(SPEC, signals, 2, settled, planned)
    assert (None if got is None else got[:2]) == expected, got


def test_a_planned_fleet_waits_out_one_window_of_breach() -> None:
    # the plan sizes at the SLO, so a p99 over it for one window is the plan's noise; with no
    # plan the breach is the only signal and acts at once
    hot = vals(10, 0, 0.2, tpotP99=0.15)
    assert guard(SPEC, hot, 2, True, True, breach_held=False) is None
    assert guard(SPEC, hot, 2, True, True, breach_held=True) == (3, "TPOTAboveSLO", ANY)
    assert guard(SPEC, hot, 2, True, False, breach_held=False) == (3, "TPOTAboveSLO", ANY)


def run(*recs: tuple[float, float | None]) -> list[Recommendation]:
    return [Recommendation(time=NOW - age, replicas=2, breach=b) for age, b in recs]


BREACH_TABLE = [
    # (case, past (age, breach), breach now, held)
    ("no breach now", run((60, 1.5), (30, 1.5)), 0.9, False),
    ("a breach for a whole window", run((90, 0.5), (60, 1.2), (30, 1.3)), 1.4, True),
    ("a breach for half a window", run((60, 0.5), (30, 1.3)), 1.4, False),
    ("one window, broken by a quiet tick", run((75, 1.2), (45, 0.8), (15, 1.2)), 1.3, False),
    ("a record without the number ends the run", run((90, 1.2), (60, None), (30, 1.2)), 1.3, False),
    ("a fresh history", [], 2.0, False),
]


@pytest.mark.parametrize("case,past,now,held", BREACH_TABLE, ids=[c[0] for c in BREACH_TABLE])
def test_breach_held(case: str, past: list[Recommendation], now: float, held: bool) -> None:
    assert breach_held(past, NOW, now) is held


def test_the_slo_guard_waits_while_the_backlog_drains() -> None:
    # pods just became Ready and work off a queue: the TTFT window shows requests that waited
    # before them, not what the fleet does now
    late = vals(10, 0, 0.2, ttftP99=78.0)
    assert guard(SPEC, late, 6, True, True, draining=True) is None
    assert guard(SPEC, late, 6, True, True, draining=False) == (12, "TTFTAboveSLO", ANY)


def history(*recs: tuple[float, int]) -> list[Recommendation]:
    return [Recommendation(time=NOW - age, replicas=r) for age, r in recs]


STABILIZE_TABLE = [
    # (case, history (age, replicas), current, raw, latency breach, pods starting,
    #  expected target, hold or cancel)
    ("up at once", history((0, 6)), 2, 6, 0.0, 0, 6, None),
    ("up at most maxStepReplicas", history((0, 9)), 3, 9, 0.0, 0, 7, None),
    ("a plan of twice the fleet may double it", history((0, 20)), 6, 20, 0.0, 0, 12, None),
    ("down waits for the window", history((200, 4), (0, 2)), 4, 2, 0.0, 0, 4, "Stabilizing"),
    ("down one step after the window", history((400, 4), (0, 2)), 4, 2, 0.0, 0, 3, None),
    ("no scale-down with latency near the SLO", history((0, 2)), 4, 2, 0.9, 0, 4, "LatencyNearSLO"),
    # both hold: the window is what a scale-down waits for (the e2e test expects it named
    # between the last scale-up and the first scale-down, while latency windows still show load)
    ("the window is named first", history((200, 4), (0, 2)), 4, 2, 0.9, 0, 4, "Stabilizing"),
    # pods still starting serve nothing: those the plan has not asked for over a rate window go
    # without the down window (one step at a time), Ready ones wait for it
    (
        "a starting pod not asked for over a rate window is cancelled",
        history((200, 4), (50, 2), (0, 2)), 4, 2, 0.0, 2, 3, "StartingNotNeeded",
    ),
    (
        "down to the most asked for within the rate window",
        history((200, 5), (50, 4), (0, 3)), 5, 3, 0.0, 2, 4, "StartingNotNeeded",
    ),
    (
        "only pods still starting are cancelled",
        history((200, 5), (50, 2), (0, 2)), 5, 2, 0.0, 1, 4, "StartingNotNeeded",
    ),
    (
        "asked for within the rate window: the down window holds",
        history((200, 4), (30, 4), (0, 2)), 4, 2, 0.0, 2, 4, "Stabilizing",
    ),
    (
        "latency near the SLO keeps starting pods",
        history((200, 4), (50, 2), (0, 2)), 4, 2, 0.9, 2, 4, "Stabilizing",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    "case,hist,current,raw,breach,starting,target,held",
    STABILIZE_TABLE,
    ids=[c[0] for c in STABILIZE_TABLE],
)
def test_stabilize(
    case: str,
    hist: list[Recommendation],
    current: int,
    raw: int,
    breach: float,
    starting: int,
    target: int,
    held: str | None,
) -> None:
    got, reason, _ = _stabilize(SPEC, hist, current, raw, NOW, breach, starting)
    assert (got, reason) == (target, held)


AUTO = SPEC.model_copy(
    update={"scale_down": SPEC.scale_down.model_copy(update={"stabilization_seconds": None})}
)
EXPLICIT_0 = SPEC.model_copy(
    update={"scale_down": SPEC.scale_down.model_copy(update={"stabilization_seconds": 0})}
)
DOWN_WINDOW_TABLE = [
    # (case, spec, learned start time, window, words)
    ("the user's window", SPEC, 30.0, 300.0, ""),
    ("the user's window of 0", EXPLICIT_0, 30.0, 0.0, ""),
    ("unset, no start timed: the usual window", AUTO, None, 300.0, "no start timed"),
    ("unset: one rate window + the start", AUTO, 30.0, 90.0, "60s to see the load return"),
    ("unset, a 90 s start", AUTO, 90.0, 150.0, "90s to start one"),
    ("unset, a start of 240 s reaches the usual window", AUTO, 240.0, 300.0, ""),
    ("unset, a longer start keeps the usual window", AUTO, 344.0, 300.0, ""),
]  # fmt: skip


@pytest.mark.parametrize(
    "case,spec,start,window,words", DOWN_WINDOW_TABLE, ids=[c[0] for c in DOWN_WINDOW_TABLE]
)
def test_down_window(
    case: str, spec: ScalingSpec, start: float | None, window: float, words: str
) -> None:
    got, why = down_window(spec, start)
    assert got == window
    assert words in why and (words or not why)


@pytest.mark.parametrize(
    "start,hist,target,held",
    [
        (30.0, history((200, 4), (0, 2)), 3, None),  # 90 s window: 200 s of low load is enough
        (30.0, history((60, 4), (0, 2)), 4, "Stabilizing"),
        (None, history((200, 4), (0, 2)), 4, "Stabilizing"),  # no start timed: 300 s
        (600.0, history((200, 4), (0, 2)), 4, "Stabilizing"),
    ],
)
def test_an_unset_down_window_follows_the_learned_start(
    start: float | None, hist: list[Recommendation], target: int, held: str | None
) -> None:
    got, reason, why = _stabilize(AUTO, hist, 4, 2, NOW, 0.0, 0, start)
    assert (got, reason) == (target, held)
    if held:
        assert f"must last {down_window(AUTO, start)[0]:.0f}s" in why


def test_worked_example_of_the_module_docstring() -> None:
    d = Demand(16.0, 16.0, 0.0, 0.01, 19.4, 344.0, 19.4)
    p = plan(d, 5.0, Headroom(0.25, 90, None))
    assert p.up == math.ceil((19.4 + 0.25 * 19.4) / 5.0) == 5


PLAN_GUARD_TABLE = [
    # (case, ready, TPOT p99, the plan's count, expected ask)
    ("no plan count: ready x breach", 4, 0.127, None, 6),
    ("a plan above ready explains the breach: its count", 4, 0.127, 5, 5),
    ("a plan at ready: its capacity is off, one more", 4, 0.127, 4, 5),
    ("a plan below ready: its capacity is off, one more", 4, 0.127, 3, 5),
    ("a far breach the plan does not explain: still one more", 4, 0.3, 4, 5),
    ("a plan asking more than ready x breach: the guard's own count", 4, 0.127, 9, 6),
]


@pytest.mark.parametrize(
    "case,ready,tpot,plan_up,expected", PLAN_GUARD_TABLE, ids=[c[0] for c in PLAN_GUARD_TABLE]
)
def test_a_breach_the_plan_explains_asks_for_the_plans_count(
    case: str, ready: int, tpot: float, plan_up: int | None, expected: int
) -> None:
    # near the knee TPOT rises faster than the load (4 replicas at 0.127 s where 5 serve at
    # 0.083 s): ready x breach overshoots where the plan already counts the replicas missing
    hot = vals(10, 0, 0.2, tpotP99=tpot)
    got = guard(SPEC, hot, ready, True, True, breach_held=True, plan_up=plan_up)
    assert got == (expected, "TPOTAboveSLO", ANY)


def test_a_queues_ttft_breach_the_plan_does_not_explain_asks_for_one_more() -> None:
    # TTFT p99 3.6 s > 2 s on 5 Ready replicas whose plan asks for 5: a queue's wait says
    # nothing of how many replicas are missing (x1.8 took the fleet from 5 to 9)
    hot = vals(10, 0, 0.2, ttftP99=3.6)
    assert guard(SPEC, hot, 5, True, True, breach_held=True, plan_up=5) == (
        6,
        "TTFTAboveSLO",
        ANY,
    )
    # without a plan: ready x breach, as before
    assert guard(SPEC, hot, 5, True, True, breach_held=True) == (9, "TTFTAboveSLO", ANY)
