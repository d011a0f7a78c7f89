"""Issue 19's fault matrix, the faults no other suite injects: the region's Prometheus stopped
for several evaluation periods, and its kube-apiserver restarted, each under client load through
the router (test_rollout's Traffic) and with the real operator running. Each test records its
row for docs/reliability.md (faults.py).

Both stop a component of the shared test cluster for real (`LocalCluster.stop_component`) and
start it again with `up()`, which every later test relies on: the restart is in a `finally`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from deepseek_operator import labels as L
from kubernetes import client

from testbed.cluster import LocalCluster, RegionInfo

from .faults import record
from .operator_process import OperatorProcess
from .test_operator import GROUP, PLURAL, VERSION, condition, events_of, get_dsd
from .test_rollout import (
    NAME,
    REPLICAS,
    Traffic,
    _serve,
    assert_no_client_errors,
    crds,  # noqa: F401  (a fixture)
    custom,  # noqa: F401  (a fixture)
    dsd_body,
    finish,
    operator,  # noqa: F401  (a fixture)
    ready_pods,
)
from .waiting import wait_for

pytestmark = pytest.mark.e2e

INTERVAL = 5  # spec.scaling.intervalSeconds
DOWN_WINDOW = 30  # spec.scaling.scaleDown.stabilizationSeconds


def _dsd(api: client.CustomObjectsApi, ns: str) -> dict[str, Any]:
    return get_dsd(api, ns, NAME)


@pytest.fixture
def scaled_serving(
    namespace: str,
    operator: OperatorProcess,  # noqa: F811
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,  # noqa: F811
    api_clients: dict[str, client.ApiClient],
) -> Iterator[Traffic]:
    """2 Ready replicas under load, autoscaling on (1..3, a decision every 5 s, scale-down
    after 30 s of lower load): missing data must not read as no load."""
    body = dsd_body()
    body["spec"]["scaling"] = {
        "enabled": True,
        "minReplicas": 1,
        "maxReplicas": 3,
        "intervalSeconds": INTERVAL,
        "scaleDown": {"stabilizationSeconds": DOWN_WINDOW, "maxStepReplicas": 1},
    }
    yield from _serve(namespace, core, custom, api_clients["us-east"], True, body)


def test_prometheus_down_holds_replicas_says_why_and_recovers(
    namespace: str,
    scaled_serving: Traffic,
    local_cluster: LocalCluster,
    region: RegionInfo,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,  # noqa: F811
) -> None:
    ns = namespace
    wait_for(
        lambda: (c := condition(_dsd(custom, ns), "MetricsAvailable")) and c["status"] == "True",
        timeout=120,
        what="MetricsAvailable=True (the autoscaler reads the engines)",
    )
    stopped_at = time.monotonic()
    try:
        assert local_cluster.stop_component(region.name, "prometheus")
        cond = wait_for(
            lambda: (
                c
                if (c := condition(_dsd(custom, ns), "MetricsAvailable")) and c["status"] == "False"
                else None
            ),
            timeout=90,
            what="MetricsAvailable=False with Prometheus stopped",
        )
        held = int(_dsd(custom, ns)["spec"]["replicas"])
        # several evaluation periods past the scale-down window: no data is not "no load"
        replicas_seen = set()
        deadline = time.monotonic() + DOWN_WINDOW + 6 * INTERVAL
        while time.monotonic() < deadline:
            replicas_seen.add(int(_dsd(custom, ns)["spec"]["replicas"]))
            time.sleep(2)
        last = _dsd(custom, ns)["status"]["lastScalingDecision"]
        down_for = time.monotonic() - stopped_at
    finally:
        local_cluster.up()
    assert cond is not None
    assert replicas_seen == {held}, replicas_seen
    assert last["reason"] in {"MetricsMissing", "MetricsStale"}, last
    assert last["toReplicas"] == last["fromReplicas"] == held, last
    assert cond["reason"] in {"MetricsMissing", "MetricsStale"}, cond
    assert not [e for e in events_of(core, ns, NAME) if e.reason == "ScaledDown"]
    back = wait_for(
        lambda: (
            c
            if (c := condition(_dsd(custom, ns), "MetricsAvailable")) and c["status"] == "True"
            else None
        ),
        timeout=180,
        what="MetricsAvailable=True again once Prometheus is back",
    )
    assert back is not None
    counts = finish(scaled_serving, "Prometheus down")
    assert_no_client_errors(counts)
    record(
        "prometheus-down",
        f"down {down_for:.0f}s: replicas held at {held} ({cond['reason']}: "
        f"{cond['message'][:80]}); MetricsAvailable back to True ({back['reason']})",
        counts,
    )


@pytest.fixture
def serving(
    namespace: str,
    operator: OperatorProcess,  # noqa: F811
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,  # noqa: F811
    api_clients: dict[str, client.ApiClient],
) -> Iterator[Traffic]:
    yield from _serve(namespace, core, custom, api_clients["us-east"], True)


def test_api_server_restart_recovers_watches_with_no_failed_requests(
    namespace: str,
    serving: Traffic,
    operator: OperatorProcess,  # noqa: F811
    local_cluster: LocalCluster,
    region: RegionInfo,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,  # noqa: F811
) -> None:
    ns = namespace
    t0 = time.monotonic()
    try:
        assert local_cluster.stop_component(region.name, "kube-apiserver")
        time.sleep(10)  # the operator's and the router's watches break
    finally:
        local_cluster.up()
    outage = time.monotonic() - t0
    proc = operator.proc
    assert proc is not None and proc.poll() is None, "the operator exited during the restart"
    # a change made after the restart reaches the cluster: the operator watches again
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, NAME, {"spec": {"replicas": REPLICAS + 1}}
    )
    wait_for(
        lambda: len(ready_pods(core, ns, "blue")) == REPLICAS + 1,
        timeout=180,
        what=f"{REPLICAS + 1} Ready blue pods after the restart",
    )
    status = _dsd(custom, ns)
    wait_for(
        lambda: (_dsd(custom, ns).get("status") or {}).get("readyReplicas") == REPLICAS + 1,
        timeout=60,
        what="status.readyReplicas follows",
    )
    assert status["metadata"]["generation"] >= 2
    counts = finish(serving, "API server restart")
    assert_no_client_errors(counts)
    record(
        "apiserver-restart",
        f"API server away ~{outage:.0f}s; the operator kept running and applied a replica "
        f"change made after it ({REPLICAS} -> {REPLICAS + 1} Ready)",
        counts,
    )


ZONE = "topology.kubernetes.io/zone"
GPU_PRODUCT = "nvidia.com/gpu.product"


def _zones_of(core: client.CoreV1Api, ns: str) -> dict[str, str]:
    """Ready blue pod -> the zone of its node (a pod whose node is gone is not counted)."""
    zone_of = {
        n.metadata.name: (n.metadata.labels or {}).get(ZONE, "") for n in core.list_node().items
    }
    out = {}
    for name in ready_pods(core, ns, "blue"):
        try:
            node = core.read_namespaced_pod(name, ns).spec.node_name
        except client.ApiException as e:
            if e.status == 404:  # deleted since it was listed
                continue
            raise
        if node in zone_of:
            out[name] = zone_of[node]
    return out


def test_a_zone_lost_reschedules_its_replicas_into_the_other_zones(
    namespace: str,
    serving: Traffic,
    local_cluster: LocalCluster,
    region: RegionInfo,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,  # noqa: F811
) -> None:
    ns = namespace
    before = _zones_of(core, ns)
    assert len(before) == REPLICAS and len(set(before.values())) == REPLICAS, before  # spread
    lost = sorted(before.values())[0]
    gpu_nodes = [
        n.metadata.name
        for n in core.list_node(label_selector=f"{ZONE}={lost}").items
        if GPU_PRODUCT in (n.metadata.labels or {})
    ]
    assert gpu_nodes, f"no GPU node in {lost}"
    t0 = time.monotonic()
    try:
        for node in gpu_nodes:
            core.delete_node(node)
        # the lost zone's replica is replaced in another zone (the scheduler keeps the spread
        # over the zones that still have GPUs) and serves again
        after = wait_for(
            lambda: (
                z if len(z := _zones_of(core, ns)) == REPLICAS and lost not in z.values() else None
            ),
            timeout=300,
            what=f"{REPLICAS} Ready blue pods outside {lost}",
        )
        back_in = time.monotonic() - t0
        wait_for(
            lambda: (_dsd(custom, ns).get("status") or {}).get("readyReplicas") == REPLICAS,
            timeout=60,
            what="status.readyReplicas back at the desired count",
        )
    finally:
        local_cluster.up()  # the nodes come back
    assert after is not None
    assert set(before) - set(after), "the pod in the lost zone was not replaced"
    served_before = serving.counts()["ok"]
    wait_for(lambda: serving.counts()["ok"] > served_before + 10, timeout=60, what="load served")
    counts = finish(serving, "a zone's GPU nodes removed")
    assert counts["ok"] > 0, counts
    record(
        "zone-lost",
        f"{len(gpu_nodes)} GPU node(s) of {lost} deleted; its replica was replaced in "
        f"{sorted(set(after.values()))} and all {REPLICAS} were Ready again after "
        f"{back_in:.0f}s"
        + (
            f"; {counts['failed']} request(s) in flight on the lost pod failed"
            if counts["failed"]
            else "; no request failed"
        ),
        counts,
    )


# A GPU node lost: its kubelet stops renewing the node's Lease and posting its status (kwok
# plays the kubelets: a node whose Lease another holder holds is not kwok's to play, the way
# kwok shards nodes between its replicas) and the machine's engine process dies (the fleet
# crashes the replicas of a node annotated down). Nothing touches the node's conditions: the
# node lifecycle controller of kube-controller-manager sees no Lease renewal for
# --node-monitor-grace-period (50 s, the default), marks the node Ready=Unknown, its pods not
# Ready and taints it node.kubernetes.io/unreachable:NoExecute; the taint eviction controller
# evicts the engine pod after its toleration (placement.nodeNotReadyTolerationSeconds).
NODE_LEASES = "kube-node-lease"
LOST_HOLDER = "e2e-node-lost"  # the Lease's holder while the node's kubelet is gone
EVICT_AFTER = 10  # spec.placement.nodeNotReadyTolerationSeconds
NODE_DOWN = "sim.deepseek.dev/zone-down"  # testbed.sim.faults.ZONE_DOWN_ANNOTATION
LOST_AT = "e2e.deepseek.dev/kubelet-stopped-at"


@pytest.fixture
def serving_quick_eviction(
    namespace: str,
    operator: OperatorProcess,  # noqa: F811
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,  # noqa: F811
    api_clients: dict[str, client.ApiClient],
) -> Iterator[Traffic]:
    body = dsd_body()
    body["spec"].setdefault("placement", {})["nodeNotReadyTolerationSeconds"] = EVICT_AFTER
    yield from _serve(namespace, core, custom, api_clients["us-east"], True, body)


def _node_ready(core: client.CoreV1Api, name: str) -> str:
    conds = core.read_node(name).status.conditions or []
    return next((c.status for c in conds if c.type == "Ready"), "")


def _lease(leases: client.CoordinationV1Api, node: str) -> client.V1Lease | None:
    """The node's Lease, None while it does not exist."""
    try:
        return leases.read_namespaced_lease(node, NODE_LEASES)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def _stop_kubelet(leases: client.CoordinationV1Api, core: client.CoreV1Api, node: str) -> None:
    """The node's kubelet and engines die: its Lease is no longer renewed (another holder, a
    long duration, the last renewTime kept), then the fleet crashes its replicas.

    kwok checks the Lease when it plans a node's next status heartbeat, not when it plays it
    (v0.8), so a heartbeat planned before the takeover (every 300-330 s) could still post a
    fresh status mid-fault; touching the node first, while kwok still plays it, re-plans that
    one 300 s ahead, past the fault. The fleet's crash comes only once kwok no longer plays
    the node, so that the node lifecycle controller, not the simulated kubelet, takes the pod
    out of service."""
    # kwok creates and renews the node's Lease; on a busy machine it may not exist yet
    wait_for(lambda: _lease(leases, node), timeout=120, what=f"{node}'s Lease (held by kwok)")
    core.patch_node(node, {"metadata": {"annotations": {LOST_AT: f"{time.time():.0f}"}}})
    time.sleep(2)
    leases.patch_namespaced_lease(
        node,
        NODE_LEASES,
        {"spec": {"holderIdentity": LOST_HOLDER, "leaseDurationSeconds": 3600}},
    )
    time.sleep(2)
    core.patch_node(node, {"metadata": {"annotations": {NODE_DOWN: "true"}}})


def _start_kubelet(leases: client.CoordinationV1Api, core: client.CoreV1Api, node: str) -> None:
    """The node comes back: the Lease expired (kwok takes it again within its renew interval,
    10 s, and plays the node: status Ready) and the fleet plays its pods again."""
    lease = _lease(leases, node)  # None: the fault never took it (see _stop_kubelet)
    if lease is not None and lease.spec.holder_identity == LOST_HOLDER:
        leases.patch_namespaced_lease(node, NODE_LEASES, {"spec": {"leaseDurationSeconds": 1}})
    core.patch_node(node, {"metadata": {"annotations": {NODE_DOWN: None, LOST_AT: None}}})


def _pod_conditions(core: client.CoreV1Api, ns: str, name: str) -> dict[str, str]:
    pod = core.read_namespaced_pod(name, ns)
    return {c.type: c.status for c in pod.status.conditions or []}


def _sent_to(traffic: Traffic, upstream: str) -> float:
    """Requests the router sent to one endpoint (address:port), whatever their outcome."""
    assert traffic.router is not None
    return sum(
        s.value
        for fam in traffic.router.metrics.upstream.collect()
        for s in fam.samples
        if s.name.endswith("_total") and s.labels.get("upstream") == upstream
    )


def _engine_pods(core: client.CoreV1Api, ns: str) -> list[client.V1Pod]:
    sel = f"{L.DEPLOYMENT}={NAME},{L.COMPONENT}={L.ENGINE_COMPONENT}"
    return list(core.list_namespaced_pod(ns, label_selector=sel).items)


def test_a_gpu_node_not_ready_has_its_replica_replaced_on_a_ready_node(
    namespace: str,
    serving_quick_eviction: Traffic,
    api_clients: dict[str, client.ApiClient],
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,  # noqa: F811
) -> None:
    ns, traffic = namespace, serving_quick_eviction
    leases = client.CoordinationV1Api(api_clients["us-east"])
    before = _zones_of(core, ns)
    assert len(before) == REPLICAS and len(set(before.values())) == REPLICAS, before
    victim = sorted(before)[0]
    pod = core.read_namespaced_pod(victim, ns)
    port = pod.spec.containers[0].ports[0].container_port
    node, upstream = pod.spec.node_name, f"{pod.status.pod_ip}:{port}"
    # what `kubectl get pod -o yaml` shows: the operator's tolerations of a failed node
    tolerations = {
        (t.key, t.effect): t.toleration_seconds for t in pod.spec.tolerations or [] if t.key
    }
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        assert tolerations.get((key, "NoExecute")) == EVICT_AFTER, tolerations
    assert _node_ready(core, node) == "True"
    assert traffic.stable_pods() == sorted(before), traffic.stable_pods()
    t0 = time.monotonic()
    try:
        _stop_kubelet(leases, core, node)
        wait_for(
            lambda: _node_ready(core, node) != "True",
            timeout=120,
            what=f"{node} not Ready (node lifecycle controller, no Lease renewal)",
        )
        not_ready_in = time.monotonic() - t0
        ready_state = _node_ready(core, node)
        # its pod is marked not Ready (by the node lifecycle controller, or first by the
        # crashed engine's readiness, whichever comes first)
        wait_for(
            lambda: _pod_conditions(core, ns, victim).get("Ready") == "False",
            timeout=30,
            what=f"{victim} not Ready",
        )
        # its pod is not Ready any more: the EndpointSlice drops it, the router follows
        wait_for(
            lambda: victim not in traffic.stable_pods(),
            timeout=60,
            what=f"the router to stop using {victim}",
        )
        dropped_in = time.monotonic() - t0
        time.sleep(2)  # requests sent before the drop finish or fail
        sent_after_drop = _sent_to(traffic, upstream)
        # evicted after the toleration, recreated on a Ready node, spread over the zones
        after = wait_for(
            lambda: z if len(z := _zones_of(core, ns)) == REPLICAS and victim not in z else None,
            timeout=120,
            what=f"{REPLICAS} Ready blue pods without {victim}",
        )
        replaced_in = time.monotonic() - t0
        wait_for(
            lambda: (_dsd(custom, ns).get("status") or {}).get("readyReplicas") == REPLICAS,
            timeout=60,
            what="status.readyReplicas back at the desired count",
        )
        nodes_now = {
            name: core.read_namespaced_pod(name, ns).spec.node_name for name in sorted(after)
        }
        try:
            evicted: client.V1Pod | None = core.read_namespaced_pod(victim, ns)
        except client.ApiException as e:
            if e.status != 404:
                raise
            evicted = None  # already removed (kwok may play the deletion of a node's pod)
    finally:
        _start_kubelet(leases, core, node)
    assert node not in nodes_now.values(), nodes_now
    assert all(_node_ready(core, n) == "True" for n in nodes_now.values()), nodes_now
    assert len(set(after.values())) == REPLICAS, after  # still one replica per zone
    # evicted: terminating (a dead kubelet confirms no deletion: it waits for its node) or gone
    assert evicted is None or evicted.metadata.deletion_timestamp is not None, evicted
    assert _sent_to(traffic, upstream) == sent_after_drop, "the router used the lost replica"
    # the node comes back: Ready, untainted, and the evicted pod goes; nothing else stays
    wait_for(lambda: _node_ready(core, node) == "True", timeout=90, what=f"{node} Ready again")
    back_in = time.monotonic() - t0
    wait_for(
        lambda: (
            not [
                t
                for t in core.read_node(node).spec.taints or []
                if t.key.startswith("node.kubernetes")
            ]
        ),
        timeout=60,
        what=f"{node} without the node lifecycle taints",
    )
    wait_for(
        lambda: sorted(p.metadata.name for p in _engine_pods(core, ns)) == sorted(after),
        timeout=90,
        what=f"only the {REPLICAS} serving pods left (the evicted pod removed)",
    )
    assert sorted(ready_pods(core, ns, "blue")) == sorted(after)
    served_before = traffic.counts()["ok"]
    wait_for(lambda: traffic.counts()["ok"] > served_before + 10, timeout=60, what="load served")
    counts = finish(traffic, "a GPU node NotReady")
    assert counts["ok"] > 0, counts
    # failures only while the lost replica was still an endpoint (streams cut by the crash)
    assert counts["failed"] <= sent_after_drop, counts
    record(
        "node-not-ready",
        f"{node} (serving {victim}) stopped: Ready={ready_state} after {not_ready_in:.0f}s, "
        f"out of the router after {dropped_in:.0f}s, replaced on "
        f"{', '.join(sorted(nodes_now.values()))} after {replaced_in:.0f}s "
        f"(toleration {EVICT_AFTER}s), one replica per zone; back Ready after {back_in:.0f}s, "
        "the evicted pod removed, nothing stuck"
        + (
            f"; {counts['failed']} request(s) in flight on the lost replica failed"
            if counts["failed"]
            else "; no request failed"
        ),
        counts,
    )
