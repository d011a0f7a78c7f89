"""The pure parts of the gateway benchmark (bench/gateway.py): the trace, the routers' flags as
vllm-router's own parser reads them, outcomes, the metrics and the acceptance bars."""

from __future__ import annotations

import pytest
from vllm_router.launch_router import parse_router_args

from bench.gateway import (
    P0,
    P2,
    Arrival,
    Config,
    Outcome,
    acceptance,
    batch_router_args,
    kind,
    make_trace,
    no_resilience_args,
    operator_batch_limits,
    operator_router_args,
    prompt,
    strip_flags,
    summarize,
    timeline,
)

WORKERS = ["--worker-urls", "http://127.0.0.1:1", "http://127.0.0.1:2"]


def test_the_trace_is_seeded_poisson_with_the_p0_share() -> None:
    a = make_trace(20.0, 300.0, 0.2, seed=3)
    assert a == make_trace(20.0, 300.0, 0.2, seed=3)
    assert a != make_trace(20.0, 300.0, 0.2, seed=4)
    assert 0.93 < len(a) / 6000 < 1.07
    share = sum(1 for x in a if x.priority == P0) / len(a)
    assert 0.18 < share < 0.22
    assert all(x.priority in (P0, P2) for x in a)
    assert [x.t for x in a] == sorted(x.t for x in a) and a[-1].t < 300
    assert len({x.key for x in a}) == len(a)


def test_prompts_share_no_prefix_and_have_the_token_count() -> None:
    a, b = Arrival(0, P0, "0123456789abcdef"), Arrival(0, P2, "f123456789abcdef")
    assert len(prompt(a, 256).split()) == 256
    assert prompt(a, 8)[0] != prompt(b, 8)[0]


def test_router_flags_are_the_operators_defaults_without_discovery() -> None:
    args = operator_router_args()
    parsed = parse_router_args([*args, *WORKERS])  # exits on an unknown flag or value
    assert parsed.policy == "cache_aware"
    assert parsed.max_concurrent_requests == 1024 and parsed.queue_size == 256
    assert parsed.retry_max_retries == 3 and parsed.cb_failure_threshold == 5  # 3 attempts
    assert not parsed.service_discovery and parsed.selector in (None, [], {})
    for flag in ("--host", "--port", "--prometheus-port", "--service-discovery-namespace"):
        assert flag not in args


def test_the_batch_bulkhead_only_tightens_admission() -> None:
    cfg = Config(batch_max_concurrent=6, batch_queue_size=3, batch_queue_timeout_s=2)
    base = operator_router_args()
    batch = batch_router_args(base, cfg)
    parsed = parse_router_args([*batch, *WORKERS])
    assert (parsed.max_concurrent_requests, parsed.queue_size, parsed.queue_timeout_secs) == (
        6,
        3,
        2,
    )
    admission = ("--max-concurrent-requests", "--queue-size", "--queue-timeout-secs")
    drop = {f: 1 for f in (*admission, "--rate-limit-tokens-per-second")}
    assert strip_flags(batch, drop) == strip_flags(base, drop)


def test_the_bulkhead_is_the_operators_batch_pool_unless_set() -> None:
    base = operator_router_args()
    parsed = parse_router_args([*batch_router_args(base, Config()), *WORKERS])
    limits = operator_batch_limits()
    got = (
        parsed.max_concurrent_requests,
        parsed.queue_size,
        parsed.queue_timeout_secs,
        parsed.rate_limit_tokens_per_second,
    )
    assert got == limits
    assert limits[3] > 0  # the operator's batch pool refills at a set rate
    assert "--rate-limit-tokens-per-second" not in batch_router_args(
        base, Config(batch_rate_limit=0)
    )
    args = batch_router_args(base, Config(batch_rate_limit=3))
    assert parse_router_args([*args, *WORKERS]).rate_limit_tokens_per_second == 3


def test_no_resilience_drops_retries_and_breaker() -> None:
    args = no_resilience_args(operator_router_args())
    parsed = parse_router_args([*args, *WORKERS])
    assert parsed.disable_retries and parsed.disable_circuit_breaker
    assert not any(a.startswith(("--cb-", "--retry-")) for a in args)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "ok"), (429, "shed"), (503, "shed"), (408, "shed"), (500, "failed"), (0, "failed")],
)
def test_outcome_kinds(status: int, expected: str) -> None:
    assert kind(status) == expected


def test_summary_counts_slo_goodput_failed_and_shed() -> None:
    outcomes = [
        Outcome(0.0, P0, 200, 1.0),  # P0 in SLO
        Outcome(1.0, P0, 200, 3.0),  # P0 late
        Outcome(2.0, P0, 429, 0.01),  # P0 shed: a miss
        Outcome(3.0, P0, 500, 0.1),  # P0 failed: a miss
        Outcome(4.0, P2, 200, 8.0),  # P2 within the client's deadline
        Outcome(5.0, P2, 0, 30.0),  # P2 timed out: failed
        Outcome(6.0, P2, 408, 0.5),  # P2 refused by the router's queue: shed
    ]
    s = summarize(outcomes, slo_s=2.0, duration_s=10.0)
    assert s["slo_attainment_p0"] == 0.25
    assert s["span_s"] == 35.0  # the timed-out P2 answered last at 5 + 30
    assert s["goodput_rps"] == round(2 / 35.0, 3)
    assert (s["failed"], s["shed"], s["sent"], s["ok"]) == (2, 2, 7, 3)
    assert (s["sent_p0"], s["shed_p0"], s["failed_p0"]) == (4, 1, 1)
    assert s["statuses"] == {"0": 1, "200": 3, "408": 1, "429": 1, "500": 1}
    assert s["latency_p0_p50_s"] == 1.0 and s["latency_p2_p50_s"] == 8.0


def test_timeline_bins_outcomes_by_send_time() -> None:
    outcomes = [
        Outcome(0.5, P0, 200, 1.0),
        Outcome(1.0, P0, 200, 9.0),
        Outcome(6.0, P2, 503, 0.0),
        Outcome(9.9, P2, 500, 0.1),
    ]
    assert timeline(outcomes, 2.0, 5.0, 10.0) == {
        "ok": [1, 0],
        "late": [1, 0],
        "shed": [0, 1],
        "failed": [0, 1],
    }


def test_acceptance_bars() -> None:
    def row(attainment: float, failed: int) -> dict[str, float | int]:
        return {"slo_attainment_p0": attainment, "goodput_rps": 1.0, "failed": failed, "shed": 0}

    ok = acceptance(
        {
            "overload": {"service": row(0.5, 0), "router_priorities": row(0.995, 0)},
            "sick_replica": {"service": row(1, 100), "router": row(1, 10)},
        }
    )
    assert ok["overload"]["passed"] and ok["sick_replica"]["passed"]
    assert ok["sick_replica"]["cut"] == 0.9
    bad = acceptance(
        {
            "overload": {"service": row(0.95, 0), "router_priorities": row(1.0, 0)},
            "sick_replica": {"service": row(1, 100), "router": row(1, 11)},
        }
    )
    assert not bad["overload"]["passed"] and not bad["sick_replica"]["passed"]
