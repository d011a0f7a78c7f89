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
from .desired import Plan, template_hash
from .rollout import (
    IN_FLIGHT,
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


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(s: str | None) -> float | None:
    if not s:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


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


def reconcile(
    dsd: DeepSeekDeployment,
    observed: Observed,
    now: float,
    preview_signals: Signals | None = None,
) -> Outcome:
    """Decide what the DeepSeekDeployment's objects and status should be."""
    old = dsd.status
    gen = dsd.metadata.generation
    desired_replicas = dsd.spec.desired_replicas()
    desired_hash = template_hash(dsd.name, dsd.spec)
    state = rollout_state_from_status(old) or initial_state(desired_hash)
    conditions = list(old.conditions)
    events: list[Event] = []

    problems = tuple(spec_problems(dsd, observed.facts))
    was_invalid = (
        c := condition(old, ConditionType.INVALID_SPEC)
    ) is not None and c.status == "True"
    problem_text = "; ".join(f"{p.field}: {p.message}" for p in problems)
    if problems:
        conditions = set_condition(
            conditions, ConditionType.INVALID_SPEC, True, problems[0].reason, problem_text, gen, now
        )
        if not was_invalid or (c is not None and c.message != problem_text):
            events.append(
                Event("Warning", problems[0].reason, problem_text + "; nothing was changed")
            )
    else:
        conditions = set_condition(
            conditions,
            ConditionType.INVALID_SPEC,
            False,
            "SpecValid",
            "the spec can be served",
            gen,
            now,
        )

    active_obs = observed.colour(state.active_colour)
    other_obs = observed.colour(state.active_colour.other())

    rstep: RolloutStep | None = None
    plan: Plan | None = None
    targets: tuple[ColourTarget, ...] = ()
    requeue: float | None = None
    if not problems:
        rstep = step(
            state,
            RolloutInputs(
                desired_hash=desired_hash,
                desired_replicas=desired_replicas,
                settings=dsd.spec.rollout,
                default_max_ttft=dsd.spec.scaling.slo.ttft_p99_seconds,
                active=active_obs,
                other=other_obs,
                preview_signals=preview_signals,
                promote_requested=observed.promote_requested,
                abort_requested=observed.abort_requested,
            ),
            now,
        )
        state = rstep.state
        events += rstep.events
        requeue = rstep.recheck_after
        targets = (rstep.active,) + ((rstep.other,) if rstep.other is not None else ())
        plan = Plan(
            active_colour=rstep.active.colour,
            deployments=tuple(
                RenderPlan(t.colour, dsd.spec, t.replicas) for t in targets if t.render_spec
            ),
            monitoring_crds=observed.facts.monitoring_crds,
        )

    # What serves now (after this step's switch, if any).
    active = state.active_colour
    a_obs = observed.colour(active)
    ready = a_obs.ready if a_obs.exists else 0
    in_flight = state.phase in IN_FLIGHT

    ready_ok = a_obs.exists and ready >= desired_replicas
    conditions = set_condition(
        conditions,
        ConditionType.READY,
        ready_ok,
        ("AllReplicasReady" if desired_replicas else "ScaledToZero")
        if ready_ok
        else "ReplicasNotReady",
        f"{ready}/{desired_replicas} replicas of {active} Ready",
        gen,
        now,
    )
    if in_flight:
        prog = (True, f"Rollout{state.phase.value}", state.message)
    elif a_obs.exists and (a_obs.replicas != desired_replicas or ready < desired_replicas):
        prog = (True, "ScalingReplicas", f"{ready}/{desired_replicas} replicas of {active} Ready")
    else:
        prog = (False, "Stable", f"{active} serves {ready} Ready replicas")
    conditions = set_condition(conditions, ConditionType.PROGRESSING, *prog, gen, now)

    if observed.unschedulable_pods:
        conditions = set_condition(
            conditions,
            ConditionType.SCALING_LIMITED,
            True,
            "InsufficientGPUCapacity",
            f"{observed.unschedulable_pods} engine pod(s) cannot be scheduled: "
            f"{observed.unschedulable_message}",
            gen,
            now,
        )
    elif (
        c := condition(old, ConditionType.SCALING_LIMITED)
    ) is None or c.reason == "InsufficientGPUCapacity":
        conditions = set_condition(
            conditions,
            ConditionType.SCALING_LIMITED,
            False,
            "GPUCapacityAvailable",
            "every engine pod is scheduled",
            gen,
            now,
        )

    rolled_back = state.phase in (RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED)
    conditions = set_condition(
        conditions,
        ConditionType.ROLLOUT,
        not rolled_back,
        state.phase.value,
        state.message or f"{active} serves template {state.active_hash}",
        gen,
        now,
    )

    degraded_reasons = []
    if problems and a_obs.exists:
        degraded_reasons.append(
            ("InvalidSpec", "the latest spec cannot be served; the previous one still serves")
        )
    if rolled_back and state.failed_hash == desired_hash:
        degraded_reasons.append((state.phase.value, state.message))
    if a_obs.exists and 0 < ready < desired_replicas and observed.unschedulable_pods:
        degraded_reasons.append(
            ("ReplicasUnschedulable", f"{ready}/{desired_replicas} replicas Ready")
        )
    conditions = set_condition(
        conditions,
        ConditionType.DEGRADED,
        bool(degraded_reasons),
        degraded_reasons[0][0] if degraded_reasons else "AsDesired",
        "; ".join(m for _, m in degraded_reasons) or "serving the latest spec",
        gen,
        now,
    )

    if problems and not a_obs.exists:
        phase = Phase.FAILED
    elif in_flight:
        phase = Phase.PROGRESSING
    elif degraded_reasons:
        phase = Phase.DEGRADED
    elif ready_ok:
        phase = Phase.READY
    elif ready == 0:
        phase = Phase.PENDING
    else:
        phase = Phase.PROGRESSING

    status = old.model_copy(
        update={
            "observed_generation": gen,
            "phase": phase,
            "conditions": conditions,
            "replicas": a_obs.replicas if a_obs.exists else 0,
            "ready_replicas": ready,
            "desired_replicas": desired_replicas,
            "selector": L.selector_string(L.engine_selector(dsd.name, active.value)),
            "active_colour": active,
            "preview_colour": state.preview_colour,
            "template_hash": state.active_hash,
            "mode": observed.modes.get(active) or dsd.spec.quantization.current().name,
            "rollout": rollout_status(state),
        }
    )
    return Outcome(
        plan=plan,
        targets=targets,
        status=status,
        events=tuple(events),
        problems=problems,
        rollout=rstep,
        requeue_after=requeue,
    )


def with_scaling(
    status: DeepSeekDeploymentStatus,
    decision: ScalingDecision,
    current: int,
    now: float,
    generation: int | None,
) -> DeepSeekDeploymentStatus:
    """Status after an autoscaling decision: its memory, the last decision when it changed
    replicas or its reason, and the MetricsAvailable / ScalingLimited conditions."""
    conditions = set_condition(
        list(status.conditions),
        ConditionType.METRICS_AVAILABLE,
        decision.metrics_ok,
        "SignalsFresh" if decision.metrics_ok else decision.reason,
        "engine metrics are fresh" if decision.metrics_ok else decision.message,
        generation,
        now,
    )
    gpu_limited = (c := condition(status, ConditionType.SCALING_LIMITED)) is not None and (
        c.status == "True" and c.reason == "InsufficientGPUCapacity"
    )
    if decision.limited is not None:
        conditions = set_condition(
            conditions, ConditionType.SCALING_LIMITED, True, *decision.limited, generation, now
        )
    elif not gpu_limited:
        conditions = set_condition(
            conditions,
            ConditionType.SCALING_LIMITED,
            False,
            "WithinLimits",
            "the autoscaler's recommendation fits minReplicas, maxReplicas and GPU capacity",
            generation,
            now,
        )
    last = status.last_scaling_decision
    record = decision.replicas != current or last is None or last.reason != decision.reason
    update: dict[str, object] = {"scaling": decision.state, "conditions": conditions}
    if record:
        update["last_scaling_decision"] = ScalingDecisionStatus(
            time=rfc3339(now),
            from_replicas=current,
            to_replicas=decision.replicas,
            reason=decision.reason,
            message=decision.message[:4096],
            signals=decision.signals,
        )
    return status.model_copy(update=update)
