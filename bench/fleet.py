"""A fleet of simulated vLLM replicas under a virtual clock, for the autoscaling benchmark.

Every policy sees the same world:

- a pod created at `t` holds its GPUs from `t` and becomes Ready at `t + cold_start_s` (the
  engine model's load time: startup work + reading the weights, see sim/presets.py), with the
  same cold start for every policy;
- a router sends each request, at its arrival time, to the Ready pod with the fewest
  outstanding requests (as the project's router does); with no Ready pod it holds the request
  until one is Ready or the client gives up;
- a pod that is scaled down leaves the router at once and drains (its requests finish), then
  gives its GPUs back; pods still starting are deleted first, as a ReplicaSet does;
- a client gives up on a request that has no first token after `client_timeout_s` (counted as
  failed; the engine aborts it);
- optionally (`gate_wait_s`, `bench.autoscale --admission`), each pod runs the engine pod's
  admission gate (`spec.engine.admission`, serving/deepseek_serving/admission.py): at most
  maxRunning requests in vLLM (the fleet caps the preset's max_num_seqs at it, so the rest wait
  in vLLM's queue, as they would at the gate: in arrival order, and newest first while the
  oldest has waited more than NEWEST_FIRST_AFTER of the wait, the gate's adaptive LIFO: a
  request arriving then is queued ahead of the others, behind vLLM's preempted ones; when the
  queue drains again, the requests queued that way keep their places, where the gate would
  serve its oldest first again), and a request at a pod with no
  first token `gate_wait_s` after its arrival is answered 503 and aborted (failed; every
  request is taken as streamed, so the gate sees its first token; the router's retry on
  another replica is not modelled). One the router holds (no Ready pod) waits for the
  client's timeout as before;
- the gate's limit may instead be the operator's learned one (`publish_limit`: `ours` with
  `spec.engine.admission: {}`, bench/autoscale.py): the operator writes it into a ConfigMap
  mounted into the engine pods after a decision, and every pod, those created later too,
  runs at most that many requests in vLLM from LIMIT_LAG_S after it was written (the same
  cap on max_num_seqs as above); until a limit is in force a pod has none (the preset's
  max_num_seqs).

`signals()` computes the operator's Signals from this state as the operator's PromQL would
(signals.py): sums/averages of the vLLM gauges over the serving pods, histogram_quantile over
the last minute of vLLM's TTFT and inter-token-latency histograms with vLLM 0.32's bucket
boundaries, the per-bucket rates of the TTFT and per-request TPOT histograms
(Signals.buckets), DCGM GPU utilization averaged over the pods' GPUs.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from dataclasses import dataclass, field

from deepseek_operator.signals import Signal, Signals
from deepseek_serving.admission import NEWEST_FIRST_AFTER

from testbed.sim.engine import EngineModel, RequestRecord, SimRequest
from testbed.sim.presets import EnginePreset

# Histogram bucket upper bounds of vllm:time_to_first_token_seconds and
# vllm:inter_token_latency_seconds in vLLM 0.32 (shared/reference/vllm-0.32-metrics.txt).
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
WINDOW_S = 60  # the operator's PromQL rate window (signals.RATE_WINDOW = 1m)
# From the operator writing a learned admission limit into the ConfigMap to the engine pods'
# gates applying it: kubelet refreshes a mounted ConfigMap volume within about a minute (its
# sync period plus the cache's TTL) and the gate re-reads the file every 5 s.
LIMIT_LAG_S = 60.0


def histogram_quantile(q: float, bounds: tuple[float, ...], counts: list[float]) -> float:
    """Prometheus' histogram_quantile over non-cumulative bucket counts (the last count is the
    +Inf bucket): linear interpolation inside the bucket that holds the rank; NaN when empty."""
    total = sum(counts)
    if total <= 0:
        return math.nan
    rank = q * total
    cum = 0.0
    for i, c in enumerate(counts):
        if cum + c >= rank and c > 0:
            if i == len(bounds):  # +Inf bucket: Prometheus returns the highest finite bound
                return bounds[-1]
            lo = bounds[i - 1] if i > 0 else 0.0
            return lo + (bounds[i] - lo) * (rank - cum) / c
        cum += c
    return bounds[-1]


class WindowHistogram:
    """Per-second bucket counts over a sliding window (what rate(x_bucket[1m]) sees)."""

    def __init__(self, bounds: tuple[float, ...], window_s: int = WINDOW_S) -> None:
        self.bounds = bounds
        self.window_s = window_s
        self._slots: deque[tuple[int, list[float]]] = deque()
        self._sums: dict[int, float] = {}  # observe() only (sum of the values per second)

    def observe(self, t: float, value: float, count: float = 1.0) -> None:
        sec = int(t)
        if not self._slots or self._slots[-1][0] != sec:
            self._slots.append((sec, [0.0] * (len(self.bounds) + 1)))
        self._slots[-1][1][bisect.bisect_left(self.bounds, value)] += count
        self._sums[sec] = self._sums.get(sec, 0.0) + value * count

    def mean(self, now: float) -> float:
        """rate(x_sum[1m]) / rate(x_count[1m]); NaN when the window is empty."""
        for sec in [s for s in self._sums if s <= now - self.window_s - 1]:
            del self._sums[sec]
        total = sum(v for sec, v in self._sums.items() if sec > now - self.window_s)
        count = sum(sum(c) for sec, c in self._slots if sec > now - self.window_s and sec <= now)
        return total / count if count > 0 else math.nan

    def observe_runs(self, t: float, runs: list[tuple[float, int]]) -> None:
        """Observe (value, count) runs at time t."""
        sec = int(t)
        if not self._slots or self._slots[-1][0] != sec:
            self._slots.append((sec, [0.0] * (len(self.bounds) + 1)))
        slot = self._slots[-1][1]
        bounds = self.bounds
        for value, count in runs:
            slot[bisect.bisect_left(bounds, value)] += count

    def counts(self, now: float) -> list[float]:
        """Bucket counts of the window ending at `now` (the last one +Inf), not cumulative;
        forgets the seconds that have left it."""
        while self._slots and self._slots[0][0] <= now - self.window_s - 1:
            self._slots.popleft()
        counts = [0.0] * (len(self.bounds) + 1)
        for sec, c in self._slots:
            if sec > now - self.window_s:
                for i, v in enumerate(c):
                    counts[i] += v
        return counts

    def quantile(self, q: float, now: float) -> float:
        return histogram_quantile(q, self.bounds, self.counts(now))

    def bucket_rates(self, now: float) -> tuple[tuple[float, float], ...]:
        """What sum by (le) (rate(x_bucket[1m])) reads: (le, cumulative count / window) for
        each bound, ascending, the last le math.inf (Signals.buckets); () when the window is
        empty."""
        counts = self.counts(now)
        if sum(counts) <= 0:
            return ()
        cum = list(itertools.accumulate(counts))
        return tuple(
            (le, c / self.window_s) for le, c in zip((*self.bounds, math.inf), cum, strict=True)
        )


@dataclass
class Pod:
    index: int
    engine: EngineModel
    created: float
    ready_at: float
    deleted: float | None = None  # scale-down time (draining from then)
    gone: float | None = None  # GPUs given back
    outstanding: int = 0
    last_pick: float = -1.0

    def ready(self, now: float) -> bool:
        return self.deleted is None and now >= self.ready_at

    def starting(self, now: float) -> bool:
        return self.deleted is None and now < self.ready_at


@dataclass
class Outcome:
    """What the client saw for one request."""

    arrival: float
    ttft: float | None  # from client arrival (router wait included)
    tpot: float | None
    ok: bool


@dataclass
class Fleet:
    preset: EnginePreset
    cold_start_s: float
    seed: int = 0
    client_timeout_s: float = 120.0
    gate_wait_s: float | None = None  # the admission gate sheds one without a first token by then
    fixed_gate: bool = False  # every pod's gate has a limit (--admission), not a learned one
    drain_timeout_s: float = 900.0
    # Which histogram backs Signal.TPOT_P99: "itl" = vllm:inter_token_latency_seconds (what
    # signals.py queried before), "request" = vllm:request_time_per_output_token_seconds.
    tpot_signal: str = "request"
    pods: list[Pod] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    preemptions: int = 0
    _router_queue: deque[SimRequest] = field(default_factory=deque)
    _awaiting_first: dict[str, tuple[float, Pod | None]] = field(default_factory=dict)
    _owner: dict[str, Pod] = field(default_factory=dict)
    _finished_window: deque[tuple[float, bool]] = field(default_factory=deque)
    _running_window: deque[tuple[int, float]] = field(default_factory=deque)
    _limits: list[tuple[float, int]] = field(default_factory=list)  # (published, limit)

    def __post_init__(self) -> None:
        self.ttft_hist = WindowHistogram(TTFT_BUCKETS)
        self.itl_hist = WindowHistogram(ITL_BUCKETS)
        self.request_tpot_hist = WindowHistogram(ITL_BUCKETS)  # same buckets in vLLM 0.32
        self._next_index = 0

    # -- pods -------------------------------------------------------------------------------
    def live(self) -> list[Pod]:
        """Pods that are not being deleted (starting or Ready)."""
        return [p for p in self.pods if p.deleted is None]

    def ready_pods(self, now: float) -> list[Pod]:
        return [p for p in self.pods if p.ready(now)]

    def add_pod(self, now: float, warm: bool = False) -> Pod:
        ready_at = now if warm else now + self.cold_start_s
        eng = EngineModel(
            self.preset,
            start_time=now,
            loaded=True,  # the fleet keeps the pod out of the router until ready_at
            seed=self.seed * 1000 + self._next_index,
            name=f"pod-{self._next_index}",
            emit_tokens=False,  # inter-token latencies come from the finished records
        )
        pod = Pod(self._next_index, eng, now, ready_at)
        self._next_index += 1
        self.pods.append(pod)
        self._limit_pod(pod, self.limit_at(now))
        return pod

    # -- the learned admission limit --------------------------------------------------------
    def publish_limit(self, now: float, limit: int) -> None:
        """The operator writes `limit` (the gate's maxRunning) into the pods' ConfigMap at
        `now`; the pods apply it LIMIT_LAG_S later (`limit_at`)."""
        self._limits.append((now, limit))

    def limit_at(self, now: float) -> int | None:
        """The limit the pods' gates run at `now`: the last one published LIMIT_LAG_S or more
        before it; None while none has reached them."""
        i = bisect.bisect_right(self._limits, now - LIMIT_LAG_S, key=lambda p: p[0])
        return self._limits[i - 1][1] if i else None

    def _limit_pod(self, pod: Pod, limit: int | None) -> None:
        # The gate lets `limit` requests into vLLM, which runs at most its max_num_seqs: the
        # engine's batch cap is the lower of the two, the rest wait in arrival order (the
        # engine model has no setter; the fleet owns its engines).
        batch = self.preset.max_num_seqs
        pod.engine._max_seqs = batch if limit is None else min(limit, batch)

    def scale_to(self, n: int, now: float) -> None:
        live = self.live()
        for _ in range(n - len(live)):
            self.add_pod(now)
        if n < len(live):
            # ReplicaSet order: not-ready before ready, newer before older; then fewer
            # outstanding requests first.
            order = sorted(live, key=lambda p: (p.ready(now), p.outstanding, -p.created, -p.index))
            for p in order[: len(live) - n]:
                p.deleted = now
                if not p.ready_at <= now or p.outstanding == 0:
                    p.gone = now

    # -- requests ---------------------------------------------------------------------------
    def arrive(self, req: SimRequest) -> None:
        self._awaiting_first[req.id] = (req.arrival, None)
        if not self._dispatch(req, req.arrival):
            self._router_queue.append(req)

    def _dispatch(self, req: SimRequest, now: float) -> bool:
        ready = self.ready_pods(now)
        if not ready:
            return False
        pod = min(ready, key=lambda p: (p.outstanding, p.last_pick))
        pod.last_pick = now
        pod.outstanding += 1
        self._owner[req.id] = pod
        self._awaiting_first[req.id] = (req.arrival, pod)
        pod.engine.submit(req, now, ahead=self._newest_first(pod, now))
        return True

    def _newest_first(self, pod: Pod, now: float) -> bool:
        """Whether the pod's admission gate serves its newest waiter now: it has a limit in
        force and its oldest waiter has waited more than NEWEST_FIRST_AFTER of the wait."""
        if self.gate_wait_s is None or not (self.fixed_gate or self.limit_at(now) is not None):
            return False
        return pod.engine.oldest_wait(now) > NEWEST_FIRST_AFTER * self.gate_wait_s

    def advance(self, now: float) -> None:
        """Run every pod to `now` and account for what clients saw."""
        if self._limits:
            limit = self.limit_at(now)
            for pod in self.pods:
                if pod.gone is None:
                    self._limit_pod(pod, limit)
        while self._router_queue:
            if not self._dispatch(self._router_queue[0], now):
                break
            self._router_queue.popleft()
        for pod in self.pods:
            if pod.gone is not None:
                continue
            for ev in pod.engine.advance(now):
                if ev.kind == "first_token":
                    arr, _ = self._awaiting_first.pop(ev.request_id, (None, None))
                    if arr is not None:
                        self.ttft_hist.observe(ev.time, ev.time - arr)
                elif ev.kind in ("finished", "rejected"):
                    pod.outstanding -= 1
                    self._owner.pop(ev.request_id, None)
                    self._awaiting_first.pop(ev.request_id, None)
            for rec in pod.engine.finished_requests():
                self._record(rec)
            if pod.deleted is not None and (
                pod.outstanding == 0 or now - pod.deleted >= self.drain_timeout_s
            ):
                for rid, owner in list(self._owner.items()):
                    if owner is pod:
                        pod.engine.abort(rid, now)
                for rec in pod.engine.finished_requests():
                    self._record(rec)
                pod.gone = now
        self._expire(now)
        sec = int(now)
        if not self._running_window or self._running_window[-1][0] != sec:
            ready = self.ready_pods(now)
            running = sum(p.engine.stats().num_requests_running for p in ready)
            self._running_window.append((sec, running))
        while self._running_window and self._running_window[0][0] <= now - WINDOW_S:
            self._running_window.popleft()

    def _expire(self, now: float) -> None:
        client_cutoff = now - self.client_timeout_s
        cutoff = client_cutoff
        if self.gate_wait_s is not None:
            cutoff = max(cutoff, now - self.gate_wait_s)
        late: list[str] = []
        # requests enter in arrival order (a dict keeps it), so the late ones come first
        for rid, (arr, pod) in self._awaiting_first.items():
            if arr >= cutoff:
                break
            if arr < client_cutoff:
                late.append(rid)  # the client gives up
            elif pod is not None:
                late.append(rid)  # the pod's admission gate sheds it (no place, or no token)
        queued: set[str] = set()
        for rid in late:
            arr, pod = self._awaiting_first.pop(rid)
            if pod is None:  # still in the router queue
                queued.add(rid)
                self.outcomes.append(Outcome(arr, None, None, False))
                self._finished_window.append((now, False))
            else:
                pod.engine.abort(rid, now)
                for rec in pod.engine.finished_requests():
                    self._record(rec)
                # the abort's "finished" event decrements outstanding on the next advance
        if queued:
            self._router_queue = deque(r for r in self._router_queue if r.id not in queued)

    def _record(self, rec: RequestRecord) -> None:
        # vllm:inter_token_latency_seconds, observed here when the request finishes (the real
        # server observes each token as it is sent: the 1-minute window lags by one request)
        self.itl_hist.observe_runs(rec.finished, rec.itl)
        if rec.tpot is not None:
            self.request_tpot_hist.observe(rec.finished, rec.tpot)
        ttft = None if rec.first_token is None else rec.first_token - rec.arrival
        ok = rec.ok
        self.outcomes.append(Outcome(rec.arrival, ttft, rec.tpot, ok))
        self._finished_window.append((rec.finished, ok))
        self.preemptions += rec.num_preemptions

    @property
    def pending(self) -> int:
        """Requests not finished: in the router queue or in some pod."""
        return len(self._router_queue) + sum(p.outstanding for p in self.pods if p.gone is None)

    def concurrency(self, now: float) -> float:
        """Requests in flight at the serving pods plus those held by the router (Knative's
        queue-proxy/activator view)."""
        return float(
            len(self._router_queue) + sum(p.outstanding for p in self.pods if p.deleted is None)
        )

    # -- what Prometheus would return ------------------------------------------------------
    def gpu_util(self, pods: list[Pod]) -> float | None:
        """Mean DCGM_FI_DEV_GPU_UTIL / 100 over the pods' GPUs (a pod still loading reports its
        GPUs idle: DCGM-exporter maps GPUs to pods as soon as they are allocated)."""
        if not pods:
            return None
        vals = [g.utilization_pct / 100.0 for p in pods for g in p.engine.gpu_stats()]
        return sum(vals) / len(vals)

    def signals(self, now: float) -> Signals:
        serving = self.ready_pods(now)
        vals: dict[Signal, float] = {}
        if serving:
            stats = [p.engine.stats() for p in serving]
            vals[Signal.RUNNING] = float(sum(s.num_requests_running for s in stats))
            vals[Signal.QUEUE_DEPTH] = float(sum(s.num_requests_waiting for s in stats))
            kv = [s.kv_cache_usage for s in stats]
            vals[Signal.KV_CACHE_USAGE] = sum(kv) / len(kv)
            vals[Signal.KV_CACHE_USAGE_MAX] = max(kv)
            vals[Signal.PODS_REPORTING] = float(len(serving))
            vals[Signal.SAMPLE_AGE] = 0.0
            util = self.gpu_util(serving)
            if util is not None:
                vals[Signal.GPU_UTILIZATION] = util
            used = [
                g.fb_used_mib / (g.fb_used_mib + g.fb_free_mib)
                for p in serving
                for g in p.engine.gpu_stats()
            ]
            vals[Signal.GPU_MEMORY_USED] = sum(used) / len(used)
        while self._finished_window and self._finished_window[0][0] < now - WINDOW_S:
            self._finished_window.popleft()
        if self._finished_window:
            n = len(self._finished_window)
            if now >= 2 * WINDOW_S:
                # the world starts empty at t=0: until a window of finished requests has
                # passed, the rate reads as a ramp from zero that the trace does not have
                vals[Signal.REQUEST_RATE] = n / WINDOW_S
            vals[Signal.ERROR_RATE] = sum(1 for _, ok in self._finished_window if not ok) / n
        for sig, hist, q in (
            (Signal.TTFT_P50, self.ttft_hist, 0.5),
            (Signal.TTFT_P99, self.ttft_hist, 0.99),
            (
                Signal.TPOT_P99,
                self.itl_hist if self.tpot_signal == "itl" else self.request_tpot_hist,
                0.99,
            ),
        ):
            v = hist.quantile(q, now)
            if not math.isnan(v):
                vals[sig] = v
        if serving and self._running_window:
            # avg_over_time(num_requests_running[1m]), summed over the serving pods
            vals[Signal.RUNNING_MEAN] = sum(r for _, r in self._running_window) / len(
                self._running_window
            )
        mean = self.request_tpot_hist.mean(now)
        if not math.isnan(mean):
            vals[Signal.TPOT_MEAN] = mean
        buckets: dict[Signal, tuple[tuple[float, float], ...]] = {}
        for bsig, hist in (
            (Signal.TTFT_BUCKETS, self.ttft_hist),
            (Signal.TPOT_BUCKETS, self.request_tpot_hist),
        ):
            if rates := hist.bucket_rates(now):
                buckets[bsig] = rates
        return Signals(vals, observed_at=now, buckets=buckets)

    # -- accounting -------------------------------------------------------------------------
    def gpu_seconds(self, until: float, since: float = 0.0) -> float:
        """GPU-seconds the pods held within [since, until]."""
        total = 0.0
        for p in self.pods:
            end = p.gone if p.gone is not None else until
            total += max(0.0, min(end, until) - max(p.created, since)) * self.preset.gpus
        return total
