"""The autoscaling policy as tables: (signals, state, time) -> decision."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from deepseek_operator.api.spec import ScalingSpec
from deepseek_operator.api.status import Recommendation, ScalingState
from deepseek_operator.scaling import ScalingInputs, decide, replicas_to_write, scale_event
from deepseek_operator.signals import Signal, Signals

SPEC = ScalingSpec.model_validate(
    {
        "minReplicas": 1,
        "maxReplicas": 8,
        "slo": {"ttftP99Seconds": 2.0, "tpotP99Seconds": 0.1},
        "targets": {"queueDepthPerReplica": 2, "kvCacheUsage": 0.8},
        "scaleUp": {"stabilizationSeconds": 0, "maxStepReplicas": 4},
        "scaleDown": {"stabilizationSeconds": 300, "maxStepReplicas": 1},
        "panicThreshold": 2.0,
    }
)
EMPTY = ScalingState()
# Recommendations of 1 replica over the last 400 s (now = 1000): the down window is satisfied.
LOW_FOR_LONG = ScalingState(
    recommendations=[Recommendation(time=t, replicas=1) for t in range(600, 1000, 15)]
)


def sig(running: float, waiting: float, kv: float, pods: float = 2, **extra: float) -> Signals:
    vals = {
        Signal.RUNNING: running,
        Signal.QUEUE_DEPTH: waiting,
        Signal.KV_CACHE_USAGE: kv,
        Signal.PODS_REPORTING: pods,
    }
    for k, v in extra.items():
        vals[Signal(k)] = v
    return Signals(vals)


def inp(
    replicas: int = 2, ready: int = 2, signals: Signals | None = None, **kw: Any
) -> ScalingInputs:
    return ScalingInputs(replicas=replicas, ready=ready, signals=signals, **kw)


CASES = [
    # (case, spec changes, inputs, state, expected replicas, expected reason)
    ("steady at target", {}, inp(signals=sig(40, 0, 0.8)), EMPTY, 2, "WithinTarget"),
    ("queue builds up", {}, inp(signals=sig(40, 12, 0.95)), EMPTY, 3, "QueueBuildup"),
    ("kv cache above target", {}, inp(signals=sig(40, 0, 0.95)), EMPTY, 3, "HighKVCacheUsage"),
    ("small queue is tolerated", {}, inp(signals=sig(40, 3, 0.8)), EMPTY, 2, "WithinTarget"),
    ("missing metrics hold", {}, inp(signals=None), EMPTY, 2, "MetricsMissing"),
    (
        "missing metrics never scale down",
        {},
        inp(replicas=6, ready=6, signals=Signals({})),
        EMPTY,
        6,
        "MetricsMissing",
    ),
    (
        "stale metrics hold",
        {},
        inp(signals=sig(1, 0, 0.01), signal_age=600),
        EMPTY,
        2,
        "MetricsStale",
    ),
    (
        "half the pods silent",
        {},
        inp(replicas=4, ready=4, signals=sig(10, 0, 0.2, pods=1)),
        EMPTY,
        4,
        "MetricsIncomplete",
    ),
    ("nothing ready yet", {}, inp(ready=0, signals=Signals({})), EMPTY, 2, "NoReadyReplicas"),
    (
        "low load waits for the down window",
        {},
        inp(signals=sig(2, 0, 0.02)),
        EMPTY,
        2,
        "Stabilizing",
    ),
    ("burst triggers panic", {}, inp(signals=sig(40, 200, 0.99)), EMPTY, 6, "Panic"),
    ("capped at max", {"maxReplicas": 2}, inp(signals=sig(40, 12, 0.95)), EMPTY, 2, "QueueBuildup"),
    (
        "unschedulable pods stop scale-up",
        {},
        inp(signals=sig(40, 30, 0.95), unschedulable=1),
        EMPTY,
        2,
        "CapacityLimited",
    ),
    (
        "ttft above slo adds a replica",
        {},
        inp(signals=sig(40, 0, 0.8, ttftP99=3.0)),
        EMPTY,
        3,
        "TTFTAboveSLO",
    ),
    (
        "tpot above its target fraction of the slo adds replicas",
        {},
        inp(signals=sig(40, 0, 0.8, tpotP99=0.08)),
        EMPTY,
        3,
        "HighTPOT",
    ),
    (
        "tpot far above slo panics",
        {},
        inp(signals=sig(40, 0, 0.8, tpotP99=0.15)),
        EMPTY,
        5,
        "Panic",
    ),
    (
        "slo guard waits for starting pods",
        {},
        inp(replicas=3, ready=2, signals=sig(40, 0, 0.8, ttftP99=3.0)),
        EMPTY,
        3,
        "WithinTarget",
    ),
    (
        "slo guard acts during a cold start when the starting pods are not enough",
        {},
        inp(replicas=3, ready=2, signals=sig(40, 0, 0.8, ttftP99=6.0)),
        EMPTY,
        4,
        "TTFTAboveSLO",
    ),
    (
        "no scale-down while pods are still starting",
        {},
        inp(replicas=4, ready=2, signals=sig(2, 0, 0.02)),
        LOW_FOR_LONG,
        4,
        "WaitingForStartingPods",
    ),
    (
        "no scale-down while latency is near the slo",
        {},
        inp(signals=sig(2, 0, 0.02, ttftP99=1.8)),
        LOW_FOR_LONG,
        2,
        "LatencyNearSLO",
    ),
    (
        "low load for a whole down window scales down",
        {},
        inp(signals=sig(2, 0, 0.02, tpotP99=0.03)),
        LOW_FOR_LONG,
        1,
        "LowLoad",
    ),
    (
        "disabled",
        {"enabled": False},
        inp(signals=sig(40, 30, 0.95)),
        EMPTY,
        2,
        "AutoscalingDisabled",
    ),
    (
        "above a lowered max",
        {"maxReplicas": 3},
        inp(replicas=5, ready=5, signals=None),
        EMPTY,
        3,
        "AboveMaxReplicas",
    ),
    (
        "gpu utilization target when asked",
        {"targets": {"gpuUtilization": 0.5}},
        inp(signals=sig(40, 0, 0.8, gpuUtilization=0.75)),
        EMPTY,
        3,
        "HighGPUUtilization",
    ),
]


@pytest.mark.parametrize(
    ("changes", "inputs", "state", "replicas", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(
    changes: dict[str, Any], inputs: ScalingInputs, state: ScalingState, replicas: int, reason: str
) -> None:
    spec = SPEC.model_copy(
        update={
            k: (
                SPEC.targets.model_copy(update={"gpu_utilization": v["gpuUtilization"]})
                if k == "targets"
                else v
            )
            for k, v in {
                ("max_replicas" if k == "maxReplicas" else k): v for k, v in changes.items()
            }.items()
        }
    )
    d = decide(spec, inputs, state, now=1000.0, interval=15)
    assert (d.replicas, d.reason) == (replicas, reason), d.message


def test_missing_metrics_mark_metrics_unavailable() -> None:
    d = decide(SPEC, inp(signals=None), EMPTY, 0.0, 15)
    assert d.metrics_ok is False and d.direction == "hold"


def test_scale_down_after_the_window_one_step_at_a_time() -> None:
    low = inp(replicas=4, ready=4, signals=sig(2, 0, 0.02, pods=4))
    state = EMPTY
    replicas = []
    for t in range(0, 400, 15):
        d = decide(SPEC, low, state, float(t), 15)
        state = d.state
        replicas.append(d.replicas)
    assert all(r == 4 for r in replicas[: 300 // 15])  # t < 300 s
    assert replicas[-1] == 3  # one step, once the whole window was low


def test_flapping_load_does_not_flap_replicas() -> None:
    state = EMPTY
    seen = set()
    n = 3
    for i in range(40):
        busy = i % 2 == 0
        s = sig(60, 0, 0.85, pods=3) if busy else sig(10, 0, 0.15, pods=3)
        d = decide(SPEC, inp(replicas=n, ready=n, signals=s), state, 1000.0 + 15 * i, 15)
        state = d.state
        n = d.replicas
        seen.add(n)
    assert seen <= {3, 4}  # may add one for the busy phases; never drops during the churn
    assert n >= 3


def test_panic_blocks_scale_down_for_the_window() -> None:
    d = decide(SPEC, inp(signals=sig(40, 200, 0.99)), EMPTY, 1000.0, 15)
    assert d.reason == "Panic" and d.state.panic_until == pytest.approx(1300.0)
    quiet = decide(
        SPEC, inp(replicas=6, ready=6, signals=sig(2, 0, 0.02, pods=6)), d.state, 1100.0, 15
    )
    assert (quiet.replicas, quiet.reason) == (6, "PanicHold")


def test_up_window_uses_the_lowest_recent_recommendation() -> None:
    spec = SPEC.model_copy(
        update={"scale_up": SPEC.scale_up.model_copy(update={"stabilization_seconds": 60})}
    )
    state = ScalingState(recommendations=[Recommendation(time=970.0, replicas=2)])
    d = decide(spec, inp(signals=sig(40, 30, 0.95)), state, 1000.0, 15)
    assert d.replicas == 2  # a spike must last the up-window


def test_scale_to_zero_only_when_asked() -> None:
    spec = SPEC.model_copy(update={"min_replicas": 0, "scale_to_zero": True})
    state = ScalingState(
        recommendations=[Recommendation(time=t, replicas=0) for t in range(600, 1000, 15)]
    )
    idle = inp(replicas=1, ready=1, signals=sig(0, 0, 0.0, pods=1))
    assert decide(spec, idle, state, 1000.0, 15).replicas == 0
    assert decide(SPEC, idle, state, 1000.0, 15).replicas == 1


def test_scale_event_words() -> None:
    d = decide(SPEC, inp(signals=sig(40, 12, 0.95)), EMPTY, 0.0, 15)
    assert scale_event(d, 2) == ("ScaledUp", f"QueueBuildup: {d.message}")
    assert "running" in d.message and d.signals["queueDepth"] == 12
    assert scale_event(d, 3) is None


@pytest.mark.parametrize(
    ("spec_replicas", "decided", "written"),
    [
        (None, 1, 1),  # unset (defaults to minReplicas): written once, even on a hold
        (None, 3, 3),  # unset and scaling up
        (2, 2, None),  # a hold writes nothing
        (2, 4, 4),
        (4, 3, 3),
    ],
)
def test_replicas_to_write(spec_replicas: int | None, decided: int, written: int | None) -> None:
    current = spec_replicas if spec_replicas is not None else SPEC.min_replicas
    held = decide(SPEC, inp(replicas=current, ready=current, signals=None), EMPTY, 0.0, 15)
    assert held.replicas == current  # missing metrics: a hold
    assert replicas_to_write(spec_replicas, replace(held, replicas=decided)) == written


# --- lead-time compensation: project a rising request rate to when a new pod is Ready ----------


def rates(values: list[float], start: float = 820.0, every: float = 15.0) -> ScalingState:
    """Recommendations of 2 replicas carrying these request rates, 15 s apart (now = 1000)."""
    return ScalingState(
        recommendations=[
            Recommendation(time=start + i * every, replicas=2, request_rate=r)
            for i, r in enumerate(values)
        ],
        start_seconds=300.0,
    )


PROJECTING = SPEC.model_copy(
    update={"scale_up": SPEC.scale_up.model_copy(update={"project_rising_load": True})}
)
RISING = [4.0 + 0.1 * i for i in range(12)]  # +0.4 req/s per minute, steadily: 5.2 now
FLAT_NOISY = [6.0, 6.3, 5.8, 6.1, 5.9, 6.2, 5.7, 6.0, 6.3, 5.9, 6.1, 6.0]
# at target now (2 pods, KV 80%): only a projection can ask for more
AT_TARGET = sig(40, 0, 0.8, requestRate=5.2)

TREND_CASES = [
    # (case, state, signals, expected replicas, expected reason)
    ("steadily rising rate is projected", rates(RISING), AT_TARGET, 3, "RisingLoad"),
    ("noise on a flat rate is not", rates(FLAT_NOISY), AT_TARGET, 2, "WithinTarget"),
    (
        "no projection before a start time was learned",
        rates(RISING).model_copy(update={"start_seconds": None}),
        AT_TARGET,
        2,
        "WithinTarget",
    ),
    ("too little history", rates(RISING[-4:], start=955.0), AT_TARGET, 2, "WithinTarget"),
    ("a falling rate is not projected", rates(RISING[::-1]), AT_TARGET, 2, "WithinTarget"),
    (
        "a steep rise projects at most a doubling",
        rates([1.0 + 2.0 * i for i in range(12)]),
        sig(40, 0, 0.8, requestRate=25.0),
        4,
        "Panic",
    ),
    (
        "no request rate, no projection",
        rates(RISING),
        sig(40, 0, 0.8),
        2,
        "WithinTarget",
    ),
]


@pytest.mark.parametrize(
    "case,state,signals,replicas,reason", TREND_CASES, ids=[c[0] for c in TREND_CASES]
)
def test_lead_time_compensation(
    case: str, state: ScalingState, signals: Signals, replicas: int, reason: str
) -> None:
    d = decide(PROJECTING, inp(signals=signals), state, 1000.0, 15.0)
    assert (d.replicas, d.reason) == (replicas, reason), d.message


def test_no_projection_unless_asked() -> None:
    d = decide(SPEC, inp(signals=AT_TARGET), rates(RISING), 1000.0, 15.0)
    assert (d.replicas, d.reason) == (2, "WithinTarget"), d.message


def test_projection_explains_itself() -> None:
    d = decide(PROJECTING, inp(signals=AT_TARGET), rates(RISING), 1000.0, 15.0)
    assert "request rate rising 0.40 req/s per minute" in d.message
    assert "~300s" in d.message
    # the rate is remembered for the next trend
    assert d.state.recommendations[-1].request_rate == 5.2


LEARN_CASES = [
    # (case, state, replicas, ready, decided up?, expected since, expected learned)
    ("a scale-up starts the clock", ScalingState(), 2, 2, True, 1000.0, None),
    (
        "all pods Ready: the start time is learned",
        ScalingState(scale_up_since=700.0),
        3,
        3,
        False,
        None,
        300.0,
    ),
    (
        "pods still starting: keep waiting",
        ScalingState(scale_up_since=700.0, start_seconds=200.0),
        3,
        2,
        False,
        700.0,
        200.0,
    ),
    (
        "a new observation is averaged in",
        ScalingState(scale_up_since=600.0, start_seconds=200.0),
        3,
        3,
        False,
        None,
        300.0,
    ),
]


@pytest.mark.parametrize(
    "case,state,replicas,ready,up,since,learned", LEARN_CASES, ids=[c[0] for c in LEARN_CASES]
)
def test_start_time_is_learned_from_scale_ups(
    case: str,
    state: ScalingState,
    replicas: int,
    ready: int,
    up: bool,
    since: float | None,
    learned: float | None,
) -> None:
    # 40 running on 2 pods at 80% KV is at target; 12 waiting is a queue that scales up
    signals = sig(40, 12 if up else 0, 0.95 if up else 0.8, pods=ready)
    d = decide(SPEC, inp(replicas=replicas, ready=ready, signals=signals), state, 1000.0, 15.0)
    assert (d.direction == "up") == up, d.message
    assert (d.state.scale_up_since, d.state.start_seconds) == (since, learned)
