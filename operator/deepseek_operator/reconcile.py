"""One reconcile of a DeepSeekDeployment as a pure function:
(resource, observed cluster state, preview signals, now) -> plan, status, events.

The Kopf handlers read the cluster, call `reconcile`, apply the plan and write the status. All
state the next call needs is in the returned status, so the operator may restart anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import labels as L
from .api.resource import DeepSeekDeployment
from .api.status import (
    Colour,
    Condition,
    ConditionType,
    DeepSeekDeploymentStatus,
    Phase,
    RolloutStatus,
    ScalingDecisionStatus,
)
from .checks import ClusterFacts, SpecProblem, spec_problems
from .desired import ColourPlan as RenderPlan
from .desired import (
    Plan,
    batch_router_pool,
    batch_service_name,
    router_batch_name,
    router_name,
    template_hash,
)
from .rollout import (
    TRANSITIONING,
    ColourObservation,
    ColourTarget,
    Event,
    RolloutInputs,
    RolloutPhase,
    RolloutState,
    RolloutStep,
    initial_state,
    step,
)
from .scaling import ScalingDecision
from .signals import Signals

DECISION_REFRESH_SECONDS = 60.0  # a hold for the same reason refreshes lastScalingDecision


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(s: str | None) -> float | None:
    if not s:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class RouterObservation:
    """The router Deployment (spec.router) as observed."""

    exists: bool = False
    replicas: int = 0  # spec.replicas
    available: int = 0  # status.availableReplicas: Ready pods the Service may use
    updated: int = 0  # status.updatedReplicas: pods of the current template
    up_to_date: bool = True  # status.observedGeneration caught up with metadata.generation
    total: int = 0  # status.replicas: its pods of every template, old ones included
    selector: tuple[str, ...] = ()  # the --selector values of its template (the engines found)


@dataclass(frozen=True)
class Observed:
    """The cluster as the handler read it for one DeepSeekDeployment."""

    facts: ClusterFacts = field(default_factory=ClusterFacts)
    deployments: dict[Colour, ColourObservation] = field(default_factory=dict)
    modes: dict[Colour, str] = field(default_factory=dict)  # mode label of each Deployment
    unschedulable_pods: int = 0  # engine pods the scheduler could not place
    unschedulable_message: str = ""
    promote_requested: bool = False
    abort_requested: bool = False
    router: RouterObservation = field(default_factory=RouterObservation)
    # The batch pool's Deployment (spec.router.batch), observed the same way.
    router_batch: RouterObservation = field(default_factory=RouterObservation)

    def colour(self, c: Colour) -> ColourObservation:
        return self.deployments.get(c, ColourObservation())


@dataclass(frozen=True)
class Outcome:
    plan: Plan | None  # None: nothing may be written (invalid spec)
    targets: tuple[ColourTarget, ...]  # per colour: replicas, render or keep template
    status: DeepSeekDeploymentStatus
    events: tuple[Event, ...]
    problems: tuple[SpecProblem, ...] = ()
    rollout: RolloutStep | None = None
    requeue_after: float | None = None


def rollout_state_from_status(status: DeepSeekDeploymentStatus) -> RolloutState | None:
    r = status.rollout
    if r is None or status.active_colour is None or status.template_hash is None:
        return None
    return RolloutState(
        phase=RolloutPhase(r.phase),
        active_colour=status.active_colour,
        active_hash=status.template_hash,
        preview_colour=r.preview_colour,
        preview_hash=r.preview_template_hash,
        started_at=parse_time(r.started_at),
        phase_since=parse_time(r.phase_since),
        requests_baseline=r.requests_baseline,
        errors_baseline=r.errors_baseline,
        failed_hash=r.failed_template_hash,
        message=r.message,
        analysis=tuple(r.analysis),
        stepped=r.stepped,
        stable_replicas=r.stable_replicas,
        stable_base=r.stable_base,
        first_pods_passed=r.first_pods_passed,
        short_since=parse_time(r.short_of_gpus_since),
        step_since=parse_time(r.step_since),
        preview_ready=r.preview_ready,
        rollback_unmixed=r.rollback_unmixed,
        end_phase=RolloutPhase(r.end_phase) if r.end_phase else None,
    )


def rollout_status(s: RolloutState) -> RolloutStatus:
    return RolloutStatus(
        phase=s.phase.value,
        active_colour=s.active_colour,
        preview_colour=s.preview_colour,
        preview_template_hash=s.preview_hash,
        failed_template_hash=s.failed_hash,
        requests_baseline=s.requests_baseline,
        errors_baseline=s.errors_baseline,
        started_at=rfc3339(s.started_at) if s.started_at is not None else None,
        phase_since=rfc3339(s.phase_since) if s.phase_since is not None else None,
        message=s.message,
        analysis=list(s.analysis),
        stepped=s.stepped,
        stable_replicas=s.stable_replicas,
        stable_base=s.stable_base,
        first_pods_passed=s.first_pods_passed,
        short_of_gpus_since=rfc3339(s.short_since) if s.short_since is not None else None,
        step_since=rfc3339(s.step_since) if s.step_since is not None else None,
        preview_ready=s.preview_ready,
        rollback_unmixed=s.rollback_unmixed,
        end_phase=s.end_phase.value if s.end_phase is not None else None,
    )


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: float,
) -> list[Condition]:
    """Conditions with one updated; lastTransitionTime moves only when the status flips."""
    value = "True" if status else "False"
    out: list[Condition] = []
    found = False
    for c in conditions:
        if c.type != type_:
            out.append(c)
            continue
        found = True
        ltt = c.last_transition_time if c.status == value else rfc3339(now)
        out.append(
            Condition(
                type=type_,
                status=value,
                reason=reason,
                message=message,
                last_transition_time=ltt,
                observed_generation=generation,
            )
        )
    if not found:
        out.append(
            Condition(
                type=type_,
                status=value,
                reason=reason,
                message=message,
                last_transition_time=rfc3339(now),
                observed_generation=generation,
            )
        )
    return out


def condition(status: DeepSeekDeploymentStatus, type_: str) -> Condition | None:
    for c in status.conditions:
        if c.type == type_:
            return c
    return None


@dataclass(frozen=True)
class ReconcileContext:
    """What every step of one reconcile looks at: the resource, the cluster as the handler read
    it, the time, and the facts derived from them once (see `observe`)."""

    dsd: DeepSeekDeployment  # spec as the user wrote it, status as the last reconcile left it
    observed: Observed  # the cluster as the handler read it
    now: float  # seconds since the epoch; the only clock a step reads
    preview_signals: Signals | None  # the preview colour's signals, for the rollout's analysis
    generation: int | None  # metadata.generation, stamped on every condition
    desired_replicas: int  # spec.replicas, or scaling.minReplicas when unset
    desired_hash: str  # template hash of the spec's engine pods
    remembered: RolloutState  # the rollout as status remembers it, or a fresh one
    problems: tuple[SpecProblem, ...]  # why the spec cannot be served here; () when it can

    @classmethod
    def observe(
        cls,
        dsd: DeepSeekDeployment,
        observed: Observed,
        now: float,
        preview_signals: Signals | None = None,
    ) -> ReconcileContext:
        """The context of one reconcile, its derived facts computed here and nowhere else."""
        desired_hash = template_hash(dsd.name, dsd.spec, observed.facts.sleep_action)
        return cls(
            dsd=dsd,
            observed=observed,
            now=now,
            preview_signals=preview_signals,
            generation=dsd.metadata.generation,
            desired_replicas=dsd.spec.desired_replicas(),
            desired_hash=desired_hash,
            remembered=rollout_state_from_status(dsd.status) or initial_state(desired_hash),
            problems=tuple(spec_problems(dsd, observed.facts)),
        )


@dataclass(frozen=True)
class Serving:
    """What serves once this reconcile's rollout step is taken (a promotion switches colour)."""

    state: RolloutState  # the rollout after the step (as remembered when the spec is invalid)
    obs: ColourObservation  # the active colour's Deployment
    ready: int  # Ready replicas serving (the active colour's, and a stepped preview's)

    @property
    def active(self) -> Colour:
        return self.state.active_colour

    @property
    def in_flight(self) -> bool:
        return self.state.phase in TRANSITIONING

    @property
    def rolled_back(self) -> bool:
        if self.state.phase is RolloutPhase.ROLLING_BACK:
            return self.state.end_phase is not RolloutPhase.IDLE
        return self.state.phase in (RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED)


@dataclass(frozen=True)
class ConditionUpdate:
    """One condition to set; set_condition keeps its transition time unless status flips."""

    type: str
    status: bool
    reason: str
    message: str


def reconcile(
    dsd: DeepSeekDeployment,
    observed: Observed,
    now: float,
    preview_signals: Signals | None = None,
) -> Outcome:
    """Decide what the DeepSeekDeployment's objects and status should be."""
    ctx = ReconcileContext.observe(dsd, observed, now, preview_signals)
    rstep = _step_rollout(ctx)
    serving = _serving_after(ctx, rstep)
    degraded = _degraded_reasons(ctx, serving)
    updates = (
        _invalid_spec_condition(ctx),
        _ready_condition(ctx, serving),
        _progressing_condition(ctx, serving),
        _gpu_capacity_condition(ctx),
        _rollout_condition(serving),
        _degraded_condition(degraded),
        _router_condition(ctx),
        _batch_router_condition(ctx),
    )
    conditions = _apply_conditions(
        _without_router_condition(ctx, dsd.status.conditions), updates, ctx.generation, now
    )
    return Outcome(
        plan=_plan_objects(ctx, rstep),
        targets=_rollout_targets(rstep),
        status=_status_after(ctx, serving, conditions, _overall_phase(ctx, serving, degraded)),
        events=_invalid_spec_events(ctx) + (rstep.events if rstep is not None else ()),
        problems=ctx.problems,
        rollout=rstep,
        requeue_after=rstep.recheck_after if rstep is not None else None,
    )


def _apply_conditions(
    conditions: list[Condition],
    updates: tuple[ConditionUpdate | None, ...],
    generation: int | None,
    now: float,
) -> list[Condition]:
    """`conditions` with each update set in turn; None leaves a condition to its other owner."""
    out = list(conditions)
    for u in updates:
        if u is not None:
            out = set_condition(out, u.type, u.status, u.reason, u.message, generation, now)
    return out


def _problem_text(problems: tuple[SpecProblem, ...]) -> str:
    return "; ".join(f"{p.field}: {p.message}" for p in problems)


def _invalid_spec_condition(ctx: ReconcileContext) -> ConditionUpdate:
    """InvalidSpec: every problem, by field; the first one's reason."""
    if ctx.problems:
        return ConditionUpdate(
            ConditionType.INVALID_SPEC,
            True,
            ctx.problems[0].reason,
            _problem_text(ctx.problems),
        )
    return ConditionUpdate(ConditionType.INVALID_SPEC, False, "SpecValid", "the spec can be served")


def _invalid_spec_events(ctx: ReconcileContext) -> tuple[Event, ...]:
    """A warning when the spec becomes invalid or its problems change; not on every reconcile."""
    if not ctx.problems:
        return ()
    text = _problem_text(ctx.problems)
    c = condition(ctx.dsd.status, ConditionType.INVALID_SPEC)
    if c is not None and c.status == "True" and c.message == text:
        return ()
    return (Event("Warning", ctx.problems[0].reason, text + "; nothing was changed"),)


def _rollout_inputs(ctx: ReconcileContext) -> RolloutInputs:
    """The rollout's view of this reconcile, seen from the remembered active colour."""
    active = ctx.remembered.active_colour
    spec = ctx.dsd.spec
    return RolloutInputs(
        desired_hash=ctx.desired_hash,
        desired_replicas=ctx.desired_replicas,
        settings=spec.rollout,
        default_max_ttft=spec.scaling.slo.ttft_p99_seconds,
        active=ctx.observed.colour(active),
        other=ctx.observed.colour(active.other()),
        preview_signals=ctx.preview_signals,
        promote_requested=ctx.observed.promote_requested,
        abort_requested=ctx.observed.abort_requested,
        router_settled=_router_settled(ctx, active),
    )


def _router_settled(ctx: ReconcileContext, active: Colour) -> bool:
    """Whether the old colour may go as far as the routers are concerned: for the main pool and
    the batch pool each, no router, or no router pod of an older template left, one of the
    current template available, and that template discovers the active colour (or both)."""
    if not ctx.dsd.spec.router.enabled:
        return True
    batch = ctx.observed.router_batch if batch_router_pool(ctx.dsd) is not None else None
    return _pool_settled(ctx.observed.router, active) and (
        batch is None or _pool_settled(batch, active)
    )


def _pool_settled(r: RouterObservation, active: Colour) -> bool:
    if not r.exists:
        return True
    colours = [s for s in r.selector if s.startswith(f"{L.COLOUR}=")]
    finds_active = not colours or colours == [f"{L.COLOUR}={active.value}"]
    return finds_active and r.up_to_date and r.updated == r.total and r.available > 0


def _step_rollout(ctx: ReconcileContext) -> RolloutStep | None:
    """The rollout's step, or None for an invalid spec: nothing is written, the rollout waits."""
    if ctx.problems:
        return None
    return step(ctx.remembered, _rollout_inputs(ctx), ctx.now)


def _rollout_targets(rstep: RolloutStep | None) -> tuple[ColourTarget, ...]:
    """Per colour: replicas, and whether its template is rendered from the spec."""
    if rstep is None:
        return ()
    return (rstep.active,) + ((rstep.other,) if rstep.other is not None else ())


def _plan_objects(ctx: ReconcileContext, rstep: RolloutStep | None) -> Plan | None:
    """The objects to write: a Deployment for each colour rendered from the spec (a colour that
    keeps an older template is only scaled), and the rest around the active colour."""
    if rstep is None:
        return None
    return Plan(
        active_colour=rstep.active.colour,
        mixed=rstep.mixed,
        deployments=tuple(
            RenderPlan(t.colour, ctx.dsd.spec, t.replicas)
            for t in _rollout_targets(rstep)
            if t.render_spec
        ),
        monitoring_crds=ctx.observed.facts.monitoring_crds,
        sleep_action=ctx.observed.facts.sleep_action,
        router_available=_router_available(ctx),
    )


def _router_available(ctx: ReconcileContext) -> bool:
    """Whether the stable Service may select the router pods: the router is wanted and at
    least one of its replicas is available (else the engines stand in for it)."""
    return ctx.dsd.spec.router.enabled and ctx.observed.router.available > 0


def _router_condition(ctx: ReconcileContext) -> ConditionUpdate | None:
    """RouterReady, while spec.router.enabled: every router replica available (a rolling
    update that keeps them all available stays True, its progress in the message)."""
    if not ctx.dsd.spec.router.enabled:
        return None
    service = ctx.dsd.name
    return _pool_condition(
        ConditionType.ROUTER_READY,
        "Router",
        "router",
        router_name(ctx.dsd.name),
        ctx.observed.router,
        ctx.dsd.spec.router.replicas,
        f"the Service {service} selects the engines until a router replica is available",
        f"the Service {service} selects the engines directly until one is",
    )


def _batch_router_condition(ctx: ReconcileContext) -> ConditionUpdate | None:
    """BatchRouterReady, while spec.router.batch is in use: as RouterReady, for the batch pool
    behind the Service <name>-batch (which has no stand-in: no batch pod, no endpoints)."""
    pool = batch_router_pool(ctx.dsd)
    if pool is None:
        return None
    service = batch_service_name(ctx.dsd.name)
    return _pool_condition(
        ConditionType.BATCH_ROUTER_READY,
        "BatchRouter",
        "batch router",
        router_batch_name(ctx.dsd.name),
        ctx.observed.router_batch,
        pool.replicas,
        f"the Service {service} has no endpoints until a batch router replica is available",
        f"the Service {service} has no endpoints until one is",
    )


def _pool_condition(
    cond: ConditionType,
    prefix: str,
    label: str,
    name: str,
    r: RouterObservation,
    want: int,
    until_created: str,
    until_available: str,
) -> ConditionUpdate:
    """The readiness condition of one router pool (reasons `<prefix>Missing`, `...Available`,
    `...RollingOut`, `...Unavailable`, `...ReplicasUnavailable`); the two tails say what its
    Service selects meanwhile."""
    if not r.exists:
        return ConditionUpdate(
            cond,
            False,
            f"{prefix}Missing",
            f"the {label} Deployment {name} does not exist yet; {until_created}",
        )
    if r.available >= want:
        rolling = not r.up_to_date or r.updated < want
        return ConditionUpdate(
            cond,
            True,
            f"{prefix}RollingOut" if rolling else f"{prefix}Available",
            f"{r.available}/{want} {label} replicas available"
            + (f", {r.updated} of the current version" if rolling else ""),
        )
    if r.available == 0:
        return ConditionUpdate(
            cond,
            False,
            f"{prefix}Unavailable",
            f"0/{want} {label} replicas available (a router pod is Ready once it knows a "
            f"healthy engine); {until_available}",
        )
    return ConditionUpdate(
        cond,
        False,
        f"{prefix}ReplicasUnavailable",
        f"{r.available}/{want} {label} replicas available",
    )


def _without_router_condition(
    ctx: ReconcileContext, conditions: list[Condition]
) -> list[Condition]:
    """Conditions without RouterReady once the router is off, without BatchRouterReady once
    its batch pool is: nothing there, nothing to report."""
    gone = set()
    if not ctx.dsd.spec.router.enabled:
        gone.add(ConditionType.ROUTER_READY.value)
    if batch_router_pool(ctx.dsd) is None:
        gone.add(ConditionType.BATCH_ROUTER_READY.value)
    return [c for c in conditions if c.type not in gone]


def _serving_after(ctx: ReconcileContext, rstep: RolloutStep | None) -> Serving:
    """What serves after the rollout step: the status reports on that colour."""
    state = rstep.state if rstep is not None else ctx.remembered
    obs = ctx.observed.colour(state.active_colour)
    ready = obs.ready if obs.exists else 0
    if rstep is not None and rstep.mixed:  # a stepped transition: both colours serve
        other = ctx.observed.colour(state.active_colour.other())
        ready = min(ctx.desired_replicas, ready + (other.ready if other.exists else 0))
    return Serving(state=state, obs=obs, ready=ready)


def _all_ready(ctx: ReconcileContext, serving: Serving) -> bool:
    return serving.obs.exists and serving.ready >= ctx.desired_replicas


def _ready_condition(ctx: ReconcileContext, serving: Serving) -> ConditionUpdate:
    """Ready: the active colour has every desired replica Ready (0 of 0 counts)."""
    n = ctx.desired_replicas
    ok = _all_ready(ctx, serving)
    reason = ("AllReplicasReady" if n else "ScaledToZero") if ok else "ReplicasNotReady"
    message = f"{serving.ready}/{n} replicas of {serving.active} Ready"
    return ConditionUpdate(ConditionType.READY, ok, reason, message)


def _progressing_condition(ctx: ReconcileContext, serving: Serving) -> ConditionUpdate:
    """Progressing: a rollout in flight, or the active colour still reaching its replicas."""
    n, ready, active = ctx.desired_replicas, serving.ready, serving.active
    if serving.in_flight:
        return ConditionUpdate(
            ConditionType.PROGRESSING,
            True,
            f"Rollout{serving.state.phase.value}",
            serving.state.message,
        )
    if serving.obs.exists and (serving.obs.replicas != n or ready < n):
        return ConditionUpdate(
            ConditionType.PROGRESSING,
            True,
            "ScalingReplicas",
            f"{ready}/{n} replicas of {active} Ready",
        )
    return ConditionUpdate(
        ConditionType.PROGRESSING, False, "Stable", f"{active} serves {ready} Ready replicas"
    )


def _gpu_capacity_condition(ctx: ReconcileContext) -> ConditionUpdate | None:
    """ScalingLimited from GPU capacity: True while engine pods cannot be scheduled. Cleared
    only where GPU capacity set it (or nobody did): the autoscaler owns its other reasons."""
    o = ctx.observed
    if o.unschedulable_pods:
        return ConditionUpdate(
            ConditionType.SCALING_LIMITED,
            True,
            "InsufficientGPUCapacity",
            f"{o.unschedulable_pods} engine pod(s) cannot be scheduled: {o.unschedulable_message}",
        )
    c = condition(ctx.dsd.status, ConditionType.SCALING_LIMITED)
    if c is None or c.reason == "InsufficientGPUCapacity":
        return ConditionUpdate(
            ConditionType.SCALING_LIMITED,
            False,
            "GPUCapacityAvailable",
            "every engine pod is scheduled",
        )
    return None


def _rollout_condition(serving: Serving) -> ConditionUpdate:
    """RolloutHealthy: False after a rollback or abort; the rollout's phase and message."""
    st = serving.state
    return ConditionUpdate(
        ConditionType.ROLLOUT,
        not serving.rolled_back,
        st.phase.value,
        st.message or f"{serving.active} serves template {st.active_hash}",
    )


def _degraded_reasons(ctx: ReconcileContext, serving: Serving) -> tuple[tuple[str, str], ...]:
    """(reason, message) for each way the latest spec is not what serves, most important
    first: an invalid spec over a serving version, a rolled back or aborted spec, replicas
    short for want of GPUs, a compressed rung the quantization policy chose."""
    n, ready, exists = ctx.desired_replicas, serving.ready, serving.obs.exists
    reasons: list[tuple[str, str]] = []
    if ctx.problems and exists:
        reasons.append(
            ("InvalidSpec", "the latest spec cannot be served; the previous one still serves")
        )
    if serving.rolled_back and serving.state.failed_hash == ctx.desired_hash:
        reasons.append((serving.state.phase.value, serving.state.message))
    if exists and 0 < ready < n and ctx.observed.unschedulable_pods:
        reasons.append(("ReplicasUnschedulable", f"{ready}/{n} replicas Ready"))
    q = ctx.dsd.spec.quantization
    served = ctx.observed.modes.get(serving.active)
    top = q.ladder[0].name
    if q.policy.automatic and exists and served is not None and served != top:
        reasons.append(
            (
                "ReducedPrecision",
                f"serving quantization rung {served} instead of {top} under GPU pressure "
                "(quantization.policy.automatic); it steps back up once the load fits",
            )
        )
    return tuple(reasons)


def _degraded_condition(reasons: tuple[tuple[str, str], ...]) -> ConditionUpdate:
    """Degraded: any degraded reason; the first one's reason, all their messages."""
    return ConditionUpdate(
        ConditionType.DEGRADED,
        bool(reasons),
        reasons[0][0] if reasons else "AsDesired",
        "; ".join(m for _, m in reasons) or "serving the latest spec",
    )


def _overall_phase(
    ctx: ReconcileContext, serving: Serving, degraded: tuple[tuple[str, str], ...]
) -> Phase:
    """status.phase, the first that holds: Failed (invalid and nothing serves), Progressing
    (rollout), Degraded, Ready, Pending (nothing Ready), else Progressing."""
    if ctx.problems and not serving.obs.exists:
        return Phase.FAILED
    if serving.in_flight:
        return Phase.PROGRESSING
    if degraded:
        return Phase.DEGRADED
    if _all_ready(ctx, serving):
        return Phase.READY
    if serving.ready == 0:
        return Phase.PENDING
    return Phase.PROGRESSING


def _status_after(
    ctx: ReconcileContext, serving: Serving, conditions: list[Condition], phase: Phase
) -> DeepSeekDeploymentStatus:
    """The status to write: the last one with what this reconcile observed and decided."""
    dsd, active = ctx.dsd, serving.active
    return dsd.status.model_copy(
        update={
            "observed_generation": ctx.generation,
            "phase": phase,
            "conditions": conditions,
            "replicas": serving.obs.replicas if serving.obs.exists else 0,
            "ready_replicas": serving.ready,
            "desired_replicas": ctx.desired_replicas,
            "selector": L.selector_string(L.engine_selector(dsd.name, active.value)),
            "active_colour": active,
            "preview_colour": serving.state.preview_colour,
            "template_hash": serving.state.active_hash,
            "mode": ctx.observed.modes.get(active) or dsd.spec.quantization.current().name,
            "rollout": rollout_status(serving.state),
        }
    )


def with_scaling(
    status: DeepSeekDeploymentStatus,
    decision: ScalingDecision,
    current: int,
    now: float,
    generation: int | None,
) -> DeepSeekDeploymentStatus:
    """Status after an autoscaling decision: its memory, the last decision when it changed
    replicas or its reason, and the MetricsAvailable / ScalingLimited conditions, and SLOMet
    once the SLO attainment can be judged (until then, and on a hold, left as it was)."""
    updates = (
        _metrics_available_condition(decision),
        _autoscaler_limit_condition(status, decision),
        None if decision.slo is None else ConditionUpdate(ConditionType.SLO_MET, *decision.slo),
    )
    update: dict[str, object] = {
        "scaling": decision.state,
        "conditions": _apply_conditions(status.conditions, updates, generation, now),
    }
    record = _decision_record(status, decision, current, now)
    if record is not None:
        update["last_scaling_decision"] = record
    return status.model_copy(update=update)


def slo_event(status: DeepSeekDeploymentStatus, decision: ScalingDecision) -> Event | None:
    """The Event of a decision that flips SLOMet (or first judges it not met): a Warning when
    attainment falls below its target, Normal when it is met again."""
    if decision.slo is None:
        return None
    met, _, message = decision.slo
    before = condition(status, ConditionType.SLO_MET)
    if (before is None and met) or (before is not None and (before.status == "True") == met):
        return None
    if met:
        return Event("Normal", "SLOAttainmentMet", message)
    return Event("Warning", "SLOAttainmentBelowTarget", message)


def _metrics_available_condition(decision: ScalingDecision) -> ConditionUpdate:
    """MetricsAvailable: whether the autoscaler had fresh engine metrics to decide on."""
    if decision.metrics_ok:
        return ConditionUpdate(
            ConditionType.METRICS_AVAILABLE, True, "SignalsFresh", "engine metrics are fresh"
        )
    return ConditionUpdate(
        ConditionType.METRICS_AVAILABLE, False, decision.reason, decision.message
    )


def _autoscaler_limit_condition(
    status: DeepSeekDeploymentStatus, decision: ScalingDecision
) -> ConditionUpdate | None:
    """ScalingLimited from the autoscaler: its limit, or cleared, except that a GPU-capacity
    limit (set by the reconcile from unschedulable pods) is left to the reconcile."""
    if decision.limited is not None:
        return ConditionUpdate(ConditionType.SCALING_LIMITED, True, *decision.limited)
    c = condition(status, ConditionType.SCALING_LIMITED)
    if c is not None and c.status == "True" and c.reason == "InsufficientGPUCapacity":
        return None
    return ConditionUpdate(
        ConditionType.SCALING_LIMITED,
        False,
        "WithinLimits",
        "the autoscaler's recommendation fits minReplicas, maxReplicas and GPU capacity",
    )


def _decision_record(
    status: DeepSeekDeploymentStatus, decision: ScalingDecision, current: int, now: float
) -> ScalingDecisionStatus | None:
    """status.lastScalingDecision when the decision changes replicas or its reason, or when
    the last one is DECISION_REFRESH_SECONDS old; None keeps the last one (a hold for the same
    reason is not news, but its numbers go stale: the first hold, before a rate was known,
    stood in the demo's status for a minute and a half while the operator planned every tick)."""
    last = status.last_scaling_decision
    if decision.replicas == current and last is not None and last.reason == decision.reason:
        try:
            then = parse_time(last.time)
        except ValueError:
            then = None
        if then is not None and now - then < DECISION_REFRESH_SECONDS:
            return None
    return ScalingDecisionStatus(
        time=rfc3339(now),
        from_replicas=current,
        to_replicas=decision.replicas,
        reason=decision.reason,
        message=decision.message[:4096],
        signals=decision.signals,
    )
