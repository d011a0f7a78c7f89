"""One vLLM replica as a deterministic discrete-time simulation.

The model follows vLLM V1's scheduler closely enough for autoscaling and capacity questions:

- Continuous batching. Each engine step has a token budget (`max_num_batched_tokens`). Running
  requests are served first, in admission order: a decoding request takes 1 token, a request
  still in prefill takes a chunk of its remaining prompt (chunked prefill). Then waiting
  requests are admitted first-come-first-served while the budget, `max_num_seqs` and free
  KV-cache blocks allow (head-of-line: admission stops at the first request that does not fit).
- Scheduling policy (vLLM `--scheduling-policy`): with `fcfs` (the default) a request's
  `priority` changes nothing. With `priority`, as vLLM 0.32's V1 scheduler does: the waiting
  queue is ordered by (priority, arrival at the engine, request id), lower first, and a
  preemption takes the running request with the highest (priority, arrival) instead of the most
  recently admitted one; a preempted request goes back into the queue at its place in that
  order. vLLM preempts only to find blocks for a running request, never to admit a waiting one,
  and neither does this model. (The running requests are kept in that order too, so the
  victim is always the last one; vLLM keeps them in admission order, which only changes who
  gets the token budget first when running prefills alone exhaust it.)
- Paged KV cache: blocks of `block_size` tokens; a request holds blocks for every token whose
  KV has been computed (prompt + generated). When a running request needs a block and none is
  free, the most recently admitted running request is preempted (recompute mode): its blocks
  are freed and it goes back to the front of the waiting queue; when re-admitted it prefills
  prompt + already generated tokens again.
- A step that completes a request's (re)prefill samples a token; decoding requests sample one
  token per step. A request finishes after `max_tokens` output tokens.
- Step time: `EnginePreset.step_time` (weight streaming, GEMM FLOPs, KV-cache reads, prefill
  attention; see presets.py for the equation and its calibration), times the slow-fault factor.
- Cold start: nothing runs before `ready_at()`: start time + startup + weight bytes / load
  bandwidth.

Speed: steps where nothing changes (every running request decoding, no admission possible, no
block shortage, nobody finishing) are simulated as one block of k steps in closed form; the
step time grows linearly within a block as contexts grow, and every token's time is exact.
An event is only produced when a step ends; `advance(now)` runs every step that *starts*
before `now` (a step in flight at `now` is committed, its events are held back until their
time), so a request submitted at `now` joins at the next step boundary, as in vLLM.

What is not modelled: prefix caching, speculative decoding (MTP), CPU swap, sampling
parameters, the detokenizer, multi-step scheduling, data/expert-parallel attention, HTTP.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from .presets import EnginePreset

EventKind = Literal["first_token", "token", "finished", "rejected"]

FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")  # vLLM 0.32 label values


@dataclass
class SimRequest:
    """A request as the engine sees it: sizes and client arrival time."""

    id: str
    prompt_tokens: int
    max_tokens: int
    arrival: float
    # finished_reason reported when max_tokens have been generated ("length" is what vLLM
    # reports for max_tokens; replaying a trace whose output lengths are natural ends, "stop").
    finish_reason: str = "length"
    # vLLM's request priority (lower first); only the `priority` scheduling policy reads it
    priority: int = 0


@dataclass
class TokenEvent:
    """Something a client of the replica sees, at its exact simulated time.

    first_token: the first output token (tokens=1). token: `tokens` more output tokens, the last
    one at `time`, spaced `interval` seconds apart (several only when the caller advances in
    big jumps). finished: the request ended (tokens=0, finished_reason set). rejected: the
    engine refused the request (too long, not loaded, crashed; finished_reason says why).
    """

    request_id: str
    time: float
    kind: EventKind
    tokens: int = 1
    finished_reason: str | None = None
    interval: float = 0.0
    # on "finished": when the request was first scheduled, and how often it was preempted
    scheduled_at: float | None = None
    preemptions: int = 0
    # on "rejected": a sentence saying why (the HTTP error message)
    message: str = ""

    @property
    def reason(self) -> str:
        """The rejection message, or the finished reason."""
        return self.message or (self.finished_reason or "")


@dataclass
class RequestRecord:
    """A finished request with the timings vLLM's per-request histograms observe."""

    request_id: str
    prompt_tokens: int
    max_tokens: int
    generation_tokens: int
    arrival: float  # client arrival (SimRequest.arrival)
    submitted: float  # reached the engine
    scheduled: float | None  # first scheduled (None: never ran)
    first_token: float | None
    finished: float
    finished_reason: str
    num_preemptions: int
    # inter-token latencies as (seconds, count) runs, in order
    itl: list[tuple[float, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.finished_reason in ("stop", "length")

    @property
    def ttft(self) -> float | None:
        """Time to first token from arrival at the engine."""
        return None if self.first_token is None else self.first_token - self.submitted

    @property
    def e2e(self) -> float:
        return self.finished - self.submitted

    @property
    def queue_time(self) -> float:
        return (self.scheduled if self.scheduled is not None else self.finished) - self.submitted

    @property
    def prefill_time(self) -> float:
        if self.scheduled is None or self.first_token is None:
            return 0.0
        return self.first_token - self.scheduled

    @property
    def decode_time(self) -> float:
        return 0.0 if self.first_token is None else self.finished - self.first_token

    @property
    def inference_time(self) -> float:
        return 0.0 if self.scheduled is None else self.finished - self.scheduled

    @property
    def tpot(self) -> float | None:
        """Mean time per output token after the first (vLLM's request_time_per_output_token)."""
        if self.first_token is None or self.generation_tokens < 2:
            return None
        return (self.finished - self.first_token) / (self.generation_tokens - 1)


@dataclass
class EngineStats:
    """vLLM's engine gauges and counters at `time`."""

    time: float
    num_requests_running: int
    num_requests_waiting: int
    kv_cache_usage: float  # 0..1 (vllm:kv_cache_usage_perc)
    num_preemptions_total: int
    prompt_tokens_total: int
    generation_tokens_total: int
    request_success_total: dict[str, int]  # by finished_reason
    requests_submitted_total: int
    requests_rejected_total: int
    num_steps_total: int
    busy_seconds_total: float
    kv_cache_blocks_total: int
    kv_cache_blocks_used: int
    loaded: bool
    crashed: bool

    @property
    def running(self) -> int:
        return self.num_requests_running

    @property
    def waiting(self) -> int:
        return self.num_requests_waiting

    @property
    def preemptions_total(self) -> int:
        return self.num_preemptions_total

    preemptions = preemptions_total


@dataclass
class GpuStats:
    """Values for DCGM-exporter metrics of one GPU of the replica."""

    index: int
    uuid: str
    model_name: str  # DCGM's modelName label, e.g. "NVIDIA H100 80GB HBM3"
    utilization_pct: float  # DCGM_FI_DEV_GPU_UTIL: % of time a kernel ran (NVML semantics)
    engine_active: float  # DCGM_FI_PROF_GR_ENGINE_ACTIVE, 0..1
    sm_active: float  # DCGM_FI_PROF_SM_ACTIVE, 0..1
    mem_copy_util_pct: float  # DCGM_FI_DEV_MEM_COPY_UTIL
    fb_used_mib: float  # DCGM_FI_DEV_FB_USED
    fb_free_mib: float  # DCGM_FI_DEV_FB_FREE
    power_w: float  # DCGM_FI_DEV_POWER_USAGE
    temperature_c: float  # DCGM_FI_DEV_GPU_TEMP
    energy_mj: float  # DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION (millijoules)
    xid_errors: int  # DCGM_FI_DEV_XID_ERRORS (last XID, 0: none)


_DCGM_MODEL_NAMES = {"H100-SXM-80GB": "NVIDIA H100 80GB HBM3", "H200-SXM-141GB": "NVIDIA H200"}

# GPU-side constants (estimates unless noted).
_UTIL_WINDOW_S = 1.0  # NVML/DCGM utilization sample period
_TEMP_TAU_S = 30.0  # thermal time constant of an SXM board under air/liquid cooling
# Power vs duty cycle: [NVML] bf16 matmul loop at 25/50/100 % duty drew 335/526/700 W from a
# 75 W idle: normalized (P - idle)/(max - idle) = 0.42/0.72/1.0 ~= duty ** 0.55.
_POWER_DUTY_EXP = 0.55
# Memory-bound decode draws less than a dense matmul: activity = duty * (floor + (1-floor) *
# compute share). Estimate: LLM decode on H100 runs at ~75-80 % of TDP.
_ACTIVITY_FLOOR = 0.6


class _Req:
    __slots__ = (
        "arrival",
        "blocks",
        "computed",
        "error",
        "finish_reason",
        "first_token",
        "generated",
        "id",
        "itl",
        "last_token",
        "max_tokens",
        "preemptions",
        "priority",
        "prompt",
        "scheduled",
        "submitted",
    )

    def __init__(self, req: SimRequest, now: float) -> None:
        self.id = req.id
        self.prompt = int(req.prompt_tokens)
        self.max_tokens = int(req.max_tokens)
        self.arrival = req.arrival
        self.finish_reason = req.finish_reason
        self.priority = int(req.priority)
        self.submitted = now
        self.computed = 0  # tokens whose KV is in the cache
        self.generated = 0  # output tokens sampled
        self.blocks = 0
        self.scheduled: float | None = None
        self.first_token: float | None = None
        self.last_token = 0.0
        self.preemptions = 0
        self.itl: list[tuple[float, int]] = []
        self.error = False


@dataclass
class _Plan:
    """The next segment: one general step, or a block of `k` identical decode steps."""

    start: float
    k: int  # steps (1 for a general step)
    d0: float  # duration of the first step
    g: float  # growth of the step duration per step (decode contexts grow)
    intensity: float  # compute share of the step time (for power)
    sched: list[tuple[_Req, int, int]]  # (request, tokens, new blocks); empty for blocks
    preempted: list[_Req]
    admitted: int  # waiting requests admitted (from the front)
    block: bool

    def end_after(self, j: int) -> float:
        return self.start + j * self.d0 + self.g * j * (j - 1) / 2.0

    @property
    def end(self) -> float:
        return self.end_after(self.k)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


SchedulingPolicy = Literal["fcfs", "priority"]
SCHEDULING_POLICIES: tuple[SchedulingPolicy, ...] = ("fcfs", "priority")


def _priority_order(r: _Req) -> tuple[int, float, str]:
    """vLLM's Request.__lt__: priority, then arrival, then request id."""
    return (r.priority, r.submitted, r.id)


class EngineModel:
    """A simulated vLLM replica. All times are seconds on the caller's clock."""

    def __init__(
        self,
        preset: EnginePreset,
        *,
        start_time: float,
        loaded: bool = False,
        seed: int = 0,
        name: str = "replica",
        emit_tokens: bool = True,
        scheduling_policy: SchedulingPolicy = "fcfs",
    ) -> None:
        if scheduling_policy not in SCHEDULING_POLICIES:
            raise ValueError(f"scheduling policy {scheduling_policy!r}: not fcfs or priority")
        self.preset = preset
        self.scheduling_policy = scheduling_policy
        self._by_priority = scheduling_policy == "priority"
        self.name = name
        self.seed = seed
        self.emit_tokens = emit_tokens
        self.start_time = start_time
        self._cost = preset.step_cost
        self._bs = preset.block_size
        self._max_batched = preset.max_num_batched_tokens
        self._max_seqs = preset.max_num_seqs
        self._max_len = preset.max_model_len
        self._total_blocks = preset.num_gpu_blocks
        self._free = self._total_blocks
        self._can_load = preset.can_load
        self._ready: float | None
        if not self._can_load:
            self._ready = None
        elif loaded:
            self._ready = start_time
        else:
            self._ready = start_time + preset.load_time_s
        self._t = start_time  # engine time: end of the last committed step
        self._clock = start_time  # latest `now` seen
        self._waiting: deque[_Req] = deque()
        self._running: list[_Req] = []
        self._by_id: dict[str, _Req] = {}
        self._pending: list[TokenEvent] = []
        self._pending_sorted = True
        self._records: list[RequestRecord] = []
        self._iter_tokens: list[tuple[int, int]] = []  # (tokens in a step, steps), if emitting
        self._plan: _Plan | None = None
        self._rng = random.Random(seed)
        # counters
        self._preemptions = 0
        self._prompt_tokens = 0
        self._gen_tokens = 0
        self._success = dict.fromkeys(FINISHED_REASONS, 0)
        self._submitted = 0
        self._rejected = 0
        self._steps = 0
        # busy segments: starts, ends, activity rate, cumulative busy/activity at start
        self._seg_start: list[float] = []
        self._seg_end: list[float] = []
        self._seg_act: list[float] = []
        self._seg_cum_busy: list[float] = []
        self._seg_cum_act: list[float] = []
        self._cum_busy = 0.0
        self._cum_act = 0.0
        # GPU thermal state
        self._temp = preset.gpu.temp_idle_c
        self._temp_time = start_time
        self._temp_act = 0.0
        self._energy_j = 0.0
        # faults
        self._slow = 1.0
        self.error_rate = 0.0
        self.crashed = False
        self.xid = 0

    # ------------------------------------------------------------------ public interface --
    def ready_at(self) -> float | None:
        """When loading completes (None: the weights do not fit, or the engine crashed)."""
        return None if self.crashed else self._ready

    def is_ready(self, now: float) -> bool:
        r = self.ready_at()
        return r is not None and now >= r

    def submit(self, req: SimRequest, now: float, *, ahead: bool = False) -> None:
        """A request reaches the engine at `now` (queued; it joins the next step boundary).

        `ahead`: it is queued before the waiting requests never scheduled yet, behind the
        preempted ones (vLLM resumes those first): a queue served newest first, as the engine
        pod's admission gate serves its waiters under overload (bench/fleet.py). Not with the
        priority policy, which orders the queue itself."""
        if ahead and self._by_priority:
            raise ValueError("ahead: the priority policy orders the queue itself")
        self._run(now)
        self._submitted += 1
        message = ""
        if self.crashed:
            message = "the engine has crashed"
        elif self._ready is None:
            message = f"the engine cannot load the model: {self.preset.cannot_load_reason}"
        elif req.prompt_tokens < 1 or req.max_tokens < 1:
            message = "prompt_tokens and max_tokens must be at least 1"
        elif req.prompt_tokens + req.max_tokens > self._max_len:
            # vLLM answers 400 before queueing
            message = (
                f"This model's maximum context length is {self._max_len} tokens. However, you "
                f"requested {req.prompt_tokens + req.max_tokens} tokens ({req.prompt_tokens} in "
                f"the messages, {req.max_tokens} in the completion)."
            )
        elif req.id in self._by_id:
            message = f"request id {req.id} is already in the engine"
        if message:
            self._rejected += 1
            self._emit(TokenEvent(req.id, now, "rejected", 0, "error", message=message))
            return
        r = _Req(req, now)
        if self.error_rate > 0 and self._rng.random() < self.error_rate:
            r.error = True
            self._finish(r, now, "error")
            return
        self._by_id[r.id] = r
        if self._by_priority:
            bisect.insort(self._waiting, r, key=_priority_order)
        elif ahead:
            resumed = 0  # preempted requests lead the queue (`_commit_step` puts them there)
            for w in self._waiting:
                if w.scheduled is None:
                    break
                resumed += 1
            self._waiting.insert(resumed, r)
        else:
            self._waiting.append(r)
        if not self._running and len(self._waiting) == 1:
            # the engine was idle: the next step starts now (or when loading completes)
            self._t = max(self._t, now)
        self._plan = None

    def abort(self, request_id: str, now: float) -> None:
        """The client went away: free the request's KV blocks, finish it with "abort"."""
        self._run(now)
        r = self._by_id.get(request_id)
        if r is None:
            return
        if r in self._running:
            self._running.remove(r)
        else:
            self._waiting.remove(r)
        self._free += r.blocks
        r.blocks = 0
        # tokens of an in-flight step after `now` never reach the client
        self._pending = [e for e in self._pending if e.request_id != request_id or e.time <= now]
        self._finish(r, now, "abort")
        self._plan = None

    def advance(self, now: float) -> list[TokenEvent]:
        """Simulate up to `now`; return the events with time <= now, in time order."""
        self._run(now)
        return self._release(now)

    def stats(self) -> EngineStats:
        used = self._total_blocks - self._free
        return EngineStats(
            time=max(self._clock, self._t),
            num_requests_running=len(self._running),
            num_requests_waiting=len(self._waiting),
            kv_cache_usage=used / self._total_blocks if self._total_blocks else 0.0,
            num_preemptions_total=self._preemptions,
            prompt_tokens_total=self._prompt_tokens,
            generation_tokens_total=self._gen_tokens,
            request_success_total=dict(self._success),
            requests_submitted_total=self._submitted,
            requests_rejected_total=self._rejected,
            num_steps_total=self._steps,
            busy_seconds_total=self._cum_busy,
            kv_cache_blocks_total=self._total_blocks,
            kv_cache_blocks_used=used,
            loaded=self.is_ready(self._clock),
            crashed=self.crashed,
        )

    def oldest_wait(self, now: float) -> float:
        """Seconds the longest waiting request never scheduled has waited at `now` (0: none
        waits). Preempted requests do not count: they were scheduled once."""
        self._run(now)
        first = min((w.submitted for w in self._waiting if w.scheduled is None), default=now)
        return max(0.0, now - first)

    def outstanding(self) -> int:
        """Requests submitted and not finished (running + waiting)."""
        return len(self._running) + len(self._waiting)

    def drain_iteration_tokens(self) -> list[tuple[int, int]]:
        """(tokens scheduled in one step, number of such steps) since the last call, for
        vllm:iteration_tokens_total. Recorded only when the engine emits token events."""
        out, self._iter_tokens = self._iter_tokens, []
        return out

    def finished_requests(self) -> list[RequestRecord]:
        """Records of the requests finished since the last call (drained)."""
        out, self._records = self._records, []
        return out

    def next_event_time(self) -> float | None:
        """When the engine's state next changes if nothing is submitted (None: idle).

        An event is not necessarily emitted at that time (a prefill chunk may end without a
        token); calling `advance` at the returned time is always safe and makes progress.
        """
        if self._pending:
            self._sort_pending()
            return self._pending[0].time
        if self.crashed or self._ready is None or not (self._running or self._waiting):
            return None
        plan = self._get_plan()
        return None if plan is None else plan.end

    def gpu_stats(self) -> list[GpuStats]:
        """DCGM-style readings of each GPU of the replica at the latest `now` seen."""
        p, g = self.preset, self.preset.gpu
        now = self._clock
        loaded = self.is_ready(now) and not self.crashed
        busy_w, act_w = self._integral(now)
        b0, a0 = self._integral(now - _UTIL_WINDOW_S)
        duty = min(1.0, max(0.0, (busy_w - b0) / _UTIL_WINDOW_S))
        act = min(1.0, max(0.0, (act_w - a0) / _UTIL_WINDOW_S))
        self._update_thermal(now, act_w, loaded)
        if self.crashed:
            fb_used = float(g.fb_reserved_mib)
            power = g.power_idle_w
        elif loaded:
            fb_used = p.fb_used_mib_loaded
            power = self._power(act)
        elif self._ready is not None and now >= self.start_time:
            # loading: weights stream in; the KV pool is allocated at the end
            frac = min(1.0, (now - self.start_time) / max(self._ready - self.start_time, 1e-9))
            fb_used = g.fb_reserved_mib + frac * p.weight_bytes_per_gpu / (1024 * 1024)
            power = g.power_idle_w + 0.1 * (g.power_max_w - g.power_idle_w) * (frac < 1.0)
        else:
            fb_used = float(g.fb_reserved_mib)
            power = g.power_idle_w
        fb_used = min(fb_used, float(g.memory_mib))
        intensity = act / duty if duty > 0 else 0.0
        out = []
        for i in range(p.gpus):
            out.append(
                GpuStats(
                    index=i,
                    uuid=self._uuid(i),
                    model_name=_DCGM_MODEL_NAMES.get(g.name, g.name),
                    utilization_pct=round(100.0 * duty, 1),
                    engine_active=round(duty * 0.97, 3),
                    sm_active=round(
                        duty
                        * (
                            0.35
                            + 0.6 * max(0.0, intensity - _ACTIVITY_FLOOR) / (1 - _ACTIVITY_FLOOR)
                        ),
                        3,
                    ),
                    mem_copy_util_pct=round(100.0 * duty * (0.6 - 0.3 * intensity), 1),
                    fb_used_mib=round(fb_used, 0),
                    fb_free_mib=round(g.memory_mib - fb_used, 0),
                    power_w=round(power, 1),
                    temperature_c=round(self._temp, 1),
                    energy_mj=round(self._energy_j * 1000.0 / p.gpus, 0),
                    xid_errors=self.xid,
                )
            )
        return out

    # -- fault hooks ------------------------------------------------------------------------
    @property
    def slow_factor(self) -> float:
        """Multiplies every step time (1: healthy). Setting it applies from the next step
        that is not yet committed; `set_slow_factor(f, now)` applies it from `now`."""
        return self._slow

    @slow_factor.setter
    def slow_factor(self, factor: float) -> None:
        self._slow = max(float(factor), 1e-6)
        self._plan = None

    def set_slow_factor(self, factor: float, now: float) -> None:
        """From `now` on, every step takes `factor` times as long."""
        self._run(now)
        self.slow_factor = factor

    def set_error_rate(self, rate: float, now: float) -> None:
        """From `now` on, this fraction of submitted requests finishes at once with "error"."""
        self._run(now)
        self.error_rate = min(max(rate, 0.0), 1.0)

    def crash(self, now: float, xid: int = 0) -> None:
        """The engine process dies at `now`: every request in it ends with "error"."""
        self._run(now)
        self._pending = [e for e in self._pending if e.time <= now]
        for r in list(self._running) + list(self._waiting):
            self._finish(r, now, "error")
        self._running.clear()
        self._waiting.clear()
        self._free = self._total_blocks
        self.crashed = True
        self.xid = xid
        self._plan = None

    # ------------------------------------------------------------------ simulation core --
    def _run(self, until: float) -> None:
        """Commit every step that starts before `until`."""
        if until > self._clock:
            self._clock = until
        if self.crashed or self._ready is None:
            return
        while self._running or self._waiting:
            plan = self._get_plan()
            if plan is None or plan.start >= until:
                return
            if plan.block:
                k = self._steps_starting_before(plan, until)
                self._commit_block(plan, k)
            else:
                self._commit_step(plan)

    def _get_plan(self) -> _Plan | None:
        if self._plan is None:
            self._plan = self._make_plan()
        return self._plan

    def _steps_starting_before(self, plan: _Plan, until: float) -> int:
        if plan.end_after(plan.k - 1) < until:
            return plan.k
        # first guess ignoring growth (an over-estimate), then step back
        j = min(plan.k, int((until - plan.start) / plan.d0) + 1)
        while j > 1 and plan.end_after(j - 1) >= until:
            j -= 1
        return max(j, 1)

    def _make_plan(self) -> _Plan | None:
        if not (self._running or self._waiting):
            return None
        start = self._t
        assert self._ready is not None
        if start < self._ready:
            start = self._ready
        block = self._try_block(start)
        if block is not None:
            return block
        return self._plan_step(start)

    def _try_block(self, start: float) -> _Plan | None:
        running = self._running
        n = len(running)
        if n == 0:
            return None
        bs = self._bs
        remaining = 1 << 62
        slack = 1 << 62  # steps every request can take without a new block
        need1 = 0  # new blocks the first step needs
        ctx = 0
        for r in running:
            if r.computed != r.prompt + r.generated - 1:
                return None  # someone is (re)prefilling
            left = r.max_tokens - r.generated
            if left < remaining:
                remaining = left
            room = r.blocks * bs - r.computed
            if room < slack:
                slack = room
            if room == 0:
                need1 += 1
            ctx += r.computed + 1
        if remaining < 2:
            return None
        # admission must stay impossible for the whole block (free blocks only shrink)
        if self._waiting:
            budget = self._max_batched - n
            if budget > 0 and n < self._max_seqs:
                head = self._waiting[0]
                first = min(head.prompt + head.generated, budget)
                if _cdiv(first, bs) <= self._free - need1:
                    return None
        # no preemption inside the block: over k steps a request needs at most ceil(k/bs)
        # new blocks, and none while k fits in the room left in its last block
        k = min(remaining, max(bs * (self._free // n), slack))
        if k < 2:
            return None
        c = self._cost
        s = self._slow
        base = (
            c.overhead_s
            + c.weight_dense_s
            + c.weight_expert_s * ((1.0 - c.expert_miss**n) if c.weight_expert_s else 0.0)
            + n * c.per_token_s
        )
        d0 = (base + ctx * c.per_ctx_token_s) * s
        g = n * c.per_ctx_token_s * s
        intensity = n * c.per_token_s * s / d0
        return _Plan(start, k, d0, g, intensity, [], [], 0, True)

    def _plan_step(self, start: float) -> _Plan:
        bs = self._bs
        budget = self._max_batched
        free = self._free
        running = self._running
        end = len(running)
        sched: list[tuple[_Req, int, int]] = []
        preempted: list[_Req] = []
        i = 0
        while i < end and budget > 0:
            r = running[i]
            comp = r.computed
            n = r.prompt + r.generated - comp
            if n > budget:
                n = budget
            new_blocks = -(-(comp + n) // bs) - r.blocks
            while new_blocks > free:
                end -= 1
                victim = running[end]
                preempted.append(victim)
                free += victim.blocks
                if end == i:
                    break
            if end == i:
                break
            free -= new_blocks
            budget -= n
            sched.append((r, n, new_blocks))
            i += 1
        admitted = 0
        if not preempted:
            count = end
            for w in self._waiting:
                if budget <= 0 or count >= self._max_seqs:
                    break
                n = min(w.prompt + w.generated, budget)
                nb = _cdiv(n, bs)
                if nb > free:
                    break
                free -= nb
                budget -= n
                sched.append((w, n, nb))
                admitted += 1
                count += 1
        tokens = 0
        ctx = 0
        pairs = 0.0
        for r, n, _ in sched:
            tokens += n
            if n == 1 and r.computed > 0:
                ctx += r.computed + 1
            else:
                pairs += n * (r.computed + (n + 1) / 2.0)
        c = self._cost
        if tokens:
            compute = tokens * c.per_token_s + pairs * c.per_attn_pair_s
            touched = 1.0 - c.expert_miss**tokens if c.weight_expert_s else 0.0
            d0 = (
                c.overhead_s
                + c.weight_dense_s
                + c.weight_expert_s * touched
                + tokens * c.per_token_s
                + ctx * c.per_ctx_token_s
                + pairs * c.per_attn_pair_s
            ) * self._slow  # EnginePreset.step_time with the cached coefficients
            intensity = compute * self._slow / d0
        else:
            # everything was preempted or nothing fits: a scheduler-only iteration
            d0 = c.overhead_s * self._slow
            intensity = 0.0
        return _Plan(start, 1, d0, 0.0, intensity, sched, preempted, admitted, False)

    def _commit_step(self, plan: _Plan) -> None:
        self._plan = None
        start, end_t = plan.start, plan.end
        # preemptions (recompute): back to the front of the queue, blocks freed
        if plan.preempted:
            del self._running[len(self._running) - len(plan.preempted) :]
            for v in plan.preempted:
                self._free += v.blocks
                v.blocks = 0
                v.computed = 0
                v.preemptions += 1
                self._preemptions += 1
            if self._by_priority:
                for v in plan.preempted:
                    bisect.insort(self._waiting, v, key=_priority_order)
            else:
                self._waiting.extendleft(plan.preempted)
        for _ in range(plan.admitted):
            w = self._waiting.popleft()
            if self._by_priority:
                # kept in priority order: _plan_step preempts from the end
                bisect.insort(self._running, w, key=_priority_order)
            else:
                self._running.append(w)
            if w.scheduled is None:
                w.scheduled = start
        self._steps += 1
        self._busy(start, end_t, plan.intensity)
        if self.emit_tokens:
            self._iter_tokens.append((sum(n for _, n, _ in plan.sched), 1))
        finished: list[_Req] = []
        emit = self.emit_tokens
        decoded = 0
        for r, n, nb in plan.sched:
            self._free -= nb
            r.blocks += nb
            r.computed += n
            if r.computed == r.prompt + r.generated:
                if r.generated == 0 or emit:
                    self._sample(r, end_t, 1, end_t - r.last_token)
                else:
                    # _sample's one-token decode path, inlined (the simulation's hot loop)
                    gap = end_t - r.last_token
                    itl = r.itl
                    if itl and abs(itl[-1][0] - gap) < 1e-12:
                        itl[-1] = (gap, itl[-1][1] + 1)
                    else:
                        itl.append((gap, 1))
                    r.generated += 1
                    r.last_token = end_t
                    decoded += 1
                if r.generated >= r.max_tokens:
                    finished.append(r)
        self._gen_tokens += decoded
        for r in finished:
            self._complete(r, end_t)
        self._t = end_t

    def _commit_block(self, plan: _Plan, k: int) -> None:
        self._plan = None
        end_t = plan.end_after(k)
        interval = (end_t - plan.start) / k
        self._steps += k
        self._busy(plan.start, end_t, plan.intensity)
        if self.emit_tokens:
            self._iter_tokens.append((len(self._running), k))
        bs = self._bs
        finished: list[_Req] = []
        for r in self._running:
            new_computed = r.computed + k
            nb = _cdiv(new_computed, bs) - r.blocks
            if nb > 0:
                self._free -= nb
                r.blocks += nb
            r.computed = new_computed
            # the first token of the block is one step after the request's previous token
            first_gap = plan.d0 + (plan.start - r.last_token)
            self._sample(r, end_t, k, interval, first_gap)
            if r.generated >= r.max_tokens:
                finished.append(r)
        for r in finished:
            self._complete(r, end_t)
        self._t = end_t

    def _sample(
        self, r: _Req, t: float, k: int, interval: float, first_gap: float | None = None
    ) -> None:
        """Request r gets k output tokens, the last at time t."""
        self._gen_tokens += k
        if r.generated == 0:
            r.first_token = t
            self._prompt_tokens += r.prompt
            self._emit(TokenEvent(r.id, t, "first_token", 1))
            r.generated = 1
            r.last_token = t
            return
        if first_gap is not None and k > 1 and abs(first_gap - interval) > 1e-12:
            r.itl.append((first_gap, 1))
            rest = (t - r.last_token - first_gap) / (k - 1)
            r.itl.append((rest, k - 1))
        elif first_gap is not None and k == 1:
            r.itl.append((t - r.last_token, 1))
        else:
            gap = (t - r.last_token) / k
            if r.itl and abs(r.itl[-1][0] - gap) < 1e-12:
                r.itl[-1] = (gap, r.itl[-1][1] + k)
            else:
                r.itl.append((gap, k))
        r.generated += k
        if self.emit_tokens:
            self._emit(TokenEvent(r.id, t, "token", k, None, (t - r.last_token) / k))
        r.last_token = t

    def _complete(self, r: _Req, t: float) -> None:
        self._running.remove(r)
        self._free += r.blocks
        r.blocks = 0
        self._finish(r, t, r.finish_reason)

    def _finish(self, r: _Req, t: float, reason: str) -> None:
        self._by_id.pop(r.id, None)
        self._success[reason] = self._success.get(reason, 0) + 1
        self._emit(
            TokenEvent(r.id, t, "finished", 0, reason, scheduled_at=r.scheduled,
                       preemptions=r.preemptions)
        )  # fmt: skip
        self._records.append(
            RequestRecord(
                request_id=r.id,
                prompt_tokens=r.prompt,
                max_tokens=r.max_tokens,
                generation_tokens=r.generated,
                arrival=r.arrival,
                submitted=r.submitted,
                scheduled=r.scheduled,
                first_token=r.first_token,
                finished=t,
                finished_reason=reason,
                num_preemptions=r.preemptions,
                itl=r.itl,
            )
        )

    def _emit(self, ev: TokenEvent) -> None:
        if self._pending and ev.time < self._pending[-1].time:
            self._pending_sorted = False
        self._pending.append(ev)

    def _sort_pending(self) -> None:
        if not self._pending_sorted:
            self._pending.sort(key=lambda e: e.time)
            self._pending_sorted = True

    def _release(self, now: float) -> list[TokenEvent]:
        if not self._pending:
            return []
        self._sort_pending()
        pend = self._pending
        if pend[-1].time <= now:
            self._pending = []
            return pend
        cut = bisect.bisect_right([e.time for e in pend], now)
        out, self._pending = pend[:cut], pend[cut:]
        return out

    # ------------------------------------------------------------------ GPU accounting --
    def _busy(self, start: float, end: float, intensity: float) -> None:
        rate = _ACTIVITY_FLOOR + (1.0 - _ACTIVITY_FLOOR) * min(max(intensity, 0.0), 1.0)
        dur = end - start
        if (
            self._seg_end
            and abs(self._seg_end[-1] - start) < 1e-12
            and (abs(self._seg_act[-1] - rate) < 1e-9)
        ):
            self._seg_end[-1] = end
        else:
            if len(self._seg_start) > 4096:
                self._trim_segments()
            self._seg_start.append(start)
            self._seg_end.append(end)
            self._seg_act.append(rate)
            self._seg_cum_busy.append(self._cum_busy)
            self._seg_cum_act.append(self._cum_act)
        self._cum_busy += dur
        self._cum_act += dur * rate

    def _trim_segments(self) -> None:
        keep_from = bisect.bisect_left(self._seg_end, self._clock - 120.0)
        keep_from = min(keep_from, len(self._seg_start) - 1)
        for lst in (
            self._seg_start,
            self._seg_end,
            self._seg_act,
            self._seg_cum_busy,
            self._seg_cum_act,
        ):
            del lst[:keep_from]

    def _integral(self, x: float) -> tuple[float, float]:
        """Busy seconds and activity-seconds from the start to time x."""
        i = bisect.bisect_right(self._seg_start, x) - 1
        if i < 0:
            return (self._seg_cum_busy[0], self._seg_cum_act[0]) if self._seg_start else (0.0, 0.0)
        s, e = self._seg_start[i], self._seg_end[i]
        d = min(x, e) - s
        return self._seg_cum_busy[i] + d, self._seg_cum_act[i] + d * self._seg_act[i]

    def _power(self, act: float) -> float:
        g = self.preset.gpu
        return g.power_idle_loaded_w + (g.power_max_w - g.power_idle_loaded_w) * (
            act**_POWER_DUTY_EXP if act > 0 else 0.0
        )

    def _update_thermal(self, now: float, act_total: float, loaded: bool) -> None:
        dt = now - self._temp_time
        if dt <= 0:
            return
        g = self.preset.gpu
        act = min(1.0, max(0.0, (act_total - self._temp_act) / dt))
        power = self._power(act) if loaded else g.power_idle_w
        self._energy_j += power * dt * self.preset.gpus
        span = g.power_max_w - g.power_idle_w
        target = g.temp_idle_c + (g.temp_max_c - g.temp_idle_c) * (power - g.power_idle_w) / span
        self._temp += (target - self._temp) * (1.0 - math.exp(-dt / _TEMP_TAU_S))
        self._temp_time = now
        self._temp_act = act_total

    def _uuid(self, i: int) -> str:
        h = hashlib.sha256(f"{self.name}/{self.seed}/{i}".encode()).hexdigest()
        return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
