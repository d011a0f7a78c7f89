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


def step(state: RolloutState, inp: RolloutInputs, now: float) -> RolloutStep:
    """Advance the rollout by one reconcile."""
    s = state
    n = inp.desired_replicas
    active, other = s.active_colour, s.active_colour.other()
    events: list[Event] = []

    def steady(st: RolloutState, *evs: Event, **kw: Any) -> RolloutStep:
        """No rollout in flight: the active colour serves; the other colour is scaled to 0."""
        render = inp.desired_hash == st.active_hash
        return RolloutStep(
            state=st,
            active=ColourTarget(st.active_colour, n, render),
            other=ColourTarget(st.active_colour.other(), 0, False) if inp.other.exists else None,
            events=tuple(events) + evs,
            **kw,
        )

    def in_flight(st: RolloutState, *evs: Event, **kw: Any) -> RolloutStep:
        assert st.preview_colour is not None
        return RolloutStep(
            state=st,
            active=ColourTarget(st.active_colour, n, inp.desired_hash == st.active_hash),
            other=ColourTarget(st.preview_colour, n, True),
            events=tuple(events) + evs,
            **kw,
        )

    # The active Deployment is gone (first reconcile, or someone deleted it): there is nothing
    # to protect, so (re)create it from the current spec and drop any rollout.
    if not inp.active.exists:
        if s.phase in IN_FLIGHT:
            events.append(
                Event(
                    "Warning",
                    "ActiveRecreated",
                    f"the {active} Deployment was missing during a rollout; recreated it from "
                    "the current spec and ended the rollout",
                )
            )
        st = replace(
            s,
            phase=RolloutPhase.IDLE if s.phase in IN_FLIGHT else s.phase,
            active_hash=inp.desired_hash,
            preview_colour=None,
            preview_hash=None,
            message="" if s.phase in IN_FLIGHT else s.message,
        )
        return steady(st)

    promote_kw: dict[str, Any] = {}
    abort_kw: dict[str, Any] = {}
    if inp.abort_requested:
        abort_kw["consume_abort"] = True

    # ---- no rollout in flight --------------------------------------------------------------
    if s.phase not in IN_FLIGHT and s.phase is not RolloutPhase.SCALING_DOWN:
        if inp.promote_requested:
            promote_kw = {"consume_promote": True}
            events.append(Event("Warning", "PromoteIgnored", "no rollout is waiting for promotion"))
        if inp.abort_requested:
            events.append(Event("Warning", "AbortIgnored", "no rollout is in progress"))
        if inp.desired_hash == s.active_hash:
            return steady(s, **promote_kw, **abort_kw)
        if (
            s.phase in (RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED)
            and inp.desired_hash == s.failed_hash
        ):
            return steady(s, **promote_kw, **abort_kw)  # do not retry a version that failed
        st = replace(
            s,
            phase=RolloutPhase.PROGRESSING,
            preview_colour=other,
            preview_hash=inp.desired_hash,
            started_at=now,
            phase_since=now,
            failed_hash=None,
            requests_baseline=None,
            errors_baseline=None,
            analysis=(),
            message=f"starting the {other} colour with template {inp.desired_hash}",
        )
        return in_flight(
            st,
            Event(
                "Normal",
                "RolloutStarted",
                f"pod template changed ({s.active_hash} -> {inp.desired_hash}); starting {other} "
                f"with {n} replicas while {active} keeps serving",
            ),
            recheck_after=float(inp.settings.ready_timeout_seconds),
            **promote_kw,
            **abort_kw,
        )

    # ---- traffic switched, old colour kept for a while --------------------------------------
    if s.phase is RolloutPhase.SCALING_DOWN:
        if inp.promote_requested:
            promote_kw = {"consume_promote": True}
        if inp.abort_requested:
            events.append(
                Event(
                    "Warning", "AbortIgnored", "the rollout was already promoted; nothing to abort"
                )
            )
        if inp.desired_hash != s.active_hash:  # a newer version: roll out onto the old colour
            st = replace(s, phase=RolloutPhase.COMPLETED)
            return step(st, replace(inp, abort_requested=False, promote_requested=False), now)
        elapsed = now - (s.phase_since or now)
        delay = inp.settings.scale_down_delay_seconds
        if elapsed >= delay:
            st = replace(
                s, phase=RolloutPhase.COMPLETED, message=f"{active} serves; {other} scaled to zero"
            )
            return steady(
                st,
                Event("Normal", "OldColourScaledDown", f"scaled {other} to zero after {delay}s"),
                **promote_kw,
                **abort_kw,
            )
        return RolloutStep(
            state=s,
            active=ColourTarget(active, n, True),
            other=ColourTarget(other, n, False),
            events=tuple(events),
            recheck_after=delay - elapsed,
            **promote_kw,
            **abort_kw,
        )

    # ---- a rollout is in flight ------------------------------------------------------------
    assert s.preview_colour is not None and s.started_at is not None
    preview = s.preview_colour
    started: float = s.started_at

    if inp.abort_requested:
        st = replace(
            s,
            phase=RolloutPhase.ABORTED,
            failed_hash=s.preview_hash,
            message=f"aborted by request; {active} keeps serving, {preview} scaled to zero",
        )
        return steady(
            st,
            Event("Warning", "RolloutAborted", st.message),
            consume_abort=True,
            result="aborted",
        )

    if inp.desired_hash == s.active_hash:
        st = replace(
            s,
            phase=RolloutPhase.IDLE,
            preview_colour=None,
            preview_hash=None,
            message="spec returned to the serving version; preview removed",
        )
        return steady(st, Event("Normal", "RolloutCancelled", st.message), result="superseded")

    if inp.desired_hash != s.preview_hash:
        st = replace(
            s,
            phase=RolloutPhase.PROGRESSING,
            preview_hash=inp.desired_hash,
            started_at=now,
            phase_since=now,
            requests_baseline=None,
            errors_baseline=None,
            analysis=(),
            message=f"superseded: restarting {preview} with template {inp.desired_hash}",
        )
        return in_flight(
            st,
            Event(
                "Normal",
                "RolloutSuperseded",
                f"spec changed again during the rollout; {preview} now gets {inp.desired_hash}",
            ),
            result="superseded",
        )

    ready = _preview_ready(inp.other, s.preview_hash, n)
    timeout = inp.settings.ready_timeout_seconds

    if s.phase is RolloutPhase.PROGRESSING:
        if ready:
            vals = inp.preview_signals.values if inp.preview_signals is not None else {}
            st = replace(
                s,
                phase=RolloutPhase.ANALYZING,
                phase_since=now,
                requests_baseline=vals.get(Signal.REQUESTS_TOTAL, 0.0),
                errors_baseline=vals.get(Signal.ERRORS_TOTAL, 0.0),
                message=f"{preview} Ready; analysing it for "
                f"{inp.settings.analysis.duration_seconds}s",
            )
            return in_flight(
                st,
                Event("Normal", "PreviewReady", st.message),
                warmup_preview=inp.settings.warmup_requests,
                recheck_after=0.0,
            )
        if now - started >= timeout:
            return _rollback(
                s, inp, f"{preview} was not Ready within {timeout}s", "PreviewNotReady"
            )
        return in_flight(s, recheck_after=timeout - (now - started))

    if s.phase is RolloutPhase.ANALYZING:
        s = rebase_on_reset(s, inp.preview_signals)
        results, verdict = analyse(inp.preview_signals, s, inp.settings, inp.default_max_ttft)
        s = replace(s, analysis=results)
        if verdict is False:
            return _rollback(s, inp, f"analysis failed: {_describe(results)}", "AnalysisFailed")
        duration = inp.settings.analysis.duration_seconds
        elapsed = now - (s.phase_since or now)
        if elapsed < duration:
            return in_flight(s, recheck_after=min(15.0, duration - elapsed))
        if verdict is None:
            return _rollback(
                s,
                inp,
                f"analysis inconclusive after {duration}s: {_describe(results)}",
                "AnalysisInconclusive",
            )
        if not ready:  # passed, but the preview is short of replicas (e.g. scaled up meanwhile)
            if now - started >= timeout:
                return _rollback(
                    s, inp, f"{preview} was not Ready within {timeout}s", "PreviewNotReady"
                )
            return in_flight(
                replace(s, message=f"analysis passed; waiting for {preview} to be Ready")
            )
        if inp.settings.auto_promote or inp.promote_requested:
            return _promote(s, inp, now, consume=inp.promote_requested)
        st = replace(
            s,
            phase=RolloutPhase.PAUSED,
            phase_since=now,
            message=f"analysis passed ({_describe(results)}); waiting for the "
            f"serving.deepseek.dev/promote annotation",
        )
        return in_flight(st, Event("Normal", "RolloutPaused", st.message))

    # PAUSED
    if inp.promote_requested and ready:
        return _promote(s, inp, now, consume=True)
    return in_flight(s)


def _rollback(s: RolloutState, inp: RolloutInputs, why: str, reason: str) -> RolloutStep:
    active = s.active_colour
    st = replace(
        s,
        phase=RolloutPhase.ROLLED_BACK,
        failed_hash=s.preview_hash,
        message=f"rolled back: {why}; {active} keeps serving",
    )
    return RolloutStep(
        state=st,
        active=ColourTarget(active, inp.desired_replicas, inp.desired_hash == st.active_hash),
        other=ColourTarget(active.other(), 0, False),
        events=(Event("Warning", reason, st.message),),
        consume_abort=inp.abort_requested,
        result="rolled_back",
    )


def _promote(s: RolloutState, inp: RolloutInputs, now: float, consume: bool) -> RolloutStep:
    assert s.preview_colour is not None and s.preview_hash is not None
    old, new = s.active_colour, s.preview_colour
    delay = inp.settings.scale_down_delay_seconds
    st = replace(
        s,
        phase=RolloutPhase.SCALING_DOWN,
        active_colour=new,
        active_hash=s.preview_hash,
        preview_colour=None,
        preview_hash=None,
        phase_since=now,
        message=f"{new} serves; {old} kept for {delay}s, then scaled to zero",
    )
    return RolloutStep(
        state=st,
        active=ColourTarget(new, inp.desired_replicas, True),
        other=ColourTarget(old, inp.desired_replicas, False),
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
