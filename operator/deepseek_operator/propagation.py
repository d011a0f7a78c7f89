"""One resource, every region: the DeepSeekDeployment a member region should hold, and what to do
about the one it holds. No I/O, no clock.

The home resource (the one with `spec.regions`) is the source of truth. Each member region
reached through a kubeconfig Secret gets a copy of the same namespace/name whose spec is the
home spec without `regions` and `failover` (a copy serves; it does not manage regions), with
the region's own overrides:

    minReplicas / maxReplicas   the region's scaling bounds
    standbyReplicas             (role standby) the floor the region keeps Ready without traffic
    regionRecord                (failover.dns.selfFencing) the region's own DNS record and the
                                weight the home decided for it; its own operator publishes it

`spec.replicas` belongs to the member's own autoscaler when scaling is enabled there: the copy
starts at `scaling.minReplicas` and the field is never compared, so two autoscalers never fight
over it. With scaling disabled it is part of the spec and kept in sync (a standby gets
`standbyReplicas`).

A copy is marked with the home resource's UID. Only a marked copy is ever updated or deleted;
an object of the same name that the operator did not create is reported as a conflict and left
as it is.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from . import labels as L
from .api.base import GROUP, KIND, VERSION
from .api.resource import validation_message
from .api.spec import DeepSeekDeploymentSpec, FailoverSpec, RegionSpec
from .api.status import RegionStatus
from .rollout import Event
from .traffic import in_rotation

HOME_UID = f"{L.DOMAIN}/home-uid"  # annotation: UID of the home resource of a copy
HOME = f"{L.DOMAIN}/home"  # annotation: "<namespace>/<name>" of the home resource
HOME_GENERATION = f"{L.DOMAIN}/home-generation"  # annotation: home generation last written
FLOOR = f"{L.DOMAIN}/failover-floor"  # annotation: the failover floor last written ("0": none)
# Set on the home resource: delete it without deleting the copies (a member region that is gone
# for good would otherwise hold the deletion).
KEEP_COPIES = f"{L.DOMAIN}/keep-member-copies"
STRIPPED = ("regions", "failover")
RECORD = "regionRecord"


class Action(StrEnum):
    CREATE = "Create"
    UPDATE = "Update"
    NONE = "InSync"
    CONFLICT = "Conflict"
    INVALID = "Invalid"
    UNREACHABLE = "Unreachable"  # set by the adapter's caller: the region could not be used
    DELETE = "Delete"


COPY_STATE = {
    Action.CREATE: "Created",
    Action.UPDATE: "Updated",
    Action.NONE: "InSync",
    Action.CONFLICT: "Conflict",
    Action.INVALID: "Invalid",
    Action.UNREACHABLE: "Unreachable",
}
SYNCED = {Action.CREATE, Action.UPDATE, Action.NONE}


@dataclass(frozen=True)
class Plan:
    """What to do with one member region's copy, and why (for status and Events)."""

    action: Action
    message: str
    body: dict[str, Any] | None = None  # the object to create or the spec to write
    event_reason: str | None = None  # instead of Copy<state>


@dataclass(frozen=True)
class Floor:
    """At least this many replicas in a region while it takes over a failed region's traffic."""

    replicas: int
    reason: str


def floors(regions: list[RegionSpec], statuses: list[RegionStatus]) -> dict[str, Floor]:
    """Warm standby that grows on failover. When regions that carried traffic (spec weight > 0)
    are out of rotation, each region now in rotation is raised to its share (by weight) of the
    replicas they ran (`carryingReplicas`), so the traffic it takes over finds capacity that is
    already loading, instead of waiting for its autoscaler to see the load. When they return to
    rotation the floors go, and each region's autoscaler brings it back down. An active region's
    own load comes on top of its floor through its autoscaler."""
    spec = {r.name: r for r in regions}
    failed = [
        s
        for s in statuses
        if s.name in spec
        and spec[s.name].weight > 0
        and s.weight == 0
        and s.state in ("Unhealthy", "Recovering")
    ]
    lost = sum(s.carrying_replicas or 0 for s in failed)
    takers = [s for s in statuses if s.name in spec and s.weight > 0]
    total = sum(s.weight for s in takers)
    if lost == 0 or total == 0:
        return {}
    names = ", ".join(s.name for s in failed)
    out = {}
    for t in takers:
        share = t.weight / total
        out[t.name] = Floor(
            max(1, math.ceil(lost * share - 1e-9)),
            f"it takes {round(share * 100)}% of the traffic of {names}, which ran {lost} "
            f"replica{'s' if lost != 1 else ''}",
        )
    return out


def region_record(
    home_spec: Mapping[str, Any], region: RegionSpec, weight: int
) -> dict[str, Any] | None:
    """The copy's spec.regionRecord (camelCase): with failover.dns.selfFencing, the region's
    own record with `weight`, the weight the home decided; else None."""
    fo = FailoverSpec.model_validate(home_spec.get("failover") or {})
    if fo.dns is None or not fo.dns.self_fencing or not region.dns_targets:
        return None
    return {
        "region": region.name,
        "dns": fo.dns.to_k8s(),
        "dnsTargets": list(region.dns_targets),
        "weight": weight,
        "healthCheckIntervalSeconds": fo.health_check_interval_seconds,
        "failureThreshold": fo.failure_threshold,
    }


def record_weight(region: str, statuses: list[RegionStatus], failover_enabled: bool) -> int | None:
    """The weight the home gives a member region's own record: its weight while in rotation,
    else 0; None while no region is in rotation at all (the copy keeps the weight it has, as
    the home keeps the records published last rather than withdraw the name)."""
    if not any(in_rotation(s, failover_enabled) for s in statuses):
        return None
    s = next((s for s in statuses if s.name == region), None)
    return s.weight if s is not None and in_rotation(s, failover_enabled) else 0


def member_spec(
    home_spec: Mapping[str, Any],
    region: RegionSpec,
    floor: int = 0,
    weight: int = 0,
) -> dict[str, Any]:
    """The spec a member region's copy should have (camelCase, as stored), with `floor` the
    failover floor (0: none) raising its minReplicas, within its maxReplicas, and `weight`
    the weight of its own record (with failover.dns.selfFencing)."""
    spec = {k: copy.deepcopy(v) for k, v in home_spec.items() if k not in STRIPPED}
    spec.pop(RECORD, None)
    record = region_record(home_spec, region, weight)
    if record is not None:
        spec[RECORD] = record
    scaling = dict(spec.get("scaling") or {})
    if region.min_replicas is not None:
        scaling["minReplicas"] = region.min_replicas
    if region.max_replicas is not None:
        scaling["maxReplicas"] = region.max_replicas
    standby = region.standby_replicas if region.role == "standby" else None
    if standby is not None:
        scaling["minReplicas"] = max(standby, region.min_replicas or 0)
    if floor > int(scaling.get("minReplicas", 1)):
        top = scaling.get("maxReplicas")
        scaling["minReplicas"] = min(floor, int(top)) if top is not None else floor
    if scaling:
        spec["scaling"] = scaling
    if _autoscaled(spec):
        # The member's autoscaler sizes it, from scaling.minReplicas up.
        spec.pop("replicas", None)
    else:
        base = standby if standby is not None else spec.get("replicas")
        if floor:
            spec["replicas"] = max(int(base or 0), int(scaling["minReplicas"]))
        elif base is not None:
            spec["replicas"] = base
    return spec


def _autoscaled(spec: Mapping[str, Any]) -> bool:
    return bool((spec.get("scaling") or {}).get("enabled", True))


def _compared(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a copy's spec kept in sync: not replicas under an enabled autoscaler, and
    not the stripped fields (the member's API server fills in their defaults)."""
    return {
        k: v
        for k, v in spec.items()
        if k not in STRIPPED and not (k == "replicas" and _autoscaled(spec))
    }


def _changed_fields(want: Mapping[str, Any], have: Mapping[str, Any]) -> list[str]:
    keys = set(want) | set(have)
    return sorted(k for k in keys if want.get(k) != have.get(k))


def plan(
    home: Mapping[str, Any],
    region: RegionSpec,
    existing: Mapping[str, Any] | None,
    floor: Floor | None = None,
    weight: int | None = None,
) -> Plan:
    """What to do with `region`'s copy of `home` (both as the API server returns them), with
    the region's failover floor if it has one and the weight of its own record (None: the one
    the copy has, 0 for a new copy)."""
    meta = home["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    raise_to = floor.replicas if floor is not None else 0
    if weight is None:
        had = ((existing or {}).get("spec") or {}).get(RECORD) or {}
        weight = int(had.get("weight") or 0)
    want = member_spec(home.get("spec") or {}, region, raise_to, weight)
    try:
        DeepSeekDeploymentSpec.model_validate(want)
    except ValidationError as e:
        return Plan(
            Action.INVALID,
            f"the copy for region {region.name} would be invalid ({validation_message(e)}); "
            f"check spec.regions[{region.name}] minReplicas/maxReplicas/standbyReplicas",
        )
    generation = str(meta.get("generation", ""))
    if existing is None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {L.MANAGED_BY: L.MANAGED_BY_VALUE},
                "annotations": {
                    HOME_UID: uid,
                    HOME: f"{ns}/{name}",
                    HOME_GENERATION: generation,
                    FLOOR: str(raise_to),
                },
            },
            "spec": want,
        }
        return Plan(Action.CREATE, f"created the copy in region {region.name}", body)
    annotations = (existing.get("metadata") or {}).get("annotations") or {}
    if (existing.get("metadata") or {}).get("uid") == uid:
        return Plan(
            Action.CONFLICT,
            f"the kubeconfig of region {region.name} reaches this cluster: the resource there "
            "is this one, nothing to copy",
        )
    if annotations.get(HOME_UID) != uid:
        return Plan(
            Action.CONFLICT,
            f"region {region.name} holds a DeepSeekDeployment {ns}/{name} that this resource "
            "did not create; it is left as it is (delete it there to have the copy created)",
        )
    have = dict(existing.get("spec") or {})
    if "replicas" in have and _autoscaled(want):
        want = {**want, "replicas": have["replicas"]}  # the member's autoscaler owns it
    changed = _changed_fields(_compared(want), _compared(have))
    if not changed:
        return Plan(Action.NONE, f"the copy in region {region.name} is in sync")
    before = int(annotations.get(FLOOR) or 0)
    event_reason = None
    if raise_to != before and floor is not None:
        why = f"failover: at least {floor.replicas} replicas, as {floor.reason}"
        event_reason = "StandbyRaised" if raise_to > before else "StandbyLowered"
    elif raise_to != before:
        why = f"failback: the failover floor of {before} replicas is lifted"
        event_reason = "StandbyLowered"
    elif changed == [RECORD] and RECORD in want:
        why = f"its DNS record's weight is {want[RECORD]['weight']} (self-fencing)"
    elif annotations.get(HOME_GENERATION) != generation:
        why = "the home resource changed"
    else:
        why = "the copy was edited there (drift)"
    return Plan(
        Action.UPDATE,
        f"updated the copy in region {region.name}: {why}; fields {', '.join(changed)}",
        want,
        event_reason,
    )


def holds_deletion(spec: Mapping[str, Any], annotations: Mapping[str, str]) -> bool:
    """Whether deleting the home resource has work outside this cluster: copies in member
    regions (entries of spec.regions with a kubeconfigSecretRef) that are not to be kept.
    Only then does the resource carry the operator's finalizer, so that deleting it (or its
    namespace) while the operator is down completes at once everywhere else. Reads the raw
    spec: a spec that does not validate now may still have written copies before."""
    if annotations.get(KEEP_COPIES) == "true":
        return False
    regions = spec.get("regions")
    if not isinstance(regions, list):
        return False
    return any(isinstance(r, Mapping) and r.get("kubeconfigSecretRef") for r in regions)


def removal(home_uid: str, region: str, existing: Mapping[str, Any] | None) -> Plan:
    """What to do with a region's copy when the home resource is deleted."""
    if existing is None:
        return Plan(Action.NONE, f"region {region} holds no copy")
    annotations = (existing.get("metadata") or {}).get("annotations") or {}
    if (existing.get("metadata") or {}).get("uid") == home_uid:
        return Plan(Action.NONE, f"region {region} is this cluster")
    if annotations.get(HOME_UID) != home_uid:
        return Plan(
            Action.CONFLICT,
            f"region {region} holds a DeepSeekDeployment this resource did not create; kept",
        )
    return Plan(Action.DELETE, f"deleted the copy in region {region}")


def record(
    prev: RegionStatus, p: Plan, generation: int, now: float, seen_at: float | None
) -> tuple[RegionStatus, Event | None]:
    """A region's status after one sync, and the Event it deserves (writes always; problems
    when they start)."""
    state = COPY_STATE[p.action]
    update: dict[str, Any] = {"copy_state": state, "copy_message": p.message[:1024]}
    if p.action in SYNCED:
        update["synced_generation"] = generation
        if prev.synced_generation != generation and seen_at is not None:
            update["sync_lag_seconds"] = round(max(0.0, now - seen_at), 3)
    new = prev.model_copy(update=update)
    event = None
    if p.action in (Action.CREATE, Action.UPDATE):
        event = Event("Normal", p.event_reason or f"Copy{state}", p.message)
    elif p.action not in SYNCED and prev.copy_state != state:
        event = Event("Warning", f"Copy{state}", p.message)
    return new, event


def synced_condition(regions: list[RegionStatus]) -> tuple[bool, str, str]:
    """RegionsSynced from the copies' states: (status, reason, message)."""
    copies = [r for r in regions if r.copy_state is not None]
    bad = [r for r in copies if r.copy_state in ("Conflict", "Invalid", "Unreachable")]
    if bad:
        return False, f"Copy{bad[0].copy_state}", "; ".join(r.copy_message for r in bad)
    names = ", ".join(r.name for r in copies)
    return True, "CopiesInSync", f"this resource's copies are in sync in {names}"
