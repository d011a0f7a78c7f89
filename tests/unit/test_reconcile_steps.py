"""Each named step of reconcile (and with_scaling) on its own, as a table. test_reconcile.py
drives the whole composition."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from deepseek_operator import reconcile as R
from deepseek_operator.api import Colour, DeepSeekDeployment
from deepseek_operator.api.status import Condition, DeepSeekDeploymentStatus, Phase
from deepseek_operator.checks import ClusterFacts, GpuNode
from deepseek_operator.desired import template_hash
from deepseek_operator.reconcile import (
    ConditionUpdate,
    Observed,
    ReconcileContext,
    Serving,
    rfc3339,
)
from deepseek_operator.rollout import ColourObservation, ColourTarget, RolloutPhase, RolloutState
from deepseek_operator.scaling import ScalingDecision

B, G = Colour.BLUE, Colour.GREEN
FACTS = ClusterFacts(
    gpu_nodes=(GpuNode("n1", "NVIDIA-H100-80GB-HBM3", "a", 8),), pvcs=frozenset({"w"})
)
BAD = {"resources": {"gpusPerReplica": 16}}  # more GPUs than any node has


def dsd(conditions: list[Condition] | None = None, **spec: Any) -> DeepSeekDeployment:
    body: dict[str, Any] = {"model": {"checkpoint": "m"}, "replicas": 2}
    body.update(spec)
    d = DeepSeekDeployment.from_k8s(
        {"metadata": {"name": "r1", "namespace": "ns", "uid": "u", "generation": 4}, "spec": body}
    )
    if conditions:
        d = d.model_copy(update={"status": DeepSeekDeploymentStatus(conditions=conditions)})
    return d


def cond(type_: str, status: str, reason: str, message: str = "m") -> Condition:
    return Condition(
        type=type_, status=status, reason=reason, message=message, last_transition_time="t"
    )


def ctx(d: DeepSeekDeployment | None = None, **observed: Any) -> ReconcileContext:
    return ReconcileContext.observe(d or dsd(), Observed(facts=FACTS, **observed), 100.0)


def dep(ready: int, replicas: int = 2) -> ColourObservation:
    return ColourObservation(
        exists=True, replicas=replicas, ready=ready, updated=replicas, template_hash="h"
    )


def serving(
    ready: int = 2,
    replicas: int = 2,
    exists: bool = True,
    phase: RolloutPhase = RolloutPhase.IDLE,
    **state: Any,
) -> Serving:
    obs = dep(ready, replicas) if exists else ColourObservation()
    st = RolloutState(phase, state.pop("active_colour", B), state.pop("active_hash", "h"), **state)
    return Serving(state=st, obs=obs, ready=ready if exists else 0)


# The context.


def test_observe_starts_a_fresh_rollout_state_or_restores_it() -> None:
    fresh = ctx()
    h = template_hash("r1", dsd().spec)
    assert (fresh.desired_hash, fresh.desired_replicas, fresh.generation) == (h, 2, 4)
    assert fresh.remembered == RolloutState(RolloutPhase.IDLE, B, h)
    assert fresh.problems == ()
    status = DeepSeekDeploymentStatus(
        active_colour=G,
        template_hash="h-old",
        rollout=R.rollout_status(RolloutState(RolloutPhase.COMPLETED, G, "h-old")),
    )
    restored = ctx(dsd().model_copy(update={"status": status}))
    assert restored.remembered == RolloutState(RolloutPhase.COMPLETED, G, "h-old")
    assert [p.reason for p in ctx(dsd(**BAD)).problems] == ["GPUsPerReplicaExceedNode"]


# Spec checks.


def test_invalid_spec_condition() -> None:
    assert R._invalid_spec_condition(ctx()) == ConditionUpdate(
        "InvalidSpec", False, "SpecValid", "the spec can be served"
    )
    bad = R._invalid_spec_condition(ctx(dsd(**BAD)))
    assert (bad.status, bad.reason) == (True, "GPUsPerReplicaExceedNode")
    assert bad.message.startswith("spec.resources.gpusPerReplica: ")


BAD_TEXT = R._problem_text(ctx(dsd(**BAD)).problems)
SPEC_EVENTS = [
    # (case, old InvalidSpec condition, spec invalid, warned)
    ("valid spec", None, False, False),
    ("newly invalid", None, True, True),
    ("was valid", cond("InvalidSpec", "False", "SpecValid", BAD_TEXT), True, True),
    ("same problems, already told", cond("InvalidSpec", "True", "X", BAD_TEXT), True, False),
    ("problems changed", cond("InvalidSpec", "True", "X", "other"), True, True),
]


@pytest.mark.parametrize(
    ("old", "invalid", "warned"), [c[1:] for c in SPEC_EVENTS], ids=[c[0] for c in SPEC_EVENTS]
)
def test_invalid_spec_events_warn_once_per_set_of_problems(
    old: Condition | None, invalid: bool, warned: bool
) -> None:
    d = dsd([old] if old else None, **(BAD if invalid else {}))
    events = R._invalid_spec_events(ctx(d))
    assert [(e.type, e.reason) for e in events] == (
        [("Warning", "GPUsPerReplicaExceedNode")] if warned else []
    )
    if warned:
        assert events[0].message == BAD_TEXT + "; nothing was changed"


# The rollout step and the objects to write.


def test_rollout_inputs_are_seen_from_the_remembered_active_colour() -> None:
    status = DeepSeekDeploymentStatus(
        active_colour=G,
        template_hash="h-old",
        rollout=R.rollout_status(RolloutState(RolloutPhase.COMPLETED, G, "h-old")),
    )
    c = ctx(
        dsd().model_copy(update={"status": status}),
        deployments={G: dep(2), B: dep(0, 0)},
        promote_requested=True,
    )
    inp = R._rollout_inputs(c)
    assert (inp.active, inp.other) == (dep(2), dep(0, 0))
    assert (inp.desired_hash, inp.desired_replicas, inp.promote_requested) == (
        c.desired_hash,
        2,
        True,
    )
    assert inp.default_max_ttft == c.dsd.spec.scaling.slo.ttft_p99_seconds


def test_step_rollout_waits_on_an_invalid_spec() -> None:
    assert R._step_rollout(ctx(dsd(**BAD))) is None
    out = R._step_rollout(ctx())
    assert out is not None and out.state.phase is RolloutPhase.IDLE


T_BLUE, T_GREEN = ColourTarget(B, 2, False), ColourTarget(G, 2, True)


@pytest.mark.parametrize(
    ("other", "want"),
    [(None, (T_BLUE,)), (T_GREEN, (T_BLUE, T_GREEN))],
    ids=["active only", "both colours"],
)
def test_rollout_targets(other: ColourTarget | None, want: tuple[ColourTarget, ...]) -> None:
    step = R._step_rollout(ctx())
    assert step is not None
    assert R._rollout_targets(replace(step, active=T_BLUE, other=other)) == want
    assert R._rollout_targets(None) == ()


def test_plan_renders_only_the_colours_that_take_the_spec() -> None:
    c = ctx()
    step = R._step_rollout(c)
    assert step is not None
    plan = R._plan_objects(c, replace(step, active=T_BLUE, other=T_GREEN))
    assert plan is not None and plan.active_colour is B
    assert [(d.colour, d.replicas) for d in plan.deployments] == [(G, 2)]
    assert plan.monitoring_crds is False
    assert R._plan_objects(c, None) is None


def test_serving_after_follows_a_promotion() -> None:
    c = ctx(deployments={B: dep(2), G: dep(1)})
    step = R._step_rollout(c)
    assert step is not None
    promoted = replace(step, state=replace(step.state, active_colour=G))
    s = R._serving_after(c, promoted)
    assert (s.active, s.obs, s.ready) == (G, dep(1), 1)
    invalid = R._serving_after(ctx(dsd(**BAD)), None)
    assert (invalid.active, invalid.obs.exists, invalid.ready) == (B, False, 0)


# Conditions.

READY = [
    ("all Ready", 2, serving(2), (True, "AllReplicasReady", "2/2 replicas of blue Ready")),
    ("scaled to zero", 0, serving(0, 0), (True, "ScaledToZero", "0/0 replicas of blue Ready")),
    ("short", 2, serving(1), (False, "ReplicasNotReady", "1/2 replicas of blue Ready")),
    (
        "missing",
        0,
        serving(exists=False),
        (False, "ReplicasNotReady", "0/0 replicas of blue Ready"),
    ),
]


@pytest.mark.parametrize(
    ("replicas", "srv", "want"), [c[1:] for c in READY], ids=[c[0] for c in READY]
)
def test_ready_condition(replicas: int, srv: Serving, want: tuple[bool, str, str]) -> None:
    c = ctx(dsd(replicas=replicas, scaling={"minReplicas": 0, "scaleToZero": True}))
    assert R._ready_condition(c, srv) == ConditionUpdate("Ready", *want)


PROGRESSING = [
    (
        "rollout in flight",
        serving(phase=RolloutPhase.ANALYZING, preview_colour=G, message="analysing"),
        (True, "RolloutAnalyzing", "analysing"),
    ),
    ("replicas short", serving(1), (True, "ScalingReplicas", "1/2 replicas of blue Ready")),
    ("replicas over", serving(2, 3), (True, "ScalingReplicas", "2/2 replicas of blue Ready")),
    ("stable", serving(2), (False, "Stable", "blue serves 2 Ready replicas")),
    ("nothing yet", serving(exists=False), (False, "Stable", "blue serves 0 Ready replicas")),
]


@pytest.mark.parametrize(
    ("srv", "want"), [c[1:] for c in PROGRESSING], ids=[c[0] for c in PROGRESSING]
)
def test_progressing_condition(srv: Serving, want: tuple[bool, str, str]) -> None:
    assert R._progressing_condition(ctx(), srv) == ConditionUpdate("Progressing", *want)


GPU = [
    # (case, unschedulable pods, old ScalingLimited, want (status, reason) or None)
    ("pods unschedulable", 2, None, (True, "InsufficientGPUCapacity")),
    ("no condition yet", 0, None, (False, "GPUCapacityAvailable")),
    (
        "capacity came back",
        0,
        cond("ScalingLimited", "True", "InsufficientGPUCapacity"),
        (False, "GPUCapacityAvailable"),
    ),
    ("the autoscaler's limit is its own", 0, cond("ScalingLimited", "True", "AtMax"), None),
]


@pytest.mark.parametrize(("pods", "old", "want"), [c[1:] for c in GPU], ids=[c[0] for c in GPU])
def test_gpu_capacity_condition(
    pods: int, old: Condition | None, want: tuple[bool, str] | None
) -> None:
    c = ctx(
        dsd([old] if old else None),
        unschedulable_pods=pods,
        unschedulable_message="0/9 nodes are available",
    )
    got = R._gpu_capacity_condition(c)
    assert (None if got is None else (got.status, got.reason)) == want
    if pods:
        assert got is not None
        assert got.message == "2 engine pod(s) cannot be scheduled: 0/9 nodes are available"


ROLLOUT = [
    ("idle", serving(), (True, "Idle", "blue serves template h")),
    (
        "completed",
        serving(phase=RolloutPhase.COMPLETED, message="done"),
        (True, "Completed", "done"),
    ),
    (
        "rolled back",
        serving(phase=RolloutPhase.ROLLED_BACK, message="rb"),
        (False, "RolledBack", "rb"),
    ),
    ("aborted", serving(phase=RolloutPhase.ABORTED, message="ab"), (False, "Aborted", "ab")),
]


@pytest.mark.parametrize(("srv", "want"), [c[1:] for c in ROLLOUT], ids=[c[0] for c in ROLLOUT])
def test_rollout_condition(srv: Serving, want: tuple[bool, str, str]) -> None:
    assert R._rollout_condition(srv) == ConditionUpdate("RolloutHealthy", *want)


DESIRED = template_hash("r1", dsd().spec)
DEGRADED = [
    # (case, invalid spec, unschedulable pods, serving, reasons)
    ("as desired", False, 0, serving(), ()),
    ("invalid over a serving version", True, 0, serving(), ("InvalidSpec",)),
    ("invalid, nothing serves: failed, not degraded", True, 0, serving(exists=False), ()),
    (
        "the latest spec was rolled back",
        False,
        0,
        serving(phase=RolloutPhase.ROLLED_BACK, failed_hash=DESIRED, message="rb"),
        ("RolledBack",),
    ),
    (
        "an older spec was rolled back",
        False,
        0,
        serving(phase=RolloutPhase.ROLLED_BACK, failed_hash="h-older"),
        (),
    ),
    ("short for want of GPUs", False, 1, serving(1), ("ReplicasUnschedulable",)),
    ("none Ready is pending, not degraded", False, 1, serving(0), ()),
    ("short without unschedulable pods", False, 0, serving(1), ()),
    ("invalid and short", True, 1, serving(1), ("InvalidSpec", "ReplicasUnschedulable")),
]


@pytest.mark.parametrize(
    ("invalid", "pods", "srv", "want"), [c[1:] for c in DEGRADED], ids=[c[0] for c in DEGRADED]
)
def test_degraded_reasons(invalid: bool, pods: int, srv: Serving, want: tuple[str, ...]) -> None:
    c = ctx(dsd(**(BAD if invalid else {})), unschedulable_pods=pods)
    assert tuple(r for r, _ in R._degraded_reasons(c, srv)) == want


@pytest.mark.parametrize(
    ("reasons", "want"),
    [
        ((), (False, "AsDesired", "serving the latest spec")),
        ((("A", "a"),), (True, "A", "a")),
        ((("A", "a"), ("B", "b")), (True, "A", "a; b")),
    ],
    ids=["none", "one", "two"],
)
def test_degraded_condition(
    reasons: tuple[tuple[str, str], ...], want: tuple[bool, str, str]
) -> None:
    assert R._degraded_condition(reasons) == ConditionUpdate("Degraded", *want)


PHASES = [
    # (case, invalid spec, serving, degraded, phase)
    ("invalid, nothing serves", True, serving(exists=False), False, Phase.FAILED),
    (
        "rollout in flight",
        False,
        serving(phase=RolloutPhase.PROGRESSING, preview_colour=G),
        True,
        Phase.PROGRESSING,
    ),
    ("degraded", True, serving(), True, Phase.DEGRADED),
    ("all Ready", False, serving(), False, Phase.READY),
    ("none Ready", False, serving(0), False, Phase.PENDING),
    ("some Ready", False, serving(1), False, Phase.PROGRESSING),
]


@pytest.mark.parametrize(
    ("invalid", "srv", "degraded", "want"), [c[1:] for c in PHASES], ids=[c[0] for c in PHASES]
)
def test_overall_phase(invalid: bool, srv: Serving, degraded: bool, want: Phase) -> None:
    c = ctx(dsd(**(BAD if invalid else {})))
    reasons = (("X", "x"),) if degraded else ()
    assert R._overall_phase(c, srv, reasons) is want


def test_apply_conditions_in_order_and_leaves_none_alone() -> None:
    kept = cond("ScalingLimited", "True", "AtMax")
    out = R._apply_conditions(
        [kept],
        (
            ConditionUpdate("Ready", True, "R", "r"),
            None,
            ConditionUpdate("Degraded", False, "D", "d"),
        ),
        4,
        100.0,
    )
    assert [(c.type, c.status, c.reason) for c in out] == [
        ("ScalingLimited", "True", "AtMax"),
        ("Ready", "True", "R"),
        ("Degraded", "False", "D"),
    ]
    assert out[1].last_transition_time == rfc3339(100.0) and out[1].observed_generation == 4


def test_status_after_reports_on_the_serving_colour() -> None:
    c = ctx(modes={G: "fp8"})
    srv = serving(1, 3, active_colour=G, active_hash="h-g")
    s = R._status_after(c, srv, [], Phase.PROGRESSING)
    assert (s.phase, s.replicas, s.ready_replicas, s.desired_replicas) == (
        Phase.PROGRESSING,
        3,
        1,
        2,
    )
    assert (s.active_colour, s.template_hash, s.mode, s.observed_generation) == (G, "h-g", "fp8", 4)
    assert s.selector is not None and "colour=green" in s.selector
    assert s.rollout is not None and s.rollout.phase == "Idle"
    gone = R._status_after(c, serving(exists=False), [], Phase.PENDING)
    assert (gone.replicas, gone.mode) == (0, "bf16")


# with_scaling.


def decision(**kw: Any) -> ScalingDecision:
    base: dict[str, Any] = {"replicas": 2, "direction": "hold", "reason": "Hold", "message": "m"}
    return ScalingDecision(**{**base, **kw})


@pytest.mark.parametrize(
    ("d", "want"),
    [
        (decision(), (True, "SignalsFresh", "engine metrics are fresh")),
        (
            decision(metrics_ok=False, reason="NoMetrics", message="stale"),
            (False, "NoMetrics", "stale"),
        ),
    ],
    ids=["fresh", "stale"],
)
def test_metrics_available_condition(d: ScalingDecision, want: tuple[bool, str, str]) -> None:
    assert R._metrics_available_condition(d) == ConditionUpdate("MetricsAvailable", *want)


LIMITS = [
    # (case, decision's limit, old ScalingLimited, want (status, reason) or None)
    ("limited", ("AtMaxReplicas", "max 4"), None, (True, "AtMaxReplicas")),
    (
        "limited overrides GPU capacity",
        ("AtMaxReplicas", "max 4"),
        cond("ScalingLimited", "True", "InsufficientGPUCapacity"),
        (True, "AtMaxReplicas"),
    ),
    (
        "within limits",
        None,
        cond("ScalingLimited", "True", "AtMaxReplicas"),
        (False, "WithinLimits"),
    ),
    (
        "GPU capacity left to the reconcile",
        None,
        cond("ScalingLimited", "True", "InsufficientGPUCapacity"),
        None,
    ),
    (
        "GPU capacity back: cleared",
        None,
        cond("ScalingLimited", "False", "InsufficientGPUCapacity"),
        (False, "WithinLimits"),
    ),
]


@pytest.mark.parametrize(
    ("limited", "old", "want"), [c[1:] for c in LIMITS], ids=[c[0] for c in LIMITS]
)
def test_autoscaler_limit_condition(
    limited: tuple[str, str] | None, old: Condition | None, want: tuple[bool, str] | None
) -> None:
    status = DeepSeekDeploymentStatus(conditions=[old] if old else [])
    got = R._autoscaler_limit_condition(status, decision(limited=limited))
    assert (None if got is None else (got.status, got.reason)) == want


RECORDS = [
    # (case, last reason or None, its age (s), current, decided, reason, recorded)
    ("first decision", None, 0, 2, 2, "Hold", True),
    ("same hold again", "Hold", 15, 2, 2, "Hold", False),
    ("same hold a minute on: its numbers refreshed", "Hold", 60, 2, 2, "Hold", True),
    ("new reason", "Hold", 15, 2, 2, "QueueDepth", True),
    ("replicas change", "Hold", 15, 2, 3, "Hold", True),
]


@pytest.mark.parametrize(
    ("last", "age", "current", "decided", "reason", "recorded"),
    [c[1:] for c in RECORDS],
    ids=[c[0] for c in RECORDS],
)
def test_decision_record(
    last: str | None, age: float, current: int, decided: int, reason: str, recorded: bool
) -> None:
    prior = (
        None
        if last is None
        else R.ScalingDecisionStatus(
            time=rfc3339(100.0 - age), from_replicas=2, to_replicas=2, reason=last
        )
    )
    status = DeepSeekDeploymentStatus(last_scaling_decision=prior)
    got = R._decision_record(
        status, decision(replicas=decided, reason=reason, message="x" * 5000), current, 100.0
    )
    assert (got is not None) == recorded
    if got is not None:
        assert (got.time, got.from_replicas, got.to_replicas, got.reason) == (
            rfc3339(100.0),
            current,
            decided,
            reason,
        )
        assert len(got.message) == 4096


@pytest.mark.parametrize(
    ("automatic", "served", "want"),
    [
        (True, "fp8", ("ReducedPrecision",)),  # the policy chose a compressed rung
        (True, "bf16", ()),  # back at the top
        (False, "fp8", ()),  # a rung the user pinned is not degraded
        (True, None, ()),  # nothing observed yet
    ],
)
def test_a_compressed_rung_the_policy_chose_is_degraded(
    automatic: bool, served: str | None, want: tuple[str, ...]
) -> None:
    d = dsd(quantization={"mode": "fp8", "policy": {"automatic": automatic}})
    modes = {Colour.BLUE: served} if served else {}
    got = R._degraded_reasons(ctx(d, modes=modes), serving())
    assert tuple(r for r, _ in got) == want


MET = (True, "AttainmentMet", "99.90% of requests within ...")
MISSED = (False, "AttainmentBelowTarget", "97.00% of requests within ...")
SLO_EVENTS = [
    # (case, SLOMet before, the decision's judgement, want (type, reason) or None)
    ("not judged yet: nothing", None, None, None),
    ("first judged met: nothing to say", None, MET, None),
    ("first judged missed: a warning", None, MISSED, ("Warning", "SLOAttainmentBelowTarget")),
    ("met, still met", cond("SLOMet", "True", "AttainmentMet"), MET, None),
    (
        "met, now missed",
        cond("SLOMet", "True", "AttainmentMet"),
        MISSED,
        ("Warning", "SLOAttainmentBelowTarget"),
    ),
    ("missed, still missed", cond("SLOMet", "False", "AttainmentBelowTarget"), MISSED, None),
    (
        "missed, met again",
        cond("SLOMet", "False", "AttainmentBelowTarget"),
        MET,
        ("Normal", "SLOAttainmentMet"),
    ),
    ("a hold leaves it", cond("SLOMet", "False", "AttainmentBelowTarget"), None, None),
]


@pytest.mark.parametrize("case,before,slo,want", SLO_EVENTS, ids=[c[0] for c in SLO_EVENTS])
def test_slo_met_condition_and_its_events(
    case: str,
    before: Condition | None,
    slo: tuple[bool, str, str] | None,
    want: tuple[str, str] | None,
) -> None:
    status = DeepSeekDeploymentStatus(conditions=[before] if before is not None else [])
    d = decision(slo=slo)
    ev = R.slo_event(status, d)
    assert (None if ev is None else (ev.type, ev.reason)) == want
    if ev is not None:
        assert ev.message == slo[2]  # type: ignore[index]
    after = R.condition(R.with_scaling(status, d, 2, 100.0, 1), "SLOMet")
    if slo is None:
        assert after == before
    else:
        assert after is not None
        assert (after.status, after.reason, after.message) == (str(slo[0]), slo[1], slo[2])
