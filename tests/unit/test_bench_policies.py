"""The benchmark baselines' arithmetic, as their documentation states it (HPA ratio, tolerance,
stabilization, rate limits; KEDA's AverageValue; Knative KPA windows and panic), and the
Prometheus histogram_quantile the fleet uses for TTFT/TPOT p99, and its per-bucket rates (what
rate(x_bucket[1m]) reads, for share_over)."""

from __future__ import annotations

import itertools
import math

import pytest
from deepseek_operator.signals import Signal, Signals, share_over

from bench.fleet import TTFT_BUCKETS, Fleet, WindowHistogram, histogram_quantile
from bench.policies import Floor, HpaCore, KpaCore, Oracle, Ratchet, Reactive, View, need_series
from testbed.sim.engine import SimRequest
from testbed.sim.presets import DISTILL_7B_1XH100


@pytest.mark.parametrize(
    ("current", "ratio", "want"),
    [
        (4, 1.0, 4),
        (4, 1.09, 4),  # inside the 10 % tolerance: no change
        (4, 0.91, 4),
        (4, 1.11, 5),  # ceil(4 * 1.11) = 5
        (4, 1.25, 5),  # GPU at 100 % with an 80 % target
        (10, 1.25, 13),
        (4, 0.5, 2),
        (3, 0.3, 1),
        (1, 0.0, 0),  # the controller clamps to minReplicas afterwards
    ],
)
def test_hpa_ratio_and_tolerance(current: int, ratio: float, want: int) -> None:
    assert HpaCore.ratio_replicas(current, ratio) == want


@pytest.mark.parametrize(
    ("current", "metric", "target", "want"),
    [
        (2, 4.0, 2.0, 2),  # 4 waiting / (2 per pod * 2 pods) = 1.0
        (2, 4.3, 2.0, 2),  # ratio 1.075: within tolerance
        (2, 10.0, 2.0, 5),  # ceil(10 / 2)
        (5, 0.0, 2.0, 0),  # empty queue: as few as allowed
        (3, 7.0, 2.0, 4),
    ],
)
def test_keda_average_value(current: int, metric: float, target: float, want: int) -> None:
    assert HpaCore.average_value_replicas(current, metric, target) == want


def test_hpa_scale_down_waits_for_the_300s_stabilization_window() -> None:
    h = HpaCore(min_replicas=1, max_replicas=20)
    n = h.normalize(0.0, 8, 8)
    assert n == 8
    # load drops: recommendations of 2 replicas, but 8 was recommended within 300 s
    for t in range(15, 300, 15):
        assert h.normalize(float(t), 8, 2) == 8, t
    # the 8 at t=0 leaves the window after 300 s
    assert h.normalize(301.0, 8, 2) == 2


def test_hpa_scale_down_uses_the_highest_recommendation_in_the_window() -> None:
    h = HpaCore(min_replicas=1, max_replicas=20)
    h.normalize(0.0, 10, 10)
    h.normalize(100.0, 10, 6)
    h.normalize(200.0, 10, 4)
    assert h.normalize(301.0, 10, 3) == 6  # the 10 left, 6 (t=100) is the highest left
    assert h.normalize(401.0, 6, 3) == 4
    assert h.normalize(501.0, 4, 3) == 3


def test_hpa_scale_up_is_immediate_but_rate_limited() -> None:
    h = HpaCore(min_replicas=1, max_replicas=100)
    # default policies: max(+4 pods, +100 %) per 15 s
    assert h.normalize(0.0, 1, 50) == 5  # 1 + 4
    assert h.normalize(15.0, 5, 50) == 10  # 5 * 2
    assert h.normalize(30.0, 10, 50) == 20
    assert h.normalize(45.0, 20, 50) == 40
    assert h.normalize(60.0, 40, 50) == 50


def test_hpa_rate_limit_counts_changes_within_the_period() -> None:
    h = HpaCore(min_replicas=1, max_replicas=100)
    assert h.normalize(0.0, 2, 4) == 4
    # 5 s later (inside the 15 s period) the period started at 2: limit max(2 + 4, 2 * 2) = 6
    assert h.normalize(5.0, 4, 20) == 6
    assert h.normalize(20.0, 6, 20) == 12


def test_hpa_clamps_to_min_and_max() -> None:
    h = HpaCore(min_replicas=2, max_replicas=5)
    assert h.normalize(0.0, 4, 9) == 5
    h2 = HpaCore(min_replicas=2, max_replicas=5)
    # a new HPA has no recommendations yet: nothing holds the scale-down, min still holds
    assert h2.normalize(0.0, 3, 0) == 2
    h3 = HpaCore(min_replicas=2, max_replicas=5)
    h3.recommendations.append((0.0, 3))  # as the benchmark seeds it: running at 3 already
    assert h3.normalize(15.0, 3, 0) == 3
    assert h3.normalize(301.0, 3, 0) == 2


def feed(k: KpaCore, t0: float, t1: float, conc: float) -> None:
    t = t0
    while t < t1:
        t += 1.0
        k.record(t, conc)


def test_kpa_stable_mode_averages_60s_of_concurrency() -> None:
    k = KpaCore(target=70.0, min_replicas=1, max_replicas=50)
    feed(k, 0.0, 60.0, 140.0)
    assert k.decide(60.0, ready=2) == 2  # ceil(140 / 70)
    feed(k, 60.0, 90.0, 210.0)  # half the stable window at 210: average 175
    # panic window: 210 / 70 = 3 pods, 3 / 2 ready = 150 % < 200 %: no panic
    assert k.decide(90.0, ready=2) == 3
    assert k.panic_since is None


def test_kpa_panics_on_a_burst_and_does_not_scale_down_while_panicking() -> None:
    k = KpaCore(target=70.0, min_replicas=1, max_replicas=50)
    feed(k, 0.0, 60.0, 70.0)
    assert k.decide(60.0, ready=1) == 1
    feed(k, 60.0, 66.0, 700.0)  # 6 s burst: the panic window sees 10 pods' worth
    assert k.decide(66.0, ready=1) == 10
    assert k.panic_since == 66.0
    # the burst ends; the panic window quiets but panic holds the count for a stable window
    feed(k, 66.0, 100.0, 70.0)
    assert k.decide(100.0, ready=1) == 10
    feed(k, 100.0, 127.0, 70.0)
    assert k.decide(127.0, ready=1) == 1  # 61 s without the condition: back to stable mode
    assert k.panic_since is None


def test_kpa_scales_down_at_most_by_half() -> None:
    k = KpaCore(target=10.0, min_replicas=1, max_replicas=50)
    feed(k, 0.0, 60.0, 0.0)
    assert k.decide(60.0, ready=16) == 8
    assert k.decide(62.0, ready=8) == 4


def test_oracle_provisions_ahead_by_the_cold_start() -> None:
    need = [1] * 40 + [5] * 20 + [1] * 40  # 15 s steps: peak from 600 s to 900 s
    o = Oracle(need, 15.0, cold_start_s=300.0, lead_s=0.0)
    assert o.at(0.0) == 1
    assert o.at(299.0) == 1
    assert o.at(300.0) == 5  # 600 - 300
    assert o.at(899.0) == 5
    assert o.at(901.0) == 1


@pytest.mark.parametrize(
    ("t", "replicas"),
    [
        (0.0, 1),
        (629.0, 1),  # the last whole minute, centred on 599 s, is before the peak
        (630.0, 5),  # centred on 600 s: the peak, seen only once it has come
        (929.0, 5),
        (930.0, 1),
        (10_000.0, 1),  # past the series: its last value
    ],
)
def test_reactive_asks_for_what_the_last_minute_needed(t: float, replicas: int) -> None:
    need = [1] * 40 + [5] * 20 + [1] * 40  # 15 s steps: peak from 600 s to 900 s
    assert Reactive(need, 15.0, 60.0).at(t) == replicas


@pytest.mark.parametrize(
    ("t", "replicas"),
    [
        (0.0, 2),
        (629.0, 2),  # the peak is not seen before it comes
        (630.0, 5),
        (930.0, 5),  # and never forgotten after
        (10_000.0, 5),
    ],
)
def test_ratchet_holds_the_most_any_minute_so_far_needed(t: float, replicas: int) -> None:
    need = [2] * 10 + [1] * 30 + [5] * 20 + [1] * 40
    assert Ratchet(need, 15.0, 60.0).at(t) == replicas


@pytest.mark.parametrize(
    ("t", "replicas"),
    [
        (0.0, 3),  # the need is 1: the floor holds 3
        (599.0, 3),
        (600.0, 5),  # the minute centred on 600 s: the peak, seen as it comes
        (899.0, 5),
        (900.0, 3),  # back to the floor at once
        (10_000.0, 3),
    ],
)
def test_floor_reacts_at_once_and_never_goes_below_its_floor(t: float, replicas: int) -> None:
    need = [1] * 40 + [5] * 20 + [1] * 40
    p = Floor(need, 15.0, 3)
    assert p.name == "floor3"
    v = View(t, 3, 3, Signals(values={}), None, 0.0, 0.0)
    assert p.decide(v) == replicas


def test_need_series_is_rate_over_capacity() -> None:
    arrivals = [i * 0.1 for i in range(6000)]  # 10 req/s for 600 s
    s = need_series(arrivals, 600.0, 4.0, 15.0, 60.0, 1, 20)
    assert s[10] == 3  # ceil(10 / 4)
    assert s[-1] == 2  # the centred window is half empty at the end
    assert max(need_series(arrivals, 600.0, 0.1, 15.0, 60.0, 1, 20)) == 20


def test_histogram_quantile_like_prometheus() -> None:
    b = (0.1, 0.5, 1.0)
    # 100 observations: 50 in (0, 0.1], 40 in (0.1, 0.5], 10 in (0.5, 1.0]
    assert histogram_quantile(0.5, b, [50, 40, 10, 0]) == pytest.approx(0.1)
    assert histogram_quantile(0.9, b, [50, 40, 10, 0]) == pytest.approx(0.5)
    assert histogram_quantile(0.99, b, [50, 40, 10, 0]) == pytest.approx(0.95)
    assert histogram_quantile(0.99, b, [0, 0, 0, 5]) == 1.0  # +Inf bucket: highest bound
    assert math.isnan(histogram_quantile(0.5, b, [0, 0, 0, 0]))


def test_window_histogram_forgets_after_a_minute() -> None:
    h = WindowHistogram(TTFT_BUCKETS, window_s=60)
    h.observe(10.0, 30.0)
    for _ in range(99):
        h.observe(50.0, 0.05)
    assert h.quantile(0.995, 60.0) > 20.0
    assert h.quantile(0.995, 71.0) <= 0.06
    assert math.isnan(h.quantile(0.5, 200.0))


def test_window_histogram_bucket_rates_are_rate_of_the_cumulative_buckets() -> None:
    h = WindowHistogram((0.1, 0.5, 1.0), window_s=60)
    for _ in range(30):
        h.observe(10.0, 0.05)
    h.observe(10.0, 0.1)  # on a bound: le="0.1" counts it (value <= bound)
    for _ in range(20):
        h.observe(20.0, 0.3)
    h.observe(30.0, 5.0)  # beyond every bound: +Inf only
    assert h.bucket_rates(60.0) == (
        (0.1, 31 / 60),
        (0.5, 51 / 60),
        (1.0, 51 / 60),
        (math.inf, 52 / 60),
    )
    assert h.bucket_rates(71.0) == ((0.1, 0.0), (0.5, 20 / 60), (1.0, 20 / 60), (math.inf, 21 / 60))
    assert h.bucket_rates(200.0) == ()  # the window is empty: no series


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_window_histogram_share_over_its_quantile_is_one_minus_q(q: float) -> None:
    """The buckets and histogram_quantile read the same window: share_over at the q-quantile
    reading is 1 - q (both interpolate linearly inside the bucket)."""
    h = WindowHistogram(TTFT_BUCKETS, window_s=60)
    for i in range(1000):
        h.observe(i * 0.05, 0.02 + 3.0 * (i % 97) / 97)  # 20 s spread over 0.02..3 s
    now = 55.0
    assert share_over(h.bucket_rates(now), h.quantile(q, now)) == pytest.approx(1 - q)


def test_fleet_signals_have_ttft_and_tpot_buckets_while_it_serves() -> None:
    fleet = Fleet(DISTILL_7B_1XH100, cold_start_s=60.0, seed=1)
    fleet.add_pod(0.0, warm=True)
    empty = fleet.signals(0.0)
    assert empty.buckets == {}  # nothing served yet: no series, and share_over has no data
    assert share_over(empty.buckets.get(Signal.TTFT_BUCKETS), 2.0) is None
    # 20 req/s of 1-3k-token prompts: more than one pod serves, so TTFTs queue up from under
    # a second to tens of seconds and fill many buckets
    for t in range(1, 61):
        for k in range(20):
            fleet.arrive(SimRequest(f"r{t}-{k}", 1024 * (1 + k % 3), 64 + 8 * k, t - 1 + k / 20))
        fleet.advance(float(t))
    sig = fleet.signals(60.0)
    assert set(sig.buckets) == {Signal.TTFT_BUCKETS, Signal.TPOT_BUCKETS}
    for b in sig.buckets.values():
        les = [le for le, _ in b]
        assert les == sorted(les) and les[-1] == math.inf
        assert all(x <= y for (_, x), (_, y) in itertools.pairwise(b))
    ttft, tpot = sig.buckets[Signal.TTFT_BUCKETS], sig.buckets[Signal.TPOT_BUCKETS]
    assert 0 < ttft[-1][1] * 60 <= 1200  # the first tokens within the minute, of 1200 sent
    assert share_over(ttft, sig.values[Signal.TTFT_P99]) == pytest.approx(0.01)
    assert share_over(tpot, sig.values[Signal.TPOT_P99]) == pytest.approx(0.01)
    waited = share_over(ttft, 0.5)
    assert waited is not None and waited > 0.9  # overloaded: nearly every request waited
    # a minute later with nothing arriving, the window is empty again
    fleet.advance(200.0)
    assert fleet.signals(200.0).buckets == {}
