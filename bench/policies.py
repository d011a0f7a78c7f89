"""The autoscalers the benchmark compares: ours (the operator's own `scaling.decide`) and the
usual baselines, each a small class with `decide(view) -> replicas`.

Baselines follow their documentation:

- Kubernetes HPA (kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/, "Algorithm
  details" and "Configurable scaling behavior"): desired = ceil(current * metric / target),
  skipped while the ratio is within the 10 % tolerance; scale-down uses the highest
  recommendation of the last 300 s (stabilization window), scale-up the lowest of its window
  (0 s by default); default policies: up by max(4 pods, 100 %) per 15 s, down by 100 % per
  15 s; synced every 15 s; clamped to min/max.
- KEDA (keda.sh/docs/concepts/scaling-deployments/): KEDA feeds an external metric to an HPA with
  an `AverageValue` target: desired = ceil(metric / target) (tolerance on metric / (target *
  current)), then the HPA's behaviour as above. The metric here is the queue length
  (vllm:num_requests_waiting summed over the pods).
- Knative KPA (knative.dev/docs/serving/autoscaling/kpa-specific/ and /concurrency/): observed
  concurrency averaged over a 60 s stable window and a 6 s panic window; desired =
  ceil(concurrency / target); panic when the panic-window desired reaches 200 % of the Ready
  pods, and while panicking (until a stable window passes without the condition) it never
  scales down; max scale-up rate 1000x, max scale-down rate 2x (at most halve) per decision;
  ticks every 2 s. Target per pod: Knative's defaults, container-concurrency-target-default
  100 x target utilization 70 % = 70.
- static_peak: a fixed count sized for the trace's peak, Ready from the start; static_history
  the same sized for the peak of the warm-up stretch before the trace.
- oracle: knows the future arrival rate and the replica capacity measured for this preset and
  trace (`calibrate` in autoscale.py); it asks for what will be needed one cold start ahead.
- reactive (a reference, run only when asked): the oracle without foresight, asking for what
  the last minute needed.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass, field

from deepseek_operator.api.spec import ScalingSpec
from deepseek_operator.api.status import ScalingState
from deepseek_operator.scaling import ScalingInputs, decide, learned_admission
from deepseek_operator.signals import Signals


@dataclass(frozen=True)
class View:
    """What an autoscaler can see at `now`."""

    now: float
    replicas: int  # current desired replicas (scale subresource), starting pods included
    ready: int
    signals: Signals
    gpu_util_all_pods: float | None  # DCGM utilization over every pod with GPUs (HPA's view)
    queue_length: float  # requests waiting in the engines (KEDA's metric)
    concurrency: float  # requests in flight at the pods and the router (Knative's metric)


class Policy:
    name = "policy"
    interval_s = 15.0

    def decide(self, v: View) -> int:
        raise NotImplementedError


# ------------------------------------------------------------------------------ ours --
class Ours(Policy):
    """The operator's policy: `deepseek_operator.scaling.decide`, called as handlers.py does.
    With `learn_limit` (spec.engine.admission without maxRunning) it also learns the engine
    pods' admission limit as the operator does after each decision: `scaling.admission_limit`
    on the capacity model just decided with, published through `next_admission_limit` against
    the one written (`written`), both through `scaling.learned_admission` as the reconcile
    calls it; `limits` lists the publications (time, limit) for the fleet, which applies each
    one when it reaches the pods."""

    name = "ours"

    def __init__(
        self,
        spec: ScalingSpec,
        start_seconds: float | None = None,
        name: str = "ours",
        moe: bool = False,
        learn_limit: bool = False,
    ) -> None:
        self.name = name
        self.spec = spec
        self.moe = moe  # spec.model.is_moe() of the model served
        self.interval_s = float(spec.interval_seconds)
        # start_seconds: what the operator learned from earlier scale-ups of this resource
        # (it has been running before the trace starts, as the HPA's seeded history says)
        self.state = ScalingState(start_seconds=start_seconds)
        self.reasons: dict[str, int] = {}
        # (time, replicas, decided, reason, message) of every decision, for reading a run
        self.log: list[tuple[float, int, int, str, str]] = []
        self.learn_limit = learn_limit
        self.written: int | None = None  # the limit in the ConfigMap
        self.limits: list[tuple[float, int]] = []  # every publication: (time, limit)
        self.limit_why = ""  # why the last one was published

    def decide(self, v: View) -> int:
        inputs = ScalingInputs(
            replicas=v.replicas,
            ready=v.ready,
            signals=v.signals,
            unschedulable=0,
            signal_age=0.0,
            moe=self.moe,
        )
        d = decide(self.spec, inputs, self.state, v.now, self.interval_s)
        self.state = d.state
        self.log.append((v.now, v.replicas, d.replicas, d.reason, d.message))
        if d.replicas != v.replicas:
            self.reasons[d.reason] = self.reasons.get(d.reason, 0) + 1
        if self.learn_limit:  # as the reconcile does after a decision (handlers.py)
            self.state, said = learned_admission(self.spec, self.state)
            n = self.state.admission_limit
            if said is not None and n is not None:
                self.written, self.limit_why = n, self.state.admission_limit_source or ""
                self.limits.append((v.now, n))
        return d.replicas


# ------------------------------------------------------------------------------- HPA --
@dataclass(frozen=True)
class HpaBehavior:
    """autoscaling/v2 behavior with the documented defaults."""

    up_window_s: float = 0.0
    down_window_s: float = 300.0
    up_pods: int = 4  # Pods policy: 4 per period
    up_percent: float = 100.0  # Percent policy: 100 % per period
    up_period_s: float = 15.0
    down_percent: float = 100.0
    down_period_s: float = 15.0


@dataclass
class HpaCore:
    """The HPA controller's arithmetic after the metric (replica_calculator + behaviors)."""

    min_replicas: int
    max_replicas: int
    behavior: HpaBehavior = field(default_factory=HpaBehavior)
    tolerance: float = 0.1
    recommendations: deque[tuple[float, int]] = field(default_factory=deque)
    events: deque[tuple[float, int]] = field(default_factory=deque)  # (time, replica change)

    @staticmethod
    def ratio_replicas(current: int, usage_ratio: float, tolerance: float = 0.1) -> int:
        """Target-value/utilization metrics: ceil(current * ratio) outside the tolerance."""
        if abs(usage_ratio - 1.0) <= tolerance:
            return current
        return math.ceil(usage_ratio * current)

    @staticmethod
    def average_value_replicas(
        current: int, metric_total: float, target: float, tolerance: float = 0.1
    ) -> int:
        """External metric with an AverageValue target (what KEDA creates)."""
        ratio = metric_total / (target * current) if current > 0 else math.inf
        if current > 0 and abs(ratio - 1.0) <= tolerance:
            return current
        return math.ceil(metric_total / target)

    def stabilize(self, now: float, current: int, desired: int) -> int:
        """Stabilization windows: the newest up-window minimum / down-window maximum."""
        b = self.behavior
        keep = max(b.up_window_s, b.down_window_s)
        while self.recommendations and self.recommendations[0][0] < now - keep:
            self.recommendations.popleft()
        up, down = desired, desired
        for t, r in self.recommendations:
            if t > now - b.up_window_s:
                up = min(up, r)
            if t > now - b.down_window_s:
                down = max(down, r)
        self.recommendations.append((now, desired))
        rec = current
        if rec < up:
            rec = up
        if rec > down:
            rec = down
        return rec

    def rate_limit(self, now: float, current: int, desired: int) -> int:
        """Scale-up/-down policies over their periods (selectPolicy Max)."""
        b = self.behavior
        while self.events and self.events[0][0] <= now - max(b.up_period_s, b.down_period_s):
            self.events.popleft()
        if desired > current:
            added = sum(d for t, d in self.events if d > 0 and t > now - b.up_period_s)
            start = current - added
            limit = max(start + b.up_pods, math.ceil(start * (1 + b.up_percent / 100.0)))
            limit = max(limit, current)
            return min(desired, limit, self.max_replicas)
        if desired < current:
            removed = -sum(d for t, d in self.events if d < 0 and t > now - b.down_period_s)
            start = current + removed
            limit = math.ceil(start * (1 - b.down_percent / 100.0))
            limit = min(limit, current)
            return max(desired, limit, self.min_replicas)
        return desired

    def normalize(self, now: float, current: int, desired: int) -> int:
        rec = self.stabilize(now, current, desired)
        out = self.rate_limit(now, current, rec)
        out = min(max(out, self.min_replicas), self.max_replicas)
        if out != current:
            self.events.append((now, out - current))
        return out


class Hpa(Policy):
    """HPA on GPU utilization (DCGM, averaged over the pods), target 80 %."""

    name = "hpa"

    def __init__(self, min_replicas: int, max_replicas: int, target: float = 0.8) -> None:
        self.core = HpaCore(min_replicas, max_replicas)
        self.target = target

    def decide(self, v: View) -> int:
        if v.gpu_util_all_pods is None or v.replicas == 0:
            return v.replicas
        raw = HpaCore.ratio_replicas(v.replicas, v.gpu_util_all_pods / self.target)
        return self.core.normalize(v.now, v.replicas, raw)


class Keda(Policy):
    """KEDA-style: HPA with an AverageValue target on the queue length."""

    name = "keda"

    def __init__(self, min_replicas: int, max_replicas: int, target: float) -> None:
        self.core = HpaCore(min_replicas, max_replicas)
        self.target = target

    def decide(self, v: View) -> int:
        if v.replicas == 0:
            return v.replicas
        raw = HpaCore.average_value_replicas(v.replicas, v.queue_length, self.target)
        return self.core.normalize(v.now, v.replicas, raw)


# ------------------------------------------------------------------------------- KPA --
@dataclass
class KpaCore:
    """Knative's KPA decision from per-second concurrency samples."""

    target: float
    min_replicas: int
    max_replicas: int
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0  # 200 %
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    panic_since: float | None = None
    max_panic_pods: int = 0

    def record(self, t: float, concurrency: float) -> None:
        self.samples.append((t, concurrency))
        while self.samples and self.samples[0][0] <= t - self.stable_window_s:
            self.samples.popleft()

    def _avg(self, now: float, window: float) -> float:
        xs = [c for t, c in self.samples if t > now - window]
        return sum(xs) / len(xs) if xs else 0.0

    def decide(self, now: float, ready: int) -> int:
        ready = max(ready, 1)
        stable = self._avg(now, self.stable_window_s)
        panic = self._avg(now, self.panic_window_s)
        want_stable = math.ceil(stable / self.target)
        want_panic = math.ceil(panic / self.target)
        over = want_panic / ready >= self.panic_threshold
        if over:
            self.panic_since = now
        elif self.panic_since is not None and now - self.panic_since >= self.stable_window_s:
            self.panic_since = None
            self.max_panic_pods = 0
        up_cap = math.ceil(self.max_scale_up_rate * ready)
        down_floor = math.floor(ready / self.max_scale_down_rate)
        want_stable = max(min(want_stable, up_cap), down_floor)
        want_panic = max(min(want_panic, up_cap), down_floor)
        if self.panic_since is not None:
            # panic: follow the panic window, never below what this panic already asked for
            self.max_panic_pods = max(self.max_panic_pods, want_panic)
            desired = self.max_panic_pods
        else:
            desired = want_stable
        return min(max(desired, self.min_replicas), self.max_replicas)


class Kpa(Policy):
    name = "kpa"
    interval_s = 2.0

    def __init__(self, min_replicas: int, max_replicas: int, target: float = 70.0) -> None:
        self.core = KpaCore(target, min_replicas, max_replicas)

    def sample(self, t: float, concurrency: float) -> None:
        self.core.record(t, concurrency)

    def decide(self, v: View) -> int:
        return self.core.decide(v.now, v.ready)


# ---------------------------------------------------------------------- static/oracle --
class Static(Policy):
    """A fixed count, Ready from the start: `static_peak` is sized for the measured part's
    (future) peak, `static_history` for the warm-up's peak (what provisioning from yesterday's
    load would have bought)."""

    name = "static_peak"

    def __init__(self, replicas: int, name: str = "static_peak") -> None:
        self.replicas = replicas
        self.name = name

    def decide(self, v: View) -> int:
        return self.replicas


class Oracle(Policy):
    """Asks at t for the most replicas needed over [t, t + cold start + lead]."""

    name = "oracle"

    def __init__(self, need: list[int], step_s: float, cold_start_s: float, lead_s: float) -> None:
        self.need = need
        self.step_s = step_s
        self.ahead = math.ceil((cold_start_s + lead_s) / step_s)

    def at(self, t: float) -> int:
        i = int(t // self.step_s)
        window = self.need[i : i + self.ahead + 1]
        return max(window) if window else self.need[-1]

    def decide(self, v: View) -> int:
        return self.at(v.now)


class Reactive(Policy):
    """Asks at t for the replicas the last minute's arrivals needed, with the capacity measured
    for this preset and trace (as the oracle): no forecast, no margin, no stabilization. Not
    one of the benchmark's policies: a reference for what reaction alone gets, beside the
    oracle's foresight (`--policies reactive`)."""

    name = "reactive"

    def __init__(
        self, need: list[int], step_s: float, window_s: float, name: str | None = None
    ) -> None:
        if name is not None:
            self.name = name
        self.need = need
        self.step_s = step_s
        self.window_s = window_s

    def at(self, t: float) -> int:
        # need[i] counts the arrivals of the window centred on i x step_s: the last one whole
        i = int(max(0.0, t - self.window_s / 2) // self.step_s)
        return self.need[min(i, len(self.need) - 1)]

    def decide(self, v: View) -> int:
        return self.at(v.now)


class Ratchet(Reactive):
    """Asks at t for the most replicas any whole minute so far needed (the warm-up's
    included), never fewer: the largest fleet a policy that plans no further than the load it
    has seen would hold. Where it misses the SLO, the load rose past everything seen before,
    faster than a pod starts, and no such policy, ours included, can do better. A reference
    (`--policies ratchet`), not one of the benchmark's policies."""

    name = "ratchet"

    def __init__(self, need: list[int], step_s: float, window_s: float) -> None:
        # reaction to the running maximum of the need
        super().__init__(list(itertools.accumulate(need, max)), step_s, window_s)


class Floor(Policy):
    """Never fewer than `floor` replicas; above it, the replicas the minute centred on t needs,
    with the capacity calibrated for the trace: no forecast, no margin, no stabilization.
    Reaction as fast as any could be, faster (it sees the half minute ahead), beside a fleet
    held for what it cannot catch. Not one of the benchmark's policies: a reference
    (`--policies floorK`). Where a load's rises come unannounced (bursts that start as a
    Poisson process: every moment between them is as likely to be the last), a policy without
    foresight can only hold some fleet between them and react; the floors, one run each, trace
    the most attainment each bill buys that way (`frontier_*.png`)."""

    def __init__(self, need: list[int], step_s: float, floor: int) -> None:
        self.name = f"floor{floor}"
        self.need = need
        self.step_s = step_s
        self.floor = floor

    def decide(self, v: View) -> int:
        i = min(int(v.now // self.step_s), len(self.need) - 1)
        return max(self.floor, self.need[i])


def need_series(
    arrivals: list[float],
    duration: float,
    capacity_rps: float,
    step_s: float,
    window_s: float,
    min_replicas: int,
    max_replicas: int,
) -> list[int]:
    """Replicas needed per step: ceil(arrival rate over a centred window / capacity)."""
    n = math.ceil(duration / step_s) + 1
    out = []
    j0 = j1 = 0
    for i in range(n):
        t = i * step_s
        lo, hi = t - window_s / 2, t + window_s / 2
        while j0 < len(arrivals) and arrivals[j0] < lo:
            j0 += 1
        while j1 < len(arrivals) and arrivals[j1] < hi:
            j1 += 1
        rate = (j1 - j0) / window_s
        out.append(min(max(math.ceil(rate / capacity_rps - 1e-9), min_replicas), max_replicas))
    return out
