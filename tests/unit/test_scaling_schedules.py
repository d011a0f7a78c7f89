"""Schedules: windows of known load whose replicas are ordered one learned start time before
they open (`scaling.scheduled`), and how `decide` keeps them as a floor."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from deepseek_operator.api.spec import ScalingSchedule, ScalingSpec
from deepseek_operator.api.status import Recommendation, ScalingState
from deepseek_operator.scaling import START_PRIOR_SECONDS, ScalingInputs, decide, scheduled
from deepseek_operator.signals import Signal, Signals
from pydantic import ValidationError


def at(stamp: str) -> float:
    """Epoch seconds of an ISO time in UTC."""
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()


def window(**kw: Any) -> ScalingSchedule:
    return ScalingSchedule.model_validate(
        {"name": "office", "start": "09:00", "end": "17:00", "minReplicas": 4, **kw}
    )


WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri"]
OFFICE = window(days=WEEKDAYS)
NIGHT = window(name="batch", start="22:00", end="06:00", minReplicas=3)
FRIDAY_NIGHT = window(name="batch", start="22:00", end="06:00", minReplicas=3, days=["Fri"])
PARIS = window(name="paris", timeZone="Europe/Paris", start="09:00", end="10:00", minReplicas=2)

# 2026-12-07 is a Monday; 2026-07-06 too (Paris is UTC+2 in summer, UTC+1 in winter)
SCHEDULE_CASES = [
    # (case, windows, now (UTC), lead s, expected (name, replicas) or None)
    ("before its lead: nothing", [OFFICE], "2026-12-07T08:44:59", 900, None),
    ("one start time before it opens: due", [OFFICE], "2026-12-07T08:45:00", 900, ("office", 4)),
    ("open", [OFFICE], "2026-12-07T16:59:59", 900, ("office", 4)),
    ("closed at its end", [OFFICE], "2026-12-07T17:00:00", 900, None),
    ("not on its days", [OFFICE], "2026-12-12T10:00:00", 900, None),
    (
        "Sunday night before a Monday window: only within the lead",
        [OFFICE],
        "2026-12-13T23:00:00",
        900,
        None,
    ),
    ("overnight: open after midnight", [NIGHT], "2026-12-08T03:00:00", 300, ("batch", 3)),
    ("overnight: closed at its end", [NIGHT], "2026-12-08T06:00:00", 300, None),
    ("overnight: due one start time before", [NIGHT], "2026-12-08T21:55:00", 300, ("batch", 3)),
    ("its day is the day it opens", [FRIDAY_NIGHT], "2026-12-12T03:00:00", 300, ("batch", 3)),
    ("the night after is not its day", [FRIDAY_NIGHT], "2026-12-13T03:00:00", 300, None),
    (
        "a zone: 09:00 in Paris is 08:00 UTC in winter",
        [PARIS],
        "2026-12-07T07:55:00",
        300,
        ("paris", 2),
    ),
    ("a zone: not yet in winter", [PARIS], "2026-12-07T07:54:59", 300, None),
    ("a zone: 07:00 UTC in summer", [PARIS], "2026-07-06T06:55:00", 300, ("paris", 2)),
    ("a zone: over at 08:00 UTC in summer", [PARIS], "2026-07-06T08:00:00", 300, None),
    (
        "two open: the most replicas",
        [OFFICE, NIGHT.model_copy(update={"start": "16:00"})],
        "2026-12-07T16:30:00",
        300,
        ("office", 4),
    ),
    # the night clocks go forward (2026-03-29, 02:00 -> 03:00): 09:00 is already summer time
    ("a zone: the day daylight saving starts", [PARIS], "2026-03-29T06:55:00", 300, ("paris", 2)),
    ("a lead of more than a day", [OFFICE], "2026-12-06T08:00:00", 90000, ("office", 4)),
]


@pytest.mark.parametrize(
    "case,windows,now,lead,expected", SCHEDULE_CASES, ids=[c[0] for c in SCHEDULE_CASES]
)
def test_scheduled(
    case: str,
    windows: list[ScalingSchedule],
    now: str,
    lead: float,
    expected: tuple[str, int] | None,
) -> None:
    due = scheduled(windows, at(now), lead)
    assert (None if due is None else (due.name, due.replicas)) == expected
    if due is not None:
        assert due.opens - lead <= at(now) < due.closes


def test_a_due_window_says_when_in_its_own_zone() -> None:
    due = scheduled([PARIS], at("2026-12-07T07:58:00"), 300)
    assert due is not None
    assert due.words() == (
        "schedule paris wants 2 replicas Ready Mon 09:00-10:00 Europe/Paris (due 300s before "
        "it opens: the start time)"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"start": "09:00", "end": "09:00"}, "start and end must differ"),
        ({"start": "9:00"}, "should match pattern"),
        ({"end": "24:00"}, "should match pattern"),
        ({"timeZone": "Mars/Olympus_Mons"}, "unknown time zone"),
        ({"days": []}, "at least 1 item"),
        ({"days": ["Monday"]}, "Input should be 'Mon'"),
        ({"minReplicas": 9}, "less than or equal to scaling.maxReplicas"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    w = {"name": "office", "start": "09:00", "end": "17:00", "minReplicas": 4, **change}
    with pytest.raises(ValidationError, match=message):
        ScalingSpec.model_validate({"maxReplicas": 8, "schedules": [w]})


def test_schedule_names_are_unique() -> None:
    w = {"name": "office", "start": "09:00", "end": "17:00", "minReplicas": 4}
    with pytest.raises(ValidationError, match="names must be unique"):
        ScalingSpec.model_validate({"maxReplicas": 8, "schedules": [w, {**w, "start": "18:00"}]})


# --- decide: a schedule is a floor ----------------------------------------------------------

SPEC = ScalingSpec.model_validate(
    {
        "minReplicas": 1,
        "maxReplicas": 8,
        "slo": {"ttftP99Seconds": 2.0, "tpotP99Seconds": 0.1},
        "scaleDown": {"stabilizationSeconds": 300, "maxStepReplicas": 1},
        "schedules": [{"name": "launch", "start": "09:00", "end": "10:00", "minReplicas": 6}],
    }
)
BEFORE = at("2026-12-07T08:50:00")  # 10 minutes before it opens: beyond the 300 s prior
DUE = at("2026-12-07T08:56:00")  # 4 minutes before it opens: within the 300 s prior
AFTER = at("2026-12-07T10:01:00")


def light(pods: float = 2) -> Signals:
    """2 req/s finishing, nothing queued: one replica would do."""
    return Signals(
        values={
            Signal.RUNNING: 4,
            Signal.QUEUE_DEPTH: 0,
            Signal.KV_CACHE_USAGE: 0.02,
            Signal.PODS_REPORTING: pods,
            Signal.REQUEST_RATE: 2.0,
            Signal.TPOT_P99: 0.03,
        }
    )


def inputs(replicas: int, signals: Signals | None) -> ScalingInputs:
    return ScalingInputs(replicas=replicas, ready=replicas, signals=signals)


def test_a_due_window_raises_the_fleet_ahead_of_its_opening() -> None:
    d = decide(SPEC, inputs(2, light()), ScalingState(), DUE, 15.0)
    assert (d.replicas, d.direction, d.reason) == (6, "up", "Scheduled"), d.message
    assert d.message.startswith(
        "2 -> 6: schedule launch wants 6 replicas Ready Mon 09:00-10:00 UTC (due "
        f"{START_PRIOR_SECONDS:.0f}s before it opens"
    )
    assert "demand 2.00 req/s" in d.message  # what the plan said, kept for the reader


def test_the_learned_start_time_is_the_lead() -> None:
    learned = ScalingState(start_seconds=900.0)
    d = decide(SPEC, inputs(2, light()), learned, BEFORE, 15.0)
    assert (d.replicas, d.reason) == (6, "Scheduled"), d.message
    assert "due 900s before it opens" in d.message
    assert decide(SPEC, inputs(2, light()), ScalingState(), BEFORE, 15.0).replicas == 2


def test_a_schedule_needs_no_metrics() -> None:
    d = decide(SPEC, inputs(2, None), ScalingState(), DUE, 15.0)
    assert (d.replicas, d.reason, d.metrics_ok) == (6, "Scheduled", False), d.message
    assert d.message.endswith("(no engine metrics for the serving colour; holding replicas)")


def test_a_schedule_is_ignored_while_autoscaling_is_off() -> None:
    off = SPEC.model_copy(update={"enabled": False})
    d = decide(off, inputs(2, light()), ScalingState(), DUE, 15.0)
    assert (d.replicas, d.reason) == (2, "AutoscalingDisabled")


def test_the_plan_may_ask_for_more_than_a_schedule() -> None:
    busy = Signals(values={**light(6).values, Signal.QUEUE_DEPTH: 60, Signal.KV_CACHE_USAGE: 0.95})
    d = decide(SPEC, inputs(6, busy), ScalingState(), DUE, 15.0)
    assert d.replicas > 6 and d.reason != "Scheduled", d.message


def test_after_the_window_the_load_decides_through_the_down_window() -> None:
    # the floor's recommendations of the last 300 s hold the fleet; then it steps down
    held = ScalingState(
        recommendations=[Recommendation(time=AFTER - 120.0, replicas=6)],
        last_decision_time=AFTER - 15.0,
    )
    d = decide(SPEC, inputs(6, light(6)), held, AFTER, 15.0)
    assert (d.replicas, d.reason) == (6, "Stabilizing"), d.message
    long_ago = ScalingState(
        recommendations=[Recommendation(time=AFTER - 400.0, replicas=6)],
        last_decision_time=AFTER - 15.0,
    )
    d = decide(SPEC, inputs(6, light(6)), long_ago, AFTER, 15.0)
    assert (d.replicas, d.direction) == (5, "down"), d.message


def test_a_window_once_due_stays_due_until_it_opens() -> None:
    # ordered 15 minutes ahead; its pods were Ready in a minute, so the start time learned
    # meanwhile is shorter: the replicas stay until the window opens, and while it is open
    ordered = decide(SPEC, inputs(2, light()), ScalingState(start_seconds=900.0), BEFORE, 15.0)
    assert ordered.state.schedule_opens == at("2026-12-07T09:00:00")
    faster = ordered.state.model_copy(update={"start_seconds": 60.0})
    later = BEFORE + 120.0
    d = decide(SPEC, inputs(6, light(6)), faster, later, 15.0)
    assert (d.replicas, d.reason) == (6, "Scheduled"), d.message
    assert d.state.schedule_opens == at("2026-12-07T09:00:00")
    # without the memory of the order, the 60 s start time would not be due yet
    forgot = faster.model_copy(update={"schedule_opens": None})
    assert decide(SPEC, inputs(6, light(6)), forgot, later, 15.0).reason != "Scheduled"
