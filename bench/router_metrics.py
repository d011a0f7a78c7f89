"""What the real vllm-router 0.1.17 exports on its --prometheus-port, and what moves it
(issue #21's router dashboards and alerts; docs/resource.md, "Router metrics").

`python -m bench.router_metrics` runs the router with the operator's default spec.router flags
(bench.gateway.operator_router_args; --worker-urls instead of Kubernetes discovery) in front
of two simulated engines (testbed.sim ReplicaServer) through these scenes, scraping /metrics
after each:

1. policy power_of_two, a bucket of 4: 8 streams at once (scraped while they run), then both
   engines answering 500 (the circuits open: clients get 500, then 503), then one engine
   stopped;
2. policy cache_aware (the default): one engine answering 500 to everything;
3. policy round_robin: requests the engines answer 404 (unknown model) and 400 (max_tokens too
   large);
4. the same with --cb-timeout-duration-secs 3: the sick engine tried again after the timeout;
5. overload: a bucket of 2 refilled 1/s, no queue (answers 429), then a queue of 4 (answers
   408): 20 requests at once, scraped during and after.

It writes the final scrape of scenes 1-4 to `--out` (the fixture dashboards/names.py reads)
and prints, for scene 5, the statuses and every sample that changed from before the burst to
after it: only the few admitted requests move anything, no family counts a refusal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from .gateway import MODEL, PRESET, RouterProc, operator_router_args, set_flag

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "vllm-router-0.1.17" / "vllm-router-0.1.17-metrics.txt"
HEADER = """\
# The /metrics exposition (--prometheus-port) of the real vllm-router 0.1.17 (pip 0.1.17),
# run with the operator's default spec.router flags (bench/gateway.py operator_router_args) and
# --worker-urls in front of two simulated engines (testbed.sim ReplicaServer). Four scrapes, each
# verbatim after its '# ---' line; `python -m bench.router_metrics` makes them again.
# dashboards/names.py reads the names; docs/resource.md says what moves when. No family counts a
# request the router refuses itself (429, 408).
"""
SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$", re.M)


def samples(text: str) -> dict[str, float]:
    return {m[1]: float(m[2]) for m in SAMPLE.finditer(text)}


async def scrape(s: aiohttp.ClientSession, r: RouterProc) -> str:
    async with s.get(f"http://127.0.0.1:{r.metrics_port}/metrics") as resp:
        return await resp.text()


async def fire(
    s: aiohttp.ClientSession, r: RouterProc, n: int, body: dict[str, Any] | None = None
) -> dict[str, int]:
    """n completions at once; their statuses counted."""

    async def one(i: int) -> str:
        b = body or {"model": MODEL, "prompt": f"hello {i} " * 20, "max_tokens": 64}
        try:
            async with s.post(r.url + "/v1/completions", json=b) as resp:
                await resp.read()
                return str(resp.status)
        except aiohttp.ClientError as e:
            return type(e).__name__

    return dict(Counter(await asyncio.gather(*(one(i) for i in range(n)))))


async def stream(s: aiohttp.ClientSession, r: RouterProc) -> int:
    body = {"model": MODEL, "prompt": "x " * 20, "max_tokens": 400, "stream": True}
    async with s.post(r.url + "/v1/completions", json=body) as resp:
        async for _ in resp.content:
            pass
        return resp.status


async def run(out: Path, logs: Path) -> dict[str, Any]:
    from testbed.sim.engine import EngineModel
    from testbed.sim.faults import ReplicaFaults
    from testbed.sim.presets import preset
    from testbed.sim.replica import ReplicaServer

    sick, well = ReplicaFaults(error_rate=1.0), ReplicaFaults(error_rate=0.0)
    p = preset(PRESET).with_(max_num_seqs=4)
    engines: list[ReplicaServer] = []
    for i in range(2):
        eng = EngineModel(p, start_time=time.monotonic(), loaded=True)
        srv = ReplicaServer(eng, host="127.0.0.1", port=0, served_names=[MODEL], name=f"e{i}")
        await srv.start()
        engines.append(srv)
    workers = [e.url for e in engines]
    base = operator_router_args()
    log = logs / "router-metrics.log"

    def router(name: str, **flags: str) -> RouterProc:
        args = list(base)
        for k, v in flags.items():
            args = set_flag(args, "--" + k.replace("_", "-"), v)
        return RouterProc(name, args, log)

    report: dict[str, Any] = {}
    scrapes: list[str] = []
    routers: list[RouterProc] = []
    try:
        async with aiohttp.ClientSession() as s:
            # 5. overload first, while every engine is well
            for name, queue in (("429", "0"), ("408", "4")):
                r = router(name, max_concurrent_requests="2", rate_limit_tokens_per_second="1")
                r.args = set_flag(r.args, "--queue-size", queue)
                routers.append(r)
                await r.start(workers)
                await fire(s, r, 2, {"model": MODEL, "prompt": "warm", "max_tokens": 8})
                before = samples(await scrape(s, r))
                statuses = await fire(
                    s, r, 20, {"model": MODEL, "prompt": "x " * 20, "max_tokens": 256}
                )
                after = samples(await scrape(s, r))
                moved = {k: after[k] - before.get(k, 0.0) for k in after}
                report[f"overload_{name}"] = {
                    "statuses": statuses,
                    "moved": {k: v for k, v in moved.items() if v and "_bucket" not in k},
                }
            # 1. streams, both engines sick, one stopped
            r1 = router("p2", policy="power_of_two", max_concurrent_requests="4")
            routers.append(r1)
            await r1.start(workers)
            streams = [asyncio.create_task(stream(s, r1)) for _ in range(8)]
            await asyncio.sleep(1.5)
            running = samples(await scrape(s, r1))
            report["streams"] = {
                "statuses": dict(Counter(await asyncio.gather(*streams))),
                "running_during": sum(
                    v for k, v in running.items() if k.startswith("vllm_router_running_requests")
                ),
            }
            for e in engines:
                e.apply_faults(sick)
            report["both_sick"] = [await fire(s, r1, 4) for _ in range(3)]
            for e in engines:
                e.apply_faults(well)
            # 2. cache_aware, one engine sick
            r2 = router("ca")
            routers.append(r2)
            await r2.start(workers)
            await fire(s, r2, 2)
            engines[0].apply_faults(sick)
            report["one_sick"] = [await fire(s, r2, 5) for _ in range(4)]
            engines[0].apply_faults(well)
            # 3. and 4. engine 4xx, then the half-open trial
            r3 = router("rr", policy="round_robin", cb_timeout_duration_secs="3")
            routers.append(r3)
            await r3.start(workers)
            report["engine_4xx"] = [
                await fire(s, r3, 2, {"model": "nope", "prompt": "x", "max_tokens": 4}),
                await fire(s, r3, 2, {"model": MODEL, "prompt": "x", "max_tokens": 10**7}),
            ]
            scene3 = await scrape(s, r3)
            engines[0].apply_faults(sick)
            report["sick_then_timeout"] = [await fire(s, r3, 4) for _ in range(3)]
            await asyncio.sleep(4)
            report["sick_then_timeout"].append(await fire(s, r3, 4))
            scene4 = await scrape(s, r3)
            engines[0].apply_faults(well)
            await engines[1].close()
            report["one_stopped"] = await fire(s, r1, 6)
            scene1 = await scrape(s, r1)
            scene2 = await scrape(s, r2)
            scrapes = [scene1, scene2, scene3, scene4]
    finally:
        for r in routers:
            r.stop()
        for e in engines:
            await e.close()
    titles = (
        "1. policy power_of_two, --max-concurrent-requests 4: 8 streams, then both engines "
        "answering 500, then one engine stopped",
        "2. policy cache_aware (the default): one engine answering 500 to everything",
        "3. policy round_robin: engines answering 404 (unknown model) and 400 (max_tokens)",
        "4. the same router, --cb-timeout-duration-secs 3, one engine answering 500: tried "
        "again after the timeout (half_open -> open)",
    )
    body = "".join(f"# --- {t}\n{text}" for t, text in zip(titles, scrapes, strict=True))
    out.write_text(HEADER + body)
    report["families"] = sorted(set(re.findall(r"^# TYPE (\S+)", body, re.M)))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.router_metrics", description=__doc__)
    ap.add_argument("--out", type=Path, default=FIXTURE, help="where the scrapes go")
    ap.add_argument("--logs", type=Path, default=ROOT / "bench" / "results" / "logs")
    args = ap.parse_args(argv)
    args.logs.mkdir(parents=True, exist_ok=True)
    print(json.dumps(asyncio.run(run(args.out, args.logs)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
