"""The test bed's weighted webhook provider for external-dns (testbed/globaldns.py): what
external-dns hands it -> the PowerDNS records clients resolve. Pure parts; the e2e failover test
runs it with the real external-dns and PowerDNS."""

from __future__ import annotations

from typing import Any

import pytest
from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.api.status import RegionStatus
from deepseek_operator.traffic import decide

from testbed.globaldns import apply_changes, key, rrsets, weight

ZONE = "global.test"
NAME = "deepseek.global.test"


def ep(region: str, targets: list[str], w: int | None, *, rtype: str = "A") -> dict[str, Any]:
    e: dict[str, Any] = {
        "dnsName": NAME,
        "recordType": rtype,
        "targets": targets,
        "setIdentifier": region,
        "recordTTL": 5,
    }
    if w is not None:
        e["providerSpecific"] = [{"name": "webhook/weight", "value": str(w)}]
    return e


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ([{"name": "webhook/weight", "value": "80"}], 80),
        ([{"name": "weight", "value": "20"}], 20),
        ([{"name": "webhook/weight", "value": "0"}], 0),
        # aws/* never reaches a webhook provider (external-dns drops it); alone it is no weight.
        ([{"name": "aws/weight", "value": "80"}], 1),
        ([], 1),
    ],
)
def test_weight_comes_from_the_webhook_property(props: list[dict[str, str]], expected: int) -> None:
    assert weight({"dnsName": NAME, "providerSpecific": props}) == expected


LUA = 'A "pickwrandom({%s})"'


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        # One region in rotation: every answer is its address.
        ([ep("us-east", ["127.64.254.1"], 100)], [LUA % "{100,'127.64.254.1'}"]),
        # Two regions: each query picks one address by weight.
        (
            [ep("us-east", ["127.64.254.1"], 80), ep("eu-west", ["127.80.254.1"], 20)],
            [LUA % "{80,'127.64.254.1'},{20,'127.80.254.1'}"],
        ),
        # A record set of weight 0 gets no answers (Route53's rule).
        (
            [ep("us-east", ["127.64.254.1"], 100), ep("eu-west", ["127.80.254.1"], 0)],
            [LUA % "{100,'127.64.254.1'}"],
        ),
        # ... unless every set has weight 0: then they share alike.
        (
            [ep("us-east", ["127.64.254.1"], 0), ep("eu-west", ["127.80.254.1"], 0)],
            [LUA % "{1,'127.64.254.1'},{1,'127.80.254.1'}"],
        ),
        # A dual-stack region: one weighted record per type.
        (
            [ep("us-east", ["127.64.254.1"], 100), ep("us-east", ["::1"], 100, rtype="AAAA")],
            [LUA % "{100,'127.64.254.1'}", "AAAA \"pickwrandom({{100,'::1'}})\""],
        ),
    ],
)
def test_a_names_record_sets_become_one_weighted_lua_record(
    records: list[dict[str, Any]], expected: list[str]
) -> None:
    (rr,) = rrsets(records, [NAME], ZONE)
    assert (rr["name"], rr["type"], rr["changetype"], rr["ttl"]) == (
        f"{NAME}.",
        "LUA",
        "REPLACE",
        5,
    )
    assert [r["content"] for r in rr["records"]] == expected


def test_a_name_with_no_record_set_left_is_deleted_and_other_zones_are_not_touched() -> None:
    assert rrsets([], [NAME, "other.example.com"], ZONE) == [
        {"name": f"{NAME}.", "type": "LUA", "changetype": "DELETE", "records": []}
    ]


def test_changes_replace_record_sets_by_name_type_and_set_identifier() -> None:
    east, west = ep("us-east", ["127.64.254.1"], 100), ep("eu-west", ["127.80.254.1"], 100)
    txt = {"dnsName": f"a-{NAME}", "recordType": "TXT", "targets": ["owner"], "setIdentifier": "x"}
    records = apply_changes({}, {"create": [east, txt]})
    assert set(records) == {key(east), key(txt)}
    # Failover: us-east's set deleted, eu-west's created; the registry's TXT stays.
    records = apply_changes(records, {"delete": [east], "create": [west]})
    assert records == {key(west): west, key(txt): txt}
    # A weight change is an update of the same set.
    west80 = ep("eu-west", ["127.80.254.1"], 80)
    records = apply_changes(records, {"updateOld": [west], "updateNew": [west80]})
    assert records[key(west)] == west80 and len(records) == 2


def test_the_operators_records_for_a_webhook_provider_render_as_its_weights() -> None:
    """What the operator publishes (traffic.decide, weightProperty webhook/weight) is what
    this provider answers with: the weights of status.regions."""
    spec = DeepSeekDeploymentSpec.model_validate(
        {
            "model": {"checkpoint": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"},
            "regions": [
                {
                    "name": "us-east",
                    "role": "primary",
                    "weight": 80,
                    "dnsTargets": ["127.64.254.1"],
                },
                {
                    "name": "eu-west",
                    "role": "standby",
                    "weight": 20,
                    "dnsTargets": ["127.80.254.1"],
                },
            ],
            "failover": {
                "enabled": True,
                "dns": {"hostname": NAME, "weightProperty": "webhook/weight"},
            },
        }
    )
    regions = [
        RegionStatus(name="us-east", state="Healthy", weight=80),  # type: ignore[arg-type]
        RegionStatus(name="eu-west", state="Healthy", weight=20),  # type: ignore[arg-type]
    ]
    endpoints = decide(spec, regions, None).endpoints
    assert endpoints is not None
    records = apply_changes({}, {"create": endpoints})
    (rr,) = rrsets(records.values(), [NAME], ZONE)
    assert [r["content"] for r in rr["records"]] == [
        LUA % "{80,'127.64.254.1'},{20,'127.80.254.1'}"
    ]
