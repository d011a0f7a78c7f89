"""The autoscaling benchmark's per-minute misses (the plot's bottom panel)."""

from __future__ import annotations

import math

import pytest

from bench.autoscale import missed_by_minute

MISSED_TABLE = [
    # (case, (arrival, met) outcomes, times, expected shares)
    ("all met", [(10.0, True), (20.0, True)], [60.0], [0.0]),
    ("one of four missed", [(1.0, True), (2.0, False), (3.0, True), (4.0, True)], [60.0], [0.25]),
    # the minute before each time: [0, 60) and [60, 120); an arrival at 60 is the second's
    ("each minute its own", [(30.0, False), (60.0, True), (90.0, True)], [60.0, 120.0], [1.0, 0.0]),
    ("unsorted outcomes", [(90.0, False), (30.0, True)], [60.0, 120.0], [0.0, 1.0]),
]


@pytest.mark.parametrize(
    "case,outcomes,at,expected", MISSED_TABLE, ids=[c[0] for c in MISSED_TABLE]
)
def test_missed_by_minute(
    case: str, outcomes: list[tuple[float, bool]], at: list[float], expected: list[float]
) -> None:
    assert missed_by_minute(outcomes, at) == pytest.approx(expected)


def test_a_minute_without_arrivals_is_not_a_share() -> None:
    assert math.isnan(missed_by_minute([(10.0, False)], [200.0])[0])
