"""The local GPU cluster as a user sees it: real scheduler, controllers and Prometheus over
kwok-simulated GPU nodes in three zones per region."""

from __future__ import annotations

import json
import socket
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from deepseek_operator import labels as L
from kubernetes import client

from testbed.cluster import (
    ClusterConfig,
    LocalCluster,
    NodeSpec,
    RegionInfo,
    loopback_address,
    procs,
)
from testbed.cluster.layout import GPU_PRODUCT_LABEL, ZONE_LABEL

from .conftest import Prometheus
from .waiting import wait_for

pytestmark = pytest.mark.e2e

GPU = "nvidia.com/gpu"
GPU_TOLERATION = client.V1Toleration(key=GPU, operator="Exists", effect="NoSchedule")


def _deployment(
    name: str,
    *,
    replicas: int,
    gpus: int = 0,
    spread: bool = False,
    labels: dict[str, str] | None = None,
) -> client.V1Deployment:
    pod_labels = {"app": name, **(labels or {})}
    resources = client.V1ResourceRequirements(
        requests={"cpu": "1", **({GPU: str(gpus)} if gpus else {})},
        limits={GPU: str(gpus)} if gpus else None,
    )
    spec = client.V1PodSpec(
        containers=[
            client.V1Container(
                name="main",
                image="registry.example/none:1",
                resources=resources,
                ports=[client.V1ContainerPort(name="http", container_port=8000)],
            )
        ],
        tolerations=[GPU_TOLERATION] if gpus else None,
        termination_grace_period_seconds=1,
    )
    if spread:
        spec.topology_spread_constraints = [
            client.V1TopologySpreadConstraint(
                max_skew=1,
                topology_key=ZONE_LABEL,
                when_unsatisfiable="DoNotSchedule",
                label_selector=client.V1LabelSelector(match_labels={"app": name}),
            )
        ]
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=pod_labels), spec=spec
            ),
        ),
    )


def _ready_replicas(apps: client.AppsV1Api, ns: str, name: str) -> int:
    return apps.read_namespaced_deployment_status(name, ns).status.ready_replicas or 0


def _pods(core: client.CoreV1Api, ns: str, app: str) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(ns, label_selector=f"app={app}").items)


def test_each_region_has_gpu_nodes_in_three_zones(
    regions: dict[str, RegionInfo], api_clients: dict[str, client.ApiClient]
) -> None:
    for name, info in regions.items():
        nodes = client.CoreV1Api(api_clients[name]).list_node().items
        gpu = [n for n in nodes if GPU_PRODUCT_LABEL in (n.metadata.labels or {})]
        cpu = [n for n in nodes if GPU_PRODUCT_LABEL not in (n.metadata.labels or {})]
        assert Counter(n.metadata.labels[ZONE_LABEL] for n in gpu).keys() == set(info.zones)
        assert len(set(info.zones)) == 3
        assert cpu, f"{name}: no CPU nodes"
        for n in nodes:
            assert n.metadata.labels["topology.kubernetes.io/region"] == info.region
            ready = [c for c in n.status.conditions or [] if c.type == "Ready"]
            assert ready and ready[0].status == "True", n.metadata.name
        for n in gpu:
            assert n.status.capacity[GPU] == "8"
            assert n.status.allocatable[GPU] == "8"
            assert n.metadata.labels[GPU_PRODUCT_LABEL].startswith("NVIDIA-")
        for n in cpu:
            assert GPU not in (n.status.allocatable or {})


def test_gpu_deployment_spreads_over_zones_and_becomes_ready(
    core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str, region: RegionInfo
) -> None:
    apps.create_namespaced_deployment(
        namespace, _deployment("spread", replicas=3, gpus=8, spread=True)
    )
    wait_for(
        lambda: _ready_replicas(apps, namespace, "spread") == 3,
        timeout=90,
        what="3 Ready replicas",
    )
    pods = _pods(core, namespace, "spread")
    nodes = {n.metadata.name: n for n in core.list_node().items}
    zones = [nodes[p.spec.node_name].metadata.labels[ZONE_LABEL] for p in pods]
    assert sorted(zones) == sorted(region.zones)  # one whole-node replica per zone
    for p in pods:
        assert p.status.phase == "Running"
        node = nodes[p.spec.node_name]
        # The pod IP comes from its node's pod CIDR and is served on loopback (layout.py).
        assert p.status.pod_ip.rsplit(".", 1)[0] == node.spec.pod_cidr.rsplit(".", 1)[0]
        assert loopback_address(p.status.pod_ip).startswith(f"127.{region.octet}.")


def test_oversized_gpu_request_stays_pending_as_unschedulable(
    core: client.CoreV1Api, namespace: str
) -> None:
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="too-big"),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="main",
                    image="registry.example/none:1",
                    resources=client.V1ResourceRequirements(limits={GPU: "16"}),
                )
            ],
            tolerations=[GPU_TOLERATION],
        ),
    )
    core.create_namespaced_pod(namespace, pod)

    def unschedulable() -> Any:
        p = core.read_namespaced_pod("too-big", namespace)
        conds = [c for c in p.status.conditions or [] if c.type == "PodScheduled"]
        return conds and conds[0].status == "False" and conds[0].reason == "Unschedulable" and p

    p = wait_for(unschedulable, timeout=60, what="PodScheduled=False/Unschedulable")
    assert p.status.phase == "Pending"
    assert p.spec.node_name is None
    events = wait_for(
        lambda: [
            e
            for e in core.list_namespaced_event(
                namespace, field_selector="involvedObject.name=too-big"
            ).items
            if e.reason == "FailedScheduling"
        ],
        timeout=30,
        what="a FailedScheduling event",
    )
    assert "nvidia.com/gpu" in events[0].message


def test_service_endpoint_slices_list_the_ready_pods(
    core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str, api_clients: Any
) -> None:
    apps.create_namespaced_deployment(namespace, _deployment("web", replicas=2))
    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(
                selector={"app": "web"},
                ports=[client.V1ServicePort(name="http", port=80, target_port="http")],
            ),
        ),
    )
    wait_for(lambda: _ready_replicas(apps, namespace, "web") == 2, timeout=90, what="2 Ready")
    pod_ips = sorted(p.status.pod_ip for p in _pods(core, namespace, "web"))
    discovery = client.DiscoveryV1Api(api_clients["us-east"])

    def ready_addresses() -> list[str]:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=web"
        ).items
        return sorted(
            a
            for s in slices
            for e in s.endpoints or []
            if e.conditions and e.conditions.ready
            for a in e.addresses
        )

    assert wait_for(lambda: ready_addresses() == pod_ips, timeout=60, what="slices") is True
    slice_ports = {
        p.port
        for s in discovery.list_namespaced_endpoint_slice(namespace).items
        for p in s.ports or []
    }
    assert slice_ports == {8000}


def test_deleting_a_deployment_garbage_collects_its_replicasets_and_pods(
    core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str
) -> None:
    apps.create_namespaced_deployment(namespace, _deployment("gc", replicas=2))
    wait_for(lambda: len(_pods(core, namespace, "gc")) == 2, timeout=60, what="2 pods")
    apps.delete_namespaced_deployment("gc", namespace, propagation_policy="Background")
    wait_for(
        lambda: (
            not _pods(core, namespace, "gc")
            and not apps.list_namespaced_replica_set(namespace).items
        ),
        timeout=60,
        what="pods and ReplicaSets to be garbage-collected",
    )


def test_prometheus_answers_promql_and_scrapes_the_api_server(
    prometheus: dict[str, Prometheus],
) -> None:
    for name, prom in prometheus.items():
        result = wait_for(
            lambda prom=prom: [
                r for r in prom.query('up{job="kube-apiserver"}') if r["value"][1] == "1"
            ],
            timeout=60,
            what=f"{name}: up{{job='kube-apiserver'}} == 1",
        )
        assert result[0]["metric"]["instance"].startswith("127.0.0.1:")
        # A real query over real samples: the API server's request counter has data.
        rate = prom.query('sum(apiserver_request_total{job="kube-apiserver"}) > 0')
        assert rate, f"{name}: no apiserver_request_total samples"


def test_prometheus_discovers_gpu_nodes_for_dcgm_through_kubernetes_sd(
    prometheus: dict[str, Prometheus],
    regions: dict[str, RegionInfo],
    api_clients: dict[str, client.ApiClient],
) -> None:
    for name, prom in prometheus.items():
        nodes = client.CoreV1Api(api_clients[name]).list_node().items
        want = {
            f"http://{loopback_address(a.address)}:9400/metrics": n.metadata.name
            for n in nodes
            if GPU_PRODUCT_LABEL in (n.metadata.labels or {})
            for a in n.status.addresses
            if a.type == "InternalIP"
        }
        n_gpu = len(want)
        targets = wait_for(
            lambda prom=prom, n=n_gpu: (
                len(prom.active_targets("dcgm")) == n and prom.active_targets("dcgm")
            ),
            timeout=60,
            what=f"{name}: one dcgm target per GPU node",
        )
        # kubernetes_sd's node role names the instance after the node.
        got = {t["scrapeUrl"]: t["labels"]["instance"] for t in targets}
        assert got == want
        assert {t["labels"]["zone"] for t in targets} == set(regions[name].zones)


def test_prometheus_discovers_engine_pods_with_their_target_labels(
    core: client.CoreV1Api, namespace: str, prometheus: dict[str, Prometheus]
) -> None:
    engine_labels = {
        L.COMPONENT: L.ENGINE_COMPONENT,
        L.DEPLOYMENT: "r1",
        L.COLOUR: "blue",
        L.MODE: "fp8",
    }
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="r1-blue-0", labels=engine_labels),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name=L.ENGINE_CONTAINER,
                    image="registry.example/none:1",
                    ports=[client.V1ContainerPort(name=L.ENGINE_PORT_NAME, container_port=8000)],
                )
            ],
        ),
    )
    core.create_namespaced_pod(namespace, pod)
    ip = wait_for(
        lambda: core.read_namespaced_pod("r1-blue-0", namespace).status.pod_ip,
        timeout=60,
        what="a pod IP",
    )
    prom = prometheus["us-east"]
    target = wait_for(
        lambda: [
            t
            for t in prom.active_targets("deepseek-engines")
            if t["labels"].get("pod") == "r1-blue-0" and t["labels"]["namespace"] == namespace
        ],
        timeout=60,
        what="the engine pod as a deepseek-engines target",
    )[0]
    assert target["labels"]["instance"] == f"{loopback_address(ip)}:8000"
    assert target["scrapeUrl"] == f"http://{loopback_address(ip)}:8000/metrics"
    assert {k: target["labels"][k] for k in ("dsd", "colour", "mode")} == {
        "dsd": "r1",
        "colour": "blue",
        "mode": "fp8",
    }


def test_file_sd_targets_are_picked_up_without_a_restart(
    regions: dict[str, RegionInfo], prometheus: dict[str, Prometheus], namespace: str
) -> None:
    info, prom = regions["us-east"], prometheus["us-east"]
    target_file = info.prometheus_targets_dir / f"{namespace}.json"
    host = f"127.0.0.1:{info.ports['prometheus']}"  # Prometheus's own /metrics as a target
    target_file.write_text(json.dumps([{"targets": [host], "labels": {"job": namespace}}]))
    try:
        wait_for(
            lambda: [r for r in prom.query(f'up{{job="{namespace}"}}') if r["value"][1] == "1"],
            timeout=60,
            what="the file_sd target to be scraped",
        )
    finally:
        target_file.unlink()


def test_a_second_up_reuses_the_running_cluster(local_cluster: LocalCluster) -> None:
    before = {
        (region, c.name): c.pid
        for region, st in local_cluster.status().items()
        for c in st.components
    }
    assert all(before.values())
    LocalCluster(local_cluster.configs).up()
    after = {
        (region, c.name): c.pid
        for region, st in LocalCluster(local_cluster.configs).status().items()
        for c in st.components
    }
    assert after == before


@pytest.mark.slow
def test_a_cluster_stops_without_leftovers_and_starts_again(tmp_path: Path) -> None:
    """A separate small region on its own ports, so the shared clusters keep running."""
    cfg = ClusterConfig(
        name="e2e-restart",
        region="e2e-restart",
        port_base=26000,
        octet=48,
        nodes=(
            NodeSpec(name="r-a-gpu", zone="e2e-restart-a", gpu_product="NVIDIA-H100-80GB-HBM3"),
            NodeSpec(name="r-b-cpu", zone="e2e-restart-b"),
        ),
        repo_root=tmp_path,
    )
    cluster = LocalCluster([cfg])
    try:
        cluster.up()
        st = cluster.status()["e2e-restart"]
        assert st.healthy and st.nodes_ready == 2
        pids = [c.pid for c in st.components]
        stopped = cluster.down()
        assert len(stopped) == 7  # six cluster processes and the fleet
        for pid in pids:
            assert pid is not None
            alive = subprocess.run(
                ["ps", "-o", "stat=", "-g", str(pid)], capture_output=True, text=True, check=False
            ).stdout.split()
            assert [s for s in alive if not s.startswith("Z")] == [], f"group {pid} left behind"
        for port in cfg.ports.as_dict().values():
            if port == cfg.ports.etcd_peer:
                continue
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
        assert not list((cfg.state_dir / "run").glob("*.pid"))
        # Up again on the kept state: same nodes, Ready again.
        cluster.up()
        st = cluster.status()["e2e-restart"]
        assert st.healthy and st.nodes_ready == 2
        assert all(procs.running(cfg.state_dir / "run" / f"{c.name}.pid") for c in st.components)
    finally:
        cluster.down(purge=True)
