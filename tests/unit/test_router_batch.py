"""The batch router pool (spec.router.batch): a second vllm-router Deployment with its own
admission limits behind the Service <name>-batch, a bulkhead for P2 work. Its objects, its
flags as vllm-router's own parser reads them, selectors that never mix the two pools, the
validation that ties it to the router and to priority scheduling, BatchRouterReady and its
Events, and what the adapter owns and prunes."""

from __future__ import annotations

from typing import Any

import pytest
from deepseek_operator import labels as L
from deepseek_operator.adapters.kube import is_router_object, prunable, router_observation
from deepseek_operator.api import Colour, DeepSeekDeployment
from deepseek_operator.api.spec import ROUTER_BATCH_NEEDS_PRIORITY, ROUTER_BATCH_NEEDS_ROUTER
from deepseek_operator.api.status import ConditionType
from deepseek_operator.desired import (
    batch_router_pool,
    render,
    router_args,
    router_change_event,
)
from deepseek_operator.reconcile import (
    Observed,
    ReconcileContext,
    RouterObservation,
    _router_settled,
    reconcile,
)
from pydantic import ValidationError
from vllm_router.launch_router import parse_router_args

from .crdcheck import validate
from .test_router import FACTS, _kube_with, names, obj, observed, plan, settled

NS = "prod"
PRIORITY = {"schedulingPolicy": "priority"}


def dsd(router: dict[str, Any], engine: dict[str, Any] | None = None) -> DeepSeekDeployment:
    return DeepSeekDeployment.from_k8s(
        {
            "metadata": {"name": "r1", "namespace": NS, "uid": "u-1", "generation": 3},
            "spec": {
                "model": {"checkpoint": "deepseek-ai/DeepSeek-R1"},
                "engine": PRIORITY if engine is None else engine,
                "router": router,
            },
        }
    )


def batch(**b: Any) -> DeepSeekDeployment:
    return dsd({"enabled": True, "batch": b})


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and In expressions) against a pod's labels."""
    ok = all(
        labels.get(k) == v
        for k, v in (selector.get("matchLabels") or selector).items()
        if k != "matchExpressions"
    )
    for e in selector.get("matchExpressions") or []:
        assert e["operator"] == "In"
        ok = ok and labels.get(e["key"]) in e["values"]
    return ok


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


# ---- the objects ---------------------------------------------------------------------------


def test_without_batch_nothing_of_it_is_rendered() -> None:
    d = dsd({"enabled": True})
    state = render(d, plan(d, monitoring_crds=True))
    assert not any("batch" in n for _, n in names(state))
    assert batch_router_pool(d) is None


@pytest.mark.parametrize(("replicas", "budget"), [(1, False), (2, True)])
def test_batch_objects_and_their_selectors(replicas: int, budget: bool) -> None:
    d = batch(replicas=replicas)
    state = render(d, plan(d, monitoring_crds=True))
    assert {("Deployment", "r1-router-batch"), ("Service", "r1-batch")} <= names(state)
    assert (("PodDisruptionBudget", "r1-router-batch") in names(state)) is budget
    # The main pool is what it was; one account and Role serve both pools.
    assert ("Deployment", "r1-router") in names(state)
    assert [n for k, n in names(state) if k == "ServiceAccount"] == ["r1-router"]

    dep = state.get("Deployment", "r1-router-batch")
    pod = dep["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    assert pod_labels[L.COMPONENT] == "router-batch" and pod_labels[L.DEPLOYMENT] == "r1"
    assert dep["metadata"]["labels"][L.COMPONENT] == "router-batch"
    assert dep["spec"]["replicas"] == replicas
    assert pod["spec"]["serviceAccountName"] == "r1-router"
    assert matches(dep["spec"]["selector"], pod_labels)

    svc = state.get("Service", "r1-batch")
    assert svc["spec"]["selector"] == {L.COMPONENT: "router-batch", L.DEPLOYMENT: "r1"}
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("http", 8000, "http")
    ]
    assert matches(svc["spec"]["selector"], pod_labels)

    # Nothing of the main pool takes a batch pod, nor the batch pool a main one.
    main = state.get("Deployment", "r1-router")
    main_pod_labels = main["spec"]["template"]["metadata"]["labels"]
    for sel in (
        main["spec"]["selector"],
        state.get("Service", "r1")["spec"]["selector"],
        state.get("PodDisruptionBudget", "r1-router")["spec"]["selector"],
    ):
        assert matches(sel, main_pod_labels) and not matches(sel, pod_labels)
    assert not matches(svc["spec"]["selector"], main_pod_labels)
    if budget:
        pdb = state.get("PodDisruptionBudget", "r1-router-batch")["spec"]
        assert pdb["minAvailable"] == 1
        assert matches(pdb["selector"], pod_labels)
        assert not matches(pdb["selector"], main_pod_labels)
    # One PodMonitor scrapes both pools (and no engine).
    pm = state.get("PodMonitor", "r1-router")["spec"]["selector"]
    assert matches(pm, pod_labels) and matches(pm, main_pod_labels)
    engine_labels = state.get("Deployment", "r1-blue")["spec"]["template"]["metadata"]["labels"]
    assert not matches(pm, engine_labels)


def test_the_batch_service_does_not_fall_back_to_the_engines() -> None:
    """While no main router pod is available <name> selects the engines; <name>-batch keeps
    selecting the batch router pods: P2 never reaches the engines past its limits."""
    d = batch()
    state = render(d, plan(d, available=False))
    assert state.get("Service", "r1")["spec"]["selector"][L.COMPONENT] == "engine"
    assert state.get("Service", "r1-batch")["spec"]["selector"][L.COMPONENT] == "router-batch"


def test_the_limits_reach_each_pool_as_vllm_routers_parser_reads_them() -> None:
    d = dsd(
        {
            "enabled": True,
            "maxConcurrentRequests": 512,
            "queueSize": 64,
            "batch": {
                "maxConcurrentRequests": 16,
                "rateLimitTokensPerSecond": 3,
                "queueSize": 4,
                "queueTimeoutSeconds": 5,
            },
        }
    )
    state = render(d, plan(d))

    def parsed(name: str) -> Any:
        (c,) = state.get("Deployment", name)["spec"]["template"]["spec"]["containers"]
        return c["args"], parse_router_args(c["args"])

    main_args, main = parsed("r1-router")
    batch_args, b = parsed("r1-router-batch")
    assert (main.max_concurrent_requests, main.queue_size, main.queue_timeout_secs) == (
        512,
        64,
        60,
    )
    assert main.rate_limit_tokens_per_second is None
    assert (b.max_concurrent_requests, b.queue_size, b.queue_timeout_secs) == (16, 4, 5)
    assert b.rate_limit_tokens_per_second == 3
    # Everything else is the same router: the same engines, policy, retries, health checks.
    limits = {
        "--max-concurrent-requests",
        "--queue-size",
        "--queue-timeout-secs",
        "--rate-limit-tokens-per-second",
    }

    def rest(args: list[str]) -> list[str]:
        out, skip = [], False
        for a in args:
            if skip:
                skip = False
            elif a in limits:
                skip = True
            else:
                out.append(a)
        return out

    assert rest(main_args) == rest(batch_args)
    assert main_args == router_args(d, plan(d))


def test_batch_defaults_shed_at_once() -> None:
    """The defaults: one pod, a burst of 8, 1 more per second, no queue (429 and Retry-After
    at once rather than a 408 after a second)."""
    b = batch().spec.router.batch
    assert b is not None
    assert (b.replicas, b.max_concurrent_requests, b.rate_limit_tokens_per_second) == (1, 8, 1)
    assert (b.queue_size, b.queue_timeout_seconds) == (0, 60)
    d = batch()
    (c,) = render(d, plan(d)).get("Deployment", "r1-router-batch")["spec"]["template"]["spec"][
        "containers"
    ]
    assert flag(c["args"], "--queue-size") == "0"
    assert flag(c["args"], "--rate-limit-tokens-per-second") == "1"


# ---- validation ----------------------------------------------------------------------------


def manifest(router: dict[str, Any], engine: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "serving.deepseek.dev/v1alpha1",
        "kind": "DeepSeekDeployment",
        "metadata": {"name": "r1", "namespace": NS},
        "spec": {"model": {"checkpoint": "m"}, "engine": engine, "router": router},
    }


@pytest.mark.parametrize(
    ("router", "engine", "message"),
    [
        ({"enabled": True, "batch": {}}, {}, ROUTER_BATCH_NEEDS_PRIORITY),
        ({"enabled": True, "batch": {}}, {"schedulingPolicy": "fcfs"}, ROUTER_BATCH_NEEDS_PRIORITY),
        ({"enabled": False, "batch": {}}, PRIORITY, ROUTER_BATCH_NEEDS_ROUTER),
        ({"batch": {"replicas": 2}}, PRIORITY, ROUTER_BATCH_NEEDS_ROUTER),
    ],
)
def test_batch_needs_the_router_and_priority_scheduling(
    router: dict[str, Any], engine: dict[str, Any], message: str
) -> None:
    """Refused by the API server (schema and CEL, offline) and by the models, with the same
    message naming the field."""
    m = manifest(router, engine)
    _, errors = validate(m)
    assert any(message in e and "router.batch" in e for e in errors), errors
    with pytest.raises(ValidationError, match=r"router\.batch needs"):
        DeepSeekDeployment.from_k8s(m)


@pytest.mark.parametrize(
    "b",
    [
        {},
        {"replicas": 3, "maxConcurrentRequests": 64, "rateLimitTokensPerSecond": 10},
        {"queueSize": 16, "queueTimeoutSeconds": 2},
    ],
)
def test_valid_batch_specs_are_admitted_with_the_models_defaults(b: dict[str, Any]) -> None:
    m = manifest({"enabled": True, "batch": b}, PRIORITY)
    defaulted, errors = validate(m)
    assert errors == []
    assert defaulted["spec"]["router"] == DeepSeekDeployment.from_k8s(m).spec.router.to_k8s()


@pytest.mark.parametrize(
    "b",
    [
        {"replicas": 0},
        {"maxConcurrentRequests": 0},
        {"rateLimitTokensPerSecond": 0},
        {"queueSize": -1},
        {"queueTimeoutSeconds": 0},
    ],
)
def test_invalid_batch_fields_are_refused(b: dict[str, Any]) -> None:
    m = manifest({"enabled": True, "batch": b}, PRIORITY)
    _, errors = validate(m)
    assert errors
    with pytest.raises(ValidationError):
        DeepSeekDeployment.from_k8s(m)


# ---- status, events, rollout ---------------------------------------------------------------

MAIN_OK = RouterObservation(True, 2, 2, 2, True)


def batch_condition(d: DeepSeekDeployment, pool: RouterObservation) -> Any:
    o = Observed(
        facts=FACTS, deployments=observed(MAIN_OK).deployments, router=MAIN_OK, router_batch=pool
    )
    out = reconcile(settled(d), o, 1010.0)
    conds = {c.type: c for c in out.status.conditions}
    return out, conds.get(ConditionType.BATCH_ROUTER_READY), conds.get(ConditionType.ROUTER_READY)


@pytest.mark.parametrize(
    ("pool", "status", "reason"),
    [
        (RouterObservation(), "False", "BatchRouterMissing"),
        (RouterObservation(True, 2, 0, 2, True), "False", "BatchRouterUnavailable"),
        (RouterObservation(True, 2, 1, 2, True), "False", "BatchRouterReplicasUnavailable"),
        (RouterObservation(True, 2, 2, 2, True), "True", "BatchRouterAvailable"),
        (RouterObservation(True, 2, 2, 1, True), "True", "BatchRouterRollingOut"),
    ],
)
def test_batch_router_ready(pool: RouterObservation, status: str, reason: str) -> None:
    _, cond, main = batch_condition(batch(replicas=2), pool)
    assert cond is not None and (cond.status, cond.reason) == (status, reason)
    assert "batch router replicas" in cond.message or "r1-router-batch" in cond.message
    # The main router's condition is its own.
    assert main is not None and (main.status, main.reason) == ("True", "RouterAvailable")


def test_batch_router_ready_goes_with_the_batch_pool() -> None:
    d = batch()
    out, cond, _ = batch_condition(d, RouterObservation(True, 1, 1, 1, True))
    assert cond is not None
    off = dsd({"enabled": True})
    off = off.model_copy(update={"status": out.status})
    o = Observed(
        facts=FACTS,
        deployments=observed(MAIN_OK).deployments,
        router=MAIN_OK,
        router_batch=RouterObservation(True, 1, 1, 1, True),
    )
    out = reconcile(off, o, 1020.0)
    types = {c.type for c in out.status.conditions}
    assert ConditionType.BATCH_ROUTER_READY not in types
    assert ConditionType.ROUTER_READY in types
    assert out.plan is not None
    assert not any("batch" in n for _, n in names(render(off, out.plan)))


def test_batch_router_events() -> None:
    created = router_change_event("r1", "Deployment", "r1-router-batch", "created")
    removed = router_change_event("r1", "Deployment", "r1-router-batch", "deleted")
    assert created is not None and created[0] == "BatchRouterCreated"
    assert "r1-batch" in created[1] and "X-Vllm-Priority: 2" in created[1]
    assert removed is not None and removed[0] == "BatchRouterRemoved"
    assert router_change_event("r1", "Deployment", "r1-router-batch", "updated") is None
    assert router_change_event("r1", "Service", "r1-batch", "created") is None


def test_the_old_colour_waits_for_the_batch_pool_too() -> None:
    """A promotion rolls both pools to the new colour; the old colour is scaled down only once
    neither discovers it any more (a batch router still on the old colour would answer 503)."""
    d = batch()
    state = render(d, plan(d, Colour.GREEN))
    new_template = router_observation(
        state.get("Deployment", "r1-router-batch")
        | {
            "status": {
                "observedGeneration": 0,
                "replicas": 1,
                "updatedReplicas": 1,
                "availableReplicas": 1,
            }
        }
    )
    old_template = RouterObservation(
        True, 1, 1, 1, True, 1, ("app.kubernetes.io/component=engine", f"{L.COLOUR}=blue")
    )
    main_green = router_observation(
        state.get("Deployment", "r1-router")
        | {
            "status": {
                "observedGeneration": 0,
                "replicas": 2,
                "updatedReplicas": 2,
                "availableReplicas": 2,
            }
        }
    )

    def ready(pool: RouterObservation) -> bool:
        o = Observed(facts=FACTS, router=main_green, router_batch=pool)
        return _router_settled(ReconcileContext.observe(d, o, 1000.0, None), Colour.GREEN)

    assert ready(new_template)
    assert not ready(old_template)
    assert ready(RouterObservation())  # not there yet: nothing discovers the old colour


# ---- ownership and pruning -----------------------------------------------------------------

BATCH_LABELS = {L.COMPONENT: "router-batch", L.DEPLOYMENT: "r1"}


@pytest.mark.parametrize(
    ("body", "ours"),
    [
        (obj("Deployment", "r1-router-batch", labels=BATCH_LABELS), True),
        (obj("Deployment", "r1-router-batch"), False),  # the main pool's component
        (obj("Deployment", "r1-router", labels=BATCH_LABELS), False),
        (obj("Deployment", "r1-router-batch", labels=BATCH_LABELS, owner=[]), False),
    ],
)
def test_which_batch_objects_are_the_resources(body: dict[str, Any], ours: bool) -> None:
    assert is_router_object(body, "r1", "u-1") is ours


def test_observe_and_prune_the_batch_pool() -> None:
    dep = obj("Deployment", "r1-router-batch", labels=BATCH_LABELS) | {
        "spec": {"replicas": 2},
        "status": {"availableReplicas": 2, "updatedReplicas": 2, "observedGeneration": 1},
    }
    dep["metadata"]["generation"] = 1
    bodies = [
        dep,
        obj("PodDisruptionBudget", "r1-router-batch", labels=BATCH_LABELS),
        obj("Service", "r1-batch", labels={L.COMPONENT: "batch-service", L.DEPLOYMENT: "r1"}),
    ]
    kube = _kube_with(bodies)
    seen, owned = kube.observe(batch(replicas=2))
    assert seen.router_batch == RouterObservation(True, 2, 2, 2, True)
    assert seen.router == RouterObservation()
    # Once batch is unset, none of these is desired, and every one of them is prunable.
    d = dsd({"enabled": True})
    wanted = names(render(d, plan(d)))
    leftover = {k for k in owned.objects if k not in wanted}
    assert leftover == {
        ("Deployment", "r1-router-batch"),
        ("PodDisruptionBudget", "r1-router-batch"),
        ("Service", "r1-batch"),
    }
    assert all(prunable(k[0], owned.objects[k]) is not None for k in leftover)


# ---- the limits, exported for the router dashboards and alerts -----------------------------


def _limits(ns: str, name: str) -> dict[tuple[str, str], float]:
    from deepseek_operator.adapters import metrics

    return {
        (s.labels["component"], s.labels["limit"]): s.value
        for m in metrics.ROUTER_LIMIT.collect()
        for s in m.samples
        if s.labels["namespace"] == ns and s.labels["dsd"] == name
    }


def test_router_limits_are_exported_per_pool_and_removed_with_the_pool() -> None:
    """vllm-router exports none of its admission limits: the operator does, per pool, so that
    the router panels and DeepSeekRouterAtAdmissionLimit compare in-flight requests with them."""
    from deepseek_operator import handlers

    both = dsd({"enabled": True, "maxConcurrentRequests": 64, "batch": {}}, PRIORITY)
    handlers._export_router_limits(both)
    assert _limits(NS, "r1") == {
        ("router", "max_concurrent_requests"): 64,
        ("router", "queue_size"): 256,
        ("router", "rate_limit_tokens_per_second"): 64,  # unset: the bucket size per second
        ("router-batch", "max_concurrent_requests"): 8,
        ("router-batch", "queue_size"): 0,
        ("router-batch", "rate_limit_tokens_per_second"): 1,
    }
    handlers._export_router_limits(dsd({"enabled": True, "maxConcurrentRequests": 64}))
    assert {c for c, _ in _limits(NS, "r1")} == {"router"}
    handlers._export_router_limits(dsd({"enabled": False}))
    assert _limits(NS, "r1") == {}
    handlers._export_router_limits(both)
    handlers.forget(NS, "r1")
    assert _limits(NS, "r1") == {}
