"""The admission-gate overhead benchmark (bench/gate.py): its arithmetic by table, and one short
real run (engine, gate and clients as processes) that must deliver every event both ways."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import gate as G


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([], 0.5, math.nan), ([1.0], 0.99, 1.0), ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),
     ([float(i) for i in range(1, 101)], 0.99, 99.0)],
)  # fmt: skip
def test_percentile_is_the_nearest_rank(values: list[float], q: float, expected: float) -> None:
    got = G.percentile(values, q)
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


def test_an_event_is_a_stamped_server_sent_event_of_a_chunks_size() -> None:
    ev = G.event(7)
    assert ev.startswith(b"data: {") and ev.endswith(b"\n\n")
    assert abs(len(ev) - G.EVENT_BYTES) <= 8
    assert json.loads(ev[len(b"data: ") :])["i"] == 7
    assert G.events_per_stream(40, 1.0) == 40 and G.events_per_stream(40, 0.001) == 1


def test_a_short_run_delivers_every_event_directly_and_through_the_gate(tmp_path: Path) -> None:
    cases = G.run([4], rate=40.0, seconds=0.5)
    for setup in ("direct", "gate"):
        r = cases["4"][setup]
        assert r["streams_served"] == 4 and r["delivered_share"] == 1.0, r
        assert 0 <= r["latency_p50_ms"] <= r["latency_p99_ms"] <= r["latency_max_ms"]
    assert cases["4"]["gate"]["gate_cpu_s_per_s"] >= 0
    setup = {"rate": 40.0, "seconds": 0.5, "event_bytes": G.EVENT_BYTES, "cpus": 2}
    doc = {"generated": "now", "runtime_s": 1, "command": "c", "cases": cases, "setup": setup}
    assert "| 4 | 160 | gate | 1.000 |" in G.report_md(doc)
    G.plot(doc, tmp_path / "gate.png")
    assert (tmp_path / "gate.png").stat().st_size > 1000
