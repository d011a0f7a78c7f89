"""Issue 21, first step, on the local cluster: spec.router puts a vllm-router Deployment in front
of the engines.

The real `deepseek-operator run` against us-east. The cluster's fleet plays the engine pods
(simulated vLLMs) and the router pods (the real vllm-router binary, discovering the engines
through its own ServiceAccount: docs/simulated-fleet.md). What is checked is what a user checks
with kubectl: the objects, their selectors and the router's flags, the router's permissions
(`kubectl auth can-i --as`), the Services' endpoints, RouterReady and the Events, through a
blue-green promotion and back to no router; and what a client sees: steady completions sent to
the stable Service (the test bed's Service router, in this process, playing kube-proxy) pass
through the router pods to the engines (their request counters grow by what was sent), with
no failed request while the router follows the promotion, while an engine is scaled away and
while the router is turned off. And a sick engine (answering 500 to every request while its
/health stays 200, as a vLLM with a broken model state does) is ejected by the routers' circuit
breakers with spec.router's default retries and breaker: at most the few requests before the
circuits open fail, then the sick engine receives nothing while the healthy one serves
everything, and once healed it gets traffic again after the circuit's timeout.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from deepseek_operator import labels as L
from deepseek_operator.api.spec import RouterCircuitBreaker, RouterRetries, RouterSpec
from kubernetes import client

from dashboards import rules as R
from testbed.cluster import RegionInfo
from testbed.sim.apiproxy import sim_ip
from testbed.sim.faults import ERROR_RATE_ANNOTATION, FAULT_ANNOTATION

from .conftest import PRIMARY, Prometheus
from .faults import record
from .operator_process import OperatorProcess, install_crds
from .test_operator import (
    GROUP,
    PLURAL,
    VERSION,
    condition,
    create_dsd,
    events_of,
    example,
    get_dsd,
)
from .test_rollout import Traffic
from .waiting import wait_for

pytestmark = pytest.mark.e2e

NAME = "gw"
ROUTER = f"{NAME}-router"
ENGINES = f"{NAME}-engines"
TIMEOUT = 120
SUCCESS = re.compile(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", re.M)
HTTP_REQUESTS = re.compile(r"^http_requests_total\{([^}]*)\} ([0-9.e+]+)$", re.M)
CB_STATE = re.compile(r'^vllm_router_cb_state\{worker="([^"]+)"\} ([0-9.e+-]+)$', re.M)
CIRCUIT_OPEN = 1  # vllm_router_cb_state: 0 closed, 1 open, 2 half-open


@pytest.fixture
def operator(region: RegionInfo, namespace: str, crds: None) -> Iterator[OperatorProcess]:
    assert region.fleet_url, "this test needs the cluster's fleet (cluster up without --no-fleet)"
    op = OperatorProcess(region.kubeconfig, namespaces=[namespace], name=f"router-{namespace}")
    op.start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def crds(api_clients: dict[str, client.ApiClient]) -> None:
    install_crds(api_clients["us-east"])


@pytest.fixture
def custom(api_clients: dict[str, client.ApiClient]) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_clients["us-east"])


@pytest.fixture
def rbac(api_clients: dict[str, client.ApiClient]) -> client.RbacAuthorizationV1Api:
    return client.RbacAuthorizationV1Api(api_clients["us-east"])


def body() -> dict[str, Any]:
    """The 7B example played by the fleet, 2 fixed replicas, a rollout that promotes as soon as
    the preview is Ready (no analysis, no warm-up: it would dial pod IPs, which this machine
    does not serve), and the router on."""
    b = example("deepseek-r1-distill-7b.yaml", fleet=True)
    b["metadata"]["name"] = NAME
    spec = b["spec"]
    spec["replicas"] = 2
    spec["scaling"]["enabled"] = False
    spec["rollout"] = {
        "readyTimeoutSeconds": 120,
        "warmupRequests": 0,
        "scaleDownDelaySeconds": 5,
        "analysis": {"durationSeconds": 0},
    }
    spec["router"] = {"enabled": True, "replicas": 2, "policy": "power_of_two"}
    return b


def patch_spec(custom: client.CustomObjectsApi, ns: str, spec: dict[str, Any]) -> None:
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, NAME, {"spec": spec})


def read(fn: Any, *args: Any) -> Any:
    """An object, or None when it does not exist."""
    try:
        return fn(*args)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def selector(core: client.CoreV1Api, ns: str, name: str) -> dict[str, str] | None:
    svc = read(core.read_namespaced_service, name, ns)
    return dict(svc.spec.selector or {}) if svc is not None else None


def endpoint_ips(core: client.CoreV1Api, ns: str, service: str) -> set[str]:
    slices = client.DiscoveryV1Api(core.api_client).list_namespaced_endpoint_slice(
        ns, label_selector=f"kubernetes.io/service-name={service}"
    )
    return {
        a
        for s in slices.items
        for e in s.endpoints or []
        if e.conditions and e.conditions.ready
        for a in e.addresses
    }


def ready_pod_ips(core: client.CoreV1Api, ns: str, labels: dict[str, str]) -> set[str]:
    sel = ",".join(f"{k}={v}" for k, v in labels.items())
    out = set()
    for p in core.list_namespaced_pod(ns, label_selector=sel).items:
        conds = {c.type: c.status for c in (p.status.conditions or [])}
        if conds.get("Ready") == "True" and p.metadata.deletion_timestamp is None:
            out.add(p.status.pod_ip)
    return out


def router_args(apps: client.AppsV1Api, ns: str) -> list[str]:
    dep = apps.read_namespaced_deployment(ROUTER, ns)
    (c,) = dep.spec.template.spec.containers
    assert c.name == "router" and c.command == ["vllm-router"]
    return list(c.args)


def discovered(args: list[str]) -> list[str]:
    """The --selector values of the router's flags."""
    i = args.index("--selector") + 1
    out = []
    while i < len(args) and not args[i].startswith("--"):
        out.append(args[i])
        i += 1
    return out


def can(api: client.ApiClient, ns: str, verb: str, resource: str, *, group: str = "") -> bool:
    """`kubectl auth can-i VERB RESOURCE -n NS --as system:serviceaccount:<ns>:<router>`."""
    review = client.AuthorizationV1Api(api).create_subject_access_review(
        {
            "spec": {
                "user": f"system:serviceaccount:{ns}:{ROUTER}",
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}"],
                "resourceAttributes": {
                    "namespace": ns,
                    "verb": verb,
                    "resource": resource,
                    "group": group,
                },
            }
        }
    )
    return bool(review.status.allowed)


def router_available(apps: client.AppsV1Api, ns: str, template_colour: str) -> bool:
    """Every router replica available and of the template discovering that colour."""
    dep = read(apps.read_namespaced_deployment, ROUTER, ns)
    if dep is None:
        return False
    args = list(dep.spec.template.spec.containers[0].args)
    st = dep.status
    return (
        f"{L.COLOUR}={template_colour}" in discovered(args)
        and (st.observed_generation or 0) >= dep.metadata.generation
        and (st.updated_replicas or 0) == dep.spec.replicas
        and (st.available_replicas or 0) == dep.spec.replicas
        and (st.replicas or 0) == dep.spec.replicas
    )


def reasons(core: client.CoreV1Api, ns: str) -> set[str]:
    return {e.reason for e in events_of(core, ns, NAME)}


class Served:
    """Requests each engine pod finished (its vllm:request_success_total, read at the pod's
    sim address), the last reading kept for pods that have stopped serving or are gone."""

    def __init__(self, core: client.CoreV1Api, ns: str) -> None:
        self.core, self.ns = core, ns
        self.by_pod: dict[str, float] = {}

    def read(self) -> dict[str, float]:
        sel = f"{L.DEPLOYMENT}={NAME},{L.COMPONENT}=engine"
        for p in self.core.list_namespaced_pod(self.ns, label_selector=sel).items:
            if not p.status.pod_ip:
                continue
            url = f"http://{sim_ip(p.status.pod_ip)}:8000/metrics"
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                continue  # loading, or no longer listening: its last reading stands
            self.by_pod[p.metadata.name] = sum(float(v) for v in SUCCESS.findall(text))
        return dict(self.by_pod)

    def total(self, colour: str | None = None) -> float:
        self.read()
        return sum(v for k, v in self.by_pod.items() if colour is None or f"-{colour}-" in k)


def test_router_objects_follow_a_promotion_and_go_when_the_router_is_turned_off(
    namespace: str,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    rbac: client.RbacAuthorizationV1Api,
    custom: client.CustomObjectsApi,
    api_clients: dict[str, client.ApiClient],
    request: pytest.FixtureRequest,
) -> None:
    ns = namespace
    api = api_clients["us-east"]
    # A ServiceAccount of the user's that carries the operator's labels (copied from a router
    # object, say) but is not owned by the resource: it must survive everything below.
    core.create_namespaced_service_account(
        ns,
        {
            "metadata": {
                "name": f"{NAME}-client",
                "labels": {
                    L.MANAGED_BY: L.MANAGED_BY_VALUE,
                    L.DEPLOYMENT: NAME,
                    L.COMPONENT: L.ROUTER_COMPONENT,
                },
            }
        },
    )
    b = body()
    create_dsd(custom, ns, b)

    # ---- the router comes up in front of the blue engines -----------------------------------
    wait_for(lambda: router_available(apps, ns, "blue"), timeout=TIMEOUT, what="2 router pods")
    blue = {L.DEPLOYMENT: NAME, L.COMPONENT: "engine", L.COLOUR: "blue"}
    routers = {L.DEPLOYMENT: NAME, L.COMPONENT: "router"}
    wait_for(lambda: len(ready_pod_ips(core, ns, blue)) == 2, timeout=TIMEOUT, what="2 engines")
    wait_for(
        lambda: selector(core, ns, NAME) == routers,
        timeout=60,
        what=f"Service {NAME} selecting the router pods",
    )
    assert selector(core, ns, ENGINES) == blue
    wait_for(
        lambda: endpoint_ips(core, ns, NAME) == ready_pod_ips(core, ns, routers),
        timeout=60,
        what=f"the endpoints of {NAME} = the Ready router pods",
    )
    wait_for(
        lambda: endpoint_ips(core, ns, ENGINES) == ready_pod_ips(core, ns, blue),
        timeout=60,
        what=f"the endpoints of {ENGINES} = the Ready blue engines",
    )
    svc = core.read_namespaced_service(NAME, ns)
    assert [(p.name, p.port, p.target_port) for p in svc.spec.ports] == [("http", 8000, "http")]

    args = router_args(apps, ns)
    assert args[:5] == ["--host", "0.0.0.0", "--port", "8000", "--service-discovery"]
    assert discovered(args) == [
        "app.kubernetes.io/component=engine",
        f"serving.deepseek.dev/deployment={NAME}",
        "serving.deepseek.dev/colour=blue",
    ]
    assert args[args.index("--service-discovery-namespace") + 1] == ns
    assert args[args.index("--service-discovery-port") + 1] == "8000"
    assert args[args.index("--policy") + 1] == "power_of_two"
    pods = core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/component=router").items
    assert len(pods) >= 2
    for p in pods:
        assert p.spec.service_account_name == ROUTER
        assert p.metadata.labels[L.MANAGED_BY] == L.MANAGED_BY_VALUE
        assert p.metadata.labels[L.DEPLOYMENT] == NAME

    # Its account may watch the pods of this namespace and nothing else.
    assert core.read_namespaced_service_account(ROUTER, ns) is not None
    assert rbac.read_namespaced_role(ROUTER, ns).rules[0].resources == ["pods"]
    assert rbac.read_namespaced_role_binding(ROUTER, ns).subjects[0].name == ROUTER
    assert can(api, ns, "watch", "pods") and can(api, ns, "list", "pods")
    assert not can(api, ns, "delete", "pods")
    assert not can(api, ns, "list", "secrets")
    assert not can(api, "default", "list", "pods")
    pdb = client.PolicyV1Api(api).read_namespaced_pod_disruption_budget(ROUTER, ns)
    assert pdb.spec.min_available == 1

    obj = wait_for(
        lambda: (
            o
            if ((condition(o := get_dsd(custom, ns, NAME), "RouterReady") or {}).get("status"))
            == "True"
            else None
        ),
        timeout=60,
        what="RouterReady True",
    )
    assert condition(obj, "RouterReady")["reason"] in ("RouterAvailable", "RouterRollingOut")
    wait_for(lambda: "RouterCreated" in reasons(core, ns), what="Event RouterCreated")

    # ---- clients: completions sent to the Service reach the engines through the router -----
    served = Served(core, ns)
    before = served.read()
    traffic = Traffic(api, ns, NAME, b["spec"]["model"]["servedName"])
    request.addfinalizer(traffic.stop_event.set)
    traffic.start()
    wait_for(lambda: traffic.counts()["ok"] >= 20, timeout=60, what="20 completions served")
    router_pods = {
        p.metadata.name
        for p in core.list_namespaced_pod(
            ns, label_selector="app.kubernetes.io/component=router"
        ).items
    }
    assert set(traffic.stable_pods()) <= router_pods and traffic.stable_pods(), (
        traffic.stable_pods(),
        router_pods,
    )
    counts = traffic.counts()
    after = served.read()
    grown = {pod: after[pod] - before.get(pod, 0) for pod in after}
    assert counts["failed"] == 0 and counts["ok"] == counts["sent"], counts
    # Every answered request was served by an engine, and the router used both.
    assert sum(grown.values()) >= counts["ok"], (grown, counts)
    assert len(grown) == 2 and all(g > 0 for g in grown.values()), grown

    # ---- a blue-green promotion: the router rolls to the green engines ----------------------
    first = apps.read_namespaced_deployment(ROUTER, ns).metadata.generation
    patch_spec(custom, ns, {"model": {"revision": "rev-2"}})
    wait_for(
        lambda: (get_dsd(custom, ns, NAME).get("status") or {}).get("activeColour") == "green",
        timeout=TIMEOUT,
        what="green promoted",
    )
    green = {**blue, L.COLOUR: "green"}
    wait_for(lambda: router_available(apps, ns, "green"), timeout=TIMEOUT, what="routers rolled")
    assert apps.read_namespaced_deployment(ROUTER, ns).metadata.generation > first
    assert "serving.deepseek.dev/colour=green" in discovered(router_args(apps, ns))
    # Only new router pods are left (the old ones discovered blue).
    wait_for(
        lambda: all(
            "serving.deepseek.dev/colour=green" in discovered(list(p.spec.containers[0].args))
            for p in core.list_namespaced_pod(
                ns, label_selector="app.kubernetes.io/component=router"
            ).items
        ),
        timeout=60,
        what="every router pod discovering green",
    )
    assert selector(core, ns, NAME) == routers
    wait_for(lambda: selector(core, ns, ENGINES) == green, timeout=60, what=f"{ENGINES} on green")
    wait_for(
        lambda: endpoint_ips(core, ns, ENGINES) == ready_pod_ips(core, ns, green),
        timeout=60,
        what=f"the endpoints of {ENGINES} = the Ready green engines",
    )
    # The clients never noticed: blue is gone, green serves them, nothing failed.
    wait_for(
        lambda: (
            not core.list_namespaced_pod(
                ns, label_selector=f"{L.DEPLOYMENT}={NAME},{L.COLOUR}=blue"
            ).items
        ),
        timeout=60,
        what="the blue engine pods gone",
    )
    green_before = served.total("green")
    sent_before = traffic.counts()["sent"]
    # Counts come per batch of 20: 40 more sent holds a whole batch sent after the reading.
    wait_for(
        lambda: traffic.counts()["sent"] >= sent_before + 40, timeout=30, what="40 more requests"
    )
    assert served.total("green") >= green_before + 20
    counts = traffic.counts()
    assert counts["failed"] == 0 and counts["ok"] == counts["sent"], counts

    # ---- one engine scaled away under load: the router stops sending to it first ----------
    patch_spec(custom, ns, {"replicas": 1})
    wait_for(
        lambda: (
            len(
                core.list_namespaced_pod(
                    ns, label_selector=f"{L.DEPLOYMENT}={NAME},{L.COLOUR}=green"
                ).items
            )
            == 1
        ),
        timeout=60,
        what="one green engine pod left",
    )
    sent_before = traffic.counts()["sent"]
    wait_for(
        lambda: traffic.counts()["sent"] >= sent_before + 20, timeout=30, what="20 more requests"
    )
    counts = traffic.counts()
    assert counts["failed"] == 0 and counts["ok"] == counts["sent"], counts

    # ---- the router turned off: the engines are the Service again, the router's objects go --
    patch_spec(custom, ns, {"router": {"enabled": False}})
    wait_for(
        lambda: selector(core, ns, NAME) == green,
        timeout=60,
        what=f"Service {NAME} selecting the green engines again",
    )

    def router_objects() -> list[str]:
        found = []
        for kind, fn in (
            ("Deployment", apps.read_namespaced_deployment),
            ("ServiceAccount", core.read_namespaced_service_account),
            ("Role", rbac.read_namespaced_role),
            ("RoleBinding", rbac.read_namespaced_role_binding),
            (
                "PodDisruptionBudget",
                client.PolicyV1Api(api).read_namespaced_pod_disruption_budget,
            ),
        ):
            if read(fn, ROUTER, ns) is not None:
                found.append(kind)
        if read(core.read_namespaced_service, ENGINES, ns) is not None:
            found.append(f"Service {ENGINES}")
        return found

    wait_for(lambda: not router_objects(), timeout=60, what="the router's objects gone")
    wait_for(
        lambda: endpoint_ips(core, ns, NAME) == ready_pod_ips(core, ns, green),
        timeout=60,
        what=f"the endpoints of {NAME} = the Ready green engines",
    )
    svc = core.read_namespaced_service(NAME, ns)
    assert [(p.name, p.port, p.target_port) for p in svc.spec.ports] == [("http", 8000, "http")]
    wait_for(
        lambda: condition(get_dsd(custom, ns, NAME), "RouterReady") is None,
        timeout=60,
        what="RouterReady gone",
    )
    wait_for(lambda: "RouterRemoved" in reasons(core, ns), what="Event RouterRemoved")
    # The clients now reach the engine directly, and still nothing failed.
    wait_for(
        lambda: (p := traffic.stable_pods()) and all("-green-" in x for x in p),
        timeout=30,
        what="the Service's endpoints = the green engine",
    )
    sent_before = traffic.counts()["sent"]
    wait_for(
        lambda: traffic.counts()["sent"] >= sent_before + 20, timeout=30, what="20 more requests"
    )
    counts = traffic.stop()
    print(f"\nclient requests through the Service {NAME}: {counts}")
    assert counts["failed"] == 0 and counts["ok"] == counts["sent"], counts
    # The engines were never touched by the router's going; the user's account is still there.
    assert apps.read_namespaced_deployment(f"{NAME}-green", ns).spec.replicas == 1
    assert read(core.read_namespaced_service_account, f"{NAME}-client", ns) is not None


# ---------------------------------------------------------------------------------------------
# A sick engine behind the router


def metrics_text(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())
    except OSError:
        return None


def engine_requests(ip: str) -> tuple[float, float]:
    """(completion requests the engine at pod IP `ip` received, those it answered 5xx), from
    its http_requests_total as vLLM's API server exports it."""
    text = metrics_text(f"http://{sim_ip(ip)}:8000/metrics")
    assert text is not None, f"engine {ip} does not answer /metrics"
    received = failed = 0.0
    for labels, value in HTTP_REQUESTS.findall(text):
        if 'handler="/v1/completions"' in labels:
            received += float(value)
            failed += float(value) if 'status="5xx"' in labels else 0.0
    return received, failed


def circuit_states(router_ips: dict[str, str], engine_ip: str) -> dict[str, int]:
    """The state of the engine's circuit in each router pod, as the router's metrics say it
    (vllm_router_cb_state of the engine's URL; absent: closed); -1 where a router pod does not
    answer."""
    url = f"http://{sim_ip(engine_ip)}:8000"
    port = RouterSpec().metrics_port
    out = {}
    for pod, ip in router_ips.items():
        text = metrics_text(f"http://{sim_ip(ip)}:{port}/metrics")
        states = dict(CB_STATE.findall(text or ""))
        out[pod] = -1 if text is None else int(float(states.get(url, "0")))
    return out


def ejected(prom: Prometheus, ns: str) -> set[str]:
    """The engines (worker URLs) for which DeepSeekRouterCircuitOpen's expression holds in
    namespace `ns`."""
    (alert,) = (a for a in R.alerts() if a.name == "DeepSeekRouterCircuitOpen")
    return {r["metric"]["worker"] for r in prom.query(alert.expr) if r["metric"]["namespace"] == ns}


def test_a_sick_engine_is_ejected_by_the_circuit_breaker_and_traffic_continues(
    namespace: str,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    api_clients: dict[str, client.ApiClient],
    prometheus: dict[str, Prometheus],
    request: pytest.FixtureRequest,
) -> None:
    """Two engines behind two router pods with spec.router's default retries and circuit
    breaker (power_of_two, so both engines have traffic before and after: with cache_aware the
    test's identical prompts would stay on one engine). One engine is made to answer 500 to
    every request (its /health stays 200, so only the circuit breaker can take it out).

    What vllm-router 0.1.17 does (docs/resource.md): a request goes out at most maxRetries + 1
    = 3 times, each on the engine the policy picks then (possibly the sick one again); every
    failed attempt counts against the engine's circuit in that router pod, which opens at
    failureThreshold = 5 failed attempts in a row. A client request fails only if all 3 of its
    attempts failed, so each router pod fails at most 5 // 3 = 1 request before its circuit
    opens: 2 for the 2 router pods. Then nothing reaches the sick engine for timeoutSeconds
    (30 s); after it, the healed engine gets requests again (half-open) and 2 successes close
    the circuit.

    The condition of the alert DeepSeekRouterCircuitOpen (its expression, without its 10
    minutes), on the region's Prometheus scraping the router pods: true for the sick engine
    while its circuits are open, false once they have closed."""
    ns = namespace
    retries, breaker = RouterRetries(), RouterCircuitBreaker()
    b = body()
    create_dsd(custom, ns, b)
    blue = {L.DEPLOYMENT: NAME, L.COMPONENT: "engine", L.COLOUR: "blue"}
    routers = {L.DEPLOYMENT: NAME, L.COMPONENT: "router"}
    wait_for(lambda: router_available(apps, ns, "blue"), timeout=TIMEOUT, what="2 router pods")
    wait_for(lambda: len(ready_pod_ips(core, ns, blue)) == 2, timeout=TIMEOUT, what="2 engines")
    wait_for(
        lambda: (
            endpoint_ips(core, ns, NAME) == ready_pod_ips(core, ns, routers)
            and selector(core, ns, NAME) == routers
        ),
        timeout=60,
        what=f"the endpoints of {NAME} = the Ready router pods",
    )
    router_ips = {
        p.metadata.name: p.status.pod_ip
        for p in core.list_namespaced_pod(
            ns, label_selector="app.kubernetes.io/component=router"
        ).items
    }
    engines = {
        p.metadata.name: p.status.pod_ip
        for p in core.list_namespaced_pod(
            ns, label_selector=",".join(f"{k}={v}" for k, v in blue.items())
        ).items
    }
    assert len(router_ips) == 2 and len(engines) == 2, (router_ips, engines)
    sick, healthy = sorted(engines)
    failures_allowed = len(router_ips) * (breaker.failure_threshold // (retries.max_retries + 1))
    assert failures_allowed == 2  # the defaults this test is about

    traffic = Traffic(api_clients["us-east"], ns, NAME, b["spec"]["model"]["servedName"])
    request.addfinalizer(traffic.stop_event.set)
    start = engine_requests(engines[sick])[0], engine_requests(engines[healthy])[0]
    traffic.start()
    wait_for(lambda: traffic.counts()["ok"] >= 20, timeout=60, what="20 completions served")
    assert engine_requests(engines[sick])[0] > start[0], "the engine to make sick had no traffic"
    assert engine_requests(engines[healthy])[0] > start[1]
    assert traffic.counts()["failed"] == 0, traffic.counts()

    # ---- the engine falls sick: both routers' circuits open ---------------------------------
    core.patch_namespaced_pod(
        sick,
        ns,
        {"metadata": {"annotations": {FAULT_ANNOTATION: "error", ERROR_RATE_ANNOTATION: "1"}}},
    )
    sick_at = time.monotonic()
    # For each router pod: the last time its circuit was seen closed (it opened after that).
    closed_at = {pod: sick_at for pod in router_ips}
    while True:
        polled = time.monotonic()
        states = circuit_states(router_ips, engines[sick])
        for pod, state in states.items():
            if state != CIRCUIT_OPEN:
                closed_at[pod] = polled
        if all(state == CIRCUIT_OPEN for state in states.values()):
            break
        assert polled - sick_at < 60, f"circuits of {sick} not open after 60 s: {states}"
        time.sleep(0.25)
    open_seen = time.monotonic()
    # No circuit opened before this, so none half-opens before this plus the timeout.
    half_open_earliest = min(closed_at.values()) + breaker.timeout_seconds
    received_open, failed_open = engine_requests(engines[sick])
    assert failed_open > 0, "the sick engine answered no 500"
    opened_in = open_seen - sick_at

    # ---- while open: the sick engine receives nothing, the healthy one serves everything ---
    healthy_open = engine_requests(engines[healthy])[0]
    sent_open = traffic.counts()["sent"]

    def sick_untouched_while_open() -> bool:
        """True once a reading shows the sick engine served again; fails if that happens
        while every circuit must still be open."""
        polled = time.monotonic()
        received = engine_requests(engines[sick])[0]
        if polled < half_open_earliest:
            assert received == received_open, (
                f"{sick} got {received - received_open} requests while its circuits were open"
            )
        return received > received_open

    # Counts come per batch of 20: 40 more sent holds a whole batch sent after the reading.
    wait_for(
        lambda: sick_untouched_while_open() or traffic.counts()["sent"] >= sent_open + 40,
        timeout=30,
        what="40 more requests",
        every=1,
    )
    assert time.monotonic() < half_open_earliest, "too slow: the window outlasted the circuits"
    assert engine_requests(engines[sick])[0] == received_open
    assert engine_requests(engines[healthy])[0] >= healthy_open + 20
    counts = traffic.counts()
    assert counts["failed"] <= failures_allowed, counts
    assert set(counts["statuses"]) <= {"200", "500"}, counts
    sick_url = f"http://{sim_ip(engines[sick])}:8000"  # the router's worker label
    wait_for(
        lambda: ejected(prometheus[PRIMARY], ns) == {sick_url},
        timeout=20,
        what=f"DeepSeekRouterCircuitOpen's condition for {sick_url} on Prometheus",
        every=1,
    )

    # ---- healed: it gets requests again after the circuit's timeout, the circuits close ---
    core.patch_namespaced_pod(
        sick,
        ns,
        {"metadata": {"annotations": {FAULT_ANNOTATION: None, ERROR_RATE_ANNOTATION: None}}},
    )
    wait_for(
        sick_untouched_while_open,
        # a trial that met the engine still sick reopened the circuits for another timeout
        timeout=max(0.0, half_open_earliest - time.monotonic()) + breaker.timeout_seconds + 30,
        what=f"{sick} served again after the circuits' {breaker.timeout_seconds} s",
        every=0.5,
    )
    back_after = time.monotonic() - open_seen
    wait_for(
        lambda: set(circuit_states(router_ips, engines[sick]).values()) == {0},
        timeout=30,
        what=f"the circuits of {sick} closed in every router pod",
    )
    wait_for(
        lambda: not ejected(prometheus[PRIMARY], ns),
        timeout=20,
        what="DeepSeekRouterCircuitOpen's condition gone once the circuits closed",
        every=1,
    )
    back = engine_requests(engines[sick])
    healthy_back = engine_requests(engines[healthy])[0]
    sent_back = traffic.counts()["sent"]
    wait_for(
        lambda: traffic.counts()["sent"] >= sent_back + 40, timeout=30, what="40 more requests"
    )
    counts = traffic.stop()
    print(f"\nclient requests through the Service {NAME} with a sick engine: {counts}")
    after = engine_requests(engines[sick])
    assert after[0] >= back[0] + 5 and after[1] == back[1], (back, after)  # serving, no 500
    assert engine_requests(engines[healthy])[0] > healthy_back
    assert (
        counts["failed"] <= failures_allowed and counts["ok"] == counts["sent"] - counts["failed"]
    ), counts
    record(
        "engine-erroring-behind-router",
        f"both router pods opened the sick engine's circuit within {opened_in:.1f} s; it "
        f"answered {failed_open:.0f} requests 500 before, then none reached it while the "
        "healthy engine served every request; healed, it was served again "
        f"{back_after:.0f} s after the circuits opened (timeout {breaker.timeout_seconds} s) "
        f"and the circuits closed; {counts['failed']} client requests failed (at most "
        f"{failures_allowed}: 1 per router pod, 5 failed attempts open a circuit and a request "
        "goes out 3 times)",
        counts,
    )
