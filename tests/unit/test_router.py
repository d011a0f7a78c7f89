"""The router (spec.router): the objects it renders into, its flags as vllm-router's own parser
reads them, the Services around it, its status condition, and which of its objects the adapter
owns and prunes."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from deepseek_operator import labels as L
from deepseek_operator.adapters.kube import (
    Kube,
    is_router_object,
    prunable,
    router_observation,
)
from deepseek_operator.adapters.store import Store
from deepseek_operator.api import Colour, DeepSeekDeployment
from deepseek_operator.api.status import ConditionType
from deepseek_operator.checks import ClusterFacts, GpuNode
from deepseek_operator.desired import (
    ColourPlan,
    Plan,
    render,
    router_args,
    router_change_event,
    router_name,
)
from deepseek_operator.reconcile import Observed, RouterObservation, reconcile
from deepseek_operator.rollout import ColourObservation
from kubernetes import client
from vllm_router.launch_router import parse_router_args

from .crdcheck import validate

NS = "prod"
ROUTER_KINDS = {"ServiceAccount", "Role", "RoleBinding"}


def dsd(router: dict[str, Any] | None = None, **spec: Any) -> DeepSeekDeployment:
    body: dict[str, Any] = {"model": {"checkpoint": "deepseek-ai/DeepSeek-R1"}, **spec}
    if router is not None:
        body["router"] = router
    return DeepSeekDeployment.from_k8s(
        {
            "metadata": {"name": "r1", "namespace": NS, "uid": "u-1", "generation": 3},
            "spec": body,
        }
    )


def on(**router: Any) -> DeepSeekDeployment:
    return dsd({"enabled": True, **router})


def plan(
    d: DeepSeekDeployment, colour: Colour = Colour.BLUE, *, available: bool = True, **kw: Any
) -> Plan:
    return Plan(colour, (ColourPlan(colour, d.spec, 2),), router_available=available, **kw)


def names(state: Any) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in state.objects}


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


# ---- disabled: today's objects ------------------------------------------------------------


@pytest.mark.parametrize("monitoring_crds", [False, True])
@pytest.mark.parametrize("mixed", [False, True])
def test_disabled_router_renders_exactly_the_objects_without_it(
    monitoring_crds: bool, mixed: bool
) -> None:
    """Off (the default, or set with other router fields): the objects are byte for byte those
    of a resource that never had the field, even with router_available set by mistake."""
    plain = dsd()
    for d in (dsd({"enabled": False, "replicas": 5, "policy": "round_robin"}), plain):
        for available in (False, True):
            got = render(
                d, plan(d, available=available, monitoring_crds=monitoring_crds, mixed=mixed)
            )
            want = render(
                plain, plan(plain, available=False, monitoring_crds=monitoring_crds, mixed=mixed)
            )
            assert got.objects == want.objects
    assert not any("router" in n or n.endswith("-engines") for _, n in names(want))


# ---- the router's flags ------------------------------------------------------------------


def test_args_start_with_the_discovery_contract() -> None:
    """Listen on every address at spec.router.port; discover the serving colour's engine pods
    of this resource, in its namespace, at the engine port; metrics on every address."""
    d = on(port=8100, metricsPort=29100)
    args = router_args(d, plan(d, Colour.GREEN))
    assert args[:18] == [
        "--host",
        "0.0.0.0",
        "--port",
        "8100",
        "--service-discovery",
        "--selector",
        "app.kubernetes.io/component=engine",
        "serving.deepseek.dev/deployment=r1",
        "serving.deepseek.dev/colour=green",
        "--service-discovery-port",
        "8000",
        "--service-discovery-namespace",
        NS,
        "--prometheus-port",
        "29100",
        "--prometheus-host",
        "0.0.0.0",
        "--policy",
    ]


@pytest.mark.parametrize(
    ("colour", "mixed", "selector"),
    [
        (Colour.BLUE, False, {L.COMPONENT: "engine", L.DEPLOYMENT: "r1", L.COLOUR: "blue"}),
        (Colour.GREEN, False, {L.COMPONENT: "engine", L.DEPLOYMENT: "r1", L.COLOUR: "green"}),
        # a stepped transition serves both colours, as the stable Service does without a router
        (Colour.BLUE, True, {L.COMPONENT: "engine", L.DEPLOYMENT: "r1"}),
        (Colour.GREEN, True, {L.COMPONENT: "engine", L.DEPLOYMENT: "r1"}),
    ],
)
def test_the_router_discovers_what_the_stable_service_selects_without_it(
    colour: Colour, mixed: bool, selector: dict[str, str]
) -> None:
    d = on()
    p = plan(d, colour, mixed=mixed)
    parsed = parse_router_args(router_args(d, p))
    assert parsed.selector == selector
    without = render(dsd(), p).get("Service", "r1")["spec"]["selector"]
    assert without == selector
    engines = render(d, p).get("Service", "r1-engines")["spec"]["selector"]
    assert engines == selector


# (spec.router fields, vllm-router's RouterArgs fields they must come out as)
ROUTER_SPECS = [
    (
        {},  # the defaults
        {
            "host": "0.0.0.0",
            "port": 8000,
            "service_discovery": True,
            "service_discovery_port": 8000,
            "service_discovery_namespace": NS,
            "prometheus_port": 29000,
            "prometheus_host": "0.0.0.0",
            "policy": "cache_aware",
            "retry_max_retries": 3,  # attempts: the first and maxRetries 2
            "retry_initial_backoff_ms": 100,
            "retry_max_backoff_ms": 2000,
            "retry_backoff_multiplier": 2.0,
            "retry_jitter_factor": 0.2,
            "disable_retries": False,
            "cb_failure_threshold": 5,
            "cb_success_threshold": 2,
            "cb_timeout_duration_secs": 30,
            "cb_window_duration_secs": 60,
            "disable_circuit_breaker": False,
            "health_failure_threshold": 3,
            "health_success_threshold": 2,
            "health_check_timeout_secs": 5,
            "health_check_interval_secs": 10,
            "health_check_endpoint": "/health",
            "max_concurrent_requests": 1024,
            "queue_size": 256,
            "queue_timeout_secs": 60,
            "rate_limit_tokens_per_second": None,
        },
    ),
    (
        {
            "policy": "power_of_two",
            "port": 9000,
            "metricsPort": 9100,
            "retries": {
                "maxRetries": 5,
                "initialBackoffMs": 50,
                "maxBackoffMs": 30000,
                "backoffMultiplier": 1.5,
                "jitterFactor": 0.05,
            },
            "circuitBreaker": {
                "failureThreshold": 10,
                "successThreshold": 3,
                "timeoutSeconds": 60,
                "windowSeconds": 120,
            },
            "healthCheck": {
                "intervalSeconds": 30,
                "timeoutSeconds": 30,
                "failureThreshold": 1,
                "successThreshold": 1,
                "endpoint": "/v1/models",
            },
            "maxConcurrentRequests": 64,
            "queueSize": 0,
            "queueTimeoutSeconds": 5,
            "rateLimitTokensPerSecond": 20,
        },
        {
            "port": 9000,
            "prometheus_port": 9100,
            "policy": "power_of_two",
            "retry_max_retries": 6,
            "retry_initial_backoff_ms": 50,
            "retry_max_backoff_ms": 30000,
            "retry_backoff_multiplier": 1.5,
            "retry_jitter_factor": 0.05,
            "cb_failure_threshold": 10,
            "cb_success_threshold": 3,
            "cb_timeout_duration_secs": 60,
            "cb_window_duration_secs": 120,
            "health_failure_threshold": 1,
            "health_success_threshold": 1,
            "health_check_timeout_secs": 30,
            "health_check_interval_secs": 30,
            "health_check_endpoint": "/v1/models",
            "max_concurrent_requests": 64,
            "queue_size": 0,
            "queue_timeout_secs": 5,
            "rate_limit_tokens_per_second": 20,
        },
    ),
    (
        {"circuitBreaker": {"enabled": False}, "policy": "consistent_hash"},
        {"disable_circuit_breaker": True, "policy": "consistent_hash"},
    ),
    ({"policy": "sticky_least_loaded"}, {"policy": "sticky_least_loaded"}),
    ({"policy": "round_robin"}, {"policy": "round_robin"}),
    ({"policy": "random"}, {"policy": "random"}),
]


@pytest.mark.parametrize(
    ("max_retries", "attempts"), [(0, 1), (1, 2), (2, 3), (20, 21)], ids=lambda v: str(v)
)
def test_max_retries_counts_the_retries_after_the_first_attempt(
    max_retries: int, attempts: int
) -> None:
    """vllm-router 0.1.17's --retry-max-retries is the number of attempts, the first included
    (measured: --retry-max-retries 2 sends a request twice to engines answering 500, and it
    refuses 0: "set to 1 to effectively disable retries"). retries.maxRetries means what its
    name says, so the flag gets one more; 0 is no retry."""
    d = on(retries={"maxRetries": max_retries})
    parsed = parse_router_args(router_args(d, plan(d)))
    assert parsed.retry_max_retries == attempts
    assert not parsed.disable_retries


@pytest.mark.parametrize(("router", "expected"), ROUTER_SPECS, ids=range(len(ROUTER_SPECS)))
def test_every_field_reaches_the_router_as_its_own_parser_reads_it(
    router: dict[str, Any], expected: dict[str, Any]
) -> None:
    """The rendered flags through vllm-router's own argument parser (the release of the
    default image): each spec field arrives as the setting it names; no flag is unknown."""
    d = on(**router)
    args = router_args(d, plan(d))
    parsed = parse_router_args(args)  # an unknown flag or value would exit here
    got = {k: getattr(parsed, k) for k in expected}
    assert got == expected
    assert len(set(a for a in args if a.startswith("--"))) == len(
        [a for a in args if a.startswith("--")]
    ), "a flag given twice"


def test_a_disabled_circuit_breaker_passes_no_thresholds() -> None:
    d = on(circuitBreaker={"enabled": False})
    args = router_args(d, plan(d))
    assert "--disable-circuit-breaker" in args
    assert not [a for a in args if a.startswith("--cb-")]


# ---- the router's objects ------------------------------------------------------------------


def test_router_objects_and_their_contract() -> None:
    d = on(replicas=3, image="mirror/router:1", imagePullPolicy="Always")
    state = render(d, plan(d))
    assert ROUTER_KINDS | {"Deployment", "PodDisruptionBudget"} <= {
        k for k, n in names(state) if n == "r1-router"
    }
    dep = state.get("Deployment", "r1-router")
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert {
        L.COMPONENT: "router",
        L.DEPLOYMENT: "r1",
        L.MANAGED_BY: "deepseek-operator",
    }.items() <= pod_labels.items()
    assert L.COLOUR not in pod_labels  # routers are no colour's
    assert spec["selector"]["matchLabels"] == {L.COMPONENT: "router", L.DEPLOYMENT: "r1"}
    assert spec["replicas"] == 3
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert c["name"] == "router" and c["command"] == ["vllm-router"]
    assert (c["image"], c["imagePullPolicy"]) == ("mirror/router:1", "Always")
    assert c["args"] == router_args(d, plan(d))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8000, "metrics": 29000}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readiness", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/liveness", "port": "http"}
    assert c["resources"]["requests"] == c["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}
    # streams through a stopping router last as long as the engines': the same grace period
    assert pod["terminationGracePeriodSeconds"] == 10 + 300 + 15
    assert c["lifecycle"]["preStop"] == {"sleep": {"seconds": 10}}
    assert pod["serviceAccountName"] == "r1-router"
    assert pod["automountServiceAccountToken"] is True
    assert c["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert "nodeSelector" not in pod and "tolerations" not in pod  # no GPU node for a router
    for o in state.objects:
        if o["metadata"]["name"] == "r1-router":
            assert o["metadata"]["labels"][L.COMPONENT] == "router"
            (ref,) = o["metadata"]["ownerReferences"]
            assert ref["uid"] == "u-1" and ref["controller"] is True


def test_pre_stop_form_follows_the_cluster_and_the_drain_setting() -> None:
    d = on()
    c = render(d, plan(d, sleep_action=False)).get("Deployment", "r1-router")
    (container,) = c["spec"]["template"]["spec"]["containers"]
    assert container["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "10"]}}
    none = dsd({"enabled": True}, engine={"drain": {"preStopDelaySeconds": 0}})
    c = render(none, plan(none)).get("Deployment", "r1-router")
    assert "lifecycle" not in c["spec"]["template"]["spec"]["containers"][0]


def test_the_router_may_watch_pods_of_its_namespace_and_nothing_else() -> None:
    d = on()
    state = render(d, plan(d))
    role = state.get("Role", "r1-router")
    assert role["metadata"]["namespace"] == NS
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    binding = state.get("RoleBinding", "r1-router")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "r1-router",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "r1-router", "namespace": NS}]
    account = state.get("ServiceAccount", "r1-router")
    assert account["metadata"]["namespace"] == NS
    # The account exists before the pods that use it are asked for.
    order = [(o["kind"], o["metadata"]["name"]) for o in state.objects]
    assert order.index(("ServiceAccount", "r1-router")) < order.index(("Deployment", "r1-router"))
    assert order.index(("RoleBinding", "r1-router")) < order.index(("Deployment", "r1-router"))


@pytest.mark.parametrize(("replicas", "budget"), [(1, False), (2, True), (5, True)])
def test_a_budget_keeps_one_router_pod_when_there_are_several(replicas: int, budget: bool) -> None:
    d = on(replicas=replicas)
    state = render(d, plan(d))
    assert (("PodDisruptionBudget", "r1-router") in names(state)) is budget
    if budget:
        pdb = state.get("PodDisruptionBudget", "r1-router")
        assert pdb["spec"]["minAvailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"] == {L.COMPONENT: "router", L.DEPLOYMENT: "r1"}
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    # the engines' budget is unchanged
    assert state.get("PodDisruptionBudget", "r1")["spec"]["selector"]["matchLabels"] == {
        L.DEPLOYMENT: "r1",
        L.COMPONENT: "engine",
    }


@pytest.mark.parametrize(
    ("crds", "monitoring", "expected"),
    [
        (False, {}, False),
        (True, {}, True),
        (True, {"podMonitor": False}, False),
        (True, {"serviceMonitor": False}, False),  # the deprecated alias, as for the engines'
    ],
)
def test_router_pod_monitor(crds: bool, monitoring: dict[str, Any], expected: bool) -> None:
    d = dsd({"enabled": True}, monitoring={**monitoring, "labels": {"release": "kps"}})
    state = render(d, plan(d, monitoring_crds=crds))
    assert (("PodMonitor", "r1-router") in names(state)) is expected
    if expected:
        pm = state.get("PodMonitor", "r1-router")
        assert pm["spec"]["selector"]["matchLabels"] == {L.COMPONENT: "router", L.DEPLOYMENT: "r1"}
        (ep,) = pm["spec"]["podMetricsEndpoints"]
        assert ep["port"] == "metrics" and ep["path"] == "/metrics"
        # the labels the dashboards and alerts group router series by
        assert {r["targetLabel"]: r["sourceLabels"] for r in ep["relabelings"]} == {
            "dsd": ["__meta_kubernetes_pod_label_serving_deepseek_dev_deployment"],
            "component": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
        }
        assert pm["metadata"]["labels"]["release"] == "kps"
        assert pm["metadata"]["labels"][L.COMPONENT] == "router"
        # the engines' PodMonitor keeps its own name and selector
        assert state.get("PodMonitor", "r1")["spec"]["selector"]["matchLabels"][L.COMPONENT] == (
            "engine"
        )


# ---- Services ------------------------------------------------------------------------------


@pytest.mark.parametrize("mixed", [False, True])
def test_stable_service_selects_the_router_once_one_is_available(mixed: bool) -> None:
    d = on(port=8100)
    engines = {L.DEPLOYMENT: "r1", L.COMPONENT: "engine"} | ({} if mixed else {L.COLOUR: "blue"})
    state = render(d, plan(d, mixed=mixed))
    stable = state.get("Service", "r1")
    assert stable["spec"]["selector"] == {L.DEPLOYMENT: "r1", L.COMPONENT: "router"}
    assert stable["spec"]["ports"] == [
        {"name": "http", "port": 8100, "targetPort": "http", "protocol": "TCP"}
    ]
    direct = state.get("Service", "r1-engines")
    assert direct["spec"]["selector"] == engines
    assert direct["spec"]["ports"][0]["port"] == 8000  # the engines' own port
    assert state.get("Service", "r1-preview")["spec"]["selector"][L.COLOUR] == "green"

    # No router replica available yet (or none left): the engines stand in, on the port
    # clients use, so turning the router on never leaves the Service without endpoints.
    waiting = render(d, plan(d, available=False, mixed=mixed))
    stable = waiting.get("Service", "r1")
    assert stable["spec"]["selector"] == engines
    assert stable["spec"]["ports"] == [
        {"name": "http", "port": 8100, "targetPort": "http", "protocol": "TCP"}
    ]
    assert ("Deployment", "r1-router") in names(waiting)


def test_a_promotion_rolls_the_router_to_the_new_colour() -> None:
    """Switching the active colour changes the router's pod template (the colour it discovers)
    and the engines Service, not the stable Service (it selects the routers)."""
    d = on()
    blue, green = render(d, plan(d, Colour.BLUE)), render(d, plan(d, Colour.GREEN))
    tb = blue.get("Deployment", "r1-router")["spec"]["template"]
    tg = green.get("Deployment", "r1-router")["spec"]["template"]
    assert tb != tg
    assert "serving.deepseek.dev/colour=green" in tg["spec"]["containers"][0]["args"]
    assert blue.get("Service", "r1") == green.get("Service", "r1")
    assert green.get("Service", "r1-engines")["spec"]["selector"][L.COLOUR] == "green"


def test_router_change_events() -> None:
    created = router_change_event("r1", "Deployment", "r1-router", "created")
    removed = router_change_event("r1", "Deployment", "r1-router", "deleted")
    assert created is not None and created[0] == "RouterCreated" and "r1-engines" in created[1]
    assert removed is not None and removed[0] == "RouterRemoved"
    assert router_change_event("r1", "Deployment", "r1-router", "updated") is None
    assert router_change_event("r1", "Deployment", "r1-blue", "created") is None
    assert router_change_event("r1", "Service", "r1-router", "deleted") is None


# ---- API validation ------------------------------------------------------------------------


def test_defaults() -> None:
    r = dsd().spec.router
    assert r.enabled is False and r.replicas == 2 and r.policy == "cache_aware"
    assert r.image == "ghcr.io/deepseek-operator/deepseek-router:0.1.17"
    assert (r.port, r.metrics_port) == (8000, 29000)


@pytest.mark.parametrize("router", [r for r, _ in ROUTER_SPECS], ids=range(len(ROUTER_SPECS)))
def test_router_specs_are_admitted_by_the_schema_and_the_models(router: dict[str, Any]) -> None:
    """The API server (schema and CEL, offline) admits every spec of the table above, with the
    defaults the models give (invalid ones: test_api.INVALID)."""
    manifest = {
        "apiVersion": "serving.deepseek.dev/v1alpha1",
        "kind": "DeepSeekDeployment",
        "metadata": {"name": "r1", "namespace": NS},
        "spec": {"model": {"checkpoint": "m"}, "router": {"enabled": True, **router}},
    }
    defaulted, errors = validate(manifest)
    assert errors == []
    assert defaulted["spec"]["router"] == DeepSeekDeployment.from_k8s(manifest).spec.router.to_k8s()


# ---- RouterReady and the plan ----------------------------------------------------------------

FACTS = ClusterFacts(gpu_nodes=(GpuNode("n1", None, "z1", 8),))


def observed(router: RouterObservation) -> Observed:
    blue = ColourObservation(
        exists=True, replicas=1, ready=1, updated=1, template_hash=None, up_to_date=True
    )
    return Observed(facts=FACTS, deployments={Colour.BLUE: blue}, router=router)


def settled(d: DeepSeekDeployment) -> DeepSeekDeployment:
    """The resource after a first reconcile (blue serving its template)."""
    out = reconcile(d, observed(RouterObservation()), 1000.0)
    return d.model_copy(update={"status": out.status})


def router_condition(d: DeepSeekDeployment, router: RouterObservation) -> Any:
    out = reconcile(settled(d), observed(router), 1010.0)
    conds = {c.type: c for c in out.status.conditions}
    return out, conds.get(ConditionType.ROUTER_READY)


@pytest.mark.parametrize(
    ("router", "status", "reason", "available"),
    [
        (RouterObservation(), "False", "RouterMissing", False),
        (RouterObservation(True, 2, 0, 2, True), "False", "RouterUnavailable", False),
        (RouterObservation(True, 2, 1, 2, True), "False", "RouterReplicasUnavailable", True),
        (RouterObservation(True, 2, 2, 2, True), "True", "RouterAvailable", True),
        # a rolling update (promotion) that keeps every replica available stays Ready
        (RouterObservation(True, 2, 2, 1, True), "True", "RouterRollingOut", True),
        (RouterObservation(True, 2, 2, 2, False), "True", "RouterRollingOut", True),
    ],
)
def test_router_ready_condition_and_the_stable_service(
    router: RouterObservation, status: str, reason: str, available: bool
) -> None:
    out, cond = router_condition(on(), router)
    assert cond is not None and (cond.status, cond.reason) == (status, reason)
    assert out.plan is not None and out.plan.router_available is available
    selector = render(on(), out.plan).get("Service", "r1")["spec"]["selector"]
    assert (selector[L.COMPONENT] == "router") is available


def test_router_ready_goes_with_the_router() -> None:
    d = settled(on())
    out = reconcile(d, observed(RouterObservation(True, 2, 2, 2, True)), 1010.0)
    assert any(c.type == ConditionType.ROUTER_READY for c in out.status.conditions)
    off = d.model_copy(
        update={
            "spec": d.spec.model_copy(update={"router": dsd().spec.router}),
            "status": out.status,
        }
    )
    out = reconcile(off, observed(RouterObservation(True, 2, 2, 2, True)), 1020.0)
    assert not any(c.type == ConditionType.ROUTER_READY for c in out.status.conditions)
    assert out.plan is not None and out.plan.router_available is False
    assert not any("router" in n for _, n in names(render(off, out.plan)))


# ---- ownership and pruning (adapters/kube.py) -----------------------------------------------


def obj(kind: str, name: str, **meta: Any) -> dict[str, Any]:
    labels = meta.pop("labels", {L.COMPONENT: "router", L.DEPLOYMENT: "r1"})
    labels = {L.MANAGED_BY: "deepseek-operator", **labels}
    refs = meta.pop("owner", [{"uid": "u-1", "controller": True}])
    body = {
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": labels,
            "ownerReferences": refs,
            "resourceVersion": "7",
            **meta,
        },
    }
    return body


@pytest.mark.parametrize(
    ("body", "ours"),
    [
        (obj("ServiceAccount", "r1-router"), True),
        (obj("Role", "r1-router", owner=[]), False),  # made by hand with our labels
        (obj("Role", "r1-router", owner=[{"uid": "other", "controller": True}]), False),
        (obj("RoleBinding", "r1-router", owner=[{"uid": "u-1"}]), False),  # not the controller
        (obj("ServiceAccount", "r1-other"), False),
        (obj("ServiceAccount", "r1-router", labels={L.DEPLOYMENT: "r1"}), False),
        (obj("Deployment", "r1-router", labels={L.COMPONENT: "router", L.DEPLOYMENT: "r2"}), False),
    ],
)
def test_which_router_objects_are_the_resources(body: dict[str, Any], ours: bool) -> None:
    assert is_router_object(body, "r1", "u-1") is ours


@pytest.mark.parametrize(
    ("kind", "labels", "prunes"),
    [
        ("Service", {}, True),
        ("PodDisruptionBudget", {}, True),
        ("Deployment", {L.COMPONENT: "engine", L.COLOUR: "blue"}, False),  # engines: never
        ("Deployment", {L.COMPONENT: "router"}, True),
        ("ServiceAccount", {L.COMPONENT: "router"}, True),
        ("Role", {L.COMPONENT: "router"}, True),
        ("RoleBinding", {L.COMPONENT: "router"}, True),
        ("ServiceAccount", {}, False),
        ("ConfigMap", {L.COMPONENT: "router"}, False),
    ],
)
def test_which_kinds_are_pruned(kind: str, labels: dict[str, str], prunes: bool) -> None:
    assert (prunable(kind, {"metadata": {"labels": labels}}) is not None) is prunes


def _kube_with(bodies: list[dict[str, Any]]) -> Kube:
    """A Kube over a store holding these bodies, its namespace seeded and its cluster reads
    (GPU nodes, monitoring CRDs) fresh: observe() reads memory only, no API server."""
    store = Store()
    for b in bodies:
        store.put(b["kind"], copy.deepcopy(b))
    kube = Kube(client.ApiClient(), store)
    now = time.monotonic()
    kube._seeded_at[NS] = now
    kube._nodes = (now, FACTS.gpu_nodes)
    kube._crds = (now, False)
    return kube


def test_observe_owns_the_router_objects_and_nothing_a_user_made() -> None:
    router_dep = obj("Deployment", "r1-router", spec={}) | {
        "spec": {"replicas": 2},
        "status": {"availableReplicas": 1, "updatedReplicas": 2, "observedGeneration": 4},
    }
    router_dep["metadata"]["generation"] = 4
    engine = obj(
        "Deployment",
        "r1-blue",
        labels={L.COMPONENT: "engine", L.DEPLOYMENT: "r1", L.COLOUR: "blue"},
    ) | {"spec": {"replicas": 1, "template": {"metadata": {"labels": {}}}}, "status": {}}
    bodies = [
        router_dep,
        engine,
        obj("ServiceAccount", "r1-router"),
        obj("Role", "r1-router"),
        obj("RoleBinding", "r1-router", owner=[]),  # a user's, with our labels copied
    ]
    kube = _kube_with(bodies)
    observed_, owned = kube.observe(on())
    assert observed_.router == RouterObservation(True, 2, 1, 2, True)
    assert observed_.router == router_observation(router_dep)
    assert set(owned.objects) == {
        ("Deployment", "r1-router"),
        ("Deployment", "r1-blue"),
        ("ServiceAccount", "r1-router"),
        ("Role", "r1-router"),
    }
    assert Colour.BLUE in observed_.deployments and Colour.GREEN not in observed_.deployments
    # What apply() would delete once the router is off: the router's objects, not the
    # engines' Deployment, not the user's binding (it is not even owned).
    pruned = {k for k, o in owned.objects.items() if prunable(k[0], o) is not None}
    assert pruned == {
        ("Deployment", "r1-router"),
        ("ServiceAccount", "r1-router"),
        ("Role", "r1-router"),
    }
    assert router_name("r1") == "r1-router"


def test_the_router_observation_says_which_engines_its_template_discovers() -> None:
    """What the rollout waits for before it scales the old colour down (RolloutInputs
    .router_settled): no router pod of an older template, and the template finds the active
    colour."""
    out, _ = router_condition(on(), RouterObservation(True, 2, 2, 2, True))
    assert out.plan is not None
    dep = copy.deepcopy(render(on(), out.plan).get("Deployment", "r1-router"))
    dep["metadata"]["generation"] = 3
    dep["status"] = {
        "observedGeneration": 3,
        "replicas": 3,  # a rolling update: one pod of the older template left
        "updatedReplicas": 2,
        "availableReplicas": 3,
    }
    seen = router_observation(dep)
    assert seen.selector == (
        "app.kubernetes.io/component=engine",
        "serving.deepseek.dev/deployment=r1",
        "serving.deepseek.dev/colour=blue",
    )
    assert (seen.total, seen.updated, seen.available, seen.up_to_date) == (3, 2, 3, True)
