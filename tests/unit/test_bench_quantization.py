"""The quantization benchmark's world: a stepped switch between rungs under a GPU cap."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bench.quantization import (
    DISTILL70B,
    R1,
    SCENARIOS,
    WARMUP_S,
    Controller,
    RungFleet,
    Setup,
    build_scenarios,
    duration_of,
    measured,
    peak_rps,
    reactive_bound,
    setup_of,
    warmup_of,
)
from testbed.sim import traces as T
from testbed.sim.engine import SimRequest


@pytest.mark.parametrize(
    ("setup", "to", "replicas", "steps"),
    [(R1, "int4", 8, 4), (R1, "fp8-kv8", 4, 4), (DISTILL70B, "fp8-kv8", 4, 4)],
)
def test_stepped_switch_replaces_one_old_replica_at_a_time(
    setup: Setup, to: str, replicas: int, steps: int
) -> None:
    presets = setup.rung_presets()
    top = presets[setup.top]
    fleet = RungFleet(top, top.load_time_s, gpus_total=setup.gpus)
    for _ in range(setup.static_replicas):
        fleet.add_rung_pod(setup.top, top, 0.0, warm=True)
    ctl = Controller(fleet, presets, setup.top, 4, max_replicas=setup.max_replicas)
    ctl.switch(to, 1.0)
    cold = presets[to].load_time_s
    fewest_old, t = 4, 1.0
    while ctl.transition is not None and t < 10 * steps * cold:
        t += 1.0
        fleet.advance(t)
        ctl.apply(t)
        assert fleet.held_gpus() <= setup.gpus
        old_ready = sum(1 for p in fleet.live_of(setup.top) if p.ready(t))
        new_ready = sum(1 for p in fleet.live_of(to) if p.ready(t))
        # capacity never below the old replicas that remain: at most one old one is missing
        # beyond those already replaced by Ready new ones
        replaced = new_ready * presets[to].gpus // top.gpus
        assert old_ready + replaced >= 3 or ctl.transition is None
        fewest_old = min(fewest_old, old_ready)
    assert ctl.served == to and ctl.desired == replicas
    assert len(fleet.live_of(to)) == replicas and not fleet.live_of(setup.top)
    # each step waits for a cold start: the switch takes `steps` of them
    assert steps * cold <= t <= steps * cold + 10 * steps
    assert ctl.switches == 1 and fewest_old == 0


def test_every_scenario_belongs_to_one_setup_whose_ladder_fits_its_gpus() -> None:
    for sn in SCENARIOS:
        su = setup_of(sn)
        assert [s for s in (R1, DISTILL70B) if sn in s.scenarios] == [su]
        for rung in su.ladder:
            assert su.gpus // su.rung_presets()[rung["name"]].gpus >= 1
    # a rung's preset is the model the ladder names: the 70B's fp8 rung halves the weights
    d = DISTILL70B.rung_presets()
    assert d["fp8"].gpus == d["bf16"].gpus == 4
    assert d["fp8"].kv_capacity_tokens > d["bf16"].kv_capacity_tokens


def _flat(rate_at: Callable[[float], float], start: float, end: float) -> list[SimRequest]:
    """Evenly spaced arrivals at rate_at(t) per second over [start, end)."""
    out, t = [], start
    while t < end:
        out.append(SimRequest(f"r{len(out)}", 100, 100, t))
        t += 1.0 / rate_at(t)
    return out


def test_the_reactive_bound_counts_what_arrives_beyond_the_top_rung_within_a_cold_start() -> None:
    """30 calm minutes at 2 req/s, then 8 req/s for 10 minutes, where the top rung carries 4:
    within a 100 s cold start 800 arrive and 4 x (100 + 2) are served in time, so 392 of the
    measured requests miss whatever a policy does."""
    reqs = _flat(lambda t: 2.0 if t < 3600.0 else 8.0, 0.0, 4200.0)
    tr = T.Trace("jump", reqs, meta={"warmup_s": 1800.0, "duration_s": 2400.0})
    n = sum(1 for r in reqs if r.arrival >= 1800.0)
    bound, at = reactive_bound(tr, 4.0, 100.0, 2.0)
    assert bound == pytest.approx(1.0 - 392 / n, abs=2 / n)
    assert at == pytest.approx(1800.0, abs=2.0)
    # a ramp past the top rung: only its first minute beyond it counts, no more
    ramp = _flat(lambda t: 1.0 + t / 600.0, 0.0, 4200.0)
    tr = T.Trace("ramp", ramp, meta={"warmup_s": 1800.0, "duration_s": 2400.0})
    assert reactive_bound(tr, 4.0, 100.0, 2.0)[0] > 0.998
    # overloaded throughout the warm-up: never calm, no bound
    hot = _flat(lambda t: 6.0, 0.0, 4200.0)
    tr = T.Trace("hot", hot, meta={"warmup_s": 1800.0, "duration_s": 2400.0})
    assert reactive_bound(tr, 4.0, 100.0, 2.0) == (1.0, 0.0)


@pytest.mark.slow
def test_every_scenario_is_preceded_by_its_warm_up_and_measured_for_its_own_duration() -> None:
    for su in (R1, DISTILL70B):
        built = build_scenarios(su, {"chat": 5.0, "reasoning": 1.0}, None, 1)
        for sn, tr in built.items():
            assert warmup_of(tr) == WARMUP_S
            assert tr.requests[0].arrival < WARMUP_S < tr.requests[-1].arrival
            m = measured(tr)
            assert m.requests[-1].arrival < duration_of(tr)
            if "surge" in sn:  # the warm-up is the surge's low rate: the peak is measured
                assert peak_rps(tr) > 3.5 * len(tr.requests[: len(tr) - len(m)]) / WARMUP_S
