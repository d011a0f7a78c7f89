"""Blue-green rollouts: (state, observations, now) -> next state, plan and events. Pure.

The state lives in the DeepSeekDeployment's status, the observations come from the cluster and
Prometheus, so the operator can stop at any point and the next call continues from what the
cluster says. Only a change of the engine pod template (its hash) starts a rollout.

    Idle/Completed --spec hash changes--> Progressing --preview Ready--> Analyzing
    Analyzing --checks pass--> (autoPromote) switch --> ScalingDown --delay--> Completed
    Analyzing --checks pass--> (manual) Paused --promote annotation--> switch
    Progressing --not Ready in time--> RolledBack      Analyzing --check fails--> RolledBack
    Progressing/Analyzing/Paused --abort annotation--> Aborted
    a new spec hash during Progressing/Analyzing/Paused supersedes the preview
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from .api.spec import RolloutSpec
from .api.status import AnalysisResult, Colour
from .signals import Signal, Signals


class RolloutPhase(StrEnum):
    IDLE = "Idle"
    PROGRESSING = "Progressing"  # preview colour starting
    ANALYZING = "Analyzing"  # preview Ready, its metrics under analysis
    PAUSED = "Paused"  # analysis passed, waiting for the promote annotation
    SCALING_DOWN = "ScalingDown"  # traffic switched, old colour kept for the scale-down delay
    COMPLETED = "Completed"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"


IN_FLIGHT = {RolloutPhase.PROGRESSING, RolloutPhase.ANALYZING, RolloutPhase.PAUSED}


@dataclass(frozen=True)
class RolloutState:
    """What the rollout remembers between reconciles (stored in status)."""

    phase: RolloutPhase
    active_colour: Colour
    active_hash: str
    preview_colour: Colour | None = None
    preview_hash: str | None = None
    started_at: float | None = None
    phase_since: float | None = None
    requests_baseline: float | None = None
    errors_baseline: float | None = None
    failed_hash: str | None = None  # a version that was rolled back or aborted
    message: str = ""
    analysis: tuple[AnalysisResult, ...] = ()


@dataclass(frozen=True)
class ColourObservation:
    """One colour's engine Deployment as observed."""

    exists: bool = False
    replicas: int = 0
    ready: int = 0
    updated: int = 0
    template_hash: str | None = None
    up_to_date: bool = True  # the Deployment controller has seen its latest generation


@dataclass(frozen=True)
class RolloutInputs:
    desired_hash: str  # template hash of the current spec
    desired_replicas: int
    settings: RolloutSpec
    default_max_ttft: float  # scaling.slo.ttftP99Seconds
    active: ColourObservation
    other: ColourObservation
    preview_signals: Signals | None = None
    promote_requested: bool = False
    abort_requested: bool = False


@dataclass(frozen=True)
class ColourTarget:
    """What to do with one colour's Deployment. render_spec=False: keep its pod template as
    it is in the cluster (it runs an older spec) and only set replicas."""

    colour: Colour
    replicas: int
    render_spec: bool


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class RolloutStep:
    state: RolloutState
    active: ColourTarget
    other: ColourTarget | None
    events: tuple[Event, ...] = ()
    warmup_preview: int = 0  # completions to send to each preview pod now
    consume_promote: bool = False
    consume_abort: bool = False
    recheck_after: float | None = None  # seconds until a time-based transition is due
    result: str | None = None  # promoted | rolled_back | aborted | superseded (for metrics)


def initial_state(desired_hash: str) -> RolloutState:
    return RolloutState(
        phase=RolloutPhase.IDLE, active_colour=Colour.BLUE, active_hash=desired_hash
    )


def _preview_ready(obs: ColourObservation, preview_hash: str | None, replicas: int) -> bool:
    return (
        obs.exists
        and obs.up_to_date
        and obs.template_hash == preview_hash
        and obs.updated >= replicas
        and obs.ready >= replicas
    )


def analyse(
    signals: Signals | None, state: RolloutState, settings: RolloutSpec, default_max_ttft: float
) -> tuple[tuple[AnalysisResult, ...], bool | None]:
    """Checks on the preview. Returns (results, verdict): False when a check with data fails,
    True when all pass with enough requests, None when inconclusive so far."""
    a = settings.analysis
    max_ttft = a.max_ttft_p99_seconds or default_max_ttft
    vals = signals.values if signals is not None else {}
    requests = vals.get(Signal.REQUESTS_TOTAL)
    errors = vals.get(Signal.ERRORS_TOTAL)
    served = None
    failed = None
    if requests is not None:
        served = max(0.0, requests - (state.requests_baseline or 0.0))
        failed = max(0.0, (errors or 0.0) - (state.errors_baseline or 0.0))
    error_rate = (failed / served) if served and failed is not None else None
    ttft = vals.get(Signal.TTFT_P99)

    results = (
        AnalysisResult(
            metric="errorRate",
            value=None if error_rate is None else round(error_rate, 6),
            limit=a.max_error_rate,
            passed=None if error_rate is None else error_rate <= a.max_error_rate,
        ),
        AnalysisResult(
            metric="ttftP99Seconds",
            value=None if ttft is None else round(ttft, 6),
            limit=max_ttft,
            passed=None if ttft is None else ttft <= max_ttft,
        ),
        AnalysisResult(
            metric="requests",
            value=served,
            limit=float(a.min_requests),
            passed=None if served is None else served >= a.min_requests,
        ),
    )
    if any(r.passed is False for r in results[:2]):
        return results, False
    enough = a.min_requests == 0 or (served is not None and served >= a.min_requests)
    return results, (True if enough else None)


def rebase_on_reset(state: RolloutState, signals: Signals | None) -> RolloutState:
    """The preview's request/error counters are sums over its pods. When they fall below the
    baselines, pods left the sum (e.g. a superseded preview's pods still scraped when analysis
    began, then gone): like a counter reset, the analysis counts from the new values, so that
    it never judges the new version on fewer requests than it served, nor on the old pods'."""
    vals = signals.values if signals is not None else {}
    requests = vals.get(Signal.REQUESTS_TOTAL)
    errors = vals.get(Signal.ERRORS_TOTAL)
    fell = (
        requests is not None
        and state.requests_baseline is not None
        and requests < state.requests_baseline
    ) or (
        errors is not None and state.errors_baseline is not None and errors < state.errors_baseline
    )
    if not fell:
        return state
    return replace(
        state,
        requests_baseline=requests if requests is not None else state.requests_baseline,
        errors_baseline=errors if errors is not None else 0.0,
    )


def _describe(results: tuple[AnalysisResult, ...]) -> str:
    parts = []
    for r in results:
        v = "no data" if r.value is None else f"{r.value:g}"
        parts.append(f"{r.metric}={v} (limit {r.limit:g})")
    return ", ".join(parts)


@dataclass(frozen=True)
class StrayAnnotations:
    """Promote/abort annotations that no rollout in flight can act on: consumed, with a warning
    where the user asked for something that did not happen."""

    events: tuple[Event, ...] = ()
    consume_promote: bool = False
    consume_abort: bool = False


@dataclass(frozen=True)
class Judgement:
    """The preview's analysis on this reconcile's signals."""

    state: RolloutState  # the state with rebased baselines and these results as its analysis
    results: tuple[AnalysisResult, ...]
    verdict: bool | None  # False: a check failed; True: all passed; None: inconclusive so far


@dataclass(frozen=True)
class RolloutContext:
    """What every step of one reconcile looks at: the remembered state, this reconcile's
    observations and time, and the facts derived from them once (see `observe`)."""

    state: RolloutState  # as remembered in status
    inp: RolloutInputs  # spec hash and replicas, both colours' Deployments, signals, annotations
    now: float  # seconds since the epoch; the only clock a step reads
    in_flight: bool  # Progressing, Analyzing or Paused: a preview exists and may be dropped
    between_rollouts: bool  # Idle, Completed, RolledBack or Aborted
    preview_ready: bool  # the other colour runs the preview template with every replica Ready
    in_phase_for: float  # seconds since phase_since (0 where it is unset)
    in_flight_for: float  # seconds since the rollout started (0 when none is in flight)
    stray: StrayAnnotations  # annotations to consume outside a rollout in flight
    judgement: Judgement | None  # Analyzing only

    @classmethod
    def observe(cls, state: RolloutState, inp: RolloutInputs, now: float) -> RolloutContext:
        """The context of one reconcile, its derived facts computed here and nowhere else."""
        in_flight = state.phase in IN_FLIGHT
        if in_flight and inp.active.exists:
            # status written by this module always has both while a rollout is in flight
            assert state.preview_colour is not None and state.started_at is not None
        return cls(
            state=state,
            inp=inp,
            now=now,
            in_flight=in_flight,
            between_rollouts=not in_flight and state.phase is not RolloutPhase.SCALING_DOWN,
            preview_ready=_preview_ready(inp.other, state.preview_hash, inp.desired_replicas),
            in_phase_for=now - (state.phase_since or now),
            in_flight_for=now - state.started_at
            if in_flight and state.started_at is not None
            else 0.0,
            stray=_stray_annotations(state.phase, inp),
            judgement=_judge(state, inp) if state.phase is RolloutPhase.ANALYZING else None,
        )

    @property
    def active(self) -> Colour:
        return self.state.active_colour

    @property
    def other(self) -> Colour:
        return self.state.active_colour.other()

    @property
    def replicas(self) -> int:
        return self.inp.desired_replicas


def _stray_annotations(phase: RolloutPhase, inp: RolloutInputs) -> StrayAnnotations:
    """Annotations set while no rollout is in flight: a promote is consumed (with a warning
    unless a promotion is still scaling down), an abort is consumed with a warning. A rollout
    in flight acts on them itself."""
    if phase in IN_FLIGHT:
        return StrayAnnotations()
    events: list[Event] = []
    if phase is RolloutPhase.SCALING_DOWN:
        if inp.abort_requested:
            events.append(
                Event(
                    "Warning", "AbortIgnored", "the rollout was already promoted; nothing to abort"
                )
            )
    else:
        if inp.promote_requested:
            events.append(Event("Warning", "PromoteIgnored", "no rollout is waiting for promotion"))
        if inp.abort_requested:
            events.append(Event("Warning", "AbortIgnored", "no rollout is in progress"))
    return StrayAnnotations(tuple(events), inp.promote_requested, inp.abort_requested)


def _judge(state: RolloutState, inp: RolloutInputs) -> Judgement:
    """Analyse the preview on its signals, after rebasing on counters that fell."""
    rebased = rebase_on_reset(state, inp.preview_signals)
    results, verdict = analyse(inp.preview_signals, rebased, inp.settings, inp.default_max_ttft)
    return Judgement(replace(rebased, analysis=results), results, verdict)


def step(state: RolloutState, inp: RolloutInputs, now: float) -> RolloutStep:
    """Advance the rollout by one reconcile. The checklist's order is precedence: the first
    step that decides (returns a RolloutStep rather than None) decides this reconcile."""
    ctx = RolloutContext.observe(state, inp, now)
    for decide in CHECKLIST:
        decided = decide(ctx)
        if decided is not None:
            return decided
    raise AssertionError(f"no rollout step decided phase {state.phase}")  # Paused always does


# Building blocks of the steps.


def _steady(ctx: RolloutContext, st: RolloutState, *events: Event) -> RolloutStep:
    """No rollout in flight: the active colour serves; the other colour is scaled to 0. The
    active keeps its running template unless it is the spec's (the spec may be a failed one)."""
    return RolloutStep(
        state=st,
        active=ColourTarget(st.active_colour, ctx.replicas, ctx.inp.desired_hash == st.active_hash),
        other=ColourTarget(st.active_colour.other(), 0, False) if ctx.inp.other.exists else None,
        events=events,
    )


def _in_flight(ctx: RolloutContext, st: RolloutState, *events: Event) -> RolloutStep:
    """A rollout in flight: the active colour serves, the preview runs the spec's template."""
    assert st.preview_colour is not None
    return RolloutStep(
        state=st,
        active=ColourTarget(st.active_colour, ctx.replicas, ctx.inp.desired_hash == st.active_hash),
        other=ColourTarget(st.preview_colour, ctx.replicas, True),
        events=events,
    )


def _with_stray(ctx: RolloutContext, out: RolloutStep) -> RolloutStep:
    """`out` that also consumes (and warns about) the annotations no rollout acts on."""
    return replace(
        out,
        events=ctx.stray.events + out.events,
        consume_promote=ctx.stray.consume_promote,
        consume_abort=ctx.stray.consume_abort,
    )


def _rollback(ctx: RolloutContext, s: RolloutState, why: str, reason: str) -> RolloutStep:
    active = s.active_colour
    st = replace(
        s,
        phase=RolloutPhase.ROLLED_BACK,
        failed_hash=s.preview_hash,
        message=f"rolled back: {why}; {active} keeps serving",
    )
    return RolloutStep(
        state=st,
        active=ColourTarget(active, ctx.replicas, ctx.inp.desired_hash == st.active_hash),
        other=ColourTarget(active.other(), 0, False),
        events=(Event("Warning", reason, st.message),),
        consume_abort=ctx.inp.abort_requested,
        result="rolled_back",
    )


def _promote(ctx: RolloutContext, s: RolloutState, consume: bool) -> RolloutStep:
    assert s.preview_colour is not None and s.preview_hash is not None
    old, new = s.active_colour, s.preview_colour
    delay = ctx.inp.settings.scale_down_delay_seconds
    st = replace(
        s,
        phase=RolloutPhase.SCALING_DOWN,
        active_colour=new,
        active_hash=s.preview_hash,
        preview_colour=None,
        preview_hash=None,
        phase_since=ctx.now,
        message=f"{new} serves; {old} kept for {delay}s, then scaled to zero",
    )
    return RolloutStep(
        state=st,
        active=ColourTarget(new, ctx.replicas, True),
        other=ColourTarget(old, ctx.replicas, False),
        events=(
            Event(
                "Normal",
                "RolloutPromoted",
                f"switched traffic from {old} to {new} (template {st.active_hash}); "
                f"{_describe(s.analysis)}",
            ),
        ),
        consume_promote=consume,
        recheck_after=float(delay),
        result="promoted",
    )


def _not_ready_in_time(ctx: RolloutContext, s: RolloutState) -> RolloutStep | None:
    timeout = ctx.inp.settings.ready_timeout_seconds
    if ctx.in_flight_for < timeout:
        return None
    return _rollback(
        ctx, s, f"{s.preview_colour} was not Ready within {timeout}s", "PreviewNotReady"
    )


# The steps, in checklist order.


def _recreate_missing_active(ctx: RolloutContext) -> RolloutStep | None:
    """The active Deployment is gone (first reconcile, or someone deleted it): there is nothing
    to protect, so (re)create it from the current spec and drop any rollout."""
    s = ctx.state
    if ctx.inp.active.exists:
        return None
    events: tuple[Event, ...] = ()
    if ctx.in_flight:
        events = (
            Event(
                "Warning",
                "ActiveRecreated",
                f"the {ctx.active} Deployment was missing during a rollout; recreated it from "
                "the current spec and ended the rollout",
            ),
        )
    st = replace(
        s,
        phase=RolloutPhase.IDLE if ctx.in_flight else s.phase,
        active_hash=ctx.inp.desired_hash,
        preview_colour=None,
        preview_hash=None,
        message="" if ctx.in_flight else s.message,
    )
    return _steady(ctx, st, *events)


def _roll_newer_version_onto_old_colour(ctx: RolloutContext) -> RolloutStep | None:
    """A new template while the old colour waits to be scaled down: the promotion counts as
    completed and the new version rolls out onto the old colour. The annotations are left in
    place (neither consumed nor warned about) for the new rollout."""
    s, inp = ctx.state, ctx.inp
    if s.phase is not RolloutPhase.SCALING_DOWN or inp.desired_hash == s.active_hash:
        return None
    return step(
        replace(s, phase=RolloutPhase.COMPLETED),
        replace(inp, abort_requested=False, promote_requested=False),
        ctx.now,
    )


def _scale_down_old_colour_after_delay(ctx: RolloutContext) -> RolloutStep | None:
    """After a promotion the old colour keeps its replicas for scaleDownDelaySeconds (a quick
    way back), then is scaled to zero."""
    s = ctx.state
    if s.phase is not RolloutPhase.SCALING_DOWN:
        return None
    delay = ctx.inp.settings.scale_down_delay_seconds
    if ctx.in_phase_for >= delay:
        st = replace(
            s,
            phase=RolloutPhase.COMPLETED,
            message=f"{ctx.active} serves; {ctx.other} scaled to zero",
        )
        scaled = Event(
            "Normal", "OldColourScaledDown", f"scaled {ctx.other} to zero after {delay}s"
        )
        return _with_stray(ctx, _steady(ctx, st, scaled))
    kept = RolloutStep(
        state=s,
        active=ColourTarget(ctx.active, ctx.replicas, True),
        other=ColourTarget(ctx.other, ctx.replicas, False),
        recheck_after=delay - ctx.in_phase_for,
    )
    return _with_stray(ctx, kept)


def _keep_serving_unchanged_template(ctx: RolloutContext) -> RolloutStep | None:
    """Between rollouts, a spec change that leaves the pod template as it is (replicas,
    autoscaling, rollout settings) needs no rollout."""
    s = ctx.state
    if not ctx.between_rollouts or ctx.inp.desired_hash != s.active_hash:
        return None
    return _with_stray(ctx, _steady(ctx, s))


def _keep_failed_version_out(ctx: RolloutContext) -> RolloutStep | None:
    """After a rollback or abort, the version that failed is not retried until the spec
    changes again; the previous version keeps serving."""
    s = ctx.state
    failed = s.phase in (RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED)
    if not ctx.between_rollouts or not failed or ctx.inp.desired_hash != s.failed_hash:
        return None
    return _with_stray(ctx, _steady(ctx, s))


def _start_preview_on_template_change(ctx: RolloutContext) -> RolloutStep | None:
    """Between rollouts, a new pod template starts the other colour with it while the active
    colour keeps serving."""
    s, inp = ctx.state, ctx.inp
    if not ctx.between_rollouts:
        return None
    st = replace(
        s,
        phase=RolloutPhase.PROGRESSING,
        preview_colour=ctx.other,
        preview_hash=inp.desired_hash,
        started_at=ctx.now,
        phase_since=ctx.now,
        failed_hash=None,
        requests_baseline=None,
        errors_baseline=None,
        analysis=(),
        message=f"starting the {ctx.other} colour with template {inp.desired_hash}",
    )
    started = Event(
        "Normal",
        "RolloutStarted",
        f"pod template changed ({s.active_hash} -> {inp.desired_hash}); starting {ctx.other} "
        f"with {ctx.replicas} replicas while {ctx.active} keeps serving",
    )
    out = replace(
        _in_flight(ctx, st, started), recheck_after=float(inp.settings.ready_timeout_seconds)
    )
    return _with_stray(ctx, out)


def _abort_on_request(ctx: RolloutContext) -> RolloutStep | None:
    """The abort annotation ends a rollout in flight: the preview goes, its version is not
    retried."""
    s = ctx.state
    if not ctx.in_flight or not ctx.inp.abort_requested:
        return None
    st = replace(
        s,
        phase=RolloutPhase.ABORTED,
        failed_hash=s.preview_hash,
        message=f"aborted by request; {ctx.active} keeps serving, "
        f"{s.preview_colour} scaled to zero",
    )
    out = _steady(ctx, st, Event("Warning", "RolloutAborted", st.message))
    return replace(out, consume_abort=True, result="aborted")


def _cancel_when_spec_reverted(ctx: RolloutContext) -> RolloutStep | None:
    """The spec went back to the serving version during a rollout: the preview goes."""
    s = ctx.state
    if not ctx.in_flight or ctx.inp.desired_hash != s.active_hash:
        return None
    st = replace(
        s,
        phase=RolloutPhase.IDLE,
        preview_colour=None,
        preview_hash=None,
        message="spec returned to the serving version; preview removed",
    )
    out = _steady(ctx, st, Event("Normal", "RolloutCancelled", st.message))
    return replace(out, result="superseded")


def _restart_preview_when_superseded(ctx: RolloutContext) -> RolloutStep | None:
    """Yet another template during a rollout: the preview colour restarts with it, from the
    beginning (readiness, then a fresh analysis)."""
    s, inp = ctx.state, ctx.inp
    if not ctx.in_flight or inp.desired_hash == s.preview_hash:
        return None
    st = replace(
        s,
        phase=RolloutPhase.PROGRESSING,
        preview_hash=inp.desired_hash,
        started_at=ctx.now,
        phase_since=ctx.now,
        requests_baseline=None,
        errors_baseline=None,
        analysis=(),
        message=f"superseded: restarting {s.preview_colour} with template {inp.desired_hash}",
    )
    superseded = Event(
        "Normal",
        "RolloutSuperseded",
        f"spec changed again during the rollout; {s.preview_colour} now gets {inp.desired_hash}",
    )
    return replace(_in_flight(ctx, st, superseded), result="superseded")


def _analyse_preview_once_ready(ctx: RolloutContext) -> RolloutStep | None:
    """The preview is Ready: analysis starts, counting requests and errors from the preview's
    counters now, and the preview pods get their warm-up requests."""
    s, inp = ctx.state, ctx.inp
    if s.phase is not RolloutPhase.PROGRESSING or not ctx.preview_ready:
        return None
    vals = inp.preview_signals.values if inp.preview_signals is not None else {}
    st = replace(
        s,
        phase=RolloutPhase.ANALYZING,
        phase_since=ctx.now,
        requests_baseline=vals.get(Signal.REQUESTS_TOTAL, 0.0),
        errors_baseline=vals.get(Signal.ERRORS_TOTAL, 0.0),
        message=f"{s.preview_colour} Ready; analysing it for "
        f"{inp.settings.analysis.duration_seconds}s",
    )
    out = _in_flight(ctx, st, Event("Normal", "PreviewReady", st.message))
    return replace(out, warmup_preview=inp.settings.warmup_requests, recheck_after=0.0)


def _wait_for_preview_ready(ctx: RolloutContext) -> RolloutStep | None:
    """A starting preview gets readyTimeoutSeconds to be Ready, else the rollout rolls back."""
    s = ctx.state
    if s.phase is not RolloutPhase.PROGRESSING:
        return None
    timeout = ctx.inp.settings.ready_timeout_seconds
    return _not_ready_in_time(ctx, s) or replace(
        _in_flight(ctx, s), recheck_after=timeout - ctx.in_flight_for
    )


def _roll_back_on_failed_check(ctx: RolloutContext) -> RolloutStep | None:
    """A check with data that fails (error rate, TTFT p99) rolls back at once, even before the
    analysis window is over."""
    j = ctx.judgement
    if j is None or j.verdict is not False:
        return None
    return _rollback(ctx, j.state, f"analysis failed: {_describe(j.results)}", "AnalysisFailed")


def _wait_out_analysis_window(ctx: RolloutContext) -> RolloutStep | None:
    """Analysis lasts analysis.durationSeconds; meanwhile look again every 15 s at most."""
    j = ctx.judgement
    duration = ctx.inp.settings.analysis.duration_seconds
    if j is None or ctx.in_phase_for >= duration:
        return None
    return replace(_in_flight(ctx, j.state), recheck_after=min(15.0, duration - ctx.in_phase_for))


def _roll_back_when_inconclusive(ctx: RolloutContext) -> RolloutStep | None:
    """Too few requests (or no data) by the end of the analysis window: roll back rather than
    promote a version nobody measured."""
    j = ctx.judgement
    duration = ctx.inp.settings.analysis.duration_seconds
    if j is None or j.verdict is not None or ctx.in_phase_for < duration:
        return None
    return _rollback(
        ctx,
        j.state,
        f"analysis inconclusive after {duration}s: {_describe(j.results)}",
        "AnalysisInconclusive",
    )


def _wait_for_preview_replicas_after_analysis(ctx: RolloutContext) -> RolloutStep | None:
    """Analysis passed but the preview is short of Ready replicas (e.g. scaled up meanwhile):
    wait for them within readyTimeoutSeconds of the start, else roll back."""
    j = ctx.judgement
    if j is None or ctx.preview_ready:
        return None
    return _not_ready_in_time(ctx, j.state) or _in_flight(
        ctx,
        replace(
            j.state, message=f"analysis passed; waiting for {ctx.state.preview_colour} to be Ready"
        ),
    )


def _promote_or_pause_after_analysis(ctx: RolloutContext) -> RolloutStep | None:
    """Analysis passed: switch traffic (autoPromote, or the promote annotation is already
    there), or pause for the promote annotation."""
    j = ctx.judgement
    if j is None:
        return None
    if ctx.inp.settings.auto_promote or ctx.inp.promote_requested:
        return _promote(ctx, j.state, consume=ctx.inp.promote_requested)
    st = replace(
        j.state,
        phase=RolloutPhase.PAUSED,
        phase_since=ctx.now,
        message=f"analysis passed ({_describe(j.results)}); waiting for the "
        f"serving.deepseek.dev/promote annotation",
    )
    return _in_flight(ctx, st, Event("Normal", "RolloutPaused", st.message))


def _promote_on_request_when_paused(ctx: RolloutContext) -> RolloutStep | None:
    """Paused waits, with no deadline, for the promote annotation and a Ready preview."""
    if ctx.state.phase is not RolloutPhase.PAUSED:
        return None
    if ctx.inp.promote_requested and ctx.preview_ready:
        return _promote(ctx, ctx.state, consume=True)
    return _in_flight(ctx, ctx.state)


CHECKLIST: tuple[Callable[[RolloutContext], RolloutStep | None], ...] = (
    _recreate_missing_active,
    # after a promotion
    _roll_newer_version_onto_old_colour,
    _scale_down_old_colour_after_delay,
    # between rollouts
    _keep_serving_unchanged_template,
    _keep_failed_version_out,
    _start_preview_on_template_change,
    # a rollout in flight, whatever its phase
    _abort_on_request,
    _cancel_when_spec_reverted,
    _restart_preview_when_superseded,
    # Progressing
    _analyse_preview_once_ready,
    _wait_for_preview_ready,
    # Analyzing
    _roll_back_on_failed_check,
    _wait_out_analysis_window,
    _roll_back_when_inconclusive,
    _wait_for_preview_replicas_after_analysis,
    _promote_or_pause_after_analysis,
    # Paused
    _promote_on_request_when_paused,
)
