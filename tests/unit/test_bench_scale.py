"""The scale benchmark's pure parts: parsing what it reads and summarising it into scale.json."""

from __future__ import annotations

import pytest

from bench.scale import (
    PointRaw,
    Snapshot,
    aims,
    dsd_body,
    histogram_quantile,
    is_resource_request,
    parse_metrics,
    parse_proc_stat,
    parse_proc_status,
    quantile,
    reconcile_buckets,
    reconcile_seconds,
    summarise,
    total,
)

APISERVER = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",group="apps",resource="deployments",verb="LIST"} 40
apiserver_request_total{code="201",group="",resource="events",verb="POST",version="v1"} 2
apiserver_request_total{code="200",component="",group="",resource="",verb="GET",version=""} 1e3
"""

OPERATOR = """\
deepseek_operator_reconcile_duration_seconds_bucket{handler="reconcile",le="0.01"} 2.0
deepseek_operator_reconcile_duration_seconds_bucket{handler="reconcile",le="0.1"} 8.0
deepseek_operator_reconcile_duration_seconds_bucket{handler="reconcile",le="+Inf"} 10.0
deepseek_operator_reconcile_duration_seconds_count{handler="reconcile"} 10.0
deepseek_operator_prometheus_queries_per_tick 7.0
"""


def test_metrics_text_is_parsed_and_summed_over_resource_requests_only() -> None:
    s = parse_metrics(APISERVER)
    assert total(s, "apiserver_request_total") == 1042
    assert total(s, "apiserver_request_total", is_resource_request) == 42
    assert total(s, "missing") == 0


def test_the_reconcile_histogram_is_read_and_interpolated_as_prometheus_does() -> None:
    b = reconcile_buckets(parse_metrics(OPERATOR))
    assert sorted(b) == [(0.01, 2.0), (0.1, 8.0), (float("inf"), 10.0)]
    # rank 5 of 10 lies half-way through the (0.01, 0.1] bucket
    assert histogram_quantile(b, 0.5) == pytest.approx(0.055)
    assert histogram_quantile(b, 0.99) == 0.1  # in +Inf: the highest finite bound
    assert histogram_quantile([], 0.5) is None


@pytest.mark.parametrize(
    ("values", "q", "want"),
    [([], 0.5, None), ([3.0], 0.99, 3.0), ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5), ([0, 10], 0.99, 9.9)],
)
def test_quantile_interpolates_linearly(values: list[float], q: float, want: float | None) -> None:
    got = quantile(values, q)
    assert got == (None if want is None else pytest.approx(want))


def test_reconcile_durations_come_from_the_log_lines_of_the_namespace() -> None:
    log = (
        "[2026-12-03 07:00:00] deepseek_operator [INFO] reconciled namespace=scale-10 name=a "
        "phase=Progressing active=blue ready=0/1 rollout=None changes=2 seconds=0.0312\n"
        "[...] reconciled namespace=other name=b phase=Ready active=blue ready=1/1 rollout=None "
        "changes=0 seconds=9.0\n"
        "[...] scaling_decision namespace=scale-10 name=a from=1 to=1 reason=NoSignals\n"
        "[...] reconciled namespace=scale-10 name=a phase=Ready active=blue ready=1/1 "
        "rollout=None changes=0 seconds=0.0040\n"
    )
    assert reconcile_seconds(log, "scale-10") == [0.0312, 0.004]


def test_proc_files_give_rss_peak_and_cpu_seconds() -> None:
    status = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    assert parse_proc_status(status) == (100.0, 200.0)
    # the command may hold spaces and parentheses; utime 150 and stime 50 ticks at 100 Hz
    stat = "1234 (python (x) y) S 1 1234 1234 0 -1 4194560 1 0 0 0 150 50 0 0 20 0 9 0 1 2 3"
    assert parse_proc_stat(stat, 100.0) == 2.0


def _raw(n: int, *, queries: float, api: float, bg: float) -> PointRaw:
    return PointRaw(
        resources=n,
        signal_interval_s=10.0,
        all_reconciled_s=5.0,
        all_ready_s=8.0,
        reconcile_s=[0.01] * 98 + [0.2, 0.3],
        steady_reconcile_s=[0.01, 0.03],
        histogram=[(0.1, 98.0), (float("inf"), 100.0)],
        rss_mb_peak=120.0,
        rss_mb_end=110.0,
        cpu_s_total=12.0,
        # 60 s steady: 6 ticks; the operator on top of a background of `bg` requests/s
        steady=(
            Snapshot(100.0, 1000.0, 3.0, 70.0, 7.0, 50.0, {"patch dsd/status": 4.0, "list x": 2}),
            Snapshot(
                160.0,
                1000.0 + (api + bg) * 60,
                6.0,
                70.0 + 7.5 * 6,
                queries,
                70.0,
                {"patch dsd/status": 14.0, "list x": 2, "get y": 1},
            ),
        ),
        background=(
            Snapshot(170.0, 5000.0, 0, 0, None, 0),
            Snapshot(200.0, 5000.0 + bg * 30, 0, 0, None, 0),
        ),
        create_s=1.0,
    )


def test_a_point_is_summarised_into_the_issue_s_keys() -> None:
    p = summarise(_raw(100, queries=7, api=3.0, bg=2.0))
    assert {"resources", "rss_mb", "reconcile_p99_s", "queries_per_tick"} <= p.keys()
    assert {"api_requests_per_tick", "all_reconciled_s"} <= p.keys()
    assert p["resources"] == 100
    assert p["rss_mb"] == 120.0 and p["rss_mb_end"] == 110.0
    assert p["reconcile_p50_s"] == 0.01
    assert p["reconcile_p99_s"] == pytest.approx(0.201)  # between the 99th and 100th value
    assert p["reconcile_p99_s_histogram"] == 0.1
    assert p["steady_reconcile_p50_s"] == 0.02
    assert p["queries_per_tick"] == 7.0  # the operator's gauge
    assert p["queries_per_tick_window"] == 7.5  # the window's count / its ticks
    # 5 requests/s measured, 2 of them the control plane's own: 3/s x 10 s per tick
    assert p["api_requests_per_s"] == 3.0
    assert p["api_requests_per_tick"] == 30.0
    assert p["background_api_requests_per_s"] == 2.0
    assert p["api_requests_per_reconcile"] == 9.0  # 180 requests over 20 reconciles
    # the operator's own count: only what grew in the window, per reconcile
    assert p["operator_requests_per_reconcile"] == {"get y": 0.05, "patch dsd/status": 0.5}
    assert p["steady_cpu_cores"] == 0.05
    assert p["all_reconciled_s"] == 5.0 and p["all_ready_s"] == 8.0


def test_background_above_the_measured_rate_counts_as_zero_not_negative() -> None:
    p = summarise(_raw(10, queries=7, api=-1.0, bg=2.0))
    assert p["api_requests_per_tick"] == 0.0


def test_aims_are_judged_at_the_largest_point() -> None:
    small = summarise(_raw(10, queries=7, api=1.0, bg=0.0))
    big = summarise(_raw(1000, queries=7, api=9.0, bg=0.0))
    got = aims([big, small])
    assert got["at_resources"] == 1000
    assert got["queries_per_tick_independent_of_n"] is True
    assert got["rss_under_300_mb"] is True
    assert got["reconcile_p99_under_100_ms"] is False  # 0.201 s
    assert (
        aims([small, summarise(_raw(100, queries=8, api=1.0, bg=0.0))])[
            "queries_per_tick_independent_of_n"
        ]
        is False
    )
    assert aims([]) == {}


def test_the_benchmark_s_resource_is_the_distilled_example_with_one_gpu_and_one_replica() -> None:
    body = dsd_body("dsd-0001")
    assert body["metadata"] == {"name": "dsd-0001"}
    assert body["spec"]["resources"]["gpusPerReplica"] == 1
    assert body["spec"]["scaling"]["minReplicas"] == 1
