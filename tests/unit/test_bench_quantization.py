"""The quantization benchmark's world: a stepped switch between rungs under a GPU cap."""

from __future__ import annotations

import pytest

from bench.quantization import GPUS, Controller, RungFleet, rung_presets


@pytest.mark.parametrize(
    ("to", "replicas", "steps"),
    [("int4", 8, 4), ("fp8-kv8", 4, 4)],
)
def test_stepped_switch_replaces_one_old_replica_at_a_time(
    to: str, replicas: int, steps: int
) -> None:
    presets = rung_presets()
    fleet = RungFleet(presets["fp8"], presets["fp8"].load_time_s)
    for _ in range(4):
        fleet.add_rung_pod("fp8", presets["fp8"], 0.0, warm=True)
    ctl = Controller(fleet, presets, "fp8", 4)
    ctl.switch(to, 1.0)
    cold = presets[to].load_time_s
    fewest_old, t = 4, 1.0
    while ctl.transition is not None and t < 10 * steps * cold:
        t += 1.0
        fleet.advance(t)
        ctl.apply(t)
        assert fleet.held_gpus() <= GPUS
        old_ready = sum(1 for p in fleet.live_of("fp8") if p.ready(t))
        new_ready = sum(1 for p in fleet.live_of(to) if p.ready(t))
        # capacity never below the old replicas that remain: at most one old one is missing
        # beyond those already replaced by Ready new ones
        assert old_ready + new_ready * presets[to].gpus // 8 >= 3 or ctl.transition is None
        fewest_old = min(fewest_old, old_ready)
    assert ctl.served == to and ctl.desired == replicas
    assert len(fleet.live_of(to)) == replicas and not fleet.live_of("fp8")
    # each step waits for a cold start: the switch takes `steps` of them
    assert steps * cold <= t <= steps * cold + 10 * steps
    assert ctl.switches == 1 and fewest_old == 0
