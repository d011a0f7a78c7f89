"""Capacity-learning benchmark: what the autoscaler learns one replica carries, against what it
carries.

    python -m bench.capacity [--jobs 2] [--out bench/results]

Every scaling decision of the operator rests on one number: the requests/s a Ready replica
serves within the SLOs (`scaling.replica_capacity`, learned from steady periods, step 2 of the
planner), and the quantization ladder compares rungs by the same number. This benchmark measures
how far that number is from the truth, per engine preset and workload:

1. the calibrated capacity C: the highest Poisson rate one replica sustains with >= 99% of
   requests within both SLOs (`bench.autoscale.calibrate`, as the other benchmarks size their
   oracles);
2. for each load level (a fraction of C): REPLICAS replicas under a steady Poisson load of
   level x C per replica for STEADY_S seconds, with `scaling.decide` called every
   intervalSeconds on the fleet's signals exactly as the operator calls it (the replica count
   is held: only what the decisions learn is kept);
3. the capacity `replica_capacity` then reports, at the CRD's default targets (TPOT aim
   tpotSloFraction x slo.tpot, KV-cache target 0.8), and its ratio to C.

A ratio above 1 makes the planner order too few replicas (SLO misses); below 1, too many
(GPU-hours). The KV-cache target caps a KV-bound workload's capacity below C on purpose (the
planner keeps the cache at 80%): `kv_capped_rps` is the rate at which the fleet's cache reads
that target, the number the learner should find there.

Writes `capacity.json` (`{"cases": {CASE: {"preset", "workload", "calibrated_rps",
"kv_capped_rps", "levels": {LEVEL: {"learned_rps", "ratio", "kv_usage", "tpot_p99", "source"}}}}}`),
`capacity.md` and `capacity.png` into the output folder.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deepseek_operator.api.spec import ScalingSpec, checkpoint_is_moe
from deepseek_operator.api.status import ScalingState
from deepseek_operator.scaling import ScalingInputs, decide, replica_capacity
from deepseek_operator.signals import Signal

from testbed.sim import traces as T
from testbed.sim.engine import SimRequest
from testbed.sim.presets import EnginePreset, preset

from .autoscale import Config, calibrate
from .fleet import Fleet
from .quantization import WORKLOADS, _distill70b_presets

REPLICAS = 4
WARM_S = 600  # before the first decision counted: the queues and the KV cache settle
STEADY_S = 900
LEVELS = (0.4, 0.6, 0.8, 0.95)
RAMP = (0.3, 0.95)  # the "ramp" level: the load rises from 30% to 95% over the steady window
COLOUR = "blue"


def _presets() -> dict[str, EnginePreset]:
    d70 = _distill70b_presets()
    return {
        "r1-fp8-8xh200": preset("r1-fp8-8xh200"),
        "distill-70b-bf16-4xh100": d70["bf16"],
        "distill-70b-fp8-kvfp8-4xh100": d70["fp8-kv8"],
        "distill-7b-bf16-1xh100": preset("distill-7b-bf16-1xh100"),
    }


# (case, preset, workload)
CASES: tuple[tuple[str, str, str], ...] = (
    ("r1_fp8_chat", "r1-fp8-8xh200", "chat"),
    ("r1_fp8_reasoning", "r1-fp8-8xh200", "reasoning"),
    ("distill70b_bf16_reasoning", "distill-70b-bf16-4xh100", "reasoning"),
    ("distill70b_fp8kv8_reasoning", "distill-70b-fp8-kvfp8-4xh100", "reasoning"),
    ("distill7b_bf16_chat", "distill-7b-bf16-1xh100", "chat"),
)


def _calibrated(case: str, seed: int) -> float:
    _, name, workload = next(c for c in CASES if c[0] == case)
    probe = T.constant(4.0, 1800.0, seed=seed, lengths=WORKLOADS[workload])
    return calibrate(Config(seed=seed), probe, _presets()[name])


def ramp_trace(lo: float, hi: float, lengths: T.LengthModel, seed: int) -> T.Trace:
    """`lo` req/s for WARM_S, then rising linearly to `hi` over STEADY_S (Poisson)."""
    rng = random.Random(seed)

    def rate(t: float) -> float:
        return lo if t < WARM_S else lo + (hi - lo) * (t - WARM_S) / STEADY_S

    arrivals = T.poisson_arrivals(rate, WARM_S + STEADY_S, hi, rng)
    reqs = []
    for i, t in enumerate(arrivals):
        prompt, out = lengths.sample(rng)
        reqs.append(SimRequest(f"ramp-{i:06d}", prompt, out, t, "stop"))
    return T.Trace("ramp", reqs, "synthetic", {"kind": "ramp", "lo": lo, "hi": hi})


def steady_level(
    p: EnginePreset,
    lengths: T.LengthModel,
    per_replica_rps: float,
    seed: int,
    ramp_to: float | None = None,
) -> dict[str, Any]:
    """REPLICAS replicas at a steady load (or one rising to `ramp_to` req/s per replica); what
    `decide` learned from their signals."""
    spec = ScalingSpec()
    interval = float(spec.interval_seconds)
    if ramp_to is None:
        trace = T.constant(
            per_replica_rps * REPLICAS, WARM_S + STEADY_S, seed=seed, lengths=lengths
        )
    else:
        trace = ramp_trace(per_replica_rps * REPLICAS, ramp_to * REPLICAS, lengths, seed)
    fleet = Fleet(p, 300.0, seed=seed)
    for _ in range(REPLICAS):
        fleet.add_pod(0.0, warm=True)
    state = ScalingState()
    moe = checkpoint_is_moe(p.model.hf_ids[0])  # as the operator reads spec.model
    reqs, i = trace.requests, 0
    kv: list[float] = []
    tpot: list[float] = []
    for t in range(1, WARM_S + STEADY_S + 1):
        now = float(t)
        while i < len(reqs) and reqs[i].arrival < now:
            fleet.arrive(reqs[i])
            i += 1
        fleet.advance(now)
        if t < WARM_S or t % int(interval):
            continue
        sig = fleet.signals(now)
        inputs = ScalingInputs(
            replicas=REPLICAS, ready=REPLICAS, signals=sig, signal_age=0.0, colour=COLOUR, moe=moe
        )
        state = decide(spec, inputs, state, now, interval).state
        kv.append(sig.values.get(Signal.KV_CACHE_USAGE, 0.0))
        if Signal.TPOT_P99 in sig.values:
            tpot.append(sig.values[Signal.TPOT_P99])
    aim = spec.targets.tpot_slo_fraction * spec.slo.tpot_p99_seconds
    cap = replica_capacity(state.capacity, COLOUR, None, aim, spec.targets.kv_cache_usage, moe)
    return {
        "learned_rps": None if cap is None else round(cap.per_replica, 4),
        "samples": state.capacity.samples if state.capacity else 0,
        "kv_usage": round(statistics.median(kv), 4) if kv else None,
        "tpot_p99": round(statistics.median(tpot), 4) if tpot else None,
        "source": None if cap is None else cap.source,
    }


def _level_job(
    args: tuple[str, float | str, float, int],
) -> tuple[str, float | str, dict[str, Any]]:
    case, level, calibrated, seed = args
    _, name, workload = next(c for c in CASES if c[0] == case)
    p, lengths = _presets()[name], WORKLOADS[workload]
    if level == "ramp":
        res = steady_level(p, lengths, RAMP[0] * calibrated, seed, ramp_to=RAMP[1] * calibrated)
    else:
        res = steady_level(p, lengths, float(level) * calibrated, seed)
    return case, level, res


def kv_capped(levels: dict[str, dict[str, Any]], calibrated: float, target: float) -> float | None:
    """The rate at which the cache reads `target`, interpolated between the measured levels
    (None when no level reached it: the SLO binds first)."""
    pts: list[tuple[float, float]] = sorted(
        (float(k) * calibrated, float(v["kv_usage"]))
        for k, v in levels.items()
        if k != "ramp" and v.get("kv_usage") is not None
    )
    for (r0, u0), (r1, u1) in itertools.pairwise(pts):
        if u0 < target <= u1 and u1 > u0:
            return round(r0 + (r1 - r0) * (target - u0) / (u1 - u0), 4)
    return None


def summarize(cases: dict[str, dict[str, Any]], kv_target: float) -> dict[str, Any]:
    """Ratios of learned to calibrated capacity (and to the KV-capped one where the cache
    binds first), per case and level, and their spread over all cases."""
    ratios: list[float] = []
    for c in cases.values():
        cal = c["calibrated_rps"]
        c["kv_capped_rps"] = kv_capped(c["levels"], cal, kv_target)
        truth = min(cal, c["kv_capped_rps"]) if c["kv_capped_rps"] else cal
        c["truth_rps"] = truth
        for v in c["levels"].values():
            v["ratio"] = None if v["learned_rps"] is None else round(v["learned_rps"] / truth, 4)
            if v["ratio"] is not None:
                ratios.append(v["ratio"])
    return {
        "ratio_median": round(statistics.median(ratios), 4) if ratios else None,
        "ratio_min": min(ratios, default=None),
        "ratio_max": max(ratios, default=None),
        "within_10pct": sum(1 for r in ratios if abs(r - 1) <= 0.1 + 1e-9),
        "measured": len(ratios),
    }


def report_md(doc: dict[str, Any]) -> str:
    lines = [
        "# Capacity learning",
        "",
        f"Command: `{doc['command']}`, seed {doc['seed']}, runtime {doc['runtime_s']}s. "
        f"{REPLICAS} replicas at a steady load per level; truth = the calibrated capacity "
        "(>= 99% of requests within TTFT 2 s and TPOT 0.1 s), or the rate at which the KV "
        "cache reads the 80% target where that comes first.",
        "",
        "| case | truth req/s | "
        + " | ".join(f"learned at {lv:.0%}" for lv in LEVELS)
        + f" | learned on a ramp {RAMP[0]:.0%} -> {RAMP[1]:.0%} |",
        "| --- | ---: | " + " | ".join("---:" for _ in (*LEVELS, "ramp")) + " |",
    ]
    for name, c in doc["cases"].items():
        cells = []
        for lv in (*LEVELS, "ramp"):
            v = c["levels"].get(f"{lv}")
            if v is None or v["learned_rps"] is None:
                cells.append("none")
            else:
                cells.append(f"{v['learned_rps']:.3g} ({v['ratio']:.2f}x)")
        lines.append(f"| {name} | {c['truth_rps']:.3g} | " + " | ".join(cells) + " |")
    s = doc["summary"]
    lines += [
        "",
        f"Learned / true over all {s['measured']} measurements: median {s['ratio_median']}, "
        f"range {s['ratio_min']} .. {s['ratio_max']}; {s['within_10pct']} within 10%.",
        "",
        "![capacity](capacity.png)",
        "",
    ]
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, c in doc["cases"].items():
        pts = [(float(k), v["ratio"]) for k, v in c["levels"].items() if k != "ramp"]
        pts = [(x, y) for x, y in pts if y is not None]
        line = ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=name)
        ramp = c["levels"].get("ramp", {}).get("ratio")
        if ramp is not None:  # learned on the ramp: drawn at its end
            ax.plot([RAMP[1]], [ramp], marker="*", markersize=12, color=line[0].get_color())
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axhspan(0.9, 1.1, color="grey", alpha=0.15)
    ax.set_xlabel("steady load per replica (fraction of the calibrated capacity)")
    ax.set_ylabel("learned / true capacity")
    ax.set_title("What the autoscaler learns a replica carries (star: learned on a ramp)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(out: Path, jobs: int, seed: int, say: Callable[[str], None], command: str) -> None:
    t0 = time.perf_counter()
    pool = ProcessPoolExecutor(jobs) if jobs > 1 else None
    names = [c[0] for c in CASES]
    say(f"==> bench.capacity: {len(CASES)} cases x {len(LEVELS)} levels + a ramp, {jobs} worker(s)")
    seeds = [seed] * len(names)
    cals = list(pool.map(_calibrated, names, seeds) if pool else map(_calibrated, names, seeds))
    cases: dict[str, dict[str, Any]] = {}
    for (name, p, workload), cal in zip(CASES, cals, strict=True):
        say(f"    {name}: calibrated {cal:.3f} req/s per replica")
        cases[name] = {
            "preset": p,
            "workload": workload,
            "calibrated_rps": round(cal, 4),
            "levels": {},
        }
    args: list[tuple[str, float | str, float, int]] = [
        (n, lv, cases[n]["calibrated_rps"], seed) for n in names for lv in (*LEVELS, "ramp")
    ]
    for name, lv, res in pool.map(_level_job, args) if pool else map(_level_job, args):
        cases[name]["levels"][f"{lv}"] = res
        say(f"    {name} at {lv}: learned {res['learned_rps']} ({res['source']})")
    if pool:
        pool.shutdown()
    kv_target = ScalingSpec().targets.kv_cache_usage
    doc: dict[str, Any] = {
        "cases": cases,
        "summary": summarize(cases, kv_target),
        "levels": [*LEVELS, "ramp"],
        "ramp": list(RAMP),
        "replicas": REPLICAS,
        "seed": seed,
        "command": command,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "runtime_s": round(time.perf_counter() - t0, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "capacity.md").write_text(report_md(doc))
    plot(doc, out / "capacity.png")
    say(f"==> wrote {out / 'capacity.json'}, capacity.md, capacity.png in {doc['runtime_s']}s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    ap.add_argument("--out", default="bench/results", help="output folder")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    command = "python -m bench.capacity " + " ".join(argv if argv is not None else sys.argv[1:])
    run(Path(a.out), a.jobs, a.seed, lambda m: print(m, flush=True), command.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
