"""The quantization ladder's timing (deepseek_operator.quantization): the switch's own duration
(drains and cold starts), the forecast over it, and how far to step. R1-Distill-Llama-70B on
16 H100s: bf16 -> fp8 -> fp8-kv8, 4 GPUs per replica, at most 4 replicas."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from deepseek_operator.api.spec import QuantizationSpec, SloSpec
from deepseek_operator.api.status import LoadSample, QuantizationStatus
from deepseek_operator.quantization import (
    AWAITING_PAYBACK,
    PRESSURE_BUILDING,
    RELIEF_BUILDING,
    STEADY,
    STEP_DOWN,
    ModeInputs,
    decide_mode,
    drain_idle_seconds,
    drain_seconds,
    forecast_load,
    keeps_replicas,
    load_view,
    remember_load,
    rfc3339,
    switch_seconds,
)
from deepseek_operator.scaling import Demand, ScalingDecision
from deepseek_operator.signals import Signal

NOW = 1_800_000_000.0
SLO = SloSpec()
LADDER: list[dict[str, Any]] = [
    {"name": "bf16", "weights": "bf16"},
    {"name": "fp8", "weights": "fp8"},
    {"name": "fp8-kv8", "weights": "fp8", "kvCacheDtype": "fp8"},
]
SPEC = QuantizationSpec.model_validate({"ladder": LADDER, "policy": {"automatic": True}})


def inputs(**kw: Any) -> ModeInputs:
    """4 bf16 replicas on all 16 GPUs; a switch replaces them one by one, each a 280 s drain
    and a 120 s cold start: 1600 s."""
    base = ModeInputs(
        served="bf16",
        replicas=4,
        ready=4,
        max_replicas=4,
        wanted_replicas=4,
        scaling_limited=False,
        free_gpus=0,
        held_gpus=16,
        arrival_rate=2.5,
        ttft_p99=0.5,
        tpot_p99=0.05,
        cold_start_s=120.0,
        metrics_ok=True,
        transition_in_flight=False,
        default_gpus_per_replica=4,
        drain_s=280.0,
    )
    return replace(base, **kw)


def ramp(per_min: float, now_rate: float = 2.5, minutes: int = 30) -> list[LoadSample]:
    """A point a minute over the last `minutes`, rising `per_min` req/s a minute to now."""
    return [
        LoadSample(time=NOW - 60.0 * k, rate=round(max(0.0, now_rate - per_min * k), 4))
        for k in range(minutes, 0, -1)
    ]


def memory(
    served: str = "bf16",
    load: list[LoadSample] | None = None,
    pressure_ago: float | None = None,
    relief_ago: float | None = None,
    capacity: dict[str, float] | None = None,
) -> QuantizationStatus:
    return QuantizationStatus(
        automatic=True,
        served=served,
        target=served,
        pressure_since=None if pressure_ago is None else rfc3339(NOW - pressure_ago),
        relief_since=None if relief_ago is None else rfc3339(NOW - relief_ago),
        capacity={"bf16": 1.0} if capacity is None else capacity,
        load=load or [],
    )


# -- the switch's duration ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("running", "waiting", "finished", "ready", "seconds"),
    [
        (30.0, 10.0, 1.0, 4, 70.0),  # per replica: 2.5 waiting + 2 x 7.5 running, 0.25 req/s
        (30.0, 0.0, 1.0, 4, 60.0),  # nothing waiting: twice the mean request time (30 s)
        (30.0, None, 1.0, 4, 60.0),  # no queue signal: none counted
        (30.0, 10.0, 0.0, 4, None),  # nothing finishes: no estimate
        (None, 10.0, 1.0, 4, None),
        (30.0, 10.0, 1.0, 0, None),
    ],
)
def test_drain_is_the_queue_then_the_longest_running_requests(
    running: float | None,
    waiting: float | None,
    finished: float,
    ready: int,
    seconds: float | None,
) -> None:
    got = drain_seconds(running, waiting, finished, ready)
    assert got == (None if seconds is None else pytest.approx(seconds))


@pytest.mark.parametrize(
    ("running", "finished", "seconds"),
    [
        (30.0, 1.0, 30.0),  # a 30 s mean request time: a 60 s tail at half a batch
        (0.0, 1.0, 0.0),  # nothing running: nothing left unused
        (30.0, 0.0, None),  # nothing finishes: no estimate
        (None, 1.0, None),
    ],
)
def test_only_the_drains_tail_leaves_capacity_unused(
    running: float | None, finished: float, seconds: float | None
) -> None:
    """However long the queue a replica taken out works through, only its tail thins the batch."""
    got = drain_idle_seconds(running, finished)
    assert got == (None if seconds is None else pytest.approx(seconds))


@pytest.mark.parametrize(
    ("obs", "seconds"),
    [
        ({}, 1600.0),  # stepped: 4 x (280 + 120)
        # at maxReplicas 4, 8 free GPUs stand in for 2 replicas: they start first, then 2 steps
        ({"free_gpus": 8}, 920.0),
        # 3 of the 4 that fit: the 4th starts on the free GPUs, then all 3 are replaced
        ({"held_gpus": 12, "free_gpus": 4, "replicas": 3, "ready": 3}, 1320.0),
        ({"free_gpus": 16}, 120.0),  # a whole new colour fits: one cold start (blue-green)
        ({"drain_s": None}, 480.0),  # drain unknown: cold starts only
        ({"cold_start_s": None, "drain_s": None}, 0.0),
    ],
)
def test_a_switch_lasts_its_drains_and_cold_starts(obs: dict[str, Any], seconds: float) -> None:
    assert switch_seconds(SPEC, inputs(**obs)) == pytest.approx(seconds)


# -- the ladder's memory of the load and its forecast ------------------------------------
def test_the_load_is_remembered_a_point_a_minute_for_an_hour() -> None:
    state = QuantizationStatus(load=[LoadSample(time=NOW - 3700.0, rate=1.0)])
    state = remember_load(state, 2.0, NOW - 30.0)  # the old point is dropped
    assert [p.rate for p in state.load] == [2.0]
    assert remember_load(state, 3.0, NOW) == state  # 30 s later: not a new point yet
    assert [p.rate for p in remember_load(state, 3.0, NOW + 30.0).load] == [2.0, 3.0]
    assert remember_load(state, None, NOW + 60.0) == state


def test_no_load_point_is_taken_while_a_switch_runs() -> None:
    """Mid-switch, the rates describe half a fleet."""
    state = memory(load=ramp(0.08))
    d = decide_mode(SPEC, SLO, inputs(transition_in_flight=True, arrival_rate=0.4), state, NOW)
    assert d.state.load == state.load
    d = decide_mode(SPEC, SLO, inputs(arrival_rate=2.5), state, NOW)
    assert d.state.load[-1] == LoadSample(time=NOW, rate=2.5)


@pytest.mark.parametrize(
    ("load", "horizon", "ahead", "slope_per_min"),
    [
        (ramp(0.08), 1600.0, 2.5 + 0.08 * 1600 / 60, 0.08),  # a ramp goes on
        (ramp(0.0), 1600.0, 2.5, 0.0),  # flat
        (ramp(0.15, minutes=15), 1600.0, 5.0, 0.15),  # at most a doubling
        (ramp(0.08, minutes=10), 1600.0, 2.5, 0.0),  # 10 minutes do not cover half of 1600 s
        (ramp(0.08, minutes=10), 600.0, 2.5 + 0.08 * 10, 0.08),  # ... but half of 10 minutes
        ([], 1600.0, 2.5, 0.0),
    ],
)
def test_the_forecast_extends_the_trend_over_the_switch(
    load: list[LoadSample], horizon: float, ahead: float, slope_per_min: float
) -> None:
    d = forecast_load(inputs(), memory(load=load), NOW, horizon)
    assert d is not None
    assert d.ahead == pytest.approx(ahead, rel=1e-3)
    assert d.slope * 60 == pytest.approx(slope_per_min, abs=1e-6)
    assert d.until_ready == pytest.approx(max(2.5, ahead), rel=1e-3)


def test_the_periods_profile_wins_over_the_trend() -> None:
    seasonal = Demand(2.5, 2.5, 0.0, 0.0, 3.0, 1600.0, 6.0, seasonal=True)
    d = forecast_load(inputs(outlook=lambda h: seasonal), memory(load=ramp(0.08)), NOW, 1600.0)
    assert d == seasonal


def test_no_trend_where_the_autoscalers_trends_forecast_worse_than_the_flat_rate() -> None:
    # the autoscaler's memory says its trends missed by 3x as far as the rate held flat
    dropped = Demand(2.5, 2.5, 0.0, 0.0, 2.5, 1600.0, 2.5, dropped=(0.002, 9.0, 3.0))
    d = forecast_load(inputs(outlook=lambda h: dropped), memory(load=ramp(0.08)), NOW, 1600.0)
    assert d is not None
    assert (d.slope, d.ahead, d.until_ready) == (0.0, 2.5, 2.5)
    # a trend the autoscaler has no reason to doubt is extended as before
    kept = Demand(2.5, 2.5, 0.0, 0.002, 5.7, 1600.0, 5.7)
    d = forecast_load(inputs(outlook=lambda h: kept), memory(load=ramp(0.08)), NOW, 1600.0)
    assert d is not None and d.ahead == pytest.approx(2.5 + 0.08 * 1600 / 60, rel=1e-3)


# -- stepping down before the overload ---------------------------------------------------
@pytest.mark.parametrize(
    ("obs", "load", "pressure_ago", "reason", "target"),
    [
        # 4 bf16 replicas carry 4.0 req/s; 2.5 arriving, rising 0.08/min -> 4.6 within the
        # 1600 s a switch takes: no breach yet, but the switch must start now
        ({}, ramp(0.08), 75.0, STEP_DOWN, "fp8-kv8"),
        ({}, ramp(0.08), None, PRESSURE_BUILDING, "bf16"),  # stepDownAfterSeconds first
        # 2 of the 4 replicas: more can come, but 4 cannot carry the forecast either
        ({"replicas": 2, "ready": 2, "wanted_replicas": 3}, ramp(0.08), 75.0, STEP_DOWN, "fp8-kv8"),
        ({}, ramp(0.0), None, STEADY, "bf16"),  # flat at 2.5: nothing to do
        ({}, ramp(0.03), None, STEADY, "bf16"),  # 3.3 within 1600 s: bf16 carries it
        ({}, ramp(0.06), None, PRESSURE_BUILDING, "bf16"),  # 4.1 within 1600 s
        # a faster switch (8 free GPUs stand in for 2 replicas: 920 s) sees less of it: 3.4
        ({"free_gpus": 8}, ramp(0.06), None, STEADY, "bf16"),
    ],
)
def test_a_rising_forecast_steps_down_before_the_slo_breaks(
    obs: dict[str, Any],
    load: list[LoadSample],
    pressure_ago: float | None,
    reason: str,
    target: str,
) -> None:
    d = decide_mode(SPEC, SLO, inputs(**obs), memory(load=load, pressure_ago=pressure_ago), NOW)
    assert (d.reason, d.target) == (reason, target), d.message
    if reason == STEP_DOWN:
        assert "req/s forecast within" in d.message and "trend +0.08 req/s per min" in d.message


def test_a_rising_load_goes_to_the_rung_that_carries_most() -> None:
    """How far a rising load goes is the least certain number: fp8 alone (6.4 req/s) would
    carry the 4.6 forecast, but a shortfall costs a second stepped switch under a deeper
    overload, so the policy goes to fp8-kv8 (8.0) and climbs back when relief lasts."""
    d = decide_mode(SPEC, SLO, inputs(), memory(load=ramp(0.08), pressure_ago=75.0), NOW)
    assert d.target == "fp8-kv8"
    assert "fp8-kv8 on 16 GPUs (4 replicas) carries ~8.0 req/s" in d.message


@pytest.mark.parametrize(
    ("arrival", "kv_binds", "kv_usage", "target"),
    [
        (5.0, None, None, "fp8"),  # fp8 carries 6.4: 5.0 is 78% of it (<= stepUpHeadroom 80%)
        (5.5, None, None, "fp8-kv8"),  # 86% of fp8's; fp8-kv8's 8.0 has the headroom
        # the learned bf16 capacity is set by the decode step: the fp8 KV cache adds nothing,
        # fp8-kv8 carries what fp8 does, and fp8 is the one that carries 5.5 at all
        (5.5, False, 0.99, "fp8"),
        (5.5, True, 0.5, "fp8-kv8"),  # set by the KV cache: its credit counts, usage aside
        (5.5, None, 0.5, "fp8"),  # not learned yet: the usage says the cache does not bind
    ],
)
def test_a_flat_overload_goes_to_the_highest_rung_with_headroom(
    arrival: float, kv_binds: bool | None, kv_usage: float | None, target: str
) -> None:
    obs = {"arrival_rate": arrival, "ttft_p99": 4.0, "kv_binds": kv_binds}
    d = decide_mode(
        SPEC, SLO, inputs(**obs, kv_cache_usage=kv_usage), memory(pressure_ago=3600.0), NOW
    )
    assert (d.reason, d.target) == (STEP_DOWN, target), d.message


@pytest.mark.parametrize(
    ("pressure_ago", "reason"),
    [
        # fp8 gain 1.6 on 4 replicas: 4 x (280 + 120) / (4 x 0.6) = 667 s of pressure
        (660.0, AWAITING_PAYBACK),
        (670.0, STEP_DOWN),
    ],
)
def test_payback_counts_the_drain(pressure_ago: float, reason: str) -> None:
    obs = {"arrival_rate": 5.0, "ttft_p99": 4.0}
    d = decide_mode(SPEC, SLO, inputs(**obs), memory(pressure_ago=pressure_ago), NOW)
    assert d.reason == reason, d.message
    if reason == AWAITING_PAYBACK:
        assert "a ~280s drain and a ~120s cold start each" in d.message


@pytest.mark.parametrize(
    ("pressure_ago", "reason"),
    [
        # 280 s drain, of which 40 s unused: 4 x (40 + 120) / (4 x 0.6) = 267 s of pressure
        (260.0, AWAITING_PAYBACK),
        (270.0, STEP_DOWN),
    ],
)
def test_payback_counts_only_the_capacity_a_drain_leaves_unused(
    pressure_ago: float, reason: str
) -> None:
    """A drain through a queue serves as much as the replica did in service: the switch costs
    its cold starts and the drains' tails, and pays back sooner than counting whole drains."""
    obs = {"arrival_rate": 5.0, "ttft_p99": 4.0, "drain_idle_s": 40.0}
    d = decide_mode(SPEC, SLO, inputs(**obs), memory(pressure_ago=pressure_ago), NOW)
    assert d.reason == reason, d.message
    if reason == AWAITING_PAYBACK:
        assert "a ~280s drain (~40s of it a thinning batch) and a ~120s cold start" in d.message


def test_a_forecast_that_ends_before_the_switch_does_still_waits_for_payback() -> None:
    """The profile peaks within the switch's duration and is back below bf16's capacity when
    it would be done: the switch must pay for itself as under any pressure."""
    peak = Demand(2.5, 2.5, 0.0, 0.0, 3.0, 1600.0, 6.0, seasonal=True)
    d = decide_mode(SPEC, SLO, inputs(outlook=lambda h: peak), memory(pressure_ago=75.0), NOW)
    assert d.reason == AWAITING_PAYBACK, d.message


# -- stepping up --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("load", "reason", "target"),
    [
        (ramp(0.0, now_rate=2.0), RELIEF_BUILDING, "bf16"),  # 2.0 is 50% of bf16's 4.0
        # 2.0 now but 4.1 within the switch: bf16 would not carry it; fp8 (6.4) would
        (ramp(0.08, now_rate=2.0), RELIEF_BUILDING, "fp8"),
    ],
)
def test_step_up_reads_the_forecast_over_the_switch(
    load: list[LoadSample], reason: str, target: str
) -> None:
    state = memory(served="fp8-kv8", load=load)
    d = decide_mode(SPEC, SLO, inputs(served="fp8-kv8", arrival_rate=2.0), state, NOW)
    assert d.reason == reason
    assert d.message.startswith(f"{target} on 16 GPUs (4 replicas)"), d.message


# -- what the adapters feed in -----------------------------------------------------------
def test_load_view_reads_the_autoscalers_demand_and_forecast() -> None:
    values = {Signal.REQUEST_RATE: 1.0, Signal.RUNNING: 30.0, Signal.QUEUE_DEPTH: 10.0}
    alone = load_view(None, values, 4, NOW)
    assert (alone.arrival_rate, alone.drain_s, alone.outlook) == (1.0, pytest.approx(70.0), None)
    assert alone.drain_idle_s == pytest.approx(30.0)  # 2 x 30 s mean request time, half used
    demand = Demand(1.4, 1.0, 0.4, 0.0, 1.4, 300.0, 1.4)
    d = ScalingDecision(4, "hold", "WithinTarget", "", demand=demand)
    view = load_view(d, values, 4, NOW)
    assert view.arrival_rate == 1.4  # finished plus the backlog's growth
    assert view.outlook is not None and view.outlook(1600.0).horizon == 1600.0


def test_an_overload_with_nothing_learned_goes_to_the_rung_that_carries_most() -> None:
    """Overloaded from the start, no steady sample was ever taken: how far the load is above
    what bf16 carries is unknown, and fp8-kv8 (2.0x by its factors) is the safe side of it."""
    state = memory(pressure_ago=3600.0, capacity={})
    d = decide_mode(SPEC, SLO, inputs(arrival_rate=5.0, ttft_p99=60.0), state, NOW)
    assert (d.reason, d.target) == (STEP_DOWN, "fp8-kv8"), d.message
    assert "carries ~2.00x" in d.message


# -- no scale-down below the top rung ----------------------------------------------------
@pytest.mark.parametrize(
    ("automatic", "served", "keeps"),
    [(True, "fp8-kv8", True), (True, "fp8", True), (True, "bf16", False), (False, "fp8", False)],
)
def test_replicas_stay_while_the_policy_serves_below_the_top_rung(
    automatic: bool, served: str, keeps: bool
) -> None:
    """A lighter rung is used when more replicas cannot come, never instead of them: capacity
    goes back by stepping up, not by scaling down (a user's pin is not the policy's)."""
    spec = QuantizationSpec.model_validate({"ladder": LADDER, "policy": {"automatic": automatic}})
    kept = keeps_replicas(spec, served, QuantizationStatus(replicas=4))
    assert (kept is not None) == keeps
    if kept is not None:
        assert kept[0] == 4 and f"serves {served}, below bf16" in kept[1]


def test_a_step_down_records_the_replicas_it_counted_on() -> None:
    """3 bf16 replicas run and 4 GPUs are free: fp8 is counted on 4 replicas, and the
    autoscaler is told to keep them."""
    obs = {"replicas": 3, "ready": 3, "held_gpus": 12, "free_gpus": 4, "wanted_replicas": 6}
    obs |= {"arrival_rate": 5.0, "ttft_p99": 4.0}
    d = decide_mode(SPEC, SLO, inputs(**obs), memory(pressure_ago=3600.0), NOW)
    assert (d.reason, d.target, d.state.replicas) == (STEP_DOWN, "fp8", 4), d.message
    kept = keeps_replicas(SPEC, "fp8", d.state)
    assert kept is not None and kept[0] == 4
    # from the switch on, while bf16 still serves: the transition then moves all 4
    kept = keeps_replicas(SPEC, "bf16", d.state)
    assert kept is not None and kept[0] == 4 and "switches to fp8, below bf16" in kept[1]
