"""The engine model's behaviour: batching, KV-cache limits, queueing, preemption, cold start,
determinism, and the published measurements it is calibrated to (see sim/presets.py)."""

from __future__ import annotations

import random

import pytest

from testbed.sim.engine import EngineModel, RequestRecord, SchedulingPolicy, SimRequest
from testbed.sim.presets import (
    DISTILL_7B_1XH100,
    R1_FP8_8XH200,
    R1_FP8_KV8_8XH200,
    R1_INT4_8XH200,
    EnginePreset,
)

# A 7B replica with a small KV cache (~125k tokens), so saturation is cheap to reach.
SMALL_KV = DISTILL_7B_1XH100.with_(gpu_memory_utilization=0.3)


def run_closed(
    p: EnginePreset, n: int, prompt: int = 1000, out: int = 200
) -> tuple[float, int, int, list[RequestRecord], EngineModel]:
    """n requests arrive at once; returns (output tok/s, peak running, waiting at t=10s)."""
    e = EngineModel(p, start_time=0.0, loaded=True, emit_tokens=False)
    for i in range(n):
        e.submit(SimRequest(f"r{i}", prompt, out, 0.0), 0.0)
    t, peak_running, waiting_10s = 0.0, 0, 0
    while e.outstanding():
        t += 0.05
        e.advance(t)
        s = e.stats()
        peak_running = max(peak_running, s.num_requests_running)
        if abs(t - 10.0) < 0.025:
            waiting_10s = s.num_requests_waiting
    recs = e.finished_requests()
    makespan = max(r.finished for r in recs)
    return n * out / makespan, peak_running, waiting_10s, recs, e


def test_throughput_rises_with_batch_until_the_kv_cache_saturates_then_requests_queue() -> None:
    tput = {}
    for n in (1, 8, 32, 96, 400):
        tput[n], peak, waiting, recs, e = run_closed(SMALL_KV, n)
        assert all(r.ok and r.generation_tokens == 200 for r in recs)
        if n <= 96:
            assert waiting == 0, "below KV capacity nobody waits after the first steps"
        else:
            # KV cache full: the batch is capped by KV blocks, the rest waits, and some
            # running requests are preempted when their growing context needs a block
            assert peak * 1000 <= SMALL_KV.kv_capacity_tokens
            assert waiting > 100
            assert e.stats().num_preemptions_total > 0
    assert tput[1] < tput[8] < tput[32] < tput[96]
    assert tput[8] > 5 * tput[1]
    assert tput[400] < 1.15 * tput[96], "past KV saturation throughput stops growing"


def test_kv_usage_reports_the_fraction_of_blocks_in_use() -> None:
    e = EngineModel(SMALL_KV, start_time=0.0, loaded=True, emit_tokens=False)
    for i in range(10):
        e.submit(SimRequest(f"r{i}", 1000, 200, 0.0), 0.0)
    e.advance(1.0)
    s = e.stats()
    assert s.num_requests_running == 10
    expected = 10 * (1000 + 1) / SMALL_KV.kv_capacity_tokens
    assert s.kv_cache_usage == pytest.approx(expected, rel=0.15)


def peak_concurrency(
    p: EnginePreset, n: int = 700, prompt: int = 2000, out: int = 500, horizon: float = 400.0
) -> int:
    """Most requests in the batch at once when n long requests arrive together."""
    e = EngineModel(p, start_time=0.0, loaded=True, emit_tokens=False)
    for i in range(n):
        e.submit(SimRequest(f"r{i}", prompt, out, 0.0), 0.0)
    peak = 0
    for k in range(1, int(horizon / 2)):
        e.advance(k * 2.0)
        peak = max(peak, e.stats().num_requests_running)
    return peak


@pytest.mark.slow
def test_compressed_modes_hold_more_concurrent_requests_than_bf16() -> None:
    bf16_kv = peak_concurrency(R1_FP8_8XH200)
    fp8_kv = peak_concurrency(R1_FP8_KV8_8XH200)
    int4 = peak_concurrency(R1_INT4_8XH200)
    assert fp8_kv > 1.5 * bf16_kv, (bf16_kv, fp8_kv)
    assert int4 > 1.5 * bf16_kv, (bf16_kv, int4)
    d_bf16 = peak_concurrency(SMALL_KV, n=300, horizon=60)
    d_fp8 = peak_concurrency(SMALL_KV.with_(weights="fp8"), n=300, horizon=60)
    d_kv8 = peak_concurrency(SMALL_KV.with_(kv_cache_dtype="fp8"), n=300, horizon=60)
    assert d_fp8 > d_bf16 and d_kv8 > 1.8 * d_bf16, (d_bf16, d_fp8, d_kv8)


def poisson_ttft(rate: float, seed: int = 3) -> float:
    rng = random.Random(seed)
    e = EngineModel(SMALL_KV, start_time=0.0, loaded=True, emit_tokens=False)
    t = 0.0
    for i in range(400):
        t += rng.expovariate(rate)
        e.submit(SimRequest(f"r{i}", 1000, 200, t), t)
    e.advance(t + 3600)
    recs = e.finished_requests()
    return sum(r.ttft or 0.0 for r in recs) / len(recs)


def test_ttft_grows_with_the_queue() -> None:
    # a burst: the k-th request of a burst waits behind the k-1 before it
    _, _, _, recs, _ = run_closed(SMALL_KV, 300)
    by_id = sorted(recs, key=lambda r: int(r.request_id[1:]))
    first, last = by_id[:20], by_id[-20:]
    assert max(r.ttft or 0 for r in first) < min(r.ttft or 0 for r in last)
    assert min(r.queue_time for r in last) > 1.0
    # steady load: mean TTFT rises with the arrival rate (more queueing)
    light, busy, overload = poisson_ttft(2.0), poisson_ttft(12.0), poisson_ttft(40.0)
    assert light < busy < overload
    assert overload > 5 * light


def test_cold_start_delays_the_first_token_until_the_model_is_loaded() -> None:
    p = R1_FP8_8XH200
    e = EngineModel(p, start_time=100.0, emit_tokens=False)
    assert e.ready_at() == pytest.approx(100.0 + p.load_time_s)
    assert not e.is_ready(100.0 + p.load_time_s - 1)
    e.submit(SimRequest("a", 100, 10, 101.0), 101.0)
    e.advance(100.0 + p.load_time_s - 1)
    assert e.stats().num_requests_waiting == 1 and e.stats().num_steps_total == 0
    e.advance(100.0 + p.load_time_s + 60)
    (rec,) = e.finished_requests()
    assert rec.first_token is not None and rec.first_token > 100.0 + p.load_time_s
    assert rec.ttft is not None and rec.ttft > p.load_time_s - 2
    # R1 FP8 (~673 GB) from a local NVMe cache: startup + weights at 3 GB/s, several minutes
    assert 250 < p.load_time_s < 600


def test_a_model_that_does_not_fit_rejects_requests() -> None:
    from testbed.sim.presets import R1_FP8_8XH100

    e = EngineModel(R1_FP8_8XH100, start_time=0.0)
    assert e.ready_at() is None
    e.submit(SimRequest("a", 10, 10, 0.0), 0.0)
    (ev,) = e.advance(1.0)
    assert ev.kind == "rejected" and "weights need" in ev.message


def test_too_long_requests_are_rejected_like_vllm() -> None:
    e = EngineModel(SMALL_KV, start_time=0.0, loaded=True)
    e.submit(SimRequest("a", SMALL_KV.max_model_len, 10, 0.0), 0.0)
    (ev,) = e.advance(0.0)
    assert ev.kind == "rejected" and "maximum context length" in ev.message


def trace_run(seed: int) -> list[tuple[str, float | None, float, str]]:
    rng = random.Random(7)
    e = EngineModel(SMALL_KV, start_time=0.0, loaded=True, seed=seed)
    e.set_error_rate(0.2, 0.0)
    t = 0.0
    for i in range(200):
        t += rng.expovariate(20.0)
        e.submit(SimRequest(f"r{i}", rng.randint(10, 3000), rng.randint(5, 400), t), t)
    e.advance(t + 3600)
    return [(r.request_id, r.first_token, r.finished, r.finished_reason)
            for r in e.finished_requests()]  # fmt: skip


def test_deterministic_for_a_seed() -> None:
    a, b, c = trace_run(1), trace_run(1), trace_run(2)
    assert a == b
    assert a != c  # the error fault draws from the seed
    errors = sum(1 for x in a if x[3] == "error")
    assert 20 < errors < 60


def test_events_are_consistent_with_records() -> None:
    e = EngineModel(SMALL_KV, start_time=0.0, loaded=True)
    for i in range(20):
        e.submit(SimRequest(f"r{i}", 500, 50, i * 0.1), i * 0.1)
    events = []
    t = 0.0
    while e.outstanding() or t < 2.0:
        t += 0.3
        events += e.advance(t)
    recs = {r.request_id: r for r in e.finished_requests()}
    assert len(recs) == 20
    assert [ev.time for ev in events] == sorted(ev.time for ev in events)
    for rid, r in recs.items():
        mine = [ev for ev in events if ev.request_id == rid]
        assert mine[0].kind == "first_token" and mine[0].time == pytest.approx(r.first_token)
        assert sum(ev.tokens for ev in mine if ev.kind in ("first_token", "token")) == 50
        assert mine[-1].kind == "finished" and mine[-1].time == pytest.approx(r.finished)
        assert sum(c for _, c in r.itl) == 49


def test_slow_fault_and_crash() -> None:
    base = run_closed(SMALL_KV, 8)[0]
    slow = run_closed(SMALL_KV.with_(), 8)  # same preset: the slow factor is per engine
    assert slow[0] == pytest.approx(base)
    e = EngineModel(SMALL_KV, start_time=0.0, loaded=True, emit_tokens=False)
    e.set_slow_factor(3.0, 0.0)
    for i in range(8):
        e.submit(SimRequest(f"r{i}", 1000, 200, 0.0), 0.0)
    e.advance(1e4)
    recs = e.finished_requests()
    assert 8 * 200 / max(r.finished for r in recs) == pytest.approx(base / 3, rel=0.05)
    e.submit(SimRequest("x", 100, 100, 1e4), 1e4)
    e.crash(1e4 + 0.01)
    (rec,) = e.finished_requests()
    assert rec.finished_reason == "error" and e.ready_at() is None


# -- calibration against the published measurements cited in presets.py -----------------
def tpot_at_concurrency(p: EnginePreset, n: int, prompt: int = 200, out: int = 300) -> float:
    e = EngineModel(p, start_time=0.0, loaded=True, emit_tokens=False)
    for i in range(n):
        e.submit(SimRequest(f"r{i}", prompt, out, 0.0), 0.0)
    e.advance(1e5)
    recs = e.finished_requests()
    return sum(r.tpot or 0.0 for r in recs) / len(recs)


def test_calibration_r1_8xh200_tpot_at_concurrency_4() -> None:
    # [GPUSTACK-R1]: vLLM, DeepSeek-R1 on 8xH200, ShareGPT at concurrency 4: 19.36 ms TPOT
    assert tpot_at_concurrency(R1_FP8_8XH200, 4) == pytest.approx(0.01936, rel=0.1)


def test_calibration_r1_8xh200_prefill_throughput() -> None:
    # [GPUSTACK-R1]: random 2000-in/100-out on 8xH200: 17,691 total tok/s
    n = 200
    e = EngineModel(R1_FP8_8XH200, start_time=0.0, loaded=True, emit_tokens=False)
    for i in range(n):
        e.submit(SimRequest(f"r{i}", 2000, 100, 0.0), 0.0)
    e.advance(1e5)
    recs = e.finished_requests()
    total = n * 2100 / max(r.finished for r in recs)
    assert total == pytest.approx(17_691, rel=0.25)


def test_calibration_7b_1xh100_decode() -> None:
    # [GPUSTACK-Q8]: an 8B BF16 model on 1xH100 at concurrency 4: 7.38 ms TPOT (vLLM)
    assert tpot_at_concurrency(DISTILL_7B_1XH100, 4) == pytest.approx(0.00738, rel=0.15)


def test_calibration_mla_kv_capacity() -> None:
    # [VLLM-MLA]: 512,000 KV tokens for DeepSeek on 8xH200 at gpu_memory_utilization 0.9
    p = R1_FP8_8XH200.with_(gpu_memory_utilization=0.9)
    assert p.kv_capacity_tokens == pytest.approx(512_000, rel=0.05)


def overload_with_interactive_requests(
    policy: SchedulingPolicy,
) -> tuple[list[RequestRecord], list[RequestRecord]]:
    """300 batch requests (P2) at t=0 saturate the KV cache; 3 interactive ones (P0) arrive at
    t=5 s and 3 more at t=8 s. Returns (P0 records, P2 records)."""
    e = EngineModel(
        SMALL_KV, start_time=0.0, loaded=True, emit_tokens=False, scheduling_policy=policy
    )
    for i in range(300):
        e.submit(SimRequest(f"batch-{i:03d}", 1000, 200, 0.0, priority=2), 0.0)
    t = 0.0
    while e.outstanding():
        t += 0.05
        if abs(t - 5.0) < 0.025 or abs(t - 8.0) < 0.025:
            for j in range(3):
                e.submit(SimRequest(f"chat-{t:.0f}-{j}", 500, 50, t, priority=0), t)
        e.advance(t)
    recs = e.finished_requests()
    assert len(recs) == 306 and all(r.ok for r in recs)
    p0 = [r for r in recs if r.request_id.startswith("chat")]
    return p0, [r for r in recs if r.request_id.startswith("batch")]


def test_priority_scheduling_keeps_p0_ttft_low_under_overload_while_p2_waits() -> None:
    p0, p2 = overload_with_interactive_requests("priority")
    p2_ttft = sorted(r.ttft or 0.0 for r in p2)
    # P0 jumps the ~250 waiting P2 requests: admitted as soon as blocks free up
    assert max(r.ttft or 99.0 for r in p0) < 0.5
    assert p2_ttft[len(p2_ttft) // 2] > 5.0 and p2_ttft[-1] > 15.0  # P2 still waits
    # first-come-first-served: the same P0 requests wait behind every earlier P2 request
    fcfs_p0, fcfs_p2 = overload_with_interactive_requests("fcfs")
    assert min(r.ttft or 0.0 for r in fcfs_p0) > 5.0
    # the batch as a whole is not slowed down by letting six short requests first
    assert max(r.finished for r in p2) < 1.02 * max(r.finished for r in fcfs_p2)


@pytest.mark.parametrize(("policy", "p0_preempted"), [("fcfs", True), ("priority", False)])
def test_kv_shortage_preempts_the_lowest_priority_request(
    policy: SchedulingPolicy, p0_preempted: bool
) -> None:
    """61 requests fit with their prompts but not with their outputs. FCFS preempts the most
    recently admitted request (the P0, admitted last); priority preempts P2 requests."""
    e = EngineModel(
        SMALL_KV, start_time=0.0, loaded=True, emit_tokens=False, scheduling_policy=policy
    )
    for i in range(60):
        e.submit(SimRequest(f"batch-{i:02d}", 1000, 2000, 0.0, priority=2), 0.0)
    e.submit(SimRequest("chat", 1000, 2000, 0.0, priority=0), 0.0)
    t = 0.0
    while e.outstanding():
        t += 0.1
        e.advance(t)
    recs = {r.request_id: r for r in e.finished_requests()}
    assert e.stats().num_preemptions_total > 0
    assert (recs["chat"].num_preemptions > 0) is p0_preempted


def test_unknown_scheduling_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="scheduling policy"):
        EngineModel(SMALL_KV, start_time=0.0, scheduling_policy="lifo")  # type: ignore[arg-type]


def test_a_request_queued_ahead_goes_behind_the_preempted_and_before_the_others() -> None:
    """The admission gate's newest-first order (bench/fleet.py): `ahead` puts a request before
    the waiting ones never scheduled, behind those vLLM preempted (it resumes them first)."""
    e = EngineModel(SMALL_KV, start_time=0.0, loaded=True, emit_tokens=False)
    for i in range(61):  # they fit with their prompts, not with their outputs
        e.submit(SimRequest(f"r{i:02d}", 1000, 2000, 0.0), 0.0)
    t = 0.0
    while e.stats().num_preemptions_total == 0:
        t += 0.1
        e.advance(t)
    preempted = [w.id for w in e._waiting]
    assert preempted and e.oldest_wait(t) == 0.0  # preempted ones were scheduled once
    e.submit(SimRequest("old", 100, 10, t), t)
    e.submit(SimRequest("new", 100, 10, t), t, ahead=True)
    assert [w.id for w in e._waiting] == [*preempted, "new", "old"]
    assert e.oldest_wait(t + 1.0) == pytest.approx(1.0)  # "old"'s wait


def test_ahead_is_refused_with_the_priority_policy() -> None:
    e = EngineModel(SMALL_KV, start_time=0.0, loaded=True, scheduling_policy="priority")
    with pytest.raises(ValueError, match="priority"):
        e.submit(SimRequest("r", 100, 10, 0.0), 0.0, ahead=True)
