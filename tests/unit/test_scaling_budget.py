"""The SLO attainment the autoscaler measures, one table each: the share of requests that
missed (from the latency histograms' buckets and the error rate), the requests and misses
weighted over the SLO window, and when there are enough to judge."""

from __future__ import annotations

import math
from typing import Any

import pytest
from deepseek_operator.api.spec import ScalingSpec, SloSpec
from deepseek_operator.api.status import ScalingState, SloBudget
from deepseek_operator.scaling import (
    STEADY_SECONDS,
    ScalingInputs,
    budget_words,
    decide,
    missed_share,
    slo_condition,
    slo_judged,
    spend_budget,
)
from deepseek_operator.signals import Signal, Signals

INF = math.inf
SLO = SloSpec(ttft_p99_seconds=2.0, tpot_p99_seconds=0.1)
# 100 requests/s by bucket (cumulative): TTFT 1% above 2.5 s; TPOT 2% above 0.1 s
TTFT = ((0.5, 90.0), (1.0, 97.0), (2.5, 99.0), (INF, 100.0))
TPOT = ((0.05, 60.0), (0.075, 90.0), (0.1, 98.0), (0.15, 100.0), (INF, 100.0))

MISSED_TABLE = [
    # (case, buckets, error rate, expected share missed)
    ("TTFT and TPOT misses add up", {Signal.TTFT_BUCKETS: TTFT, Signal.TPOT_BUCKETS: TPOT},
     None, (1 - (97.0 + 2.0 / 1.5) / 100) + 0.02),
    ("failed requests miss too", {Signal.TPOT_BUCKETS: TPOT}, 0.05, 0.07),
    ("nothing finished in the window: unknown", {}, 0.0, None),
    ("an empty histogram: unknown", {Signal.TTFT_BUCKETS: ((1.0, 0.0), (INF, 0.0))}, None, None),
    ("an overloaded fleet misses at most all", {Signal.TTFT_BUCKETS: ((1.0, 0.0), (INF, 9.0)),
     Signal.TPOT_BUCKETS: ((0.1, 0.0), (INF, 9.0))}, 0.5, 1.0),
]  # fmt: skip


@pytest.mark.parametrize(
    "case,buckets,errors,expected", MISSED_TABLE, ids=[c[0] for c in MISSED_TABLE]
)
def test_missed_share(
    case: str, buckets: dict[Signal, tuple[tuple[float, float], ...]], errors: float | None,
    expected: float | None,
) -> None:  # fmt: skip
    vals = {} if errors is None else {Signal.ERROR_RATE: errors}
    got = missed_share(Signals(vals, buckets=buckets), SLO)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-9)


def test_ttft_share_is_interpolated_inside_its_bucket() -> None:
    # 2 s sits in (1.0, 2.5]: 2 of the 3 requests per 100 in that bucket count as within
    got = missed_share(Signals({}, buckets={Signal.TTFT_BUCKETS: TTFT}), SLO)
    assert got == pytest.approx(0.01 + 0.02 / 3)  # (2.5 - 2) / 1.5 of 2, plus 1 above


W = 3600.0
SPEND_TABLE = [
    # (case, budget before, now, rate, missed, expected requests, expected missed)
    ("the first reading covers its rate window", None, 100.0, 10.0, 0.01,
     10.0 * STEADY_SECONDS, 0.1 * STEADY_SECONDS),
    ("a reading 15 s on adds 15 s of requests",
     SloBudget(requests=1000.0, missed=5.0, time=85.0), 100.0, 10.0, 0.1,
     1000.0 * math.exp(-15 / W) + 150.0, 5.0 * math.exp(-15 / W) + 15.0),
    ("a gap counts one rate window, and the past decays over all of it",
     SloBudget(requests=1000.0, missed=5.0, time=100.0), 100.0 + W, 10.0, 0.0,
     1000.0 / math.e + 10.0 * STEADY_SECONDS, 5.0 / math.e),
    ("no reading: the budget as it was",
     SloBudget(requests=1000.0, missed=5.0, time=85.0), 100.0, None, 0.0, 1000.0, 5.0),
    ("no share missed known: the budget as it was",
     SloBudget(requests=1000.0, missed=5.0, time=85.0), 100.0, 10.0, None, 1000.0, 5.0),
]  # fmt: skip


@pytest.mark.parametrize(
    "case,before,now,rate,missed,requests,misses", SPEND_TABLE, ids=[c[0] for c in SPEND_TABLE]
)
def test_spend_budget(
    case: str, before: SloBudget | None, now: float, rate: float | None, missed: float | None,
    requests: float, misses: float,
) -> None:  # fmt: skip
    got = spend_budget(before, now, rate, missed, W)
    if rate is None or missed is None:
        assert got is before
        return
    assert got is not None
    assert got.requests == pytest.approx(requests, rel=1e-4)
    assert got.missed == pytest.approx(misses, rel=1e-4, abs=1e-4)
    assert got.attainment == pytest.approx(1 - misses / requests, abs=1e-5)


def test_attainment_is_judged_once_the_budget_allows_ten_misses() -> None:
    few = SloBudget(requests=999.0, missed=0.0, time=0.0, attainment=1.0)
    enough = SloBudget(requests=1000.0, missed=20.0, time=0.0, attainment=0.98)
    assert not slo_judged(None, SLO) and not slo_judged(few, SLO)
    assert slo_judged(enough, SLO)
    assert not slo_judged(enough, SloSpec(attainment=0.995))  # allows 5 misses of 1000
    assert (
        budget_words(few, SLO) == "SLO attainment: too few requests yet (target 99.00% over 60 min)"
    )
    assert budget_words(enough, SLO) == "SLO attainment 98.00% (target 99.00% over 60 min)"


def test_a_decision_keeps_the_budget_and_says_it() -> None:
    spec = ScalingSpec(min_replicas=1, max_replicas=8)
    vals = {
        Signal.REQUEST_RATE: 10.0, Signal.RUNNING: 20.0, Signal.QUEUE_DEPTH: 0.0,
        Signal.KV_CACHE_USAGE: 0.2, Signal.PODS_REPORTING: 2.0, Signal.TPOT_P99: 0.05,
        Signal.TTFT_P99: 0.5, Signal.ERROR_RATE: 0.0,
    }  # fmt: skip
    sig = Signals(vals, buckets={Signal.TTFT_BUCKETS: TTFT, Signal.TPOT_BUCKETS: TPOT})
    before = SloBudget(requests=100_000.0, missed=100.0, time=985.0)
    state = ScalingState(slo_budget=before, last_decision_time=985.0)
    d = decide(spec, ScalingInputs(replicas=2, ready=2, signals=sig), state, 1000.0, 15.0)
    got = d.state.slo_budget
    assert got is not None and got.time == 1000.0
    assert got.requests > before.requests * 0.99
    assert got.missed > before.missed  # 3.67% of 150 requests missed
    assert "SLO attainment" in d.message
    # missing metrics hold the budget as it was
    held = decide(
        spec, ScalingInputs(replicas=2, ready=2, signals=Signals({})), state, 1000.0, 15.0
    )
    assert held.state.slo_budget == before


def test_slo_condition_once_judged() -> None:
    assert (
        slo_condition(SloBudget(requests=500.0, missed=50.0, time=0.0, attainment=0.9), SLO) is None
    )
    met = slo_condition(SloBudget(requests=10_000.0, missed=50.0, time=0.0, attainment=0.995), SLO)
    assert met is not None and met[:2] == (True, "AttainmentMet")
    assert met[2] == (
        "99.50% of requests within TTFT p99 2s and TPOT p99 0.1s and without error over the "
        "last 60 min (weighted; target 99.00%)"
    )
    low = slo_condition(SloBudget(requests=10_000.0, missed=300.0, time=0.0, attainment=0.97), SLO)
    assert low is not None and low[:2] == (False, "AttainmentBelowTarget")


def _series(gauge: Any, ns: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(v for k, v in sorted(s.labels.items()) if k not in ("namespace", "dsd")): s.value
        for m in gauge.collect()
        for s in m.samples
        if s.labels["namespace"] == ns and s.labels["dsd"] == "r1"
    }


def test_attainment_and_its_target_are_exported_while_measured() -> None:
    """The dashboards' attainment panel and DeepSeekSLOAttainmentBelowTarget compare
    deepseek_operator_slo_attainment with deepseek_operator_slo_target{slo="attainment"}; the
    measurement's series is there only while status.scaling.sloBudget.attainment is."""
    from deepseek_operator import handlers
    from deepseek_operator.adapters import metrics
    from deepseek_operator.api import DeepSeekDeployment
    from deepseek_operator.api.status import DeepSeekDeploymentStatus
    from deepseek_operator.reconcile import Outcome

    ns = "slo-export"
    dsd = DeepSeekDeployment.from_k8s(
        {
            "metadata": {"name": "r1", "namespace": ns, "uid": "u-1", "generation": 1},
            "spec": {
                "model": {"checkpoint": "deepseek-ai/DeepSeek-R1"},
                "scaling": {"enabled": True, "slo": {"attainment": 0.95}},
            },
        }
    )

    def export(budget: SloBudget | None) -> None:
        scaling = None if budget is None else ScalingState(slo_budget=budget)
        status = DeepSeekDeploymentStatus(scaling=scaling)
        handlers._export(dsd, Outcome(plan=None, targets=(), status=status, events=()))

    export(None)
    assert _series(metrics.SLO_TARGET, ns)[("attainment",)] == 0.95
    assert _series(metrics.SLO_ATTAINMENT, ns) == {}
    export(SloBudget(requests=20.0, missed=0.0, time=1.0))  # nothing measured yet
    assert _series(metrics.SLO_ATTAINMENT, ns) == {}
    export(SloBudget(requests=1000.0, missed=30.0, time=2.0, attainment=0.97))
    assert _series(metrics.SLO_ATTAINMENT, ns) == {(): 0.97}
    export(None)  # autoscaling turned off: the status no longer has it
    assert _series(metrics.SLO_ATTAINMENT, ns) == {}
    export(SloBudget(requests=1000.0, missed=30.0, time=2.0, attainment=0.97))
    handlers.forget(ns, "r1")
    assert _series(metrics.SLO_ATTAINMENT, ns) == {}
