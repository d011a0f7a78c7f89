"""The blue-green state machine, driven through its transitions as tables of observations."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from deepseek_operator.api.spec import RolloutSpec
from deepseek_operator.api.status import Colour
from deepseek_operator.rollout import (
    ColourObservation,
    RolloutInputs,
    RolloutPhase,
    RolloutState,
    analyse,
    initial_state,
    rebase_on_reset,
    step,
)
from deepseek_operator.signals import Signal, Signals

B, G = Colour.BLUE, Colour.GREEN
OLD, NEW, NEWER = "h-old", "h-new", "h-newer"
SETTINGS = RolloutSpec.model_validate(
    {
        "readyTimeoutSeconds": 600,
        "scaleDownDelaySeconds": 300,
        "warmupRequests": 4,
        "analysis": {"durationSeconds": 120, "maxErrorRate": 0.05, "minRequests": 4},
    }
)


def running(hash_: str, ready: int = 2, replicas: int = 2) -> ColourObservation:
    return ColourObservation(
        exists=True, replicas=replicas, ready=ready, updated=replicas, template_hash=hash_
    )


NONE = ColourObservation()
RUNNING_OLD = running(OLD)


def inputs(
    desired: str = NEW,
    active: ColourObservation = RUNNING_OLD,
    other: ColourObservation = NONE,
    signals: dict[Signal, float] | None = None,
    settings: RolloutSpec = SETTINGS,
    **kw: Any,
) -> RolloutInputs:
    return RolloutInputs(
        desired_hash=desired,
        desired_replicas=2,
        settings=settings,
        default_max_ttft=2.0,
        active=active,
        other=other,
        preview_signals=Signals(signals) if signals is not None else None,
        **kw,
    )


IDLE = RolloutState(RolloutPhase.IDLE, B, OLD)
PROGRESSING = replace(
    IDLE,
    phase=RolloutPhase.PROGRESSING,
    preview_colour=G,
    preview_hash=NEW,
    started_at=1000.0,
    phase_since=1000.0,
)
ANALYZING = replace(
    PROGRESSING,
    phase=RolloutPhase.ANALYZING,
    phase_since=1100.0,
    requests_baseline=10.0,
    errors_baseline=1.0,
)


def test_first_reconcile_creates_the_active_colour_from_spec() -> None:
    out = step(initial_state(NEW), inputs(active=NONE), 0.0)
    assert out.state.phase is RolloutPhase.IDLE and out.state.active_colour is B
    assert (out.active.colour, out.active.replicas, out.active.render_spec) == (B, 2, True)
    assert out.other is None and out.events == ()


def test_replica_or_setting_change_alone_is_no_rollout() -> None:
    out = step(IDLE, inputs(desired=OLD), 5.0)
    assert out.state == IDLE and out.active.render_spec and out.other is None


def test_template_change_starts_the_other_colour_and_keeps_active_template() -> None:
    out = step(IDLE, inputs(), 1000.0)
    assert out.state.phase is RolloutPhase.PROGRESSING
    assert (out.state.preview_colour, out.state.preview_hash, out.state.started_at) == (
        G,
        NEW,
        1000.0,
    )
    assert (out.active.colour, out.active.render_spec) == (B, False)  # active keeps its old pods
    assert out.other is not None and (
        out.other.colour,
        out.other.replicas,
        out.other.render_spec,
    ) == (G, 2, True)
    assert [e.reason for e in out.events] == ["RolloutStarted"]


STEPS = [
    # (case, state, inputs, now, expected phase, expected event reasons, stable colour after)
    (
        "preview starting",
        PROGRESSING,
        inputs(other=running(NEW, ready=1)),
        1200.0,
        RolloutPhase.PROGRESSING,
        [],
        B,
    ),
    (
        "preview ready -> analysis",
        PROGRESSING,
        inputs(other=running(NEW), signals={Signal.REQUESTS_TOTAL: 10}),
        1100.0,
        RolloutPhase.ANALYZING,
        ["PreviewReady"],
        B,
    ),
    (
        "preview never ready",
        PROGRESSING,
        inputs(other=running(NEW, ready=0)),
        1600.0,
        RolloutPhase.ROLLED_BACK,
        ["PreviewNotReady"],
        B,
    ),
    (
        "wrong template is not ready",
        PROGRESSING,
        inputs(other=running("h-x")),
        1100.0,
        RolloutPhase.PROGRESSING,
        [],
        B,
    ),
    (
        "analysis running, healthy",
        ANALYZING,
        inputs(
            other=running(NEW),
            signals={Signal.REQUESTS_TOTAL: 20, Signal.ERRORS_TOTAL: 1, Signal.TTFT_P99: 0.5},
        ),
        1150.0,
        RolloutPhase.ANALYZING,
        [],
        B,
    ),
    (
        "errors fail the analysis at once",
        ANALYZING,
        inputs(other=running(NEW), signals={Signal.REQUESTS_TOTAL: 20, Signal.ERRORS_TOTAL: 4}),
        1130.0,
        RolloutPhase.ROLLED_BACK,
        ["AnalysisFailed"],
        B,
    ),
    (
        "slow TTFT fails the analysis",
        ANALYZING,
        inputs(
            other=running(NEW),
            signals={Signal.REQUESTS_TOTAL: 20, Signal.ERRORS_TOTAL: 1, Signal.TTFT_P99: 3.0},
        ),
        1130.0,
        RolloutPhase.ROLLED_BACK,
        ["AnalysisFailed"],
        B,
    ),
    (
        "analysis passes -> promote",
        ANALYZING,
        inputs(
            other=running(NEW),
            signals={Signal.REQUESTS_TOTAL: 20, Signal.ERRORS_TOTAL: 1, Signal.TTFT_P99: 0.5},
        ),
        1220.0,
        RolloutPhase.SCALING_DOWN,
        ["RolloutPromoted"],
        G,
    ),
    (
        "too little traffic is inconclusive",
        ANALYZING,
        inputs(other=running(NEW), signals={Signal.REQUESTS_TOTAL: 12, Signal.ERRORS_TOTAL: 1}),
        1220.0,
        RolloutPhase.ROLLED_BACK,
        ["AnalysisInconclusive"],
        B,
    ),
    (
        "abort",
        ANALYZING,
        inputs(other=running(NEW), abort_requested=True),
        1130.0,
        RolloutPhase.ABORTED,
        ["RolloutAborted"],
        B,
    ),
    (
        "superseded",
        ANALYZING,
        inputs(desired=NEWER, other=running(NEW)),
        1130.0,
        RolloutPhase.PROGRESSING,
        ["RolloutSuperseded"],
        B,
    ),
    (
        "reverted to the serving version",
        ANALYZING,
        inputs(desired=OLD, other=running(NEW)),
        1130.0,
        RolloutPhase.IDLE,
        ["RolloutCancelled"],
        B,
    ),
]


@pytest.mark.parametrize(
    ("state", "inp", "now", "phase", "reasons", "stable"),
    [s[1:] for s in STEPS],
    ids=[s[0] for s in STEPS],
)
def test_rollout_steps(
    state: RolloutState,
    inp: RolloutInputs,
    now: float,
    phase: RolloutPhase,
    reasons: list[str],
    stable: Colour,
) -> None:
    out = step(state, inp, now)
    assert out.state.phase is phase, out.state.message
    assert [e.reason for e in out.events] == reasons
    assert out.state.active_colour is stable and out.active.colour is stable


def test_rollback_scales_preview_to_zero_and_remembers_the_bad_version() -> None:
    out = step(PROGRESSING, inputs(other=running(NEW, ready=0)), 1600.0)
    assert out.other is not None and (out.other.colour, out.other.replicas) == (G, 0)
    assert out.state.failed_hash == NEW and out.result == "rolled_back"
    assert (
        "not Ready within 600s" in out.state.message and "blue keeps serving" in out.state.message
    )
    # the same bad version is not retried...
    again = step(out.state, inputs(other=running(NEW, ready=0, replicas=0)), 1700.0)
    assert again.state.phase is RolloutPhase.ROLLED_BACK and again.active.render_spec is False
    # ...but a newer one is
    newer = step(out.state, inputs(desired=NEWER, other=running(NEW, 0, 0)), 1800.0)
    assert newer.state.phase is RolloutPhase.PROGRESSING and newer.state.preview_hash == NEWER


def test_entering_analysis_records_baselines_and_asks_for_warmup() -> None:
    out = step(
        PROGRESSING,
        inputs(other=running(NEW), signals={Signal.REQUESTS_TOTAL: 7, Signal.ERRORS_TOTAL: 2}),
        1100.0,
    )
    assert (out.state.requests_baseline, out.state.errors_baseline) == (7, 2)
    assert out.warmup_preview == 4


def test_promotion_keeps_the_old_colour_then_scales_it_down() -> None:
    good = {Signal.REQUESTS_TOTAL: 20, Signal.ERRORS_TOTAL: 1, Signal.TTFT_P99: 0.5}
    out = step(ANALYZING, inputs(other=running(NEW), signals=good), 1220.0)
    assert out.result == "promoted"
    assert (out.active.colour, out.active.render_spec) == (G, True)
    assert out.other is not None and (
        out.other.colour,
        out.other.replicas,
        out.other.render_spec,
    ) == (B, 2, False)
    s = out.state
    assert s.active_hash == NEW and s.preview_colour is None
    # now green is active; inputs are seen from the new active colour
    during = step(s, inputs(active=running(NEW), other=running(OLD)), 1220.0 + 100)
    assert during.state.phase is RolloutPhase.SCALING_DOWN and during.other is not None
    assert during.other.replicas == 2 and during.recheck_after == pytest.approx(200)
    done = step(s, inputs(active=running(NEW), other=running(OLD)), 1220.0 + 300)
    assert done.state.phase is RolloutPhase.COMPLETED
    assert done.other is not None and (done.other.colour, done.other.replicas) == (B, 0)
    assert [e.reason for e in done.events] == ["OldColourScaledDown"]


def test_old_colour_waits_for_the_router_to_discover_the_new_one() -> None:
    """spec.router: a router pod still discovering the old colour would answer 503 once the
    old colour is gone, so the scale-down waits past its delay until the router has rolled."""
    s = replace(
        IDLE, phase=RolloutPhase.SCALING_DOWN, active_colour=G, active_hash=NEW, phase_since=500.0
    )
    both = {"active": running(NEW), "other": running(OLD)}
    kept = step(s, inputs(**both, router_settled=False), 1000.0)
    assert kept.state.phase is RolloutPhase.SCALING_DOWN and not kept.events
    assert kept.other is not None and kept.other.replicas == 2
    assert "waiting for the router" in kept.state.message and kept.recheck_after == 2.0
    done = step(kept.state, inputs(**both, router_settled=True), 1002.0)
    assert done.state.phase is RolloutPhase.COMPLETED
    assert done.other is not None and done.other.replicas == 0


def test_new_version_during_scale_down_rolls_onto_the_old_colour() -> None:
    s = replace(
        IDLE, phase=RolloutPhase.SCALING_DOWN, active_colour=G, active_hash=NEW, phase_since=0.0
    )
    out = step(s, inputs(desired=NEWER, active=running(NEW), other=running(OLD)), 10.0)
    assert out.state.phase is RolloutPhase.PROGRESSING
    assert out.state.preview_colour is B and out.state.preview_hash == NEWER
    assert out.other is not None and out.other.render_spec


def test_manual_promotion() -> None:
    manual = SETTINGS.model_copy(update={"auto_promote": False})
    good = {Signal.REQUESTS_TOTAL: 20, Signal.ERRORS_TOTAL: 1}
    paused = step(ANALYZING, inputs(other=running(NEW), signals=good, settings=manual), 1220.0)
    assert (
        paused.state.phase is RolloutPhase.PAUSED
        and "serving.deepseek.dev/promote" in paused.state.message
    )
    waiting = step(paused.state, inputs(other=running(NEW), settings=manual), 5000.0)
    assert waiting.state.phase is RolloutPhase.PAUSED  # no deadline while paused
    promoted = step(
        paused.state, inputs(other=running(NEW), settings=manual, promote_requested=True), 5001.0
    )
    assert promoted.state.phase is RolloutPhase.SCALING_DOWN and promoted.consume_promote
    assert promoted.state.active_colour is G


def test_promote_annotation_without_a_rollout_is_consumed_with_a_warning() -> None:
    out = step(IDLE, inputs(desired=OLD, promote_requested=True), 1.0)
    assert out.consume_promote and [e.reason for e in out.events] == ["PromoteIgnored"]
    assert out.state == IDLE


def test_abort_consumes_the_annotation_and_returns_to_stable() -> None:
    out = step(PROGRESSING, inputs(other=running(NEW, ready=1), abort_requested=True), 1010.0)
    assert out.consume_abort and out.state.phase is RolloutPhase.ABORTED
    assert out.other is not None and out.other.replicas == 0 and out.active.colour is B


def test_deleted_active_during_rollout_is_recreated_from_spec() -> None:
    out = step(PROGRESSING, inputs(active=NONE, other=running(NEW)), 1010.0)
    assert out.state.phase is RolloutPhase.IDLE and out.active.render_spec
    assert out.state.active_hash == NEW and [e.reason for e in out.events] == ["ActiveRecreated"]


def test_analysis_counts_only_since_the_baseline() -> None:
    results, verdict = analyse(
        Signals({Signal.REQUESTS_TOTAL: 14, Signal.ERRORS_TOTAL: 1}), ANALYZING, SETTINGS, 2.0
    )
    assert verdict is True
    assert {r.metric: r.value for r in results} == {
        "errorRate": 0.0,
        "ttftP99Seconds": None,
        "requests": 4.0,
    }
    results, verdict = analyse(
        Signals({Signal.REQUESTS_TOTAL: 30, Signal.ERRORS_TOTAL: 3}), ANALYZING, SETTINGS, 2.0
    )
    assert verdict is False and results[0].value == pytest.approx(0.1)
    _, verdict = analyse(None, ANALYZING, SETTINGS, 2.0)
    assert verdict is None


@pytest.mark.parametrize(
    ("requests", "errors", "want"),
    [
        (14.0, 1.0, (10.0, 1.0)),  # counters grew: baselines kept
        (10.0, 1.0, (10.0, 1.0)),
        (3.0, 0.0, (3.0, 0.0)),  # pods left the sum (superseded preview's pods gone): rebase
        (12.0, 0.0, (12.0, 0.0)),  # only the error sum fell: rebase both
        (None, None, (10.0, 1.0)),  # no data: nothing to compare
    ],
)
def test_counters_falling_below_the_baselines_rebase_the_analysis(
    requests: float | None, errors: float | None, want: tuple[float, float]
) -> None:
    vals = {
        k: v
        for k, v in ((Signal.REQUESTS_TOTAL, requests), (Signal.ERRORS_TOTAL, errors))
        if v is not None
    }
    st = rebase_on_reset(ANALYZING, Signals(vals))
    assert (st.requests_baseline, st.errors_baseline) == want


def test_superseded_preview_pods_leaving_the_sum_do_not_make_analysis_inconclusive() -> None:
    """Analysis began while the superseded pods (50 requests) were still scraped; they went,
    the new pods served 12 since: the analysis judges those, not "no data"."""
    began = replace(ANALYZING, requests_baseline=50.0, errors_baseline=0.0)
    dropped = step(
        began,
        inputs(other=running(NEW), signals={Signal.REQUESTS_TOTAL: 2, Signal.ERRORS_TOTAL: 0}),
        1110.0,
    )
    assert dropped.state.phase is RolloutPhase.ANALYZING
    assert dropped.state.requests_baseline == 2.0
    later = step(
        dropped.state,
        inputs(
            other=running(NEW),
            signals={Signal.REQUESTS_TOTAL: 14, Signal.ERRORS_TOTAL: 0, Signal.TTFT_P99: 0.1},
        ),
        1220.0,
    )
    assert later.result == "promoted"
    assert "requests=12 " in later.events[0].message, later.events
