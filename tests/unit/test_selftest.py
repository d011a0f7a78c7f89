"""`deepseek-operator selftest` (the chart's helm test): the checks as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from deepseek_operator.cli import build_parser
from deepseek_operator.selftest import (
    Check,
    api_check,
    deployment_check,
    live_peers,
    peering_check,
    verdict,
)

NOW = datetime(2026, 12, 3, 18, 0, 0, tzinfo=UTC)
WHERE = "ClusterKopfPeering deepseek-operator"


def seen(seconds_ago: float, lifetime: int = 60) -> dict[str, Any]:
    # what kopf's Peer.as_dict() writes
    at = NOW - timedelta(seconds=seconds_ago)
    return {"priority": 7, "lifetime": lifetime, "lastseen": at.isoformat()}


@pytest.mark.parametrize(
    ("status", "alive"),
    [
        (None, []),
        ({}, []),
        ({"op@host/1": seen(5)}, ["op@host/1"]),
        ({"op@host/1": seen(59)}, ["op@host/1"]),
        ({"op@host/1": seen(60)}, []),  # kopf: dead once lastseen + lifetime <= now
        ({"op@host/1": seen(120)}, []),  # killed, not yet cleaned by another peer
        ({"op@host/1": seen(1, lifetime=0)}, []),  # kopf's goodbye on a clean exit
        ({"op@host/1": None}, []),  # nulled entry
        ({"op@host/1": {"priority": 1, "lifetime": 60, "lastseen": "yesterday"}}, []),
        ({"old": seen(90), "new": seen(3)}, ["new"]),
        ({"a": seen(20), "b": seen(3)}, ["b", "a"]),  # newest first
        ({"z": {"lifetime": 60, "lastseen": "2026-12-03T17:59:50Z"}}, ["z"]),
    ],
)
def test_live_peers_by_kopfs_rule(status: dict[str, Any] | None, alive: list[str]) -> None:
    assert [p.identity for p in live_peers(status, NOW)] == alive


def test_peering_check_lines() -> None:
    ok = peering_check(WHERE, {"status": {"pod-a": seen(12)}}, NOW)
    assert ok == Check("operator", True, f"1 live operator(s) in {WHERE}; pod-a seen 12s ago")
    stale = peering_check(WHERE, {"status": {"pod-a": seen(300)}}, NOW)
    assert not stale.ok and "no live operator in ClusterKopfPeering" in stale.message
    missing = peering_check(WHERE, None, NOW)
    assert not missing.ok and "does not exist" in missing.message


@pytest.mark.parametrize(
    ("deployment", "ok", "says"),
    [
        (None, False, "does not exist"),
        ({"spec": {"replicas": 1}, "status": {}}, False, "no available replica of 1"),
        ({"spec": {"replicas": 0}, "status": {}}, False, "replicaCount 0"),
        ({"spec": {"replicas": 2}, "status": {"availableReplicas": 1}}, True, "1 of 2"),
    ],
)
def test_deployment_check(deployment: dict[str, Any] | None, ok: bool, says: str) -> None:
    c = deployment_check("dso-deepseek-operator", deployment)
    assert c.ok is ok and says in c.message


def test_api_check_and_verdict() -> None:
    served = api_check("deepseek-system", 0, None)
    assert served.line() == (
        "PASS api: deepseekdeployments.serving.deepseek.dev is served (0 in deepseek-system)"
    )
    missing = api_check("deepseek-system", None, "404 Not Found")
    assert missing.line().startswith("FAIL api: listing") and "404 Not Found" in missing.line()
    assert verdict([served, Check("operator", True, "up")]) == (
        [served.line(), "PASS operator: up"],
        0,
    )
    assert verdict([served, Check("operator", False, "down")])[1] == 1


def test_selftest_command_line() -> None:
    args = build_parser().parse_args(
        ["selftest", "-n", "ds", "--peering", "p", "--peering-namespace", "a"]
    )
    assert (args.namespace, args.peering, args.peering_namespace) == ("ds", "p", ["a"])
