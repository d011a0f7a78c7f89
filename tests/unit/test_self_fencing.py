"""Self-fencing (failover.dns.selfFencing) as tables: the home writes only its own regions'
records and gives each member region's copy its own record with the weight it decided; the
member region publishes that record, or withdraws it from the weight and its own last
failureThreshold checks of its engines."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from deepseek_operator import propagation as P
from deepseek_operator.api import DeepSeekDeploymentSpec
from deepseek_operator.api.spec import RegionRecordSpec, RegionSpec
from deepseek_operator.api.status import OwnRecordStatus, RegionStatus
from deepseek_operator.failover import Probe
from deepseek_operator.traffic import (
    SELF_FENCED,
    SELF_PUBLISHED,
    WITHDRAWN_BY_HOME,
    decide,
    dns_endpoint,
    own_check_due,
    own_record,
)

from .test_propagation import home
from .test_traffic import HOST, _strict, external_dns_crd, rec, st

WEST_TARGETS = ["10.1.0.1"]


def fencing_spec(self_fencing: bool) -> DeepSeekDeploymentSpec:
    return DeepSeekDeploymentSpec.model_validate(
        {
            "model": {"checkpoint": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"},
            "regions": [
                {"name": "us-east", "weight": 30, "dnsTargets": ["10.0.0.1"]},
                {
                    "name": "eu-west",
                    "role": "standby",
                    "weight": 70,
                    "kubeconfigSecretRef": {"name": "k"},
                    "dnsTargets": WEST_TARGETS,
                },
            ],
            "failover": {
                "enabled": True,
                "dns": {"hostname": HOST, "selfFencing": self_fencing},
            },
        }
    )


@pytest.mark.parametrize(
    ("fencing", "regions", "endpoints"),
    [
        (
            False,
            [st("us-east", "Healthy", 30), st("eu-west", "Healthy", 70)],
            [rec("us-east", 30, ["10.0.0.1"]), rec("eu-west", 70, WEST_TARGETS)],
        ),
        (
            True,
            [st("us-east", "Healthy", 30), st("eu-west", "Healthy", 70)],
            [rec("us-east", 30, ["10.0.0.1"])],
        ),
        # The home's own region out, the member in: the home's DNSEndpoint is emptied (the
        # member's record is in the member's cluster).
        (True, [st("us-east", "Unhealthy", 0), st("eu-west", "Healthy", 100)], []),
    ],
    ids=["home writes every region", "self-fencing: the home's own only", "home region out"],
)
def test_the_home_writes_only_its_own_records_with_self_fencing(
    fencing: bool, regions: list[RegionStatus], endpoints: list[dict[str, Any]]
) -> None:
    d = decide(fencing_spec(fencing), regions, None)
    assert d.endpoints == endpoints


def record(weight: int = 70, threshold: int = 2, interval: int = 10) -> RegionRecordSpec:
    return RegionRecordSpec.model_validate(
        {
            "region": "eu-west",
            "dns": {"hostname": HOST, "weightProperty": "webhook/weight"},
            "dnsTargets": WEST_TARGETS,
            "weight": weight,
            "failureThreshold": threshold,
            "healthCheckIntervalSeconds": interval,
        }
    )


def own(failures: int, last: float | None = 100.0) -> OwnRecordStatus:
    return OwnRecordStatus(consecutive_failures=failures, last_check_time=last)


def check(ready: int | None) -> Probe | None:
    """A check of the region's own engines with `ready` ready pods (None: none due)."""
    if ready is None:
        return None
    return Probe(ready >= 1, ready, f"{ready} ready" if ready else "no ready engine pod")


WEST_70 = [rec("eu-west", 70, WEST_TARGETS, prop="webhook/weight")]

# (case, home weight, threshold, status before, ready engines at this check (None: no check),
#  expected endpoints, reason, consecutive failures after)
OWN_CASES = [
    ("first check passes: the home's weight", 70, 2, None, 1, WEST_70, SELF_PUBLISHED, 0),
    ("no check due: as before", 70, 2, own(0), None, WEST_70, SELF_PUBLISHED, 0),
    ("one failed check of two: still published", 70, 2, own(0), 0, WEST_70, SELF_PUBLISHED, 1),
    ("second failed check: fenced", 70, 2, own(1), 0, [], SELF_FENCED, 2),
    ("fenced, the home still says 70: stays withdrawn", 70, 2, own(2), 0, [], SELF_FENCED, 3),
    ("fenced, no check due: stays withdrawn", 70, 2, own(2), None, [], SELF_FENCED, 2),
    (
        "fenced, a check passes: back at the home's weight",
        70,
        2,
        own(5),
        2,
        WEST_70,
        SELF_PUBLISHED,
        0,
    ),
    ("the home says 0: withdrawn though healthy", 0, 2, own(0), 1, [], WITHDRAWN_BY_HOME, 0),
    ("threshold 1: the first failed check fences", 70, 1, own(0), 0, [], SELF_FENCED, 1),
    ("the home says 0 and engines fail: fenced", 0, 2, own(1), 0, [], SELF_FENCED, 2),
]


@pytest.mark.parametrize(
    ("weight", "threshold", "before", "ready", "endpoints", "reason", "failures"),
    [c[1:] for c in OWN_CASES],
    ids=[c[0] for c in OWN_CASES],
)
def test_a_member_region_publishes_or_fences_its_own_record(
    weight: int,
    threshold: int,
    before: OwnRecordStatus | None,
    ready: int | None,
    endpoints: list[dict[str, Any]],
    reason: str,
    failures: int,
) -> None:
    got, status = own_record(record(weight, threshold), before, check(ready), 200.0)
    assert (got, status.reason, status.consecutive_failures) == (endpoints, reason, failures)
    assert status.published is bool(endpoints)
    assert status.weight == (weight if endpoints else 0)
    assert status.last_check_time == (200.0 if ready is not None else before and 100.0)


def test_messages_say_why_a_record_is_withdrawn() -> None:
    _, fenced = own_record(record(), own(1), check(0), 200.0)
    assert fenced.message == (
        f"{HOST}: region eu-west withdrawn: its own engines failed 2 checks in a row "
        "(no ready engine pod)"
    )
    _, by_home = own_record(record(0), None, check(1), 200.0)
    assert "the home region's weight is 0" in by_home.message


def test_own_checks_are_due_every_interval() -> None:
    r = record(interval=10)
    assert own_check_due(r, None, 0.0)
    assert not own_check_due(r, own(0, last=100.0), 105.0)
    assert own_check_due(r, own(0, last=100.0), 110.0)


def test_the_own_record_passes_the_real_crd_schema() -> None:
    crd = external_dns_crd()
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"]["additionalProperties"] = True
    for ready in (1, 0):
        eps, _ = own_record(record(threshold=1), None, check(ready), 1.0)
        jsonschema.Draft4Validator(schema).validate(dns_endpoint("r1", "ns", "u", eps))


# --- the copy carries the region's record ---------------------------------------------------

FENCING = {
    "enabled": True,
    "failureThreshold": 4,
    "healthCheckIntervalSeconds": 5,
    "dns": {"hostname": HOST, "weightProperty": "webhook/weight", "selfFencing": True},
}


def west(**kw: Any) -> RegionSpec:
    return RegionSpec.model_validate(
        {"name": "eu-west", "kubeconfigSecretRef": {"name": "k"}, "dnsTargets": WEST_TARGETS, **kw}
    )


def test_the_copy_carries_the_regions_record_with_the_homes_weight() -> None:
    spec = P.member_spec(home(failover=FENCING)["spec"], west(), weight=70)
    assert spec["regionRecord"] == {
        "region": "eu-west",
        "dns": {
            "hostname": HOST,
            "ttlSeconds": 30,
            "weightProperty": "webhook/weight",
            "selfFencing": True,
        },
        "dnsTargets": WEST_TARGETS,
        "weight": 70,
        "healthCheckIntervalSeconds": 5,
        "failureThreshold": 4,
    }
    assert "failover" not in spec and "regions" not in spec
    DeepSeekDeploymentSpec.model_validate(spec)
    without = {**FENCING, "dns": {**FENCING["dns"], "selfFencing": False}}
    assert "regionRecord" not in P.member_spec(home(failover=without)["spec"], west(), weight=70)


def test_a_new_weight_updates_the_copy_and_says_why() -> None:
    h = home(failover=FENCING)
    first = P.plan(h, west(), None, None, 70)
    assert first.body is not None and first.body["spec"]["regionRecord"]["weight"] == 70
    existing = {**first.body, "metadata": {**first.body["metadata"], "uid": "member"}}
    assert P.plan(h, west(), existing, None, 70).action is P.Action.NONE
    assert P.plan(h, west(), existing, None, None).action is P.Action.NONE  # keeps its weight
    p = P.plan(h, west(), existing, None, 0)
    assert p.action is P.Action.UPDATE and p.body is not None
    assert p.body["regionRecord"]["weight"] == 0
    assert "its DNS record's weight is 0 (self-fencing)" in p.message


@pytest.mark.parametrize(
    ("statuses", "weight"),
    [
        ([st("us-east", "Healthy", 30), st("eu-west", "Healthy", 70)], 70),
        ([st("us-east", "Healthy", 100), st("eu-west", "Unhealthy", 0)], 0),
        ([st("us-east", "Healthy", 100), st("eu-west", "Recovering", 0)], 0),
        ([st("us-east", "Healthy", 100)], 0),  # not checked yet
        # No region in rotation: the copy keeps its weight (the last records stay).
        ([st("us-east", "Unhealthy", 30), st("eu-west", "Unhealthy", 70)], None),
    ],
    ids=["in rotation", "unhealthy", "recovering", "pending", "none in rotation"],
)
def test_the_weight_given_to_a_members_record(
    statuses: list[RegionStatus], weight: int | None
) -> None:
    assert P.record_weight("eu-west", statuses, True) == weight
