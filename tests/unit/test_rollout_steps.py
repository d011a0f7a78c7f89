"""Each named step of rollout.step on its own, as a table: the step's own case decides, any
other case is "not mine" (None). test_rollout.py drives the whole checklist."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from deepseek_operator import rollout as R
from deepseek_operator.api.spec import RolloutSpec
from deepseek_operator.api.status import Colour
from deepseek_operator.rollout import (
    ColourObservation,
    ColourTarget,
    RolloutContext,
    RolloutInputs,
    RolloutPhase,
    RolloutState,
    RolloutStep,
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
MANUAL = SETTINGS.model_copy(update={"auto_promote": False})
HEALTHY = {Signal.REQUESTS_TOTAL: 20.0, Signal.ERRORS_TOTAL: 1.0, Signal.TTFT_P99: 0.5}
FAILING = {Signal.REQUESTS_TOTAL: 20.0, Signal.ERRORS_TOTAL: 4.0}
QUIET = {Signal.REQUESTS_TOTAL: 12.0, Signal.ERRORS_TOTAL: 1.0}  # 2 requests since baseline


def running(hash_: str, ready: int = 2, replicas: int = 2) -> ColourObservation:
    return ColourObservation(
        exists=True, replicas=replicas, ready=ready, updated=replicas, template_hash=hash_
    )


NONE = ColourObservation()


def inp(
    desired: str = NEW,
    active: ColourObservation | None = None,
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
        active=running(OLD) if active is None else active,
        other=other,
        preview_signals=Signals(signals) if signals is not None else None,
        **kw,
    )


IDLE = RolloutState(RolloutPhase.IDLE, B, OLD)
COMPLETED = replace(IDLE, phase=RolloutPhase.COMPLETED, message="blue serves")
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
PAUSED = replace(ANALYZING, phase=RolloutPhase.PAUSED, phase_since=1220.0)
ROLLED_BACK = replace(IDLE, phase=RolloutPhase.ROLLED_BACK, failed_hash=NEW, message="rb")
ABORTED = replace(ROLLED_BACK, phase=RolloutPhase.ABORTED)
# green promoted at t=1000; blue (the old colour) kept for the scale-down delay
SCALING_DOWN = RolloutState(RolloutPhase.SCALING_DOWN, G, NEW, phase_since=1000.0)
SD_ACTIVE, SD_OTHER = running(NEW), running(OLD)  # seen from green, the active colour


def target(t: ColourTarget | None) -> tuple[Colour, int, bool] | None:
    return None if t is None else (t.colour, t.replicas, t.render_spec)


def check(out: RolloutStep | None, want: dict[str, Any] | None) -> None:
    """`want` names what to check: phase, events (reasons), result, active/other targets,
    recheck, consume_promote/consume_abort, warmup, message (a substring), or state fields."""
    if want is None:
        assert out is None
        return
    assert out is not None
    got: dict[str, Any] = {
        "phase": out.state.phase,
        "events": [e.reason for e in out.events],
        "result": out.result,
        "active": target(out.active),
        "other": target(out.other),
        "recheck": out.recheck_after,
        "consume_promote": out.consume_promote,
        "consume_abort": out.consume_abort,
        "warmup": out.warmup_preview,
    }
    for k, v in want.items():
        if k == "message":
            assert v in out.state.message, out.state.message
        elif k in got:
            assert got[k] == v, (k, got[k])
        else:
            assert getattr(out.state, k) == v, k


Case = tuple[str, RolloutState, RolloutInputs, float, dict[str, Any] | None]


def table(cases: list[Case]) -> Any:
    return pytest.mark.parametrize(
        ("state", "inputs", "now", "want"), [c[1:] for c in cases], ids=[c[0] for c in cases]
    )


def run(
    fn: Callable[[RolloutContext], RolloutStep | None],
    state: RolloutState,
    inputs: RolloutInputs,
    now: float,
    want: dict[str, Any] | None,
) -> None:
    check(fn(RolloutContext.observe(state, inputs, now)), want)


# The context and its derived facts.

OBSERVE: list[tuple[str, RolloutState, RolloutInputs, float, dict[str, Any]]] = [
    (
        "idle",
        IDLE,
        inp(promote_requested=True),
        5.0,
        {"in_flight": False, "between_rollouts": True, "in_phase_for": 0.0, "in_flight_for": 0.0},
    ),
    (
        "progressing, preview Ready",
        PROGRESSING,
        inp(other=running(NEW)),
        1100.0,
        {"in_flight": True, "preview_ready": True, "in_phase_for": 100.0, "in_flight_for": 100.0},
    ),
    (
        "preview runs another template",
        PROGRESSING,
        inp(other=running("h-x")),
        1100.0,
        {"preview_ready": False},
    ),
    (
        "preview short of Ready replicas",
        PROGRESSING,
        inp(other=running(NEW, ready=1)),
        1100.0,
        {"preview_ready": False},
    ),
    (
        "preview not yet seen by its controller",
        PROGRESSING,
        inp(other=replace(running(NEW), up_to_date=False)),
        1100.0,
        {"preview_ready": False},
    ),
    (
        "scaling down is neither in flight nor between rollouts",
        SCALING_DOWN,
        inp(desired=NEW, active=SD_ACTIVE, other=SD_OTHER),
        1100.0,
        {"in_flight": False, "between_rollouts": False, "in_phase_for": 100.0},
    ),
    (
        "phase_since 0 counts as unset",
        replace(SCALING_DOWN, phase_since=0.0),
        inp(desired=NEW, active=SD_ACTIVE, other=SD_OTHER),
        50.0,
        {"in_phase_for": 0.0},
    ),
]


@pytest.mark.parametrize(
    ("state", "inputs", "now", "want"), [c[1:] for c in OBSERVE], ids=[c[0] for c in OBSERVE]
)
def test_observe_derives_facts_once(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any]
) -> None:
    ctx = RolloutContext.observe(state, inputs, now)
    assert {k: getattr(ctx, k) for k in want} == want


def test_only_analyzing_is_judged_and_after_rebasing() -> None:
    fell = {Signal.REQUESTS_TOTAL: 2.0, Signal.ERRORS_TOTAL: 0.0}  # below the baselines
    ctx = RolloutContext.observe(ANALYZING, inp(other=running(NEW), signals=fell), 1110.0)
    assert ctx.judgement is not None and ctx.judgement.verdict is None
    assert ctx.judgement.state.requests_baseline == 2.0
    assert ctx.judgement.state.analysis == ctx.judgement.results
    assert ctx.state is ANALYZING  # the remembered state is left as it was
    for s in (PROGRESSING, PAUSED, IDLE):
        assert RolloutContext.observe(s, inp(signals=HEALTHY), 1110.0).judgement is None


STRAY = [
    # (case, phase, promote, abort, event reasons, consume promote, consume abort)
    ("nothing set", RolloutPhase.IDLE, False, False, [], False, False),
    ("promote when idle", RolloutPhase.IDLE, True, False, ["PromoteIgnored"], True, False),
    ("abort when completed", RolloutPhase.COMPLETED, False, True, ["AbortIgnored"], False, True),
    (
        "both after a rollback",
        RolloutPhase.ROLLED_BACK,
        True,
        True,
        ["PromoteIgnored", "AbortIgnored"],
        True,
        True,
    ),
    ("promote while scaling down: silent", RolloutPhase.SCALING_DOWN, True, False, [], True, False),
    (
        "abort while scaling down",
        RolloutPhase.SCALING_DOWN,
        False,
        True,
        ["AbortIgnored"],
        False,
        True,
    ),
    ("in flight: the rollout acts on them", RolloutPhase.PAUSED, True, True, [], False, False),
]


@pytest.mark.parametrize(
    ("phase", "promote", "abort", "reasons", "c_promote", "c_abort"),
    [c[1:] for c in STRAY],
    ids=[c[0] for c in STRAY],
)
def test_stray_annotations(
    phase: RolloutPhase,
    promote: bool,
    abort: bool,
    reasons: list[str],
    c_promote: bool,
    c_abort: bool,
) -> None:
    got = R._stray_annotations(phase, inp(promote_requested=promote, abort_requested=abort))
    assert [e.reason for e in got.events] == reasons
    assert (got.consume_promote, got.consume_abort) == (c_promote, c_abort)


# The steps, in checklist order.


def test_checklist_order_is_the_precedence() -> None:
    assert [f.__name__ for f in R.CHECKLIST] == [
        "_recreate_missing_active",
        "_roll_back_in_steps",
        "_roll_newer_version_onto_old_colour",
        "_scale_down_old_colour_after_delay",
        "_keep_serving_unchanged_template",
        "_keep_failed_version_out",
        "_start_preview_on_template_change",
        "_abort_on_request",
        "_cancel_when_spec_reverted",
        "_restart_preview_when_superseded",
        "_go_stepped_when_short_of_gpus",
        "_analyse_first_pods_once_ready",
        "_move_the_rest_in_steps",
        "_analyse_preview_once_ready",
        "_wait_for_preview_ready",
        "_roll_back_on_failed_check",
        "_wait_out_analysis_window",
        "_roll_back_when_inconclusive",
        "_wait_for_preview_replicas_after_analysis",
        "_promote_or_pause_after_analysis",
        "_promote_on_request_when_paused",
    ]


RECREATE: list[Case] = [
    ("active exists", PROGRESSING, inp(other=running(NEW)), 1010.0, None),
    (
        "first reconcile",
        RolloutState(RolloutPhase.IDLE, B, NEW),
        inp(active=NONE),
        0.0,
        {"phase": RolloutPhase.IDLE, "events": [], "active": (B, 2, True), "other": None},
    ),
    (
        "deleted during a rollout",
        PROGRESSING,
        inp(active=NONE, other=running(NEW), abort_requested=True),
        1010.0,
        {
            "phase": RolloutPhase.IDLE,
            "events": ["ActiveRecreated"],
            "active": (B, 2, True),
            "other": (G, 0, False),
            "active_hash": NEW,
            "preview_colour": None,
            "message": "",
            "consume_abort": False,
        },
    ),
    (
        "deleted after a rollback: phase and message kept",
        ROLLED_BACK,
        inp(active=NONE, promote_requested=True),
        1010.0,
        {
            "phase": RolloutPhase.ROLLED_BACK,
            "events": [],
            "message": "rb",
            "active_hash": NEW,
            "consume_promote": False,
        },
    ),
]


@table(RECREATE)
def test_recreate_missing_active(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._recreate_missing_active, state, inputs, now, want)


ROLL_NEWER: list[Case] = [
    ("not scaling down", COMPLETED, inp(), 1100.0, None),
    (
        "same version",
        SCALING_DOWN,
        inp(desired=NEW, active=SD_ACTIVE, other=SD_OTHER),
        1100.0,
        None,
    ),
    (
        "newer version: onto the old colour, annotations left for the new rollout",
        SCALING_DOWN,
        inp(
            desired=NEWER,
            active=SD_ACTIVE,
            other=SD_OTHER,
            abort_requested=True,
            promote_requested=True,
        ),
        1100.0,
        {
            "phase": RolloutPhase.PROGRESSING,
            "events": ["RolloutStarted"],
            "preview_colour": B,
            "preview_hash": NEWER,
            "other": (B, 2, True),
            "consume_abort": False,
            "consume_promote": False,
        },
    ),
]


@table(ROLL_NEWER)
def test_roll_newer_version_onto_old_colour(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._roll_newer_version_onto_old_colour, state, inputs, now, want)


SD = {"desired": NEW, "active": SD_ACTIVE, "other": SD_OTHER}
SCALE_DOWN: list[Case] = [
    ("not scaling down", COMPLETED, inp(desired=OLD), 1100.0, None),
    (
        "within the delay: old colour kept",
        SCALING_DOWN,
        inp(**SD),
        1100.0,
        {
            "phase": RolloutPhase.SCALING_DOWN,
            "events": [],
            "active": (G, 2, True),
            "other": (B, 2, False),
            "recheck": 200.0,
        },
    ),
    (
        "delay over: old colour to zero",
        SCALING_DOWN,
        inp(**SD),
        1300.0,
        {
            "phase": RolloutPhase.COMPLETED,
            "events": ["OldColourScaledDown"],
            "other": (B, 0, False),
            "message": "green serves; blue scaled to zero",
            "recheck": None,
        },
    ),
    (
        "abort is too late",
        SCALING_DOWN,
        inp(**SD, abort_requested=True),
        1100.0,
        {"events": ["AbortIgnored"], "consume_abort": True, "recheck": 200.0},
    ),
    (
        "promote is consumed silently",
        SCALING_DOWN,
        inp(**SD, promote_requested=True),
        1300.0,
        {"events": ["OldColourScaledDown"], "consume_promote": True},
    ),
]


@table(SCALE_DOWN)
def test_scale_down_old_colour_after_delay(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._scale_down_old_colour_after_delay, state, inputs, now, want)


UNCHANGED: list[Case] = [
    (
        "same template",
        IDLE,
        inp(desired=OLD),
        5.0,
        {"phase": RolloutPhase.IDLE, "events": [], "active": (B, 2, True), "other": None},
    ),
    (
        "same template, old colour still there",
        COMPLETED,
        inp(desired=OLD, other=running(NEW, 0, 0)),
        5.0,
        {"phase": RolloutPhase.COMPLETED, "other": (G, 0, False)},
    ),
    (
        "stray promote",
        COMPLETED,
        inp(desired=OLD, promote_requested=True),
        5.0,
        {"events": ["PromoteIgnored"], "consume_promote": True},
    ),
    ("new template", IDLE, inp(), 5.0, None),
    ("in flight", ANALYZING, inp(desired=OLD), 1130.0, None),
    ("scaling down", SCALING_DOWN, inp(**SD), 1100.0, None),
]


@table(UNCHANGED)
def test_keep_serving_unchanged_template(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._keep_serving_unchanged_template, state, inputs, now, want)


FAILED: list[Case] = [
    (
        "rolled back version not retried",
        ROLLED_BACK,
        inp(other=running(NEW, 0, 0)),
        1700.0,
        {"phase": RolloutPhase.ROLLED_BACK, "active": (B, 2, False), "other": (G, 0, False)},
    ),
    (
        "aborted version not retried",
        ABORTED,
        inp(abort_requested=True),
        1700.0,
        {"phase": RolloutPhase.ABORTED, "events": ["AbortIgnored"], "consume_abort": True},
    ),
    ("a newer version is", ROLLED_BACK, inp(desired=NEWER), 1700.0, None),
    ("completed is no failure", replace(COMPLETED, failed_hash=NEW), inp(), 1700.0, None),
]


@table(FAILED)
def test_keep_failed_version_out(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._keep_failed_version_out, state, inputs, now, want)


START: list[Case] = [
    (
        "new template",
        IDLE,
        inp(),
        1000.0,
        {
            "phase": RolloutPhase.PROGRESSING,
            "events": ["RolloutStarted"],
            "active": (B, 2, False),
            "other": (G, 2, True),
            "recheck": 600.0,
            "preview_colour": G,
            "preview_hash": NEW,
            "started_at": 1000.0,
            "phase_since": 1000.0,
        },
    ),
    (
        "after a rollback: the failure is forgotten",
        ROLLED_BACK,
        inp(desired=NEWER),
        1000.0,
        {"phase": RolloutPhase.PROGRESSING, "failed_hash": None, "preview_hash": NEWER},
    ),
    (
        "stray abort first",
        IDLE,
        inp(abort_requested=True),
        1000.0,
        {"events": ["AbortIgnored", "RolloutStarted"], "consume_abort": True},
    ),
    ("in flight", PROGRESSING, inp(desired=NEWER), 1010.0, None),
    ("scaling down", SCALING_DOWN, inp(**SD), 1100.0, None),
]


@table(START)
def test_start_preview_on_template_change(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._start_preview_on_template_change, state, inputs, now, want)


ABORT: list[Case] = [
    (
        "abort while progressing",
        PROGRESSING,
        inp(other=running(NEW, ready=1), abort_requested=True),
        1010.0,
        {
            "phase": RolloutPhase.ABORTED,
            "events": ["RolloutAborted"],
            "result": "aborted",
            "consume_abort": True,
            "other": (G, 0, False),
            "failed_hash": NEW,
            "message": "aborted by request; blue keeps serving, green scaled to zero",
        },
    ),
    (
        "abort while paused",
        PAUSED,
        inp(other=running(NEW), abort_requested=True, promote_requested=True),
        2000.0,
        {"phase": RolloutPhase.ABORTED, "consume_promote": False},
    ),
    ("no abort", ANALYZING, inp(other=running(NEW)), 1130.0, None),
    ("no rollout", IDLE, inp(abort_requested=True), 1130.0, None),
]


@table(ABORT)
def test_abort_on_request(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._abort_on_request, state, inputs, now, want)


CANCEL: list[Case] = [
    (
        "spec back to the serving version",
        ANALYZING,
        inp(desired=OLD, other=running(NEW)),
        1130.0,
        {
            "phase": RolloutPhase.IDLE,
            "events": ["RolloutCancelled"],
            "result": "superseded",
            "active": (B, 2, True),
            "other": (G, 0, False),
            "preview_colour": None,
            "preview_hash": None,
        },
    ),
    ("still the preview's version", ANALYZING, inp(other=running(NEW)), 1130.0, None),
    ("no rollout", IDLE, inp(desired=OLD), 1130.0, None),
]


@table(CANCEL)
def test_cancel_when_spec_reverted(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._cancel_when_spec_reverted, state, inputs, now, want)


SUPERSEDE: list[Case] = [
    (
        "another template during analysis",
        ANALYZING,
        inp(desired=NEWER, other=running(NEW)),
        1130.0,
        {
            "phase": RolloutPhase.PROGRESSING,
            "events": ["RolloutSuperseded"],
            "result": "superseded",
            "other": (G, 2, True),
            "preview_hash": NEWER,
            "started_at": 1130.0,
            "requests_baseline": None,
            "analysis": (),
        },
    ),
    ("the preview's template", ANALYZING, inp(other=running(NEW)), 1130.0, None),
    ("no rollout", IDLE, inp(desired=NEWER), 1130.0, None),
]


@table(SUPERSEDE)
def test_restart_preview_when_superseded(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._restart_preview_when_superseded, state, inputs, now, want)


ANALYSE: list[Case] = [
    (
        "preview Ready: baselines, warm-up, look again at once",
        PROGRESSING,
        inp(other=running(NEW), signals={Signal.REQUESTS_TOTAL: 7, Signal.ERRORS_TOTAL: 2}),
        1100.0,
        {
            "phase": RolloutPhase.ANALYZING,
            "events": ["PreviewReady"],
            "warmup": 4,
            "recheck": 0.0,
            "requests_baseline": 7.0,
            "errors_baseline": 2.0,
            "phase_since": 1100.0,
            "message": "green Ready; analysing it for 120s",
        },
    ),
    (
        "no signals yet: baselines 0",
        PROGRESSING,
        inp(other=running(NEW)),
        1100.0,
        {"requests_baseline": 0.0, "errors_baseline": 0.0},
    ),
    ("not Ready", PROGRESSING, inp(other=running(NEW, ready=1)), 1100.0, None),
    ("already analysing", ANALYZING, inp(other=running(NEW)), 1130.0, None),
]


@table(ANALYSE)
def test_analyse_preview_once_ready(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._analyse_preview_once_ready, state, inputs, now, want)


WAIT_READY: list[Case] = [
    (
        "within the timeout",
        PROGRESSING,
        inp(other=running(NEW, ready=1)),
        1200.0,
        {"phase": RolloutPhase.PROGRESSING, "events": [], "recheck": 400.0},
    ),
    (
        "timed out",
        PROGRESSING,
        inp(other=running(NEW, ready=0)),
        1600.0,
        {
            "phase": RolloutPhase.ROLLED_BACK,
            "events": ["PreviewNotReady"],
            "result": "rolled_back",
            "other": (B.other(), 0, False),
            "failed_hash": NEW,
            "message": "green was not Ready within 600s",
        },
    ),
    ("analysing", ANALYZING, inp(other=running(NEW, ready=0)), 1600.0, None),
]


@table(WAIT_READY)
def test_wait_for_preview_ready(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._wait_for_preview_ready, state, inputs, now, want)


FAILED_CHECK: list[Case] = [
    (
        "error rate over the limit",
        ANALYZING,
        inp(other=running(NEW), signals=FAILING),
        1130.0,
        {
            "phase": RolloutPhase.ROLLED_BACK,
            "events": ["AnalysisFailed"],
            "message": "analysis failed: errorRate=0.3",
        },
    ),
    (
        "slow TTFT",
        ANALYZING,
        inp(other=running(NEW), signals={**HEALTHY, Signal.TTFT_P99: 3.0}),
        1130.0,
        {"phase": RolloutPhase.ROLLED_BACK, "message": "ttftP99Seconds=3 (limit 2)"},
    ),
    ("healthy", ANALYZING, inp(other=running(NEW), signals=HEALTHY), 1130.0, None),
    ("no data", ANALYZING, inp(other=running(NEW)), 1130.0, None),
    ("not analysing", PROGRESSING, inp(other=running(NEW), signals=FAILING), 1130.0, None),
]


@table(FAILED_CHECK)
def test_roll_back_on_failed_check(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._roll_back_on_failed_check, state, inputs, now, want)


WINDOW: list[Case] = [
    (
        "early in the window: look again in 15 s",
        ANALYZING,
        inp(other=running(NEW), signals=HEALTHY),
        1150.0,
        {"phase": RolloutPhase.ANALYZING, "events": [], "recheck": 15.0},
    ),
    (
        "near its end: look again when it ends",
        ANALYZING,
        inp(other=running(NEW), signals=QUIET),
        1210.0,
        {"recheck": 10.0, "requests_baseline": 10.0},
    ),
    ("window over", ANALYZING, inp(other=running(NEW), signals=HEALTHY), 1220.0, None),
    ("not analysing", PROGRESSING, inp(other=running(NEW, ready=1)), 1150.0, None),
]


@table(WINDOW)
def test_wait_out_analysis_window(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._wait_out_analysis_window, state, inputs, now, want)


def test_waiting_out_the_window_records_the_analysis_so_far() -> None:
    ctx = RolloutContext.observe(ANALYZING, inp(other=running(NEW), signals=HEALTHY), 1150.0)
    out = R._wait_out_analysis_window(ctx)
    assert out is not None and [r.metric for r in out.state.analysis] == [
        "errorRate",
        "ttftP99Seconds",
        "requests",
    ]


INCONCLUSIVE: list[Case] = [
    (
        "too few requests by the end",
        ANALYZING,
        inp(other=running(NEW), signals=QUIET),
        1220.0,
        {
            "phase": RolloutPhase.ROLLED_BACK,
            "events": ["AnalysisInconclusive"],
            "message": "analysis inconclusive after 120s: ",
        },
    ),
    ("no data by the end", ANALYZING, inp(other=running(NEW)), 1220.0, {"result": "rolled_back"}),
    ("window still open", ANALYZING, inp(other=running(NEW), signals=QUIET), 1150.0, None),
    ("enough requests", ANALYZING, inp(other=running(NEW), signals=HEALTHY), 1220.0, None),
]


@table(INCONCLUSIVE)
def test_roll_back_when_inconclusive(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._roll_back_when_inconclusive, state, inputs, now, want)


REPLICAS: list[Case] = [
    (
        "passed, preview short of replicas",
        ANALYZING,
        inp(other=running(NEW, ready=1), signals=HEALTHY),
        1220.0,
        {
            "phase": RolloutPhase.ANALYZING,
            "events": [],
            "recheck": None,
            "message": "analysis passed; waiting for green to be Ready",
        },
    ),
    (
        "passed, preview short of replicas past the timeout",
        ANALYZING,
        inp(other=running(NEW, ready=1), signals=HEALTHY),
        1600.0,
        {"phase": RolloutPhase.ROLLED_BACK, "events": ["PreviewNotReady"]},
    ),
    ("preview Ready", ANALYZING, inp(other=running(NEW), signals=HEALTHY), 1220.0, None),
    ("not analysing", PROGRESSING, inp(other=running(NEW, ready=1)), 1220.0, None),
]


@table(REPLICAS)
def test_wait_for_preview_replicas_after_analysis(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._wait_for_preview_replicas_after_analysis, state, inputs, now, want)


PROMOTE_OR_PAUSE: list[Case] = [
    (
        "autoPromote: switch traffic, keep the old colour",
        ANALYZING,
        inp(other=running(NEW), signals=HEALTHY),
        1220.0,
        {
            "phase": RolloutPhase.SCALING_DOWN,
            "events": ["RolloutPromoted"],
            "result": "promoted",
            "active": (G, 2, True),
            "other": (B, 2, False),
            "recheck": 300.0,
            "consume_promote": False,
            "active_colour": G,
            "active_hash": NEW,
            "phase_since": 1220.0,
        },
    ),
    (
        "manual: pause for the annotation",
        ANALYZING,
        inp(other=running(NEW), signals=HEALTHY, settings=MANUAL),
        1220.0,
        {
            "phase": RolloutPhase.PAUSED,
            "events": ["RolloutPaused"],
            "other": (G, 2, True),
            "phase_since": 1220.0,
            "message": "waiting for the serving.deepseek.dev/promote annotation",
        },
    ),
    (
        "manual, annotation already there",
        ANALYZING,
        inp(other=running(NEW), signals=HEALTHY, settings=MANUAL, promote_requested=True),
        1220.0,
        {"phase": RolloutPhase.SCALING_DOWN, "consume_promote": True},
    ),
    ("not analysing", PAUSED, inp(other=running(NEW), signals=HEALTHY), 1220.0, None),
]


@table(PROMOTE_OR_PAUSE)
def test_promote_or_pause_after_analysis(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._promote_or_pause_after_analysis, state, inputs, now, want)


PAUSED_CASES: list[Case] = [
    (
        "no annotation: wait, no deadline",
        PAUSED,
        inp(other=running(NEW), settings=MANUAL),
        9000.0,
        {"phase": RolloutPhase.PAUSED, "events": [], "recheck": None, "other": (G, 2, True)},
    ),
    (
        "annotation, preview Ready: promote",
        PAUSED,
        inp(other=running(NEW), settings=MANUAL, promote_requested=True),
        9000.0,
        {"phase": RolloutPhase.SCALING_DOWN, "consume_promote": True, "result": "promoted"},
    ),
    (
        "annotation, preview short of replicas: wait, annotation kept",
        PAUSED,
        inp(other=running(NEW, ready=1), settings=MANUAL, promote_requested=True),
        9000.0,
        {"phase": RolloutPhase.PAUSED, "consume_promote": False},
    ),
    ("not paused", ANALYZING, inp(other=running(NEW), promote_requested=True), 1220.0, None),
]


@table(PAUSED_CASES)
def test_promote_on_request_when_paused(
    state: RolloutState, inputs: RolloutInputs, now: float, want: dict[str, Any] | None
) -> None:
    run(R._promote_on_request_when_paused, state, inputs, now, want)
