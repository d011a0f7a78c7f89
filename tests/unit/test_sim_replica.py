"""The simulated vLLM replica over real HTTP on loopback: the OpenAI API as vLLM serves it, and a
/metrics exposition whose names, types, label names and histogram buckets are those of a real
vLLM 0.32 (tests/fixtures/vllm-0.32/vllm-0.32-metrics.txt)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testbed.sim.engine import EngineModel
from testbed.sim.faults import ReplicaFaults
from testbed.sim.presets import preset
from testbed.sim.replica import BadRequest, ReplicaServer, request_priority

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "vllm-0.32" / "vllm-0.32-metrics.txt"
# The reference server ran a model named "tiny" with --max-model-len 256 (the token-count
# histograms' buckets depend on it).
MODEL = "tiny"
MAX_LEN = 256


def families(text: str) -> dict[str, tuple[str, set[tuple[str, frozenset[str]]], list[str]]]:
    """name -> (type, {(sample name, label names)}, histogram `le` values)."""
    out = {}
    for f in text_string_to_metric_families(text):
        if f.name.startswith(("python_", "process_")):
            continue  # the Python client's own collectors
        samples = {(s.name, frozenset(s.labels)) for s in f.samples}
        les = sorted({s.labels["le"] for s in f.samples if s.name.endswith("_bucket")}, key=float)
        out[f.name] = (f.type, samples, les)
    return out


def values(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for f in text_string_to_metric_families(text):
        for s in f.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(text: str, name: str, **labels: str) -> float:
    for (n, labs), v in values(text).items():
        if n == name and set(labels.items()) <= set(labs):
            return v
    raise KeyError(name)


async def make_replica(host: str = "127.0.0.21", **kw: Any) -> ReplicaServer:
    engine = EngineModel(preset("distill-7b-bf16-1xh100"), start_time=time.monotonic(), loaded=True)
    server = ReplicaServer(
        engine, host=host, port=0, served_names=[MODEL], max_model_len=MAX_LEN, **kw
    )
    await server.start()
    return server


@pytest.fixture
async def replica() -> AsyncIterator[ReplicaServer]:
    server = await make_replica()
    yield server
    await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_metrics_match_real_vllm(replica: ReplicaServer, http: aiohttp.ClientSession):
    body = {"model": MODEL, "prompt": [1, 2, 3, 4, 5], "max_tokens": 3}
    async with http.post(replica.url + "/v1/completions", json=body) as r:
        assert r.status == 200
    async with http.get(replica.url + "/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        ours = families(await r.text())
    ref = families(REFERENCE.read_text())
    vllm_ref = {n for n in ref if n.startswith("vllm:")}
    assert len(vllm_ref) > 30
    assert set(ours) == set(ref), (set(ref) - set(ours), set(ours) - set(ref))
    for name, (typ, samples, les) in ref.items():
        assert ours[name][0] == typ, name
        assert ours[name][1] == samples, name
        assert ours[name][2] == les, name


async def test_completions_count_tokens_and_requests(
    replica: ReplicaServer, http: aiohttp.ClientSession
):
    for n in (10, 20, 30):
        body = {"model": MODEL, "prompt": list(range(n)), "max_tokens": 4}
        async with http.post(replica.url + "/v1/completions", json=body) as r:
            assert r.status == 200
            data = await r.json()
        assert data["object"] == "text_completion"
        assert data["usage"] == {
            "prompt_tokens": n,
            "completion_tokens": 4,
            "total_tokens": n + 4,
            "prompt_tokens_details": None,
        }
        assert data["choices"][0]["finish_reason"] == "length"
    async with http.get(replica.url + "/metrics") as r:
        text = await r.text()
    lab = {"model_name": MODEL, "engine": "0"}
    assert sample(text, "vllm:request_success_total", finished_reason="length", **lab) == 3
    assert sample(text, "vllm:prompt_tokens_total", **lab) == 60
    assert sample(text, "vllm:generation_tokens_total", **lab) == 12
    assert sample(text, "vllm:time_to_first_token_seconds_count", **lab) == 3
    assert sample(text, "vllm:e2e_request_latency_seconds_count", **lab) == 3
    # 3 tokens after the first of each request
    assert sample(text, "vllm:inter_token_latency_seconds_count", **lab) == 9
    assert sample(text, "vllm:num_requests_running", **lab) == 0
    # tokens scheduled per engine step: the prompts (their step samples the first token),
    # then one token per decode step for the 3 remaining output tokens of each request
    assert sample(text, "vllm:iteration_tokens_total_count", **lab) >= 3
    assert sample(text, "vllm:iteration_tokens_total_sum", **lab) == 60 + 3 * 3
    assert (
        sample(text, "http_requests_total", handler="/v1/completions", method="POST", status="2xx")
        == 3
    )


async def test_chat_streaming_is_server_sent_events(
    replica: ReplicaServer, http: aiohttp.ClientSession
):
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "one two three four"}],
        "max_tokens": 5,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with http.post(replica.url + "/v1/chat/completions", json=body) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        raw = (await r.read()).decode()
    events = [e[len("data: ") :] for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert len(content) == 5 and all(content)
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}


async def test_completions_streaming(replica: ReplicaServer, http: aiohttp.ClientSession):
    body = {"model": MODEL, "prompt": "a b c", "max_tokens": 3, "stream": True}
    async with http.post(replica.url + "/v1/completions", json=body) as r:
        raw = (await r.read()).decode()
    events = [e[len("data: ") :] for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    texts = [json.loads(e)["choices"][0]["text"] for e in events[:-1]]
    assert len(texts) == 3


async def test_models_health_and_errors(replica: ReplicaServer, http: aiohttp.ClientSession):
    async with http.get(replica.url + "/v1/models") as r:
        data = await r.json()
    assert [m["id"] for m in data["data"]] == [MODEL]
    assert data["data"][0]["max_model_len"] == MAX_LEN
    async with http.get(replica.url + "/health") as r:
        assert r.status == 200
    too_long = {"model": MODEL, "prompt": list(range(250)), "max_tokens": 10}
    async with http.post(replica.url + "/v1/completions", json=too_long) as r:
        assert r.status == 400
        assert "maximum context length" in (await r.json())["error"]["message"]
    async with http.post(
        replica.url + "/v1/completions", json={"model": "other", "prompt": "x"}
    ) as r:
        assert r.status == 404
    async with http.get(replica.url + "/metrics") as r:
        text = await r.text()
    assert (
        sample(text, "http_requests_total", handler="/v1/completions", method="POST", status="4xx")
        == 2
    )


@pytest.mark.slow
async def test_drain_finishes_in_flight_then_refuses(http: aiohttp.ClientSession):
    server = await make_replica("127.0.0.22")
    server.apply_faults(ReplicaFaults(slow_factor=20.0))  # ~0.4 s for 16 tokens
    url = server.url
    body = {"model": MODEL, "prompt": [1] * 8, "max_tokens": 16, "stream": True}
    async with http.post(url + "/v1/completions", json=body) as r:
        assert r.status == 200
        first = await r.content.readline()
        assert first.startswith(b"data: ")
        aborted = await server.drain(timeout=30.0)
        rest = (await r.read()).decode()
    assert aborted == 0
    assert rest.rstrip().endswith("data: [DONE]")
    with pytest.raises(aiohttp.ClientConnectorError):
        async with http.get(url + "/health"):
            pass


async def test_drain_timeout_zero_aborts(http: aiohttp.ClientSession):
    server = await make_replica("127.0.0.23")
    server.apply_faults(ReplicaFaults(slow_factor=50.0))
    body = {"model": MODEL, "prompt": [1] * 8, "max_tokens": 64, "stream": True}
    async with http.post(server.url + "/v1/completions", json=body) as r:
        await r.content.readline()
        assert await server.drain(timeout=0.0) == 1
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()


@pytest.mark.parametrize(
    ("body", "header", "want"),
    [
        ({}, None, 0),
        ({"priority": 2}, None, 2),
        ({"priority": -1}, None, -1),
        ({"priority": 2}, "0", 0),  # vLLM 0.32: an integer X-Vllm-Priority header wins
        ({"priority": 2}, "high", 2),  # ... and one that is not an integer is ignored
        ({"priority": "high"}, None, None),  # 400, as vLLM's request model refuses it
        ({"priority": 1.5}, None, None),
    ],
)
def test_request_priority_read_as_vllm_does(
    body: dict[str, Any], header: str | None, want: int | None
) -> None:
    if want is None:
        with pytest.raises(BadRequest, match="priority"):
            request_priority(body, header)
    else:
        assert request_priority(body, header) == want


@pytest.mark.slow
async def test_priority_policy_serves_p0_before_earlier_p2(http: aiohttp.ClientSession):
    """One request at a time (max_num_seqs 1): while a P2 request runs, two more P2 requests and
    then a P0 request (by header) queue; with --scheduling-policy priority the P0 one is served
    next, the P2 ones after it in arrival order."""
    engine = EngineModel(
        preset("distill-7b-bf16-1xh100").with_(max_num_seqs=1),
        start_time=time.monotonic(),
        loaded=True,
        scheduling_policy="priority",
    )
    server = ReplicaServer(
        engine, host="127.0.0.24", port=0, served_names=[MODEL], max_model_len=MAX_LEN
    )
    await server.start()
    server.apply_faults(ReplicaFaults(slow_factor=20.0))  # ~25 ms a token
    done: list[str] = []

    async def send(name: str, priority: int, headers: dict[str, str] | None = None) -> None:
        body = {"model": MODEL, "prompt": [1] * 8, "max_tokens": 8, "priority": priority}
        async with http.post(server.url + "/v1/completions", json=body, headers=headers) as r:
            assert r.status == 200, await r.text()
            await r.read()
        done.append(name)

    async def queued(n: int) -> None:
        while engine.outstanding() < n:
            await asyncio.sleep(0.005)

    try:
        tasks = [asyncio.create_task(send("p2-running", 2))]
        await queued(1)
        for i, (name, prio, headers) in enumerate(
            [("p2-a", 2, None), ("p2-b", 2, None), ("p0", 2, {"X-Vllm-Priority": "0"})]
        ):
            tasks.append(asyncio.create_task(send(name, prio, headers)))
            await queued(i + 2)
        await asyncio.gather(*tasks)
    finally:
        await server.close()
    assert done == ["p2-running", "p0", "p2-a", "p2-b"]
