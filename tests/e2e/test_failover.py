"""Region failover on the local cluster's two regions (us-east, eu-west: two real control planes).

An operator runs against each region. The us-east DeepSeekDeployment names both regions: itself
(primary, weight 100) and eu-west (a warm standby, weight 0) reached through a kubeconfig in a
Secret. Faults are real: the primary's engine pods go away (scaled to 0), the standby's API
becomes unreachable (its kubeconfig points at a closed port). The outcomes are what a user
checks: status.regions, the RegionsHealthy condition, Events, and the operator's metrics. With
spec.failover.dns, the external-dns DNSEndpoint the operator keeps in us-east follows the weights
(external-dns's real CRD is installed there). In the failover test the real external-dns reads it
and writes a real DNS server (PowerDNS, through the test bed's weighted webhook provider:
testbed/globaldns.py), and a client resolves the global name through that server and sends its
requests to the address it got: each region's front door (a router on an address of its own).
The failover benchmark (`make bench-failover`, bench/failover.py) is the last test here, skipped
unless DEEPSEEK_BENCH=1.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from testbed.cluster import LocalCluster, RegionInfo
from testbed.cluster.config import PROFILES
from testbed.dnsload import DnsClients, DnsProbe
from testbed.globaldns import GlobalDns
from testbed.sim.loadgen import request_body
from tests.unit.test_traffic import external_dns_crd

from .faults import record
from .operator_process import LOGS, REPO, OperatorProcess, free_port, install_crds
from .test_autoscale import Router
from .test_operator import GROUP, PLURAL, VERSION, condition, example
from .waiting import wait_for

pytestmark = pytest.mark.e2e

DSD = "r1-distill-7b"
SECRET = "eu-west-kubeconfig"
FAILBACK_DELAY = 8
HOSTNAME = "deepseek.global.test"
# Each region's load balancer: the address its front door (a router) listens on, on the tests'
# network octet of the region (127.<octet>.254.1).
TARGETS = {r: [f"127.{octet}.254.1"] for r, (_, octet) in PROFILES["test"].regions.items()}
DNS = {"hostname": HOSTNAME, "ttlSeconds": 5}
# What a webhook provider reads the weight from (external-dns drops aws/* unless --provider=aws).
WEBHOOK_DNS = {**DNS, "weightProperty": "webhook/weight"}
DNS_CRD = "dnsendpoints.externaldns.k8s.io"


@pytest.fixture(scope="module")
def crds(api_clients: dict[str, client.ApiClient]) -> None:
    for api in api_clients.values():
        install_crds(api)


@pytest.fixture
def dns_crd(api_clients: dict[str, client.ApiClient], crds: None) -> None:
    """external-dns's DNSEndpoint CRD in the home region (left installed: the operator writes
    DNSEndpoints only for spec.failover.dns)."""
    install_dns_crd(api_clients["us-east"], "us-east")


def install_dns_crd(api: client.ApiClient, region: str) -> None:
    """Create external-dns's DNSEndpoint CRD in a region unless it is there; wait until it is
    Established."""
    ext = client.ApiextensionsV1Api(api)
    try:
        ext.read_custom_resource_definition(DNS_CRD)
    except client.ApiException as e:
        if e.status != 404:
            raise
        ext.create_custom_resource_definition(external_dns_crd())

    def established() -> bool:
        conds = ext.read_custom_resource_definition(DNS_CRD).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    wait_for(established, timeout=60, what=f"{DNS_CRD} Established in {region}")


@pytest.fixture
def no_dns_crd(api_clients: dict[str, client.ApiClient], crds: None) -> None:
    """No DNSEndpoint CRD in the home region (removed if an earlier test installed it)."""
    ext = client.ApiextensionsV1Api(api_clients["us-east"])

    def gone() -> bool:
        try:
            ext.read_custom_resource_definition(DNS_CRD)
        except client.ApiException as e:
            if e.status == 404:
                return True
            raise
        return False

    if not gone():
        ext.delete_custom_resource_definition(DNS_CRD)
        wait_for(gone, timeout=60, what=f"{DNS_CRD} deleted")


@pytest.fixture
def dns() -> dict[str, Any] | None:
    """spec.failover.dns of the fleet's DeepSeekDeployment; a test parametrizes it to set it."""
    return None


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


# The tests' failover timing: a region is Unhealthy after 2 s, back in rotation 8 s after it
# recovers.
FAST = {
    "healthCheckIntervalSeconds": 1,
    "failureThreshold": 2,
    "failbackDelaySeconds": FAILBACK_DELAY,
}


def body(
    *,
    regions: list[dict[str, Any]] | None = None,
    dns: dict[str, Any] | None = None,
    serving: bool = False,
    timing: dict[str, int] | None = None,
) -> dict[str, Any]:
    """`serving`: the simulated fleet runs the engines (they answer HTTP); else kwok alone makes
    the pods Ready. `timing`: spec.failover's check interval, threshold and failback delay (the
    tests' fast ones by default)."""
    b = example("deepseek-r1-distill-7b.yaml", fleet=serving)
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
        b["spec"]["failover"] = {"enabled": True, **(timing or FAST)}
        if dns is not None:
            b["spec"]["failover"]["dns"] = dns
            b["spec"]["regions"] = [{**r, "dnsTargets": TARGETS[r["name"]]} for r in regions]
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
def serving() -> bool:
    """Whether the engines answer requests (the simulated fleet runs them); a test that sends
    requests parametrizes it to True."""
    return False


@pytest.fixture
def fleet_regions() -> list[dict[str, Any]]:
    """spec.regions of the fleet's DeepSeekDeployment; a test parametrizes it to change it."""
    return REGIONS


@pytest.fixture
def timing() -> dict[str, int]:
    """spec.failover's timing of the fleet's DeepSeekDeployment; a test parametrizes it."""
    return FAST


@pytest.fixture
def fleet(
    regions: dict[str, RegionInfo],
    api_clients: dict[str, client.ApiClient],
    namespace: str,
    operators: dict[str, OperatorProcess],
    dns: dict[str, Any] | None,
    fleet_regions: list[dict[str, Any]],
    serving: bool,
    timing: dict[str, int],
) -> dict[str, client.CustomObjectsApi]:
    """The kubeconfig Secret and the DeepSeekDeployment in us-east, which creates its copy in
    eu-west; returns a CustomObjectsApi per region."""
    custom = {n: client.CustomObjectsApi(api) for n, api in api_clients.items()}
    client.CoreV1Api(api_clients["us-east"]).create_namespaced_secret(
        namespace, kubeconfig_secret(regions["eu-west"])
    )
    home = body(regions=fleet_regions, dns=dns, serving=serving, timing=timing)
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


def warning_counts(core: client.CoreV1Api, ns: str, reason: str) -> list[int]:
    """How often each Event of this reason was recorded (repeats bump an Event's count)."""
    evs = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={DSD}").items
    return [e.count for e in evs if e.reason == reason]


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


def dns_endpoint(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any] | None:
    try:
        obj = custom.get_namespaced_custom_object(
            "externaldns.k8s.io", "v1alpha1", ns, "dnsendpoints", DSD
        )
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise
    return dict(obj)


def record_set(region: str, weight: int, prop: str = "aws/weight") -> dict[str, Any]:
    """The weighted record set external-dns reads for one region (what the operator writes;
    read back from the API server, so nothing of it was pruned by the real CRD's schema)."""
    return {
        "dnsName": HOSTNAME,
        "recordType": "A",
        "targets": TARGETS[region],
        "setIdentifier": region,
        "recordTTL": 5,
        "providerSpecific": [{"name": prop, "value": str(weight)}],
    }


def wait_records(
    custom: client.CustomObjectsApi,
    ns: str,
    expected: dict[str, int],
    what: str,
    prop: str = "aws/weight",
) -> dict[str, Any]:
    """Wait until the DNSEndpoint holds exactly these regions' record sets; returns it."""
    want = [record_set(r, w, prop) for r, w in expected.items()]

    def now() -> dict[str, Any] | None:
        obj = dns_endpoint(custom, ns)
        return obj if obj is not None and obj["spec"].get("endpoints") == want else None

    try:
        return wait_for(now, timeout=60, what=what, every=0.5)
    except AssertionError as e:
        raise AssertionError(f"{e}; DNSEndpoint: {dns_endpoint(custom, ns)}") from None


def dns_events(core: client.CoreV1Api, ns: str) -> list[str]:
    return [m for r, m in events(core, ns) if r == "DNSRecordsUpdated"]


@pytest.fixture
def global_dns(
    regions: dict[str, RegionInfo], namespace: str, dns_crd: None
) -> Iterator[GlobalDns]:
    """The real external-dns reading this test's DNSEndpoints in us-east (--source=crd,
    --policy=sync, a 1 s interval) and writing a real DNS server, PowerDNS, through the test
    bed's weighted webhook provider; all three stopped afterwards."""
    g = GlobalDns(regions["us-east"].kubeconfig, namespace, LOGS / f"globaldns-{namespace}")
    g.start()
    yield g
    g.stop()


@pytest.fixture
def front_doors(
    regions: dict[str, RegionInfo], namespace: str, fleet: dict[str, client.CustomObjectsApi]
) -> Iterator[dict[str, Router]]:
    """Each region's load balancer: a router in front of the DeepSeekDeployment's Service in
    that region, listening on the region's address in TARGETS (one port for both, as behind one
    name)."""
    port = free_port()
    doors: dict[str, Router] = {}
    try:
        for name, region in regions.items():
            doors[name] = Router(region, namespace, DSD, host=TARGETS[name][0], port=port)
        yield doors
    finally:
        for door in doors.values():
            door.stop()


REGION_AT = {t: r for r, ts in TARGETS.items() for t in ts}


def request_status(url: str) -> int:
    """The HTTP status a client gets for GET `url` with Host: HOSTNAME (0: no connection)."""
    req = urllib.request.Request(url, headers={"Host": HOSTNAME})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def clients_see(g: GlobalDns, port: int, n: int = 20) -> dict[str, int]:
    """`n` requests as a client makes them: resolve HOSTNAME through the global DNS (no cache),
    then GET /v1/models from the address it gave. Counts of '<region of that address> <HTTP
    status>' ('NXDOMAIN' when the name did not resolve)."""
    seen: dict[str, int] = {}
    for _ in range(n):
        addrs = g.resolve(HOSTNAME)
        if not addrs:
            said = "NXDOMAIN"
        else:
            said = f"{REGION_AT.get(addrs[0], addrs[0])} "
            said += str(request_status(f"http://{addrs[0]}:{port}/v1/models"))
        seen[said] = seen.get(said, 0) + 1
    return seen


def wait_resolves_to(g: GlobalDns, region: str, since: float) -> float:
    """Wait until HOSTNAME resolves to `region`'s address alone; seconds since `since`."""
    wait_for(
        lambda: g.resolve(HOSTNAME) == TARGETS[region],
        timeout=30,
        what=f"{HOSTNAME} resolving to {region} ({TARGETS[region]}) through external-dns",
        every=0.2,
    )
    return time.monotonic() - since


def door_nodes(door: Router) -> set[str]:
    """The nodes of the engine pods a front door sends requests to (its /router/status)."""
    with urllib.request.urlopen(f"{door.url}/router/status", timeout=5) as r:
        status = json.load(r)
    return {e["node"] for route in status["routes"] for e in route["endpoints"]}


@pytest.mark.parametrize(("dns", "serving"), [(WEBHOOK_DNS, True)], ids=["dns"])
def test_primary_loss_fails_over_to_the_standby_and_back(
    dns_crd: None,
    global_dns: GlobalDns,
    fleet: dict[str, client.CustomObjectsApi],
    front_doors: dict[str, Router],
    regions: dict[str, RegionInfo],
    namespace: str,
    core: client.CoreV1Api,
    operators: dict[str, OperatorProcess],
) -> None:
    east = fleet["us-east"]
    prop = "webhook/weight"
    wait_all_healthy(east, namespace)
    # Each region's front door serves that region's engines.
    for name, door in front_doors.items():
        wait_for(door.serving, timeout=60, what=f"{name}'s front door serving")
        nodes = door_nodes(door)
        assert nodes and all(n.startswith(f"{name}-") for n in nodes), (name, nodes)
    port = int(front_doors["us-east"].url.rsplit(":", 1)[1])
    west = regions_now(east, namespace)["eu-west"]
    assert west["readyReplicas"] == 1 and west["healthy"] is True, west
    op = operators["us-east"]
    assert metric(op, "deepseek_operator_region_healthy", "eu-west") == 1.0
    assert metric(op, "deepseek_operator_region_weight", "us-east") == 100.0
    # DNS: us-east's record set at weight 100 (the warm standby, weight 0, has none), owned by
    # the DeepSeekDeployment (garbage-collected with it).
    records = wait_records(
        east, namespace, {"us-east": 100}, "us-east's record at weight 100", prop
    )
    # Clients resolving the name through the DNS server external-dns writes get us-east's
    # address, and us-east serves them.
    wait_resolves_to(global_dns, "us-east", time.monotonic())
    assert clients_see(global_dns, port) == {"us-east 200": 20}
    (owner,) = records["metadata"]["ownerReferences"]
    assert owner["kind"] == "DeepSeekDeployment" and owner["name"] == DSD, owner
    assert owner["uid"] == dsd(east, namespace)["metadata"]["uid"], owner
    published = condition(dsd(east, namespace), "DNSPublished") or {}
    assert (published.get("status"), published.get("reason")) == ("True", "RecordsPublished")
    assert f"{HOSTNAME}: us-east=100" in published["message"], published
    # (eu-west may have passed its first check before us-east and held the records a moment.)
    generation, writes = records["metadata"]["generation"], len(dns_events(core, namespace))

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
        # DNS: us-east's record withdrawn, eu-west's at 100; one write per change.
        records = wait_records(east, namespace, {"eu-west": 100}, "eu-west's record alone", prop)
        written = time.monotonic()
        assert records["metadata"]["generation"] == generation + 1, records["metadata"]
        said = dns_events(core, namespace)
        assert len(said) == writes + 1, said
        assert "eu-west=100; withdrawn: us-east (Unhealthy)" in said[-1], said
        # Clients now resolve the name to eu-west and are served there; us-east's front door
        # has no engine left to send a request to (a client that did not follow DNS fails).
        failover_dns_s = wait_resolves_to(global_dns, "eu-west", written)
        assert clients_see(global_dns, port) == {"eu-west 200": 20}
        wait_for(
            lambda: request_status(f"{front_doors['us-east'].url}/v1/models") == 503,
            timeout=60,
            what="us-east's front door without engines (503)",
        )

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
            told = [m for r, m in events(core, namespace) if r == once]
            assert sum(n for r, n in said if r == once) == 1, (once, said, told)
        assert dsd(west, namespace)["spec"]["replicas"] == 2
        # The records the restarted operator found were already right: not rewritten.
        records = dns_endpoint(east, namespace) or {}
        assert records["metadata"]["generation"] == generation + 1, records
        assert len(dns_events(core, namespace)) == writes + 1
        assert records["spec"]["endpoints"] == [record_set("eu-west", 100, prop)], records
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
    # one counts the delay from the status (since), and fails back once. Killed once the
    # step's Event is out: Events follow the status write, and a kill between the two loses it.
    wait_for(
        lambda: "RegionRecovering" in event_reasons(core, namespace),
        timeout=15,
        what="the RegionRecovering Event",
    )
    op.kill()
    assert weights_and_states(east, namespace) == {
        "us-east": ("Recovering", 0),
        "eu-west": ("Healthy", 100),
    }
    op.start_outranking()
    wait_all_healthy(east, namespace)
    healthy = regions_now(east, namespace)["us-east"]
    assert healthy["since"] - recovering["since"] >= FAILBACK_DELAY, (recovering, healthy)
    # DNS: back to us-east at 100, the standby's record withdrawn again.
    records = wait_records(east, namespace, {"us-east": 100}, "us-east's record back", prop)
    written = time.monotonic()
    assert records["metadata"]["generation"] == generation + 2, records["metadata"]
    # Clients resolve the name to us-east again and are served there.
    failback_dns_s = wait_resolves_to(global_dns, "us-east", written)
    wait_for(front_doors["us-east"].serving, timeout=60, what="us-east's front door serving")
    assert clients_see(global_dns, port) == {"us-east 200": 20}
    published = condition(dsd(east, namespace), "DNSPublished") or {}
    assert published.get("status") == "True", published
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
        "(StandbyLowered). The external-dns DNSEndpoint followed: us-east's record withdrawn, "
        "eu-west's at weight 100, us-east's back at failback; the real external-dns wrote them "
        "into a real DNS server (PowerDNS, weighted records through a webhook provider), and "
        "clients resolving the name there got eu-west's address "
        f"within {failover_dns_s:.1f} s of the test reading the changed DNSEndpoint (polled "
        "every 0.5 s) and were served by eu-west "
        f"(us-east's front door answered 503), then us-east's again within {failback_dns_s:.1f} s "
        "at failback, served by us-east",
    )
    record(
        "operator-killed-failover",
        "killed while us-east was Unhealthy (failed over): the restarted operator's checks "
        "kept the weights, no RegionUnhealthy, TrafficShifted or StandbyRaised repeated, the "
        "DNS records not rewritten; killed "
        f"again while us-east was Recovering: it failed back after the full {FAILBACK_DELAY}s "
        "delay, counted from the status, once (one RegionRecovering, RegionHealthy, "
        "StandbyLowered, one DNS write), eu-west lowered to 1 replica",
    )


@pytest.fixture
def foreign_dns_endpoint(
    api_clients: dict[str, client.ApiClient], namespace: str, dns_crd: None
) -> dict[str, Any]:
    """A DNSEndpoint of the DeepSeekDeployment's name that someone else made, before it."""
    body = {
        "apiVersion": "externaldns.k8s.io/v1alpha1",
        "kind": "DNSEndpoint",
        "metadata": {"name": DSD},
        "spec": {"endpoints": [{"dnsName": "other.global.test", "targets": ["203.0.113.1"]}]},
    }
    return dict(
        client.CustomObjectsApi(api_clients["us-east"]).create_namespaced_custom_object(
            "externaldns.k8s.io", "v1alpha1", namespace, "dnsendpoints", body
        )
    )


@pytest.mark.parametrize("dns", [DNS], ids=["dns"])
def test_a_dns_endpoint_the_operator_did_not_create_is_left_alone(
    foreign_dns_endpoint: dict[str, Any],
    fleet: dict[str, client.CustomObjectsApi],
    namespace: str,
    core: client.CoreV1Api,
) -> None:
    east = fleet["us-east"]
    wait_all_healthy(east, namespace)

    def reason() -> str | None:
        return (condition(dsd(east, namespace), "DNSPublished") or {}).get("reason")

    wait_for(lambda: reason() == "DNSEndpointNotOwned", timeout=30, what="DNSEndpointNotOwned")
    time.sleep(3)  # several reconciles: the object stays as it was, one Warning
    theirs = dns_endpoint(east, namespace) or {}
    assert theirs["spec"] == foreign_dns_endpoint["spec"], theirs
    assert theirs["metadata"]["generation"] == 1 and not theirs["metadata"].get("ownerReferences")
    warned = [m for r, m in events(core, namespace) if r == "DNSEndpointNotOwned"]
    assert len(warned) == 1 and "left alone" in warned[0], warned
    assert warning_counts(core, namespace, "DNSEndpointNotOwned") == [1]  # not repeated
    cond = condition(dsd(east, namespace), "DNSPublished") or {}
    assert cond.get("status") == "False", cond

    # Once it is gone, the operator publishes its own.
    east.delete_namespaced_custom_object(
        "externaldns.k8s.io", "v1alpha1", namespace, "dnsendpoints", DSD
    )
    wait_records(east, namespace, {"us-east": 100}, "the operator's own records")
    wait_for(lambda: reason() == "RecordsPublished", timeout=30, what="DNSPublished True")


@pytest.mark.parametrize("dns", [DNS], ids=["dns"])
def test_without_the_dns_endpoint_crd_the_condition_says_how_to_install_it(
    no_dns_crd: None,
    fleet: dict[str, client.CustomObjectsApi],
    namespace: str,
    core: client.CoreV1Api,
    operators: dict[str, OperatorProcess],
) -> None:
    east = fleet["us-east"]
    wait_all_healthy(east, namespace)  # failover itself goes on
    cond = wait_for(
        lambda: (c := condition(dsd(east, namespace), "DNSPublished")) and c,
        timeout=30,
        what="the DNSPublished condition",
    )
    assert (cond["status"], cond["reason"]) == ("False", "DNSEndpointCRDMissing"), cond
    assert "dnsendpoints.externaldns.k8s.io CRD is not installed" in cond["message"], cond
    hint = "kubectl apply -f https://raw.githubusercontent.com/kubernetes-sigs/external-dns"
    assert hint in cond["message"], cond
    time.sleep(3)  # several reconciles: one Warning (not repeated), no error loop
    warned = warning_counts(core, namespace, "DNSEndpointCRDMissing")
    assert warned == [1], warned
    op = operators["us-east"]
    assert op.proc is not None and op.proc.poll() is None, "the operator exited"
    assert metric(op, "deepseek_operator_region_weight", "us-east") == 100.0


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


# eu-west in rotation beside us-east (half its weight): its first passed check moves traffic.
SHARED = [REGIONS[0], {**REGIONS[1], "weight": 50}]


@pytest.fixture
def west_without_gpus(regions: dict[str, RegionInfo]) -> Iterator[None]:
    """eu-west's GPUs gone before the resource is applied: its copy is made, but none of its
    engines can start, so the region has not passed a health check (Pending)."""
    gpus_gone(regions["eu-west"], down=True)
    try:
        yield
    finally:
        gpus_gone(regions["eu-west"], down=False)


@pytest.mark.parametrize("fleet_regions", [SHARED], ids=["eu-west-weight-50"])
def test_the_operator_killed_while_a_region_is_pending_resumes_it(
    west_without_gpus: None,
    fleet: dict[str, client.CustomObjectsApi],
    regions: dict[str, RegionInfo],
    namespace: str,
    core: client.CoreV1Api,
    operators: dict[str, OperatorProcess],
) -> None:
    east = fleet["us-east"]
    # us-east passes its checks; eu-west fails every one and stays Pending, out of rotation
    # (a Pending region is never Unhealthy: failureThreshold is 2 here).
    waiting = {"us-east": ("Healthy", 100), "eu-west": ("Pending", 0)}

    def pending() -> dict[str, Any]:
        west = regions_now(east, namespace).get("eu-west") or {}
        enough = (west.get("consecutiveFailures") or 0) >= 3
        return west if enough and weights_and_states(east, namespace) == waiting else {}

    before = wait_for(pending, timeout=180, what="us-east Healthy, eu-west Pending", every=1)
    assert "no ready engine pod" in before["message"], before
    assert copy_in(fleet["eu-west"], namespace) is not None
    op = operators["us-east"]
    assert metric(op, "deepseek_operator_region_weight", "eu-west") == 0.0
    said = times_said(core, namespace)

    op.kill()
    killed = time.time()
    time.sleep(4)  # four health-check intervals without the operator: nothing moves
    assert weights_and_states(east, namespace) == waiting
    checked = [r.get("lastCheckTime") or 0 for r in regions_now(east, namespace).values()]
    assert max(checked) < killed, checked
    op.start_outranking()
    restarted = time.time()
    wait_for(
        lambda: all(
            (r.get("lastCheckTime") or 0) > restarted + 2
            for r in regions_now(east, namespace).values()
        ),
        timeout=60,
        what="health checks by the restarted operator",
    )
    # It resumes from the status: still Pending, the failed checks counted on, nothing said again.
    assert weights_and_states(east, namespace) == waiting
    after = regions_now(east, namespace)["eu-west"]
    assert after["consecutiveFailures"] > before["consecutiveFailures"], (before, after)
    assert after["since"] == before["since"], (before, after)
    assert times_said(core, namespace) == said

    # eu-west's GPUs come back: in rotation at its first passed check, said once.
    gpus_gone(regions["eu-west"], down=False)
    wait_regions(
        east,
        namespace,
        {"us-east": ("Healthy", 100), "eu-west": ("Healthy", 50)},
        "eu-west in rotation at its first passed check",
    )
    said = times_said(core, namespace)
    assert "RegionUnhealthy" not in event_reasons(core, namespace), said
    for once in ("RegionHealthy", "TrafficShifted", "CopyCreated"):
        assert all(n == 1 for r, n in said if r == once), (once, said)
    healthy = [m for r, m in events(core, namespace) if r == "RegionHealthy"]
    assert len(healthy) == 2 and "region eu-west passes its first health check" in healthy[1]
    shifted = [m for r, m in events(core, namespace) if r == "TrafficShifted"]
    assert shifted == [
        "traffic weights us-east=100, eu-west=50 -> us-east=100, eu-west=0",
        "traffic weights us-east=100, eu-west=0 -> us-east=100, eu-west=50",
    ], shifted
    record(
        "operator-killed-pending",
        f"killed while eu-west was Pending ({before['consecutiveFailures']} failed checks, "
        "its engines unschedulable): nothing moved while it was down; the restarted operator "
        "kept it Pending at weight 0, counting its failed checks on, and posted no Event; once "
        "its GPUs were back eu-west passed its first check and went into rotation "
        "(us-east=100, eu-west=50) with one RegionHealthy and one TrafficShifted",
    )


@pytest.mark.parametrize("dns", [DNS], ids=["dns"])
def test_the_home_api_server_gone_while_failed_over_changes_nothing(
    dns_crd: None,
    fleet: dict[str, client.CustomObjectsApi],
    regions: dict[str, RegionInfo],
    namespace: str,
    core: client.CoreV1Api,
    operators: dict[str, OperatorProcess],
    local_cluster: LocalCluster,
) -> None:
    east, west = fleet["us-east"], fleet["eu-west"]
    wait_all_healthy(east, namespace)
    failed_over = {"us-east": ("Unhealthy", 0), "eu-west": ("Healthy", 100)}
    gpus_gone(regions["us-east"], down=True)
    try:
        wait_regions(east, namespace, failed_over, "traffic moved to eu-west")
        wait_records(east, namespace, {"eu-west": 100}, "eu-west's record alone")
        wait_for(
            lambda: (dsd(west, namespace).get("status") or {}).get("readyReplicas") == 2,
            timeout=120,
            what="eu-west raised to the 2 replicas us-east ran, Ready",
            every=1,
        )
        said = times_said(core, namespace)
        records = dns_endpoint(east, namespace) or {}
        op = operators["us-east"]

        # The home API server goes away while eu-west carries the traffic. The home operator
        # keeps its status, Events and DNS records there, so it can change nothing; eu-west
        # goes on serving at the raised capacity, its own operator reconciling the copy.
        try:
            assert local_cluster.stop_component("us-east", "kube-apiserver")
            time.sleep(8)  # eight of the home operator's health checks meanwhile
            copy = dsd(west, namespace)
            assert copy["spec"]["replicas"] == 2, copy["spec"]  # not lowered meanwhile
            assert copy["status"]["readyReplicas"] == 2, copy["status"]
            assert (condition(copy, "Ready") or {}).get("status") == "True", copy["status"]
            assert op.proc is not None and op.proc.poll() is None, "the operator exited"
            assert metric(op, "deepseek_operator_region_weight", "eu-west") == 100.0
        finally:
            local_cluster.up()
        back = time.time()
        wait_for(
            lambda: all(
                (r.get("lastCheckTime") or 0) > back + 2
                for r in regions_now(east, namespace).values()
            ),
            timeout=90,
            what="health checks written again once the API server is back",
        )
        # The same process resumes the same failover: nothing repeated, nothing rewritten.
        assert op.proc is not None and op.proc.poll() is None, "the operator exited"
        assert weights_and_states(east, namespace) == failed_over
        assert regions_now(east, namespace)["eu-west"]["consecutiveFailures"] == 0
        now_said = times_said(core, namespace)
        for once in ("RegionUnhealthy", "TrafficShifted", "StandbyRaised", "DNSRecordsUpdated"):
            assert sum(n for r, n in now_said if r == once) == sum(
                n for r, n in said if r == once
            ), (once, said, now_said)
        assert sum(n for r, n in now_said if r == "StandbyRaised") == 1, now_said
        assert dsd(west, namespace)["spec"]["replicas"] == 2
        again = dns_endpoint(east, namespace) or {}
        assert again["metadata"]["generation"] == records["metadata"]["generation"], again
        assert again["spec"]["endpoints"] == [record_set("eu-west", 100)], again
    finally:
        gpus_gone(regions["us-east"], down=False)
    record(
        "home-region-api-down-failover",
        "us-east's kube-apiserver stopped for 8 s while failed over to eu-west: eu-west kept "
        "serving its copy at the raised 2 replicas (Ready), the home operator kept running and "
        "changed nothing; once the API server was back the same process went on checking with "
        "the weights as they were (us-east=0, eu-west=100): no RegionUnhealthy, TrafficShifted, "
        "StandbyRaised or DNSRecordsUpdated repeated, the DNSEndpoint not rewritten",
    )


# Both regions in rotation at 70/30 (eu-west a warm standby that also takes a share).
SPLIT = [{**REGIONS[0], "weight": 70}, {**REGIONS[1], "weight": 30}]


@pytest.mark.parametrize(
    ("dns", "serving", "fleet_regions"), [(WEBHOOK_DNS, True, SPLIT)], ids=["70-30"]
)
def test_a_weighted_split_reaches_clients_in_proportion(
    global_dns: GlobalDns,
    fleet: dict[str, client.CustomObjectsApi],
    front_doors: dict[str, Router],
    namespace: str,
) -> None:
    east = fleet["us-east"]
    wait_regions(
        east,
        namespace,
        {"us-east": ("Healthy", 70), "eu-west": ("Healthy", 30)},
        "both regions in rotation at 70/30",
    )
    wait_records(
        east, namespace, {"us-east": 70, "eu-west": 30}, "both record sets", "webhook/weight"
    )
    for name, door in front_doors.items():
        wait_for(door.serving, timeout=60, what=f"{name}'s front door serving")
    wait_for(
        lambda: (
            {(global_dns.resolve(HOSTNAME) or [""])[0] for _ in range(20)}
            == {*TARGETS["us-east"], *TARGETS["eu-west"]}
        ),
        timeout=30,
        what="the DNS server answering both regions' addresses",
    )
    # 200 clients, each resolving the name through PowerDNS and served by the region it named:
    # us-east's share is 70% +- 3.2 points (one standard deviation); 50-90% is 6 of them.
    seen = clients_see(global_dns, int(front_doors["us-east"].url.rsplit(":", 1)[1]), n=200)
    assert set(seen) == {"us-east 200", "eu-west 200"}, seen
    share = seen["us-east 200"] / 200
    assert 0.5 <= share <= 0.9, seen
    print(f"70/30 weights: {seen} (us-east {share:.0%})")


# Self-fencing: eu-west (a member region) carries 70% and publishes its own record from its own
# cluster, read there by an external-dns of its own; the home (us-east) publishes only its 30.
FENCING_DNS = {**WEBHOOK_DNS, "selfFencing": True}
FENCING = [{**REGIONS[0], "weight": 30}, {**REGIONS[1], "weight": 70}]


@pytest.fixture
def west_dns_crd(api_clients: dict[str, client.ApiClient], dns_crd: None) -> None:
    """external-dns's DNSEndpoint CRD in eu-west too (left installed, like us-east's)."""
    install_dns_crd(api_clients["eu-west"], "eu-west")


def txt_owners(g: GlobalDns) -> dict[str, str]:
    """The owner of each record set in the provider, as external-dns's TXT registry wrote it
    (set identifier -> external-dns/owner)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{g.webhook_port}/records", timeout=5) as r:
        records = json.load(r)
    out = {}
    for ep in records:
        if ep.get("recordType") == "TXT":
            m = re.search(r"external-dns/owner=([^,\"]+)", " ".join(ep.get("targets") or []))
            if m:
                out[ep.get("setIdentifier", "")] = m.group(1)
    return out


@pytest.mark.parametrize(
    ("dns", "serving", "fleet_regions"), [(FENCING_DNS, True, FENCING)], ids=["self-fencing"]
)
def test_a_member_region_withdraws_its_own_record_while_the_home_is_gone(
    west_dns_crd: None,
    global_dns: GlobalDns,
    fleet: dict[str, client.CustomObjectsApi],
    front_doors: dict[str, Router],
    regions: dict[str, RegionInfo],
    api_clients: dict[str, client.ApiClient],
    namespace: str,
    local_cluster: LocalCluster,
) -> None:
    east, west = fleet["us-east"], fleet["eu-west"]
    west_dns = global_dns.add_cluster(regions["eu-west"].kubeconfig, "eu-west")
    wait_regions(
        east,
        namespace,
        {"us-east": ("Healthy", 30), "eu-west": ("Healthy", 70)},
        "both regions in rotation at 30/70",
    )
    # Each cluster's DNSEndpoint holds its own region's record alone.
    wait_records(east, namespace, {"us-east": 30}, "the home's own record", "webhook/weight")
    wait_records(west, namespace, {"eu-west": 70}, "eu-west's own record", "webhook/weight")
    for name, door in front_doors.items():
        wait_for(door.serving, timeout=60, what=f"{name}'s front door serving")
    both = {*TARGETS["us-east"], *TARGETS["eu-west"]}

    def answers() -> set[str]:
        return {(global_dns.resolve(HOSTNAME) or [""])[0] for _ in range(20)}

    wait_for(lambda: answers() == both, timeout=30, what="PowerDNS answering both regions")
    # The TXT registry keeps each external-dns to its own record set: each is owned by the
    # external-dns of its cluster, and neither deletes the other's (policy=sync) meanwhile.
    assert txt_owners(global_dns) == {"us-east": "deepseek-testbed", "eu-west": "eu-west"}, (
        global_dns.log(west_dns)
    )
    time.sleep(3)  # three sync intervals of both external-dns
    assert answers() == both
    port = int(front_doors["us-east"].url.rsplit(":", 1)[1])

    # The home's API server goes away, then eu-west's engines die: nothing in us-east can
    # react, so only eu-west's own operator can take its record out.
    try:
        assert local_cluster.stop_component("us-east", "kube-apiserver")
        gone = time.monotonic()
        gpus_gone(regions["eu-west"], down=True)
        wait_for(
            lambda: not ((dns_endpoint(west, namespace) or {}).get("spec") or {}).get("endpoints"),
            timeout=60,
            what="eu-west's own record withdrawn from its DNSEndpoint",
            every=0.5,
        )
        own = dsd(west, namespace)["status"]["ownRecord"]
        assert (own["published"], own["reason"]) == (False, "SelfFenced"), own
        # Answers are drawn by weight: us-east's alone in 20 draws in a row (eu-west's set gone).
        wait_for(
            lambda: answers() == set(TARGETS["us-east"]),
            timeout=30,
            what=f"{HOSTNAME} resolving to us-east alone through external-dns",
            every=0.2,
        )
        moved_s = time.monotonic() - gone
        seen = clients_see(global_dns, port)
        assert seen == {"us-east 200": 20}, seen
        west_core = client.CoreV1Api(api_clients["eu-west"])
        said = [m for r, m in events(west_core, namespace) if r == "DNSRecordsUpdated"]
        assert any("its own engines failed" in m for m in said), said
    finally:
        gpus_gone(regions["eu-west"], down=False)
        local_cluster.up()
    record(
        "self-fencing-home-gone",
        "failover.dns.selfFencing with us-east (home, 30) and eu-west (member, 70): each "
        "cluster's DNSEndpoint held its own record, read by an external-dns per cluster "
        "(--txt-owner-id deepseek-testbed and eu-west, one webhook provider); the TXT registry "
        "kept each to its own set. With us-east's kube-apiserver stopped, eu-west's engines "
        "died: eu-west's own operator withdrew its record (SelfFenced) and 20 of 20 clients "
        f"resolving through PowerDNS went to us-east, {moved_s:.1f} s after the API server stop",
    )


# ---------------------------------------------------------------------------------------------
# The failover benchmark (make bench-failover; bench/failover.py computes and writes the results)

# Production-like timing: a region is Unhealthy after 3 failed checks 10 s apart (20-30 s);
# resolvers keep an answer 30 s; a recovered region waits 60 s before it takes traffic again.
BENCH_TIMING = {
    "healthCheckIntervalSeconds": 10,
    "failureThreshold": 3,
    "failbackDelaySeconds": 60,
}
BENCH_DNS = {**WEBHOOK_DNS, "ttlSeconds": 30}
# The primary is the member region, so that its API server can be lost while the home operator
# (us-east) watches; us-east is the warm standby.
BENCH_REGIONS = [
    {
        "name": "eu-west",
        "role": "primary",
        "weight": 100,
        "kubeconfigSecretRef": {"name": SECRET, "key": "kubeconfig"},
    },
    {"name": "us-east", "role": "standby", "weight": 0},
]
BENCH_CLIENTS, BENCH_INTERVAL_S, BENCH_TIMEOUT_S = 8, 0.5, 5.0
SETTLE_S = 20  # load after the clients' last cached answer expired, before the next step


class StateWatch:
    """The home resource's status.regions[region] polled every 0.5 s in a thread."""

    def __init__(self, custom: client.CustomObjectsApi, ns: str, region: str) -> None:
        self.seen: list[tuple[float, str, float | None]] = []
        self._stop = threading.Event()

        def run() -> None:
            while not self._stop.is_set():
                t = time.time()
                with contextlib.suppress(Exception):
                    r = regions_now(custom, ns).get(region) or {}
                    self.seen.append((t, r.get("state") or "", r.get("since")))
                self._stop.wait(0.5)

        self._thread = threading.Thread(target=run, name="state-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.skipif(
    os.environ.get("DEEPSEEK_BENCH") != "1", reason="a benchmark: `make bench-failover`"
)
@pytest.mark.parametrize(
    ("dns", "serving", "fleet_regions", "timing"),
    [(BENCH_DNS, True, BENCH_REGIONS, BENCH_TIMING)],
    ids=["bench"],
)
def test_failover_benchmark(
    global_dns: GlobalDns,
    fleet: dict[str, client.CustomObjectsApi],
    front_doors: dict[str, Router],
    regions: dict[str, RegionInfo],
    namespace: str,
    local_cluster: LocalCluster,
) -> None:
    from bench import failover as B

    east = fleet["us-east"]
    primary, standby = "eu-west", "us-east"
    steady = {primary: ("Healthy", 100), standby: ("Healthy", 0)}
    wait_for(
        lambda: weights_and_states(east, namespace) == steady,
        timeout=240,
        what="eu-west Healthy at 100, us-east Healthy at 0",
        every=1,
    )
    for name, door in front_doors.items():
        wait_for(door.serving, timeout=60, what=f"{name}'s front door serving")
    wait_resolves_to(global_dns, primary, time.monotonic())
    port = int(front_doors[primary].url.rsplit(":", 1)[1])
    with urllib.request.urlopen(f"{front_doors[primary].url}/v1/models", timeout=10) as r:
        served = json.load(r)["data"][0]["id"]
    clients = DnsClients(
        global_dns.dns_port,
        HOSTNAME,
        port,
        REGION_AT,
        workers=BENCH_CLIENTS,
        interval_s=BENCH_INTERVAL_S,
        path="/v1/completions",
        body=request_body("completions", served, 64, 16, False),
        timeout_s=BENCH_TIMEOUT_S,
    )
    probe = DnsProbe(global_dns.dns_port, HOSTNAME).start()
    watch = StateWatch(east, namespace, primary)
    load_started = time.time()
    clients.start()
    ttl = int(BENCH_DNS["ttlSeconds"])  # type: ignore[call-overload]
    windows: list[B.Window] = []
    to_primary, to_standby = tuple(TARGETS[primary]), tuple(TARGETS[standby])

    def resolves(addrs: tuple[str, ...]) -> bool:
        return tuple(global_dns.resolve(HOSTNAME)) == addrs

    def run(name: str, fault: Callable[[], None], undo: Callable[[], None]) -> None:
        fault_at = time.time()
        fault()
        wait_for(lambda: resolves(to_standby), timeout=150, what=f"{name}: DNS on {standby}")
        time.sleep(ttl + SETTLE_S)
        undo_at = time.time()
        windows.append(B.Window(name, fault_at, undo_at, ("Unhealthy",), to_standby))
        undo()
        wait_for(
            lambda: weights_and_states(east, namespace) == steady,
            timeout=300,
            what=f"{name}: failed back",
            every=1,
        )
        wait_for(lambda: resolves(to_primary), timeout=60, what=f"{name}: DNS on {primary}")
        time.sleep(ttl + SETTLE_S)
        windows.append(
            B.Window(
                f"{name}_failback", undo_at, time.time(), ("Recovering", "Healthy"), to_primary
            )
        )

    try:
        time.sleep(15)  # steady load before the first fault
        run(
            "primary_engines_killed",
            lambda: gpus_gone(regions[primary], down=True),
            lambda: gpus_gone(regions[primary], down=False),
        )

        def api_down() -> None:
            assert local_cluster.stop_component(primary, "kube-apiserver")

        def api_back() -> None:
            local_cluster.up()

        run("primary_api_unreachable", api_down, api_back)
    finally:
        samples = clients.stop()
        answers = probe.stop()
        watch.stop()
        gpus_gone(regions[primary], down=False)
        local_cluster.up()
    doc: dict[str, Any] = {
        "scenarios": {w.name: B.summarise(w, samples, answers, watch.seen) for w in windows},
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_started": load_started,
        "failover_spec": {**BENCH_TIMING, "ttlSeconds": ttl},
        "model": served,
        "replicas": 2,
        "clients": BENCH_CLIENTS,
        "client_interval_s": BENCH_INTERVAL_S,
        "client_timeout_s": BENCH_TIMEOUT_S,
        "explanation": BENCH_EXPLANATION,
    }
    B.write(doc, samples, REPO / "bench" / "results")
    print(json.dumps(doc["scenarios"], indent=2))
    for name, r in doc["scenarios"].items():
        assert r["requests"] > 0, (name, r)
        assert r["rto_s"] < B.RTO_TARGET_S, (name, r)
        assert r["shift_s"] is not None, (name, r)


BENCH_EXPLANATION = [
    "Why: with the engines killed, the primary's front door has no engine to send a request "
    "to and answers 503 at once. Clients keep sending there until (1) the home operator has "
    "seen failureThreshold failed checks (detect_s: up to interval x threshold), (2) the "
    "operator has rewritten the DNSEndpoint and external-dns has written PowerDNS (shift_s - "
    "detect_s: about a second here, with --events), and (3) each client's cached answer has "
    "expired (up to the TTL after the shift). RTO is therefore bounded by interval x "
    "threshold + DNS propagation + TTL; the failed requests are those sent in that time.",
    "With the primary's API server stopped its engines keep serving (the front door keeps "
    "the endpoints it last saw), so traffic moves to the standby without a failed request: "
    "failing over on an unreachable control plane is the conservative choice, since the "
    "home operator cannot tell an API server outage from a lost region. A failback moves "
    "traffic between two serving regions, so it fails nothing either.",
]
