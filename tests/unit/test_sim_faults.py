"""Fault hooks: the annotation/JSON forms of a fault, and what a faulty replica does to its
clients over real HTTP (slow, erroring, crash)."""

from __future__ import annotations

import time

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testbed.sim.engine import EngineModel
from testbed.sim.faults import (
    ERROR_RATE_ANNOTATION,
    FAULT_ANNOTATION,
    HEALTHY,
    SLOW_FACTOR_ANNOTATION,
    XID_ANNOTATION,
    ZONE_DOWN_ANNOTATION,
    FaultRequest,
    PodSelector,
    ReplicaFaults,
    annotations_for,
    crash_xid,
    faults_from_annotations,
    parse_fault_request,
    zone_down_node_patch,
)
from testbed.sim.fleet import Action, PodView, ReplicaPhase, decide, engine_ready_wanted
from testbed.sim.presets import preset
from testbed.sim.replica import ReplicaServer


@pytest.mark.parametrize(
    ("annotations", "want"),
    [
        ({}, HEALTHY),
        ({FAULT_ANNOTATION: "none"}, HEALTHY),
        ({FAULT_ANNOTATION: "slow"}, ReplicaFaults(slow_factor=10.0)),
        (
            {FAULT_ANNOTATION: "slow", SLOW_FACTOR_ANNOTATION: "3.5"},
            ReplicaFaults(slow_factor=3.5),
        ),
        ({FAULT_ANNOTATION: "error"}, ReplicaFaults(error_rate=1.0)),
        (
            {FAULT_ANNOTATION: "error", ERROR_RATE_ANNOTATION: "0.25"},
            ReplicaFaults(error_rate=0.25),
        ),
        ({FAULT_ANNOTATION: "crash"}, ReplicaFaults(crashed=True)),
        (
            {FAULT_ANNOTATION: " Slow , error", ERROR_RATE_ANNOTATION: "7"},
            ReplicaFaults(slow_factor=10.0, error_rate=1.0),
        ),
        # a typo does not crash anything
        ({FAULT_ANNOTATION: "slwo", SLOW_FACTOR_ANNOTATION: "abc"}, HEALTHY),
        ({SLOW_FACTOR_ANNOTATION: "5"}, HEALTHY),
    ],
)
def test_faults_from_annotations(annotations: dict[str, str], want: ReplicaFaults):
    assert faults_from_annotations(annotations) == want


@pytest.mark.parametrize(
    "faults",
    [
        HEALTHY,
        ReplicaFaults(slow_factor=4.0),
        ReplicaFaults(error_rate=0.5),
        ReplicaFaults(crashed=True),
        ReplicaFaults(slow_factor=2.0, error_rate=0.1, crashed=True),
    ],
)
def test_annotations_round_trip(faults: ReplicaFaults):
    patch = annotations_for(faults)
    present = {k: v for k, v in patch.items() if v is not None}
    assert faults_from_annotations(present) == faults
    if faults.healthy:
        assert patch[FAULT_ANNOTATION] is None  # the merge patch removes the annotation


def test_crash_xid():
    assert crash_xid({}) == 79
    assert crash_xid({XID_ANNOTATION: "48"}) == 48


def test_fault_requests():
    req = parse_fault_request(
        {"namespace": "ns", "selector": "a=b, c=d", "slowFactor": 4, "zone": "z1"}
    )
    assert req.selector == PodSelector("ns", None, {"a": "b", "c": "d"}, None, "z1")
    assert req.apply(ReplicaFaults(error_rate=0.5)) == ReplicaFaults(4.0, 0.5)
    cleared = parse_fault_request({"pod": "p", "clear": True, "errorRate": 0.1})
    assert cleared.apply(ReplicaFaults(4.0, 0.5, True)) == ReplicaFaults(error_rate=0.1)
    for bad in (
        {},
        {"slowFactor": 0.5},
        {"errorRate": 2},
        {"crash": "yes"},
        {"selector": "novalue", "crash": True},
    ):
        with pytest.raises(ValueError):
            parse_fault_request(bad)
    sel = PodSelector(labels={"app": "x"}, zone="z1")
    assert sel.matches("ns", "p", {"app": "x", "more": "y"}, "n1", "z1")
    assert not sel.matches("ns", "p", {"app": "x"}, "n1", "z2")
    assert not sel.matches("ns", "p", {}, "n1", "z1")
    assert FaultRequest(PodSelector(), crash=True).apply(HEALTHY).crashed


def test_zone_down_node_patch():
    node = {"spec": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]}}
    down = zone_down_node_patch(node, True)
    assert down["spec"]["unschedulable"] is True
    assert down["metadata"]["annotations"][ZONE_DOWN_ANNOTATION] == "true"
    assert [t["key"] for t in down["spec"]["taints"]] == ["nvidia.com/gpu", ZONE_DOWN_ANNOTATION]
    node["spec"]["taints"] = down["spec"]["taints"]
    up = zone_down_node_patch(node, False)
    assert up["spec"] == {"unschedulable": None, "taints": [node["spec"]["taints"][0]]}
    assert up["metadata"]["annotations"][ZONE_DOWN_ANNOTATION] is None


@pytest.mark.parametrize(
    ("view", "phase", "crash", "want"),
    [
        (PodView(), None, False, Action.START),
        (PodView(), ReplicaPhase.SERVING, False, Action.NONE),
        (PodView(), ReplicaPhase.SERVING, True, Action.CRASH),
        (PodView(), ReplicaPhase.CRASHED, True, Action.NONE),
        (PodView(), ReplicaPhase.CRASHED, False, Action.RECOVER),
        (PodView(node_down=True), ReplicaPhase.LOADING, False, Action.CRASH),
        (PodView(terminating=True), ReplicaPhase.SERVING, False, Action.DRAIN),
        (PodView(terminating=True), ReplicaPhase.DRAINING, False, Action.NONE),
        (PodView(terminating=True), ReplicaPhase.CRASHED, False, Action.STOP),
        (PodView(terminating=True), None, False, Action.MARK_DRAINED),
        (PodView(terminating=True, drained_marked=True), None, False, Action.NONE),
        (PodView(exists=False), ReplicaPhase.SERVING, False, Action.STOP),
        (PodView(exists=False), None, False, Action.NONE),
        (PodView(has_ip=False), None, False, Action.NONE),
    ],
)
def test_fleet_decisions(view: PodView, phase: ReplicaPhase | None, crash: bool, want: Action):
    assert decide(view, phase, (), crash) == want


def test_fleet_restarts_a_replica_whose_pod_changed():
    old = ("uid-1", "10.16.1.2", "node-1")
    assert decide(
        PodView(identity=("uid-2", "10.16.1.2", "node-1")), ReplicaPhase.SERVING, old
    ) == (Action.RESTART)


# A crashed replica makes its pod not Ready, as a real crashed vLLM fails its readiness probe,
# whatever the annotation says now: one left by a load that finished as the crash landed, or by
# the previous fleet process (no replica at all).
@pytest.mark.parametrize(
    ("view", "phase", "want"),
    [
        (PodView(), ReplicaPhase.SERVING, True),
        (PodView(), ReplicaPhase.CRASHED, False),
        (PodView(), ReplicaPhase.LOADING, False),
        (PodView(), ReplicaPhase.FAILED, False),
        (PodView(), ReplicaPhase.STOPPED, False),
        (PodView(), None, False),
        (PodView(node_down=True), ReplicaPhase.CRASHED, False),
        # terminating: kwok takes it out of service; not the fleet's to say
        (PodView(terminating=True), ReplicaPhase.DRAINING, None),
        (PodView(terminating=True), ReplicaPhase.SERVING, None),
        # pods the fleet does not play
        (PodView(engine=False), None, None),
        (PodView(has_ip=False), None, None),
        (PodView(exists=False), None, None),
    ],
)
def test_engine_ready_follows_the_replica(
    view: PodView, phase: ReplicaPhase | None, want: bool | None
) -> None:
    assert engine_ready_wanted(view, phase) is want


def _success(text: str, reason: str) -> float:
    for f in text_string_to_metric_families(text):
        for s in f.samples:
            if s.name == "vllm:request_success_total" and s.labels["finished_reason"] == reason:
                return s.value
    return 0.0


def _e2e_sum(text: str) -> float:
    for f in text_string_to_metric_families(text):
        for s in f.samples:
            if s.name == "vllm:e2e_request_latency_seconds_sum":
                return s.value
    raise KeyError


async def _replica(host: str) -> ReplicaServer:
    engine = EngineModel(preset("distill-7b-bf16-1xh100"), start_time=time.monotonic(), loaded=True)
    server = ReplicaServer(engine, host=host, port=0, served_names=["m"], max_model_len=4096)
    await server.start()
    return server


async def test_erroring_replica_answers_500():
    server = await _replica("127.0.0.61")
    body = {"model": "m", "prompt": [1] * 8, "max_tokens": 4}
    try:
        async with aiohttp.ClientSession() as http:
            server.apply_faults(ReplicaFaults(error_rate=1.0))
            for _ in range(3):
                async with http.post(server.url + "/v1/completions", json=body) as r:
                    assert r.status == 500
                    assert (await r.json())["error"]["code"] == 500
            stream = {**body, "stream": True}
            async with http.post(server.url + "/v1/completions", json=stream) as r:
                assert r.status == 500
            server.apply_faults(HEALTHY)
            async with http.post(server.url + "/v1/completions", json=body) as r:
                assert r.status == 200
            async with http.get(server.url + "/metrics") as r:
                text = await r.text()
        assert _success(text, "error") == 4
        assert _success(text, "length") == 1
        assert 'http_requests_total{handler="/v1/completions",method="POST",status="5xx"} 4.0' in (
            text
        )
    finally:
        await server.close()


async def test_slow_replica_takes_longer_per_request():
    fast, slow = await _replica("127.0.0.62"), await _replica("127.0.0.63")
    slow.apply_faults(ReplicaFaults(slow_factor=10.0))
    body = {"model": "m", "prompt": [1] * 64, "max_tokens": 8}
    try:
        async with aiohttp.ClientSession() as http:
            sums = []
            for s in (fast, slow):
                async with http.post(s.url + "/v1/completions", json=body) as r:
                    assert r.status == 200
                async with http.get(s.url + "/metrics") as r:
                    sums.append(_e2e_sum(await r.text()))
        # the engine model's own request timing (vllm:e2e_request_latency_seconds)
        assert sums[1] > 5 * sums[0]
    finally:
        await fast.close()
        await slow.close()


async def test_crash_drops_connections_and_reports_xid():
    server = await _replica("127.0.0.64")
    server.apply_faults(ReplicaFaults(slow_factor=50.0))
    url = server.url
    body = {"model": "m", "prompt": [1] * 8, "max_tokens": 64, "stream": True}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + "/v1/completions", json=body) as r,
    ):
        await r.content.readline()
        await server.crash(xid=79)
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectorError):
            async with http.get(url + "/health"):
                pass
    assert server.engine.gpu_stats()[0].xid_errors == 79
