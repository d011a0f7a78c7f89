"""The quantization-ladder policy (deepseek_operator.quantization): one table per step."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from deepseek_operator.api.spec import QuantizationSpec, SloSpec
from deepseek_operator.api.status import LoadSample, QuantizationStatus, QuantizationSwitch
from deepseek_operator.quantization import (
    AT_LOWEST_RUNG,
    AWAITING_PAYBACK,
    DWELL_TIME,
    LIGHTER_RUNG_NO_GAIN,
    METRICS_MISSING,
    PINNED,
    PRESSURE_BUILDING,
    RELIEF_BUILDING,
    SCALING_CAN_HELP,
    STEADY,
    STEP_DOWN,
    STEP_DOWN_NO_GAIN,
    STEP_UP,
    SWITCH_LIMIT,
    SWITCH_ROLLED_BACK,
    TRANSITION_IN_FLIGHT,
    ModeInputs,
    decide_mode,
    learn_rung_capacity,
    replicas_on,
    rfc3339,
    rung_capacity,
)

NOW = 1_800_000_000.0
SLO = SloSpec()  # TTFT p99 2 s, TPOT p99 0.1 s
# R1 on H200: fp8 and fp8-kv8 on 8 GPUs (resources.gpusPerReplica), AWQ int4 on 4.
LADDER: list[dict[str, Any]] = [
    {"name": "fp8", "weights": "fp8"},
    {"name": "fp8-kv8", "weights": "fp8", "kvCacheDtype": "fp8"},
    {"name": "int4", "weights": "int4", "checkpoint": "r1-awq", "gpusPerReplica": 4},
]


def qspec(**policy: Any) -> QuantizationSpec:
    return QuantizationSpec.model_validate(
        {"ladder": LADDER, "policy": {"automatic": True, **policy}}
    )


def inputs(**kw: Any) -> ModeInputs:
    base = ModeInputs(
        served="fp8",
        replicas=4,
        ready=4,
        max_replicas=8,
        wanted_replicas=4,
        scaling_limited=False,
        free_gpus=0,
        held_gpus=32,
        arrival_rate=10.0,
        ttft_p99=0.5,
        tpot_p99=0.05,
        cold_start_s=None,  # unknown: a switch has nothing to pay back (see test_payback)
        metrics_ok=True,
        transition_in_flight=False,
        default_gpus_per_replica=8,
    )
    return replace(base, **kw)


def memory(
    target: str = "fp8",
    pressure_ago: float | None = None,
    relief_ago: float | None = None,
    switches_ago: tuple[float, ...] = (),
    capacity: dict[str, float] | None = None,
) -> QuantizationStatus:
    return QuantizationStatus(
        automatic=True,
        served=target,
        target=target,
        pressure_since=None if pressure_ago is None else rfc3339(NOW - pressure_ago),
        relief_since=None if relief_ago is None else rfc3339(NOW - relief_ago),
        switches=[
            QuantizationSwitch(at=rfc3339(NOW - a), from_="x", to="y", reason=STEP_DOWN)
            for a in sorted(switches_ago, reverse=True)
        ],
        capacity={"fp8": 4.7} if capacity is None else capacity,
    )


# Overloaded at maxReplicas worth of GPUs: TTFT breached (requests queue) for 75 s with the
# decode steps within the TPOT SLO (a KV-bound fleet), 8 fp8 replicas wanted where 32 GPUs fit 4.
BREACHED = {
    "ttft_p99": 4.0,
    "tpot_p99": 0.09,
    "arrival_rate": 30.0,
    "wanted_replicas": 8,
    "scaling_limited": True,
}


# -- pinned ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "served", "target", "switched"),
    [
        (None, "fp8", "fp8", False),  # unset: the first rung
        ("fp8-kv8", "fp8", "fp8-kv8", True),  # the user's pin, even without pressure
        ("int4", "int4", "int4", True),
    ],
)
def test_pinned_serves_the_users_mode(
    mode: str | None, served: str, target: str, switched: bool
) -> None:
    spec = QuantizationSpec.model_validate({"ladder": LADDER, "mode": mode})
    d = decide_mode(spec, SLO, inputs(served=served, **BREACHED), memory(), NOW)
    assert (d.target, d.reason, d.switched) == (target, PINNED, switched)
    assert d.state.automatic is False
    assert d.state.pressure_since is None


# -- hold --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "reason", "clocks_cleared"),
    [
        ({"metrics_ok": False}, METRICS_MISSING, False),
        ({"transition_in_flight": True}, TRANSITION_IN_FLIGHT, True),
    ],
)
def test_hold_keeps_the_target(change: dict[str, Any], reason: str, clocks_cleared: bool) -> None:
    state = memory(target="fp8-kv8", pressure_ago=300)
    d = decide_mode(qspec(), SLO, inputs(**BREACHED, **change), state, NOW)
    assert (d.target, d.reason, d.switched) == ("fp8-kv8", reason, False)
    assert (d.state.pressure_since is None) is clocks_cleared


def test_a_switch_whose_rollout_was_rolled_back_gives_its_target_up() -> None:
    """The rollout to fp8-kv8 failed its analysis: fp8 still serves, and a rolled-back version
    is not retried, so holding fp8-kv8 would wait forever. The target returns to fp8; the
    recorded switch keeps the next one minDwellSeconds away."""
    state = memory(target="fp8-kv8", pressure_ago=900, switches_ago=(600,))
    obs = {**BREACHED, "transition_in_flight": True, "switch_rolled_back": True}
    d = decide_mode(qspec(), SLO, inputs(**obs), state, NOW)
    assert (d.target, d.reason, d.switched) == ("fp8", SWITCH_ROLLED_BACK, True)
    assert d.message.startswith("the switch fp8 -> fp8-kv8 was rolled back or aborted")
    assert d.state.target == "fp8" and d.state.pressure_since is None
    assert len(d.state.switches) == 1  # giving the target up is not a switch of its own
    # the pressure goes on: the next step down waits for the dwell time from the failed switch
    later = decide_mode(qspec(), SLO, inputs(**BREACHED), d.state, NOW + 120)
    later = decide_mode(qspec(), SLO, inputs(**BREACHED), later.state, NOW + 240)
    assert (later.target, later.reason) == ("fp8", DWELL_TIME), later.message


def test_a_rolled_back_rollout_of_the_served_rung_changes_nothing() -> None:
    state = memory(target="fp8", pressure_ago=300)
    d = decide_mode(qspec(), SLO, inputs(**BREACHED, switch_rolled_back=True), state, NOW)
    assert d.reason != SWITCH_ROLLED_BACK and d.target in ("fp8", "fp8-kv8")


# -- pressure tracking -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("obs", "pressure"),
    [
        ({}, False),
        ({"ttft_p99": 2.5}, True),
        ({"tpot_p99": 0.11}, True),
        ({"arrival_rate": 19.5}, True),  # 4 Ready x 4.7 = 18.8 req/s: about to breach
        ({"arrival_rate": 18.0}, False),
        ({"arrival_rate": 18.0, "ready": 3}, True),  # 3 x 4.7 = 14.1
        ({"arrival_rate": None}, False),  # unknown rate: latency alone decides
    ],
)
def test_pressure_is_a_breach_or_more_arriving_than_ready_replicas_carry(
    obs: dict[str, Any], pressure: bool
) -> None:
    d = decide_mode(qspec(), SLO, inputs(**obs), memory(), NOW)
    assert (d.state.pressure_since is not None) is pressure
    assert (d.reason == PRESSURE_BUILDING) is pressure


def test_pressure_clock_keeps_its_start_and_resets_when_it_ends() -> None:
    d = decide_mode(qspec(), SLO, inputs(**BREACHED), memory(pressure_ago=30), NOW)
    assert d.state.pressure_since == rfc3339(NOW - 30)
    d = decide_mode(qspec(), SLO, inputs(), memory(pressure_ago=30), NOW)
    assert d.state.pressure_since is None


# -- step down ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("obs", "reason"),
    [
        # room for more fp8 replicas: scaling helps, no step down
        ({"wanted_replicas": 6, "scaling_limited": False, "free_gpus": 16}, SCALING_CAN_HELP),
        # wanted 6 but 32 GPUs fit 4 (nothing free)
        ({"wanted_replicas": 6, "scaling_limited": False}, STEP_DOWN),
        # the autoscaler says it is capped (maxReplicas or unschedulable pods)
        ({"wanted_replicas": 4, "scaling_limited": True}, STEP_DOWN),
        # at maxReplicas
        ({"wanted_replicas": 4, "scaling_limited": False, "max_replicas": 4}, STEP_DOWN),
        # at maxReplicas 4 with 2 of them still starting on GPUs they hold: 4 x 4.7 carry 15
        (
            {"arrival_rate": 15.0, "max_replicas": 4, "ready": 2, "held_gpus": 32},
            SCALING_CAN_HELP,
        ),
        # ... but not 30: the replicas coming fall short, more cannot come
        ({"max_replicas": 4, "ready": 2, "held_gpus": 32}, STEP_DOWN),
        # the replicas asked for have no GPUs (Pending): they are not coming
        ({"arrival_rate": 15.0, "max_replicas": 4, "ready": 2, "held_gpus": 16}, STEP_DOWN),
    ],
)
def test_step_down_only_when_scaling_cannot_help(obs: dict[str, Any], reason: str) -> None:
    state = memory(pressure_ago=75)
    d = decide_mode(qspec(), SLO, inputs(**{**BREACHED, **obs}), state, NOW)
    assert d.reason == reason
    assert d.target == ("fp8-kv8" if reason == STEP_DOWN else "fp8")


@pytest.mark.parametrize(
    ("pressure_ago", "reason"),
    [(None, PRESSURE_BUILDING), (30, PRESSURE_BUILDING), (60, STEP_DOWN)],
)
def test_step_down_after_sustained_pressure(pressure_ago: float | None, reason: str) -> None:
    d = decide_mode(qspec(), SLO, inputs(**BREACHED), memory(pressure_ago=pressure_ago), NOW)
    assert d.reason == reason


def test_step_down_message_names_the_numbers_and_records_the_switch() -> None:
    d = decide_mode(qspec(), SLO, inputs(**BREACHED), memory(pressure_ago=75), NOW)
    assert d.switched and d.target == "fp8-kv8"
    assert d.message == (
        "TTFT p99 4s > SLO 2s; 30.0 req/s arriving > 4 Ready x ~4.70 req/s on fp8 for 75s; "
        "8 fp8 replicas wanted, 32 held + 0 free GPUs fit 4; fp8-kv8 on 32 GPUs (4 replicas) "
        "carries ~23.5 req/s vs 30.0 req/s arriving -> stepping down fp8 -> fp8-kv8"
    )
    hop = d.state.switches[-1]
    assert (hop.from_, hop.to, hop.reason, hop.at) == ("fp8", "fp8-kv8", STEP_DOWN, rfc3339(NOW))
    assert d.state.since == rfc3339(NOW)
    assert d.state.pressure_since is None  # the next rung is judged on its own
    assert hop.to_k8s()["from"] == "fp8"


@pytest.mark.parametrize(
    ("served", "lowest", "reason", "target"),
    [
        ("fp8", "fp8", AT_LOWEST_RUNG, "fp8"),
        ("fp8-kv8", "fp8-kv8", AT_LOWEST_RUNG, "fp8-kv8"),
        ("fp8-kv8", None, STEP_DOWN, "int4"),  # unset floor: the last rung
        ("int4", None, AT_LOWEST_RUNG, "int4"),
    ],
)
def test_never_below_the_floor(served: str, lowest: str | None, reason: str, target: str) -> None:
    # int4 declared as carrying as much per 4-GPU replica as fp8 per 8: 8 replicas, twice fp8
    ladder = [*LADDER[:2], {**LADDER[2], "capacityFactor": 1.0}]
    spec = QuantizationSpec.model_validate(
        {"ladder": ladder, "policy": {"automatic": True, "lowestRung": lowest}}
    )
    state = memory(target=served, pressure_ago=75, capacity={"fp8": 4.7})
    d = decide_mode(spec, SLO, inputs(served=served, **BREACHED), state, NOW)
    assert (d.reason, d.target) == (reason, target)


@pytest.mark.parametrize(
    ("learned", "reason"),
    [
        ({"fp8": 4.7}, STEP_DOWN),  # prior: fp8-kv8 carries 1.25x
        ({"fp8": 4.7, "fp8-kv8": 4.75}, STEP_DOWN_NO_GAIN),  # learned: 1.01x, not worth it
        ({}, STEP_DOWN),  # nothing learned: the factors alone (1.25x)
    ],
)
def test_step_down_only_to_a_rung_that_carries_more(learned: dict[str, float], reason: str) -> None:
    state = memory(pressure_ago=75, capacity=learned)
    obs = {**BREACHED, "arrival_rate": None} if not learned else BREACHED
    d = decide_mode(qspec(lowest_rung="fp8-kv8"), SLO, inputs(**obs), state, NOW)
    assert d.reason == reason


def test_a_rung_that_carries_no_more_is_skipped_for_one_below_that_does() -> None:
    """fp8-kv8 learned at 1.01x fp8: the policy goes straight to int4 (learned 1.28x on 8
    replicas of 4 GPUs) instead of stopping at a rung that does not help."""
    state = memory(pressure_ago=75, capacity={"fp8": 4.7, "fp8-kv8": 4.75, "int4": 3.0})
    d = decide_mode(qspec(), SLO, inputs(**BREACHED), state, NOW)
    assert (d.reason, d.target) == (STEP_DOWN, "int4")
    assert "int4 on 32 GPUs (8 replicas) carries ~24.0 req/s" in d.message


@pytest.mark.parametrize(
    ("cold_start", "free", "pressure_ago", "reason"),
    [
        # fp8-kv8 prior gain 1.25, 4 replicas to replace: 4 x 344 / (4 x 0.25) = 1376 s
        (344.0, 0, 75, AWAITING_PAYBACK),
        (344.0, 0, 1375, AWAITING_PAYBACK),
        (344.0, 0, 1376, STEP_DOWN),
        # 16 free GPUs at maxReplicas 4: they cover 2 of the 4 replicas, 2 x 344 / (4 x 0.25)
        (344.0, 16, 687, AWAITING_PAYBACK),
        (344.0, 16, 689, STEP_DOWN),
        (90.0, 0, 359, AWAITING_PAYBACK),  # a fast loader: 360 s
        (90.0, 0, 360, STEP_DOWN),
        (None, 0, 75, STEP_DOWN),  # cold start not learned yet: no estimate of the cost
    ],
)
def test_payback(cold_start: float | None, free: int, pressure_ago: float, reason: str) -> None:
    """A stepped switch costs one replica per step for a cold start; it is made once the
    pressure has cost as much capacity as the switch would."""
    obs = {**BREACHED, "cold_start_s": cold_start, "free_gpus": free, "wanted_replicas": 9}
    obs["max_replicas"] = 4  # the new rung keeps 4 replicas, 2 of them on the free GPUs
    d = decide_mode(qspec(), SLO, inputs(**obs), memory(pressure_ago=pressure_ago), NOW)
    assert d.reason == reason
    if reason == AWAITING_PAYBACK:
        assert "a stepped switch takes" in d.message


@pytest.mark.parametrize(
    ("kv_usage", "tpot", "learned", "reason", "why"),
    [
        # decode-bound: a bigger KV cache adds nothing
        (0.5, 0.09, {"fp8": 4.7}, STEP_DOWN_NO_GAIN, "KV cache at 50% < 90%: not what binds"),
        (0.89, 0.09, {"fp8": 4.7}, STEP_DOWN_NO_GAIN, "KV cache at 89% < 90%: not what binds"),
        # the KV cache binds and the steps are within the TPOT SLO: the prior's 1.25x counts
        (0.9, 0.09, {"fp8": 4.7}, STEP_DOWN, None),
        (0.99, 0.1, {"fp8": 4.7}, STEP_DOWN, None),
        # full only because of a deep overload: the steps are already too slow (chat at 2x)
        (
            0.99,
            0.39,
            {"fp8": 4.7},
            STEP_DOWN_NO_GAIN,
            "TPOT p99 0.390s > SLO 0.1s: the decode step, not the KV cache, binds",
        ),
        (None, 0.09, {"fp8": 4.7}, STEP_DOWN, None),  # unknown usage: the prior as it is
        (0.99, None, {"fp8": 4.7}, STEP_DOWN, None),  # unknown TPOT: the prior as it is
        (0.5, 0.39, {"fp8": 4.7, "fp8-kv8": 6.0}, STEP_DOWN, None),  # learned beats any prior
    ],
)
def test_an_fp8_kv_cache_counts_only_where_the_kv_cache_binds(
    kv_usage: float | None,
    tpot: float | None,
    learned: dict[str, float],
    reason: str,
    why: str | None,
) -> None:
    state = memory(pressure_ago=75, capacity=learned)
    # breached by TTFT and the arriving rate, so TPOT is free to vary
    obs = {**BREACHED, "tpot_p99": tpot, "ttft_p99": 4.0, "kv_cache_usage": kv_usage}
    d = decide_mode(qspec(lowest_rung="fp8-kv8"), SLO, inputs(**obs), state, NOW)
    assert d.reason == reason
    if why is not None:
        assert f"({why}, so no credit for its fp8 KV cache)" in d.message
        assert "fp8-kv8 on 32 GPUs (4 replicas) carries ~18.8 req/s" in d.message


# -- leave a slower rung -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("learned_int4", "reason", "target"),
    [
        (1.0, LIGHTER_RUNG_NO_GAIN, "fp8-kv8"),  # 8 x 1.0 < 4 x 5.9: the prior was wrong
        (3.5, PRESSURE_BUILDING, "int4"),  # 8 x 3.5 = 28 > 23.5: it does carry more
    ],
)
def test_a_rung_learned_slower_than_the_one_above_is_left(
    learned_int4: float, reason: str, target: str
) -> None:
    state = memory(target="int4", capacity={"fp8": 4.7, "int4": learned_int4})
    obs = {**BREACHED, "served": "int4", "replicas": 8, "ready": 8}
    d = decide_mode(qspec(), SLO, inputs(**obs), state, NOW)
    assert (d.reason, d.target) == (reason, target)


# -- step up with hysteresis ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("arrival", "relief_ago", "reason", "target"),
    [
        (10.0, None, RELIEF_BUILDING, "fp8-kv8"),  # fp8 x4 carries 18.8: 53% <= 80%, clock starts
        (10.0, 599, RELIEF_BUILDING, "fp8-kv8"),
        (10.0, 600, STEP_UP, "fp8"),
        (16.0, 900, STEADY, "fp8-kv8"),  # 85% of fp8's 18.8 req/s: no headroom, no step up
    ],
)
def test_step_up_with_hysteresis(
    arrival: float, relief_ago: float | None, reason: str, target: str
) -> None:
    state = memory(target="fp8-kv8", relief_ago=relief_ago, capacity={"fp8": 4.7, "fp8-kv8": 5.5})
    obs = {"served": "fp8-kv8", "arrival_rate": arrival}
    d = decide_mode(qspec(), SLO, inputs(**obs), state, NOW)
    assert (d.reason, d.target) == (reason, target)
    assert (d.state.relief_since is None) is (reason in (STEADY, STEP_UP))


@pytest.mark.parametrize(
    ("peak_ago", "peak", "cold_start", "reason"),
    [
        # fp8 x4 carries 18.8 req/s; 10 arrive now (53%), but a minute at 16 (85%) 1000 s ago
        # lies within the time a step back down would take: no relief. Unknown cold start: a
        # switch counts 0 s, so that time is stepUpAfterSeconds (600 s): 1000 s ago is out.
        (1000.0, 16.0, None, RELIEF_BUILDING),
        (500.0, 16.0, None, STEADY),
        # 276 s cold starts: a switch from fp8-kv8 replaces 4 replicas, 4 x 276 s, plus
        # stepDownAfterSeconds (60 s): 1164 s; the busy minute is within it, then leaves it
        (1000.0, 16.0, 276.0, STEADY),
        (1200.0, 16.0, 276.0, RELIEF_BUILDING),
        (500.0, 14.0, 276.0, RELIEF_BUILDING),  # 74%: a busy minute with headroom still
    ],
)
def test_step_up_looks_back_as_far_as_a_step_back_down_takes(
    peak_ago: float, peak: float, cold_start: float | None, reason: str
) -> None:
    """The load of the ladder's memory within `back_down_seconds` counts: a load that came near
    the higher rung's capacity that recently can come back before a step down could be done."""
    state = memory(target="fp8-kv8", capacity={"fp8": 4.7, "fp8-kv8": 5.5})
    points = [
        LoadSample(time=NOW - ago, rate=peak if ago == peak_ago else 10.0)
        for ago in sorted({peak_ago, *range(60, 3600, 60)}, reverse=True)
    ]
    state = state.model_copy(update={"load": points[-64:]})
    obs = {"served": "fp8-kv8", "arrival_rate": 10.0, "cold_start_s": cold_start}
    d = decide_mode(qspec(), SLO, inputs(**obs), state, NOW)
    assert d.reason == reason, d.message
    if reason == STEADY:  # the message says why fp8, which carries the 10 req/s, waits
        window = 600 if cold_start is None else 1164
        assert d.message == (
            "serving fp8-kv8; no pressure; fp8 on 32 GPUs (4 replicas) would carry 10.0 req/s "
            f"arriving within stepUpHeadroom, but not {peak:.1f} req/s at the busiest minute "
            f"of the last {window}s"
        )


@pytest.mark.parametrize(
    ("arrival", "kv", "reason", "cut"),
    [
        # fp8-kv8 learned at 5.875 req/s per replica, fp8 not: fp8's prior is 5.875 / 1.25 =
        # 4.7 (18.8 on 4 replicas) where the fp8 KV cache does not bind...
        (10.0, {"kv_cache_usage": 0.5}, RELIEF_BUILDING, False),  # 53%
        (10.0, {"kv_binds": False}, RELIEF_BUILDING, False),  # the autoscaler learned so
        # ...and 5.875 / 2 = 2.94 (11.75 on 4) where it may bind: full, or not known
        (10.0, {"kv_cache_usage": 0.97}, STEADY, True),  # 85% of 11.75
        (10.0, {"kv_binds": True}, STEADY, True),
        (10.0, {}, STEADY, True),
        (8.0, {"kv_cache_usage": 0.97}, RELIEF_BUILDING, True),  # 68%
    ],
)
def test_step_up_to_a_rung_without_the_fp8_kv_cache_counts_the_most_it_added(
    arrival: float, kv: dict[str, Any], reason: str, cut: bool
) -> None:
    """A prior for a step up is taken on the safe side: without the fp8 KV cache, where it
    binds, a replica runs up to half the requests (twice the tokens fit in fp8)."""
    state = memory(target="fp8-kv8", capacity={"fp8-kv8": 5.875})
    obs = {"served": "fp8-kv8", "arrival_rate": arrival, **kv}
    d = decide_mode(qspec(), SLO, inputs(**obs), state, NOW)
    assert d.reason == reason, d.message
    if reason == RELIEF_BUILDING:
        carries = "~11.8 req/s (a prior from fp8-kv8" if cut else "~18.8 req/s;"
        assert f"fp8 on 32 GPUs (4 replicas) carries {carries}" in d.message, d.message


@pytest.mark.parametrize(
    ("ready", "arrival", "reason"),
    [
        # nothing learned: the Ready replicas carry at least what arrives; fp8 on 32 GPUs is
        # then >= 4 x (2/1) / 1.25 = 6.4 req/s, and 2 is <= 80% of it
        (1, 2.0, RELIEF_BUILDING),
        # 4 x (10/4) / 1.25 = 8 req/s: 10 arriving is more than 80% of that lower bound
        (4, 10.0, STEADY),
        (1, 0.0, RELIEF_BUILDING),  # nothing arriving
    ],
)
def test_relief_without_learned_capacity(ready: int, arrival: float, reason: str) -> None:
    state = memory(target="fp8-kv8", capacity={})
    obs = {"served": "fp8-kv8", "replicas": ready, "ready": ready, "arrival_rate": arrival}
    d = decide_mode(qspec(), SLO, inputs(**obs), state, NOW)
    assert d.reason == reason


@pytest.mark.parametrize(
    ("arrival", "target"),
    [
        (15.0, "fp8"),  # fp8 4.7 x 4 = 18.8 req/s; 15 is 80% of it: straight to the top
        (17.0, "fp8-kv8"),  # 90% of fp8's; fp8-kv8 prior 5.875 x 4 = 23.5 req/s, 72% of it
    ],
)
def test_step_up_counts_the_replicas_the_higher_rung_fits(arrival: float, target: str) -> None:
    """From int4 (8 replicas of 4 GPUs) the rungs above fit 4 replicas of 8 on the same GPUs;
    the policy goes to the highest that has headroom."""
    state = memory(target="fp8-kv8", relief_ago=700, capacity={"fp8": 4.7, "int4": 3.0})
    state = state.model_copy(update={"target": "int4"})
    obs = {"served": "int4", "replicas": 8, "ready": 8, "arrival_rate": arrival}
    d = decide_mode(qspec(), SLO, inputs(**obs), state, NOW)
    assert (d.reason, d.target) == (STEP_UP, target)
    carries = {"fp8": "~18.8 req/s", "fp8-kv8": "~23.5 req/s"}[target]
    assert f"{target} on 32 GPUs (4 replicas) carries {carries}" in d.message


# -- dwell time and switch cap -----------------------------------------------------------
@pytest.mark.parametrize(
    ("switches_ago", "reason"),
    [
        ((300.0,), DWELL_TIME),  # minDwellSeconds 900
        ((899.0,), DWELL_TIME),
        ((900.0,), STEP_DOWN),
        ((3500.0, 2600.0, 1800.0, 950.0), SWITCH_LIMIT),  # 4 in the last hour
        ((3700.0, 2600.0, 1800.0, 950.0), STEP_DOWN),  # the oldest left the hour
    ],
)
def test_dwell_time_and_switch_cap(switches_ago: tuple[float, ...], reason: str) -> None:
    state = memory(pressure_ago=75, switches_ago=switches_ago)
    d = decide_mode(qspec(), SLO, inputs(**BREACHED), state, NOW)
    assert d.reason == reason
    assert d.switched is (reason == STEP_DOWN)


def test_switch_history_is_bounded() -> None:
    state = memory(pressure_ago=75, switches_ago=tuple(4000.0 + i * 1000 for i in range(20)))
    d = decide_mode(qspec(), SLO, inputs(**BREACHED), state, NOW)
    assert d.switched and len(d.state.switches) == 20
    assert d.state.switches[-1].at == rfc3339(NOW)


# -- capacity per rung -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rung", "learned", "declared", "capacity"),
    [
        ("fp8", {"fp8": 4.0}, None, 4.0),  # learned
        ("fp8-kv8", {"fp8": 4.0}, None, 5.0),  # prior: x1.25 for the fp8 KV cache
        ("int4", {"fp8": 4.0}, None, 1.25),  # prior: 1.0/1.6 per GPU x 4/8 GPUs
        ("int4", {"fp8": 4.0}, 1.5, 6.0),  # declared capacityFactor (relative to fp8)
        ("int4", {"fp8": 4.0, "int4": 3.0}, 1.5, 3.0),  # learned wins
        ("fp8", {"fp8-kv8": 5.0}, None, 4.0),  # prior from another learned rung
        ("fp8", {}, None, None),  # nothing learned yet
        ("fp4", {"fp8": 4.0}, None, None),  # not on the ladder
    ],
)
def test_rung_capacity_learned_prior_declared(
    rung: str, learned: dict[str, float], declared: float | None, capacity: float | None
) -> None:
    ladder = [dict(r) for r in LADDER]
    if declared is not None:
        ladder[2]["capacityFactor"] = declared
    spec = QuantizationSpec.model_validate({"ladder": ladder})
    got = rung_capacity(spec, rung, learned, 8)
    assert got == (None if capacity is None else pytest.approx(capacity))


@pytest.mark.parametrize(
    ("rung", "gpus", "replicas"),
    [("fp8", 32, 4), ("int4", 32, 8), ("int4", 30, 7), ("fp8-kv8", 7, 0), ("fp8", 0, 0)],
)
def test_replicas_on_counts_whole_replicas_of_each_rung(
    rung: str, gpus: int, replicas: int
) -> None:
    assert replicas_on(qspec(), rung, gpus, 8) == replicas


def test_derived_priors_are_per_gpu() -> None:
    """int4 (1.0 per GPU, large batches) on 4 GPUs carries half of what fp8-kv8 (1.6 x 1.25)
    does per GPU: the priors alone never step from fp8-kv8 to int4; a declared factor or a
    learned value does."""
    state = memory(target="fp8-kv8", pressure_ago=75, capacity={"fp8": 4.7})
    obs = {**BREACHED, "served": "fp8-kv8"}
    d = decide_mode(qspec(), SLO, inputs(**obs), state, NOW)
    assert d.reason == STEP_DOWN_NO_GAIN
    assert "0.50x fp8-kv8: not worth a rollout" in d.message


def test_gpu_arithmetic_when_rungs_differ_in_gpus_per_replica() -> None:
    """32 H200s: 4 fp8 replicas or 8 int4; int4 is capped by maxReplicas."""
    state = memory(target="fp8-kv8", pressure_ago=75, capacity={"fp8": 4.0, "int4": 3.0})
    obs = {**BREACHED, "served": "fp8-kv8", "max_replicas": 6}
    d = decide_mode(qspec(), SLO, inputs(**obs), state, NOW)
    # int4 learned 3.0 req/s x min(8, maxReplicas 6) = 18 < fp8-kv8 5.0 x 4 = 20: no gain
    assert d.reason == STEP_DOWN_NO_GAIN
    assert "int4 on 32 GPUs (6 replicas) carries ~18.0 req/s" in d.message


@pytest.mark.parametrize(
    ("samples", "learned"), [((4.0,), 4.0), ((4.0, 5.0), 4.3), ((4.0, 5.0, 5.0), 4.51)]
)
def test_learn_rung_capacity_is_a_weighted_mean(samples: tuple[float, ...], learned: float) -> None:
    state: QuantizationStatus | None = None
    for x in samples:
        state = learn_rung_capacity(state, "fp8", x)
    assert state is not None
    assert state.capacity["fp8"] == pytest.approx(learned)


@pytest.mark.parametrize(
    ("automatic", "mode", "target", "want"),
    [
        (False, "fp8-kv8", "int4", "fp8-kv8"),  # the pin wins while automatic is off
        (False, None, "int4", "fp8"),  # no pin: the first rung
        (True, "fp8-kv8", "int4", "int4"),  # automatic: the policy's target, the pin ignored
        (True, "fp8-kv8", None, "fp8"),  # automatic before any decision: the first rung
        (True, None, "gone", "fp8"),  # a target no longer on the ladder: the first rung
    ],
)
def test_effective_mode(automatic: bool, mode: str | None, target: str | None, want: str) -> None:
    from deepseek_operator.quantization import effective_mode

    spec = QuantizationSpec.model_validate(
        {"ladder": LADDER, "mode": mode, "policy": {"automatic": automatic}}
    )
    state = QuantizationStatus(target=target) if target is not None else None
    assert effective_mode(spec, state) == want


def test_direction() -> None:
    from deepseek_operator.quantization import direction

    spec = qspec()
    assert direction(spec, "fp8", "int4") == "down"
    assert direction(spec, "int4", "fp8-kv8") == "up"
    assert direction(spec, "fp8", "fp8") == direction(spec, "fp8", "nope") == "none"
