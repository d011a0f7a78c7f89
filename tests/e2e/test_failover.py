"""Region failover on the local cluster's two regions (us-east, eu-west: two real control planes).

An operator runs against each region. The us-east DeepSeekDeployment names both regions: itself
(primary, weight 100) and eu-west (a warm standby, weight 0) reached through a kubeconfig in a
Secret. Faults are real: the primary's engine pods go away (scaled to 0), the standby's API
becomes unreachable (its kubeconfig points at a closed port). The outcomes are what a user
checks: status.regions, the RegionsHealthy condition, Events, and the operator's metrics.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from testbed.cluster import LocalCluster, RegionInfo

from .faults import record
from .operator_process import OperatorProcess, free_port, install_crds
from .test_operator import GROUP, PLURAL, VERSION, condition, example
from .waiting import wait_for

pytestmark = pytest.mark.e2e

DSD = "r1-distill-7b"
SECRET = "eu-west-kubeconfig"
FAILBACK_DELAY = 8


@pytest.fixture(scope="module")
def crds(api_clients: dict[str, client.ApiClient]) -> None:
    for api in api_clients.values():
        install_crds(api)


@pytest.fixture
def operators(
    regions: dict[str, RegionInfo], namespace: str, crds: None
) -> Iterator[dict[str, OperatorProcess]]:
    ops = {
        name: OperatorProcess(r.kubeconfig, namespaces=[namespace], name=f"op-{name}-{namespace}")
        for name, r in regions.items()
    }
    for op in ops.values():
        op.start()
    yield ops
    for op in ops.values():
        op.stop()


def kubeconfig_secret(region: RegionInfo, *, server: str | None = None) -> dict[str, Any]:
    cfg = yaml.safe_load(region.kubeconfig.read_text())
    if server is not None:
        for c in cfg["clusters"]:
            c["cluster"]["server"] = server
    data = base64.b64encode(yaml.safe_dump(cfg).encode()).decode()
    return {"metadata": {"name": SECRET}, "data": {"kubeconfig": data}}


def body(*, regions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    b = example("deepseek-r1-distill-7b.yaml")
    b["spec"]["replicas"] = 1
    # Replicas only change by hand here (scaled to 0 to lose the region's engines).
    b["spec"]["scaling"] = {
        "enabled": False,
        "minReplicas": 0,
        "maxReplicas": 2,
        "scaleToZero": True,
    }
    if regions is not None:
        b["spec"]["regions"] = regions
        b["spec"]["failover"] = {
            "enabled": True,
            "healthCheckIntervalSeconds": 1,
            "failureThreshold": 2,
            "failbackDelaySeconds": FAILBACK_DELAY,
        }
    return b


REGIONS = [
    {"name": "us-east", "role": "primary", "weight": 100},
    {
        "name": "eu-west",
        "role": "standby",
        "weight": 0,
        "kubeconfigSecretRef": {"name": SECRET, "key": "kubeconfig"},
        # The copy keeps 1 replica when the primary is scaled to 0 (scaling is off here, so
        # spec.replicas would otherwise follow the home resource).
        "standbyReplicas": 1,
    },
]


@pytest.fixture
def fleet(
    regions: dict[str, RegionInfo],
    api_clients: dict[str, client.ApiClient],
    namespace: str,
    operators: dict[str, OperatorProcess],
) -> dict[str, client.CustomObjectsApi]:
    """The kubeconfig Secret and the DeepSeekDeployment in us-east, which creates its copy in
    eu-west; returns a CustomObjectsApi per region."""
    custom = {n: client.CustomObjectsApi(api) for n, api in api_clients.items()}
    client.CoreV1Api(api_clients["us-east"]).create_namespaced_secret(
        namespace, kubeconfig_secret(regions["eu-west"])
    )
    home = body(regions=REGIONS)
    home["spec"]["replicas"] = 2  # the primary runs 2, the standby keeps 1
    custom["us-east"].create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, home)
    return custom


def gpus_gone(region: RegionInfo, *, down: bool) -> None:
    """Every zone of the region down (its GPU nodes cordoned and tainted, their engine pods
    killed at once and deleted; the replacements stay Pending), or back up, through the
    simulated fleet's zone fault: the region's engines are gone while its control plane and
    the DeepSeekDeployment's desired replicas stay."""
    assert region.fleet_url is not None
    for zone in ("a", "b", "c"):
        req = urllib.request.Request(
            f"{region.fleet_url}/zones/{region.name}-{zone}/{'down' if down else 'up'}",
            data=json.dumps({"region": region.name}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200, r.read()


def dsd(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any]:
    return dict(custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, DSD))


def regions_now(custom: client.CustomObjectsApi, ns: str) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in (dsd(custom, ns).get("status") or {}).get("regions") or []}


def weights_and_states(custom: client.CustomObjectsApi, ns: str) -> dict[str, tuple[str, int]]:
    return {n: (r.get("state"), r.get("weight")) for n, r in regions_now(custom, ns).items()}


def events(core: client.CoreV1Api, ns: str) -> list[tuple[str, str]]:
    """(reason, message) of the DeepSeekDeployment's Events, oldest first."""
    evs = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={DSD}").items
    evs.sort(key=lambda e: e.first_timestamp or e.event_time or e.metadata.creation_timestamp)
    return [(e.reason, e.message) for e in evs]


def event_reasons(core: client.CoreV1Api, ns: str) -> list[str]:
    return [r for r, _ in events(core, ns)]


def times_said(core: client.CoreV1Api, ns: str) -> list[tuple[str, int]]:
    """(reason, count) of the DeepSeekDeployment's Events, oldest first: an Event repeated by
    one process aggregates (its count goes up), one repeated after a restart is a new Event."""
    evs = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={DSD}").items
    evs.sort(key=lambda e: e.first_timestamp or e.event_time or e.metadata.creation_timestamp)
    return [(e.reason, e.count or 1) for e in evs]


def metric(op: OperatorProcess, name: str, region: str) -> float | None:
    m = re.search(rf'^{name}\{{[^}}]*region="{region}"[^}}]*\}} (\S+)$', op.metrics(), re.M)
    return float(m.group(1)) if m else None


def wait_regions(
    custom: client.CustomObjectsApi, ns: str, expected: dict[str, tuple[str, int]], what: str
) -> None:
    """Wait until every region has the expected (state, weight)."""
    try:
        wait_for(
            lambda: weights_and_states(custom, ns) == expected, timeout=120, what=what, every=1
        )
    except AssertionError as e:
        raise AssertionError(f"{e}; status.regions: {regions_now(custom, ns)}") from None


def wait_all_healthy(custom: client.CustomObjectsApi, ns: str) -> None:
    expected = {"us-east": ("Healthy", 100), "eu-west": ("Healthy", 0)}

    def ok() -> bool:
        c = condition(dsd(custom, ns), "RegionsHealthy")
        passing = all(
            r.get("healthy") is True and r.get("readyReplicas", 0) >= 1
            for r in regions_now(custom, ns).values()
        )
        return (
            passing
            and weights_and_states(custom, ns) == expected
            and c is not None
            and c["status"] == "True"
        )

    wait_for(ok, timeout=180, what="both regions Healthy, weights 100/0", every=1)


def test_primary_loss_fails_over_to_the_standby_and_back(
    fleet: dict[str, client.CustomObjectsApi],
    regions: dict[str, RegionInfo],
    namespace: str,
    core: client.CoreV1Api,
    operators: dict[str, OperatorProcess],
) -> None:
    east = fleet["us-east"]
    wait_all_healthy(east, namespace)
    west = regions_now(east, namespace)["eu-west"]
    assert west["readyReplicas"] == 1 and west["healthy"] is True, west
    op = operators["us-east"]
    assert metric(op, "deepseek_operator_region_healthy", "eu-west") == 1.0
    assert metric(op, "deepseek_operator_region_weight", "us-east") == 100.0

    # The primary's GPUs go away (every zone down: engine pods killed, replacements Pending;
    # its control plane, and its desired replicas, stay).
    gpus_gone(regions["us-east"], down=True)
    try:
        wait_regions(
            east,
            namespace,
            {"us-east": ("Unhealthy", 0), "eu-west": ("Healthy", 100)},
            "traffic moved to eu-west",
        )
        obj = dsd(east, namespace)
        cond = condition(obj, "RegionsHealthy") or {}
        assert (cond.get("status"), cond.get("reason")) == ("False", "FailedOver"), cond
        assert "unhealthy: us-east" in cond["message"], cond
        assert "no ready engine pod" in regions_now(east, namespace)["us-east"]["message"]
        assert metric(op, "deepseek_operator_region_weight", "eu-west") == 100.0
        assert metric(op, "deepseek_operator_region_healthy", "us-east") == 0.0
        reasons = event_reasons(core, namespace)
        assert "RegionUnhealthy" in reasons and "TrafficShifted" in reasons, reasons

        # The standby is raised to what the primary ran, and serves with it.
        west = fleet["eu-west"]
        wait_for(
            lambda: (dsd(west, namespace).get("status") or {}).get("readyReplicas") == 2,
            timeout=120,
            what="eu-west raised to the 2 replicas us-east ran, Ready",
            every=1,
        )
        assert regions_now(east, namespace)["eu-west"]["minReplicasFloor"] == 2
        assert regions_now(east, namespace)["us-east"]["carryingReplicas"] == 2
        raised = [m for r, m in events(core, namespace) if r == "StandbyRaised"]
        took_over = "100% of the traffic of us-east, which ran 2 replicas"
        assert raised and took_over in raised[0], raised

        # The home operator killed while failed over: the restarted one resumes from the
        # status, with no action repeated (Events of one process aggregate; a repeat after
        # the restart would be a new one).
        op.kill()
        restarted = time.time()
        op.start_outranking()
        wait_for(
            lambda: all(
                (r.get("lastCheckTime") or 0) > restarted + 2
                for r in regions_now(east, namespace).values()
            ),
            timeout=60,
            what="health checks by the restarted operator",
        )
        assert weights_and_states(east, namespace) == {
            "us-east": ("Unhealthy", 0),
            "eu-west": ("Healthy", 100),
        }
        said = times_said(core, namespace)
        for once in ("RegionUnhealthy", "TrafficShifted", "StandbyRaised"):
            assert sum(n for r, n in said if r == once) == 1, (once, said)
        assert dsd(west, namespace)["spec"]["replicas"] == 2
    finally:
        # It comes back: recovering first (traffic stays in eu-west), then back in rotation
        # after the failback delay.
        gpus_gone(regions["us-east"], down=False)

    def passing_again() -> dict[str, Any] | None:
        us = regions_now(east, namespace)["us-east"]
        return us if us.get("state") in ("Recovering", "Healthy") else None

    recovering = wait_for(
        passing_again,
        timeout=180,
        what="us-east passing its checks again",
        every=0.5,
    )
    assert recovering["state"] == "Recovering", recovering  # the failback delay: 8 s of it
    # The home operator killed while the region waits out the failback delay: the restarted
    # one counts the delay from the status (since), and fails back once.
    op.kill()
    assert weights_and_states(east, namespace) == {
        "us-east": ("Recovering", 0),
        "eu-west": ("Healthy", 100),
    }
    op.start_outranking()
    wait_all_healthy(east, namespace)
    healthy = regions_now(east, namespace)["us-east"]
    assert healthy["since"] - recovering["since"] >= FAILBACK_DELAY, (recovering, healthy)
    # The floor goes with the failback: the standby is back to its 1 replica.
    wait_for(
        lambda: (
            dsd(west, namespace)["spec"].get("replicas") == 1
            and "StandbyLowered" in event_reasons(core, namespace)
        ),
        timeout=60,
        what="eu-west lowered back to standbyReplicas",
        every=1,
    )
    said = times_said(core, namespace)
    back = said[next(i for i, (r, _) in enumerate(said) if r == "RegionUnhealthy") :]
    order = [r for r, _ in back]
    assert order.index("RegionRecovering") < order.index("RegionHealthy"), back
    for once in ("RegionRecovering", "RegionHealthy", "StandbyLowered"):
        assert sum(n for r, n in back if r == once) == 1, (once, back)
    record(
        "primary-region-lost",
        "us-east's GPU nodes all gone: unhealthy, its weight moved to eu-west (RegionUnhealthy, "
        "TrafficShifted), eu-west raised to the 2 replicas us-east ran (StandbyRaised); back "
        "after the failback delay (RegionRecovering, RegionHealthy) and eu-west lowered "
        "(StandbyLowered). Weights are published, not yet applied to client traffic (#17)",
    )
    record(
        "operator-killed-failover",
        "killed while us-east was Unhealthy (failed over): the restarted operator's checks "
        "kept the weights, no RegionUnhealthy, TrafficShifted or StandbyRaised repeated; killed "
        f"again while us-east was Recovering: it failed back after the full {FAILBACK_DELAY}s "
        "delay, counted from the status, once (one RegionRecovering, RegionHealthy, "
        "StandbyLowered), eu-west lowered to 1 replica",
    )


def test_an_unreachable_standby_is_reported_without_moving_traffic(
    fleet: dict[str, client.CustomObjectsApi],
    regions: dict[str, RegionInfo],
    namespace: str,
    core: client.CoreV1Api,
) -> None:
    east = fleet["us-east"]
    wait_all_healthy(east, namespace)
    before = set(events(core, namespace))

    # eu-west's API stops answering (its kubeconfig now points at a closed port).
    dead = f"https://127.0.0.1:{free_port()}"
    core.replace_namespaced_secret(
        SECRET, namespace, kubeconfig_secret(regions["eu-west"], server=dead)
    )
    wait_regions(
        east,
        namespace,
        {"us-east": ("Healthy", 100), "eu-west": ("Unhealthy", 0)},
        "eu-west Unhealthy",
    )
    west = regions_now(east, namespace)["eu-west"]
    assert "unreachable" in west["message"], west
    cond = condition(dsd(east, namespace), "RegionsHealthy") or {}
    assert (cond.get("status"), cond.get("reason")) == ("False", "RegionUnhealthy"), cond
    new = dict(e for e in events(core, namespace) if e not in before)
    assert sorted(new) == ["CopyUnreachable", "RegionUnhealthy"], new
    assert "region eu-west failed 2 health checks in a row" in new["RegionUnhealthy"], new
    synced = condition(dsd(east, namespace), "RegionsSynced") or {}
    assert (synced.get("status"), synced.get("reason")) == ("False", "CopyUnreachable"), synced

    # Its Secret is fixed: eu-west recovers, then returns after the failback delay.
    core.replace_namespaced_secret(SECRET, namespace, kubeconfig_secret(regions["eu-west"]))
    wait_all_healthy(east, namespace)
    assert "RegionHealthy" in event_reasons(core, namespace)


def copy_in(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any] | None:
    try:
        return dsd(custom, ns)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def wait_max_replicas(custom: client.CustomObjectsApi, ns: str, want: int, what: str) -> None:
    def now() -> int | None:
        obj = copy_in(custom, ns) or {}
        return obj.get("spec", {}).get("scaling", {}).get("maxReplicas")  # type: ignore[no-any-return]

    wait_for(lambda: now() == want, timeout=60, what=what, every=0.2)


def test_one_apply_serves_in_both_regions_and_the_copy_follows(
    fleet: dict[str, client.CustomObjectsApi],
    namespace: str,
    core: client.CoreV1Api,
    local_cluster: LocalCluster,
) -> None:
    east, west = fleet["us-east"], fleet["eu-west"]
    # Only the home resource was applied: eu-west serves from the copy it made.
    wait_all_healthy(east, namespace)
    home = dsd(east, namespace)
    copy = copy_in(west, namespace)
    assert copy is not None
    notes = copy["metadata"]["annotations"]
    assert notes["serving.deepseek.dev/home-uid"] == home["metadata"]["uid"], notes
    # No regions of its own (the CRD's defaults fill in a disabled failover).
    assert not copy["spec"].get("regions"), copy["spec"]
    assert not copy["spec"].get("failover", {}).get("enabled"), copy["spec"]
    assert copy["spec"]["replicas"] == 1 and copy["spec"]["model"] == home["spec"]["model"]
    assert (copy.get("status") or {}).get("readyReplicas") == 1, copy.get("status")
    west_status = regions_now(east, namespace)["eu-west"]
    assert west_status["copyState"] in ("Created", "InSync"), west_status
    synced = condition(home, "RegionsSynced") or {}
    assert (synced.get("status"), synced.get("reason")) == ("True", "CopiesInSync"), synced
    assert "CopyCreated" in event_reasons(core, namespace)

    # A change in the home region reaches the copy.
    t0 = time.monotonic()
    east.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, DSD, {"spec": {"scaling": {"maxReplicas": 3}}}
    )
    wait_max_replicas(west, namespace, 3, "scaling.maxReplicas 3 in the eu-west copy")
    seen_after = time.monotonic() - t0
    generation = dsd(east, namespace)["metadata"]["generation"]
    west_status = wait_for(
        lambda: (
            (r := regions_now(east, namespace)["eu-west"]).get("syncedGeneration") == generation
            and r
        ),
        timeout=60,
        what="status.regions[eu-west].syncedGeneration",
        every=0.5,
    )
    assert west_status["syncLagSeconds"] is not None, west_status
    print(
        f"spec propagation: seen in eu-west {seen_after:.2f} s after the patch returned "
        f"(status.regions[eu-west].syncLagSeconds {west_status['syncLagSeconds']})"
    )

    # Edited by hand in eu-west: drift, reverted.
    west.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, DSD, {"spec": {"scaling": {"maxReplicas": 1}}}
    )
    wait_max_replicas(west, namespace, 3, "the hand edit in eu-west reverted")

    def updates() -> list[str]:
        return [m for r, m in events(core, namespace) if r == "CopyUpdated"]

    wait_for(lambda: len(updates()) >= 2, timeout=30, what="the CopyUpdated Event of the drift")
    # One for the change, one for the hand edit: a copy in sync is never rewritten.
    got = updates()
    assert len(got) == 2, got
    assert any("home resource changed" in m for m in got) and any("drift" in m for m in got), got

    # The home cluster's API server goes away: eu-west goes on serving its copy, reconciled by
    # its own operator.
    try:
        assert local_cluster.stop_component("us-east", "kube-apiserver")
        time.sleep(8)  # several of the home operator's health checks fail meanwhile
        alone = copy_in(west, namespace)
        assert alone is not None and alone["status"]["readyReplicas"] == 1, alone
        ready = condition(alone, "Ready") or {}
        assert ready.get("status") == "True", ready
    finally:
        local_cluster.up()
    record(
        "home-region-api-down",
        "with us-east's kube-apiserver stopped, eu-west kept its copy Ready and reconciled "
        "(its own operator); the copy stays managed once us-east is back",
    )

    # The home resource is deleted: its copy goes with it.
    east.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, DSD)
    wait_for(lambda: copy_in(west, namespace) is None, timeout=90, what="the eu-west copy deleted")
    wait_for(lambda: copy_in(east, namespace) is None, timeout=60, what="the home resource gone")
