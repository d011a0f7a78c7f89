"""Autoscaling benchmark: replay traces under a virtual clock through the operator's own policy
(`deepseek_operator.scaling.decide`) and the usual baselines, on the simulated vLLM engine.

    python -m bench.autoscale [--quick] [--jobs 2] [--azure PATH] [--out bench/results]

Writes `autoscale.json`, `summary.md` and one PNG per trace into the output folder. See
bench/README.md for what is modelled and how to read the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from deepseek_operator.api.spec import ScalingSpec
from deepseek_operator.signals import Signal

from testbed.sim import traces as T
from testbed.sim.engine import EngineModel, SimRequest
from testbed.sim.presets import EnginePreset, preset

from .fleet import Fleet
from .policies import Hpa, Keda, Kpa, Oracle, Ours, Policy, Static, View, need_series

DEFAULT_AZURE = "/work/shared/traces/AzureLLMInferenceTrace_conv.csv"
POLICIES = ("ours", "ours_projected", "hpa", "keda", "kpa", "static_peak", "oracle")
PLOT_STEP_S = 15.0


@dataclass(frozen=True)
class Config:
    preset_name: str = "r1-fp8-8xh200"
    min_replicas: int = 1
    max_replicas: int = 16
    hpa_gpu_target: float = 0.8
    kpa_target: float = 70.0  # Knative defaults: target 100 x utilization 70 %
    seed: int = 1
    duration_s: float = 1800.0
    azure_rate_multiplier: float = 3.0
    cold_start_s: float | None = None  # None: the preset's load time

    @property
    def preset(self) -> EnginePreset:
        return preset(self.preset_name)

    @property
    def cold_start(self) -> float:
        return self.preset.load_time_s if self.cold_start_s is None else self.cold_start_s

    def scaling_spec(self) -> ScalingSpec:
        """The spec our policy runs with: the CRD's defaults, min/max for the benchmark."""
        return ScalingSpec(min_replicas=self.min_replicas, max_replicas=self.max_replicas)


# ------------------------------------------------------------------------------ traces --
def build_traces(cfg: Config, azure: str | None) -> dict[str, T.Trace]:
    d, s = cfg.duration_s, cfg.seed
    out = {
        "bursty": T.bursty(
            8.0, d, burst_rate=24.0, mean_gap_s=600.0, burst_s=300.0, seed=s, name="bursty"
        ),
        "diurnal": T.diurnal(12.0, d, amplitude=0.7, period_s=d, seed=s, name="diurnal"),
        "step": T.step(6.0, 24.0, d, seed=s, name="step"),
        # two daily cycles compressed to 2 h: long enough for scaling down to matter
        "diurnal_2h": T.diurnal(
            12.0, 4 * d, amplitude=0.7, period_s=2 * d, seed=s, name="diurnal_2h"
        ),
    }
    out["diurnal_2h"].meta["duration_s"] = 4 * d
    if azure and Path(azure).exists():
        tr = T.load_azure_trace(azure, name="azure_conv")
        tr = T.window(tr, 0.0, d, name="azure_conv")
        out["azure_conv"] = T.multiply_rate(tr, cfg.azure_rate_multiplier, seed=s)
    return out


def trace_duration(cfg: Config, trace: T.Trace) -> float:
    return float(cast("float", trace.meta.get("duration_s", cfg.duration_s)))


# --------------------------------------------------------------------------- calibrate --
def _single_replica_attainment(
    p: EnginePreset, lengths: list[tuple[int, int]], rate: float, spec: ScalingSpec, seed: int
) -> float:
    rng = random.Random(seed)
    eng = EngineModel(p, start_time=0.0, loaded=True, emit_tokens=False)
    t, i, warm, horizon = 0.0, 0, 60.0, 660.0
    while True:
        t += rng.expovariate(rate)
        if t >= horizon:
            break
        pr, out = lengths[rng.randrange(len(lengths))]
        eng.advance(t)
        if eng.stats().num_requests_waiting > 100:
            return 0.0  # the queue runs away: far beyond capacity (and costly to simulate)
        eng.submit(SimRequest(f"c{i}", pr, out, t), t)
        i += 1
    eng.advance(horizon + 600.0)
    recs = [r for r in eng.finished_requests() if r.arrival >= warm]
    if not recs:
        return 1.0
    good = sum(
        1
        for r in recs
        if r.ok
        and r.ttft is not None
        and r.ttft <= spec.slo.ttft_p99_seconds
        and (r.tpot is None or r.tpot <= spec.slo.tpot_p99_seconds)
    )
    return good / len(recs)


def calibrate(cfg: Config, trace: T.Trace, engine: EnginePreset | None = None) -> float:
    """Highest Poisson request rate one replica (of `engine`, default the config's preset)
    sustains with >= 99 % of requests within both SLOs, for this trace's token lengths
    (bisection). The oracle and static_peak size from it."""
    spec = cfg.scaling_spec()
    p = engine or cfg.preset
    lengths = [(r.prompt_tokens, r.max_tokens) for r in trace.requests]
    lo, hi = 0.25, 32.0
    for _ in range(9):
        mid = math.sqrt(lo * hi)
        if _single_replica_attainment(p, lengths, mid, spec, cfg.seed) >= 0.99:
            lo = mid
        else:
            hi = mid
    return lo


# --------------------------------------------------------------------------------- run --
@dataclass
class Series:
    t: list[float] = field(default_factory=list)
    load_rps: list[float] = field(default_factory=list)
    desired: list[int] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)
    ttft_p99: list[float] = field(default_factory=list)


def make_policy(name: str, cfg: Config, need: list[int], static_n: int) -> Policy:
    lo, hi = cfg.min_replicas, cfg.max_replicas
    spec = cfg.scaling_spec()
    if name == "ours":
        return Ours(spec)
    if name == "ours_projected":
        up = spec.scale_up.model_copy(update={"project_rising_load": True})
        # the start time as learned from earlier scale-ups (it has run before the trace)
        return Ours(
            spec.model_copy(update={"scale_up": up}),
            start_seconds=cfg.cold_start,
            name="ours_projected",
        )
    if name == "hpa":
        return Hpa(lo, hi, cfg.hpa_gpu_target)
    if name == "keda":
        return Keda(lo, hi, spec.targets.queue_depth_per_replica)
    if name == "kpa":
        return Kpa(lo, hi, cfg.kpa_target)
    if name == "static_peak":
        return Static(static_n)
    if name == "oracle":
        return Oracle(need, PLOT_STEP_S, cfg.cold_start, 60.0)
    raise ValueError(name)


def simulate(
    cfg: Config, trace: T.Trace, policy_name: str, capacity_rps: float
) -> tuple[dict[str, Any], Series]:
    spec = cfg.scaling_spec()
    arrivals = [r.arrival for r in trace.requests]
    duration = trace_duration(cfg, trace)
    need = need_series(
        arrivals, duration, capacity_rps, PLOT_STEP_S, 60.0, cfg.min_replicas, cfg.max_replicas
    )
    static_n = max(need)
    policy = make_policy(policy_name, cfg, need, static_n)
    first = sum(1 for a in arrivals if a < 300.0) / 300.0
    if policy_name == "static_peak":
        initial = static_n
    elif isinstance(policy, Oracle):
        initial = policy.at(0.0)
    else:
        initial = min(max(math.ceil(first / capacity_rps), cfg.min_replicas), cfg.max_replicas)
    if isinstance(policy, Hpa | Keda):
        # the HPA has been running at the initial size (as ours starts from it, see _history)
        policy.core.recommendations.append((0.0, initial))
    fleet = Fleet(cfg.preset, cfg.cold_start, seed=cfg.seed)
    for _ in range(initial):
        fleet.add_pod(0.0, warm=True)
    desired = initial
    scale_events = 0
    series = Series()
    reqs = trace.requests
    i = 0
    next_decision = policy.interval_s
    next_plot = 0.0
    recent: list[float] = []
    t = 0
    hard_end = duration + 1800.0
    while True:
        t += 1
        while i < len(reqs) and reqs[i].arrival < t:
            fleet.arrive(reqs[i])
            i += 1
        fleet.advance(float(t))
        if isinstance(policy, Kpa):
            policy.sample(float(t), fleet.concurrency(float(t)))
        if t >= next_decision and t <= duration:
            next_decision += policy.interval_s
            sig = fleet.signals(float(t))
            live = fleet.live()
            view = View(
                now=float(t),
                replicas=desired,
                ready=len(fleet.ready_pods(float(t))),
                signals=sig,
                gpu_util_all_pods=fleet.gpu_util(live),
                queue_length=sig.values.get(Signal.QUEUE_DEPTH, 0.0),
                concurrency=fleet.concurrency(float(t)),
            )
            want = policy.decide(view)
            if want != desired:
                scale_events += 1
                desired = want
                fleet.scale_to(desired, float(t))
        if t >= next_plot and t <= duration:
            next_plot += PLOT_STEP_S
            lo_t = t - 60.0
            recent = [a for a in arrivals[max(0, i - 5000) : i] if a >= lo_t]
            series.t.append(float(t))
            series.load_rps.append(len(recent) / 60.0)
            series.desired.append(desired)
            series.ready.append(len(fleet.ready_pods(float(t))))
            series.ttft_p99.append(fleet.ttft_hist.quantile(0.99, float(t)))
        if t >= duration and i >= len(reqs) and fleet.pending == 0:
            break
        if t >= hard_end:
            break
    return summarize(cfg, spec, trace, fleet, scale_events, policy, duration), series


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def summarize(
    cfg: Config,
    spec: ScalingSpec,
    trace: T.Trace,
    fleet: Fleet,
    scale_events: int,
    policy: Policy,
    duration: float,
) -> dict[str, Any]:
    slo_ttft, slo_tpot = spec.slo.ttft_p99_seconds, spec.slo.tpot_p99_seconds
    outs = fleet.outcomes
    n = len(trace.requests)
    done = [o for o in outs if o.ok]
    ttft_ok = sum(1 for o in done if o.ttft is not None and o.ttft <= slo_ttft)
    tpot_ok = sum(1 for o in done if o.tpot is None or o.tpot <= slo_tpot)
    both = sum(
        1
        for o in done
        if o.ttft is not None and o.ttft <= slo_ttft and (o.tpot is None or o.tpot <= slo_tpot)
    )
    ttfts = [o.ttft for o in done if o.ttft is not None]
    tpots = [o.tpot for o in done if o.tpot is not None]
    gpu_s = fleet.gpu_seconds(duration)
    res: dict[str, Any] = {
        "slo_attainment": both / n if n else 1.0,
        "gpu_hours": gpu_s / 3600.0,
        "ttft_slo_attainment": ttft_ok / n if n else 1.0,
        "tpot_slo_attainment": tpot_ok / n if n else 1.0,
        "scale_events": scale_events,
        "ttft_p50_s": _pct(ttfts, 0.5),
        "ttft_p99_s": _pct(ttfts, 0.99),
        "tpot_p50_s": _pct(tpots, 0.5),
        "tpot_p99_s": _pct(tpots, 0.99),
        "requests": n,
        "completed": len(done),
        "failed": n - len(done),
        "preemptions": fleet.preemptions,
        "mean_replicas": gpu_s / duration / cfg.preset.gpus,
        "peak_replicas": _peak_live(fleet),
    }
    if isinstance(policy, Ours):
        res["scale_reasons"] = dict(sorted(policy.reasons.items()))
    return res


def _peak_live(fleet: Fleet) -> int:
    edges: list[tuple[float, int]] = []
    for p in fleet.pods:
        edges.append((p.created, 1))
        if p.gone is not None:
            edges.append((p.gone, -1))
    edges.sort(key=lambda e: (e[0], e[1]))
    cur = peak = 0
    for _, d in edges:
        cur += d
        peak = max(peak, cur)
    return peak


# ------------------------------------------------------------------------------ driver --
def _job(
    args: tuple[Config, str, str | None, str, float],
) -> tuple[str, str, dict[str, Any], Series, float]:
    cfg, trace_name, azure, policy_name, cap = args
    trace = build_traces(cfg, azure)[trace_name]
    t0 = time.perf_counter()
    res, series = simulate(cfg, trace, policy_name, cap)
    return trace_name, policy_name, res, series, time.perf_counter() - t0


def _calibrate_job(args: tuple[Config, str, str | None]) -> tuple[str, float]:
    cfg, trace_name, azure = args
    return trace_name, calibrate(cfg, build_traces(cfg, azure)[trace_name])


def run(
    cfg: Config, azure: str | None, out: Path, jobs: int, log: Callable[[str], None]
) -> dict[str, Any]:
    t_start = time.perf_counter()
    traces = build_traces(cfg, azure)
    log(
        f"==> bench: {len(traces)} traces x {len(POLICIES)} policies, preset {cfg.preset_name}, "
        f"cold start {cfg.cold_start:.0f}s, {jobs} worker(s)"
    )
    pool = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else None
    try:
        cal_args = [(cfg, name, azure) for name in traces]
        cal = dict(pool.map(_calibrate_job, cal_args) if pool else map(_calibrate_job, cal_args))
        for name, c in cal.items():
            log(f"    capacity of one replica on {name}: {c:.2f} req/s at the SLOs")
        args = [(cfg, tn, azure, pn, cal[tn]) for tn in traces for pn in POLICIES]
        results: dict[str, dict[str, Any]] = {tn: {} for tn in traces}
        all_series: dict[str, dict[str, Series]] = {tn: {} for tn in traces}
        it = pool.map(_job, args) if pool else map(_job, args)
        for tn, pn, res, series, wall in it:
            results[tn][pn] = res
            all_series[tn][pn] = series
            log(
                f"    {tn:<11} {pn:<14} slo {res['slo_attainment']:.3f}  "
                f"gpu-h {res['gpu_hours']:.1f}  events {res['scale_events']:>3}  ({wall:.1f}s)"
            )
    finally:
        if pool:
            pool.shutdown()
    runtime = time.perf_counter() - t_start
    doc = report(cfg, traces, cal, results, runtime)
    out.mkdir(parents=True, exist_ok=True)
    (out / "autoscale.json").write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    for tn, per in all_series.items():
        plot(tn, per, cfg, out / f"autoscale_{tn}.png")
    (out / "summary.md").write_text(summary_md(doc))
    log(f"==> wrote {out}/autoscale.json, summary.md and {len(traces)} plots in {runtime:.0f}s")
    return doc


def report(
    cfg: Config,
    traces: dict[str, T.Trace],
    cal: dict[str, float],
    results: dict[str, dict[str, Any]],
    runtime: float,
) -> dict[str, Any]:
    spec = cfg.scaling_spec()
    p = cfg.preset
    compare: dict[str, Any] = {}
    for tn, per in results.items():
        o, h = per["ours"], per["hpa"]
        compare[tn] = {
            "slo_attainment_ours_minus_hpa": o["slo_attainment"] - h["slo_attainment"],
            "gpu_hours_ours_over_hpa": o["gpu_hours"] / h["gpu_hours"] if h["gpu_hours"] else None,
            "ours_ahead": o["slo_attainment"] > h["slo_attainment"]
            and o["gpu_hours"] <= h["gpu_hours"] * 1.0001,
        }
    medians = {
        pn: {
            "slo_attainment": statistics.median(
                results[tn][pn]["slo_attainment"] for tn in results
            ),
            "gpu_hours": statistics.median(results[tn][pn]["gpu_hours"] for tn in results),
        }
        for pn in POLICIES
    }
    attributions = sorted({tr.attribution for tr in traces.values() if tr.attribution})
    return {
        "traces": results,
        "comparison_ours_vs_hpa": compare,
        "medians": medians,
        "setup": {
            "preset": p.describe(),
            "gpus_per_replica": p.gpus,
            "cold_start_s": round(cfg.cold_start, 1),
            "min_replicas": cfg.min_replicas,
            "max_replicas": cfg.max_replicas,
            "slo": {"ttft_s": spec.slo.ttft_p99_seconds, "tpot_s": spec.slo.tpot_p99_seconds},
            "ours_spec": spec.model_dump(by_alias=True),
            "hpa_gpu_utilization_target": cfg.hpa_gpu_target,
            "keda_queue_target_per_replica": spec.targets.queue_depth_per_replica,
            "kpa_target_concurrency": cfg.kpa_target,
            "replica_capacity_rps": {k: round(v, 3) for k, v in cal.items()},
            "traces": {
                tn: {
                    "requests": len(tr),
                    "mean_rate_rps": round(len(tr) / trace_duration(cfg, tr), 3),
                    "meta": {k: v for k, v in tr.meta.items() if k != "bursts"},
                }
                for tn, tr in traces.items()
            },
            "seed": cfg.seed,
            "runtime_s": round(runtime, 1),
            "command": "make bench",
        },
        "attribution": attributions,
    }


# ------------------------------------------------------------------------------ output --
_COLOURS = {
    "ours": "tab:red",
    "ours_projected": "tab:pink",
    "hpa": "tab:blue",
    "keda": "tab:orange",
    "kpa": "tab:green",
    "static_peak": "tab:gray",
    "oracle": "tab:purple",
}


def plot(trace_name: str, per: dict[str, Series], cfg: Config, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    first = next(iter(per.values()))
    mins = [x / 60.0 for x in first.t]
    axes[0].plot(mins, first.load_rps, color="black", lw=1)
    axes[0].set_ylabel("load (req/s, 1 min)")
    axes[0].set_title(f"{trace_name}: {cfg.preset_name}, cold start {cfg.cold_start:.0f}s")
    for pn, s in per.items():
        m = [x / 60.0 for x in s.t]
        axes[1].step(m, s.desired, where="post", color=_COLOURS.get(pn), label=pn, lw=1.2)
        ttft = [v if v == v else float("nan") for v in s.ttft_p99]
        axes[2].plot(m, ttft, color=_COLOURS.get(pn), label=pn, lw=1)
    axes[1].set_ylabel("replicas (desired)")
    axes[1].legend(ncol=6, fontsize=8, loc="upper left")
    slo = cfg.scaling_spec().slo.ttft_p99_seconds
    axes[2].axhline(slo, color="black", ls="--", lw=0.8, label="TTFT SLO")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("TTFT p99 (s, 1 min)")
    axes[2].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def summary_md(doc: dict[str, Any]) -> str:
    s = doc["setup"]
    lines = [
        "# Autoscaling benchmark",
        "",
        f"Command: `{s['command']}` (`python -m bench.autoscale`), seed {s['seed']}, "
        f"runtime {s['runtime_s']}s.",
        f"Engine: `{s['preset']['name']}` ({s['gpus_per_replica']} GPUs per replica), "
        f"cold start {s['cold_start_s']}s for every policy, replicas {s['min_replicas']}.."
        f"{s['max_replicas']}. SLO per request: TTFT <= {s['slo']['ttft_s']}s and "
        f"TPOT <= {s['slo']['tpot_s']}s.",
        "Simulated: the engine model and the fleet run under a virtual clock (no Kubernetes, "
        "no Prometheus); `ours` is the operator's `scaling.decide`, unchanged.",
        "",
    ]
    for tn, per in doc["traces"].items():
        meta = s["traces"][tn]
        lines += [
            f"## {tn} ({meta['requests']} requests, {meta['mean_rate_rps']} req/s mean; "
            f"one replica sustains {s['replica_capacity_rps'][tn]} req/s at the SLOs)",
            "",
            "| policy | SLO attainment | TTFT ok | TPOT ok | GPU-hours | mean replicas | "
            "scale events | TTFT p50 s | TTFT p99 s | TPOT p99 s | failed |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for pn, r in per.items():
            lines.append(
                f"| {pn} | {_f(r['slo_attainment'])} | {_f(r['ttft_slo_attainment'])} | "
                f"{_f(r['tpot_slo_attainment'])} | {_f(r['gpu_hours'], 1)} | "
                f"{_f(r['mean_replicas'], 2)} | {r['scale_events']} | {_f(r['ttft_p50_s'])} | "
                f"{_f(r['ttft_p99_s'])} | {_f(r['tpot_p99_s'])} | {r['failed']} |"
            )
        c = doc["comparison_ours_vs_hpa"][tn]
        lines += [
            "",
            f"ours vs hpa: SLO attainment {c['slo_attainment_ours_minus_hpa']:+.3f}, "
            f"GPU-hours x{_f(c['gpu_hours_ours_over_hpa'], 2)}; "
            f"ours ahead at no more GPU-hours: {'yes' if c['ours_ahead'] else 'NO'}.",
            f"![{tn}](autoscale_{tn}.png)",
            "",
        ]
    lines += [
        "## Medians over traces",
        "",
        "| policy | SLO attainment | GPU-hours |",
        "| --- | --- | --- |",
    ]
    for pn, m in doc["medians"].items():
        lines.append(f"| {pn} | {_f(m['slo_attainment'])} | {_f(m['gpu_hours'], 1)} |")
    mo, mh = doc["medians"]["ours"], doc["medians"]["hpa"]
    lines += [
        "",
        f"Median ours / hpa: SLO attainment {mo['slo_attainment']:.3f} vs "
        f"{mh['slo_attainment']:.3f}; GPU-hours ratio "
        f"{(mo['gpu_hours'] / mh['gpu_hours']) if mh['gpu_hours'] else float('nan'):.2f}.",
        "",
        "## Attribution",
        "",
    ]
    lines += [f"- {a}" for a in doc["attribution"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.autoscale", description=__doc__)
    ap.add_argument("--out", default="bench/results", help="output folder")
    ap.add_argument(
        "--azure",
        default=os.environ.get("DEEPSEEK_AZURE_TRACE", DEFAULT_AZURE),
        help="Azure LLM inference trace CSV (skipped when absent); env DEEPSEEK_AZURE_TRACE",
    )
    ap.add_argument("--preset", default=Config.preset_name)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--seed", type=int, default=Config.seed)
    ap.add_argument("--duration", type=float, default=Config.duration_s, help="seconds per trace")
    ap.add_argument("--max-replicas", type=int, default=Config.max_replicas)
    ap.add_argument("--cold-start", type=float, default=None, help="seconds; default: preset's")
    a = ap.parse_args(argv)
    cfg = Config(
        preset_name=a.preset,
        seed=a.seed,
        duration_s=a.duration,
        max_replicas=a.max_replicas,
        cold_start_s=a.cold_start,
    )
    run(cfg, a.azure, Path(a.out), a.jobs, lambda m: print(m, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
