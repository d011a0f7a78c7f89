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
