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

Stepped transitions, where free GPUs cannot hold a whole preview (its pods stay Unschedulable
for rollout.unschedulableSeconds) or rollout.maxSurge asks for it from the start: the old colour
gives up maxUnavailable pods' GPUs per step and the preview's pods take them. The first new pods
are analysed (on the preview Service, as in a classic rollout) before the rest follow; from then
on Ready new pods serve through the stable Service beside the old ones ("mixed"), so capacity
drops by at most maxUnavailable, and the analysis keeps watching the error rate. A failure (or
an abort, or the spec reverting) rolls back the same way, RollingBack: the preview shrinks step
by step as the old colour's pods come back Ready.

    Progressing --short of GPUs / maxSurge--> Progressing(stepped) --first pods Ready-->
    Analyzing --pass--> Progressing(stepped, first pods passed) --all moved--> Completed
    Analyzing/Progressing(stepped) --check fails--> RollingBack --old colour back--> RolledBack
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

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
    ROLLING_BACK = "RollingBack"  # a stepped transition going back, step by step


IN_FLIGHT = {RolloutPhase.PROGRESSING, RolloutPhase.ANALYZING, RolloutPhase.PAUSED}
# Pods of both colours are moving: the autoscaler holds, the reconcile ticks quickly.
TRANSITIONING = IN_FLIGHT | {RolloutPhase.ROLLING_BACK}


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
    # Stepped transitions (module docstring).
    stepped: bool = False
    stable_replicas: int | None = None  # what the old colour keeps in this step
    stable_base: int | None = None  # the old colour's Ready pods (GPUs it held) when it began
    first_pods_passed: bool = False  # the first new pods passed analysis; the rest follow
    short_since: float | None = None  # preview pods Unschedulable (no GPUs) since
    step_since: float | None = None  # when the preview's Ready count last changed
    preview_ready: int = 0  # the preview's Ready count then
    rollback_unmixed: bool = False  # rolling back after errors: the old colour serves alone
    end_phase: RolloutPhase | None = None  # RollingBack ends in this phase


@dataclass(frozen=True)
class ColourObservation:
    """One colour's engine Deployment as observed."""

    exists: bool = False
    replicas: int = 0
    ready: int = 0
    updated: int = 0
    template_hash: str | None = None
    up_to_date: bool = True  # the Deployment controller has seen its latest generation
    unschedulable: int = 0  # its pods the scheduler cannot place (no GPUs free for them)


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
    # spec.router: every router pod discovers the active colour (or no router): until then a
    # router pod still sends to the old colour, and scaling it down would fail its requests.
    router_settled: bool = True


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
    mixed: bool = False  # the stable Service selects both colours (a stepped transition)


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
    preview_ready_count: int = 0  # preview pods Ready on the preview template (at most replicas)

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
            preview_ready_count=_ready_on(inp.other, state.preview_hash, inp.desired_replicas),
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


def _ready_on(obs: ColourObservation, template: str | None, cap: int) -> int:
    """Ready pods of a Deployment that runs `template`, at most `cap`."""
    if not obs.exists or template is None or obs.template_hash != template:
        return 0
    return min(obs.ready, cap)


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
    """A rollout in flight: the active colour serves, the preview runs the spec's template.
    Stepped, the colours share the GPUs (_stepped_targets) and Ready preview pods serve."""
    assert st.preview_colour is not None
    keep = ctx.inp.desired_hash == st.active_hash
    if st.stepped:
        return _stepped(ctx, st, *events)
    return RolloutStep(
        state=st,
        active=ColourTarget(st.active_colour, ctx.replicas, keep),
        other=ColourTarget(st.preview_colour, ctx.replicas, True),
        events=events,
    )


def _surge(ctx: RolloutContext) -> int:
    """Preview pods allowed beyond the desired count: maxSurge, unset = a whole copy."""
    k = ctx.inp.settings.max_surge
    return ctx.replicas if k is None else min(k, ctx.replicas)


def _first_batch(ctx: RolloutContext) -> int:
    """How many new pods are analysed before the rest follow: one step's worth."""
    u = ctx.inp.settings.max_unavailable
    return min(ctx.replicas, max(1, u if u > 0 else _surge(ctx)))


def _stepped_targets(ctx: RolloutContext, st: RolloutState) -> tuple[int, int]:
    """(old colour, new colour) replicas in this step of a stepped transition.

    The old colour keeps n - u until the first new pods passed analysis, then n - ready - u:
    each new pod that becomes Ready lets one more old pod go, and at most u replicas are ever
    out of service (n = replicas, u = maxUnavailable). The new colour may run up to n + k pods
    in all (k = maxSurge); with no GPUs free, those beyond the freed GPUs wait in Pending and
    take them as the old pods go. E.g. n=4, u=1: old 4 -> 3, new 1 Ready, analysed; old 2,
    new 2; old 1, new 3; old 0, new 4 -> the new colour serves alone.
    """
    n, u = ctx.replicas, ctx.inp.settings.max_unavailable
    base = _base(ctx, st)
    if st.first_pods_passed:
        old = max(0, base - ctx.preview_ready_count - u)
    else:  # one step, and never back up while a superseding template is being analysed
        old = max(0, base - u)
        if st.stable_replicas is not None:
            old = min(old, st.stable_replicas)
    return old, min(n, n + _surge(ctx) - old)


def _base(ctx: RolloutContext, st: RolloutState) -> int:
    """How many replicas actually move: the old colour's Ready pods when the transition went
    stepped (pods it could not schedule hold no GPUs to hand over), at most the replicas."""
    base = st.stable_base if st.stable_base is not None else ctx.replicas
    return min(base, ctx.replicas)


def _stepped(ctx: RolloutContext, st: RolloutState, *events: Event) -> RolloutStep:
    """A stepped transition's targets; the preview's Ready count is remembered with the time
    it last changed (the ready timeout counts per step). New pods serve through the stable
    Service ("mixed") once the first of them passed analysis, judged like a classic preview
    on the preview Service's traffic: no user request meets an unjudged version."""
    preview = st.preview_colour
    assert preview is not None
    old, new = _stepped_targets(ctx, st)
    ready = ctx.preview_ready_count
    if ready != st.preview_ready or st.step_since is None:
        st = replace(st, preview_ready=ready, step_since=ctx.now)
    out: tuple[Event, ...] = events
    if st.stable_replicas is not None and old != st.stable_replicas:
        out += (
            Event(
                "Normal",
                "TransitionStep",
                f"{st.active_colour} {st.stable_replicas} -> {old} replicas, {st.preview_colour} "
                f"{ready} of {ctx.replicas} Ready (steps of "
                f"{ctx.inp.settings.max_unavailable})",
            ),
        )
    st = replace(st, stable_replicas=old)
    return RolloutStep(
        state=st,
        active=ColourTarget(st.active_colour, old, ctx.inp.desired_hash == st.active_hash),
        other=ColourTarget(preview, new, True),
        events=out,
        mixed=ready > 0 and st.first_pods_passed,
        recheck_after=5.0,
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
    if s.stepped:
        errors = any(r.metric == "errorRate" and r.passed is False for r in s.analysis)
        return _start_rolling_back(ctx, s, why, reason, RolloutPhase.ROLLED_BACK, errors)
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
    """readyTimeoutSeconds since the start, or (stepped) since the last new pod became Ready."""
    timeout = ctx.inp.settings.ready_timeout_seconds
    waited = ctx.in_flight_for
    if s.stepped and s.step_since is not None:
        waited = ctx.now - s.step_since
    if waited < timeout:
        return None
    return _rollback(
        ctx, s, f"{s.preview_colour} was not Ready within {timeout}s", "PreviewNotReady"
    )


def _start_rolling_back(
    ctx: RolloutContext,
    s: RolloutState,
    why: str,
    reason: str,
    end: RolloutPhase,
    unmixed: bool,
) -> RolloutStep:
    """A stepped transition goes back the way it came: the preview shrinks as the old colour's
    pods come back Ready. After failed error-rate checks the old colour serves alone at once."""
    failed = s.preview_hash if end is not RolloutPhase.IDLE else s.failed_hash
    st = replace(
        s,
        phase=RolloutPhase.ROLLING_BACK,
        phase_since=ctx.now,
        failed_hash=failed,
        end_phase=end,
        rollback_unmixed=unmixed,
        message=f"rolling back in steps: {why}",
    )
    result = {
        RolloutPhase.ROLLED_BACK: "rolled_back",
        RolloutPhase.ABORTED: "aborted",
        RolloutPhase.IDLE: "superseded",
    }[end]
    kind = "Normal" if end is RolloutPhase.IDLE else "Warning"
    out = _rolling_back(ctx, st, Event(kind, reason, st.message))
    return replace(out, result=result, consume_abort=ctx.inp.abort_requested)


def _rolling_back(ctx: RolloutContext, st: RolloutState, *events: Event) -> RolloutStep:
    """RollingBack's targets: the old colour asks for every replica (its new pods take GPUs as
    they free up); the preview keeps base - (old Ready) - u, never more than it has. base (the
    old colour's Ready pods when the transition went stepped, _base) rather than n: replicas
    the old colour never placed hold no GPUs to come back to, and waiting for them would keep
    the preview, and RollingBack, for good. E.g. n=3 where 2 fit, u=1: old 1 Ready, preview 1
    -> preview 2 - 1 - 1 = 0 at once (with n, 3 - 1 - 1 = 1: the old colour's second pod
    never gets the preview's GPUs)."""
    assert st.preview_colour is not None
    n = ctx.replicas
    u = max(1, ctx.inp.settings.max_unavailable)
    back = min(ctx.inp.active.ready, n) if ctx.inp.active.exists else 0
    have = ctx.inp.other.replicas if ctx.inp.other.exists else 0
    preview = max(0, min(have, _base(ctx, st) - back - u))
    return RolloutStep(
        state=replace(st, stable_replicas=n),
        active=ColourTarget(st.active_colour, n, ctx.inp.desired_hash == st.active_hash),
        other=ColourTarget(st.preview_colour, preview, False),
        events=events,
        mixed=not st.rollback_unmixed and ctx.inp.other.ready > 0 and preview > 0,
        recheck_after=5.0,
    )


def _promote_stepped(ctx: RolloutContext, s: RolloutState) -> RolloutStep:
    """Every replica moved: the new colour serves alone; the old one is already at zero."""
    assert s.preview_colour is not None and s.preview_hash is not None
    old, new = s.active_colour, s.preview_colour
    st = replace(
        s,
        phase=RolloutPhase.COMPLETED,
        active_colour=new,
        active_hash=s.preview_hash,
        preview_colour=None,
        preview_hash=None,
        phase_since=ctx.now,
        **_fresh_steps(False, 0, 0),
        message=f"{new} serves; moved from {old} in steps of {ctx.inp.settings.max_unavailable}",
    )
    promoted = Event(
        "Normal",
        "RolloutPromoted",
        f"switched traffic from {old} to {new} (template {st.active_hash}) after moving "
        f"{_base(ctx, s)} replicas in steps; {_describe(s.analysis)}",
    )
    return RolloutStep(
        state=st,
        active=ColourTarget(new, ctx.replicas, True),
        other=ColourTarget(old, 0, False),
        events=(promoted,),
        result="promoted",
    )


# The steps, in checklist order.


def _roll_back_in_steps(ctx: RolloutContext) -> RolloutStep | None:
    """RollingBack: shrink the preview as the old colour's pods come back; once the preview is
    gone the rollback ends in the phase it was started for (RolledBack, Aborted or Idle)."""
    s = ctx.state
    if s.phase is not RolloutPhase.ROLLING_BACK:
        return None
    gone = not ctx.inp.other.exists or (ctx.inp.other.replicas == 0 and ctx.inp.other.ready == 0)
    if not gone:
        return _with_stray(ctx, _rolling_back(ctx, s))
    end = s.end_phase or RolloutPhase.ROLLED_BACK
    why = s.message.removeprefix("rolling back in steps: ")
    st = replace(
        s,
        phase=end,
        phase_since=ctx.now,
        **_fresh_steps(False, 0, 0),
        message=f"rolled back in steps: {why}; {s.active_colour} serves, {s.preview_colour} "
        "scaled to zero",
    )
    if end is RolloutPhase.IDLE:
        st = replace(st, preview_colour=None, preview_hash=None)
    return _with_stray(ctx, _steady(ctx, st, Event("Normal", "RolledBackInSteps", st.message)))


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
    if ctx.in_phase_for >= delay and not ctx.inp.router_settled:
        waiting = RolloutStep(
            state=replace(s, message=f"{ctx.active} serves; waiting for the router to discover it"),
            active=ColourTarget(ctx.active, ctx.replicas, True),
            other=ColourTarget(ctx.other, ctx.replicas, False),
            recheck_after=2.0,
        )
        return _with_stray(ctx, waiting)
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
    stepped = _surge(ctx) < ctx.replicas
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
        **_fresh_steps(stepped, ctx.replicas, inp.active.ready),
    )
    how = (
        f"moving {ctx.replicas} replicas from {ctx.active} to {ctx.other} in steps "
        f"(maxSurge {inp.settings.max_surge}, maxUnavailable {inp.settings.max_unavailable})"
        if stepped
        else f"starting {ctx.other} with {ctx.replicas} replicas while {ctx.active} keeps serving"
    )
    started = Event(
        "Normal",
        "RolloutStarted",
        f"pod template changed ({s.active_hash} -> {inp.desired_hash}); {how}",
    )
    out = _in_flight(ctx, st, started)
    if not stepped:
        out = replace(out, recheck_after=float(inp.settings.ready_timeout_seconds))
    return _with_stray(ctx, out)


def _fresh_steps(stepped: bool, replicas: int, ready: int) -> dict[str, Any]:
    """The stepped-transition fields of a rollout (re)starting, or (stepped=False) of one that
    ended: nothing of a stepped transition is remembered."""
    return {
        "stepped": stepped,
        "stable_replicas": replicas if stepped else None,
        "stable_base": min(replicas, ready) if stepped else None,
        "first_pods_passed": False,
        "short_since": None,
        "step_since": None,
        "preview_ready": 0,
        "rollback_unmixed": False,
        "end_phase": None,
    }


def _abort_on_request(ctx: RolloutContext) -> RolloutStep | None:
    """The abort annotation ends a rollout in flight: the preview goes, its version is not
    retried."""
    s = ctx.state
    if not ctx.in_flight or not ctx.inp.abort_requested:
        return None
    if s.stepped:
        why = f"aborted by request; {ctx.active} comes back as {s.preview_colour} goes"
        return _start_rolling_back(ctx, s, why, "RolloutAborted", RolloutPhase.ABORTED, False)
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
    if s.stepped:
        why = "spec returned to the serving version"
        return _start_rolling_back(ctx, s, why, "RolloutCancelled", RolloutPhase.IDLE, False)
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
        first_pods_passed=False,
        step_since=None,
    )
    superseded = Event(
        "Normal",
        "RolloutSuperseded",
        f"spec changed again during the rollout; {s.preview_colour} now gets {inp.desired_hash}",
    )
    return replace(_in_flight(ctx, st, superseded), result="superseded")


def _go_stepped_when_short_of_gpus(ctx: RolloutContext) -> RolloutStep | None:
    """Preview pods Unschedulable for unschedulableSeconds (no free GPUs for a whole second
    copy): the transition turns stepped rather than wait. With maxUnavailable 0 nothing may
    give up GPUs: the preview waits, said in the message and a warning, until
    readyTimeoutSeconds rolls it back."""
    s, inp = ctx.state, ctx.inp
    short = inp.other.unschedulable
    if s.phase is not RolloutPhase.PROGRESSING or s.stepped or short == 0 or ctx.preview_ready:
        return None
    if s.short_since is None:
        st = replace(s, short_since=ctx.now)
        return replace(_in_flight(ctx, st), recheck_after=float(inp.settings.unschedulable_seconds))
    grace = inp.settings.unschedulable_seconds
    waited = ctx.now - s.short_since
    if waited < grace:
        return replace(_in_flight(ctx, s), recheck_after=grace - waited)
    preview, u = s.preview_colour, inp.settings.max_unavailable
    if u == 0:
        msg = (
            f"{short} {preview} pods cannot get GPUs and rollout.maxUnavailable is 0: waiting "
            f"for free GPUs (rolled back after readyTimeoutSeconds)"
        )
        late = _not_ready_in_time(ctx, s)
        if late is not None:
            return late
        events = () if s.message == msg else (Event("Warning", "PreviewShortOfGPUs", msg),)
        return replace(_in_flight(ctx, replace(s, message=msg), *events), recheck_after=15.0)
    st = replace(
        s,
        stepped=True,
        stable_replicas=ctx.replicas,
        stable_base=min(ctx.replicas, inp.active.ready),
        step_since=ctx.now,
        message=f"{short} {preview} pods could not get GPUs for {waited:.0f}s: moving capacity "
        f"from {ctx.active} in steps of {u}",
    )
    return _in_flight(ctx, st, Event("Normal", "SteppedTransition", st.message))


def _analyse_first_pods_once_ready(ctx: RolloutContext) -> RolloutStep | None:
    """Stepped: once the first step's new pods are Ready they are analysed (on the preview
    Service's traffic) before the rest follow."""
    s, inp = ctx.state, ctx.inp
    if s.phase is not RolloutPhase.PROGRESSING or not s.stepped or s.first_pods_passed:
        return None
    if ctx.preview_ready_count < _first_batch(ctx):
        return None
    vals = inp.preview_signals.values if inp.preview_signals is not None else {}
    st = replace(
        s,
        phase=RolloutPhase.ANALYZING,
        phase_since=ctx.now,
        requests_baseline=vals.get(Signal.REQUESTS_TOTAL, 0.0),
        errors_baseline=vals.get(Signal.ERRORS_TOTAL, 0.0),
        message=f"the first {ctx.preview_ready_count} {s.preview_colour} pods are Ready; "
        f"analysing them for {inp.settings.analysis.duration_seconds}s while {ctx.active} "
        f"serves with {_stepped_targets(ctx, s)[0]} replicas",
    )
    out = _in_flight(ctx, st, Event("Normal", "PreviewReady", st.message))
    return replace(out, warmup_preview=inp.settings.warmup_requests, recheck_after=0.0)


def _move_the_rest_in_steps(ctx: RolloutContext) -> RolloutStep | None:
    """Stepped, after the first pods passed: one old pod goes for each new pod Ready, the
    analysis keeps watching the error rate (errors roll back in steps; latency is not judged
    any more: with maxUnavailable replicas out of service under the load that made the switch
    necessary, it measures the squeeze, not the version), and once as many new pods
    are Ready as the old colour had when it began, the new colour serves alone (replicas it
    could never schedule stay Pending, as they were)."""
    s = ctx.state
    if s.phase is not RolloutPhase.PROGRESSING or not s.stepped or not s.first_pods_passed:
        return None
    j = _judge(s, ctx.inp)
    if any(r.metric == "errorRate" and r.passed is False for r in j.results):
        return _rollback(ctx, j.state, f"analysis failed: {_describe(j.results)}", "AnalysisFailed")
    if ctx.preview_ready_count >= _base(ctx, j.state):
        return _promote_stepped(ctx, j.state)
    return _not_ready_in_time(ctx, j.state) or _in_flight(ctx, j.state)


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
    if s.short_since is not None and ctx.inp.other.unschedulable == 0:
        s = replace(s, short_since=None)  # the preview got its GPUs after all
    timeout = ctx.inp.settings.ready_timeout_seconds
    late = _not_ready_in_time(ctx, s)
    if late is not None:
        return late
    out = _in_flight(ctx, s)
    return out if s.stepped else replace(out, recheck_after=timeout - ctx.in_flight_for)


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
    if j is None or ctx.preview_ready or ctx.state.stepped:
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
    if ctx.state.stepped:
        return _continue_or_pause_after_first_pods(ctx, j)
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


def _continue_or_pause_after_first_pods(ctx: RolloutContext, j: Judgement) -> RolloutStep:
    """Stepped: the first new pods passed analysis. The rest follow in steps (autoPromote, or
    the promote annotation is there), or the transition pauses for the annotation with the
    first step's pods serving."""
    go = ctx.inp.settings.auto_promote or ctx.inp.promote_requested
    st = replace(
        j.state,
        phase=RolloutPhase.PROGRESSING if go else RolloutPhase.PAUSED,
        phase_since=ctx.now,
        first_pods_passed=go,
        message=f"the first {ctx.preview_ready_count} {ctx.state.preview_colour} pods passed "
        f"analysis ({_describe(j.results)}); "
        + (
            f"moving the rest in steps of {ctx.inp.settings.max_unavailable}"
            if go
            else "waiting for the serving.deepseek.dev/promote annotation to move the rest"
        ),
    )
    reason = "FirstPodsPassed" if go else "RolloutPaused"
    out = _in_flight(ctx, st, Event("Normal", reason, st.message))
    return replace(out, consume_promote=ctx.inp.promote_requested)


def _promote_on_request_when_paused(ctx: RolloutContext) -> RolloutStep | None:
    """Paused waits, with no deadline, for the promote annotation and a Ready preview (stepped:
    the annotation moves the rest of the replicas)."""
    if ctx.state.phase is not RolloutPhase.PAUSED:
        return None
    if ctx.state.stepped and ctx.inp.promote_requested:
        st = replace(ctx.state, phase=RolloutPhase.PROGRESSING, first_pods_passed=True)
        moving = (
            f"promoted by request: moving the rest in steps of {ctx.inp.settings.max_unavailable}"
        )
        out = _in_flight(
            ctx, replace(st, message=moving), Event("Normal", "RolloutResumed", moving)
        )
        return replace(out, consume_promote=True)
    if ctx.inp.promote_requested and ctx.preview_ready:
        return _promote(ctx, ctx.state, consume=True)
    return _in_flight(ctx, ctx.state)


CHECKLIST: tuple[Callable[[RolloutContext], RolloutStep | None], ...] = (
    _recreate_missing_active,
    # a stepped transition going back
    _roll_back_in_steps,
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
    _go_stepped_when_short_of_gpus,
    _analyse_first_pods_once_ready,
    _move_the_rest_in_steps,
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
