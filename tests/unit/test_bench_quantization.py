"""The quantization benchmark's world: a stepped switch between rungs under a GPU cap."""

from __future__ import annotations

import pytest

from bench.quantization import DISTILL70B, R1, SCENARIOS, Controller, RungFleet, Setup, setup_of


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
