"""Signals as the planner reads them: share_over (the share of requests over an SLO, from a
histogram's cumulative buckets, interpolated as histogram_quantile does), tail_quantile (a
quantile read with an exponential tail inside its bucket) and the Prometheus
adapter's split of query results by (namespace, dsd, colour), buckets by `le`."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from deepseek_operator.adapters.prometheus import signals_by_key
from deepseek_operator.signals import Key, Signal, Signals, share_over, tail_quantile

INF = math.inf
# 100 requests/s: 50 within 0.1 s, 40 in (0.1, 0.5], 8 in (0.5, 1.0], 2 beyond 1.0
HIST = ((0.1, 50.0), (0.5, 90.0), (1.0, 98.0), (INF, 100.0))


@pytest.mark.parametrize(
    ("buckets", "threshold", "want"),
    [
        (HIST, 0.3, 0.3),  # inside (0.1, 0.5]: 50 + 40 * 0.5 = 70 within
        (HIST, 0.75, 0.06),  # inside (0.5, 1.0]: 90 + 8 * 0.5 = 98 - 4 = 94 within
        (HIST, 0.5, 0.1),  # on a bound: exactly the cumulative count below it
        (HIST, 1.0, 0.02),  # on the last finite bound
        (HIST, 2.0, 0.02),  # beyond it: all of +Inf counts as over
        (HIST, 60.0, 0.02),
        (HIST, 0.05, 0.75),  # below the first bound: from 0 to 0.1, 25 within
        (HIST, 0.0, 1.0),
        (HIST, -1.0, 1.0),  # clamped, not negative counts
        (((0.1, 5.0), (INF, 5.0)), 60.0, 0.0),  # everything fast: nothing over
        (((0.1, 0.0), (INF, 3.0)), 0.1, 1.0),  # everything in +Inf
        # rate() extrapolation can make the cumulative rates dip; histogram_quantile raises
        # each to the largest below it: 10.2 within 0.1, of 10.2
        (((0.1, 10.2), (0.5, 10.0), (INF, 10.0)), 0.3, 0.0),
        (((0.1, 10.2), (0.5, 10.0), (INF, 10.0)), 0.05, 0.5),
    ],
)
def test_share_over(
    buckets: tuple[tuple[float, float], ...], threshold: float, want: float
) -> None:
    assert share_over(buckets, threshold) == pytest.approx(want)


@pytest.mark.parametrize(
    "buckets",
    [
        None,  # no series for this key
        (),
        ((0.1, 0.0), (1.0, 0.0), (INF, 0.0)),  # no requests in the window
    ],
)
def test_share_over_of_an_empty_histogram_is_no_data(
    buckets: tuple[tuple[float, float], ...] | None,
) -> None:
    assert share_over(buckets, 1.0) is None


def test_share_over_agrees_with_histogram_quantile() -> None:
    """share_over is the inverse of histogram_quantile: the share over the p90 reading is 0.1."""
    # p90 of HIST: rank 90 is the top of (0.1, 0.5]; p95 in (0.5, 1.0]: 0.5 + 0.5 * 5 / 8
    assert share_over(HIST, 0.5) == pytest.approx(0.10)
    assert share_over(HIST, 0.5 + 0.5 * 5 / 8) == pytest.approx(0.05)


# 100 requests/s: 90 within 50 ms, 98 within 0.1 s, 99.5 within 0.15 s
TAIL = ((0.05, 90.0), (0.1, 98.0), (0.15, 99.5), (INF, 100.0))
TAIL_TABLE = [
    # (case, buckets, q, expected)
    # 2% above 0.1 s, 0.5% above 0.15 s: the share falls 4x over the bucket, 1% lies
    # ln 2 / ln 4 of the way in (histogram_quantile: 1 / 1.5 of the way, 0.1333)
    ("an exponential tail inside the bucket", TAIL, 0.99, 0.125),
    ("the p90 on the bucket's bound is the bound", TAIL, 0.90, 0.05),
    # the first bucket starts at 0 with every observation above it
    ("in the first bucket", ((0.1, 99.0), (0.15, 99.5), (INF, 100.0)), 0.5,
     0.1 * math.log(2.0) / math.log(100.0)),
    ("the bucket holds the whole tail: only its bound is known",
     ((0.05, 90.0), (0.1, 100.0), (INF, 100.0)), 0.99, None),
    ("past the last finite bound: that bound", ((0.1, 50.0), (INF, 100.0)), 0.99, 0.1),
    ("no observations", ((0.1, 0.0), (INF, 0.0)), 0.99, None),
    ("no series", None, 0.99, None),
    # cumulative rates that dip (rate() extrapolation) are raised to the largest below
    ("a dip in the cumulative rates", ((0.05, 90.0), (0.1, 89.0), (0.15, 99.5), (INF, 100.0)),
     0.99, 0.1 + 0.05 * math.log(10.0) / math.log(20.0)),
]  # fmt: skip


@pytest.mark.parametrize("case,buckets,q,want", TAIL_TABLE, ids=[c[0] for c in TAIL_TABLE])
def test_tail_quantile(
    case: str, buckets: tuple[tuple[float, float], ...] | None, q: float, want: float | None
) -> None:
    got = tail_quantile(buckets, q)
    assert got == (None if want is None else pytest.approx(want))


def test_tail_quantile_is_below_the_linear_read_inside_a_bucket() -> None:
    """histogram_quantile's linear read of TAIL's p99 (1 of its 1.5 requests/s into (0.1,
    0.15]) is above the exponential read, and the share over the exponential read is 1% only
    as the exponential tail has it (share_over interpolates linearly: less than 1%)."""
    linear = 0.1 + 0.05 * (99.0 - 98.0) / (99.5 - 98.0)
    got = tail_quantile(TAIL, 0.99)
    assert got is not None and got < linear
    assert share_over(TAIL, linear) == pytest.approx(0.01)


def _series(value: str, **labels: str) -> dict[str, Any]:
    return {"metric": labels, "value": [1733371200.0, value]}


A = {"namespace": "ns", "dsd": "r1", "colour": "blue"}
B = {"namespace": "ns", "dsd": "r1", "colour": "green"}


@pytest.mark.parametrize(
    ("results", "want"),
    [
        pytest.param(
            {Signal.RUNNING: [_series("3", **A)], Signal.QUEUE_DEPTH: [_series("1", **A)]},
            {Key("ns", "r1", "blue"): Signals({Signal.RUNNING: 3.0, Signal.QUEUE_DEPTH: 1.0})},
            id="values",
        ),
        pytest.param(
            {
                Signal.TTFT_BUCKETS: [
                    _series("2", **A, le="+Inf"),
                    _series("0.5", **A, le="0.1"),
                    _series("1.5", **A, le="1.0"),
                ],
            },
            {
                Key("ns", "r1", "blue"): Signals(
                    buckets={Signal.TTFT_BUCKETS: ((0.1, 0.5), (1.0, 1.5), (INF, 2.0))}
                )
            },
            id="buckets-by-le-ascending",
        ),
        pytest.param(
            {
                Signal.RUNNING: [_series("3", **A)],
                Signal.TTFT_BUCKETS: [_series("0", **B, le="0.1"), _series("1", **B, le="+Inf")],
                Signal.TPOT_BUCKETS: [_series("0.2", **A, le="0.05"), _series("1", **A, le="+Inf")],
            },
            {
                Key("ns", "r1", "blue"): Signals(
                    {Signal.RUNNING: 3.0},
                    buckets={Signal.TPOT_BUCKETS: ((0.05, 0.2), (INF, 1.0))},
                ),
                # a colour with buckets only (no value signal) is still a key
                Key("ns", "r1", "green"): Signals(
                    buckets={Signal.TTFT_BUCKETS: ((0.1, 0.0), (INF, 1.0))}
                ),
            },
            id="by-key",
        ),
        pytest.param(
            {
                Signal.TTFT_P99: [_series("NaN", **A)],  # histogram_quantile of no traffic
                Signal.TTFT_BUCKETS: [
                    _series("1", **A),  # no le: not a bucket
                    _series("1", **A, le="fast"),
                    _series("1", **A, le="+Inf"),
                ],
            },
            {Key("ns", "r1", "blue"): Signals(buckets={Signal.TTFT_BUCKETS: ((INF, 1.0),)})},
            id="no-data",
        ),
        pytest.param({Signal.RUNNING: []}, {}, id="empty"),
    ],
)
def test_results_split_by_key_and_le(
    results: dict[Signal, list[dict[str, Any]]], want: dict[Key, Signals]
) -> None:
    got = signals_by_key(results, taken_at=7.0)
    assert got == {k: replace(s, observed_at=7.0) for k, s in want.items()}
