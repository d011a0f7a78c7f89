"""Region failover as tables: (spec, region states, probes, time) -> states, weights, events."""

from __future__ import annotations

from typing import Any

import pytest
from deepseek_operator.api.spec import FailoverSpec, RegionSpec
from deepseek_operator.api.status import RegionStatus
from deepseek_operator.failover import (
    Observation,
    Probe,
    check_due,
    decide,
    judge,
)

FO = FailoverSpec.model_validate(
    {
        "enabled": True,
        "healthCheckIntervalSeconds": 10,
        "failureThreshold": 3,
        "failbackDelaySeconds": 600,
    }
)
# A primary taking all traffic and a warm standby with weight 0.
PRIMARY_STANDBY = [
    RegionSpec.model_validate({"name": "us-east", "role": "primary", "weight": 100}),
    RegionSpec.model_validate(
        {"name": "eu-west", "role": "standby", "weight": 0, "kubeconfigSecretRef": {"name": "k"}}
    ),
]
# Two regions sharing traffic 60/40, and a third on standby.
ACTIVE_ACTIVE = [
    RegionSpec.model_validate({"name": "us-east", "role": "primary", "weight": 60}),
    RegionSpec.model_validate({"name": "eu-west", "role": "standby", "weight": 40}),
    RegionSpec.model_validate({"name": "ap-south", "role": "standby", "weight": 0}),
]
OK = Probe(True, 2, "2 ready engine pods")
BAD = Probe(False, 0, "no ready engine pod")
NOW = 10_000.0


def st(name: str, state: str = "Healthy", **kw: Any) -> RegionStatus:
    base: dict[str, Any] = {"since": 1000.0, "last_check_time": NOW - 10, "healthy": True}
    if name == "us-east":
        base["weight"] = 100
    base.update(kw)
    return RegionStatus(name=name, state=state, **base)


HEALTHY = [st("us-east"), st("eu-west")]


JUDGE_CASES = [
    # (case, observation, passes, words in the message)
    ("api unreachable", Observation(error="region API unreachable: timed out"), False, "timed out"),
    ("no resource there", Observation(found=False), False, "no DeepSeekDeployment"),
    ("nothing ready", Observation(ready=0), False, "no ready engine pod"),
    ("ready, no prometheus known", Observation(ready=3), True, "3 ready engine pods"),
    (
        "ready, prometheus not polled yet",
        Observation(ready=1, prometheus_url="http://p", polled=False),
        True,
        "1 ready engine pod",
    ),
    (
        "prometheus down",
        Observation(ready=2, prometheus_url="http://p", polled=True, prometheus_error="refused"),
        False,
        "did not answer: refused",
    ),
    (
        "ready but no engine reports metrics",
        Observation(ready=2, prometheus_url="http://p", polled=True, reporting=None),
        False,
        "none reports metrics",
    ),
    (
        "ready and reporting",
        Observation(ready=2, prometheus_url="http://p", polled=True, reporting=2),
        True,
        "2 reporting metrics",
    ),
]


@pytest.mark.parametrize(
    ("case", "obs", "passes", "words"), JUDGE_CASES, ids=[c[0] for c in JUDGE_CASES]
)
def test_judge(case: str, obs: Observation, passes: bool, words: str) -> None:
    probe = judge(obs)
    assert probe.ok is passes, case
    assert words in probe.message, probe.message


DECIDE_CASES = [
    # (case, regions, failover changes, last states, probes, expected {region: (state, weight)},
    #  expected condition reason, expected event reasons)
    (
        "first check, all pass",
        PRIMARY_STANDBY,
        {},
        [],
        {"us-east": OK, "eu-west": OK},
        {"us-east": ("Healthy", 100), "eu-west": ("Healthy", 0)},
        "AllRegionsHealthy",
        ["RegionHealthy", "RegionHealthy"],
    ),
    (
        "one failed check is counted, not acted on",
        PRIMARY_STANDBY,
        {},
        HEALTHY,
        {"us-east": BAD, "eu-west": OK},
        {"us-east": ("Healthy", 100), "eu-west": ("Healthy", 0)},
        "AllRegionsHealthy",
        [],
    ),
    (
        "threshold reached: fail over to the standby",
        PRIMARY_STANDBY,
        {},
        [st("us-east", consecutive_failures=2), st("eu-west")],
        {"us-east": BAD, "eu-west": OK},
        {"us-east": ("Unhealthy", 0), "eu-west": ("Healthy", 100)},
        "FailedOver",
        ["RegionUnhealthy", "TrafficShifted"],
    ),
    (
        "a region that has not passed a check yet stays out of rotation",
        PRIMARY_STANDBY,
        {},
        [],
        {"us-east": BAD, "eu-west": OK},
        {"us-east": ("Pending", 0), "eu-west": ("Healthy", 100)},
        "RegionsPending",
        ["RegionHealthy"],
    ),
    (
        "a pending region is in rotation at its first passed check",
        PRIMARY_STANDBY,
        {},
        [st("us-east", "Pending", weight=0, healthy=False), st("eu-west", weight=100)],
        {"us-east": OK, "eu-west": OK},
        {"us-east": ("Healthy", 100), "eu-west": ("Healthy", 0)},
        "AllRegionsHealthy",
        ["RegionHealthy", "TrafficShifted"],
    ),
    (
        "nothing has passed yet: the spec weights",
        PRIMARY_STANDBY,
        {},
        [],
        {"us-east": BAD, "eu-west": BAD},
        {"us-east": ("Pending", 100), "eu-west": ("Pending", 0)},
        "NoHealthyRegion",
        [],
    ),
    (
        "threshold 1 acts on the first failure",
        PRIMARY_STANDBY,
        {"failureThreshold": 1},
        HEALTHY,
        {"us-east": BAD, "eu-west": OK},
        {"us-east": ("Unhealthy", 0), "eu-west": ("Healthy", 100)},
        "FailedOver",
        ["RegionUnhealthy", "TrafficShifted"],
    ),
    (
        "unhealthy region passes again: recovering, traffic stays away",
        PRIMARY_STANDBY,
        {},
        [st("us-east", "Unhealthy", weight=0, consecutive_failures=5), st("eu-west", weight=100)],
        {"us-east": OK, "eu-west": OK},
        {"us-east": ("Recovering", 0), "eu-west": ("Healthy", 100)},
        "FailedOver",
        ["RegionRecovering"],
    ),
    (
        "recovering for less than the failback delay",
        PRIMARY_STANDBY,
        {},
        [st("us-east", "Recovering", since=NOW - 599, weight=0), st("eu-west", weight=100)],
        {"us-east": OK, "eu-west": OK},
        {"us-east": ("Recovering", 0), "eu-west": ("Healthy", 100)},
        "FailedOver",
        [],
    ),
    (
        "failback after the delay",
        PRIMARY_STANDBY,
        {},
        [st("us-east", "Recovering", since=NOW - 600, weight=0), st("eu-west", weight=100)],
        {"us-east": OK, "eu-west": OK},
        {"us-east": ("Healthy", 100), "eu-west": ("Healthy", 0)},
        "AllRegionsHealthy",
        ["RegionHealthy", "TrafficShifted"],
    ),
    (
        "failback delay 0 returns at the first passed check after recovering",
        PRIMARY_STANDBY,
        {"failbackDelaySeconds": 0},
        [st("us-east", "Recovering", since=NOW - 10, weight=0), st("eu-west", weight=100)],
        {"us-east": OK, "eu-west": OK},
        {"us-east": ("Healthy", 100), "eu-west": ("Healthy", 0)},
        "AllRegionsHealthy",
        ["RegionHealthy", "TrafficShifted"],
    ),
    (
        "a failed check while recovering restarts the wait",
        PRIMARY_STANDBY,
        {},
        [st("us-east", "Recovering", since=NOW - 590, weight=0), st("eu-west", weight=100)],
        {"us-east": BAD, "eu-west": OK},
        {"us-east": ("Unhealthy", 0), "eu-west": ("Healthy", 100)},
        "FailedOver",
        ["RegionUnhealthy"],
    ),
    (
        "a lost standby without traffic moves nothing",
        PRIMARY_STANDBY,
        {},
        [st("us-east"), st("eu-west", consecutive_failures=2)],
        {"us-east": OK, "eu-west": BAD},
        {"us-east": ("Healthy", 100), "eu-west": ("Unhealthy", 0)},
        "RegionUnhealthy",
        ["RegionUnhealthy"],
    ),
    (
        "failover disabled: reported, weights stay",
        PRIMARY_STANDBY,
        {"enabled": False},
        [st("us-east", consecutive_failures=2), st("eu-west")],
        {"us-east": BAD, "eu-west": OK},
        {"us-east": ("Unhealthy", 100), "eu-west": ("Healthy", 0)},
        "FailoverDisabled",
        ["RegionUnhealthy"],
    ),
    (
        "no region left: the spec weights stay",
        PRIMARY_STANDBY,
        {},
        [st("us-east", "Unhealthy", weight=100), st("eu-west", consecutive_failures=2)],
        {"us-east": BAD, "eu-west": BAD},
        {"us-east": ("Unhealthy", 100), "eu-west": ("Unhealthy", 0)},
        "NoHealthyRegion",
        ["RegionUnhealthy"],
    ),
    (
        "active-active: the lost region's share goes to the others by weight",
        ACTIVE_ACTIVE,
        {},
        [
            st("us-east", consecutive_failures=2, weight=60),
            st("eu-west", weight=40),
            st("ap-south"),
        ],
        {"us-east": BAD, "eu-west": OK, "ap-south": OK},
        {"us-east": ("Unhealthy", 0), "eu-west": ("Healthy", 40), "ap-south": ("Healthy", 0)},
        "FailedOver",
        ["RegionUnhealthy", "TrafficShifted"],
    ),
    (
        "only zero-weight standbys left: they share equally",
        ACTIVE_ACTIVE,
        {},
        [
            st("us-east", "Unhealthy", weight=0),
            st("eu-west", consecutive_failures=2, weight=100),
            st("ap-south"),
        ],
        {"us-east": BAD, "eu-west": BAD, "ap-south": OK},
        {"us-east": ("Unhealthy", 0), "eu-west": ("Unhealthy", 0), "ap-south": ("Healthy", 100)},
        "FailedOver",
        ["RegionUnhealthy", "TrafficShifted"],
    ),
    (
        "a region not probed this round keeps its state",
        PRIMARY_STANDBY,
        {},
        [st("us-east", "Unhealthy", weight=0), st("eu-west", weight=100)],
        {"eu-west": OK},
        {"us-east": ("Unhealthy", 0), "eu-west": ("Healthy", 100)},
        "FailedOver",
        [],
    ),
    (
        "a region removed from the spec is dropped",
        PRIMARY_STANDBY[:1],
        {},
        [st("us-east"), st("eu-west", "Unhealthy")],
        {"us-east": OK},
        {"us-east": ("Healthy", 100)},
        "AllRegionsHealthy",
        [],
    ),
]


@pytest.mark.parametrize(
    ("case", "regions", "fo", "last", "probes", "expected", "reason", "events"),
    DECIDE_CASES,
    ids=[c[0] for c in DECIDE_CASES],
)
def test_decide(
    case: str,
    regions: list[RegionSpec],
    fo: dict[str, Any],
    last: list[RegionStatus],
    probes: dict[str, Probe],
    expected: dict[str, tuple[str, int]],
    reason: str,
    events: list[str],
) -> None:
    spec = FO.model_copy(update=FailoverSpec.model_validate(fo).model_dump(exclude_unset=True))
    out = decide(regions, spec, last, probes, NOW)
    assert {r.name: (r.state, r.weight) for r in out.regions} == expected, case
    assert out.condition.reason == reason, out.condition.message
    assert out.condition.healthy is (reason == "AllRegionsHealthy")
    assert [e.reason for e in out.events] == events, [e.message for e in out.events]


def test_flapping_below_the_threshold_never_fails_over() -> None:
    last = HEALTHY
    for i in range(40):
        probe = BAD if i % 3 != 2 else OK  # two failures, one pass, repeated
        out = decide(PRIMARY_STANDBY, FO, last, {"us-east": probe, "eu-west": OK}, NOW + 10 * i)
        last = out.regions
        assert out.weights() == {"us-east": 100, "eu-west": 0}, i
        assert not out.events, i


def test_outage_and_recovery_over_time() -> None:
    """Lose the primary for 5 minutes, then watch it come back after the failback delay."""
    last: list[RegionStatus] = []
    seen: list[tuple[float, dict[str, int]]] = []
    reasons: list[str] = []
    for t in range(0, 1500, 10):
        down = 100 <= t < 400
        probes = {"us-east": BAD if down else OK, "eu-west": OK}
        out = decide(PRIMARY_STANDBY, FO, last, probes, float(t))
        last = out.regions
        reasons += [e.reason for e in out.events]
        seen.append((t, out.weights()))
    shifted = [t for t, w in seen if w["us-east"] == 0]
    assert shifted[0] == 120  # third failed check (100, 110, 120)
    assert shifted[-1] == 990  # recovering from 400, back in rotation at 400 + 600 = 1000
    assert reasons == [
        "RegionHealthy",  # first passed check of each region
        "RegionHealthy",
        "RegionUnhealthy",
        "TrafficShifted",
        "RegionRecovering",
        "RegionHealthy",
        "TrafficShifted",
    ]
    assert all(sum(w.values()) > 0 for _, w in seen)


def test_status_carries_the_last_check() -> None:
    out = decide(PRIMARY_STANDBY, FO, [], {"us-east": OK, "eu-west": BAD}, NOW)
    east, west = out.regions
    assert (east.healthy, east.ready_replicas, east.consecutive_failures) == (True, 2, 0)
    assert (west.healthy, west.consecutive_failures, west.message) == (
        False,
        1,
        "no ready engine pod",
    )
    assert east.last_check_time == west.last_check_time == NOW


DUE_CASES = [
    # (case, regions, last states, expected seconds until the next check)
    ("no member regions", [], [], None),
    ("never checked", PRIMARY_STANDBY, [], 0.0),
    (
        "checked 4 s ago",
        PRIMARY_STANDBY,
        [st("us-east", last_check_time=NOW - 4), st("eu-west", last_check_time=NOW - 4)],
        6.0,
    ),
    (
        "overdue",
        PRIMARY_STANDBY,
        [st("us-east", last_check_time=NOW - 40), st("eu-west", last_check_time=NOW - 4)],
        0.0,
    ),
    ("a new region is checked now", PRIMARY_STANDBY, [st("us-east", last_check_time=NOW - 4)], 0.0),
]


@pytest.mark.parametrize(
    ("case", "regions", "last", "expected"), DUE_CASES, ids=[c[0] for c in DUE_CASES]
)
def test_check_due(
    case: str, regions: list[RegionSpec], last: list[RegionStatus], expected: float | None
) -> None:
    assert check_due(regions, FO, last, NOW) == expected, case


def test_carrying_replicas_kept_from_the_last_passed_check_in_rotation() -> None:
    """What a region ran while it carried traffic survives its failure (standby sizing)."""
    last = [
        RegionStatus(name="us-east", state="Healthy", weight=100, last_check_time=0.0),
        RegionStatus(name="eu-west", state="Healthy", weight=0, last_check_time=0.0),
    ]
    ok = {"us-east": Probe(True, 4, "4 ready", desired=4), "eu-west": Probe(True, 1, "1", 1)}
    out = decide(PRIMARY_STANDBY, FO, last, ok, 10.0)
    assert {r.name: r.carrying_replicas for r in out.regions} == {"us-east": 4, "eu-west": 1}
    lost = {"us-east": Probe(False, 0, "no ready engine pod", desired=4), "eu-west": ok["eu-west"]}
    regions = out.regions
    for t in (20.0, 30.0, 40.0):
        regions = decide(PRIMARY_STANDBY, FO, regions, lost, t).regions
    us = next(r for r in regions if r.name == "us-east")
    assert (us.state, us.carrying_replicas) == ("Unhealthy", 4)
    assert judge(Observation(ready=2, desired=3)).desired == 3
