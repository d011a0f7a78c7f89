"""The failover benchmark's pure parts: detect, DNS shift, RTO and failed requests of a scenario
from what the clients, the DNS probe and the status watch saw (bench/failover.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.failover import Window, detect_s, per_second, recovery_s, report, summarise, write
from testbed.dnsload import NO_CONNECTION, NOT_RESOLVED, Sample

T0 = 1_000.0
EU, US = ("127.2.254.1",), ("127.1.254.1",)
KILLED = Window("primary_engines_killed", T0, T0 + 60, ("Unhealthy",), US)


def load(fail_until: float, *, per_s: int = 10, end: float = 60.0) -> list[Sample]:
    """`per_s` requests a second from T0 to T0 + end; those before T0 + fail_until go to
    eu-west and get 503, the others are served by us-east."""
    out = []
    for i in range(int(end * per_s)):
        t = T0 + i / per_s
        failed = t < T0 + fail_until
        out.append(Sample(t, "eu-west" if failed else "us-east", 503 if failed else 200, 0.01))
    return out


def test_per_second_counts_successes_and_requests_by_start_time() -> None:
    samples = [Sample(T0 + 0.2, "a", 200, 0), Sample(T0 + 0.9, "a", 503, 0)]
    samples += [Sample(T0 + 2.5, "b", 200, 0), Sample(T0 + 5.0, "b", 200, 0)]
    assert per_second(samples, T0, T0 + 4) == [(1, 2), (0, 0), (1, 1), (0, 0)]


@pytest.mark.parametrize(
    ("fail_until", "rto"),
    [
        (0.0, 0.0),  # nothing failed: recovered at once
        (25.0, 25.0),  # every request before 25 s failed
        (25.05, 26.0),  # one failed in second 25: that whole second is below 99%
    ],
)
def test_rto_is_the_first_second_from_which_every_second_succeeds(
    fail_until: float, rto: float
) -> None:
    assert recovery_s(load(fail_until), T0, T0 + 60) == rto


def test_a_late_failure_pushes_the_rto_out() -> None:
    samples = [*load(20.0), Sample(T0 + 40.5, "us-east", NO_CONNECTION, 5.0)]
    assert recovery_s(samples, T0, T0 + 60) == 41.0


def test_one_failure_in_more_than_a_hundred_requests_of_a_second_stays_within_99_percent() -> None:
    samples = [*load(0.0, per_s=200, end=2), Sample(T0 + 1.5, "us-east", 503, 0)]
    assert recovery_s(samples, T0, T0 + 2) == 0.0


def test_detect_uses_the_operators_since_and_ignores_states_before_the_fault() -> None:
    states = [
        (T0 - 5, "Unhealthy", T0 - 100),  # an earlier scenario's
        (T0 + 10, "Healthy", T0 - 300),
        (T0 + 31, "Unhealthy", T0 + 30.4),
    ]
    assert detect_s(states, KILLED) == 30.4
    assert detect_s(states[:2], KILLED) is None


def test_summarise_counts_the_window_and_says_why_requests_failed() -> None:
    samples = [*load(30.0), Sample(T0 + 70, "us-east", 503, 0)]  # the last after the window
    samples.append(Sample(T0 + 29.95, "", NOT_RESOLVED, 0))
    answers = [(T0 + 1, EU), (T0 + 21.5, ()), (T0 + 22.0, US), (T0 + 23, US)]
    states = [(T0 + 21, "Unhealthy", T0 + 20.5)]
    r = summarise(KILLED, samples, answers, states)
    assert (r["detect_s"], r["shift_s"], r["rto_s"]) == (20.5, 22.0, 30.0)
    assert (r["failed_requests"], r["requests"]) == (301, 601)
    assert r["failed_by_cause"] == {
        "eu-west's front door answered 503": 300,
        "the name did not resolve": 1,
    }
    assert r["failed_by_phase"] == {
        "before the operator marked the region": 205,
        "marked, DNS not yet changed": 15,
        "after the DNS change (an answer still cached by the client, within its TTL)": 81,
    }
    assert r["served_by"] == {"us-east": 300}


def test_write_makes_the_json_the_timeline_and_the_report(tmp_path: Path) -> None:
    samples = load(30.0)
    answers = [(T0 + 22.0, US)]
    states = [(T0 + 21, "Unhealthy", T0 + 20.5)]
    doc = {
        "scenarios": {"primary_engines_killed": summarise(KILLED, samples, answers, states)},
        "load_started": T0,
        "failover_spec": {"healthCheckIntervalSeconds": 10, "ttlSeconds": 30},
        "explanation": ["Why: engines gone."],
    }
    write(doc, samples, tmp_path)
    assert (tmp_path / "failover.png").stat().st_size > 10_000
    assert '"rto_s": 30.0' in (tmp_path / "failover.json").read_text()
    text = report(doc)
    assert "| primary_engines_killed | 20.5 | 22.0 | 30.0 | 300 / 600 |" in text, text
    assert "Why: engines gone." in text
