"""Step 2 of the planner, the capacity model on running requests per replica (scaling.py:
`learn_capacity` with running requests and the mean TPOT, the step-time curve, `running_capacity`).

Each table feeds the learner the steady samples of an engine whose step time is known, and
checks the capacity against the one that engine has, solved independently of the closed forms.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from deepseek_operator.api.spec import ScalingSpec
from deepseek_operator.api.status import CapacityModel, ScalingState
from deepseek_operator.scaling import (
    admission_limit,
    at_bucket_top,
    learn_capacity,
    learned_admission,
    next_admission_limit,
    replica_capacity,
    running_capacity,
    step_capacity,
)

AIM = 0.1  # TPOT p99 aim, s
TOKENS = 200.0  # a request lasts 200 mean TPOTs


def linear(a: float, b: float) -> Callable[[float], float]:
    return lambda n: a + b * n


def concave(n: float) -> float:
    """A mixture-of-experts step: a fixed part, experts touched until all are (a knee), then
    the per-token cost alone."""
    return 0.02 + 0.03 * (1 - 0.97**n) + 0.0003 * n


def learn(
    step: Callable[[float], float],
    loads: list[float],
    ratio: float = 1.6,
    kv_per_running: float = 0.001,
    p99: Callable[[float], float] | None = None,
    with_mean: bool = True,
) -> CapacityModel:
    """The samples an engine with mean TPOT `step(n)` reports at n running requests per
    replica (each load three times): rate = n / (TOKENS x m), TPOT p99 = ratio x m, KV usage
    = kv_per_running x n."""
    model = None
    for n in loads:
        for _ in range(3):
            m = step(n)
            p = p99(m) if p99 else ratio * m
            model = learn_capacity(
                model,
                "blue",
                "fp8",
                n / (TOKENS * m),
                p,
                kv_per_running * n,
                n if with_mean else None,
                m if with_mean else None,
            )
    assert model is not None
    return model


def truth(step: Callable[[float], float], ratio: float, n_max: float = 1e6) -> float:
    """Requests/s per replica at which ratio x step(n) reaches AIM (bisection), or at n_max."""
    lo, hi = 0.0, n_max
    if ratio * step(n_max) <= AIM:
        lo = n_max
    else:
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if ratio * step(mid) < AIM else (lo, mid)
    return lo / (TOKENS * step(lo))


# Loads whose p99 (1.6 x the mean TPOT) reads inside a bucket of vLLM's TPOT histogram, never
# at the top of one (checked below); the heaviest in the aim's bucket (75 ms, 100 ms].
SPREAD = [20.0, 60.0, 100.0, 140.0, 180.0]
LINE = linear(0.01, 0.00025)


def test_the_samples_of_the_tables_read_inside_their_buckets() -> None:
    assert not any(at_bucket_top(1.6 * LINE(n)) for n in SPREAD)
    assert 0.075 < 1.6 * LINE(180.0) <= 0.1


BUCKET_TABLE = [
    # (p99 read by histogram_quantile, at the top of its bucket)
    (0.0249, True),  # (0.01, 0.025]: everything in it
    (0.073, False),  # the top 5% of (0.05, 0.075] starts at 0.07375
    (0.0749, True),
    (0.0999, True),
    (0.06, False),
    (0.005, False),
    (100.0, True),  # past the last bucket: Prometheus returns its bound
]


@pytest.mark.parametrize("p99,top", BUCKET_TABLE)
def test_at_bucket_top(p99: float, top: bool) -> None:
    assert at_bucket_top(p99) is top


PAST = [*SPREAD, 220.0]  # and one load past the aim (p99 104 ms, in the bucket above)
CAPACITY_TABLE = [
    # (case, model, KV target, expected req/s per replica): the KV cache binds first
    (
        "0.8 / 0.005 = 160 running, within the loads seen",
        learn(LINE, PAST, kv_per_running=0.005),
        0.8,
        160 / (TOKENS * LINE(160)),
    ),
    (
        "beyond the loads seen (Little's law holds there too), the tail bounded from below",
        learn(LINE, SPREAD[:3], kv_per_running=0.005, p99=lambda m: 1.6 * m if m < 0.03 else 0.05),
        0.8,
        160 / (TOKENS * LINE(160)),
    ),
    (
        "a lower target: 0.5 / 0.005 = 100 running",
        learn(LINE, PAST, kv_per_running=0.005),
        0.5,
        100 / (TOKENS * LINE(100)),
    ),
]


@pytest.mark.parametrize(
    "case,model,kv_target,expected", CAPACITY_TABLE, ids=[c[0] for c in CAPACITY_TABLE]
)
def test_running_capacity_where_the_kv_cache_binds(
    case: str, model: CapacityModel, kv_target: float, expected: float
) -> None:
    got = replica_capacity(model, "blue", "fp8", AIM, kv_target)
    assert got is not None and "KV cache" in got.source and "running" in got.source, got
    assert got.per_replica == pytest.approx(expected, rel=2e-3)


def test_a_concave_engine_s_kv_bound_reads_the_step_time_off_its_heaviest_loads() -> None:
    # a reasoning-like cache: 1.6% per running request binds at 50 running (TPOT near 58),
    # past the 40 seen; the step time there along the segment of the heaviest bands
    model = learn(concave, [10.0, 20.0, 30.0, 40.0], kv_per_running=0.016)
    got = running_capacity(model, AIM, 0.8)
    assert got is not None and "beyond the 40 seen" in got.source, got
    true = 50 / (TOKENS * concave(50))
    assert 0.97 * true < got.per_replica <= true, (got, true)


def test_a_band_not_seen_for_hours_fades_out() -> None:
    model = learn(LINE, SPREAD)
    bands = {b.band for b in model.step_curve}
    for _ in range(6000):  # a day at 15 s
        model = learn_capacity(model, "blue", "fp8", 0.5, 0.04, 0.05, 20.0, LINE(20.0))
    assert {b.band for b in model.step_curve} < bands


FALLBACK_TABLE = [
    # (case, model): no KV-bound capacity from the running-requests model; the rate line stands in
    ("TPOT binds first, past the loads seen", learn(LINE, SPREAD)),
    ("TPOT binds first, within the loads seen", learn(LINE, PAST)),
    ("a concave engine: TPOT binds past the loads seen", learn(concave, [5.0, 15.0, 30.0])),
    ("one load level", learn(LINE, [100.0, 100.0, 100.0], kv_per_running=0.005)),
    ("no mean TPOT reported (an older vLLM)", learn(LINE, PAST, 1.6, 0.005, with_mean=False)),
    (
        "the tail is not known yet (no p99 in the aim's bucket nor at a bucket's top)",
        learn(LINE, SPREAD[:3], kv_per_running=0.005),
    ),
]


@pytest.mark.parametrize("case,model", FALLBACK_TABLE, ids=[c[0] for c in FALLBACK_TABLE])
def test_elsewhere_the_rate_line_stands_in(case: str, model: CapacityModel) -> None:
    # a mixture of experts: the line alone (its curve flattens past the loads seen)
    assert running_capacity(model, AIM, 0.8) is None
    got = replica_capacity(model, "blue", "fp8", AIM, 0.8, moe=True)
    assert got is not None and "running" not in got.source, got


def convex_p99(m: float) -> float:
    """A dense engine's TPOT p99 over its mean: the tail widens as the batch fills."""
    return m * (1.6 + 8.0 * max(0.0, m - 0.02))


def at_top(a: float, b: float) -> float:
    """The running requests at which a linear step a + b x n reads its p99 (1.6 x the mean) at
    the top of the (10, 25] ms bucket: the ratio's bound is then exact (1.6)."""
    return (0.0249 / 1.6 - a) / b


DENSE_TABLE = [
    # (case, model, the true capacity): TPOT binds, the model is dense, the loads seen light
    # (p99 25-45 ms); the rate line through them promises more than the engine carries
    (
        "a linear step, TPOT binding past the loads seen",
        learn(linear(0.005, 0.0004), [at_top(0.005, 0.0004), 40.0, 60.0]),
        truth(linear(0.005, 0.0004), 1.6),
    ),
    (
        "a steeper step",
        learn(linear(0.004, 0.0008), [at_top(0.004, 0.0008), 20.0, 30.0]),
        truth(linear(0.004, 0.0008), 1.6),
    ),
]


@pytest.mark.parametrize("case,model,true", DENSE_TABLE, ids=[c[0] for c in DENSE_TABLE])
def test_a_dense_model_s_tpot_line_is_bounded_by_its_step_time_curve(
    case: str, model: CapacityModel, true: float
) -> None:
    line = replica_capacity(model, "blue", "fp8", AIM, None, moe=True)
    got = replica_capacity(model, "blue", "fp8", AIM, None)
    curve = step_capacity(model, AIM)
    assert line is not None and got is not None and curve is not None
    assert line.per_replica > 1.05 * true, (line, true)  # what the line alone would promise
    assert got.per_replica == pytest.approx(curve.per_replica)
    assert got.per_replica == pytest.approx(true, rel=0.01), (got, true)
    assert "the step-time curve bounds it (a dense model)" in got.source
    assert "beyond the" in got.source and "running at mean TPOT" in got.source


def test_the_curve_only_lowers_the_line() -> None:
    # a concave (mixture-of-experts-like) step read as dense: the curve, extrapolated along
    # its heaviest points, says less than the engine carries; the line is kept where it is
    # the lower, and the lower of the two is never above the truth here
    model = learn(concave, [5.0, 15.0, 30.0])
    line = replica_capacity(model, "blue", "fp8", AIM, None, moe=True)
    got = replica_capacity(model, "blue", "fp8", AIM, None)
    assert line is not None and got is not None
    assert got.per_replica <= line.per_replica
    assert got.per_replica <= truth(concave, 1.6) * 1.001


STEP_NONE_TABLE = [
    # (case, model): no curve to bound the line with: the line alone, dense or not
    ("one load level", learn(LINE, [100.0, 100.0, 100.0])),
    ("no mean TPOT reported (an older vLLM)", learn(LINE, PAST, with_mean=False)),
    ("no samples of the running model", None),
]


@pytest.mark.parametrize("case,model", STEP_NONE_TABLE, ids=[c[0] for c in STEP_NONE_TABLE])
def test_without_a_curve_a_dense_model_keeps_the_line(
    case: str, model: CapacityModel | None
) -> None:
    if model is None:
        model = learn_capacity(None, "blue", "fp8", 2.0, 0.04)
        for r, t in [(2.0, 0.04), (3.0, 0.05), (4.0, 0.06), (5.0, 0.07)]:
            model = learn_capacity(model, "blue", "fp8", r, t)
    assert step_capacity(model, AIM) is None
    dense = replica_capacity(model, "blue", "fp8", AIM, None)
    moe = replica_capacity(model, "blue", "fp8", AIM, None, moe=True)
    assert dense is not None and moe is not None and dense == moe


def test_a_status_from_before_the_running_model_still_parses_and_learns() -> None:
    old = {
        "colour": "blue",
        "samples": 9,
        "weight": 8.0,
        "meanRate": 2.0,
        "meanTpot": 0.05,
        "meanRateSq": 4.1,
        "meanRateTpot": 0.1,
        "meanKv": 0.2,
    }
    model = CapacityModel.model_validate(old)
    assert running_capacity(model, AIM, 0.8) is None
    after = learn_capacity(model, "blue", None, 2.0, 0.05, 0.2, 20.0, 0.03)
    assert (after.samples, after.curve_samples) == (10, 1)


def test_decide_bounds_the_line_for_a_dense_model_only() -> None:
    from deepseek_operator.api.spec import ScalingSpec
    from deepseek_operator.api.status import ScalingState
    from deepseek_operator.scaling import ScalingInputs, decide
    from deepseek_operator.signals import Signal, Signals

    model = DENSE_TABLE[1][1].model_copy(update={"colour": "blue", "mode": None})
    now = 1000.0
    state = ScalingState(
        capacity=model, ready_since=now - 120.0, ready_count=2, last_decision_time=now - 15.0
    )
    signals = Signals(
        {
            Signal.RUNNING: 40.0,
            Signal.QUEUE_DEPTH: 0.0,
            Signal.KV_CACHE_USAGE: 0.1,
            Signal.PODS_REPORTING: 2.0,
            Signal.REQUEST_RATE: 8.0,
            Signal.TPOT_P99: 0.04,
        }
    )
    spec = ScalingSpec.model_validate({"slo": {"tpotP99Seconds": 0.1}})
    words = {}
    for moe in (True, False):
        inputs = ScalingInputs(replicas=2, ready=2, signals=signals, moe=moe)
        d = decide(spec, inputs, state, now, 15.0)
        words[moe] = d.message
    assert "the step-time curve bounds it (a dense model)" in words[False], words[False]
    assert "step-time curve" not in words[True], words[True]


TAIL_TABLE = [
    # (case, TPOT p99 read linearly, p99 read off the tail, mean TPOT, the ratio learned)
    ("in the aim's bucket: the tail's read", 0.098, 0.087, 0.05, 0.087 / 0.05),
    ("in the aim's bucket, no tail read: the linear one", 0.098, None, 0.05, 0.098 / 0.05),
    ("the tail's read outside the aim's bucket is not used", 0.098, 0.07, 0.05, 0.098 / 0.05),
]


@pytest.mark.parametrize("case,p99,exact,mean,ratio", TAIL_TABLE, ids=[c[0] for c in TAIL_TABLE])
def test_the_tail_ratio_takes_the_p99_read_off_the_buckets_tail(
    case: str, p99: float, exact: float | None, mean: float, ratio: float
) -> None:
    model = None
    for _ in range(3):
        model = learn_capacity(model, "blue", None, 4.0, p99, 0.1, 40.0, mean, AIM, exact)
    assert model is not None and model.tail_weight > 2.0
    assert model.tail_ratio == pytest.approx(ratio, rel=1e-4)


# ------------------------------------------------------------------ the admission limit --
def n_at(step: Callable[[float], float], aim: float) -> float:
    """The running requests at which step(n) reaches aim (bisection)."""
    lo, hi = 0.0, 1e5
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if step(mid) < aim else (lo, mid)
    return lo


@pytest.mark.parametrize(
    ("name", "step", "loads", "aim", "rel"),
    [
        # a dense model's step grows with the batch: the aim read between points seen
        ("dense, within", linear(0.02, 0.0005), [20.0, 60.0, 100.0, 180.0], 0.1, 0.02),
        # only light loads seen: along the heaviest points, past them
        ("dense, beyond", linear(0.02, 0.0005), [10.0, 20.0, 40.0], 0.1, 0.02),
        # a mixture of experts' knee: past it the line through the heaviest points
        ("moe, beyond the knee", concave, [40.0, 80.0, 120.0, 160.0], 0.1, 0.05),
        # a stricter aim (tpotSloFraction 0.6) comes earlier on the same curve
        ("dense, fraction", linear(0.02, 0.0005), [20.0, 60.0, 100.0, 180.0], 0.06, 0.02),
    ],
)
def test_admission_limit_is_where_the_mean_step_time_reaches_the_aim(
    name: str, step: Callable[[float], float], loads: list[float], aim: float, rel: float
) -> None:
    model = learn(step, loads)
    got = admission_limit(model, aim)
    assert got is not None, name
    n, why = got
    assert n == pytest.approx(n_at(step, aim), rel=rel, abs=1.0), name
    assert f"{aim * 1000:.0f}ms at {n} running per pod" in why


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("nothing learned", None),
        ("one load only: no curve", learn(linear(0.02, 0.0005), [60.0])),
        ("no running requests reported", learn(linear(0.02, 0.0005), SPREAD, with_mean=False)),
        # the aim under the lightest point's step: at most one request would meet it
        ("aim below the lightest step", learn(linear(0.02, 0.0005), [2.0, 4.0, 8.0])),
    ],
)
def test_no_admission_limit_without_a_curve_that_reaches_the_aim(
    name: str, model: CapacityModel | None
) -> None:
    aim = 0.0202 if name.startswith("aim below") else 0.1
    assert admission_limit(model, aim) is None, name


@pytest.mark.parametrize(
    ("written", "learned", "want"),
    [
        (None, None, (None, False)),  # nothing to publish
        (None, 120, (120, True)),  # the first one learned
        (120, None, (120, False)),  # a new curve is learning: the written one stays
        (120, 128, (120, False)),  # within 10%: the curve's noise
        (120, 131, (120, False)),
        (120, 132, (132, True)),  # 10% up
        (120, 108, (108, True)),  # 10% down
        (120, 109, (120, False)),
    ],
)
def test_a_learned_admission_limit_is_republished_once_it_moves_by_ten_percent(
    written: int | None, learned: int | None, want: tuple[int | None, bool]
) -> None:
    n, why = next_admission_limit(written, None if learned is None else (learned, "why"))
    assert (n, why is not None) == want


def test_learned_admission_keeps_the_limit_in_the_memory_and_says_when_it_moves() -> None:
    spec = ScalingSpec.model_validate({"slo": {"tpotP99Seconds": 0.1}})
    model = learn(linear(0.02, 0.0005), [20.0, 60.0, 100.0, 180.0])
    state, said = learned_admission(spec, ScalingState(capacity=model))
    assert state.admission_limit == 160 and said is not None
    assert said.startswith("admission limit none -> 160 requests per pod: mean TPOT reaches 100ms")
    assert state.admission_limit_source and "160 running per pod" in state.admission_limit_source
    # the same curve again: nothing new to say or publish
    again, said = learned_admission(spec, state)
    assert again == state and said is None
    # a stricter SLO fraction moves it by more than 10%: republished
    strict = spec.model_copy(
        update={"targets": spec.targets.model_copy(update={"tpot_slo_fraction": 0.6})}
    )
    moved, said = learned_admission(strict, state)
    assert moved.admission_limit == 79 and said and said.startswith("admission limit 160 -> 79")
