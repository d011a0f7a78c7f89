"""Issue 4 on the local cluster: a DeepSeekDeployment reconciled into zone-spread engine pods.

The operator runs as the real `deepseek-operator run` process against us-east. The engine pods
of these tests carry the annotation `sim.deepseek.dev/fleet: "false"` (through
spec.engine.podAnnotations), so they become Ready after the cluster's start delay without a
simulated engine; the rollout tests (test_rollout.py) run with the simulated fleet.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from testbed.cluster import RegionInfo

from .faults import record
from .operator_process import REPO, OperatorProcess, install_crds, release_namespace
from .waiting import wait_for

pytestmark = pytest.mark.e2e

GROUP, VERSION, PLURAL = "serving.deepseek.dev", "v1alpha1", "deepseekdeployments"
ZONE = "topology.kubernetes.io/zone"
CACHE = Path(os.environ.get("DEEPSEEK_CACHE", Path.home() / ".cache" / "deepseek-operator"))


def example(name: str, *, fleet: bool = False) -> dict[str, Any]:
    body = dict(yaml.safe_load((REPO / "examples" / name).read_text()))
    if not fleet:
        engine = body["spec"].setdefault("engine", {})
        engine.setdefault("podAnnotations", {})["sim.deepseek.dev/fleet"] = "false"
    return body


@pytest.fixture(scope="module")
def crds(api_clients: dict[str, client.ApiClient]) -> None:
    for api in api_clients.values():
        install_crds(api)


@pytest.fixture
def ns(namespace: str) -> str:
    return namespace


@pytest.fixture
def namespace_factory(core: client.CoreV1Api) -> Iterator[Any]:
    """More namespaces (without the simulated fleet) for one test; deleted afterwards."""
    made: list[str] = []

    def make(name: str | None = None) -> str:
        name = name or f"e2e-extra-{os.urandom(3).hex()}"
        core.create_namespace(
            {
                "metadata": {
                    "name": name,
                    "labels": {"e2e": "true", "sim.deepseek.dev/fleet": "false"},
                }
            }
        )
        made.append(name)
        return name

    yield make
    for name in made:
        release_namespace(core.api_client, name)


@pytest.fixture
def operator(region: RegionInfo, ns: str, crds: None) -> Iterator[OperatorProcess]:
    # --identity as the chart sets it (POD_NAME): the name a restart in the same pod keeps
    op = OperatorProcess(
        region.kubeconfig, namespaces=[ns], name=f"op-{ns}", extra=["--identity", f"op-{ns}"]
    ).start()
    yield op
    op.stop()


@pytest.fixture
def custom(api_clients: dict[str, client.ApiClient]) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_clients["us-east"])


def create_dsd(custom: client.CustomObjectsApi, ns: str, body: dict[str, Any]) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)


def get_dsd(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    return dict(custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name))


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return None


def ready_engine_pods(core: client.CoreV1Api, ns: str, dsd: str) -> list[client.V1Pod]:
    pods = core.list_namespaced_pod(
        ns, label_selector=f"serving.deepseek.dev/deployment={dsd}"
    ).items
    out = []
    for p in pods:
        if p.metadata.deletion_timestamp:
            continue
        conds = {c.type: c.status for c in (p.status.conditions or [])}
        if conds.get("Ready") == "True":
            out.append(p)
    return out


def zones_of(core: client.CoreV1Api, pods: list[client.V1Pod]) -> Counter[str]:
    zones: Counter[str] = Counter()
    for p in pods:
        node = core.read_node(p.spec.node_name)
        zones[node.metadata.labels[ZONE]] += 1
    return zones


def kubectl(region: RegionInfo, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CACHE / "bin" / "kubectl"), "--kubeconfig", str(region.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


def events_of(core: client.CoreV1Api, ns: str, name: str) -> list[client.CoreV1Event]:
    return [
        e
        for e in core.list_namespaced_event(ns).items
        if e.involved_object.kind == "DeepSeekDeployment" and e.involved_object.name == name
    ]


def model_cache_pvc(core: client.CoreV1Api, ns: str, name: str) -> None:
    """A pre-filled model cache as a user would provide it: a PV (hostPath; nothing is written on
    simulated nodes) bound to the PVC the example names."""
    core.create_persistent_volume(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"{ns}-{name}", "labels": {"e2e": "true"}},
            "spec": {
                "capacity": {"storage": "1Ti"},
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "hostPath": {"path": f"/models/{name}"},
                "claimRef": {"namespace": ns, "name": name},
                "persistentVolumeReclaimPolicy": "Retain",
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        ns,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "volumeName": f"{ns}-{name}",
                "resources": {"requests": {"storage": "1Ti"}},
            },
        },
    )


@pytest.mark.parametrize(
    ("file", "replicas"), [("deepseek-r1.yaml", 3), ("deepseek-r1-distill-7b.yaml", 6)]
)
def test_example_becomes_ready_spread_over_three_zones(
    file: str,
    replicas: int,
    ns: str,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    region: RegionInfo,
) -> None:
    body = example(file)
    name = body["metadata"]["name"]
    body["spec"]["replicas"] = replicas
    cache = body["spec"]["model"].get("cache", {}).get("persistentVolumeClaim")
    if cache:
        model_cache_pvc(core, ns, cache)
    create_dsd(custom, ns, body)

    pods = wait_for(
        lambda: p if len(p := ready_engine_pods(core, ns, name)) == replicas else None,
        timeout=120,
        what=f"{replicas} Ready engine pods",
    )
    assert sorted(zones_of(core, pods).values()) == [replicas // 3] * 3
    gpus = {p.spec.containers[0].resources.limits["nvidia.com/gpu"] for p in pods}
    assert gpus == {str(body["spec"]["resources"]["gpusPerReplica"])}

    # The stable Service routes to exactly these pods.
    def endpoint_ips() -> set[str]:
        slices = client.DiscoveryV1Api(core.api_client).list_namespaced_endpoint_slice(
            ns, label_selector=f"kubernetes.io/service-name={name}"
        )
        return {
            a
            for s in slices.items
            for e in s.endpoints or []
            if e.conditions and e.conditions.ready
            for a in e.addresses
        }

    want = {p.status.pod_ip for p in pods}
    wait_for(lambda: endpoint_ips() == want, timeout=30, what="Service endpoints = Ready pods")

    obj = wait_for(
        lambda: (
            o
            if (o := get_dsd(custom, ns, name)).get("status", {}).get("readyReplicas") == replicas
            and (condition(o, "Ready") or {}).get("status") == "True"
            else None
        ),
        timeout=60,
        what="status readyReplicas and Ready=True",
    )
    st = obj["status"]
    assert st["observedGeneration"] == obj["metadata"]["generation"]
    assert st["activeColour"] == "blue"
    assert st["mode"] == body["spec"]["quantization"]["mode"]
    row = kubectl(region, "get", "dsd", name, "-n", ns, "--no-headers").stdout.split()
    # NAME MODEL MODE READY DESIRED ACTIVE PHASE AGE
    assert row[0] == name
    assert row[1] == body["spec"]["model"]["checkpoint"]
    assert row[2:6] == [body["spec"]["quantization"]["mode"], str(replicas), str(replicas), "blue"]
    assert row[6] == st["phase"] == "Ready"

    # Reconciling again changes nothing: a restarted operator resumes, reconciles every object
    # and leaves the engine Deployment at the same generation.
    dep = apps.read_namespaced_deployment(f"{name}-blue", ns)
    marker = f"reconciled namespace={ns} name={name} "
    offset = operator.log_size()
    operator.restart()
    wait_for(
        lambda: marker in operator.log_since(offset), timeout=60, what="a reconcile after restart"
    )
    assert apps.read_namespaced_deployment(f"{name}-blue", ns).metadata.generation == (
        dep.metadata.generation
    )


@pytest.fixture
def small(ns: str, custom: client.CustomObjectsApi) -> dict[str, Any]:
    body = example("deepseek-r1-distill-7b.yaml")
    body["metadata"]["name"] = "small"
    body["spec"]["replicas"] = 3
    create_dsd(custom, ns, body)
    return body


def deployment_replicas(apps: client.AppsV1Api, ns: str, name: str) -> int | None:
    try:
        return int(apps.read_namespaced_deployment(name, ns).spec.replicas)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def test_kubectl_scale_changes_the_engine_deployment_within_min_max(
    ns: str,
    operator: OperatorProcess,
    small: dict[str, Any],
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    region: RegionInfo,
) -> None:
    wait_for(lambda: len(ready_engine_pods(core, ns, "small")) == 3, timeout=90, what="3 Ready")
    kubectl(region, "scale", "dsd", "small", "-n", ns, "--replicas=5")
    wait_for(lambda: deployment_replicas(apps, ns, "small-blue") == 5, what="Deployment at 5")
    wait_for(lambda: len(ready_engine_pods(core, ns, "small")) == 5, timeout=90, what="5 Ready")
    scale = custom.get_namespaced_custom_object_scale(GROUP, VERSION, ns, PLURAL, "small")
    wait_for(
        lambda: (
            custom.get_namespaced_custom_object_scale(GROUP, VERSION, ns, PLURAL, "small")[
                "status"
            ].get("replicas")
            == 5
        ),
        what="scale status replicas 5",
    )
    assert scale["spec"]["replicas"] == 5

    # Above scaling.maxReplicas (6): the API server refuses, nothing changes.
    res = kubectl(region, "scale", "dsd", "small", "-n", ns, "--replicas=9", check=False)
    assert res.returncode != 0
    assert "replicas must be between scaling.minReplicas and scaling.maxReplicas" in res.stderr
    assert deployment_replicas(apps, ns, "small-blue") == 5


def test_deleted_engine_deployment_is_recreated(
    ns: str,
    operator: OperatorProcess,
    small: dict[str, Any],
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
) -> None:
    first = wait_for(
        lambda: (
            apps.read_namespaced_deployment("small-blue", ns)
            if deployment_replicas(apps, ns, "small-blue")
            else None
        ),
        what="engine Deployment",
    )
    apps.delete_namespaced_deployment("small-blue", ns)
    again = wait_for(
        lambda: (
            d
            if (d := _get_deployment(apps, ns, "small-blue")) is not None
            and d.metadata.uid != first.metadata.uid
            else None
        ),
        timeout=60,
        what="a new engine Deployment",
    )
    assert again.spec.replicas == 3
    wait_for(lambda: len(ready_engine_pods(core, ns, "small")) == 3, timeout=90, what="3 Ready")
    recreated = [e for e in events_of(core, ns, "small") if "Deployment small-blue" in e.message]
    assert any(e.reason in ("Created", "Create") for e in recreated), [
        (e.reason, e.message) for e in recreated
    ]


RECONCILES = 'deepseek_operator_reconcile_duration_seconds_count{handler="reconcile"'


def _api_requests(operator: OperatorProcess) -> tuple[dict[str, float], float]:
    """The operator's API requests by `verb resource`, and its reconciles, from its /metrics."""
    by: dict[str, float] = {}
    reconciles = 0.0
    for line in operator.metrics().splitlines():
        if line.startswith("deepseek_operator_api_requests_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            by[f"{labels['verb']} {labels['resource']}"] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(RECONCILES):
            reconciles = float(line.rsplit(" ", 1)[1])
    return by, reconciles


def test_steady_reconciles_read_watches_and_a_deleted_service_is_recreated(
    ns: str,
    operator: OperatorProcess,
    small: dict[str, Any],
    core: client.CoreV1Api,
) -> None:
    """Issue 19: a reconcile whose resource and owned objects did not change reads them from the
    watches (no GET, no LIST but the GPU nodes' every 30 s); its only write is the status write
    of the autoscaling decision.
    Drift is still corrected at once: a deleted Service comes back from its watch event."""
    wait_for(lambda: len(ready_engine_pods(core, ns, "small")) == 3, timeout=120, what="3 Ready")
    time.sleep(3)
    before, reconciles0 = _api_requests(operator)
    time.sleep(33)  # two autoscaling intervals (15 s): at least two reconciles
    after, reconciles1 = _api_requests(operator)
    made = {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}
    assert reconciles1 - reconciles0 >= 2, (reconciles0, reconciles1)
    # GPU nodes are listed at most once per NODE_CACHE_SECONDS (30 s) for the GPU capacity,
    # so a 33 s window may hold one such LIST; nothing else is read
    reads = {k: v for k, v in made.items() if k.split()[0] in ("get", "list")}
    assert reads.pop("list nodes", 0) <= 2, made
    assert reads == {}, made
    assert made.get("patch deepseekdeployments/status", 0) <= reconciles1 - reconciles0, made

    first = core.read_namespaced_service("small", ns)
    core.delete_namespaced_service("small", ns)
    again = wait_for(
        lambda: (
            svc
            if (svc := _get_service(core, ns, "small")) is not None
            and svc.metadata.uid != first.metadata.uid
            else None
        ),
        timeout=10,  # well inside the autoscaling interval: the watch event woke the loop
        what="the Service created again",
    )
    assert again.spec.selector == first.spec.selector


def _get_service(core: client.CoreV1Api, ns: str, name: str) -> client.V1Service | None:
    try:
        return core.read_namespaced_service(name, ns)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def _get_deployment(apps: client.AppsV1Api, ns: str, name: str) -> client.V1Deployment | None:
    try:
        return apps.read_namespaced_deployment(name, ns)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def test_operator_killed_and_restarted_converges(
    ns: str,
    operator: OperatorProcess,
    small: dict[str, Any],
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
) -> None:
    wait_for(lambda: deployment_replicas(apps, ns, "small-blue") == 3, what="Deployment at 3")
    operator.kill()
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "small", {"spec": {"replicas": 4}}
    )
    assert deployment_replicas(apps, ns, "small-blue") == 3  # nobody acted while it was down
    # Restarted in "the same pod" (same --identity) with the lowest priority: the killed
    # process's peering record is its own, so it is not paused behind it for Kopf's 60 s.
    operator.extra = [*operator.extra, "--priority", "1"]
    since = operator.log_size()
    operator.start()
    wait_for(lambda: deployment_replicas(apps, ns, "small-blue") == 4, what="Deployment at 4")
    # One record in the peering object, its own: the predecessor's was taken over, not left to
    # expire while the restarted process waits behind it (a new name would add a second one).
    peering = custom.get_namespaced_custom_object(
        "kopf.dev", "v1", ns, "kopfpeerings", "deepseek-operator"
    )
    assert sorted(peering.get("status") or {}) == [f"op-{ns}"], peering.get("status")
    assert "identity=op-" in operator.log_since(since)
    wait_for(lambda: len(ready_engine_pods(core, ns, "small")) == 4, timeout=90, what="4 Ready")
    wait_for(
        lambda: get_dsd(custom, ns, "small").get("status", {}).get("readyReplicas") == 4,
        what="status readyReplicas 4",
    )
    record(
        "operator-killed",
        "nothing acted while it was down; restarted under the same peering identity (the "
        "pod's name) and a lower priority, it did not wait for its dead predecessor's peering "
        "record and applied the replica change made meanwhile (3 -> 4 Ready, status "
        "readyReplicas 4)",
    )


def test_delete_keeps_user_pvc_and_removes_owned_objects(
    ns: str,
    operator: OperatorProcess,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
) -> None:
    body = example("deepseek-r1.yaml")
    body["spec"]["replicas"] = 1
    model_cache_pvc(core, ns, "deepseek-r1-weights")
    core.create_namespaced_secret(
        ns, {"metadata": {"name": "hf-token"}, "stringData": {"token": "x"}}
    )
    create_dsd(custom, ns, body)
    wait_for(lambda: len(ready_engine_pods(core, ns, "r1")) == 1, timeout=90, what="1 Ready")
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "r1")
    wait_for(lambda: _get_deployment(apps, ns, "r1-blue") is None, timeout=60, what="GC")
    wait_for(lambda: not core.list_namespaced_pod(ns).items, timeout=60, what="pods gone")
    services = {s.metadata.name for s in core.list_namespaced_service(ns).items}
    assert not services & {"r1", "r1-preview"}
    assert core.read_namespaced_persistent_volume_claim("deepseek-r1-weights", ns)
    assert core.read_namespaced_secret("hf-token", ns)


def invalid(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    cur = out["spec"]
    *parents, leaf = path.split(".")
    for p in parents:
        cur = cur.setdefault(p, {})
    cur[leaf] = value
    return out


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("scaling.minReplicas", 7, "minReplicas"),
        ("quantization.mode", "fp16", "quantization.mode"),
        ("resources.gpusPerReplica", 0, "gpusPerReplica"),
        ("engine.gpuMemoryUtilization", 1.5, "gpuMemoryUtilization"),
        ("replicas", 99, "replicas must be between"),
    ],
)
def test_api_server_rejects_invalid_specs(
    path: str,
    value: Any,
    message: str,
    ns: str,
    crds: None,
    custom: client.CustomObjectsApi,
) -> None:
    body = invalid(example("deepseek-r1-distill-7b.yaml"), path, value)
    with pytest.raises(client.ApiException) as e:
        create_dsd(custom, ns, body)
    assert e.value.status == 422
    assert message in str(e.value.body)


@pytest.mark.parametrize(
    ("patch", "reason", "field"),
    [
        ({"resources": {"gpusPerReplica": 16}}, "GPUsPerReplicaExceedNode", "gpusPerReplica"),
        ({"resources": {"gpuProduct": "NVIDIA-B300"}}, "UnknownGPUProduct", "gpuProduct"),
        (
            {"model": {"cache": {"persistentVolumeClaim": "nope"}}},
            "ModelCacheNotFound",
            "persistentVolumeClaim",
        ),
    ],
)
def test_spec_the_cluster_cannot_serve_sets_invalid_spec_and_applies_nothing(
    patch: dict[str, Any],
    reason: str,
    field: str,
    ns: str,
    operator: OperatorProcess,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
) -> None:
    body = example("deepseek-r1-distill-7b.yaml")
    for k, v in patch.items():
        body["spec"].setdefault(k, {}).update(v)
    create_dsd(custom, ns, body)
    name = body["metadata"]["name"]
    cond = wait_for(
        lambda: condition(get_dsd(custom, ns, name), "InvalidSpec"),
        what="InvalidSpec condition",
    )
    assert cond["status"] == "True"
    assert cond["reason"] == reason
    assert field in cond["message"]
    wait_for(
        lambda: any(e.reason == reason for e in events_of(core, ns, name)),
        what=f"a {reason} Event",
    )
    assert not apps.list_namespaced_deployment(ns).items
    assert not [s for s in core.list_namespaced_service(ns).items]


def test_namespaced_operator_ignores_other_namespaces(
    ns: str,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    namespace_factory: Any,
) -> None:
    other = namespace_factory()
    body = example("deepseek-r1-distill-7b.yaml")
    create_dsd(custom, other, body)
    create_dsd(custom, ns, copy.deepcopy(body))
    wait_for(lambda: _get_deployment(apps, ns, "r1-distill-7b-blue"), what="watched namespace")
    assert _get_deployment(apps, other, "r1-distill-7b-blue") is None
    assert "status" not in get_dsd(custom, other, "r1-distill-7b")


def test_two_replicas_leader_election(
    ns: str,
    region: RegionInfo,
    crds: None,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
) -> None:
    """Two operator processes with one Kopf peering: one acts; kill it and the other takes over."""
    custom.create_namespaced_custom_object(
        "kopf.dev",
        "v1",
        ns,
        "kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "e2e"}},
    )
    # The first replica has the higher priority; the second must stay paused from its start.
    ops = [
        OperatorProcess(
            region.kubeconfig,
            namespaces=[ns],
            name=f"peer{i}-{ns}",
            extra=["--peering", "e2e", "--priority", str(prio)],
        ).start()
        for i, prio in enumerate((2000, 1000))
    ]
    leader, standby = ops
    try:
        wait_for(
            lambda: (
                len(
                    custom.get_namespaced_custom_object(
                        "kopf.dev", "v1", ns, "kopfpeerings", "e2e"
                    ).get("status")
                    or {}
                )
                == 2
            ),
            timeout=60,
            what="both operators in the peering",
        )
        body = example("deepseek-r1-distill-7b.yaml")
        body["spec"]["replicas"] = 2
        create_dsd(custom, ns, body)
        wait_for(
            lambda: deployment_replicas(apps, ns, "r1-distill-7b-blue") == 2,
            timeout=60,
            what="Deployment from the leader",
        )
        marker = f"reconciled namespace={ns} "
        wait_for(lambda: marker in leader.log(), what="the leader's reconcile in its log")
        assert marker not in standby.log(), "the standby acted while the leader was alive"
        leader.kill()
        offset = standby.log_size()
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "r1-distill-7b", {"spec": {"replicas": 3}}
        )
        wait_for(
            lambda: deployment_replicas(apps, ns, "r1-distill-7b-blue") == 3,
            timeout=120,
            what="the standby takes over after the leader's peering record expires",
        )
        wait_for(lambda: marker in standby.log_since(offset), what="the standby's reconcile")
        record(
            "leader-killed",
            "the standby did not act while the leader lived; after the kill it applied a "
            "replica change (2 -> 3) once the leader's peering record expired",
        )
    finally:
        for op in ops:
            op.stop()


def test_operator_started_before_its_namespace_exists_serves_it_once_made(
    region: RegionInfo,
    crds: None,
    namespace_factory: Any,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
) -> None:
    """`run -n X` before X exists (the demo's order, or a namespace deleted and made again):
    the Kopf peering cannot be created yet and Kopf keeps its watches paused until it exists,
    so the operator retries it and starts working once the namespace is there."""
    ns = f"e2e-later-{os.urandom(3).hex()}"
    op = OperatorProcess(region.kubeconfig, namespaces=[ns], name=f"op-{ns}").start()
    try:
        wait_for(lambda: "peering_not_created" in op.log(), timeout=30, what="the first try")
        namespace_factory(ns)
        create_dsd(custom, ns, example("deepseek-r1-distill-7b.yaml"))
        wait_for(
            lambda: _get_deployment(apps, ns, "r1-distill-7b-blue"),
            timeout=90,
            what="the engine Deployment in the namespace made after the operator started",
        )
        assert "peering_created" in op.log()
    finally:
        op.stop()


FINALIZER = "serving.deepseek.dev/finalizer"


def test_deleting_a_namespace_while_the_operator_is_down_completes(
    region: RegionInfo,
    crds: None,
    namespace_factory: Any,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
) -> None:
    """Only a resource with copies in member regions carries the operator's finalizer; any
    other goes with its namespace even while no operator runs."""
    ns = namespace_factory()
    op = OperatorProcess(region.kubeconfig, namespaces=[ns], name=f"op-{ns}").start()
    try:
        plain = example("deepseek-r1-distill-7b.yaml")
        plain["metadata"]["name"] = "plain"
        plain["spec"]["replicas"] = 1
        create_dsd(custom, ns, plain)
        regional = copy.deepcopy(plain)
        regional["metadata"]["name"] = "regional"
        regional["spec"]["regions"] = [
            {"name": "us-east"},
            {
                "name": "eu-west",
                "role": "standby",
                "weight": 0,
                "kubeconfigSecretRef": {"name": "eu-west-kubeconfig"},
            },
        ]
        create_dsd(custom, ns, regional)
        wait_for(
            lambda: _get_deployment(apps, ns, "plain-blue") is not None,
            timeout=60,
            what="plain reconciled",
        )
        wait_for(
            lambda: (
                FINALIZER in (get_dsd(custom, ns, "regional")["metadata"].get("finalizers") or [])
            ),
            timeout=60,
            what="the finalizer on the resource with a member region",
        )
        assert FINALIZER not in (get_dsd(custom, ns, "plain")["metadata"].get("finalizers") or [])
        # Keeping the member copies leaves nothing to clean up: the finalizer goes.
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            PLURAL,
            "regional",
            {"metadata": {"annotations": {"serving.deepseek.dev/keep-member-copies": "true"}}},
        )
        wait_for(
            lambda: (
                FINALIZER
                not in (get_dsd(custom, ns, "regional")["metadata"].get("finalizers") or [])
            ),
            timeout=60,
            what="the finalizer removed",
        )
    finally:
        op.stop()

    core.delete_namespace(ns)

    def gone() -> bool:
        try:
            core.read_namespace(ns)
        except client.ApiException as e:
            if e.status == 404:
                return True
            raise
        return False

    wait_for(gone, timeout=120, what=f"namespace {ns} deleted with no operator running")
