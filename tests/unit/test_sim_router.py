"""The router: endpoints from EndpointSlices, least-outstanding balancing and failover between two
simulated replicas on loopback (real HTTP; the endpoints are set directly instead of through an
API server, which the e2e test covers)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testbed.ports import free_port
from testbed.sim.engine import EngineModel
from testbed.sim.faults import ReplicaFaults
from testbed.sim.presets import preset
from testbed.sim.replica import ReplicaServer
from testbed.sim.router import (
    Endpoint,
    Route,
    Router,
    choose_endpoint,
    local_cluster_address,
    match_route,
    parse_route,
    ready_endpoints,
)

KEY = "ns/engine"


def slice_(name: str, endpoints: list[dict[str, Any]], port: int = 8000) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def ep(ip: str, ready: bool | None = True, terminating: bool = False, pod: str = "") -> dict:
    cond: dict[str, Any] = {"terminating": terminating}
    if ready is not None:
        cond["ready"] = ready
    return {
        "addresses": [ip],
        "conditions": cond,
        "targetRef": {"kind": "Pod", "name": pod or f"pod-{ip}"},
        "nodeName": "n1",
        "zone": "us-east-a",
    }


def test_ready_endpoints_skip_unready_and_terminating_and_map_addresses():
    slices = [
        slice_("a", [ep("10.16.1.2"), ep("10.16.1.3", ready=False)]),
        slice_("b", [ep("10.16.2.2", terminating=True), ep("10.16.2.3", ready=None)]),
    ]
    got = ready_endpoints(slices, address_map=local_cluster_address)
    assert [(e.address, e.port, e.pod) for e in got] == [
        ("10.16.1.2", 8000, "pod-10.16.1.2"),
        ("10.16.2.3", 8000, "pod-10.16.2.3"),
    ]
    assert [e.url for e in got] == ["http://127.16.1.2:8000", "http://127.16.2.3:8000"]
    assert local_cluster_address("192.168.1.1") == "192.168.1.1"


def test_least_outstanding_choice():
    eps = [Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80), Endpoint("10.0.0.3", 80)]
    out = {"10.0.0.1:80": 3, "10.0.0.2:80": 1, "10.0.0.3:80": 2}
    assert choose_endpoint(eps, out).address == "10.0.0.2"
    assert choose_endpoint(eps, out, exclude=["10.0.0.2:80"]).address == "10.0.0.3"
    assert choose_endpoint(eps, out, exclude=[e.name for e in eps]) is None
    # ties are shared
    rng = random.Random(1)
    picks = {choose_endpoint(eps, {}, rng=rng).address for _ in range(50)}
    assert picks == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}


def test_routes():
    blue = parse_route("blue=ns/svc-blue")
    default = parse_route("ns/svc:metrics")
    assert blue == Route("ns", "svc-blue", "blue", "http")
    assert default.port_name == "metrics" and default.prefix == ""
    assert match_route([blue, default], "/blue/v1/models") == (blue, "/v1/models")
    assert match_route([blue, default], "/v1/models") == (default, "/v1/models")
    assert match_route([blue], "/v1/models") is None
    with pytest.raises(ValueError):
        parse_route("no-namespace")


async def replica(host: str, slow: float = 1.0) -> ReplicaServer:
    engine = EngineModel(preset("distill-7b-bf16-1xh100"), start_time=time.monotonic(), loaded=True)
    server = ReplicaServer(
        engine,
        host=host,
        port=0,
        served_names=["m"],
        max_model_len=4096,
        faults=ReplicaFaults(slow_factor=slow),
    )
    await server.start()
    return server


def to_endpoint(s: ReplicaServer) -> Endpoint:
    return Endpoint(s.host, s.port, pod=s.host)


def counter(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for f in text_string_to_metric_families(text):
        for s in f.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    r = Router([Route("ns", "engine")], host="127.0.0.1", port=0, seed=7)
    await r.start()
    yield r
    await r.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def stream(http: aiohttp.ClientSession, url: str, tokens: int) -> tuple[int, str]:
    body = {"model": "m", "prompt": [1] * 16, "max_tokens": tokens, "stream": True}
    async with http.post(url + "/v1/completions", json=body) as r:
        return r.status, (await r.read()).decode()


async def test_balances_by_outstanding_requests(router: Router, http: aiohttp.ClientSession):
    # slow replicas keep requests outstanding long enough to see the balancing
    a, b = await replica("127.0.0.41", slow=20), await replica("127.0.0.42", slow=20)
    try:
        router.set_endpoints(KEY, [to_endpoint(a), to_endpoint(b)])
        results = await asyncio.gather(*(stream(http, router.url, 8) for _ in range(8)))
        assert all(s == 200 and t.rstrip().endswith("data: [DONE]") for s, t in results)
        served = []
        for s in (a, b):
            async with http.get(s.url + "/metrics") as r:
                text = await r.text()
            served.append(counter(text, "vllm:request_success_total"))
        assert served == [4, 4]
        async with http.get(router.url + "/metrics") as r:
            text = await r.text()
        assert counter(text, "deepseek_router_requests_total", code="200") == 8
        assert counter(text, "deepseek_router_endpoints", route="ns/engine") == 2
    finally:
        await a.close()
        await b.close()


async def test_connection_refused_is_retried_on_another_endpoint(
    router: Router, http: aiohttp.ClientSession
):
    live = await replica("127.0.0.43")
    dead = Endpoint("127.0.0.44", free_port("127.0.0.44"), pod="gone")
    try:
        router.set_endpoints(KEY, [dead, to_endpoint(live)])
        results = [await stream(http, router.url, 2) for _ in range(6)]
        assert all(s == 200 for s, _ in results)
        async with http.get(router.url + "/router/metrics") as r:
            text = await r.text()
        refused = counter(text, "deepseek_router_upstream_requests_total", outcome="connect_error")
        assert refused >= 1
        assert counter(text, "deepseek_router_retries_total") == refused
    finally:
        await live.close()


async def test_endpoint_going_away(router: Router, http: aiohttp.ClientSession):
    a, b = await replica("127.0.0.45"), await replica("127.0.0.46")
    try:
        router.set_endpoints(KEY, [to_endpoint(a), to_endpoint(b)])
        assert all(s == 200 for s, _ in [await stream(http, router.url, 2) for _ in range(4)])
        # a drains and its endpoint is removed, as the EndpointSlice controller does
        router.set_endpoints(KEY, [to_endpoint(b)])
        await a.drain(timeout=5)
        results = [await stream(http, router.url, 2) for _ in range(4)]
        assert all(s == 200 for s, _ in results)
        router.set_endpoints(KEY, [])
        async with http.post(router.url + "/v1/completions", json={"prompt": "x"}) as r:
            assert r.status == 503
            assert "no healthy upstream" in (await r.json())["error"]["message"]
        status = router.status()
        assert status["routes"][0]["endpoints"] == []
    finally:
        await a.close()
        await b.close()


async def test_crash_mid_stream_breaks_the_client_stream(
    router: Router, http: aiohttp.ClientSession
):
    a = await replica("127.0.0.47", slow=50)
    try:
        router.set_endpoints(KEY, [to_endpoint(a)])
        body = {"model": "m", "prompt": [1] * 16, "max_tokens": 64, "stream": True}
        async with http.post(router.url + "/v1/completions", json=body) as r:
            assert r.status == 200
            line = await r.content.readline()
            assert json.loads(line[len(b"data: ") :])["object"] == "text_completion"
            await a.crash(xid=79)
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
    finally:
        await a.close()
