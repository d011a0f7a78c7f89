"""The load generator against a simulated replica over real HTTP: per-request records and the
JSON summary (counts, TTFT/TPOT/latency percentiles), failures, trace replay with attribution."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from testbed.sim import traces
from testbed.sim.__main__ import main as cli
from testbed.sim.engine import EngineModel
from testbed.sim.faults import ReplicaFaults
from testbed.sim.loadgen import (
    LoadGenerator,
    LoadRequest,
    RequestRecord,
    constant_rate,
    percentile,
    summarize,
)
from testbed.sim.presets import preset
from testbed.sim.replica import ReplicaServer

AZURE_CSV = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:51.0000000,12,3
"""


async def _replica(host: str) -> ReplicaServer:
    engine = EngineModel(preset("distill-7b-bf16-1xh100"), start_time=time.monotonic(), loaded=True)
    server = ReplicaServer(engine, host=host, port=0, served_names=["m"], max_model_len=8192)
    await server.start()
    return server


def test_percentile_and_summary():
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    recs = [
        RequestRecord("a", 0, 0, 10, 5, 200, True, "", 0.1, 0.01, 0.2, 5),
        RequestRecord("b", 0, 0, 10, 5, 200, True, "", 0.3, 0.03, 0.4, 5),
        RequestRecord("c", 0, 0, 10, 5, 500, False, "http_500: boom", None, None, 0.01, 0),
    ]
    s = summarize("http://x", recs, planned=4, duration_s=2.0, trace="t", attribution="CC BY")
    assert (s.planned, s.sent, s.ok, s.failed, s.not_sent) == (4, 3, 2, 1, 1)
    assert s.by_status == {"200": 2, "500": 1}
    assert s.errors == {"http_500": 1}
    assert s.ttft_s["p50"] == pytest.approx(0.2)
    assert s.output_tokens == 10 and s.requests_per_s == 1.0
    d = json.loads(s.to_json())
    assert d["attribution"] == "CC BY" and d["e2e_s"]["p99"] == pytest.approx(0.398)


async def test_replay_records_every_request():
    server = await _replica("127.0.0.71")
    try:
        gen = LoadGenerator(server.url, speedup=10.0)
        reqs = constant_rate(rate=20.0, count=12, prompt_tokens=64, max_tokens=8)
        result = await gen.run(reqs, trace="constant")
    finally:
        await server.close()
    s = result.summary
    assert (s.planned, s.sent, s.ok, s.failed) == (12, 12, 12, 0)
    assert s.output_tokens == 12 * 8 and s.prompt_tokens == 12 * 64
    for r in result.records:
        assert r.ok and r.status == 200 and r.output_tokens == 8
        assert r.ttft is not None and r.tpot is not None and r.e2e is not None
        assert 0 < r.ttft <= r.e2e
    # sent on the trace's schedule, compressed 10x: 12 requests at 20/s -> 0.055 s
    assert result.records[-1].scheduled == pytest.approx(11 / 20 / 10)
    for k in ("p50", "p99"):
        assert s.ttft_s[k] is not None and s.tpot_s[k] is not None and s.e2e_s[k] is not None


async def test_failures_are_counted(tmp_path: Path):
    server = await _replica("127.0.0.72")
    server.apply_faults(ReplicaFaults(error_rate=1.0))
    try:
        result = await LoadGenerator(server.url, model="m").run(
            [LoadRequest(f"r{i}", 8, 4, 0.0) for i in range(3)]
        )
        result.write(tmp_path / "s.json", tmp_path / "r.jsonl")
    finally:
        await server.close()
    s = json.loads((tmp_path / "s.json").read_text())
    assert (s["ok"], s["failed"], s["by_status"]) == (0, 3, {"500": 3})
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert [json.loads(x)["status"] for x in lines] == [500, 500, 500]


async def test_broken_stream_is_a_failure():
    server = await _replica("127.0.0.73")
    server.apply_faults(ReplicaFaults(slow_factor=50.0))
    gen = LoadGenerator(server.url, model="m")
    task = asyncio.create_task(gen.run([LoadRequest("r", 8, 200, 0.0)]))
    while server.in_flight == 0:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    await server.crash()
    result = await task
    rec = result.records[0]
    assert rec.status == 200 and not rec.ok
    assert result.summary.failed == 1


def test_cli_replays_an_azure_trace_and_keeps_its_attribution(tmp_path: Path):
    csv = tmp_path / "azure.csv"
    csv.write_text(AZURE_CSV)
    tr = traces.load_azure_trace(csv)
    assert [r.prompt_tokens for r in tr.requests] == [374, 396, 12]
    assert "CC BY 4.0" in tr.attribution
    ready = threading.Event()
    stop = threading.Event()
    url: list[str] = []

    def serve() -> None:
        async def run() -> None:
            server = await _replica("127.0.0.74")
            url.append(server.url)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            await server.close()

        asyncio.run(run())

    t = threading.Thread(target=serve)
    t.start()
    try:
        assert ready.wait(10)
        summary = tmp_path / "summary.json"
        rc = cli(
            [
                "load",
                "--url",
                url[0],
                "--trace",
                "azure",
                "--trace-file",
                str(csv),
                "--speedup",
                "50",
                "--max-output-tokens",
                "16",
                "--summary",
                str(summary),
            ]
        )
    finally:
        stop.set()
        t.join()
    assert rc == 0
    s = json.loads(summary.read_text())
    assert (s["ok"], s["failed"]) == (3, 0)
    assert s["output_tokens"] == 16 + 16 + 3
    assert "Splitwise" in s["attribution"]


def test_synthetic_patterns_for_the_cli():
    from testbed.sim.__main__ import build_trace, parser

    args = parser().parse_args(
        ["load", "--url", "x", "--trace", "step", "--rate", "2", "--duration", "100"]
    )
    tr = build_trace(args)
    # 2/s for the first third, 8/s (burst factor 4) for the second, 2/s again
    low = sum(1 for r in tr.requests if r.arrival < 33)
    high = sum(1 for r in tr.requests if 34 <= r.arrival < 66)
    assert high > 2.5 * low
    args = parser().parse_args(["load", "--url", "x", "--trace", "bursty", "--duration", "60"])
    assert len(build_trace(args)) > 0
