"""Gateway benchmark (`make bench-gateway`, issue #21): the same load through a plain Service,
the real vllm-router with the operator's default flags, and the router with priorities, in
real time on simulated engines.

The world (the same for every setup; fresh engines for each run):

- `--replicas` simulated vLLM servers (testbed/sim/replica.py around the engine model), each
  the `distill-7b-bf16-1xh100` preset shrunk to `--max-num-seqs` running sequences so that a
  few replicas saturate at a rate two CPU cores drive in real time, all with
  `--scheduling-policy priority` (lower first, vLLM 0.32's scheduler).
- The client sends non-streamed completions (`--prompt-tokens` in, `--output-tokens` out) at
  Poisson arrivals, a share `--p0-share` of them interactive (P0), the rest batch (P2), and
  gives up after `--client-timeout` seconds (a failed request).
- Setups: `service`: the client picks the engines in turn (round robin, kube-proxy's IPVS
  `rr`), no priority sent; `router`: one vllm-router process with the flags the operator
  renders for the default `spec.router` (desired.router_args; Kubernetes discovery replaced by
  `--worker-urls`), no priority sent; `router_priorities`: P0 with `X-Vllm-Priority: 0`
  through that router, P2 with `X-Vllm-Priority: 2` through a second router process: the batch
  pool the operator renders for `spec.router.batch: {}` (desired.batch_router_pool: its
  `--max-concurrent-requests`, `--queue-size`, `--queue-timeout-secs` and
  `--rate-limit-tokens-per-second`; `--batch-*` overrides them); beyond them it answers 429.
- Scenarios: `overload` (arrivals `--overload-factor` x what the engines carry), and
  `sick_replica` (arrivals `--sick-factor` x capacity; engine 0 answers HTTP 500 to every
  completion from `--sick-at` seconds on; also `router_no_resilience`: the router with
  `--disable-retries --disable-circuit-breaker`).
- Optional (`--setups`): `router_priority_headers`, P0 and P2 with their headers through the
  one default router (what the engines' priority scheduling does without a bulkhead);
  `--batch-rate-limit N` sets the bulkhead's `--rate-limit-tokens-per-second` (0: unset).

Outcomes per request: `ok` (200), `shed` (429 or 503 answered by a router or an engine before
serving; vllm-router 0.1.17 answers 408 when its admission queue cannot place a request),
`failed` (any other status, a reset connection, or the client's timeout). SLO of P0:
latency (send to last byte) <= `--slo` seconds. `slo_attainment_p0` = P0 requests answered 200
within it / P0 requests sent (shed and failed ones miss). `goodput_rps` = requests answered 200
within their class's deadline (P0: the SLO; P2: any answer, the client waiting at most its
timeout) per second, over the span from the start to the last answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SETUPS = ("service", "router", "router_priorities")
SICK_EXTRA = "router_no_resilience"
# Optional (--setups): priority headers through the one default router, no bulkhead.
HEADERS_ONLY = "router_priority_headers"
# Refused before serving: 429 and 503 (a full queue, an overloaded or draining engine), and
# 408, vllm-router 0.1.17's answer to a request its admission queue could not place.
SHED_STATUSES = frozenset({408, 429, 503})
PRESET = "distill-7b-bf16-1xh100"
MODEL = "deepseek-bench"
P0, P2 = 0, 2


@dataclass(frozen=True)
class Config:
    replicas: int = 3
    max_num_seqs: int = 4
    prompt_tokens: int = 256
    output_tokens: int = 128
    p0_share: float = 0.2
    slo_s: float = 2.0
    client_timeout_s: float = 30.0
    capacity_rps: float = 13.5  # what the engines carry (measured: see the report)
    overload_factor: float = 1.75
    overload_s: float = 90.0
    sick_factor: float = 0.5
    sick_s: float = 60.0
    sick_at_s: float = 15.0
    # The batch bulkhead's admission: -1 takes the operator's spec.router.batch default
    # (desired.batch_router_pool); the refill rate 0 leaves --rate-limit-tokens-per-second unset.
    batch_max_concurrent: int = -1
    batch_queue_size: int = -1
    batch_queue_timeout_s: int = -1
    batch_rate_limit: int = -1
    seed: int = 1


# ---------------------------------------------------------------------------------------------
# Pure parts: the trace, the router's arguments, the metrics


@dataclass(frozen=True)
class Arrival:
    t: float  # seconds after the start
    priority: int
    key: str = ""  # the prompt's first word: distinct prompts, as real traffic's


def make_trace(rate: float, duration: float, p0_share: float, seed: int) -> list[Arrival]:
    """Poisson arrivals at `rate` per second for `duration` seconds, each P0 with probability
    `p0_share`, else P2. The same seed gives the same trace to every setup."""
    rng = random.Random(seed)
    out: list[Arrival] = []
    t = rng.expovariate(rate)
    while t < duration:
        prio = P0 if rng.random() < p0_share else P2
        out.append(Arrival(round(t, 6), prio, f"{rng.getrandbits(64):016x}"))
        t += rng.expovariate(rate)
    return out


@dataclass(frozen=True)
class Outcome:
    t: float  # sent, seconds after the start
    priority: int
    status: int  # HTTP status; 0 without one (timeout, reset connection)
    latency_s: float


def prompt(a: Arrival, tokens: int) -> str:
    """`tokens` words (the simulated engine counts words), distinct from the first character
    on so that cache_aware routing sees no shared prefix."""
    return " ".join([a.key or "x", *["tok"] * (tokens - 1)])


def kind(status: int) -> str:
    """ok (200), shed (408/429/503: refused before serving), failed (anything else)."""
    if status == 200:
        return "ok"
    if status in SHED_STATUSES:
        return "shed"
    return "failed"


def _quantile(xs: Sequence[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def summarize(outcomes: Sequence[Outcome], slo_s: float, duration_s: float) -> dict[str, Any]:
    """The numbers of one run (see the module doc). Goodput is over the span from the start to
    the last answer (at least the trace's duration), so a backlog drained after the trace's end
    does not count as extra rate."""
    span = max([duration_s, *(o.t + o.latency_s for o in outcomes)])
    p0 = [o for o in outcomes if o.priority == P0]
    p0_ok = [o for o in p0 if kind(o.status) == "ok" and o.latency_s <= slo_s]
    # An answer is within the client's deadline by construction (it gives up at its timeout).
    good = len(p0_ok) + sum(1 for o in outcomes if o.priority != P0 and kind(o.status) == "ok")
    ok_lat = {
        p: [o.latency_s for o in outcomes if o.priority == p and kind(o.status) == "ok"]
        for p in (P0, P2)
    }

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {
        "slo_attainment_p0": round(len(p0_ok) / len(p0), 4) if p0 else None,
        "goodput_rps": round(good / span, 3),
        "span_s": round(span, 1),
        "failed": sum(1 for o in outcomes if kind(o.status) == "failed"),
        "shed": sum(1 for o in outcomes if kind(o.status) == "shed"),
        "sent": len(outcomes),
        "ok": sum(1 for o in outcomes if kind(o.status) == "ok"),
        "sent_p0": len(p0),
        "shed_p0": sum(1 for o in p0 if kind(o.status) == "shed"),
        "failed_p0": sum(1 for o in p0 if kind(o.status) == "failed"),
        "statuses": {str(k): n for k, n in sorted(Counter(o.status for o in outcomes).items())},
        "latency_p0_p50_s": r(_quantile(ok_lat[P0], 0.5)),
        "latency_p0_p99_s": r(_quantile(ok_lat[P0], 0.99)),
        "latency_p2_p50_s": r(_quantile(ok_lat[P2], 0.5)),
        "latency_p2_p99_s": r(_quantile(ok_lat[P2], 0.99)),
    }


def operator_router_args() -> list[str]:
    """The flags the operator renders for a DeepSeekDeployment with the default spec.router
    (deepseek_operator.desired.router_args), without its Kubernetes discovery, listener and
    metrics flags (the benchmark sets those per process)."""
    from deepseek_operator.api import Colour, DeepSeekDeployment
    from deepseek_operator.desired import ColourPlan, Plan, router_args

    dsd = DeepSeekDeployment.from_k8s(
        {
            "metadata": {"name": "bench", "namespace": "bench", "uid": "u", "generation": 1},
            "spec": {
                "model": {"checkpoint": "deepseek-ai/DeepSeek-R1"},
                "router": {"enabled": True},
            },
        }
    )
    plan = Plan(Colour.BLUE, (ColourPlan(Colour.BLUE, dsd.spec, 1),), router_available=True)
    return strip_flags(
        router_args(dsd, plan),
        {
            "--host": 1,
            "--port": 1,
            "--prometheus-port": 1,
            "--prometheus-host": 1,
            "--service-discovery": 0,
            "--selector": -1,
            "--service-discovery-port": 1,
            "--service-discovery-namespace": 1,
        },
    )


def strip_flags(args: Sequence[str], drop: dict[str, int]) -> list[str]:
    """`args` without the flags in `drop` and their values (n values; -1: all up to the next
    flag)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in drop:
            n = drop[a]
            i += 1
            if n < 0:
                while i < len(args) and not args[i].startswith("--"):
                    i += 1
            else:
                i += n
            continue
        out.append(a)
        i += 1
    return out


def set_flag(args: Sequence[str], name: str, value: str) -> list[str]:
    """`args` with flag `name` set to `value` (replaced where present, else appended)."""
    out = list(args)
    if name in out:
        out[out.index(name) + 1] = value
    else:
        out += [name, value]
    return out


def operator_batch_limits() -> tuple[int, int, int, int]:
    """(max concurrent, queue size, queue timeout, refill rate or 0) of the batch pool the
    operator renders for `spec.router.batch: {}` (desired.batch_router_pool)."""
    from deepseek_operator.api import DeepSeekDeployment
    from deepseek_operator.desired import batch_router_pool

    dsd = DeepSeekDeployment.from_k8s(
        {
            "metadata": {"name": "bench", "namespace": "bench", "uid": "u", "generation": 1},
            "spec": {
                "model": {"checkpoint": "deepseek-ai/DeepSeek-R1"},
                "engine": {"schedulingPolicy": "priority"},
                "router": {"enabled": True, "batch": {}},
            },
        }
    )
    pool = batch_router_pool(dsd)
    assert pool is not None
    return (
        pool.max_concurrent_requests,
        pool.queue_size,
        pool.queue_timeout_seconds,
        pool.rate_limit_tokens_per_second or 0,
    )


def batch_router_args(base: Sequence[str], cfg: Config) -> list[str]:
    """The batch bulkhead: the default router's flags with the batch pool's admission limits
    (the operator's spec.router.batch defaults unless the Config sets them)."""
    ours = operator_batch_limits()
    given = (cfg.batch_max_concurrent, cfg.batch_queue_size, cfg.batch_queue_timeout_s)
    limit, queue, timeout = (g if g >= 0 else o for g, o in zip(given, ours[:3], strict=True))
    rate = cfg.batch_rate_limit if cfg.batch_rate_limit >= 0 else ours[3]
    args = set_flag(base, "--max-concurrent-requests", str(limit))
    args = set_flag(args, "--queue-size", str(queue))
    args = set_flag(args, "--queue-timeout-secs", str(timeout))
    if rate > 0:
        args = set_flag(args, "--rate-limit-tokens-per-second", str(rate))
    else:
        args = strip_flags(args, {"--rate-limit-tokens-per-second": 1})
    return args


def no_resilience_args(base: Sequence[str]) -> list[str]:
    """The default router without retries (vllm-router still tries once more) or breaker."""
    drop = {f: 1 for f in base if f.startswith("--cb-") or f.startswith("--retry-")}
    return [*strip_flags(base, drop), "--disable-retries", "--disable-circuit-breaker"]


# ---------------------------------------------------------------------------------------------
# The world: engines, routers, the client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RouterProc:
    name: str
    args: list[str]
    log_path: Path
    port: int = 0
    metrics_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, workers: Sequence[str]) -> None:
        binary = shutil.which("vllm-router") or str(Path(sys.executable).parent / "vllm-router")
        self.port = free_port()
        self.metrics_port = free_port()
        cmd = [
            binary,
            *self.args,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--prometheus-host",
            "127.0.0.1",
            "--prometheus-port",
            str(self.metrics_port),
            "--worker-urls",
            *workers,
        ]
        with self.log_path.open("ab") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        import aiohttp

        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"router {self.name} exited; see {self.log_path}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with s.get(self.url + "/readiness") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.25)
        raise RuntimeError(f"router {self.name} not ready in 60 s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Run:
    scenario: str
    setup: str
    outcomes: list[Outcome] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0


async def run_one(
    cfg: Config,
    scenario: str,
    setup: str,
    trace: Sequence[Arrival],
    duration: float,
    router_args: Sequence[str],
    logs: Path,
    sick_at: float | None = None,
) -> Run:
    import aiohttp

    from testbed.sim.engine import EngineModel
    from testbed.sim.faults import ReplicaFaults
    from testbed.sim.presets import preset
    from testbed.sim.replica import ReplicaServer

    wall0 = time.monotonic()
    p = preset(PRESET).with_(max_num_seqs=cfg.max_num_seqs)
    engines: list[ReplicaServer] = []
    routers: list[RouterProc] = []
    for i in range(cfg.replicas):
        eng = EngineModel(p, start_time=time.monotonic(), loaded=True, scheduling_policy="priority")
        srv = ReplicaServer(eng, host="127.0.0.1", port=0, served_names=[MODEL], name=f"engine-{i}")
        await srv.start()
        engines.append(srv)
    workers = [e.url for e in engines]
    log = logs / f"{scenario}-{setup}.log"
    if setup == "service":
        p0_urls = p2_urls = workers
    else:
        args = list(router_args)
        if setup == SICK_EXTRA:
            args = no_resilience_args(args)
        main = RouterProc("main", args, log)
        routers.append(main)
        p0_urls = p2_urls = [main.url]
        if setup == "router_priorities":
            batch = RouterProc("batch", batch_router_args(router_args, cfg), log)
            routers.append(batch)
    try:
        for r in routers:
            await r.start(workers)
        if routers:
            p0_urls = [routers[0].url]
            p2_urls = [routers[-1].url]
        headers = setup in ("router_priorities", HEADERS_ONLY)
        outcomes: list[Outcome] = []
        rr = {"i": 0}
        timeout = aiohttp.ClientTimeout(total=cfg.client_timeout_s)
        conn = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
            t0 = time.monotonic()

            async def send(a: Arrival) -> None:
                urls = p0_urls if a.priority == P0 else p2_urls
                url = urls[rr["i"] % len(urls)]
                rr["i"] += 1
                h = {"X-Vllm-Priority": str(a.priority)} if headers else {}
                body = {
                    "model": MODEL,
                    "prompt": prompt(a, cfg.prompt_tokens),
                    "max_tokens": cfg.output_tokens,
                }
                sent = time.monotonic()
                status = 0
                try:
                    async with s.post(url + "/v1/completions", json=body, headers=h) as resp:
                        await resp.read()
                        status = resp.status
                except (TimeoutError, aiohttp.ClientError, OSError):
                    status = 0
                outcomes.append(
                    Outcome(
                        round(sent - t0, 3), a.priority, status, round(time.monotonic() - sent, 4)
                    )
                )

            async def sicken() -> None:
                if sick_at is None:
                    return
                await asyncio.sleep(max(0.0, t0 + sick_at - time.monotonic()))
                engines[0].apply_faults(ReplicaFaults(error_rate=1.0))

            sick_task = asyncio.create_task(sicken())
            tasks: list[asyncio.Task[None]] = []
            for a in trace:
                delay = t0 + a.t - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(send(a)))
            await asyncio.gather(*tasks)
            await sick_task
    finally:
        for r in routers:
            r.stop()
        for e in engines:
            await e.close()
    run = Run(scenario, setup, sorted(outcomes, key=lambda o: o.t))
    run.summary = summarize(run.outcomes, cfg.slo_s, duration)
    run.wall_s = round(time.monotonic() - wall0, 1)
    return run


# ---------------------------------------------------------------------------------------------
# Report


def acceptance(scenarios: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The issue's two bars, from the numbers."""
    out: dict[str, Any] = {}
    ov = scenarios.get("overload", {})
    if "service" in ov and "router_priorities" in ov:
        prio = ov["router_priorities"]["slo_attainment_p0"]
        svc = ov["service"]["slo_attainment_p0"]
        out["overload"] = {
            "router_priorities_p0": prio,
            "service_p0": svc,
            "passed": prio is not None and svc is not None and prio >= 0.99 and svc < 0.9,
        }
    sick = scenarios.get("sick_replica", {})
    if "service" in sick and "router" in sick:
        f_svc, f_rt = sick["service"]["failed"], sick["router"]["failed"]
        cut = None if f_svc == 0 else round(1 - f_rt / f_svc, 4)
        out["sick_replica"] = {
            "failed_service": f_svc,
            "failed_router": f_rt,
            "cut": cut,
            "passed": cut is not None and cut >= 0.9,
        }
    return out


def timeline(
    outcomes: Sequence[Outcome], slo_s: float, bin_s: float, duration: float
) -> dict[str, list[int]]:
    """Requests by outcome per `bin_s` of send time: ok (P0 within the SLO or any ok P2),
    late (P0 answered after the SLO), shed, failed."""
    n = max(1, math.ceil(duration / bin_s))
    out = {k: [0] * n for k in ("ok", "late", "shed", "failed")}
    for o in outcomes:
        i = min(n - 1, int(o.t // bin_s))
        k = kind(o.status)
        if k == "ok" and o.priority == P0 and o.latency_s > slo_s:
            k = "late"
        out[k][i] += 1
    return out


def plot(runs: Sequence[Run], cfg: Config, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[str] = []
    for scenario, dur in (("overload", cfg.overload_s), ("sick_replica", cfg.sick_s)):
        rs = [r for r in runs if r.scenario == scenario]
        if not rs:
            continue
        fig, axes = plt.subplots(1, 1 + len(rs), figsize=(4.2 * (1 + len(rs)), 3.6))
        ax = axes[0]
        for r in rs:
            lat = sorted(
                o.latency_s if kind(o.status) == "ok" else math.inf
                for o in r.outcomes
                if o.priority == P0
            )
            if lat:
                ys = [(i + 1) / len(lat) for i in range(len(lat))]
                ax.step(
                    [min(x, cfg.client_timeout_s) for x in lat], ys, where="post", label=r.setup
                )
        ax.axvline(cfg.slo_s, color="k", ls="--", lw=0.8, label=f"SLO {cfg.slo_s:g} s")
        ax.set_xscale("log")
        ax.set_xlabel("P0 latency (s); not ok = right edge")
        ax.set_ylabel("fraction of P0 requests")
        ax.set_title(f"{scenario}: P0 latency CDF")
        ax.legend(fontsize=7)
        bin_s = 5.0
        for ax, r in zip(axes[1:], rs, strict=True):
            tl = timeline(r.outcomes, cfg.slo_s, bin_s, dur)
            xs = [i * bin_s for i in range(len(tl["ok"]))]
            bottom = [0.0] * len(xs)
            for k, c in (
                ("ok", "tab:green"),
                ("late", "tab:olive"),
                ("shed", "tab:orange"),
                ("failed", "tab:red"),
            ):
                ax.bar(
                    xs,
                    [v / bin_s for v in tl[k]],
                    bin_s,
                    bottom=bottom,
                    align="edge",
                    color=c,
                    label=k,
                )
                bottom = [b + v / bin_s for b, v in zip(bottom, tl[k], strict=True)]
            if scenario == "sick_replica":
                ax.axvline(cfg.sick_at_s, color="k", ls="--", lw=0.8)
            ax.set_title(r.setup, fontsize=9)
            ax.set_xlabel("send time (s)")
            ax.set_ylabel("requests/s by outcome")
            ax.legend(fontsize=6)
        fig.tight_layout()
        name = f"gateway_{scenario}.png"
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        written.append(name)
    return written


async def bench(
    cfg: Config, out: Path, scenarios: Sequence[str], setups: Sequence[str]
) -> dict[str, Any]:
    base = operator_router_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    runs: list[Run] = []
    plan: list[tuple[str, float, float, float | None, list[str]]] = []
    if "overload" in scenarios:
        plan.append(("overload", cfg.overload_factor, cfg.overload_s, None, list(setups)))
    if "sick_replica" in scenarios:
        plan.append(
            ("sick_replica", cfg.sick_factor, cfg.sick_s, cfg.sick_at_s, [*setups, SICK_EXTRA])
        )
    for scenario, factor, dur, sick_at, names in plan:
        trace = make_trace(cfg.capacity_rps * factor, dur, cfg.p0_share, cfg.seed)
        for setup in names:
            run = await run_one(cfg, scenario, setup, trace, dur, base, logs, sick_at)
            runs.append(run)
            print(
                json.dumps(
                    {"scenario": scenario, "setup": setup, "wall_s": run.wall_s, **run.summary}
                ),
                flush=True,
            )
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for r in runs:
        results.setdefault(r.scenario, {})[r.setup] = r.summary
    doc: dict[str, Any] = {
        "scenarios": results,
        "acceptance": acceptance(results),
        "setup": {
            **asdict(cfg),
            "preset": PRESET,
            "router_args": base,
            "batch_router_args": batch_router_args(base, cfg),
            "no_resilience_args": no_resilience_args(base),
            "engine_args": [
                "--scheduling-policy",
                "priority",
                "--max-num-seqs",
                str(cfg.max_num_seqs),
            ],
        },
        "timelines_5s": {r.scenario: {} for r in runs},
    }
    print(f"router logs: {logs}", file=sys.stderr, flush=True)
    durations = {"overload": cfg.overload_s, "sick_replica": cfg.sick_s}
    for r in runs:
        doc["timelines_5s"][r.scenario][r.setup] = timeline(
            r.outcomes, cfg.slo_s, 5.0, durations[r.scenario]
        )
    out.mkdir(parents=True, exist_ok=True)
    doc["plots"] = plot(runs, cfg, out)
    rows = ["scenario,setup,t,priority,status,latency_s"]
    rows += [
        f"{r.scenario},{r.setup},{o.t},{o.priority},{o.status},{o.latency_s}"
        for r in runs
        for o in r.outcomes
    ]
    (out / "gateway_outcomes.csv").write_text("\n".join(rows) + "\n")
    doc["outcomes"] = "gateway_outcomes.csv"
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = Config()
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--only", default="overload,sick_replica", help="scenarios, comma-separated")
    ap.add_argument("--setups", default=",".join(SETUPS))
    for f in d.__dataclass_fields__:
        v = getattr(d, f)
        ap.add_argument("--" + f.replace("_", "-"), type=type(v), default=v)
    a = ap.parse_args(argv)
    cfg = Config(**{f: getattr(a, f) for f in d.__dataclass_fields__})
    t0 = time.monotonic()
    doc = asyncio.run(bench(cfg, a.out, a.only.split(","), a.setups.split(",")))
    doc["wall_s"] = round(time.monotonic() - t0, 1)
    doc["command"] = "python -m bench.gateway " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    (a.out / "gateway.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({"acceptance": doc["acceptance"], "wall_s": doc["wall_s"]}), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
