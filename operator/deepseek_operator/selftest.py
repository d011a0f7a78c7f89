"""`deepseek-operator selftest` (the chart's `helm test` hook): is the install usable? Pure: the
adapter (adapters/selftest.py) reads the objects, these functions judge them.

Two checks, each one line:

- the DeepSeekDeployment API is served: listing them in the release namespace worked (the API
  server serves a CRD's resource only once the CRD is Established);
- the operator is up: with peering, a peer in the Kopf peering object's status is alive (Kopf
  writes ``status.<identity> = {priority, lifetime, lastseen}`` every ``lifetime - 5..10``
  seconds and counts a peer dead once ``lastseen + lifetime`` has passed,
  kopf/_core/engines/peering.py); without peering, the operator Deployment has an available
  replica.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

KOPF_DEFAULT_LIFETIME = 60  # seconds: kopf's settings.peering.lifetime default


@dataclass(frozen=True)
class Check:
    name: str  # e.g. "api", "operator"
    ok: bool
    message: str  # a sentence a person can act on

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.message}"


@dataclass(frozen=True)
class LivePeer:
    identity: str
    lastseen: datetime
    deadline: datetime


def api_check(namespace: str, listed: int | None, error: str | None) -> Check:
    """`listed`: how many DeepSeekDeployments the list returned; None with `error` when it
    failed (404: the CRD is missing or not established; 403: the test's RBAC)."""
    if listed is None:
        return Check(
            "api",
            False,
            f"listing deepseekdeployments.serving.deepseek.dev in {namespace} failed: {error}",
        )
    return Check(
        "api",
        True,
        f"deepseekdeployments.serving.deepseek.dev is served ({listed} in {namespace})",
    )


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def live_peers(status: dict[str, Any] | None, now: datetime) -> list[LivePeer]:
    """Peers whose keep-alive has not expired, by Kopf's own rule (lastseen + lifetime > now).
    Entries Kopf nulled on a clean exit, or without a readable lastseen, are not alive."""
    peers: list[LivePeer] = []
    for identity, info in (status or {}).items():
        if not isinstance(info, dict):
            continue
        lastseen = _parse_time(info.get("lastseen"))
        if lastseen is None:
            continue
        try:
            lifetime = int(info.get("lifetime", KOPF_DEFAULT_LIFETIME))
        except (TypeError, ValueError):
            continue
        deadline = lastseen + timedelta(seconds=lifetime)
        if deadline > now:
            peers.append(LivePeer(str(identity), lastseen, deadline))
    return sorted(peers, key=lambda p: p.lastseen, reverse=True)


def peering_check(where: str, peering: dict[str, Any] | None, now: datetime) -> Check:
    """`where`: e.g. "ClusterKopfPeering deepseek-operator"; `peering`: the object, None when
    it does not exist."""
    if peering is None:
        return Check("operator", False, f"{where} does not exist: no operator can be peering")
    peers = live_peers(peering.get("status"), now)
    if not peers:
        return Check(
            "operator",
            False,
            f"no live operator in {where}: no peer's keep-alive is recent "
            "(the operator is not running, or cannot reach the API server)",
        )
    newest = peers[0]
    age = max(0, int((now - newest.lastseen).total_seconds()))
    return Check(
        "operator",
        True,
        f"{len(peers)} live operator(s) in {where}; {newest.identity} seen {age}s ago",
    )


def deployment_check(name: str, deployment: dict[str, Any] | None) -> Check:
    """Without peering: the operator Deployment has an available replica."""
    if deployment is None:
        return Check("operator", False, f"Deployment {name} does not exist")
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    available = int(status.get("availableReplicas") or 0)
    wanted = int(spec.get("replicas", 1))
    if available < 1:
        why = (
            " (replicaCount 0: the operator runs elsewhere; enable operator.peering for "
            "helm test to see it)"
            if wanted == 0
            else ""
        )
        return Check(
            "operator", False, f"Deployment {name} has no available replica of {wanted}{why}"
        )
    return Check("operator", True, f"Deployment {name} has {available} of {wanted} available")


def verdict(checks: list[Check]) -> tuple[list[str], int]:
    """One line per check, and the exit code (0 only when every check passed)."""
    return [c.line() for c in checks], 0 if all(c.ok for c in checks) else 1
