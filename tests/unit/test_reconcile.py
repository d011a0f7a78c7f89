"""One reconcile as a pure function: status, conditions, phase, events, restart safety."""

from __future__ import annotations

from typing import Any

from deepseek_operator import labels as L
from deepseek_operator.api import Colour, DeepSeekDeployment
from deepseek_operator.checks import ClusterFacts, GpuNode
from deepseek_operator.desired import template_hash
from deepseek_operator.reconcile import Observed, condition, parse_time, reconcile, rfc3339
from deepseek_operator.rollout import ColourObservation, RolloutPhase

FACTS = ClusterFacts(
    gpu_nodes=(GpuNode("n1", "NVIDIA-H100-80GB-HBM3", "a", 8),), pvcs=frozenset({"w"})
)


def dsd(status: dict[str, Any] | None = None, **spec: Any) -> DeepSeekDeployment:
    body: dict[str, Any] = {"model": {"checkpoint": "m"}, "replicas": 2}
    body.update(spec)
    obj: dict[str, Any] = {
        "metadata": {"name": "r1", "namespace": "ns", "uid": "u", "generation": 4},
        "spec": body,
    }
    if status:
        obj["status"] = status
    return DeepSeekDeployment.from_k8s(obj)


def dep(
    d: DeepSeekDeployment, ready: int, replicas: int = 2, hash_: str | None = None
) -> ColourObservation:
    return ColourObservation(
        exists=True,
        replicas=replicas,
        ready=ready,
        updated=replicas,
        template_hash=hash_ or template_hash(d.name, d.spec),
    )


def cond(out: Any, type_: str) -> tuple[str, str]:
    c = condition(out.status, type_)
    assert c is not None
    return c.status, c.reason


def test_new_resource_plans_blue_and_reports_pending() -> None:
    d = dsd()
    out = reconcile(d, Observed(facts=FACTS), now=100.0)
    assert out.plan is not None and out.plan.active_colour is Colour.BLUE
    assert [(d.colour, d.replicas) for d in out.plan.deployments] == [(Colour.BLUE, 2)]
    s = out.status
    assert (s.phase, s.ready_replicas, s.desired_replicas, s.observed_generation) == (
        "Pending",
        0,
        2,
        4,
    )
    assert s.selector == f"{L.COMPONENT}=engine,{L.COLOUR}=blue,{L.DEPLOYMENT}=r1"
    assert s.active_colour is Colour.BLUE and s.mode == "bf16"
    assert cond(out, "Ready") == ("False", "ReplicasNotReady")
    assert cond(out, "InvalidSpec") == ("False", "SpecValid")


def test_all_ready_is_ready() -> None:
    d = dsd()
    first = reconcile(d, Observed(facts=FACTS), now=100.0)
    d2 = d.model_copy(update={"status": first.status})
    out = reconcile(d2, Observed(facts=FACTS, deployments={Colour.BLUE: dep(d, 2)}), now=200.0)
    assert out.status.phase == "Ready" and out.status.ready_replicas == 2
    assert cond(out, "Ready") == ("True", "AllReplicasReady")
    assert cond(out, "Progressing") == ("False", "Stable")


def test_condition_transition_time_moves_only_on_flip() -> None:
    d = dsd()
    a = reconcile(d, Observed(facts=FACTS), now=100.0)
    b = reconcile(d.model_copy(update={"status": a.status}), Observed(facts=FACTS), now=200.0)
    c = reconcile(
        d.model_copy(update={"status": b.status}),
        Observed(facts=FACTS, deployments={Colour.BLUE: dep(d, 2)}),
        now=300.0,
    )
    ready = lambda o: condition(o.status, "Ready")  # noqa: E731
    assert ready(a).last_transition_time == ready(b).last_transition_time == rfc3339(100.0)
    assert ready(c).last_transition_time == rfc3339(300.0)


def test_invalid_spec_writes_nothing_names_the_field_and_warns_once() -> None:
    d = dsd(resources={"gpusPerReplica": 16})
    out = reconcile(d, Observed(facts=FACTS), now=1.0)
    assert out.plan is None and out.targets == ()
    assert out.status.phase == "Failed"
    status, reason = cond(out, "InvalidSpec")
    assert (status, reason) == ("True", "GPUsPerReplicaExceedNode")
    assert "spec.resources.gpusPerReplica" in condition(out.status, "InvalidSpec").message  # type: ignore[union-attr]
    assert [e.reason for e in out.events] == ["GPUsPerReplicaExceedNode"]
    again = reconcile(d.model_copy(update={"status": out.status}), Observed(facts=FACTS), now=2.0)
    assert again.events == ()


def test_invalid_edit_keeps_the_old_version_serving_and_is_degraded() -> None:
    good = dsd()
    first = reconcile(good, Observed(facts=FACTS), now=1.0)
    bad = dsd(status=first.status.to_k8s(), resources={"gpuProduct": "NVIDIA-B200"})
    out = reconcile(bad, Observed(facts=FACTS, deployments={Colour.BLUE: dep(good, 2)}), now=2.0)
    assert out.plan is None
    assert out.status.phase == "Degraded" and cond(out, "Degraded") == ("True", "InvalidSpec")
    assert out.status.ready_replicas == 2


def test_unschedulable_pods_set_scaling_limited() -> None:
    d = dsd()
    out = reconcile(
        d,
        Observed(
            facts=FACTS,
            deployments={Colour.BLUE: dep(d, 1)},
            unschedulable_pods=1,
            unschedulable_message="0/9 nodes are available: 9 Insufficient nvidia.com/gpu",
        ),
        now=1.0,
    )
    assert cond(out, "ScalingLimited") == ("True", "InsufficientGPUCapacity")
    assert "Insufficient nvidia.com/gpu" in condition(out.status, "ScalingLimited").message  # type: ignore[union-attr]
    assert out.status.phase == "Degraded"


def test_rollout_state_survives_a_restart_through_status() -> None:
    v1 = dsd()
    s1 = reconcile(
        v1, Observed(facts=FACTS, deployments={Colour.BLUE: dep(v1, 2)}), now=10.0
    ).status
    v2 = dsd(status=s1.to_k8s(), engine={"image": "vllm/vllm-openai:v0.33.0"})
    out = reconcile(v2, Observed(facts=FACTS, deployments={Colour.BLUE: dep(v1, 2)}), now=20.0)
    assert out.status.rollout is not None and out.status.rollout.phase == "Progressing"
    assert out.status.phase == "Progressing" and out.status.preview_colour is Colour.GREEN
    assert out.plan is not None and out.plan.active_colour is Colour.BLUE
    # blue keeps its running template (only scaled); green is rendered from the new spec
    assert [d.colour for d in out.plan.deployments] == [Colour.GREEN]
    assert [(t.colour, t.render_spec) for t in out.targets] == [
        (Colour.BLUE, False),
        (Colour.GREEN, True),
    ]
    assert out.status.template_hash == template_hash("r1", v1.spec)
    # "restart": a fresh process sees only the object (status round-tripped through JSON)
    restored = DeepSeekDeployment.from_k8s(
        {
            "metadata": {"name": "r1", "namespace": "ns", "uid": "u", "generation": 5},
            "spec": v2.spec.to_k8s(),
            "status": out.status.to_k8s(),
        }
    )
    later = reconcile(
        restored,
        Observed(facts=FACTS, deployments={Colour.BLUE: dep(v1, 2), Colour.GREEN: dep(v2, 2)}),
        now=30.0,
    )
    assert later.status.rollout is not None and later.status.rollout.phase == RolloutPhase.ANALYZING
    assert parse_time(later.status.rollout.started_at) == 20.0


def test_below_1_30_the_plan_renders_exec_sleep_and_the_hash_matches_it() -> None:
    facts = ClusterFacts(gpu_nodes=FACTS.gpu_nodes, pvcs=FACTS.pvcs, sleep_action=False)
    d = dsd()
    first = reconcile(d, Observed(facts=facts), now=100.0)
    assert first.plan is not None and first.plan.sleep_action is False
    running = dep(d, 2, hash_=template_hash(d.name, d.spec, False))
    d2 = d.model_copy(update={"status": first.status})
    out = reconcile(d2, Observed(facts=facts, deployments={Colour.BLUE: running}), now=200.0)
    # the pods it rendered are the pods it wants: steady, no rollout
    assert out.status.phase == "Ready"
    assert out.status.rollout is not None and out.status.rollout.phase == "Idle"
    assert out.status.template_hash == template_hash(d.name, d.spec, False)


def test_an_api_server_upgraded_past_1_30_rolls_the_pods_once_blue_green() -> None:
    old = ClusterFacts(gpu_nodes=FACTS.gpu_nodes, pvcs=FACTS.pvcs, sleep_action=False)
    d = dsd()
    running = dep(d, 2, hash_=template_hash(d.name, d.spec, False))
    s1 = reconcile(d, Observed(facts=old, deployments={Colour.BLUE: running}), now=10.0).status
    d2 = d.model_copy(update={"status": s1})
    out = reconcile(d2, Observed(facts=FACTS, deployments={Colour.BLUE: running}), now=20.0)
    assert out.status.rollout is not None and out.status.rollout.phase == "Progressing"
    # blue keeps serving its exec-sleep pods; green gets the sleep action
    assert out.plan is not None and [c.colour for c in out.plan.deployments] == [Colour.GREEN]
