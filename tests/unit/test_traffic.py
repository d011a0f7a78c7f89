"""Weighted DNS records as tables: (spec, region states and weights, what is published) -> the
external-dns DNSEndpoint; and the DNSEndpoint checked against external-dns's own CRD schema."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from deepseek_operator.api import DeepSeekDeploymentSpec
from deepseek_operator.api.status import RegionStatus
from deepseek_operator.traffic import (
    CRD_MISSING,
    NEEDS_ACTION,
    NO_REGION_IN_ROTATION,
    NOT_OWNED,
    PUBLISHED,
    WRITE_FAILED,
    crd_missing_message,
    decide,
    dns_endpoint,
    not_owned_message,
    owned,
    published_endpoints,
)

HOST = "deepseek.example.com"


def spec(
    *weights: tuple[str, int, list[str]], enabled: bool = True, **dns: Any
) -> DeepSeekDeploymentSpec:
    return DeepSeekDeploymentSpec.model_validate(
        {
            "model": {"checkpoint": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"},
            "regions": [
                {
                    "name": n,
                    "role": "primary" if i == 0 else "standby",
                    "weight": w,
                    "dnsTargets": t,
                }
                for i, (n, w, t) in enumerate(weights)
            ],
            "failover": {"enabled": enabled, "dns": {"hostname": HOST, **dns}},
        }
    )


def st(name: str, state: str, weight: int) -> RegionStatus:
    return RegionStatus(name=name, state=state, weight=weight)  # type: ignore[arg-type]


EAST = ("us-east", 80, ["10.0.0.1", "10.0.0.2"])
WEST = ("eu-west", 20, ["10.1.0.1"])
STANDBY = ("eu-west", 0, ["10.1.0.1"])


def rec(
    region: str, weight: int, targets: list[str], rtype: str = "A", **kw: Any
) -> dict[str, Any]:
    return {
        "dnsName": HOST,
        "recordType": rtype,
        "targets": targets,
        "setIdentifier": region,
        "recordTTL": kw.get("ttl", 30),
        "providerSpecific": [{"name": kw.get("prop", "aws/weight"), "value": str(weight)}],
    }


# (case, spec, region statuses, published now, expected endpoints (None: keep), write, reason)
CASES = [
    (
        "both healthy: one weighted record set each",
        spec(EAST, WEST),
        [st("us-east", "Healthy", 80), st("eu-west", "Healthy", 20)],
        None,
        [rec("us-east", 80, ["10.0.0.1", "10.0.0.2"]), rec("eu-west", 20, ["10.1.0.1"])],
        True,
        PUBLISHED,
    ),
    (
        "unchanged: no write",
        spec(EAST, WEST),
        [st("us-east", "Healthy", 80), st("eu-west", "Healthy", 20)],
        [rec("us-east", 80, ["10.0.0.1", "10.0.0.2"]), rec("eu-west", 20, ["10.1.0.1"])],
        [rec("us-east", 80, ["10.0.0.1", "10.0.0.2"]), rec("eu-west", 20, ["10.1.0.1"])],
        False,
        PUBLISHED,
    ),
    (
        "failed region withdrawn, the other keeps its weight",
        spec(EAST, WEST),
        [st("us-east", "Unhealthy", 0), st("eu-west", "Healthy", 20)],
        [rec("us-east", 80, ["10.0.0.1", "10.0.0.2"]), rec("eu-west", 20, ["10.1.0.1"])],
        [rec("eu-west", 20, ["10.1.0.1"])],
        True,
        PUBLISHED,
    ),
    (
        "recovering region stays withdrawn until failback",
        spec(EAST, WEST),
        [st("us-east", "Recovering", 0), st("eu-west", "Healthy", 20)],
        [rec("eu-west", 20, ["10.1.0.1"])],
        [rec("eu-west", 20, ["10.1.0.1"])],
        False,
        PUBLISHED,
    ),
    (
        "warm standby (weight 0) has no record while the primary serves",
        spec(EAST, STANDBY),
        [st("us-east", "Healthy", 80), st("eu-west", "Healthy", 0)],
        None,
        [rec("us-east", 80, ["10.0.0.1", "10.0.0.2"])],
        True,
        PUBLISHED,
    ),
    (
        "primary lost: the standby takes 100",
        spec(EAST, STANDBY),
        [st("us-east", "Unhealthy", 0), st("eu-west", "Healthy", 100)],
        [rec("us-east", 80, ["10.0.0.1", "10.0.0.2"])],
        [rec("eu-west", 100, ["10.1.0.1"])],
        True,
        PUBLISHED,
    ),
    (
        "no region in rotation: the last records stay",
        spec(EAST, WEST),
        [st("us-east", "Unhealthy", 80), st("eu-west", "Unhealthy", 20)],
        [rec("eu-west", 20, ["10.1.0.1"])],
        None,
        False,
        NO_REGION_IN_ROTATION,
    ),
    (
        "nothing checked yet: nothing published",
        spec(EAST, WEST),
        [],
        None,
        None,
        False,
        NO_REGION_IN_ROTATION,
    ),
    (
        "pending regions are not published",
        spec(EAST, WEST),
        [st("us-east", "Pending", 80), st("eu-west", "Healthy", 20)],
        None,
        [rec("eu-west", 20, ["10.1.0.1"])],
        True,
        PUBLISHED,
    ),
    (
        "failover disabled: spec weights, whatever the health",
        spec(EAST, WEST, enabled=False),
        [st("us-east", "Unhealthy", 80), st("eu-west", "Healthy", 20)],
        None,
        [rec("us-east", 80, ["10.0.0.1", "10.0.0.2"]), rec("eu-west", 20, ["10.1.0.1"])],
        True,
        PUBLISHED,
    ),
    (
        "a load balancer hostname is a CNAME; ttl and weight property from the spec",
        spec(
            ("us-east", 100, ["lb-1.elb.us-east-1.amazonaws.com"]),
            ("eu-west", 0, ["lb-2.elb.eu-west-1.amazonaws.com"]),
            ttlSeconds=10,
            weightProperty="webhook/weight",
        ),
        [st("us-east", "Healthy", 100), st("eu-west", "Unhealthy", 0)],
        None,
        [
            rec(
                "us-east",
                100,
                ["lb-1.elb.us-east-1.amazonaws.com"],
                "CNAME",
                ttl=10,
                prop="webhook/weight",
            )
        ],
        True,
        PUBLISHED,
    ),
    (
        "dual stack: an A and an AAAA record with the same set identifier",
        spec(("us-east", 100, ["10.0.0.1", "2001:db8::1"]), ("eu-west", 0, ["10.1.0.1"])),
        [st("us-east", "Healthy", 100), st("eu-west", "Healthy", 0)],
        None,
        [rec("us-east", 100, ["10.0.0.1"]), rec("us-east", 100, ["2001:db8::1"], "AAAA")],
        True,
        PUBLISHED,
    ),
    (
        "a region's targets changed: rewritten",
        spec(("us-east", 100, ["10.0.0.9"]), STANDBY),
        [st("us-east", "Healthy", 100), st("eu-west", "Healthy", 0)],
        [rec("us-east", 100, ["10.0.0.1"])],
        [rec("us-east", 100, ["10.0.0.9"])],
        True,
        PUBLISHED,
    ),
]


@pytest.mark.parametrize(
    ("s", "regions", "published", "endpoints", "write", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_records_follow_the_region_weights(
    s: DeepSeekDeploymentSpec,
    regions: list[RegionStatus],
    published: list[dict[str, Any]] | None,
    endpoints: list[dict[str, Any]] | None,
    write: bool,
    reason: str,
) -> None:
    d = decide(s, regions, published)
    assert (d.endpoints, d.write, d.reason) == (endpoints, write, reason)
    assert d.published is (reason == PUBLISHED)


def test_messages_name_the_weights_and_the_withdrawn_regions() -> None:
    d = decide(spec(EAST, WEST), [st("us-east", "Unhealthy", 0), st("eu-west", "Healthy", 20)], [])
    assert d.message == f"{HOST}: eu-west=20; withdrawn: us-east (Unhealthy)"
    kept = decide(spec(EAST, WEST), [st("us-east", "Unhealthy", 80)], [rec("us-east", 80, [])])
    assert "records published last" in kept.message and "eu-west (not checked yet)" in kept.message


def test_the_dns_endpoint_is_owned_by_the_deepseekdeployment() -> None:
    body = dns_endpoint("r1", "serving", "uid-1", [rec("us-east", 100, ["10.0.0.1"])])
    assert body["apiVersion"] == "externaldns.k8s.io/v1alpha1" and body["kind"] == "DNSEndpoint"
    assert body["metadata"]["name"] == "r1" and body["metadata"]["namespace"] == "serving"
    (ref,) = body["metadata"]["ownerReferences"]
    assert ref["kind"] == "DeepSeekDeployment" and ref["uid"] == "uid-1" and ref["controller"]
    assert owned(body, "uid-1") and not owned(body, "uid-2")
    assert not owned({"metadata": {"name": "r1"}}, "uid-1")  # made by someone else
    assert published_endpoints(body) == [rec("us-east", 100, ["10.0.0.1"])]
    assert published_endpoints(None) is None


def external_dns_crd() -> dict[str, Any]:
    """external-dns's own DNSEndpoint CRD, fetched from its Go module by
    scripts/fetch-external-dns-crd.sh (make tools)."""
    cache = Path(os.environ.get("DEEPSEEK_CACHE", Path.home() / ".cache" / "deepseek-operator"))
    f = cache / "external-dns-crd" / "current" / "dnsendpoints.externaldns.k8s.io.yaml"
    if not f.exists():
        msg = f"no external-dns CRD at {f}: run scripts/fetch-external-dns-crd.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return dict(yaml.safe_load(f.read_text()))


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown properties refused: the API server would silently prune
    them (a misspelt field would vanish), so the body must not rely on any."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@pytest.mark.parametrize("case", [c for c in CASES if c[4]], ids=[c[0] for c in CASES if c[4]])
def test_the_dns_endpoint_passes_the_real_crd_schema(case: tuple[Any, ...]) -> None:
    crd = external_dns_crd()
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    assert crd["spec"]["group"] == "externaldns.k8s.io" and crd["spec"]["names"]["kind"] == (
        "DNSEndpoint"
    )
    schema = _strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"]["additionalProperties"] = True
    d = decide(case[1], case[2], case[3])
    assert d.endpoints is not None
    jsonschema.Draft4Validator(schema).validate(dns_endpoint("r1", "ns", "u", d.endpoints))


def test_problems_to_act_on_name_the_crd_and_the_way_out() -> None:
    missing = crd_missing_message()
    assert "dnsendpoints.externaldns.k8s.io CRD is not installed" in missing
    assert "config/crd/standard/dnsendpoints.externaldns.k8s.io.yaml" in missing
    assert "left alone" in not_owned_message("r1") and "DNSEndpoint r1" in not_owned_message("r1")
    assert NEEDS_ACTION == (CRD_MISSING, NOT_OWNED, WRITE_FAILED)
    assert NO_REGION_IN_ROTATION not in NEEDS_ACTION  # RegionUnhealthy Events say it already
