"""Quantization benchmark: the mode ladder under a GPU cap, under a virtual clock.

    python -m bench.quantization [--jobs 2] [--azure PATH] [--out bench/results]

Two setups (`SETUPS`), each rung its own engine preset of testbed/sim/presets.py, demand peaking
near twice what the first rung's replicas on the capped GPUs carry within the SLO:

- `r1`: DeepSeek-R1 on 32 H200s, ladder `fp8` (8 GPUs per replica, 4 fit), `fp8-kv8` (fp8 KV
  cache, 8 GPUs), `int4` (AWQ, 4 GPUs per replica, 8 fit). Scenarios: a 15-minute surge, a day
  compressed to 2 h and the Azure conversation trace (its busiest 5 minutes scaled to the
  peak), with chat lengths; and the compressed day with reasoning-length outputs (R1's own
  workload, where the KV cache binds).
- `distill70b`: R1-Distill-Llama-70B on 16 H100s, 4 GPUs per replica (4 fit) on every rung:
  `bf16` (its native weights), `fp8` (half the bytes: a faster step, more KV cache), `fp8-kv8`.
  Reasoning lengths throughout (a distilled R1 thinks aloud too): the surge, the compressed
  day, and the Azure trace's arrivals with reasoning lengths drawn.

Policies:

- `ours`: the operator's `scaling.decide` for replicas and `quantization.decide_mode` for the
  rung (policy.automatic, the CRD's defaults); a switch is a stepped transition: where free GPUs
  cannot hold a new replica, one old replica is removed (drained), its GPUs start the new rung's
  replicas, which pay their cold start; the next step waits for them to be Ready, so serving
  capacity never drops below the old replicas that remain;
- `ours_no_ladder`: `scaling.decide` only (the first rung throughout);
- `hpa`: the HPA on GPU utilization (bench.policies.Hpa), the first rung;
- `static`: as many first-rung replicas as the GPUs hold.

Every policy first runs WARMUP_S of the stretch that precedes each scenario (not counted), as an
operator that ran before would have (the fairness rule of bench.autoscale): a ladder that
stepped down in the warm-up starts the measured hour on the lighter rung. The report's
acceptance section computes, per scenario, whether any rung carries the peak and the
`reactive_bound` a jump sets on any policy that does not know the load ahead.

Pods beyond the GPUs stay Pending (the autoscaler sees them as unschedulable). Writes
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

from deepseek_operator.api.spec import QuantizationSpec, ScalingSpec, checkpoint_is_moe
from deepseek_operator.api.status import QuantizationStatus, ScalingState
from deepseek_operator.quantization import (
    ModeInputs,
    decide_mode,
    keeps_replicas,
    learn_rung_capacity,
    load_view,
)
from deepseek_operator.scaling import ScalingInputs, decide, replica_capacity
from deepseek_operator.signals import Signal

from testbed.sim import traces as T
from testbed.sim.engine import EngineModel
from testbed.sim.presets import (
    DEEPSEEK_R1_DISTILL_LLAMA_70B,
    H100_SXM,
    EnginePreset,
    make_preset,
    preset,
)

from .autoscale import DEFAULT_AZURE, Config, calibrate, joined
from .fleet import Fleet, Pod
from .policies import Hpa, View

POLICIES = ("ours", "ours_no_ladder", "hpa", "static")
PLOT_STEP_S = 15.0


@dataclass(frozen=True)
class Setup:
    """One model on a capped pool of GPUs with its ladder (highest precision first)."""

    key: str
    title: str  # for the plots and the report
    gpus: int
    max_replicas: int  # scaling.maxReplicas
    ladder: tuple[dict[str, Any], ...]
    presets: Callable[[], dict[str, EnginePreset]]
    peak_over_top: float  # demand peaks at this multiple of what the top rung carries
    shapes: tuple[tuple[str, str, str], ...]  # (scenario, shape, workload)

    @property
    def scenarios(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.shapes)

    @property
    def top(self) -> str:
        return str(self.ladder[0]["name"])

    def rung_presets(self) -> dict[str, EnginePreset]:
        return self.presets()

    @property
    def gpus_per_replica(self) -> int:  # resources.gpusPerReplica: the top rung's
        return self.presets()[self.top].gpus

    @property
    def static_replicas(self) -> int:  # the top rung's replicas that fit
        return self.gpus // self.gpus_per_replica


def _r1_presets() -> dict[str, EnginePreset]:
    """R1 FP8 on 8 H200s, the same with an FP8 KV cache, and the AWQ INT4 checkpoint on 4
    H200s (the test bed's AWQ calibration, fitted to [DZHSURF])."""
    return {
        "fp8": preset("r1-fp8-8xh200"),
        "fp8-kv8": preset("r1-fp8-kvfp8-8xh200"),
        "int4": preset("r1-int4-8xh200").with_(gpus=4, name="r1-int4-4xh200"),
    }


def _distill70b_presets() -> dict[str, EnginePreset]:
    """R1-Distill-Llama-70B on 4 H100s per replica: its native BF16 weights, FP8 weights (half
    the bytes: a faster step and more room for the KV cache on the same GPUs), and FP8 weights
    with an FP8 KV cache."""
    m, g = DEEPSEEK_R1_DISTILL_LLAMA_70B, H100_SXM
    return {
        "bf16": make_preset(m, g, 4, "bf16", name="distill-70b-bf16-4xh100"),
        "fp8": make_preset(m, g, 4, "fp8", name="distill-70b-fp8-4xh100"),
        "fp8-kv8": make_preset(m, g, 4, "fp8", "fp8", name="distill-70b-fp8-kvfp8-4xh100"),
    }


R1 = Setup(
    key="r1",
    title="R1 on 32 H200s, ladder fp8 -> fp8-kv8 -> int4 (4 GPUs)",
    gpus=32,
    max_replicas=8,  # 8 int4 replicas fit; fp8 is capped by the GPUs
    ladder=(
        {"name": "fp8", "weights": "fp8"},
        {"name": "fp8-kv8", "weights": "fp8", "kvCacheDtype": "fp8"},
        {
            "name": "int4",
            "weights": "int4",
            "checkpoint": "cognitivecomputations/DeepSeek-R1-AWQ",
            "gpusPerReplica": 4,
        },
    ),
    presets=_r1_presets,
    peak_over_top=2.0,
    # A 15-minute surge is shorter than R1's stepped switch (4 cold starts of 344 s): its
    # reasoning workload is only run as the compressed day.
    shapes=(
        ("surge", "surge", "chat"),
        ("diurnal_2h", "diurnal_2h", "chat"),
        ("azure_conv", "azure_conv", "chat"),
        ("diurnal_2h_reasoning", "diurnal_2h", "reasoning"),
    ),
)
DISTILL70B = Setup(
    key="distill70b",
    title="R1-Distill-Llama-70B on 16 H100s, ladder bf16 -> fp8 -> fp8-kv8 (4 GPUs each)",
    gpus=16,
    max_replicas=4,
    ladder=(
        {"name": "bf16", "weights": "bf16"},
        {"name": "fp8", "weights": "fp8"},  # vLLM --quantization fp8 on the BF16 checkpoint
        {"name": "fp8-kv8", "weights": "fp8", "kvCacheDtype": "fp8"},
    ),
    presets=_distill70b_presets,
    peak_over_top=2.0,
    # a distilled R1 answers with its chain of thought too: reasoning lengths throughout; the
    # public trace's arrivals (its own lengths are chat lengths) with reasoning lengths drawn
    shapes=(
        ("distill70b_surge", "surge", "reasoning"),
        ("distill70b_diurnal_2h", "diurnal_2h", "reasoning"),
        ("distill70b_azure_conv", "azure_conv", "reasoning"),
    ),
)
SETUPS: tuple[Setup, ...] = (R1, DISTILL70B)
SCENARIOS: tuple[str, ...] = tuple(sn for su in SETUPS for sn in su.scenarios)
# kept for the R1 setup's callers (tests, bench/README)
GPUS = R1.gpus
LADDER = list(R1.ladder)


def setup_of(scenario: str) -> Setup:
    return next(su for su in SETUPS if scenario in su.scenarios)


def rung_presets(setup: Setup = R1) -> dict[str, EnginePreset]:
    return setup.rung_presets()


def quantization_spec(setup: Setup = R1) -> QuantizationSpec:
    return QuantizationSpec.model_validate(
        {"ladder": list(setup.ladder), "policy": {"automatic": True}}
    )


def scaling_spec(setup: Setup = R1) -> ScalingSpec:
    return ScalingSpec(min_replicas=1, max_replicas=setup.max_replicas)


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


WARMUP_S = 1800.0  # a preceding stretch of the same load every policy runs on (not counted)


def build_scenarios(
    setup: Setup, top_rps: dict[str, float], azure: str | None, seed: int
) -> dict[str, T.Trace]:
    """The setup's scenarios, demand peaking near `peak_over_top` x what the top rung's
    replicas on the GPUs carry (`top_rps` per replica, per workload). Every scenario's
    `meta["workload"]` names its workload. Each starts with WARMUP_S of the stretch that
    precedes it (as bench.autoscale does): every policy runs on it, as an operator that ran
    before would have, and nothing in it is counted. The surge's is its low rate, the
    compressed day's the half-hour before its trough, the Azure trace's its own end (the file
    holds one hour: played as a loop)."""
    out: dict[str, T.Trace] = {}
    w = WARMUP_S
    for name, shape, wl in setup.shapes:
        lengths = WORKLOADS[wl]
        peak = setup.peak_over_top * setup.static_replicas * top_rps[wl]
        if shape == "surge":
            # an hour: a quarter of the peak, a 15-minute surge to the peak, back
            tr = T.step(
                peak / 4, peak, w + 3600.0, step_at=w + 1200.0, step_back_at=w + 2100.0,
                seed=seed, lengths=lengths, name=name,
            )  # fmt: skip
            tr = joined(name, tr, T.window(tr, w, w + 3600.0), w, 3600.0)
        elif shape == "diurnal_2h":
            # a day compressed to two hours, trough to peak and back
            p = 7200.0
            phase = -math.pi / 2 - 2 * math.pi * w / p  # at its trough when measuring starts
            tr = T.diurnal(
                peak / 1.7, w + p, amplitude=0.7, period_s=p, phase=phase, seed=seed,
                lengths=lengths, name=name,
            )  # fmt: skip
            tr = joined(name, tr, T.window(tr, w, w + p), w, p)
        elif shape == "azure_conv":
            if not (azure and Path(azure).exists()):
                continue
            src = T.window(T.load_azure_trace(azure, name=name), 0.0, 3600.0)
            five_min = [r for _, r in src.rate_series(300.0)]
            mult = peak / max(five_min)  # its busiest 5 minutes at the peak
            src = T.multiply_rate(src, mult, seed=seed, name=name)
            if wl != "chat":  # the trace's arrivals, the workload's lengths
                src = T.redraw_lengths(src, lengths, seed=seed)
            tr = joined(name, T.window(src, 3600.0 - w, 3600.0), src, w, 3600.0)
        else:
            raise ValueError(shape)
        tr.meta.update(workload=wl)
        out[name] = tr
    return out


def duration_of(trace: T.Trace) -> float:
    """Seconds of the measured part."""
    return float(trace.meta.get("duration_s", trace.duration))  # type: ignore[arg-type]


def warmup_of(trace: T.Trace) -> float:
    return float(trace.meta.get("warmup_s", 0.0))  # type: ignore[arg-type]


def measured(trace: T.Trace) -> T.Trace:
    """The measured part, re-based to start at 0."""
    w = warmup_of(trace)
    return T.window(trace, w, w + duration_of(trace))


# -------------------------------------------------------------------------------- world --
@dataclass
class RungFleet(Fleet):
    """The simulated fleet with a preset per pod (its rung) and a GPU cap."""

    gpus_total: int = R1.gpus
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
    switched_at: list[float] = field(default_factory=list)
    max_replicas: int = R1.max_replicas

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
        n = max(1, min(self.max_replicas, fit, math.ceil(held / g)))
        self.transition = Transition(to, n)
        self.switches += 1
        self.switched_at.append(now)
        self._step(now)

    def raise_target(self, replicas: int) -> None:
        """More replicas asked for during a transition: the new rung gets them, as many as
        the GPUs of both rungs and the free ones hold (at most maxReplicas)."""
        t = self.transition
        if t is None or replicas <= t.replicas:
            return
        held = sum(p.engine.preset.gpus for p in self.fleet.pods if p.deleted is None)
        fit = (held + self.fleet.free_gpus()) // self.presets[t.to].gpus
        t.replicas = max(t.replicas, min(replicas, fit, self.max_replicas))

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
    def __init__(self, setup: Setup) -> None:
        self.replicas = setup.static_replicas

    def tick(self, ctl: Controller, now: float) -> None:
        ctl.desired = self.replicas


class HpaPolicy(Policy):
    def __init__(self, setup: Setup) -> None:
        self.hpa = Hpa(1, setup.max_replicas)

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

    def __init__(self, ladder: bool, setup: Setup) -> None:
        self.ladder = ladder
        self.setup = setup
        self.spec = scaling_spec(setup)
        self.qspec = quantization_spec(setup)
        self.interval_s = float(self.spec.interval_seconds)
        # the start time the operator learned from earlier scale-ups of this resource (as
        # bench.autoscale seeds ours_projected): what a stepped switch's cost is counted in
        top = setup.rung_presets()[setup.top]
        self.moe = checkpoint_is_moe(top.model.hf_ids[0])  # as the operator reads spec.model
        self.state = ScalingState(start_seconds=round(top.load_time_s, 1))
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
            moe=self.moe,
            keep_replicas=(
                keeps_replicas(self.qspec, ctl.served, self.mode) if self.ladder else None
            ),
        )
        d = decide(self.spec, inputs, self.state, now, self.interval_s)
        self.state = d.state
        if not in_flight:
            ctl.desired = d.replicas
        else:  # the rollout moves as many replicas as are asked for (it reads them each tick)
            ctl.raise_target(d.replicas)
        if not self.ladder:
            return
        self._learn(ctl)
        vals = sig.values
        load = load_view(d, vals, ready, now)
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
            arrival_rate=load.arrival_rate,
            drain_s=load.drain_s,
            drain_idle_s=load.drain_idle_s,
            outlook=load.outlook,
            ttft_p99=vals.get(Signal.TTFT_P99),
            tpot_p99=vals.get(Signal.TPOT_P99),
            cold_start_s=self.state.start_seconds,
            metrics_ok=d.metrics_ok and ready > 0,
            transition_in_flight=in_flight,
            default_gpus_per_replica=self.setup.gpus_per_replica,
            kv_cache_usage=vals.get(Signal.KV_CACHE_USAGE),
            kv_binds=self._kv_binds(ctl),
        )
        md = decide_mode(self.qspec, self.spec.slo, mi, self.mode, now)
        self.mode = md.state
        self.reasons[md.reason] = self.reasons.get(md.reason, 0) + 1
        if md.switched and md.target != ctl.served:
            ctl.switch(md.target, now)

    def _kv_binds(self, ctl: Controller) -> bool | None:
        """Whether the served rung's learned capacity is set by its KV cache (as the handler
        reads it from the capacity model)."""
        aim = self.spec.targets.tpot_slo_fraction * self.spec.slo.tpot_p99_seconds
        model = self.state.capacity
        cap = replica_capacity(
            model, ctl.served, None, aim, self.spec.targets.kv_cache_usage, self.moe
        )
        return cap.kv_binds if cap is not None else None

    def _learn(self, ctl: Controller) -> None:
        """A new steady sample of the serving colour's capacity model teaches the served rung
        what a replica carries at the autoscaler's TPOT aim."""
        model = self.state.capacity
        if model is None or model.colour != ctl.served or model.samples <= self.samples:
            self.samples = 0 if model is None or model.colour != ctl.served else self.samples
            return
        self.samples = model.samples
        aim = self.spec.targets.tpot_slo_fraction * self.spec.slo.tpot_p99_seconds
        cap = replica_capacity(
            model, ctl.served, None, aim, self.spec.targets.kv_cache_usage, self.moe
        )
        if cap is not None:
            self.mode = learn_rung_capacity(self.mode, ctl.served, cap.per_replica)


def make_policy(name: str, setup: Setup = R1) -> Policy:
    if name == "ours":
        return Ours(ladder=True, setup=setup)
    if name == "ours_no_ladder":
        return Ours(ladder=False, setup=setup)
    if name == "hpa":
        return HpaPolicy(setup)
    if name == "static":
        return Static(setup)
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
    trace: T.Trace, policy_name: str, top_rps: float, seed: int, setup: Setup = R1
) -> tuple[dict[str, Any], Series]:
    presets = setup.rung_presets()
    names = [r["name"] for r in setup.ladder]
    top, full = setup.top, setup.static_replicas
    warmup = warmup_of(trace)
    duration = warmup + duration_of(trace)  # the end of the measured part
    fleet = RungFleet(presets[top], presets[top].load_time_s, seed=seed, gpus_total=setup.gpus)
    arrivals = [r.arrival for r in trace.requests]
    first = sum(1 for a in arrivals if a < 300.0) / 300.0
    initial = full if policy_name == "static" else min(full, max(1, math.ceil(first / top_rps)))
    for _ in range(initial):
        fleet.add_rung_pod(top, presets[top], 0.0, warm=True)
    ctl = Controller(fleet, presets, top, initial, max_replicas=setup.max_replicas)
    policy = make_policy(policy_name, setup)
    if isinstance(policy, HpaPolicy):
        policy.hpa.core.recommendations.append((0.0, initial))
    series = Series()
    reqs = trace.requests
    i, t = 0, 0
    next_decision, next_plot = policy.interval_s, warmup
    tokens_before: dict[str, int] = {}
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
        if t == int(warmup):  # the measured part starts: what the warm-up did is not counted
            tokens_before = fleet.tokens_by_rung()
            if isinstance(policy, Ours):
                policy.reasons = {}
        if now >= next_plot and now <= duration:
            next_plot += PLOT_STEP_S
            recent = sum(1 for a in arrivals[max(0, i - 5000) : i] if a >= now - 60.0)
            series.t.append(now - warmup)
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
    return summarize(trace, fleet, ctl, policy, tokens_before, setup), series


def summarize(
    trace: T.Trace,
    fleet: RungFleet,
    ctl: Controller,
    policy: Policy,
    tokens_before: dict[str, int],
    setup: Setup = R1,
) -> dict[str, Any]:
    """The measured part's numbers: requests arriving in it, GPU-hours held in it, tokens
    generated in it, switches started in it."""
    slo = scaling_spec(setup).slo
    w = warmup_of(trace)
    end = w + duration_of(trace)
    n = sum(1 for r in trace.requests if w <= r.arrival < end)
    done = [o for o in fleet.outcomes if o.ok and w <= o.arrival < end]
    good = sum(
        1
        for o in done
        if o.ttft is not None
        and o.ttft <= slo.ttft_p99_seconds
        and (o.tpot is None or o.tpot <= slo.tpot_p99_seconds)
    )
    tokens = {
        r: k - tokens_before.get(r, 0)
        for r, k in fleet.tokens_by_rung().items()
        if k > tokens_before.get(r, 0)
    }
    total = sum(tokens.values())
    res: dict[str, Any] = {
        "slo_attainment": good / n if n else 1.0,
        "gpu_hours": fleet.gpu_seconds(end, since=w) / 3600.0,
        "full_precision_fraction": tokens.get(setup.top, 0) / total if total else 1.0,
        "switches": sum(1 for at in ctl.switched_at if at >= w),
        "rung_at_start": _rung_at(policy, setup, w),
        "requests": n,
        "failed": n - len(done),
        "tokens_by_rung": tokens,
    }
    if isinstance(policy, Ours) and policy.ladder:
        res["mode_reasons"] = dict(sorted(policy.reasons.items()))
        if policy.mode is not None:
            res["learned_capacity"] = policy.mode.capacity
            res["switch_log"] = [
                {"at_s": round(_secs(s.at) - w, 0), "from": s.from_, "to": s.to, "reason": s.reason}
                for s in policy.mode.switches
            ]
    return res


def _rung_at(policy: Policy, setup: Setup, at: float) -> str:
    """The rung the policy had chosen by `at` (the warm-up's end)."""
    rung = setup.top
    if isinstance(policy, Ours) and policy.mode is not None:
        for sw in policy.mode.switches:
            if _secs(sw.at) <= at:
                rung = sw.to
    return rung


def _secs(rfc: str) -> float:
    return datetime.fromisoformat(rfc.replace("Z", "+00:00")).timestamp()


# ------------------------------------------------------------------------------- driver --
def _job(
    args: tuple[str, str | None, str, dict[str, float], int],
) -> tuple[str, str, dict[str, Any], Series]:
    scenario, azure, policy_name, top_rps, seed = args
    setup = setup_of(scenario)
    trace = build_scenarios(setup, top_rps, azure, seed)[scenario]
    wl = str(trace.meta["workload"])
    res, series = simulate(trace, policy_name, top_rps[wl], seed, setup)
    return scenario, policy_name, res, series


def _calibrate_job(args: tuple[str, str, str, int]) -> tuple[str, str, str, float]:
    """Requests/s one replica of a rung sustains with >= 99 % of requests within the SLOs, for
    a workload's lengths (a 30-minute diurnal probe, as bench.autoscale calibrates)."""
    key, workload, rung, seed = args
    setup = next(su for su in SETUPS if su.key == key)
    probe = T.diurnal(
        4.0, 1800.0, amplitude=0.7, period_s=1800.0, seed=seed, lengths=WORKLOADS[workload]
    )
    cfg = Config(seed=seed, max_replicas=setup.max_replicas)
    return key, workload, rung, calibrate(cfg, probe, setup.rung_presets()[rung])


Calibration = dict[str, dict[str, dict[str, float]]]  # setup -> workload -> rung -> req/s


def run(
    azure: str | None,
    out: Path,
    jobs: int,
    seed: int,
    log: Callable[[str], None],
    only: tuple[str, ...] = SCENARIOS,
) -> None:
    t0 = time.perf_counter()
    setups = [su for su in SETUPS if set(su.scenarios) & set(only)]
    pool = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else None
    try:
        cal_args = [
            (su.key, wl, r["name"], seed)
            for su in setups
            for wl in sorted({w for _, _, w in su.shapes})
            for r in su.ladder
        ]
        cal: Calibration = {su.key: {} for su in setups}
        for key, wl, rung, c in (
            pool.map(_calibrate_job, cal_args) if pool else map(_calibrate_job, cal_args)
        ):
            cal[key].setdefault(wl, {})[rung] = c
            su = next(x for x in setups if x.key == key)
            fit = su.gpus // su.rung_presets()[rung].gpus
            log(
                f"    {key:<10} {wl:<9} {rung:<8} {c:.2f} req/s per replica within the SLO; "
                f"{fit} fit"
            )
        top_rps = {su.key: {wl: c[su.top] for wl, c in cal[su.key].items()} for su in setups}
        scenarios: dict[str, T.Trace] = {}
        for su in setups:
            built = build_scenarios(su, top_rps[su.key], azure, seed)
            scenarios.update({k: v for k, v in built.items() if k in only})
        log(f"==> bench.quantization: {len(scenarios)} scenarios x {len(POLICIES)} policies")
        args = [
            (sn, azure, pn, top_rps[setup_of(sn).key], seed) for sn in scenarios for pn in POLICIES
        ]
        results: dict[str, dict[str, Any]] = {sn: {} for sn in scenarios}
        all_series: dict[str, dict[str, Series]] = {sn: {} for sn in scenarios}
        for sn, pn, res, series in pool.map(_job, args) if pool else map(_job, args):
            results[sn][pn] = res
            all_series[sn][pn] = series
            log(
                f"    {sn:<22} {pn:<15} slo {res['slo_attainment']:.3f}  gpu-h "
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
        su = setup_of(sn)
        wl = str(scenarios[sn].meta["workload"])
        plot(sn, su, per, su.static_replicas * top_rps[su.key][wl], out / f"quantization_{sn}.png")
    (out / "quantization.md").write_text(summary_md(doc))
    log(f"==> wrote {out}/quantization.json, quantization.md and plots in {runtime:.0f}s")


def peak_rps(trace: T.Trace) -> float:
    """The busiest 5 minutes' request rate of the measured part."""
    return max((r for _, r in measured(trace).rate_series(300.0)), default=0.0)


CALM_S = 600.0  # the stretch before a jump in which the load stayed within the top rung


def reactive_bound(
    trace: T.Trace, top_fleet_rps: float, switch_s: float, ttft_slo_s: float
) -> tuple[float, float]:
    """(the highest SLO attainment a policy can reach that does not know the load ahead, the
    time of the jump that sets it). After CALM_S in which no minute went beyond what the top
    rung carries on all the GPUs, serving the top rung was right; if the load then jumps, no
    other rung can serve before `switch_s` (the quickest rung's cold start, generously with no
    drain and no time to notice). The requests arriving in that window beyond what the top
    rung serves wait in a queue that outlasts the TTFT SLO for all but `ttft_slo_s` x its rate
    of them: no policy that reacts meets the SLO for them. 1.0 where the load never jumps
    like that."""
    w, d = warmup_of(trace), duration_of(trace)
    per_s = [0] * (int(w + d) + 2)
    for r in trace.requests:
        if r.arrival < w + d:
            per_s[int(r.arrival)] += 1
    cum = [0]
    for k in per_s:
        cum.append(cum[-1] + k)
    n = sum(1 for r in trace.requests if w <= r.arrival < w + d)
    win, calm = int(switch_s), int(CALM_S)
    # calm_until[t]: every minute of [t - CALM_S, t) stayed within what the top rung carries
    over = [cum[t] - cum[t - 60] > top_fleet_rps * 60 for t in range(60, len(cum))]
    last_over = -(10**9)
    calm_at: list[bool] = [False] * len(cum)
    for t in range(60, len(cum)):
        if over[t - 60]:
            last_over = t
        calm_at[t] = t - last_over >= calm
    worst, at = 0.0, 0.0
    for t in range(max(int(w), calm), int(w + d) - win):
        if not calm_at[t]:
            continue  # not calm before t: a policy had reason to switch already
        excess = cum[t + win] - cum[t] - top_fleet_rps * (win + ttft_slo_s)
        if excess > worst:
            worst, at = excess, t - w
    return (1.0 - worst / n if n else 1.0), at


def report(
    scenarios: dict[str, T.Trace],
    cal: Calibration,
    results: dict[str, dict[str, Any]],
    runtime: float,
    seed: int,
) -> dict[str, Any]:
    acceptance: dict[str, dict[str, Any]] = {}
    for sn, per in results.items():
        su = setup_of(sn)
        wl = str(scenarios[sn].meta["workload"])
        presets = su.rung_presets()
        best = max(
            cal[su.key][wl][r["name"]] * (su.gpus // presets[r["name"]].gpus) for r in su.ladder
        )
        ours, bare = per["ours"], per["ours_no_ladder"]
        carries = best >= peak_rps(scenarios[sn])
        top_fleet = cal[su.key][wl][su.top] * su.static_replicas
        quickest = min(presets[r["name"]].load_time_s for r in su.ladder[1:])
        ttft = scaling_spec(su).slo.ttft_p99_seconds
        bound, jump_at = reactive_bound(scenarios[sn], top_fleet, quickest, ttft)
        reachable = bound >= 0.99
        meets, bare_meets = ours["slo_attainment"] >= 0.99, bare["slo_attainment"] >= 0.99
        costs_nothing = (
            ours["slo_attainment"] >= bare["slo_attainment"] - 0.005
            and ours["gpu_hours"] <= bare["gpu_hours"] * 1.02
        )
        better = ours["slo_attainment"] > bare["slo_attainment"] + 0.005
        if carries and reachable:  # ours meets the SLO and the fleet without the ladder not
            holds = meets and not bare_meets
        elif carries:  # a jump no policy that reacts can meet: the ladder must still help
            holds = better or meets
        else:  # no rung carries the peak: no policy can; the ladder must cost nothing
            holds = costs_nothing
        acceptance[sn] = {
            "ours_meets_slo": meets,
            "ours_no_ladder_meets_slo": bare_meets,
            "best_rung_carries_rps": round(best, 2),
            "peak_rps": round(peak_rps(scenarios[sn]), 2),
            "a_rung_carries_the_peak": carries,
            "reactive_bound": round(bound, 4),
            "jump_at_s": round(jump_at, 0),
            "ladder_costs_nothing": costs_nothing,
            "ladder_helps": better,
            "holds": holds,
        }
    return {
        "scenarios": results,
        "acceptance": acceptance,
        "setup": {
            "setups": {
                su.key: {
                    "title": su.title,
                    "gpus": su.gpus,
                    "rungs": {
                        r["name"]: {
                            "preset": su.rung_presets()[r["name"]].describe(),
                            "replica_capacity_rps": {
                                wl: round(c[r["name"]], 3) for wl, c in cal[su.key].items()
                            },
                            "replicas_on_gpus": su.gpus // su.rung_presets()[r["name"]].gpus,
                        }
                        for r in su.ladder
                    },
                    "peak_over_top_rung": su.peak_over_top,
                    "scaling": scaling_spec(su).model_dump(by_alias=True),
                    "quantization": quantization_spec(su).model_dump(by_alias=True),
                }
                for su in SETUPS
                if su.key in cal
            },
            "scenarios": {
                sn: {
                    "setup": setup_of(sn).key,
                    "requests": len(measured(tr)),
                    "duration_s": duration_of(tr),
                    "warmup_s": warmup_of(tr),
                    "mean_rate_rps": round(len(measured(tr)) / duration_of(tr), 2),
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


def plot(name: str, setup: Setup, per: dict[str, Series], top_fleet_rps: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    first = next(iter(per.values()))
    mins = [x / 60.0 for x in first.t]
    axes[0].plot(mins, first.load_rps, color="black", lw=1, label="arriving")
    axes[0].axhline(
        top_fleet_rps,
        color="gray",
        ls="--",
        lw=0.8,
        label=f"{setup.static_replicas} {setup.top} replicas carry",
    )
    axes[0].set_ylabel("load (req/s, 1 min)")
    axes[0].legend(fontsize=8, loc="upper left")
    axes[0].set_title(f"{name}: {setup.title}")
    for pn, s in per.items():
        m = [x / 60.0 for x in s.t]
        axes[1].step(m, s.rung, where="post", color=_COLOURS.get(pn), label=pn, lw=1.2)
        axes[2].step(m, s.ready, where="post", color=_COLOURS.get(pn), label=pn, lw=1.2)
    axes[1].set_yticks(range(len(setup.ladder)), [r["name"] for r in setup.ladder])
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
        f"runtime {s['runtime_s']}s.",
        "",
        "Capacity: the highest Poisson rate one replica sustains with >= 99% of requests within "
        "the SLOs (TTFT 2 s, TPOT 0.1 s), per workload; in brackets, x the replicas that fit.",
    ]
    for key, su in s["setups"].items():
        wls = sorted(next(iter(su["rungs"].values()))["replica_capacity_rps"])
        lines += [
            "",
            f"## {key}: {su['title']}",
            "",
            f"Demand peaks at {su['peak_over_top_rung']}x what the first rung's replicas on the "
            f"{su['gpus']} GPUs carry.",
            "",
            "| rung | preset | GPUs/replica | KV tokens/replica | replicas that fit | "
            + " | ".join(f"{wl} req/s" for wl in wls)
            + " |",
            "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in wls) + " |",
        ]
        for rn, r in su["rungs"].items():
            cap, fit = r["replica_capacity_rps"], r["replicas_on_gpus"]
            lines.append(
                f"| {rn} | `{r['preset']['name']}` | {r['preset']['gpus']} | "
                f"{r['preset']['kv_capacity_tokens']} | {fit} | "
                + " | ".join(f"{cap[wl]:.2f} ({cap[wl] * fit:.1f})" for wl in wls)
                + " |"
            )
    for sn, per in doc["scenarios"].items():
        meta = s["scenarios"][sn]
        lines += [
            "",
            f"## {sn} ({meta['setup']}, {meta['meta']['workload']}: {meta['requests']} requests "
            f"over {meta['duration_s']:.0f}s, {meta['mean_rate_rps']} req/s mean)",
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
    lines += [
        "",
        "## Acceptance",
        "",
        "Every policy first runs 30 minutes of the stretch that precedes the scenario (not "
        "counted), as an operator that ran before would have. Where a rung carries the peak "
        "(its replicas that fit, at the capacity above, >= the busiest 5 minutes), ours must "
        "meet the SLO (>= 0.99) where ours_no_ladder does not. Two exceptions, both computed "
        "from the scenario: where no rung carries the peak, no policy can, and the ladder must "
        "cost nothing (SLO attainment >= ours_no_ladder - 0.005 at <= 1.02x its GPU-hours); "
        "where the load jumps, after 10 calm minutes within what the top rung carries, by more "
        "than it carries within the quickest rung's cold start, no policy that reacts can meet "
        "the SLO (the reactive bound: the requests beyond the top rung in that window wait "
        "longer than the TTFT SLO whatever is done), and the ladder must do better than "
        "ours_no_ladder (by > 0.005).",
        "",
    ]
    for sn, a in doc["acceptance"].items():
        if not a["a_rung_carries_the_peak"]:
            tail = f"; the ladder {'costs nothing' if a['ladder_costs_nothing'] else 'COSTS'}"
        elif a["reactive_bound"] < 0.99:
            tail = (
                f"; a jump at {a['jump_at_s'] / 60:.0f} min caps any reactive policy at "
                f"{a['reactive_bound']:.3f}; the ladder "
                f"{'helps' if a['ladder_helps'] else 'does not help'}"
            )
        else:
            tail = ""
        lines.append(
            f"- {sn}: peak {a['peak_rps']} req/s, the best rung carries "
            f"{a['best_rung_carries_rps']}; ours {'meets' if a['ours_meets_slo'] else 'misses'} "
            f"the SLO, ours_no_ladder "
            f"{'meets' if a['ours_no_ladder_meets_slo'] else 'misses'} it"
            + tail
            + f": {'holds' if a['holds'] else 'does NOT hold'}."
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
