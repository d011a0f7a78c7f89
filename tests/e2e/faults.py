"""The fault matrix's record: every e2e test that injects a fault for real (a process killed, a
port closed, a component stopped) records what it expected, what it observed and how many
client requests failed; at the end of the session `docs/reliability.md` is written from those
rows (conftest.py), never by hand. A session that did not run every fault writes its partial
report to .local/e2e-logs/reliability.md instead, so a run of one suite leaves the docs alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .operator_process import LOGS

ROWS = LOGS / "faults.jsonl"
DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"

# fault id -> (the fault, as injected; what a user expects)
FAULTS: dict[str, tuple[str, str]] = {
    "operator-killed": (
        "The operator process killed (SIGKILL) and started again while its resource is served",
        "Nothing acts while it is down; once back it applies the change made meanwhile and the "
        "status catches up",
    ),
    "operator-killed-scaling-down": (
        "The operator killed while a rollout scales the old colour down, under client load",
        "The same rollout completes (old colour scaled to 0, one RolloutStarted); no client "
        "request fails",
    ),
    "operator-killed-mid-rollout": (
        "The operator killed in the middle of a blue-green rollout's analysis, under client load",
        "The same rollout resumes (same start time, one RolloutStarted) and promotes; no client "
        "request fails",
    ),
    "operator-killed-progressing": (
        "The operator killed while a rollout's preview colour starts (Progressing), under "
        "client load",
        "Nothing moves while it is down; once back the same rollout (same start time, one "
        "RolloutStarted) goes on to its analysis; no client request fails",
    ),
    "operator-killed-paused": (
        "The operator killed while a manual rollout waits for promotion (Paused), under "
        "client load",
        "It stays Paused, the stable colour serving; once back the promote annotation "
        "completes the same rollout (one RolloutPaused, one RolloutPromoted); no client "
        "request fails",
    ),
    "operator-killed-rolling-back": (
        "The operator killed while a failed stepped rollout rolls back (RollingBack) on a "
        "full cluster, under client load",
        "Once back it ends the same rollback (one AnalysisFailed, one RolledBackInSteps); "
        "capacity stays served; no client request fails",
    ),
    "leader-killed": (
        "The leading operator replica killed with a second replica running",
        "The other replica takes the lease and reconciles",
    ),
    "preview-erroring": (
        "The preview colour of a rollout answers 500 to every request, under client load",
        "The analysis fails and the rollout rolls back; clients of the stable Service see no error",
    ),
    "analysis-fails-full-cluster": (
        "A failed analysis during a stepped rollout on a cluster with no free GPUs",
        "It rolls back in steps; capacity stays served; no client request fails",
    ),
    "engine-erroring-behind-router": (
        "One of two engines behind the router (spec.router defaults) answers 500 to every "
        "request while its /health stays 200, under client load; then it heals",
        "Each router pod's circuit breaker takes it out after a few failed attempts; at most "
        "1 client request per router pod fails (retries on the other engine), then none; it "
        "gets traffic again after the circuit's timeout",
    ),
    "metrics-never-answer": (
        "The Prometheus a resource names does not answer at all (closed port)",
        "Replicas hold past the scale-down window; MetricsAvailable=False says why",
    ),
    "prometheus-down": (
        "The region's Prometheus stopped for several evaluation periods, under client load, "
        "then started again",
        "Replicas hold (never scaled down on no data); MetricsAvailable=False says why; it "
        "returns to True when Prometheus is back; no client request fails",
    ),
    "apiserver-restart": (
        "The region's kube-apiserver stopped and started again, under client load",
        "The operator's watches recover: a spec change made after the restart is applied; the "
        "operator keeps running; no client request fails",
    ),
    "zone-lost": (
        "One zone's GPU nodes deleted from the cluster, under client load",
        "The zone's replicas are replaced in the other zones and serve again; status follows; "
        "requests in flight on the lost pods fail, the rest are served",
    ),
    "node-not-ready": (
        "One GPU node serving a replica stops: its kubelet no longer renews the node's Lease nor "
        "posts status, its engine process dies; under client load, then the node comes back",
        "The node lifecycle controller marks it NotReady and its pod not Ready, so the router "
        "stops using it; the pod is evicted after placement.nodeNotReadyTolerationSeconds and "
        "replaced on a Ready node within the zone spread; status follows; once the node is back "
        "it is Ready and the evicted pod goes; requests in flight on the lost replica fail, the "
        "rest are served",
    ),
    "home-region-api-down": (
        "The home cluster's API server stopped (two regions, one resource)",
        "Member regions keep serving their copies, reconciled by their own operators",
    ),
    "primary-region-lost": (
        "The primary region's engines gone (two-region failover)",
        "The standby takes the traffic weight (status, Events) and is raised to what the "
        "primary ran; failback after the delay, standby lowered back",
    ),
    "operator-killed-failover": (
        "The home operator killed while the primary region is failed over (Unhealthy), and "
        "again while it recovers (Recovering, inside the failback delay)",
        "No failover action repeated; failback once, after the whole delay (one "
        "RegionRecovering, RegionHealthy, StandbyLowered)",
    ),
    "operator-killed-pending": (
        "The home operator killed while a member region is Pending (its copy made, its engines "
        "not Ready yet: no passed health check), and started again",
        "Nothing moves while it is down; once back it keeps the region Pending and out of "
        "rotation, posting no Event again; at its first passed check the region goes into "
        "rotation once (one RegionHealthy, one TrafficShifted)",
    ),
    "home-region-api-down-failover": (
        "The home cluster's API server stopped while failed over to the standby (two regions)",
        "The standby keeps serving at its raised capacity; the home operator keeps running "
        "and changes nothing (its status, Events and DNS records live in that API server); "
        "once it is back the same failover goes on: no Event repeated, no record rewritten",
    ),
    "self-fencing-home-gone": (
        "The home cluster's API server stopped, then a member region's engines die "
        "(failover.dns.selfFencing, two regions in rotation)",
        "The member region's own operator withdraws its own record after failureThreshold "
        "checks of its own engines; clients resolving the name go to the other region",
    ),
}


@dataclass(frozen=True)
class Row:
    fault: str  # a key of FAULTS
    test: str
    observed: str
    failed: int | None = None  # client requests failed during the fault (None: no load)
    sent: int | None = None


def record(
    fault: str, observed: str, counts: dict[str, Any] | None = None, *, test: str | None = None
) -> None:
    """Append one row for `fault` (called by the test after its assertions held)."""
    assert fault in FAULTS, f"unknown fault {fault!r}"
    name = test or os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    row = Row(
        fault,
        name,
        observed,
        None if counts is None else int(counts.get("failed", 0)),
        None if counts is None else int(counts.get("sent", 0)),
    )
    ROWS.parent.mkdir(parents=True, exist_ok=True)
    with ROWS.open("a") as f:
        f.write(json.dumps(asdict(row)) + "\n")


def read_rows(path: Path = ROWS) -> list[Row]:
    if not path.exists():
        return []
    return [Row(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def report(rows: list[Row], when: str) -> str:
    """docs/reliability.md: every fault of FAULTS with its outcome in this run."""
    last = {r.fault: r for r in rows}
    lines = [
        "# Reliability: the fault matrix",
        "",
        f"Generated by the e2e suites (`make test`) on {when}, from what each test observed; "
        "not written by hand. Every fault is injected for real on the local cluster (a process "
        "killed or stopped, a port closed); client requests go through the router to the "
        "simulated fleet where the test runs load.",
        "",
        "| fault | expected | observed | client requests failed / sent | test |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, (fault, expected) in FAULTS.items():
        r = last.get(key)
        if r is None:
            lines.append(f"| {fault} | {expected} | NOT RUN | | |")
            continue
        load = "no load" if r.sent is None else f"{r.failed} / {r.sent}"
        test = r.test.replace("tests/e2e/", "")
        lines.append(f"| {fault} | {expected} | {r.observed} | {load} | `{test}` |")
    missing = [k for k in FAULTS if k not in last]
    if missing:
        lines += ["", f"Not run in this session: {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def complete(rows: list[Row]) -> bool:
    return {r.fault for r in rows} >= set(FAULTS)
