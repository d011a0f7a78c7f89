"""Admission-gate overhead benchmark (`make bench-gate`): what the engine pod's gate
(`spec.engine.admission`, serving/deepseek_serving/admission.py) costs the streams it relays, in
real time on this machine.

    python -m bench.gate [--streams 64,256,512] [--rate 40] [--seconds 10] [--out bench/results]

The gate is Python threads relaying every server-sent event of every stream, so the question
a user with a busy pod asks is how many events per second it carries and how late it hands
them on. Three processes, each its own interpreter:

- engine: an asyncio HTTP server standing in for vLLM's OpenAI server: every POST answers
  text/event-stream, one event of about EVENT_BYTES (a vLLM completion chunk's size) every
  1/rate seconds for `seconds`, each stamped with its send time;
- gate: the product's AdmissionServer and Gate (limit above the streams: none waits) in front of
  the engine, as the entrypoint runs it;
- clients: an asyncio process that opens N streams at once, straight to the engine (`direct`)
  or through the gate (`gate`), and times each event from its stamp to its arrival
  (CLOCK_MONOTONIC: one clock for the machine).

For each N: events per second delivered against those offered (N x rate), the event latency
p50 / p99 / max (engine send -> client read) and the gate process's CPU seconds per second
(from /proc). The three processes share this machine's cores, so the numbers are a floor for
a pod, where the gate has cores of its own (an engine pod asks for several CPUs beside its
GPUs). Writes gate.json, gate.md and gate.png into --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EVENT_BYTES = 220  # a vLLM /v1/completions stream chunk with one token, about
STARTUP_S = 10.0


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of an ascending list; NaN when empty."""
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[i]


# ------------------------------------------------------------------------------- engine --
def events_per_stream(rate: float, seconds: float) -> int:
    return max(1, round(rate * seconds))


def event(i: int) -> bytes:
    """One server-sent event stamped with its send time, padded to about EVENT_BYTES."""
    head = f'data: {{"t":{time.monotonic():.6f},"i":{i},"text":"'
    return (head + "x" * max(1, EVENT_BYTES - len(head) - 4) + '"}\n\n').encode()


async def _engine_conn(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate: float, seconds: float
) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length:
            await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        t = time.monotonic()
        for i in range(events_per_stream(rate, seconds)):
            data = event(i)
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
            t += 1.0 / rate
            await asyncio.sleep(max(0.0, t - time.monotonic()))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _engine(port: int, rate: float, seconds: float) -> None:
    server = await asyncio.start_server(
        lambda r, w: _engine_conn(r, w, rate, seconds), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


# ------------------------------------------------------------------------------ clients --
async def _stream(port: int, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    body = b'{"model":"m","prompt":"x","stream":true}'
    writer.write(
        b"POST /v1/completions HTTP/1.1\r\nHost: gate\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        writer.close()
        return 0
    events = 0
    buf = b""
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            break
        buf += await reader.readexactly(size)
        await reader.readexactly(2)
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            now = time.monotonic()
            stamp = json.loads(ev[len(b"data: ") :])["t"]
            latencies.append(now - stamp)
            events += 1
    writer.close()
    return events


async def _clients(port: int, streams: int) -> dict[str, Any]:
    latencies: list[float] = []
    t0 = time.monotonic()
    counts = await asyncio.gather(*(_stream(port, latencies) for _ in range(streams)))
    elapsed = time.monotonic() - t0
    latencies.sort()
    return {
        "events": sum(counts),
        "streams_served": sum(1 for c in counts if c > 0),
        "elapsed_s": round(elapsed, 3),
        "latency_p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "latency_max_ms": round((latencies[-1] if latencies else float("nan")) * 1000, 2),
    }


# --------------------------------------------------------------------------------- gate --
def _gate(port: int, engine_port: int) -> None:
    from deepseek_serving.admission import AdmissionServer, Gate

    server = AdmissionServer(("127.0.0.1", port), ("127.0.0.1", engine_port), Gate(1 << 20, None))
    server.httpd.serve_forever()


# ------------------------------------------------------------------------------- parent --
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bench.gate", *args])


def _wait_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {STARTUP_S:.0f}s")


def run(streams: list[int], rate: float, seconds: float) -> dict[str, Any]:
    """Every stream count, direct and through the gate; the processes are started once."""
    engine_port, gate_port = _free_port(), _free_port()
    engine = _spawn("--role", "engine", "--port", str(engine_port), "--rate", str(rate),
                    "--seconds", str(seconds))  # fmt: skip
    gate = _spawn("--role", "gate", "--port", str(gate_port), "--engine-port", str(engine_port))
    cases: dict[str, Any] = {}
    try:
        _wait_port(engine_port)
        _wait_port(gate_port)
        for n in streams:
            case: dict[str, Any] = {"offered_events_per_s": n * rate}
            for setup, port in (("direct", engine_port), ("gate", gate_port)):
                cpu0 = _cpu_s(gate.pid)
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.gate",
                        "--role",
                        "clients",
                        "--port",
                        str(port),
                        "--streams",
                        str(n),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                res = json.loads(out.stdout)
                res["events_per_s"] = round(res["events"] / seconds, 1)
                res["delivered_share"] = round(
                    res["events"] / (n * events_per_stream(rate, seconds)), 4
                )
                if setup == "gate":
                    res["gate_cpu_s_per_s"] = round((_cpu_s(gate.pid) - cpu0) / res["elapsed_s"], 3)
                case[setup] = res
                print(f"  {n:5d} streams {setup:6s} {json.dumps(res)}", flush=True)
            cases[str(n)] = case
    finally:
        for p in (gate, engine):
            p.terminate()
            p.wait(10)
    return cases


def report_md(doc: dict[str, Any]) -> str:
    s = doc["setup"]
    lines = [
        "# Admission-gate overhead (`make bench-gate`)",
        "",
        f"{doc['generated']}, {doc['runtime_s']} s, `{doc['command']}`. {s['rate']:g} events/s "
        f"per stream of about {s['event_bytes']} bytes for {s['seconds']:g} s; engine, gate "
        f"and clients are processes on the same {s['cpus']} CPUs (bench/gate.py).",
        "",
        "| streams | offered events/s | setup | delivered | latency p50 / p99 / max (ms) "
        "| gate CPU s/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n, case in doc["cases"].items():
        for setup in ("direct", "gate"):
            r = case[setup]
            cpu = r.get("gate_cpu_s_per_s")
            lines.append(
                f"| {n} | {case['offered_events_per_s']:.0f} | {setup} | "
                f"{r['delivered_share']:.3f} | {r['latency_p50_ms']} / {r['latency_p99_ms']} / "
                f"{r['latency_max_ms']} | {'-' if cpu is None else cpu} |"
            )
    return "\n".join(lines) + "\n"


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [int(n) for n in doc["cases"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for setup, style in (("direct", "o--"), ("gate", "s-")):
        for q, alpha in (("latency_p50_ms", 1.0), ("latency_p99_ms", 0.5)):
            axes[0].plot(
                ns,
                [doc["cases"][str(n)][setup][q] for n in ns],
                style,
                alpha=alpha,
                label=f"{setup} {q.split('_')[1]}",
            )
    axes[1].plot(
        [doc["cases"][str(n)]["offered_events_per_s"] for n in ns],
        [doc["cases"][str(n)]["gate"]["gate_cpu_s_per_s"] for n in ns],
        "s-",
        label="gate process",
    )
    axes[0].set_yscale("log")
    axes[0].set_xlabel("concurrent streams")
    axes[0].set_ylabel("event latency (ms)")
    axes[0].legend()
    axes[1].set_xlabel("events relayed per second")
    axes[1].set_ylabel("CPU seconds per second")
    axes[1].set_ylim(bottom=0)
    axes[1].legend()
    fig.suptitle(f"Admission gate relay, {doc['setup']['rate']:g} events/s per stream")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gate", description=__doc__)
    ap.add_argument("--role", choices=("parent", "engine", "gate", "clients"), default="parent")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--engine-port", type=int, default=0)
    ap.add_argument("--streams", default="64,256,512", help="stream counts (parent) or one")
    ap.add_argument("--rate", type=float, default=40.0, help="events per second per stream")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of every stream")
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args(argv)
    if a.role == "engine":
        asyncio.run(_engine(a.port, a.rate, a.seconds))
        return 0
    if a.role == "gate":
        _gate(a.port, a.engine_port)
        return 0
    if a.role == "clients":
        print(json.dumps(asyncio.run(_clients(a.port, int(a.streams)))))
        return 0
    t0 = time.monotonic()
    streams = [int(x) for x in a.streams.split(",") if x]
    print(f"==> bench.gate: {streams} streams at {a.rate:g} events/s for {a.seconds:g}s")
    cases = run(streams, a.rate, a.seconds)
    doc = {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.gate " + " ".join(argv if argv is not None else sys.argv[1:]),
        "runtime_s": round(time.monotonic() - t0),
        "setup": {
            "rate": a.rate,
            "seconds": a.seconds,
            "event_bytes": EVENT_BYTES,
            "cpus": os.cpu_count(),
        },
        "cases": cases,
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gate.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "gate.md").write_text(report_md(doc))
    plot(doc, out / "gate.png")
    print(f"==> wrote {out / 'gate.json'}, gate.md, gate.png in {doc['runtime_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
