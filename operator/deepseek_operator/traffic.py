"""Weighted DNS for the regions: (spec, region states and weights, the records published now)
-> the external-dns DNSEndpoint to write, or none. No I/O.

`failover.py` decides each region's weight (status.regions[].weight); this module turns the
weights into records a global traffic layer reads: one external-dns `DNSEndpoint` with, per
region in rotation, a record set of the spec's hostname with `setIdentifier: <region>`, the
region's `dnsTargets` and the weight in the provider-specific property external-dns hands to its
provider (`aws/weight` for Route53 weighted routing):

    region     state       weight   record
    us-east    Healthy     80       A 10.0.0.1, weight 80
    eu-west    Healthy     20       A 10.1.0.1, weight 20
    ap-south   Unhealthy   0        none: withdrawn
    ap-east    Healthy     0        none: a warm standby (weight 0 gets no traffic in Route53
                                     either; leaving it out keeps a provider that ignores
                                     weights from sending it traffic)

When no region is in rotation (all failed, or none passed a check yet), the records published
last stay: withdrawing every record would make the hostname vanish (NXDOMAIN, cached by
resolvers for the zone's negative TTL) for every client, while the last records still reach the
region that served last and serve again the moment it recovers; failover.py keeps the spec weights
in status for the same reason. Before any region passed a check nothing is published. With
failover disabled the weights never move, so every region of weight > 0 has its record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import labels as L
from .api.base import API_VERSION, KIND
from .api.spec import (
    DeepSeekDeploymentSpec,
    DnsSpec,
    RegionRecordSpec,
    RegionSpec,
    dns_record_type,
)
from .api.status import OwnRecordStatus, RegionStatus
from .failover import Probe

DNSENDPOINT_API_VERSION = "externaldns.k8s.io/v1alpha1"
DNSENDPOINT_KIND = "DNSEndpoint"
DNSENDPOINT_CRD = "dnsendpoints.externaldns.k8s.io"

PUBLISHED = "RecordsPublished"
NO_REGION_IN_ROTATION = "NoRegionInRotation"
CRD_MISSING = "DNSEndpointCRDMissing"
NOT_OWNED = "DNSEndpointNotOwned"
WRITE_FAILED = "DNSEndpointWriteFailed"
# Reasons a person has to act on: a Warning Event when the condition turns to one of them.
NEEDS_ACTION = (CRD_MISSING, NOT_OWNED, WRITE_FAILED)
UPDATED_EVENT = "DNSRecordsUpdated"


@dataclass(frozen=True)
class DnsDecision:
    """What to publish and how to report it."""

    endpoints: list[dict[str, Any]] | None  # the DNSEndpoint's spec.endpoints; None: keep it
    write: bool  # endpoints differ from what is published: create or update the DNSEndpoint
    published: bool  # the DNSPublished condition: the records follow status.regions[].weight
    reason: str
    message: str


def in_rotation(region: RegionStatus, failover_enabled: bool) -> bool:
    """A region whose record is published: weight > 0 and, with failover, Healthy."""
    return region.weight > 0 and (not failover_enabled or region.state == "Healthy")


def region_endpoints(dns: DnsSpec, region: RegionSpec, weight: int) -> list[dict[str, Any]]:
    """The region's record set: one endpoint per record type (A and AAAA for a dual-stack
    region, else one), all with the region's set identifier and weight."""
    return record_set(dns, region.name, region.dns_targets, weight)


def record_set(
    dns: DnsSpec, region: str, dns_targets: list[str], weight: int
) -> list[dict[str, Any]]:
    by_type: dict[str, list[str]] = {}
    for t in dns_targets:
        by_type.setdefault(dns_record_type(t), []).append(t)
    return [
        {
            "dnsName": dns.hostname,
            "recordType": rtype,
            "targets": targets,
            "setIdentifier": region,
            "recordTTL": dns.ttl_seconds,
            "providerSpecific": [{"name": dns.weight_property, "value": str(weight)}],
        }
        for rtype, targets in sorted(by_type.items())
    ]


def _why_out(s: RegionStatus | None, failover_enabled: bool) -> str:
    if s is None:
        return "not checked yet"
    if failover_enabled and s.state != "Healthy":
        return s.state
    return "weight 0"


def _said(weights: dict[str, int], out: dict[str, str]) -> str:
    parts = [", ".join(f"{n}={w}" for n, w in weights.items())]
    if out:
        parts.append("withdrawn: " + ", ".join(f"{n} ({why})" for n, why in out.items()))
    return "; ".join(p for p in parts if p)


def decide(
    spec: DeepSeekDeploymentSpec,
    regions: list[RegionStatus],
    published: list[dict[str, Any]] | None,
) -> DnsDecision:
    """The records for `spec.failover.dns` given the regions' states and weights, and the
    endpoints of the DNSEndpoint now (None: there is none). Requires failover.dns. With
    `selfFencing` only this cluster's own regions (no kubeconfigSecretRef) get records here:
    each member region publishes its own (`own_record`)."""
    dns = spec.failover.dns
    assert dns is not None
    enabled = spec.failover.enabled
    status = {r.name: r for r in regions}
    weights: dict[str, int] = {}
    out: dict[str, str] = {}
    endpoints: list[dict[str, Any]] = []
    for r in spec.regions:
        s = status.get(r.name)
        if s is not None and in_rotation(s, enabled):
            weights[r.name] = s.weight
            if not (dns.self_fencing and r.kubeconfig_secret_ref is not None):
                endpoints += region_endpoints(dns, r, s.weight)
        else:
            out[r.name] = _why_out(s, enabled)
    if not weights:
        if published:
            return DnsDecision(
                None,
                False,
                False,
                NO_REGION_IN_ROTATION,
                f"no region is in rotation ({_said({}, out)}); the records published last for "
                f"{dns.hostname} stay rather than withdraw the name",
            )
        return DnsDecision(
            None,
            False,
            False,
            NO_REGION_IN_ROTATION,
            f"no region is in rotation ({_said({}, out)}); nothing is published for "
            f"{dns.hostname} until a region passes its health checks",
        )
    return DnsDecision(
        endpoints,
        published is None or endpoints != published,
        True,
        PUBLISHED,
        f"{dns.hostname}: {_said(weights, out)}",
    )


def dns_endpoint(
    name: str, namespace: str, uid: str | None, endpoints: list[dict[str, Any]]
) -> dict[str, Any]:
    """The DNSEndpoint object: named after the DeepSeekDeployment, owned by it (garbage-collected
    with it)."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {
            L.NAME: L.NAME_VALUE,
            L.INSTANCE: name,
            L.MANAGED_BY: L.MANAGED_BY_VALUE,
            L.DEPLOYMENT: name,
        },
    }
    if uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": name,
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "apiVersion": DNSENDPOINT_API_VERSION,
        "kind": DNSENDPOINT_KIND,
        "metadata": meta,
        "spec": {"endpoints": endpoints},
    }


def owned(obj: dict[str, Any], uid: str | None) -> bool:
    """Whether an existing DNSEndpoint is this DeepSeekDeployment's (its controller owner)."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return uid is not None and any(r.get("uid") == uid and r.get("controller") for r in refs)


def published_endpoints(obj: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The endpoints of an existing DNSEndpoint (None: there is none)."""
    if obj is None:
        return None
    return list((obj.get("spec") or {}).get("endpoints") or [])


def crd_missing_message() -> str:
    return (
        f"the {DNSENDPOINT_CRD} CRD is not installed in this cluster, so spec.failover.dns "
        "publishes nothing: install external-dns's CRD (its Helm chart installs it; or kubectl "
        "apply -f https://raw.githubusercontent.com/kubernetes-sigs/external-dns/v0.23.0/config/"
        "crd/standard/dnsendpoints.externaldns.k8s.io.yaml)"
    )


def not_owned_message(name: str) -> str:
    return (
        f"a DNSEndpoint {name} that this DeepSeekDeployment did not create is in the namespace: "
        "it is left alone and nothing is published (delete or rename it to let the operator "
        "publish the records)"
    )


# ---------------------------------------------------------------------------------------------
# Self-fencing: a member region's own record (failover.dns.selfFencing)

SELF_PUBLISHED = "Published"
WITHDRAWN_BY_HOME = "WithdrawnByHome"
SELF_FENCED = "SelfFenced"


def own_check_due(rec: RegionRecordSpec, before: OwnRecordStatus | None, now: float) -> bool:
    """Whether this region's own engines are due a check (every healthCheckIntervalSeconds)."""
    last = before.last_check_time if before is not None else None
    return last is None or now - last >= rec.health_check_interval_seconds - 0.25


def own_record(
    rec: RegionRecordSpec,
    before: OwnRecordStatus | None,
    check: Probe | None,
    now: float,
) -> tuple[list[dict[str, Any]], OwnRecordStatus]:
    """A member region's own record set in its own DNSEndpoint ([]: withdrawn) and its status,
    from the weight the home last decided (spec.regionRecord.weight) and the region's own
    checks of its engines: `check` the verdict of a check now (None: no check due), the same
    check the home runs on its own region (`failover.judge`: a ready engine pod of the active
    colour and, where the region's Prometheus is known, one reporting metrics).

        home weight   own checks                          record
        > 0           fewer than failureThreshold failed  published with the home's weight
        > 0           failureThreshold failed in a row    withdrawn (SelfFenced), whatever the
                                                          home says: it may be unreachable
        0             any                                 withdrawn (WithdrawnByHome)

    A passed check resets the count, so a fenced region is back at its first passed check with
    the weight the home last decided (the home's failback delay applies while the home is up:
    it holds the weight at 0 until then)."""
    failures = before.consecutive_failures if before is not None else 0
    last = before.last_check_time if before is not None else None
    said = before.message if before is not None else ""
    if check is not None:
        failures = 0 if check.ok else failures + 1
        last = now
        said = check.message
    if failures >= rec.failure_threshold:
        reason = SELF_FENCED
        message = (
            f"{rec.dns.hostname}: region {rec.region} withdrawn: its own engines failed "
            f"{failures} checks in a row ({said})"
        )
    elif rec.weight == 0:
        reason = WITHDRAWN_BY_HOME
        message = (
            f"{rec.dns.hostname}: region {rec.region} withdrawn: the home region's weight is 0"
        )
    else:
        reason = SELF_PUBLISHED
        message = f"{rec.dns.hostname}: {rec.region}={rec.weight}"
    published = reason == SELF_PUBLISHED
    endpoints = (
        record_set(rec.dns, rec.region, list(rec.dns_targets), rec.weight) if published else []
    )
    status = OwnRecordStatus(
        published=published,
        weight=rec.weight if published else 0,
        reason=reason,
        consecutive_failures=failures,
        last_check_time=last,
        message=message,
    )
    return endpoints, status
