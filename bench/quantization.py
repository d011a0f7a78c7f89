"""Quantization benchmark: the mode ladder under a GPU cap, under a virtual clock.

    python -m bench.quantization [--jobs 2] [--azure PATH] [--out bench/results]

DeepSeek-R1 on 32 H200s. The ladder (highest precision first): `fp8` (8 GPUs per replica, 4 fit),
`fp8-kv8` (fp8 KV cache, 8 GPUs), `int4` (AWQ, 4 GPUs per replica, 8 fit); each rung is its own
engine preset of testbed/sim/presets.py. Demand peaks near twice what 4 fp8 replicas carry
within the SLO. Scenarios: a 15-minute surge, a day compressed to 2 h and the Azure conversation
trace (its busiest 5 minutes scaled to the peak), with chat lengths; and the compressed day with
reasoning-length outputs (R1's own workload, where the KV cache binds). Policies:

- `ours`: the operator's `scaling.decide` for replicas and `quantization.decide_mode` for the
  rung (policy.automatic, the CRD's defaults); a switch is a stepped transition: where free GPUs
  cannot hold a new replica, one old replica is removed (drained), its GPUs start the new rung's
  replicas, which pay their cold start; the next step waits for them to be Ready, so serving
  capacity never drops below the old replicas that remain;
- `ours_no_ladder`: `scaling.decide` only (fp8 throughout);
- `hpa`: the HPA on GPU utilization (bench.policies.Hpa), fp8;
- `static`: 4 fp8 replicas.

Pods beyond the 32 GPUs stay Pending (the autoscaler sees them as unschedulable). Writes
`quantization.json`, `quantization.md` and one PNG per scenario into the output folder.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from deepseek_operator.api.spec import QuantizationSpec, ScalingSpec
from deepseek_operator.api.status import QuantizationStatus, ScalingState
from deepseek_operator.quantization import ModeInputs, decide_mode, learn_rung_capacity
from deepseek_operator.scaling import ScalingInputs, arrival_rate, decide, replica_capacity
from deepseek_operator.signals import Signal

from testbed.sim import traces as T
from testbed.sim.engine import EngineModel
from testbed.sim.presets import EnginePreset, preset

from .autoscale import DEFAULT_AZURE, Config, calibrate
from .fleet import Fleet, Pod
from .policies import Hpa, View

GPUS = 32
GPUS_PER_REPLICA = 8  # resources.gpusPerReplica (fp8, fp8-kv8)
MAX_REPLICAS = 8  # scaling.maxReplicas: 8 int4 replicas fit; fp8 is capped by the GPUs
PEAK_OVER_FP8 = 2.0  # demand peaks at this multiple of what 4 fp8 replicas carry
POLICIES = ("ours", "ours_no_ladder", "hpa", "static")
SCENARIOS = ("surge", "diurnal_2h", "azure_conv", "diurnal_2h_reasoning")
PLOT_STEP_S = 15.0
LADDER: list[dict[str, Any]] = [
    {"name": "fp8", "weights": "fp8"},
    {"name": "fp8-kv8", "weights": "fp8", "kvCacheDtype": "fp8"},
    {
        "name": "int4",
        "weights": "int4",
        "checkpoint": "cognitivecomputations/DeepSeek-R1-AWQ",
        "gpusPerReplica": 4,
    },
]


def rung_presets() -> dict[str, EnginePreset]:
    """The engine preset of each rung: R1 FP8 on 8 H200s, the same with an FP8 KV cache, and
    the AWQ INT4 checkpoint on 4 H200s (the test bed's AWQ calibration, fitted to [DZHSURF])."""
    return {
        "fp8": preset("r1-fp8-8xh200"),
        "fp8-kv8": preset("r1-fp8-kvfp8-8xh200"),
        "int4": preset("r1-int4-8xh200").with_(gpus=4, name="r1-int4-4xh200"),
    }


def quantization_spec() -> QuantizationSpec:
    return QuantizationSpec.model_validate({"ladder": LADDER, "policy": {"automatic": True}})


def scaling_spec() -> ScalingSpec:
    return ScalingSpec(min_replicas=1, max_replicas=MAX_REPLICAS)


# ---------------------------------------------------------------------------- scenarios --
# R1 is a reasoning model: its answers carry a long chain of thought, and the KV cache, not the
# decode step, binds a replica. Estimate (no published distribution of R1's output lengths in
# production): prompts median 1,000 tokens, outputs median 2,500 (lognormal sd 0.6, 200..8,000).
# The chat workloads use the lengths of the Azure conversation trace (testbed.sim.traces).
REASONING_LENGTHS = T.LengthModel(
    prompt_mu=math.log(1000),
    prompt_sigma=0.8,
    prompt_max=8000,
    output_mu=math.log(2500),
    output_sigma=0.6,
    output_min=200,
    output_max=8000,
)
WORKLOADS: dict[str, T.LengthModel] = {"chat": T.AZURE_CONV_LENGTHS, "reasoning": REASONING_LENGTHS}


def build_scenarios(fp8_rps: dict[str, float], azure: str | None, seed: int) -> dict[str, T.Trace]:
    """Demand peaking near PEAK_OVER_FP8 x what 4 fp8 replicas carry (4 x `fp8_rps` of the
    scenario's workload). Every scenario's `meta["workload"]` names its workload."""
    out: dict[str, T.Trace] = {}
    for wl, lengths in WORKLOADS.items():
        peak = PEAK_OVER_FP8 * 4 * fp8_rps[wl]
        tag = "" if wl == "chat" else f"_{wl}"
        if f"surge{tag}" in SCENARIOS:
            # an hour: a quarter of the peak, a 15-minute surge to the peak, back
            out[f"surge{tag}"] = T.step(
                peak / 4, peak, 3600.0, step_at=1200.0, step_back_at=2100.0, seed=seed,
                lengths=lengths, name=f"surge{tag}",
            )  # fmt: skip
            out[f"surge{tag}"].meta.update(duration_s=3600.0, workload=wl)
        # a day compressed to two hours, trough to peak and back
        out[f"diurnal_2h{tag}"] = T.diurnal(
            peak / 1.7, 7200.0, amplitude=0.7, period_s=7200.0, seed=seed, lengths=lengths,
            name=f"diurnal_2h{tag}",
        )  # fmt: skip
        out[f"diurnal_2h{tag}"].meta.update(duration_s=7200.0, workload=wl)
    if azure and Path(azure).exists():
        peak = PEAK_OVER_FP8 * 4 * fp8_rps["chat"]
        tr = T.window(T.load_azure_trace(azure, name="azure_conv"), 0.0, 3600.0)
        five_min = [r for _, r in tr.rate_series(300.0)]
        mult = peak / max(five_min)  # its busiest 5 minutes at the peak
        scaled = T.multiply_rate(tr, mult, seed=seed, name="azure_conv")
        scaled.meta.update(duration_s=3600.0, workload="chat")
        out["azure_conv"] = scaled
    # A 15-minute surge is shorter than a stepped switch (4 cold starts): the reasoning
    # workload is only run as the compressed day.
    return {k: out[k] for k in SCENARIOS if k in out}


def duration_of(trace: T.Trace) -> float:
    return float(trace.meta.get("duration_s", trace.duration))  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- world --
@dataclass
class RungFleet(Fleet):
    """The simulated fleet with a preset per pod (its rung) and a GPU cap."""

    gpus_total: int = GPUS
    rung_of: dict[int, str] = field(default_factory=dict)

    def add_rung_pod(self, rung: str, p: EnginePreset, now: float, warm: bool = False) -> Pod:
        eng = EngineModel(
            p,
            start_time=now,
            loaded=True,
            seed=self.seed * 1000 + self._next_index,
            name=f"{rung}-{self._next_index}",
            emit_tokens=False,
        )
        pod = Pod(self._next_index, eng, now, now if warm else now + p.load_time_s)
        self.rung_of[pod.index] = rung
        self._next_index += 1
        self.pods.append(pod)
        return pod

    def delete(self, pod: Pod, now: float) -> None:
        """Out of the router at once; GPUs back when drained (at once if idle or starting)."""
        pod.deleted = now
        if not pod.ready_at <= now or pod.outstanding == 0:
            pod.gone = now

    def live_of(self, rung: str) -> list[Pod]:
        return [p for p in self.pods if p.deleted is None and self.rung_of[p.index] == rung]

    def held_gpus(self) -> int:
        return sum(p.engine.preset.gpus for p in self.pods if p.gone is None)

    def free_gpus(self) -> int:
        return self.gpus_total - self.held_gpus()

    def gpu_seconds(self, until: float, since: float = 0.0) -> float:
        return sum(
            max(0.0, min(p.gone if p.gone is not None else until, until) - max(p.created, since))
            * p.engine.preset.gpus
            for p in self.pods
        )

    def tokens_by_rung(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.pods:
            r = self.rung_of[p.index]
            out[r] = out.get(r, 0) + p.engine.stats().generation_tokens_total
        return out


@dataclass
class Transition:
    to: str
    replicas: int  # replicas of the new rung to reach


@dataclass
class Controller:
    """What Kubernetes and the operator's rollout do with a rung and a replica count: create
    pods of the served rung while GPUs allow (the rest Pending), remove extras in ReplicaSet
    order, and move between rungs in steps."""

    fleet: RungFleet
    presets: dict[str, EnginePreset]
    served: str
    desired: int
    transition: Transition | None = None
    switches: int = 0

    def pending(self) -> int:
        return max(0, self.desired - len(self.fleet.live_of(self.served)))

    def apply(self, now: float) -> None:
        if self.transition is not None:
            self._step(now)
            return
        live = self.fleet.live_of(self.served)
        gpus = self.presets[self.served].gpus
        for _ in range(self.desired - len(live)):
            if self.fleet.free_gpus() < gpus:
                break
            self.fleet.add_rung_pod(self.served, self.presets[self.served], now)
        if len(live) > self.desired:
            order = sorted(live, key=lambda p: (p.ready(now), p.outstanding, -p.created))
            for p in order[: len(live) - self.desired]:
                self.fleet.delete(p, now)

    def switch(self, to: str, now: float) -> None:
        """Start a stepped transition to `to`: as many replicas as the GPUs the served rung
        holds (rounded up) and the free ones allow, at most maxReplicas."""
        held = sum(p.engine.preset.gpus for p in self.fleet.live_of(self.served))
        g = self.presets[to].gpus
        fit = (held + self.fleet.free_gpus()) // g
        n = max(1, min(MAX_REPLICAS, fit, math.ceil(held / g)))
        self.transition = Transition(to, n)
        self.switches += 1
        self._step(now)

    def _step(self, now: float) -> None:
        t = self.transition
        assert t is not None
        new = self.fleet.live_of(t.to)
        old = self.fleet.live_of(self.served)
        if any(p.starting(now) for p in new):
            return  # each step waits for its new replicas to be Ready
        if len(new) >= t.replicas:
            for p in old:  # more old replicas than the new count replaces
                self.fleet.delete(p, now)
            self._finish(len(new))
            return
        g = self.presets[t.to].gpus
        k = min(self.fleet.free_gpus() // g, t.replicas - len(new))
        if k > 0:
            for _ in range(k):
                self.fleet.add_rung_pod(t.to, self.presets[t.to], now)
            return
        if self._draining(self.served):
            return  # the old replica's GPUs come back once its requests finish
        if old:
            victim = min(old, key=lambda p: (p.ready(now), p.outstanding, -p.created))
            self.fleet.delete(victim, now)
            return
        self._finish(len(new))  # nothing left to give up: as many as fit

    def _finish(self, replicas: int) -> None:
        assert self.transition is not None
        self.served, self.desired, self.transition = self.transition.to, replicas, None

    def _draining(self, rung: str) -> bool:
        return any(
            p.deleted is not None and p.gone is None and self.fleet.rung_of[p.index] == rung
            for p in self.fleet.pods
        )


# ----------------------------------------------------------------------------- policies --
class Policy:
    interval_s = 15.0

    def tick(self, ctl: Controller, now: float) -> None:
        raise NotImplementedError


class Static(Policy):
    def tick(self, ctl: Controller, now: float) -> None:
        ctl.desired = 4


class HpaPolicy(Policy):
    def __init__(self) -> None:
        self.hpa = Hpa(1, MAX_REPLICAS)

    def tick(self, ctl: Controller, now: float) -> None:
        f = ctl.fleet
        sig = f.signals(now)
        view = View(
            now=now,
            replicas=ctl.desired,
            ready=len(f.ready_pods(now)),
            signals=sig,
            gpu_util_all_pods=f.gpu_util([p for p in f.pods if p.deleted is None]),
            queue_length=sig.values.get(Signal.QUEUE_DEPTH, 0.0),
            concurrency=f.concurrency(now),
        )
        ctl.desired = self.hpa.decide(view)


class Ours(Policy):
    """scaling.decide every intervalSeconds, as handlers.py calls it; with the ladder,
    decide_mode after it, fed as the handler will feed it."""

    def __init__(self, ladder: bool) -> None:
        self.ladder = ladder
        self.spec = scaling_spec()
        self.qspec = quantization_spec()
        self.interval_s = float(self.spec.interval_seconds)
        # the start time the operator learned from earlier scale-ups of this resource (as
        # bench.autoscale seeds ours_projected): what a stepped switch's cost is counted in
        self.state = ScalingState(start_seconds=round(rung_presets()["fp8"].load_time_s, 1))
        self.mode: QuantizationStatus | None = None
        self.samples = 0
        self.reasons: dict[str, int] = {}

    def tick(self, ctl: Controller, now: float) -> None:
        f = ctl.fleet
        sig = f.signals(now)
        ready = len(f.ready_pods(now))
        in_flight = ctl.transition is not None
        inputs = ScalingInputs(
            replicas=ctl.desired,
            ready=ready,
            signals=sig,
            unschedulable=ctl.pending(),
            signal_age=0.0,
            rollout_in_flight=in_flight,
            colour=ctl.served,
        )
        d = decide(self.spec, inputs, self.state, now, self.interval_s)
        prev = self.state
        self.state = d.state
        if not in_flight:
            ctl.desired = d.replicas
        if not self.ladder:
            return
        self._learn(ctl)
        vals = sig.values
        arriving: float | None = None
        if Signal.REQUEST_RATE in vals:
            backlog = vals.get(Signal.RUNNING, 0.0) + vals.get(Signal.QUEUE_DEPTH, 0.0)
            arriving, _ = arrival_rate(
                prev.recommendations, vals[Signal.REQUEST_RATE], backlog, now
            )
        held = sum(p.engine.preset.gpus for p in f.live_of(ctl.served))
        mi = ModeInputs(
            served=ctl.served,
            replicas=ctl.desired,
            ready=ready,
            max_replicas=self.spec.max_replicas,
            wanted_replicas=max(d.replicas, ctl.desired),
            scaling_limited=d.limited is not None or ctl.pending() > 0,
            free_gpus=f.free_gpus(),
            held_gpus=held,
            arrival_rate=arriving,
            ttft_p99=vals.get(Signal.TTFT_P99),
            tpot_p99=vals.get(Signal.TPOT_P99),
            cold_start_s=self.state.start_seconds,
            metrics_ok=d.metrics_ok and ready > 0,
            transition_in_flight=in_flight,
            default_gpus_per_replica=GPUS_PER_REPLICA,
            kv_cache_usage=vals.get(Signal.KV_CACHE_USAGE),
        )
        md = decide_mode(self.qspec, self.spec.slo, mi, self.mode, now)
        self.mode = md.state
        self.reasons[md.reason] = self.reasons.get(md.reason, 0) + 1
        if md.switched and md.target != ctl.served:
            ctl.switch(md.target, now)

    def _learn(self, ctl: Controller) -> None:
        """A new steady sample of the serving colour's capacity model teaches the served rung
        what a replica carries at the autoscaler's TPOT aim."""
        model = self.state.capacity
        if model is None or model.colour != ctl.served or model.samples <= self.samples:
            self.samples = 0 if model is None or model.colour != ctl.served else self.samples
            return
        self.samples = model.samples
        aim = self.spec.targets.tpot_slo_fraction * self.spec.slo.tpot_p99_seconds
        cap = replica_capacity(model, ctl.served, None, aim)
        if cap is not None:
            self.mode = learn_rung_capacity(self.mode, ctl.served, cap.per_replica)


def make_policy(name: str) -> Policy:
    if name == "ours":
        return Ours(ladder=True)
    if name == "ours_no_ladder":
        return Ours(ladder=False)
    if name == "hpa":
        return HpaPolicy()
    if name == "static":
        return Static()
    raise ValueError(name)


# ---------------------------------------------------------------------------------- run --
@dataclass
class Series:
    t: list[float] = field(default_factory=list)
    load_rps: list[float] = field(default_factory=list)
    rung: list[float] = field(default_factory=list)  # mean ladder index of the Ready replicas
    ready: list[int] = field(default_factory=list)
    gpus: list[int] = field(default_factory=list)


def simulate(
    trace: T.Trace, policy_name: str, fp8_rps: float, seed: int
) -> tuple[dict[str, Any], Series]:
    presets = rung_presets()
    names = [r["name"] for r in LADDER]
    duration = duration_of(trace)
    fleet = RungFleet(presets["fp8"], presets["fp8"].load_time_s, seed=seed)
    arrivals = [r.arrival for r in trace.requests]
    first = sum(1 for a in arrivals if a < 300.0) / 300.0
    initial = 4 if policy_name == "static" else min(4, max(1, math.ceil(first / fp8_rps)))
    for _ in range(initial):
        fleet.add_rung_pod("fp8", presets["fp8"], 0.0, warm=True)
    ctl = Controller(fleet, presets, "fp8", initial)
    policy = make_policy(policy_name)
    if isinstance(policy, HpaPolicy):
        policy.hpa.core.recommendations.append((0.0, initial))
    series = Series()
    reqs = trace.requests
    i, t = 0, 0
    next_decision, next_plot = policy.interval_s, 0.0
    while True:
        t += 1
        now = float(t)
        while i < len(reqs) and reqs[i].arrival < now:
            fleet.arrive(reqs[i])
            i += 1
        fleet.advance(now)
        if now >= next_decision and now <= duration:
            next_decision += policy.interval_s
            policy.tick(ctl, now)
        ctl.apply(now)
        if now >= next_plot and now <= duration:
            next_plot += PLOT_STEP_S
            recent = sum(1 for a in arrivals[max(0, i - 5000) : i] if a >= now - 60.0)
            series.t.append(now)
            series.load_rps.append(recent / 60.0)
            ready = fleet.ready_pods(now)
            idx = [names.index(fleet.rung_of[p.index]) for p in ready]
            series.rung.append(sum(idx) / len(idx) if idx else float(names.index(ctl.served)))
            series.ready.append(len(fleet.ready_pods(now)))
            series.gpus.append(fleet.held_gpus())
        if now >= duration and i >= len(reqs) and fleet.pending == 0:
            break
        if now >= duration + 1800.0:
            break
    return summarize(trace, fleet, ctl, policy, duration), series


def summarize(
    trace: T.Trace, fleet: RungFleet, ctl: Controller, policy: Policy, duration: float
) -> dict[str, Any]:
    slo = scaling_spec().slo
    n = len(trace.requests)
    done = [o for o in fleet.outcomes if o.ok]
    good = sum(
        1
        for o in done
        if o.ttft is not None
        and o.ttft <= slo.ttft_p99_seconds
        and (o.tpot is None or o.tpot <= slo.tpot_p99_seconds)
    )
    tokens = fleet.tokens_by_rung()
    total = sum(tokens.values())
    res: dict[str, Any] = {
        "slo_attainment": good / n if n else 1.0,
        "gpu_hours": fleet.gpu_seconds(duration) / 3600.0,
        "full_precision_fraction": tokens.get(LADDER[0]["name"], 0) / total if total else 1.0,
        "switches": ctl.switches,
        "requests": n,
        "failed": n - len(done),
        "tokens_by_rung": tokens,
    }
    if isinstance(policy, Ours) and policy.ladder:
        res["mode_reasons"] = dict(sorted(policy.reasons.items()))
        if policy.mode is not None:
            res["learned_capacity"] = policy.mode.capacity
            res["switch_log"] = [
                {"at_s": round(_secs(s.at), 0), "from": s.from_, "to": s.to, "reason": s.reason}
                for s in policy.mode.switches
            ]
    return res


def _secs(rfc: str) -> float:
    return datetime.fromisoformat(rfc.replace("Z", "+00:00")).timestamp()


# ------------------------------------------------------------------------------- driver --
def _job(
    args: tuple[str, str | None, str, dict[str, float], int],
) -> tuple[str, str, dict[str, Any], Series]:
    scenario, azure, policy_name, fp8_rps, seed = args
    trace = build_scenarios(fp8_rps, azure, seed)[scenario]
    wl = str(trace.meta["workload"])
    res, series = simulate(trace, policy_name, fp8_rps[wl], seed)
    return scenario, policy_name, res, series


def _calibrate_job(args: tuple[str, str, int]) -> tuple[str, str, float]:
    """Requests/s one replica of a rung sustains with >= 99 % of requests within the SLOs, for
    a workload's lengths (a 30-minute diurnal probe, as bench.autoscale calibrates)."""
    workload, rung, seed = args
    probe = T.diurnal(
        4.0, 1800.0, amplitude=0.7, period_s=1800.0, seed=seed, lengths=WORKLOADS[workload]
    )
    cfg = Config(seed=seed, max_replicas=MAX_REPLICAS)
    return workload, rung, calibrate(cfg, probe, rung_presets()[rung])


def run(
    azure: str | None,
    out: Path,
    jobs: int,
    seed: int,
    log: Callable[[str], None],
    only: tuple[str, ...] = SCENARIOS,
) -> None:
    t0 = time.perf_counter()
    pool = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else None
    try:
        cal_args = [(wl, r["name"], seed) for wl in WORKLOADS for r in LADDER]
        cal: dict[str, dict[str, float]] = {wl: {} for wl in WORKLOADS}
        for wl, rung, c in (
            pool.map(_calibrate_job, cal_args) if pool else map(_calibrate_job, cal_args)
        ):
            cal[wl][rung] = c
            fit = GPUS // rung_presets()[rung].gpus
            log(f"    {wl:<9} {rung:<8} {c:.2f} req/s per replica within the SLO; {fit} fit")
        fp8_rps = {wl: c["fp8"] for wl, c in cal.items()}
        scenarios = {k: v for k, v in build_scenarios(fp8_rps, azure, seed).items() if k in only}
        log(f"==> bench.quantization: {len(scenarios)} scenarios x {len(POLICIES)} policies")
        args = [(sn, azure, pn, fp8_rps, seed) for sn in scenarios for pn in POLICIES]
        results: dict[str, dict[str, Any]] = {sn: {} for sn in scenarios}
        all_series: dict[str, dict[str, Series]] = {sn: {} for sn in scenarios}
        for sn, pn, res, series in pool.map(_job, args) if pool else map(_job, args):
            results[sn][pn] = res
            all_series[sn][pn] = series
            log(
                f"    {sn:<11} {pn:<15} slo {res['slo_attainment']:.3f}  gpu-h "
                f"{res['gpu_hours']:.1f}  full precision {res['full_precision_fraction']:.2f}  "
                f"switches {res['switches']}"
            )
    finally:
        if pool:
            pool.shutdown()
    runtime = time.perf_counter() - t0
    doc = report(scenarios, cal, results, runtime, seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quantization.json").write_text(json.dumps(doc, indent=2) + "\n")
    for sn, per in all_series.items():
        wl = str(scenarios[sn].meta["workload"])
        plot(sn, per, 4 * fp8_rps[wl], out / f"quantization_{sn}.png")
    (out / "quantization.md").write_text(summary_md(doc))
    log(f"==> wrote {out}/quantization.json, quantization.md and plots in {runtime:.0f}s")


def report(
    scenarios: dict[str, T.Trace],
    cal: dict[str, dict[str, float]],
    results: dict[str, dict[str, Any]],
    runtime: float,
    seed: int,
) -> dict[str, Any]:
    acceptance = {
        sn: {
            "ours_meets_slo": per["ours"]["slo_attainment"] >= 0.99,
            "ours_no_ladder_meets_slo": per["ours_no_ladder"]["slo_attainment"] >= 0.99,
        }
        for sn, per in results.items()
    }
    presets = rung_presets()
    return {
        "scenarios": results,
        "acceptance": acceptance,
        "setup": {
            "gpus": GPUS,
            "rungs": {
                r["name"]: {
                    "preset": presets[r["name"]].describe(),
                    "replica_capacity_rps": {wl: round(c[r["name"]], 3) for wl, c in cal.items()},
                    "replicas_on_gpus": GPUS // presets[r["name"]].gpus,
                }
                for r in LADDER
            },
            "peak_over_4_fp8": PEAK_OVER_FP8,
            "scaling": scaling_spec().model_dump(by_alias=True),
            "quantization": quantization_spec().model_dump(by_alias=True),
            "scenarios": {
                sn: {
                    "requests": len(tr),
                    "duration_s": duration_of(tr),
                    "mean_rate_rps": round(len(tr) / duration_of(tr), 2),
                    "meta": {k: v for k, v in tr.meta.items() if k != "bursts"},
                }
                for sn, tr in scenarios.items()
            },
            "seed": seed,
            "runtime_s": round(runtime, 1),
            "command": "make bench-quantization",
        },
        "attribution": sorted({tr.attribution for tr in scenarios.values() if tr.attribution}),
    }


# ------------------------------------------------------------------------------- output --
_COLOURS = {"ours": "tab:red", "ours_no_ladder": "tab:orange", "hpa": "tab:blue", "static": "gray"}


def plot(name: str, per: dict[str, Series], fp8_fleet_rps: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    first = next(iter(per.values()))
    mins = [x / 60.0 for x in first.t]
    axes[0].plot(mins, first.load_rps, color="black", lw=1, label="arriving")
    axes[0].axhline(fp8_fleet_rps, color="gray", ls="--", lw=0.8, label="4 fp8 replicas carry")
    axes[0].set_ylabel("load (req/s, 1 min)")
    axes[0].legend(fontsize=8, loc="upper left")
    axes[0].set_title(f"{name}: R1 on {GPUS} H200s, ladder fp8 -> fp8-kv8 -> int4 (4 GPUs)")
    for pn, s in per.items():
        m = [x / 60.0 for x in s.t]
        axes[1].step(m, s.rung, where="post", color=_COLOURS.get(pn), label=pn, lw=1.2)
        axes[2].step(m, s.ready, where="post", color=_COLOURS.get(pn), label=pn, lw=1.2)
    axes[1].set_yticks(range(len(LADDER)), [r["name"] for r in LADDER])
    axes[1].invert_yaxis()
    axes[1].set_ylabel("rung of the Ready replicas (mean)")
    axes[1].legend(ncol=4, fontsize=8, loc="lower left")
    axes[2].set_ylabel("Ready replicas")
    axes[2].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def summary_md(doc: dict[str, Any]) -> str:
    s = doc["setup"]
    lines = [
        "# Quantization benchmark",
        "",
        f"Command: `{s['command']}` (`python -m bench.quantization`), seed {s['seed']}, "
        f"runtime {s['runtime_s']}s. DeepSeek-R1 on {s['gpus']} H200s; demand peaks at "
        f"{s['peak_over_4_fp8']}x what 4 fp8 replicas carry.",
        "",
        "Capacity: the highest Poisson rate one replica sustains with >= 99% of requests within "
        "the SLOs (TTFT 2 s, TPOT 0.1 s), per workload; x replicas on 32 GPUs.",
        "",
        "| rung | preset | GPUs/replica | KV tokens/replica | replicas on 32 GPUs | chat req/s "
        "(on 32 GPUs) | reasoning req/s (on 32 GPUs) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rn, r in s["rungs"].items():
        cap, fit = r["replica_capacity_rps"], r["replicas_on_gpus"]
        lines.append(
            f"| {rn} | `{r['preset']['name']}` | {r['preset']['gpus']} | "
            f"{r['preset']['kv_capacity_tokens']} | {fit} | {cap['chat']:.2f} "
            f"({cap['chat'] * fit:.1f}) | {cap['reasoning']:.2f} ({cap['reasoning'] * fit:.1f}) |"
        )
    for sn, per in doc["scenarios"].items():
        meta = s["scenarios"][sn]
        lines += [
            "",
            f"## {sn} ({meta['meta']['workload']}: {meta['requests']} requests over "
            f"{meta['duration_s']:.0f}s, {meta['mean_rate_rps']} req/s mean)",
            "",
            "| policy | SLO attainment | GPU-hours | full-precision fraction | switches | failed |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for pn, r in per.items():
            lines.append(
                f"| {pn} | {r['slo_attainment']:.3f} | {r['gpu_hours']:.1f} | "
                f"{r['full_precision_fraction']:.3f} | {r['switches']} | {r['failed']} |"
            )
        log = per["ours"].get("switch_log", [])
        if log:
            hops = ", ".join(f"{h['from']} -> {h['to']} ({h['reason']})" for h in log)
            lines += ["", f"ours switched: {hops}."]
        lines += ["", f"![{sn}](quantization_{sn}.png)"]
    lines += ["", "## Acceptance (ours >= 0.99 where ours_no_ladder is not)", ""]
    for sn, a in doc["acceptance"].items():
        ok = a["ours_meets_slo"] and not a["ours_no_ladder_meets_slo"]
        lines.append(
            f"- {sn}: ours {'meets' if a['ours_meets_slo'] else 'misses'} the SLO, "
            f"ours_no_ladder {'meets' if a['ours_no_ladder_meets_slo'] else 'misses'} it: "
            f"{'holds' if ok else 'does NOT hold'}."
        )
    if doc["attribution"]:
        lines += ["", "## Attribution", ""] + [f"- {a}" for a in doc["attribution"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.quantization", description=__doc__)
    ap.add_argument("--out", default="bench/results", help="output folder")
    ap.add_argument(
        "--azure",
        default=os.environ.get("DEEPSEEK_AZURE_TRACE", DEFAULT_AZURE),
        help="Azure LLM inference trace CSV (skipped when absent); env DEEPSEEK_AZURE_TRACE",
    )
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}"
    )
    a = ap.parse_args(argv)
    only = tuple(x for x in a.scenarios.split(",") if x)
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    run(a.azure, Path(a.out), a.jobs, a.seed, lambda m: print(m, flush=True), only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
