"""Autoscaling benchmark: replay traces under a virtual clock through the operator's own policy
(`deepseek_operator.scaling.decide`) and the usual baselines, on the simulated vLLM engine.

    python -m bench.autoscale [--quick] [--jobs 2] [--azure PATH] [--out bench/results]

Writes `autoscale.json`, `summary.md` and one PNG per trace into the output folder. See
bench/README.md for what is modelled and how to read the numbers.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from deepseek_operator.api.spec import ScalingSpec, checkpoint_is_moe
from deepseek_operator.signals import Signal

from testbed.sim import traces as T
from testbed.sim.engine import EngineModel, SimRequest
from testbed.sim.presets import EnginePreset, preset

from .fleet import LIMIT_LAG_S, Fleet, Outcome
from .policies import (
    Floor,
    Hpa,
    Keda,
    Kpa,
    Oracle,
    Ours,
    Policy,
    Ratchet,
    Reactive,
    Static,
    View,
    need_series,
)

REPO = Path(__file__).resolve().parents[1]
# the shared trace, found relative to the repository (the checkout's sibling `shared/`)
DEFAULT_AZURE = REPO.parent / "shared" / "traces" / "AzureLLMInferenceTrace_conv.csv"
POLICIES = (
    "ours",
    "hpa",
    "keda",
    "kpa",
    "static_peak",
    "static_history",
    "oracle",
)
# references run only when asked for (--policies): reaction alone, with the oracle's capacity
REFERENCES = ("reactive", "ratchet")
PLOT_STEP_S = 15.0
PLOT_WINDOW_S = 60.0  # the plots' load and misses count the arrivals of the last minute
DOMINANCE_MARGIN = 0.005  # SLO attainment a policy must gain to dominate at no more GPU-hours


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
    warmup_s: float = 1800.0  # a preceding stretch of the same load every policy runs on (a
    # periodic load's: at least its period)
    day_s: float = 86400.0  # the day-long trace
    day_mean_rate: float = 8.0
    # The engine pod's admission gate for every policy (`--admission N,D`: the deployment's
    # spec.engine.admission {maxRunning: N, maxWaitSeconds: D}): each replica runs at most N
    # requests at once (the rest wait: oldest first, newest first once the oldest has waited
    # D / 2, as the gate serves them), and one not started after D seconds
    # is answered 503 (failed). Calibration (static peak's and the oracle's size) is without it.
    admission: tuple[int, float] | None = None
    # `ours` as the operator runs it with `spec.engine.admission: {}` ("learned", unless
    # `admission` gives every policy the fixed gate): its pods' gate runs the limit the
    # operator learns (`Ours.learn_limit`), reaching them LIMIT_LAG_S after each publication,
    # and sheds at the TTFT SLO (maxWaitSeconds' default); "off": plain vLLM pods, as the
    # other policies'.
    ours_admission: str = "learned"

    @property
    def learns_limit(self) -> bool:
        """`ours` runs the learned admission limit (not with the fixed gate of `admission`)."""
        return self.ours_admission == "learned" and self.admission is None

    @property
    def preset(self) -> EnginePreset:
        return preset(self.preset_name)

    @property
    def serving_preset(self) -> EnginePreset:
        """The preset the fleet's replicas run: with `admission`, its batch capped at the
        gate's maxRunning (vLLM's queue then holds the rest, in the gate's order:
        bench/fleet.py)."""
        p = self.preset
        return p if self.admission is None else replace(p, max_num_seqs=self.admission[0])

    @property
    def cold_start(self) -> float:
        return self.preset.load_time_s if self.cold_start_s is None else self.cold_start_s

    def scaling_spec(self) -> ScalingSpec:
        """The spec our policy runs with: the CRD's defaults, min/max for the benchmark."""
        return ScalingSpec(min_replicas=self.min_replicas, max_replicas=self.max_replicas)


@dataclass(frozen=True)
class FileTrace:
    """A trace file in the Azure LLM trace format: its first `window_s` seconds (None: all of
    it) at `multiplier` times its rate."""

    path: str
    multiplier: float = 1.0
    window_s: float | None = None


# ------------------------------------------------------------------------------ traces --
SYNTHETIC = ("bursty", "diurnal", "step", "diurnal_2h", "day_long")
# A periodic load's warm-up starts this long before the whole period it gives: an operator's
# first minutes read no rates yet (Prometheus needs a rate window of samples), so a warm-up of
# exactly one period left its profile a few minutes short of one at the measured start
WARMUP_LEAD_S = 300.0
PRESET_ONLY = ("day_long",)  # run at the preset's cold start only, unless --sweep-day


def file_traces(cfg: Config, azure: str | None, extra: dict[str, str]) -> dict[str, FileTrace]:
    """The public trace (30 minutes and its full length, at 3x its rate) when its file is
    there, and every `--trace NAME=PATH` at its own rate and length."""
    out: dict[str, FileTrace] = {}
    if azure and Path(azure).exists():
        out["azure_conv"] = FileTrace(azure, cfg.azure_rate_multiplier, cfg.duration_s)
        out["azure_conv_full"] = FileTrace(azure, cfg.azure_rate_multiplier, None)
    for name, path in extra.items():
        out[name] = FileTrace(path, 1.0, None)
    return out


def joined(name: str, warm: T.Trace, main: T.Trace, warmup_s: float, duration: float) -> T.Trace:
    """One trace: `warm` on [0, warmup_s), then `main` shifted by warmup_s (measured)."""
    reqs = [
        SimRequest("", r.prompt_tokens, r.max_tokens, r.arrival, r.finish_reason)
        for r in warm.requests
        if r.arrival < warmup_s
    ] + [
        SimRequest("", r.prompt_tokens, r.max_tokens, r.arrival + warmup_s, r.finish_reason)
        for r in main.requests
        if r.arrival < duration
    ]
    for i, r in enumerate(reqs):
        r.id = f"{name}-{i:07d}"
    meta = dict(main.meta, warmup_s=warmup_s, duration_s=duration)
    return T.Trace(name, reqs, main.attribution, meta)


def build_trace(cfg: Config, name: str, files: dict[str, FileTrace]) -> T.Trace:
    """Trace `name` with its warm-up: requests on [0, warmup_s) are the preceding stretch of
    the same load (every policy runs on it; nothing is counted), the measured part follows.
    Synthetic traces continue their generator backwards (a diurnal's phase, the bursts' process,
    the step's low rate); a file trace is played as a loop (the stretch before it is its end).
    A load with a period (a day) is warmed on one whole period at least, the day before, as
    an operator that ran yesterday has seen it: the period and WARMUP_LEAD_S before it, the
    minutes an operator reads no rates yet."""
    d, s, w = cfg.duration_s, cfg.seed, cfg.warmup_s
    whole = w + d
    tr: T.Trace
    if name == "bursty":
        tr = T.bursty(8.0, whole, burst_rate=24.0, mean_gap_s=600.0, burst_s=300.0, seed=s)
        return joined(name, tr, T.window(tr, w, whole), w, d)
    if name == "step":
        tr = T.step(6.0, 24.0, whole, step_at=w + d / 3, step_back_at=w + 2 * d / 3, seed=s)
        return joined(name, tr, T.window(tr, w, whole), w, d)
    if name in ("diurnal", "diurnal_2h", "day_long"):
        # diurnal_2h: two daily cycles compressed to 4x the duration, long enough for scaling
        # down to matter; day_long: 24 hours of virtual time
        period, length = {"diurnal": (d, d), "diurnal_2h": (2 * d, 4 * d)}.get(
            name, (cfg.day_s, cfg.day_s)
        )

        def load(span: float, start: float, seed: int) -> T.Trace:
            """The load over [start, start + span), seconds from the measured part's start (at
            the period's trough)."""
            phase = -math.pi / 2 + 2 * math.pi * start / period
            if name == "day_long":
                return T.daily(cfg.day_mean_rate, span, period_s=period, phase=phase, seed=seed)
            return T.diurnal(12.0, span, amplitude=0.7, period_s=period, phase=phase, seed=seed)

        tr = load(w + length, -w, s)
        main = T.window(tr, w, w + length)
        seen = period + WARMUP_LEAD_S  # the warm-up a periodic load needs at least
        before = seen - w
        if before > 0:
            # The day before: the rest of the period (and the lead), drawn apart (its own
            # seed), so that the warm-up given and the measured part are the load they are
            # without it.
            earlier = load(before, -seen, s * 1000 + 1)
            tr = T.Trace(
                name,
                [*earlier.requests, *(replace(r, arrival=r.arrival + before) for r in tr.requests)],
            )
            w = seen
        return joined(name, tr, main, w, length)
    f = files[name]
    src = T.load_azure_trace(f.path, name=name)
    if f.window_s is not None:
        src = T.window(src, 0.0, f.window_s, name=name)
    if f.multiplier != 1.0:
        src = T.multiply_rate(src, f.multiplier, seed=s)
    src = T.Trace(src.name, src.requests, src.attribution, {**src.meta, "source": shown(f.path)})
    length = f.window_s if f.window_s is not None else math.ceil(src.duration) + 1.0
    warm = T.window(src, max(0.0, length - w), length)
    shift = w - (length - max(0.0, length - w))  # a trace shorter than the warm-up starts later
    warm = T.Trace(name, [replace(r, arrival=r.arrival + shift) for r in warm.requests])
    return joined(name, warm, src, w, length)


def shown(path: str) -> str:
    """A trace file's path as the results record it: relative to the repository when it lies
    beside it (../shared/traces/...), never one machine's absolute path for those."""
    p = Path(path).resolve()
    if p.is_relative_to(REPO.parent):
        return os.path.relpath(p, REPO)
    return path


def trace_duration(cfg: Config, trace: T.Trace) -> float:
    return float(cast("float", trace.meta.get("duration_s", cfg.duration_s)))


def trace_warmup(trace: T.Trace) -> float:
    return float(cast("float", trace.meta.get("warmup_s", 0.0)))


def measured(trace: T.Trace) -> list[SimRequest]:
    w = trace_warmup(trace)
    return [r for r in trace.requests if r.arrival >= w]


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
    lengths = [(r.prompt_tokens, r.max_tokens) for r in measured(trace)]
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
    # share of the requests arriving in the minute before each point that missed an SLO or
    # failed (filled in once the run is over: a request's outcome comes after its arrival)
    missed: list[float] = field(default_factory=list)


def _numbered(name: str, prefix: str, kind: Callable[[str], float]) -> float | None:
    """The number after `prefix` in a reference's name (`margin1.5`, `floor4`) as `kind`
    reads it, at least 1; else None."""
    if not name.startswith(prefix):
        return None
    try:
        x = kind(name.removeprefix(prefix))
    except ValueError:
        return None
    return x if x >= 1 else None


def margin_of(name: str) -> float | None:
    """The margin of a `marginM` reference (reaction sized for M x the last minute's rate),
    else None."""
    return _numbered(name, "margin", float)


def floor_of(name: str) -> int | None:
    """The floor of a `floorK` reference (reaction, never fewer than K replicas), else None."""
    k = _numbered(name, "floor", int)
    return None if k is None else int(k)


def make_policy(
    name: str,
    cfg: Config,
    need: list[int],
    static_n: int,
    history_n: int,
    period_s: float | None = None,
) -> Policy:
    lo, hi = cfg.min_replicas, cfg.max_replicas
    spec = cfg.scaling_spec()
    if name == "ours":
        if period_s:  # the load's period, as its owner would set it (a day, compressed)
            spec = spec.model_copy(update={"seasonal_period_seconds": round(period_s)})
        moe = checkpoint_is_moe(cfg.preset.model.hf_ids[0])
        return Ours(spec, moe=moe, learn_limit=cfg.learns_limit)
    if name == "hpa":
        return Hpa(lo, hi, cfg.hpa_gpu_target)
    if name == "keda":
        return Keda(lo, hi, spec.targets.queue_depth_per_replica)
    if name == "kpa":
        return Kpa(lo, hi, cfg.kpa_target)
    if name == "static_peak":
        return Static(static_n)
    if name == "static_history":
        return Static(history_n, name="static_history")
    if name == "oracle":
        return Oracle(need, PLOT_STEP_S, cfg.cold_start, 60.0)
    if name == "reactive":
        return Reactive(need, PLOT_STEP_S, 60.0)
    if name == "ratchet":
        return Ratchet(need, PLOT_STEP_S, 60.0)
    if (k := floor_of(name)) is not None:
        return Floor(need, PLOT_STEP_S, min(k, cfg.max_replicas))
    raise ValueError(name)


def simulate(
    cfg: Config, trace: T.Trace, policy_name: str, capacity_rps: float
) -> tuple[dict[str, Any], Series]:
    """Replay `trace` (warm-up, then the measured part) through one policy. Every policy starts
    at the beginning of the warm-up; only the measured part counts (requests arriving in it,
    GPU-seconds within it, scale events within it)."""
    spec = cfg.scaling_spec()
    arrivals = [r.arrival for r in trace.requests]
    warmup = trace_warmup(trace)
    duration = trace_duration(cfg, trace)
    end = warmup + duration
    need = need_series(
        arrivals, end, capacity_rps, PLOT_STEP_S, 60.0, cfg.min_replicas, cfg.max_replicas
    )
    split = int(warmup // PLOT_STEP_S)
    static_n = max(need[split:])  # the future peak: a reference nobody can know
    history_n = max(need[:split]) if split > 0 else static_n  # the warm-up's peak
    period = trace.meta.get("period_s")
    period_s = float(cast("float", period)) if period is not None else None
    m = margin_of(policy_name)
    if m is not None:  # reaction with a fixed margin: the need at capacity / m
        policy: Policy = Reactive(
            need_series(
                arrivals, end, capacity_rps / m, PLOT_STEP_S, 60.0, cfg.min_replicas,
                cfg.max_replicas,
            ),
            PLOT_STEP_S, 60.0, name=policy_name,
        )  # fmt: skip
    else:
        policy = make_policy(policy_name, cfg, need, static_n, history_n, period_s)
    first = sum(1 for a in arrivals if a < 300.0) / 300.0
    if isinstance(policy, Static):
        initial = policy.replicas
    elif isinstance(policy, Oracle):
        initial = policy.at(0.0)
    else:
        initial = min(max(math.ceil(first / capacity_rps), cfg.min_replicas), cfg.max_replicas)
    if isinstance(policy, Hpa | Keda):
        # the HPA has been running at the initial size (as ours starts from it, see _history)
        policy.core.recommendations.append((0.0, initial))
    learned = isinstance(policy, Ours) and policy.learn_limit
    gate_wait: float | None = None  # plain vLLM pods
    if cfg.admission is not None:
        gate_wait = cfg.admission[1]
    elif learned:  # maxWaitSeconds unset: the TTFT SLO
        gate_wait = spec.slo.ttft_p99_seconds
    fleet = Fleet(
        cfg.serving_preset,
        cfg.cold_start,
        seed=cfg.seed,
        gate_wait_s=gate_wait,
        fixed_gate=cfg.admission is not None,
    )
    for _ in range(initial):
        fleet.add_pod(0.0, warm=True)
    desired = initial
    scale_events = 0
    series = Series()
    reqs = trace.requests
    i = 0
    next_decision = policy.interval_s
    next_plot = warmup
    published = 0  # of the learned admission limits (`Ours.limits`)
    t = 0
    hard_end = end + 1800.0
    while True:
        t += 1
        while i < len(reqs) and reqs[i].arrival < t:
            fleet.arrive(reqs[i])
            i += 1
        fleet.advance(float(t))
        if isinstance(policy, Kpa):
            policy.sample(float(t), fleet.concurrency(float(t)))
        if t >= next_decision and t <= end:
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
            if learned and isinstance(policy, Ours):  # what this decision published
                for at, limit in policy.limits[published:]:
                    fleet.publish_limit(at, limit)
                published = len(policy.limits)
            if want != desired:
                if t >= warmup:
                    scale_events += 1
                desired = want
                fleet.scale_to(desired, float(t))
        if t >= next_plot and t <= end:
            next_plot += PLOT_STEP_S
            lo_t = t - PLOT_WINDOW_S
            recent = [a for a in arrivals[max(0, i - 5000) : i] if a >= lo_t]
            series.t.append(float(t) - warmup)
            series.load_rps.append(len(recent) / PLOT_WINDOW_S)
            series.desired.append(desired)
            series.ready.append(len(fleet.ready_pods(float(t))))
            series.ttft_p99.append(fleet.ttft_hist.quantile(0.99, float(t)))
        if t >= end and i >= len(reqs) and fleet.pending == 0:
            break
        if t >= hard_end:
            break
    res = summarize(cfg, spec, trace, fleet, scale_events, policy, warmup, end)
    res["static_replicas"] = policy.replicas if isinstance(policy, Static) else None
    series.missed = missed_by_minute(
        [(o.arrival, _met(o, spec)) for o in fleet.outcomes if o.arrival >= warmup],
        [warmup + x for x in series.t],
    )
    return res, series


def _met(o: Outcome, spec: ScalingSpec) -> bool:
    """The request completed within both SLOs (as `summarize` counts it)."""
    return bool(
        o.ok
        and o.ttft is not None
        and o.ttft <= spec.slo.ttft_p99_seconds
        and (o.tpot is None or o.tpot <= spec.slo.tpot_p99_seconds)
    )


def missed_by_minute(outcomes: list[tuple[float, bool]], at: list[float]) -> list[float]:
    """For each time in `at`, the share of the requests arriving in the PLOT_WINDOW_S before it
    that missed (outcomes: (arrival, met)); NaN where none arrived."""
    ordered = sorted(outcomes)
    arrivals = [a for a, _ in ordered]
    misses = [0]
    for _, met in ordered:
        misses.append(misses[-1] + (not met))
    out = []
    for t in at:
        lo = bisect.bisect_left(arrivals, t - PLOT_WINDOW_S)
        hi = bisect.bisect_left(arrivals, t)
        out.append((misses[hi] - misses[lo]) / (hi - lo) if hi > lo else float("nan"))
    return out


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
    start: float,
    end: float,
) -> dict[str, Any]:
    slo_ttft, slo_tpot = spec.slo.ttft_p99_seconds, spec.slo.tpot_p99_seconds
    outs = [o for o in fleet.outcomes if o.arrival >= start]
    n = sum(1 for r in trace.requests if r.arrival >= start)
    done = [o for o in outs if o.ok]
    ttft_ok = sum(1 for o in done if o.ttft is not None and o.ttft <= slo_ttft)
    tpot_ok = sum(1 for o in done if o.tpot is None or o.tpot <= slo_tpot)
    both = sum(1 for o in done if _met(o, spec))
    ttfts = [o.ttft for o in done if o.ttft is not None]
    tpots = [o.tpot for o in done if o.tpot is not None]
    gpu_s = fleet.gpu_seconds(end, since=start)
    res: dict[str, Any] = {
        "slo_attainment": both / n if n else 1.0,
        "gpu_hours": gpu_s / 3600.0,
        "gap_closed": None,  # filled in by report(), against static_peak and the oracle
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
        "mean_replicas": gpu_s / (end - start) / cfg.preset.gpus,
        "peak_replicas": _peak_live(fleet, start),
    }
    if isinstance(policy, Ours):
        res["scale_reasons"] = dict(sorted(policy.reasons.items()))
        if policy.learn_limit:
            # the learned admission limit: in force at the pods when the measured part starts,
            # published within it ([seconds after the warm-up, limit]), the last one published
            res["admission_limit_at_start"] = fleet.limit_at(start)
            res["admission_limits"] = [
                [round(at - start, 1), n] for at, n in policy.limits if start <= at <= end
            ]
            res["admission_limit_last"] = policy.written
    return res


def _peak_live(fleet: Fleet, start: float) -> int:
    edges: list[tuple[float, int]] = []
    for p in fleet.pods:
        edges.append((p.created, 1))
        if p.gone is not None:
            edges.append((p.gone, -1))
    edges.sort(key=lambda e: (e[0], e[1]))
    cur = peak = 0
    for t, d in edges:
        cur += d
        if t >= start:
            peak = max(peak, cur)
    return max(peak, cur)


# ------------------------------------------------------------------------------ driver --
_TRACES: dict[tuple[Config, str, tuple[tuple[str, FileTrace], ...]], T.Trace] = {}


def _trace(cfg: Config, name: str, files: tuple[tuple[str, FileTrace], ...]) -> T.Trace:
    """The trace, built once per worker process (the cold start does not change it)."""
    key = (replace(cfg, cold_start_s=None), name, files)
    if key not in _TRACES:
        _TRACES.clear()
        _TRACES[key] = build_trace(cfg, name, dict(files))
    return _TRACES[key]


Files = tuple[tuple[str, FileTrace], ...]


def _job(
    args: tuple[Config, str, Files, str, float],
) -> tuple[float, str, str, dict[str, Any], Series, float]:
    cfg, trace_name, files, policy_name, cap = args
    trace = _trace(cfg, trace_name, files)
    t0 = time.perf_counter()
    res, series = simulate(cfg, trace, policy_name, cap)
    return cfg.cold_start, trace_name, policy_name, res, series, time.perf_counter() - t0


def _calibrate_job(args: tuple[Config, str, Files]) -> tuple[str, float]:
    cfg, trace_name, files = args
    return trace_name, calibrate(cfg, _trace(cfg, trace_name, files))


def cold_start_key(seconds: float) -> str:
    return str(round(seconds))


def run(
    cfg: Config,
    files: dict[str, FileTrace],
    out: Path,
    jobs: int,
    log: Callable[[str], None],
    *,
    cold_starts: list[float | None] | None = None,
    only: list[str] | None = None,
    policies: tuple[str, ...] = POLICIES,
    command: str = "make bench",
    sweep_day: bool = False,
    merge: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run, write autoscale.json, summary.md and the plots into `out`. With `merge` (an
    earlier autoscale.json), its results (cold start, trace and policy) not run here are kept
    in the JSON and the tables (the plots of traces not run are whatever `out` holds; a trace
    run here is plotted with this run's policies only)."""
    t_start = time.perf_counter()
    names = trace_names(files, only)
    fs: Files = tuple(sorted(files.items()))
    cfgs = [replace(cfg, cold_start_s=c) for c in (cold_starts or [None])]
    log(
        f"==> bench: {len(names)} traces x {len(policies)} policies x cold starts "
        f"{', '.join(f'{c.cold_start:.0f}s' for c in cfgs)}, preset {cfg.preset_name}, "
        f"warm-up {cfg.warmup_s:.0f}s (a periodic load's: its period and {WARMUP_LEAD_S:.0f}s "
        f"before it), {jobs} worker(s)"
    )
    pool = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else None
    keys = [cold_start_key(c.cold_start) for c in cfgs]
    results: dict[str, dict[str, dict[str, Any]]] = {k: {tn: {} for tn in names} for k in keys}
    all_series: dict[str, dict[str, dict[str, Series]]] = {
        k: {tn: {} for tn in names} for k in keys
    }
    traces: dict[str, T.Trace] = {}
    try:
        cal_args = [(cfg, name, fs) for name in names]
        cal = dict(pool.map(_calibrate_job, cal_args) if pool else map(_calibrate_job, cal_args))
        for name, c in cal.items():
            log(f"    capacity of one replica on {name}: {c:.2f} req/s at the SLOs")
        args = [
            (c, tn, fs, pn, cal[tn])
            for c, tn, pn in planned(cfgs, names, policies, sweep_day, merge is not None)
        ]
        it = pool.map(_job, args) if pool else map(_job, args)
        for cs, tn, pn, res, series, wall in it:
            k = cold_start_key(cs)
            results[k][tn][pn] = res
            all_series[k][tn][pn] = series
            log(
                f"    {k:>4}s {tn:<15} {pn:<14} slo {res['slo_attainment']:.3f}  "
                f"gpu-h {res['gpu_hours']:.1f}  events {res['scale_events']:>3}  ({wall:.1f}s)"
            )
        for tn in names:
            traces[tn] = _trace(cfg, tn, fs)
    finally:
        if pool:
            pool.shutdown()
    runtime = time.perf_counter() - t_start
    for k in keys:  # keep the policies' order in the tables; traces not run here are left out
        results[k] = {
            tn: {pn: per[pn] for pn in policies if pn in per}
            for tn, per in results[k].items()
            if per
        }
        all_series[k] = {tn: per for tn, per in all_series[k].items() if per}
    kept = merged_cold_starts(results, merge) if merge is not None else {}
    results = kept_with(results, kept)
    primary = (
        cold_start_key(cfg.cold_start) if cold_start_key(cfg.cold_start) in results else keys[0]
    )
    doc = report(cfg, traces, cal, results, primary, runtime, command)
    doc["setup"]["policies_run"] = list(policies)  # the plots show these (a merge keeps rows)
    if kept and merge is not None:
        doc = with_kept(doc, merge, kept)
    out.mkdir(parents=True, exist_ok=True)
    (out / "autoscale.json").write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    for k, per_trace in all_series.items():
        for tn, per in per_trace.items():
            suffix = "" if k == primary else f"_cs{k}"
            plot(tn, per, cfg, float(k), out / f"autoscale_{tn}{suffix}.png")
    for k, rows_by_trace in results.items():
        for tn, rows in rows_by_trace.items():
            if has_frontier(rows):
                suffix = "" if k == primary else f"_cs{k}"
                plot_frontier(tn, rows, float(k), out / f"frontier_{tn}{suffix}.png")
    (out / "summary.md").write_text(summary_md(doc))
    log(f"==> wrote {out}/autoscale.json, summary.md and plots in {runtime:.0f}s")
    return doc


def trace_names(files: dict[str, FileTrace], only: list[str] | None) -> list[str]:
    """The traces a run runs: the synthetic ones and the files, those in `only` if given."""
    return [n for n in (*SYNTHETIC, *files) if not only or n in only]


def planned(
    cfgs: list[Config],
    names: list[str],
    policies: tuple[str, ...],
    sweep_day: bool,
    merging: bool,
) -> list[tuple[Config, str, str]]:
    """The runs of a sweep, (config at its cold start, trace, policy), the longest traces
    first: they bound the wall time. The day-long trace at the preset's cold start only: at
    every cold start it alone would take longer than the rest of the sweep (`sweep_day` to
    run it at each); a merge that does not run the preset's keeps the earlier run's."""
    order = sorted(names, key=lambda n: -_expected_cost(cfgs[0], n))
    first = next((c for c in cfgs if c.cold_start_s is None), None if merging else cfgs[0])
    return [
        (c, tn, pn)
        for tn in order
        for c in cfgs
        if sweep_day or tn not in PRESET_ONLY or c is first
        for pn in policies
    ]


def kept_ours(
    runs: list[tuple[Config, str, str]], earlier: dict[str, Any]
) -> list[tuple[str, str]]:
    """(cold start key, trace) of the earlier run's `ours` results that a merge with these
    runs would keep."""
    ran: dict[str, dict[str, dict[str, Any]]] = {}
    for c, tn, pn in runs:
        ran.setdefault(cold_start_key(c.cold_start), {}).setdefault(tn, {})[pn] = None
    kept = merged_cold_starts(ran, earlier)
    return [(k, tn) for k, traces in kept.items() for tn, per in traces.items() if "ours" in per]


def merged_cold_starts(
    results: dict[str, dict[str, dict[str, Any]]], earlier: dict[str, Any]
) -> dict[str, dict[str, dict[str, Any]]]:
    """The results of an earlier autoscale.json that this run did not make, by cold start:
    {key: {trace: {policy: result}}}. A cold start or trace this run did not run is kept
    whole, and of a trace it ran, the policies it did not run: `--policies ours` re-runs ours
    alone, against the kept static_peak, oracle and HPA (their `gap_closed` and the
    acceptance are judged again with the rest)."""
    old = {cold_start_key(earlier["setup"]["cold_start_s"]): earlier["traces"]}
    old.update({k: j["traces"] for k, j in earlier.get("cold_starts", {}).items()})
    kept = {
        k: {
            tn: {pn: r for pn, r in per.items() if pn not in results.get(k, {}).get(tn, {})}
            for tn, per in traces.items()
        }
        for k, traces in old.items()
    }
    return {
        k: {tn: per for tn, per in traces.items() if per}
        for k, traces in kept.items()
        if any(traces.values())
    }


def trace_rank(name: str) -> tuple[int, int, str]:
    """The tables' order: the synthetic traces as SYNTHETIC lists them, then the files'."""
    return (0, SYNTHETIC.index(name), "") if name in SYNTHETIC else (1, 0, name)


def by_trace(*parts: dict[str, Any]) -> dict[str, Any]:
    """Per-trace dicts merged (a later one wins for a trace in both), in `trace_rank` order."""
    both = {tn: v for part in parts for tn, v in part.items()}
    return {tn: both[tn] for tn in sorted(both, key=trace_rank)}


def policy_rank(name: str) -> tuple[int, str]:
    """The tables' order of policies: as POLICIES and REFERENCES list them, then the rest
    (`marginM`) by name."""
    known = (*POLICIES, *REFERENCES)
    return (known.index(name), "") if name in known else (len(known), name)


def kept_with(
    results: dict[str, dict[str, dict[str, Any]]], kept: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """This run's results and the kept ones, by cold start (shortest first), the traces in
    `trace_rank` order, each trace's policies (this run's and the kept) in `policy_rank`
    order."""
    out = {}
    for k in sorted({*results, *kept}, key=float):
        old, new = kept.get(k, {}), results.get(k, {})
        both = {tn: {**old.get(tn, {}), **new.get(tn, {})} for tn in {*old, *new}}
        out[k] = by_trace(
            {tn: {pn: per[pn] for pn in sorted(per, key=policy_rank)} for tn, per in both.items()}
        )
    return out


def kept_sources(
    earlier: dict[str, Any], kept: dict[str, dict[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Which run made each kept result: [{"command", "runtime_s", "traces": {key: [trace]}}],
    the earlier run's own or, where that run kept them too, the run it kept them from."""
    setup = earlier["setup"]
    own = (setup.get("command"), setup.get("runtime_s"))
    older: dict[tuple[str, str], tuple[Any, Any]] = {}
    prior = setup.get("kept") or {}
    for src in prior.get("sources", []):
        for k, names in src["traces"].items():
            for tn in names:
                older[(k, tn)] = (src["command"], src["runtime_s"])
    for c in prior.get("cold_starts_s", []):  # the whole-cold-start form of earlier merges
        for tn in kept.get(cold_start_key(c), {}):
            older[(cold_start_key(c), tn)] = (prior.get("command"), prior.get("runtime_s"))
    by_run: dict[tuple[Any, Any], dict[str, list[str]]] = {}
    for k, traces in kept.items():
        for tn in sorted(traces, key=trace_rank):
            by_run.setdefault(older.get((k, tn), own), {}).setdefault(k, []).append(tn)
    return [
        {"command": cmd, "runtime_s": rt, "traces": traces} for (cmd, rt), traces in by_run.items()
    ]


def _expected_cost(cfg: Config, name: str) -> float:
    return {"day_long": cfg.day_s, "diurnal_2h": 4 * cfg.duration_s}.get(name, cfg.duration_s)


MEDIAN_GAP_BAR = 0.5  # the median trace: ours closes half the static-to-oracle gap or more
MEDIAN_ATTAINMENT_BAR = 0.99  # ... at this SLO attainment or more


def gap_closed(static: float, policy: float, oracle: float) -> float | None:
    """(static - policy) / (static - oracle) GPU-hours: 1 is the oracle's bill, 0 static peak's,
    negative more than static peak. None where the oracle saves nothing."""
    if static - oracle <= 1e-9:
        return None
    return (static - policy) / (static - oracle)


def dominated_by(per: dict[str, dict[str, Any]], who: str, by: str) -> bool:
    """`by` has SLO attainment >= who's + DOMINANCE_MARGIN at no more GPU-hours."""
    a, b = per[who], per[by]
    return bool(
        b["slo_attainment"] >= a["slo_attainment"] + DOMINANCE_MARGIN
        and b["gpu_hours"] <= a["gpu_hours"]
    )


def judge(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per cold start: gap_closed on every policy, ours against static peak and the HPA, the
    medians over traces and the acceptance checks."""
    compare: dict[str, Any] = {}
    verdicts: dict[str, Any] = {}
    for tn, per in results.items():
        if "static_peak" in per and "oracle" in per:
            s, o = per["static_peak"]["gpu_hours"], per["oracle"]["gpu_hours"]
            for r in per.values():
                r["gap_closed"] = gap_closed(s, r["gpu_hours"], o)
        if "ours" in per and "hpa" in per:
            o, h = per["ours"], per["hpa"]
            compare[tn] = {
                "slo_attainment_ours_minus_hpa": o["slo_attainment"] - h["slo_attainment"],
                "gpu_hours_ours_over_hpa": o["gpu_hours"] / h["gpu_hours"]
                if h["gpu_hours"]
                else None,
                "ours_ahead": o["slo_attainment"] > h["slo_attainment"]
                and o["gpu_hours"] <= h["gpu_hours"] * 1.0001,
            }
        if "ours" in per:
            verdicts[tn] = {
                f"dominated_by_{b}": dominated_by(per, "ours", b)
                for b in ("static_peak", "hpa")
                if b in per
            }
            if "static_peak" in per:
                verdicts[tn]["gpu_hours_le_static_peak"] = (
                    per["ours"]["gpu_hours"] <= per["static_peak"]["gpu_hours"] + 1e-9
                )
    # the medians of the policies run on every trace (a merge may keep some on a few only)
    pols = [
        pn
        for pn in (next(iter(results.values())) if results else {})
        if all(pn in per for per in results.values())
    ]
    medians = {
        pn: {
            "slo_attainment": statistics.median(
                results[tn][pn]["slo_attainment"] for tn in results
            ),
            "gpu_hours": statistics.median(results[tn][pn]["gpu_hours"] for tn in results),
            "gap_closed": _median_or_none(results[tn][pn].get("gap_closed") for tn in results),
        }
        for pn in pols
    }
    acceptance: dict[str, Any] = {"per_trace": verdicts}
    if "ours" in pols:
        gaps = sorted(
            (g, tn)
            for tn, r in results.items()
            if (g := r["ours"].get("gap_closed")) is not None
        )
        if gaps:
            g, tn = gaps[(len(gaps) - 1) // 2]
            att = results[tn]["ours"]["slo_attainment"]
            acceptance["median_trace"] = {
                "trace": tn,
                "gap_closed": g,
                "slo_attainment": att,
                # #16's bar on the median trace: half the gap or more at attainment >= 0.99
                "holds": bool(g >= MEDIAN_GAP_BAR and att >= MEDIAN_ATTAINMENT_BAR),
            }
        acceptance["all_hold"] = bool(
            all(
                not v.get("dominated_by_static_peak")
                and not v.get("dominated_by_hpa")
                and v.get("gpu_hours_le_static_peak", True)
                for v in verdicts.values()
            )
        )
    return {
        "traces": results,
        "comparison_ours_vs_hpa": compare,
        "medians": medians,
        "acceptance": acceptance,
    }


def _median_or_none(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def report(
    cfg: Config,
    traces: dict[str, T.Trace],
    cal: dict[str, float],
    results: dict[str, dict[str, dict[str, Any]]],
    primary: str,
    runtime: float,
    command: str,
) -> dict[str, Any]:
    spec = cfg.scaling_spec()
    p = cfg.preset
    judged = {k: judge(r) for k, r in results.items()}
    attributions = sorted({tr.attribution for tr in traces.values() if tr.attribution})
    return {
        **judged[primary],
        "cold_starts": {k: j for k, j in judged.items() if k != primary},
        "setup": {
            "preset": p.describe(),
            "gpus_per_replica": p.gpus,
            "cold_start_s": round(float(primary), 1),
            "cold_starts_s": [float(k) for k in results],
            "warmup_s": cfg.warmup_s,
            "min_replicas": cfg.min_replicas,
            "max_replicas": cfg.max_replicas,
            "slo": {"ttft_s": spec.slo.ttft_p99_seconds, "tpot_s": spec.slo.tpot_p99_seconds},
            "ours_spec": spec.model_dump(by_alias=True),
            "hpa_gpu_utilization_target": cfg.hpa_gpu_target,
            "keda_queue_target_per_replica": spec.targets.queue_depth_per_replica,
            "kpa_target_concurrency": cfg.kpa_target,
            "replica_capacity_rps": {k: round(v, 3) for k, v in cal.items()},
            "admission": admission_setup(cfg.admission),
            "ours_admission": ours_admission_setup(cfg),
            "traces": {
                tn: {
                    "requests": len(measured(tr)),
                    "duration_s": trace_duration(cfg, tr),
                    "mean_rate_rps": round(len(measured(tr)) / trace_duration(cfg, tr), 3),
                    "meta": {k: v for k, v in tr.meta.items() if k != "bursts"},
                }
                for tn, tr in traces.items()
            },
            "seed": cfg.seed,
            "runtime_s": round(runtime, 1),
            "command": command,
        },
        "attribution": attributions,
    }


# ------------------------------------------------------------------------------ output --
_COLOURS = {
    "ours": "tab:red",
    "hpa": "tab:blue",
    "keda": "tab:orange",
    "kpa": "tab:green",
    "static_peak": "tab:gray",
    "static_history": "tab:brown",
    "oracle": "tab:purple",
    "reactive": "tab:olive",
    "ratchet": "tab:cyan",
}


def plot(trace_name: str, per: dict[str, Series], cfg: Config, cold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(11, 11.5), sharex=True)
    first = next(iter(per.values()))
    span = first.t[-1] if first.t else 0.0
    unit, div = ("hours", 3600.0) if span > 4 * 3600 else ("minutes", 60.0)
    xs = [x / div for x in first.t]
    axes[0].plot(xs, first.load_rps, color="black", lw=0.8)
    axes[0].set_ylabel("load (req/s, 1 min)")
    axes[0].set_title(f"{trace_name}: {cfg.preset_name}, cold start {cold:.0f}s")
    for pn, s in per.items():
        m = [x / div for x in s.t]
        # ours on top and thicker: the others often hide it where they agree
        on_top = {"zorder": 5, "lw": 1.8} if pn == "ours" else {"zorder": 2, "lw": 1.0}
        axes[1].step(m, s.desired, where="post", color=_COLOURS.get(pn), label=pn, **on_top)
        ttft = [v if v == v else float("nan") for v in s.ttft_p99]
        axes[2].plot(m, ttft, color=_COLOURS.get(pn), label=pn, lw=0.8)
        if s.missed:
            axes[3].plot(m, s.missed, color=_COLOURS.get(pn), label=pn, **on_top)
    axes[1].set_ylabel("replicas (desired)")
    axes[1].legend(ncol=8, fontsize=8, loc="upper left")
    slo = cfg.scaling_spec().slo.ttft_p99_seconds
    axes[2].axhline(slo, color="black", ls="--", lw=0.8, label="TTFT SLO")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("TTFT p99 (s, 1 min)")
    axes[3].set_ylim(-0.02, 1.02)
    axes[3].set_ylabel("share missing the SLO\n(arrivals of 1 min)")
    axes[3].set_xlabel(f"{unit} (after the warm-up)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def has_frontier(rows: dict[str, dict[str, Any]]) -> bool:
    """Whether a trace's rows get a frontier plot: a `floorK` reference ran beside static peak
    and the oracle (the bar's bounds)."""
    return any(floor_of(pn) is not None for pn in rows) and {"static_peak", "oracle"} <= set(rows)


def plot_frontier(trace_name: str, per: dict[str, dict[str, Any]], cold: float, path: Path) -> None:
    """SLO attainment against GPU-hours for every policy run on one trace and cold start, the
    `floorK` references joined by a line (what holding K replicas and reacting buys), and the
    median trace's bar shaded: attainment >= MEDIAN_ATTAINMENT_BAR at MEDIAN_GAP_BAR of the
    static-to-oracle gap or more."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    static, oracle = per["static_peak"]["gpu_hours"], per["oracle"]["gpu_hours"]
    bar = static - MEDIAN_GAP_BAR * (static - oracle)
    fig, ax = plt.subplots(figsize=(9, 6))
    floors = sorted((k, pn) for pn in per if (k := floor_of(pn)) is not None)
    ax.plot(
        [per[pn]["gpu_hours"] for _, pn in floors],
        [per[pn]["slo_attainment"] for _, pn in floors],
        color="tab:pink", lw=1.0, zorder=1, label="floorK: hold K replicas, react",
    )  # fmt: skip
    names: dict[tuple[float, float], list[str]] = {}  # one label for the policies at a point
    for pn, r in per.items():
        x, y = r["gpu_hours"], r["slo_attainment"]
        c = "tab:pink" if floor_of(pn) is not None else _COLOURS.get(pn, "black")
        ax.scatter([x], [y], color=c, zorder=3, s=40 if pn == "ours" else 20)
        names.setdefault((round(x, 1), round(y, 3)), []).append(pn)
    for (x, y), pns in names.items():
        ax.annotate(", ".join(pns), (x, y), textcoords="offset points", xytext=(5, -10), fontsize=8)
    lo = min(r["slo_attainment"] for r in per.values())
    ax.fill_between(
        [min(oracle, bar) - 1.0, bar], MEDIAN_ATTAINMENT_BAR, 1.005, color="tab:green",
        alpha=0.12, label=f"the bar: >= {MEDIAN_ATTAINMENT_BAR} at >= {MEDIAN_GAP_BAR:.0%} of "
        "the static-to-oracle gap",
    )  # fmt: skip
    ax.axvline(static, color="tab:gray", ls="--", lw=0.8)
    ax.set_ylim(max(0.0, lo - 0.02), 1.005)
    ax.set_xlabel("GPU-hours (measured part)")
    ax.set_ylabel("SLO attainment")
    ax.set_title(f"{trace_name}, cold start {cold:.0f}s: attainment against GPU-hours")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _section(doc: dict[str, Any], judged: dict[str, Any], key: str, primary: bool) -> list[str]:
    s = doc["setup"]
    suffix = "" if primary else f"_cs{key}"
    lines = [f"## Cold start {key}s", ""]
    for tn, per in judged["traces"].items():
        meta = s["traces"][tn]
        lines += [
            f"### {tn} ({meta['requests']} requests over {meta['duration_s'] / 3600:.2f} h, "
            f"{meta['mean_rate_rps']} req/s mean; one replica sustains "
            f"{s['replica_capacity_rps'][tn]} req/s at the SLOs)",
            "",
            "| policy | SLO attainment | GPU-hours | gap closed | TTFT ok | TPOT ok | "
            "mean replicas | scale events | TTFT p99 s | TPOT p99 s | failed |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for pn, r in per.items():
            lines.append(
                f"| {pn} | {_f(r['slo_attainment'])} | {_f(r['gpu_hours'], 1)} | "
                f"{_f(r.get('gap_closed'), 2)} | {_f(r['ttft_slo_attainment'])} | "
                f"{_f(r['tpot_slo_attainment'])} | {_f(r['mean_replicas'], 2)} | "
                f"{r['scale_events']} | {_f(r['ttft_p99_s'])} | {_f(r['tpot_p99_s'])} | "
                f"{r['failed']} |"
            )
        if "admission_limits" in per.get("ours", {}):
            lines += ["", limit_words(per["ours"])]
        v = judged["acceptance"]["per_trace"].get(tn, {})
        if v:
            lines += [
                "",
                "ours: "
                + "; ".join(
                    f"{k.replace('_', ' ')}: {'yes' if ok else 'no'}" for k, ok in v.items()
                )
                + ".",
            ]
        lines += [f"![{tn}](autoscale_{tn}{suffix}.png)", ""]
        if has_frontier(per):
            lines += [
                "Attainment against GPU-hours (the floorK references joined, #16's bar shaded):",
                "",
                f"![{tn}: frontier](frontier_{tn}{suffix}.png)",
                "",
            ]
    lines += [
        f"### Medians over traces (cold start {key}s)",
        "",
        "| policy | SLO attainment | GPU-hours | gap closed |",
        "| --- | --- | --- | --- |",
    ]
    for pn, m in judged["medians"].items():
        lines.append(
            f"| {pn} | {_f(m['slo_attainment'])} | {_f(m['gpu_hours'], 1)} | "
            f"{_f(m['gap_closed'], 2)} |"
        )
    mt = judged["acceptance"].get("median_trace")
    if mt:
        lines += [
            "",
            f"Median trace by ours' gap closed: {mt['trace']}, {mt['gap_closed']:.2f} of the "
            f"static-to-oracle gap at SLO attainment {mt['slo_attainment']:.3f}: "
            f"{'meets' if mt.get('holds') else 'does NOT meet'} the bar (>= "
            f"{MEDIAN_GAP_BAR:.2f} of the gap at >= {MEDIAN_ATTAINMENT_BAR}). Ours never "
            f"dominated by static peak or the HPA and never above static peak's GPU-hours: "
            f"{'yes' if judged['acceptance'].get('all_hold') else 'NO'}.",
        ]
    return [*lines, ""]


def with_kept(
    doc: dict[str, Any], earlier: dict[str, Any], kept: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, Any]:
    """`doc` (this run's report over its results and the kept ones) with what the kept traces
    need from the earlier run's setup (their description, a replica's capacity on them, their
    attribution) and the runs they were kept from (`kept_sources`)."""
    setup = dict(doc["setup"])
    old = earlier["setup"]
    names = {tn for traces in kept.values() for tn in traces}
    for key in ("traces", "replica_capacity_rps"):
        kept_part = {tn: v for tn, v in old[key].items() if tn in names}
        setup[key] = by_trace(kept_part, setup[key])
    setup["kept"] = {"sources": kept_sources(earlier, kept)}
    attribution = sorted({*doc.get("attribution", []), *earlier.get("attribution", [])})
    return {**doc, "setup": setup, "attribution": attribution}


def kept_words(src: dict[str, Any]) -> str:
    """summary.md's words for one run results were kept from: its command and runtime, and
    the traces kept per cold start."""
    cols = "; ".join(f"{float(k):.0f} s {', '.join(names)}" for k, names in src["traces"].items())
    return f" Kept from an earlier run (`{src['command']}`, {src['runtime_s']}s): {cols}."


def admission_setup(admission: tuple[int, float] | None) -> dict[str, float] | None:
    """`--admission` (spec.engine.admission) as the JSON's setup records it (None: without)."""
    if admission is None:
        return None
    return {"max_running": admission[0], "max_wait_s": admission[1]}


def ours_admission_setup(cfg: Config) -> str:
    """`--ours-admission` as the JSON's setup records it: "learned" where ours ran the learned
    limit, "off" where it did not (`--ours-admission off`, or `--admission`'s fixed gate for
    every policy, which the setup's `admission` records). An earlier JSON without the key
    was "off" (`--merge`)."""
    return "learned" if cfg.learns_limit else "off"


def admission_words(
    admission: dict[str, float] | None, ours_admission: str | None = None
) -> list[str]:
    """The summary's lines for `--admission` and ours' learned admission limit (none
    without either)."""
    lines = []
    if admission:
        lines.append(
            f"Every policy's replicas run the engine pod's admission gate (`--admission`: "
            f"`spec.engine.admission` maxRunning {admission['max_running']:.0f}, "
            f"maxWaitSeconds {admission['max_wait_s']:g}): at most that many requests in vLLM "
            f"per replica, one not started after that wait answered 503 (failed; the router's "
            f"retry elsewhere is not modelled)."
        )
    if ours_admission == "learned":
        lines.append(
            "`ours` runs as the operator does with `spec.engine.admission: {}` "
            "(`--ours-admission learned`): after each of its decisions it publishes the learned "
            "admission limit, the running requests per pod at which its learned step-time "
            "curve's mean TPOT reaches the aim (tpotSloFraction x the TPOT SLO; "
            "`scaling.admission_limit`, written again once it moves by 10%: "
            "`next_admission_limit`); its pods' gates apply it "
            f"{LIMIT_LAG_S:.0f}s after it is published (kubelet's refresh of the mounted "
            "ConfigMap and the gate's 5 s poll; no limit until the first arrives), and answer "
            "a request with no first token after the TTFT SLO (maxWaitSeconds' default) 503 "
            "(failed). The other policies run plain vLLM pods, without the gate."
        )
    return lines


def limit_words(r: dict[str, Any]) -> str:
    """summary.md's line for ours' learned admission limit on one trace (its result's
    `admission_limit_at_start`, `admission_limits`, `admission_limit_last`)."""
    start = r.get("admission_limit_at_start")
    pubs = r.get("admission_limits") or []
    shown_pubs = ", ".join(f"{n} at {t / 60:.1f} min" for t, n in pubs[:8])
    more = f" and {len(pubs) - 8} more" if len(pubs) > 8 else ""
    return (
        f"ours' learned admission limit: {start if start is not None else 'none'} per pod in "
        f"force at the start; published in the measured part: {shown_pubs or 'none'}{more}; "
        f"the last {_f(r.get('admission_limit_last'))}."
    )


def _admission(text: str) -> tuple[int, float]:
    """`--admission N,D`: spec.engine.admission maxRunning N, maxWaitSeconds D."""
    try:
        n, d = text.split(",")
        out = (int(n), float(d))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N,D (e.g. 128,2), got {text!r}") from None
    if out[0] < 1 or out[1] <= 0:
        raise argparse.ArgumentTypeError(f"N must be >= 1 and D > 0, got {text!r}")
    return out


def summary_md(doc: dict[str, Any]) -> str:
    s = doc["setup"]
    primary = cold_start_key(s["cold_start_s"])
    lines = [
        "# Autoscaling benchmark",
        "",
        f"Command: `{s['command']}`, seed {s['seed']}, runtime {s['runtime_s']}s."
        + "".join(kept_words(src) for src in (s.get("kept") or {}).get("sources", [])),
        f"Engine: `{s['preset']['name']}` ({s['gpus_per_replica']} GPUs per replica), cold "
        f"starts {', '.join(f'{c:.0f}s' for c in s['cold_starts_s'])} (the same for every "
        f"policy), replicas {s['min_replicas']}..{s['max_replicas']}. SLO per request: TTFT <= "
        f"{s['slo']['ttft_s']}s and TPOT <= {s['slo']['tpot_s']}s.",
        f"Every policy first runs through a warm-up of {s['warmup_s']:.0f}s, the preceding "
        "stretch of the same load (not counted; a load with a period is warmed on a whole "
        f"period at least, the day before, and the {WARMUP_LEAD_S:.0f}s before it: `warmup_s` "
        "per trace in the JSON's setup); "
        "`static_history` is sized from its peak, "
        "`static_peak` from the measured part's (future) peak. gap closed = (static_peak - "
        "policy) / (static_peak - oracle) GPU-hours.",
        "Simulated: the engine model and the fleet run under a virtual clock (no Kubernetes, "
        "no Prometheus); `ours` is the operator's `scaling.decide`, unchanged.",
        *admission_words(s.get("admission"), s.get("ours_admission")),
        *plotted_words(s),
        "",
    ]
    lines += _section(doc, doc, primary, True)
    for k, j in doc["cold_starts"].items():
        lines += _section(doc, j, k, False)
    lines += ["## Attribution", ""]
    lines += [f"- {a}" for a in doc["attribution"]]
    return "\n".join(lines) + "\n"


def plotted_words(setup: dict[str, Any]) -> list[str]:
    """Which policies the plots show, where a merge kept other policies' rows (their time
    series are not kept: a plot shows the policies its run ran)."""
    ran = setup.get("policies_run")
    if not ran or not setup.get("kept"):
        return []
    return [
        f"The plots show the policies this run ran ({', '.join(ran)}) over the load; the other "
        "rows of the tables are kept from the earlier runs named above, and so are their "
        "numbers, not their time series."
    ]


def _named_path(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.autoscale", description=__doc__)
    ap.add_argument("--out", default="bench/results", help="output folder")
    ap.add_argument(
        "--azure",
        default=os.environ.get("DEEPSEEK_AZURE_TRACE", str(DEFAULT_AZURE)),
        help="Azure LLM inference trace CSV (skipped when absent); env DEEPSEEK_AZURE_TRACE; "
        "default: ../shared/traces/AzureLLMInferenceTrace_conv.csv from the repository root",
    )
    ap.add_argument(
        "--trace",
        action="append",
        type=_named_path,
        default=[],
        metavar="NAME=PATH",
        help="another trace, any CSV in the Azure LLM trace format, replayed at its own rate "
        "and full length (repeatable)",
    )
    ap.add_argument("--only", default="", help="comma-separated trace names to run (default: all)")
    ap.add_argument(
        "--policies", default=",".join(POLICIES), help="comma-separated policies to run"
    )
    ap.add_argument("--preset", default=Config.preset_name)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--seed", type=int, default=Config.seed)
    ap.add_argument(
        "--duration", type=float, default=Config.duration_s, help="seconds per short trace"
    )
    ap.add_argument(
        "--warmup",
        type=float,
        default=Config.warmup_s,
        help="seconds of the preceding load every policy runs on first (not counted); a load "
        f"with a period runs on one whole period at least, and {WARMUP_LEAD_S:.0f}s before it",
    )
    ap.add_argument("--day", type=float, default=Config.day_s, help="seconds of the day-long trace")
    ap.add_argument(
        "--min-replicas",
        type=int,
        default=Config.min_replicas,
        help="ours' spec.scaling.minReplicas, and every policy's floor (the sizes the oracle and "
        "the references ask for too)",
    )
    ap.add_argument("--max-replicas", type=int, default=Config.max_replicas)
    ap.add_argument(
        "--cold-start",
        default="90,preset,900",
        help="comma-separated seconds for a pod to become Ready, 'preset' for the preset's "
        "load time (default: 90,preset,900)",
    )
    ap.add_argument(
        "--merge",
        default="",
        metavar="PATH",
        help="an earlier autoscale.json: keep its results not run here, by cold start, trace "
        "and policy (e.g. --cold-start 90 --merge bench/results/autoscale.json re-runs the 90 s "
        "column alone; --only day_long --merge ... the day-long trace alone; --policies ours "
        "--merge ... ours alone, judged against the kept static_peak, oracle and HPA)",
    )
    ap.add_argument(
        "--sweep-day",
        action="store_true",
        help="run the day-long trace at every cold start (default: the preset's only)",
    )
    ap.add_argument(
        "--admission",
        type=_admission,
        default=None,
        metavar="N,D",
        help="every policy's replicas run the engine pod's admission gate with "
        "spec.engine.admission maxRunning N, maxWaitSeconds D: at most N requests in vLLM, a "
        "request not started after D seconds answered 503 (e.g. 128,2)",
    )
    ap.add_argument(
        "--ours-admission",
        choices=("learned", "off"),
        default=Config.ours_admission,
        help="learned (default): ours' pods run the admission gate with the limit the "
        "operator learns (spec.engine.admission: {}), applied "
        f"{LIMIT_LAG_S:.0f}s after each publication, shedding at the TTFT SLO; off: plain vLLM "
        "pods, as the other policies'. --admission replaces it with the fixed gate",
    )
    a = ap.parse_args(argv)
    cold = [None if c.strip() == "preset" else float(c) for c in a.cold_start.split(",") if c]
    cfg = Config(
        preset_name=a.preset,
        seed=a.seed,
        duration_s=a.duration,
        min_replicas=a.min_replicas,
        max_replicas=a.max_replicas,
        warmup_s=a.warmup,
        day_s=a.day,
        admission=a.admission,
        ours_admission=a.ours_admission,
    )
    files = file_traces(cfg, a.azure, dict(a.trace))
    only = [x for x in a.only.split(",") if x]
    policies = tuple(x for x in a.policies.split(",") if x)
    unknown = (
        {p for p in policies if margin_of(p) is None and floor_of(p) is None}
        - set(POLICIES)
        - set(REFERENCES)
    )
    if unknown:
        ap.error(
            f"unknown policies {sorted(unknown)}; known: {', '.join(POLICIES + REFERENCES)}, "
            "marginM (M >= 1: reaction sized for M x the last minute's rate), floorK (K >= 1: "
            "reaction, never fewer than K replicas)"
        )
    earlier = json.loads(Path(a.merge).read_text()) if a.merge else None
    if earlier is not None and earlier["setup"].get("admission") != admission_setup(a.admission):
        ap.error("--merge: the earlier run's --admission differs from this one's")
    ours_before = None if earlier is None else earlier["setup"].get("ours_admission", "off")
    if earlier is not None and ours_before != ours_admission_setup(cfg):
        # the other policies run plain vLLM pods either way: only ours' results would mix
        cfgs = [replace(cfg, cold_start_s=c) for c in (cold or [None])]
        runs = planned(cfgs, trace_names(files, only), policies, a.sweep_day, True)
        if stale := kept_ours(runs, earlier):
            where = ", ".join(f"{tn} ({k} s)" for k, tn in stale[:4])
            more = f" and {len(stale) - 4} more" if len(stale) > 4 else ""
            ap.error(
                f"--merge: the earlier run's ours ran with --ours-admission {ours_before}, this "
                f"one's with {ours_admission_setup(cfg)}; it would keep ours on {where}{more}: "
                "run ours there too"
            )
    command = "python -m bench.autoscale " + shlex.join(argv if argv is not None else sys.argv[1:])
    run(
        cfg,
        files,
        Path(a.out),
        a.jobs,
        lambda m: print(m, flush=True),
        cold_starts=cold,
        only=only,
        policies=policies,
        command=command.strip(),
        sweep_day=a.sweep_day,
        merge=earlier,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
