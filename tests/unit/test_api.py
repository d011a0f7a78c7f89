"""The DeepSeekDeployment models, the generated CRD, and the examples."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from deepseek_operator.api import DeepSeekDeployment, DeepSeekDeploymentSpec
from deepseek_operator.api.crd import crd, crd_yaml
from deepseek_operator.api.resource import validation_message
from pydantic import ValidationError

from .crdcheck import validate

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "deepseekdeployments.serving.deepseek.dev.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def manifest(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model": {"checkpoint": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"}}
    base.update(spec)
    return {
        "apiVersion": "serving.deepseek.dev/v1alpha1",
        "kind": "DeepSeekDeployment",
        "metadata": {"name": "t", "namespace": "default"},
        "spec": base,
    }


def test_checked_in_crd_matches_models() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), "CRD drift: run `make crd` and commit the result"


def test_cli_prints_the_checked_in_crd() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "deepseek_operator", "crd"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == CRD_FILE.read_text()


def test_crd_identity_and_subresources() -> None:
    c = crd()
    spec = c["spec"]
    assert c["metadata"]["name"] == "deepseekdeployments.serving.deepseek.dev"
    assert spec["group"] == "serving.deepseek.dev" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "DeepSeekDeployment"
    assert spec["names"]["shortNames"] == ["dsd"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert "status" in version["subresources"]
    cols = [col["name"] for col in version["additionalPrinterColumns"]]
    assert cols == ["Model", "Mode", "Ready", "Desired", "Active", "Phase", "Age"]


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict) and "type" in node:
        out.append((path, node))
        for name, child in (node.get("properties") or {}).items():
            out += _walk(child, f"{path}.{name}")
        if "items" in node:
            out += _walk(node["items"], f"{path}[]")
    return out


def test_schema_is_structural_and_described() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema["properties"]["spec"], "spec"):
        assert not {"$ref", "anyOf", "allOf", "oneOf", "title"} & node.keys(), path
        assert node["type"] in {"object", "array", "string", "integer", "number", "boolean"}, path
    # kubectl explain shows these: every spec field a user sets has a description
    undocumented = [
        p
        for p, n in _walk(schema["properties"]["spec"], "spec")
        if "description" not in n
        and not p.endswith("[]")
        and not p.startswith("spec.placement.tolerations")
        and not p.startswith("spec.regions[].kubeconfigSecretRef")
    ]
    assert undocumented == []


def test_minimal_spec_gets_documented_defaults() -> None:
    dsd = DeepSeekDeployment.from_k8s(manifest())
    s = dsd.spec
    assert s.replicas is None and s.desired_replicas() == 1
    assert (s.scaling.min_replicas, s.scaling.max_replicas, s.scaling.enabled) == (1, 4, True)
    assert s.scaling.scale_down.stabilization_seconds is None  # the start time's, <= 300 s
    assert s.scaling.scale_up.stabilization_seconds == 0
    assert [r.name for r in s.quantization.ladder] == ["bf16", "fp8", "fp8-kv8"]
    assert s.quantization.current().name == "bf16"
    assert s.rollout.strategy == "BlueGreen" and s.rollout.auto_promote
    assert s.placement.tolerations[0].key == "nvidia.com/gpu"
    assert s.placement.node_not_ready_toleration_seconds is None
    assert s.engine.image == "ghcr.io/deepseek-operator/deepseek-engine:v0.32.0"
    assert dsd.served_name() == "t"


def test_api_server_defaults_equal_model_defaults() -> None:
    """What the API server stores after defaulting parses to the same spec as the raw
    manifest: CRD defaults and pydantic defaults cannot drift apart."""
    raw = manifest()
    defaulted, errors = validate(raw)
    assert errors == []
    a = DeepSeekDeploymentSpec.model_validate(raw["spec"])
    b = DeepSeekDeploymentSpec.model_validate(defaulted["spec"])
    assert a == b
    # and the stored object carries every default explicitly
    assert defaulted["spec"]["scaling"]["slo"]["ttftP99Seconds"] == 2.0
    assert defaulted["spec"]["quantization"]["ladder"][2]["kvCacheDtype"] == "fp8"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_crd_and_models(path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    defaulted, errors = validate(obj)
    assert errors == []
    dsd = DeepSeekDeployment.from_k8s(defaulted)
    assert DeepSeekDeployment.from_k8s(obj).spec == dsd.spec


def test_examples_cover_r1_and_a_distill() -> None:
    specs = {
        p.name: DeepSeekDeployment.from_k8s(yaml.safe_load(p.read_text())).spec for p in EXAMPLES
    }
    r1 = specs["deepseek-r1.yaml"]
    assert r1.gpus_per_replica() == 8 and r1.quantization.current().weights == "fp8"
    assert "671" not in r1.model.checkpoint  # the id is DeepSeek-R1; size lives in the docs
    distill = specs["deepseek-r1-distill-7b.yaml"]
    assert distill.gpus_per_replica() == 1


def _set(spec: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    node = spec
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return spec


_HF = {"name": "hf-token", "key": "token"}
_POD_IP = {"fieldPath": "status.podIP"}

INVALID = [
    # (case, changes to spec, field the API server must name, words of the message)
    (
        "unknown architecture",
        {"model.architecture": "Sparse"},
        "spec.model.architecture",
        "is not one of ['MoE', 'Dense']",
    ),
    (
        "min above max",
        {"scaling.minReplicas": 5, "scaling.maxReplicas": 2},
        "spec.scaling.minReplicas",
        "minReplicas must be less than or equal to scaling.maxReplicas",
    ),
    ("unknown mode", {"quantization.mode": "fp4"}, "spec.quantization.mode", "must name a rung"),
    (
        "unknown lowest rung",
        {"quantization.policy": {"automatic": True, "lowestRung": "fp4"}},
        "spec.quantization.policy.lowestRung",
        "must name a rung",
    ),
    (
        "unknown weights",
        {"quantization.ladder": [{"name": "x", "weights": "fp4"}]},
        "spec.quantization.ladder.0.weights",
        "is not one of",
    ),
    (
        "zero gpus",
        {"resources.gpusPerReplica": 0},
        "spec.resources.gpusPerReplica",
        "less than the minimum",
    ),
    (
        "negative ttft slo",
        {"scaling.slo.ttftP99Seconds": -1},
        "spec.scaling.slo.ttftP99Seconds",
        "minimum",
    ),
    (
        "zero tpot slo",
        {"scaling.slo.tpotP99Seconds": 0},
        "spec.scaling.slo.tpotP99Seconds",
        "minimum",
    ),
    (
        "error rate above 1",
        {"scaling.slo.maxErrorRate": 1.5},
        "spec.scaling.slo.maxErrorRate",
        "maximum",
    ),
    (
        "replicas above max",
        {"replicas": 9, "scaling.maxReplicas": 4},
        "spec.replicas",
        "between scaling.minReplicas and scaling.maxReplicas",
    ),
    (
        "zero min without scaleToZero",
        {"scaling.minReplicas": 0},
        "spec.scaling.minReplicas",
        "may be 0 only with scaling.scaleToZero",
    ),
    (
        "duplicate rungs",
        {
            "quantization.ladder": [
                {"name": "a", "weights": "fp8"},
                {"name": "a", "weights": "bf16"},
            ]
        },
        "spec.quantization.ladder",
        "must be unique",
    ),
    (
        "int4 without checkpoint",
        {"quantization.ladder": [{"name": "q", "weights": "int4"}]},
        "spec.quantization.ladder[0]",
        "int4 rung needs a pre-quantized checkpoint",
    ),
    (
        "gpus not multiple of pp",
        {"resources.gpusPerReplica": 8, "engine.pipelineParallelSize": 3},
        "spec.engine.pipelineParallelSize",
        "multiple of engine.pipelineParallelSize",
    ),
    (
        "two primaries",
        {"regions": [{"name": "a"}, {"name": "b"}]},
        "spec.regions",
        "exactly one primary",
    ),
    (
        "cache with both sources",
        {"model.cache": {"persistentVolumeClaim": "w", "hostPath": "/m"}},
        "spec.model.cache",
        "exactly one of",
    ),
    (
        "unknown scheduling policy",
        {"engine.schedulingPolicy": "lifo"},
        "spec.engine.schedulingPolicy",
        "is not one of",
    ),
    (
        "gpu memory utilization 1",
        {"engine.gpuMemoryUtilization": 1.0},
        "spec.engine.gpuMemoryUtilization",
        "maximum",
    ),
    (
        "monitoring label key with a space",
        {"monitoring.labels": {"re lease": "x"}},
        "spec.monitoring.labels",
        "must be Kubernetes label keys",
    ),
    (
        "monitoring label value too long",
        {"monitoring.labels": {"release": "x" * 64}},
        "spec.monitoring.labels.release",
        "too long",
    ),
    (
        "monitoring label value with a slash",
        {"monitoring.labels": {"release": "a/b"}},
        "spec.monitoring.labels.release",
        "does not match",
    ),
    (
        "unknown kv cache dtype",
        {"quantization.ladder": [{"name": "a", "weights": "bf16", "kvCacheDtype": "int2"}]},
        "spec.quantization.ladder.0.kvCacheDtype",
        "is not one of",
    ),
    (
        "env with value and valueFrom",
        {"engine.env": [{"name": "HF_TOKEN", "value": "x", "valueFrom": {"fieldRef": _POD_IP}}]},
        "spec.engine.env[0]",
        "set exactly one of engine.env[].value and engine.env[].valueFrom",
    ),
    (
        "env with neither value nor valueFrom",
        {"engine.env": [{"name": "HF_TOKEN"}]},
        "spec.engine.env[0]",
        "set exactly one of engine.env[].value and engine.env[].valueFrom",
    ),
    (
        "valueFrom with two sources",
        {"engine.env": [{"name": "A", "valueFrom": {"secretKeyRef": _HF, "fieldRef": _POD_IP}}]},
        "spec.engine.env[0].valueFrom",
        "set exactly one of engine.env[].valueFrom.secretKeyRef, configMapKeyRef and fieldRef",
    ),
    (
        "valueFrom with no source",
        {"engine.env": [{"name": "A", "valueFrom": {}}]},
        "spec.engine.env[0].valueFrom",
        "set exactly one of engine.env[].valueFrom.secretKeyRef",
    ),
    (
        "secret name not a DNS subdomain",
        {"engine.env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "HF", "key": "t"}}}]},
        "spec.engine.env.0.valueFrom.secretKeyRef.name",
        "does not match",
    ),
    (
        "secret key with a slash",
        {"engine.env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "h", "key": "a/b"}}}]},
        "spec.engine.env.0.valueFrom.secretKeyRef.key",
        "does not match",
    ),
    (
        "configMap key missing",
        {"engine.env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c"}}}]},
        "spec.engine.env.0.valueFrom.configMapKeyRef",
        "'key' is a required property",
    ),
    (
        "fieldRef to a field pods do not expose",
        {"engine.env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.volumes"}}}]},
        "spec.engine.env.0.valueFrom.fieldRef.fieldPath",
        "does not match",
    ),
    (
        "duplicate env names",
        {"engine.env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
        "spec.engine.env",
        "engine.env names must be unique",
    ),
    (
        "duplicate image pull secrets",
        {"engine.imagePullSecrets": [{"name": "reg"}, {"name": "reg"}]},
        "spec.engine.imagePullSecrets",
        "engine.imagePullSecrets names must be unique",
    ),
    (
        "image pull secret without a name",
        {"engine.imagePullSecrets": [{}]},
        "spec.engine.imagePullSecrets.0",
        "'name' is a required property",
    ),
    (
        "service account not a DNS subdomain",
        {"engine.serviceAccountName": "Engine_SA"},
        "spec.engine.serviceAccountName",
        "does not match",
    ),
    (
        "runtime class name too long",
        {"engine.runtimeClassName": "n" * 254},
        "spec.engine.runtimeClassName",
        "is too long",
    ),
    (
        "failover.dns without dnsTargets in a region",
        {
            "regions": [{"name": "us-east", "dnsTargets": ["10.0.0.1"]}, {"name": "eu-west"}],
            "failover.dns": {"hostname": "deepseek.example.com"},
        },
        "spec.regions",
        "failover.dns needs regions[].dnsTargets in every region",
    ),
    (
        "failover.dns without regions",
        {"failover.dns": {"hostname": "deepseek.example.com"}},
        "spec.regions",
        "failover.dns needs regions[].dnsTargets in every region",
    ),
    (
        "dnsTargets mixing an address and a hostname",
        {"regions": [{"name": "us-east", "dnsTargets": ["10.0.0.1", "lb.example.com"]}]},
        "spec.regions[0].dnsTargets",
        "must be IP addresses (A/AAAA records) or one hostname (a CNAME), not both",
    ),
    (
        "dnsTargets with two hostnames",
        {"regions": [{"name": "us-east", "dnsTargets": ["a.example.com", "b.example.com"]}]},
        "spec.regions[0].dnsTargets",
        "must be IP addresses (A/AAAA records) or one hostname (a CNAME), not both",
    ),
    (
        "a CNAME region and an address region under one hostname",
        {
            "regions": [
                {"name": "us-east", "dnsTargets": ["lb.example.com"]},
                {"name": "eu-west", "dnsTargets": ["10.1.0.1"]},
            ],
            "failover.dns": {"hostname": "deepseek.example.com"},
        },
        "spec.regions",
        "must be addresses in every region or hostnames in every region",
    ),
    (
        "dns target that is no hostname",
        {"regions": [{"name": "us-east", "dnsTargets": ["lb_1.example.com"]}]},
        "spec.regions.0.dnsTargets.0",
        "does not match",
    ),
    (
        "dns hostname with upper case",
        {
            "regions": [{"name": "us-east", "dnsTargets": ["10.0.0.1"]}],
            "failover.dns": {"hostname": "DeepSeek.example.com"},
        },
        "spec.failover.dns.hostname",
        "does not match",
    ),
    (
        "dns weight property with a space",
        {
            "regions": [{"name": "us-east", "dnsTargets": ["10.0.0.1"]}],
            "failover.dns": {"hostname": "deepseek.example.com", "weightProperty": "aws weight"},
        },
        "spec.failover.dns.weightProperty",
        "does not match",
    ),
    (
        "dns ttl of 0",
        {
            "regions": [{"name": "us-east", "dnsTargets": ["10.0.0.1"]}],
            "failover.dns": {"hostname": "deepseek.example.com", "ttlSeconds": 0},
        },
        "spec.failover.dns.ttlSeconds",
        "less than the minimum",
    ),
    (
        "priority class with a space",
        {"placement.priorityClassName": "gpu serving"},
        "spec.placement.priorityClassName",
        "does not match",
    ),
    (
        "negative node-failure toleration",
        {"placement.nodeNotReadyTolerationSeconds": -1},
        "spec.placement.nodeNotReadyTolerationSeconds",
        "less than the minimum",
    ),
    (
        "node-failure toleration over a day",
        {"placement.nodeNotReadyTolerationSeconds": 86401},
        "spec.placement.nodeNotReadyTolerationSeconds",
        "greater than the maximum",
    ),
    # spec.router: the flags vllm-router would refuse or misread never reach it
    ("no router replica", {"router.replicas": 0}, "spec.router.replicas", "less than the minimum"),
    (
        "router policy the operator does not wire",
        {"router.policy": "kv_aware"},
        "spec.router.policy",
        "is not one of",
    ),
    (
        "router retries below 0",
        {"router.retries.maxRetries": -1},
        "spec.router.retries.maxRetries",
        "less than the minimum",
    ),
    (
        "router backoff starting above its cap",
        {"router.retries": {"initialBackoffMs": 5000, "maxBackoffMs": 1000}},
        "spec.router.retries.initialBackoffMs",
        "at most router.retries.maxBackoffMs",
    ),
    (
        "router jitter above 1",
        {"router.retries.jitterFactor": 1.5},
        "spec.router.retries.jitterFactor",
        "greater than the maximum",
    ),
    (
        "router circuit opening at 0 failures",
        {"router.circuitBreaker.failureThreshold": 0},
        "spec.router.circuitBreaker.failureThreshold",
        "less than the minimum",
    ),
    (
        "router health check slower than its interval",
        {"router.healthCheck": {"intervalSeconds": 5, "timeoutSeconds": 10}},
        "spec.router.healthCheck.timeoutSeconds",
        "at most intervalSeconds",
    ),
    (
        "router health endpoint not a path",
        {"router.healthCheck.endpoint": "health"},
        "spec.router.healthCheck.endpoint",
        "does not match",
    ),
    (
        "router metrics on its HTTP port",
        {"router.port": 9000, "router.metricsPort": 9000},
        "spec.router.metricsPort",
        "must differ",
    ),
    (
        "router port below 1024",
        {"router.port": 80},
        "spec.router.port",
        "less than the minimum",
    ),
    (
        "router admitting nothing",
        {"router.maxConcurrentRequests": 0},
        "spec.router.maxConcurrentRequests",
        "less than the minimum",
    ),
    (
        "negative router queue",
        {"router.queueSize": -1},
        "spec.router.queueSize",
        "less than the minimum",
    ),
    (
        "router rate limit of 0",
        {"router.rateLimitTokensPerSecond": 0},
        "spec.router.rateLimitTokensPerSecond",
        "less than the minimum",
    ),
    (
        "router memory not a quantity",
        {"router.resources.memory": "lots"},
        "spec.router.resources.memory",
        "does not match",
    ),
    (
        "duplicate router pull secrets",
        {"router.imagePullSecrets": [{"name": "reg"}, {"name": "reg"}]},
        "spec.router.imagePullSecrets",
        "names must be unique",
    ),
]


@pytest.mark.parametrize(
    ("changes", "field", "words"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_specs_are_rejected_by_schema_and_models(
    changes: dict[str, Any], field: str, words: str
) -> None:
    obj = manifest()
    for dotted, value in changes.items():
        obj["spec"] = _set(obj["spec"], dotted, value)
    _, errors = validate(obj)
    assert errors, "the CRD schema accepted an invalid spec"
    assert any(e.startswith(field) for e in errors), errors
    assert any(words in e for e in errors), errors
    with pytest.raises(ValidationError):
        DeepSeekDeployment.from_k8s(obj)


def test_failover_dns_is_accepted_with_targets_in_every_region() -> None:
    regions = [
        {"name": "us-east", "dnsTargets": ["10.0.0.1", "2001:db8::1"]},
        {"name": "eu-west", "role": "standby", "weight": 0, "dnsTargets": ["10.1.0.1"]},
    ]
    obj = manifest(regions=regions, failover={"dns": {"hostname": "deepseek.example.com"}})
    defaulted, errors = validate(obj)
    assert errors == []
    assert defaulted["spec"]["failover"]["dns"] == {
        "hostname": "deepseek.example.com",
        "ttlSeconds": 30,
        "weightProperty": "aws/weight",
        "selfFencing": False,
    }
    dns = DeepSeekDeployment.from_k8s(obj).spec.failover.dns
    assert dns is not None and (dns.ttl_seconds, dns.weight_property) == (30, "aws/weight")
    assert DeepSeekDeployment.from_k8s(manifest()).spec.failover.dns is None  # optional


def test_an_ipv6_target_the_schema_cannot_check_names_its_field_in_invalid_spec() -> None:
    obj = manifest(regions=[{"name": "us-east", "dnsTargets": ["1::2::3"]}])
    with pytest.raises(ValidationError) as e:
        DeepSeekDeployment.from_k8s(obj)
    msg = validation_message(e.value)
    assert "spec.regions" in msg and "'1::2::3' is neither an IP address nor a hostname" in msg


def test_unknown_field_is_an_error_for_the_models() -> None:
    obj = manifest(scalng={"maxReplicas": 3})
    with pytest.raises(ValidationError, match="scalng"):
        DeepSeekDeployment.from_k8s(obj)


def test_gpus_per_replica_follows_the_current_rung() -> None:
    spec = DeepSeekDeploymentSpec.model_validate(
        {
            "model": {"checkpoint": "m"},
            "resources": {"gpusPerReplica": 8},
            "quantization": {
                "mode": "int4",
                "ladder": [
                    {"name": "fp8", "weights": "fp8"},
                    {"name": "int4", "weights": "int4", "checkpoint": "m-awq", "gpusPerReplica": 4},
                ],
            },
        }
    )
    assert spec.gpus_per_replica() == 4


ARCHITECTURE_TABLE = [
    # (model.checkpoint, model.architecture, a mixture of experts?)
    ("deepseek-ai/DeepSeek-R1", None, True),
    ("deepseek-ai/DeepSeek-V3-0324", None, True),
    ("deepseek-ai/DeepSeek-V3.1", None, True),
    ("deepseek-ai/DeepSeek-V2.5", None, True),
    ("deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct", None, True),
    ("cognitivecomputations/DeepSeek-R1-AWQ", None, True),  # an int4 export of R1
    ("/models/DeepSeek-R1/", None, True),  # a path inside the model cache
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", None, False),
    ("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", None, False),
    ("deepseek-ai/deepseek-llm-7b-chat", None, False),
    ("Qwen/Qwen2.5-7B-Instruct", None, False),
    ("my-org/r1-finetune", None, False),  # an unknown name: dense, the cautious reading
    ("my-org/r1-finetune", "MoE", True),  # unless the owner says
    ("deepseek-ai/DeepSeek-R1", "Dense", False),
]


@pytest.mark.parametrize(("checkpoint", "architecture", "moe"), ARCHITECTURE_TABLE)
def test_a_model_is_a_mixture_of_experts_by_its_architecture_or_its_name(
    checkpoint: str, architecture: str | None, moe: bool
) -> None:
    model: dict[str, Any] = {"checkpoint": checkpoint}
    if architecture is not None:
        model["architecture"] = architecture
    obj = manifest(model=model)
    _, errors = validate(obj)
    assert errors == []
    assert DeepSeekDeployment.from_k8s(obj).spec.model.is_moe() is moe


def test_unknown_status_fields_are_dropped_unknown_spec_fields_are_not() -> None:
    """A status written by a newer operator (before a rollback) does not stop this one from
    reconciling; the spec stays strict."""
    obj = manifest()
    obj["status"] = {
        "phase": "Ready",
        "activeColour": "green",
        "scaling": {"recommendations": [], "demand": 3.5},
        "newerField": {"x": 1},
    }
    before = copy.deepcopy(obj)
    dsd = DeepSeekDeployment.from_k8s(obj)
    assert dsd.status.active_colour == "green"  # what the operator does know is kept
    assert obj == before  # the caller's object is not changed
    bad = manifest()
    bad["spec"]["unknownField"] = 1
    bad["status"] = {"newerField": 1}
    with pytest.raises(ValidationError):
        DeepSeekDeployment.from_k8s(bad)


def test_a_season_profile_with_unseen_bins_is_a_valid_status() -> None:
    """The planner's profile keeps null for a bin it has not seen yet; the API server must accept
    the status the operator writes (it rejected every null item, and no decision was stored)."""
    from deepseek_operator.api.status import DeepSeekDeploymentStatus

    status = DeepSeekDeploymentStatus.model_validate(
        {
            "phase": "Ready",
            "scaling": {
                "load": {"season": {"period": 86400, "since": 1.0, "bins": [None, 2.5, None]}}
            },
        }
    ).to_k8s()
    assert status["scaling"]["load"]["season"]["bins"] == [None, 2.5, None]
    obj = manifest()
    obj["status"] = status
    _, errors = validate(obj)
    assert errors == []
    obj["status"]["scaling"]["load"]["season"]["bins"] = ["many"]
    assert validate(obj)[1], "a bin that is not a number or null is still refused"


ENGINE_POD_SETTINGS = [
    # (case, spec.engine: accepted by the CRD and the models)
    ("secret key", {"env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": _HF}}]}),
    (
        "optional secret key, dotted names",
        {
            "env": [
                {
                    "name": "HF_TOKEN",
                    "valueFrom": {
                        "secretKeyRef": {"name": "hf.token", "key": ".hf_token-1", "optional": True}
                    },
                }
            ]
        },
    ),
    (
        "configMap key",
        {
            "env": [
                {"name": "NCCL_IB_HCA", "valueFrom": {"configMapKeyRef": {"name": "n", "key": "k"}}}
            ]
        },
    ),
    ("pod IP", {"env": [{"name": "VLLM_HOST_IP", "valueFrom": {"fieldRef": _POD_IP}}]}),
    (
        "pod label",
        {
            "env": [
                {
                    "name": "COLOUR",
                    "valueFrom": {
                        "fieldRef": {"fieldPath": "metadata.labels['serving.deepseek.dev/colour']"}
                    },
                }
            ]
        },
    ),
    ("empty literal value", {"env": [{"name": "EMPTY", "value": ""}]}),
    (
        "pod settings",
        {
            "imagePullSecrets": [{"name": "ghcr-pull"}, {"name": "mirror.pull"}],
            "serviceAccountName": "deepseek-engine",
            "runtimeClassName": "nvidia",
        },
    ),
]


@pytest.mark.parametrize(
    "engine", [c[1] for c in ENGINE_POD_SETTINGS], ids=[c[0] for c in ENGINE_POD_SETTINGS]
)
def test_engine_pod_settings_are_accepted_by_schema_and_models(engine: dict[str, Any]) -> None:
    obj = manifest(engine=engine, placement={"priorityClassName": "gpu-serving"})
    defaulted, errors = validate(obj)
    assert errors == []
    spec = DeepSeekDeployment.from_k8s(defaulted).spec
    assert spec.engine.to_k8s() | engine == spec.engine.to_k8s()  # kept as written


_ENGINE_POD_INVALID = [
    c
    for c in INVALID
    if any(w in c[2] for w in ("engine.env", "imagePull", "ClassName", "Account"))
]


@pytest.mark.parametrize(
    ("changes", "field"),
    [(c[1], c[2]) for c in _ENGINE_POD_INVALID],
    ids=[c[0] for c in _ENGINE_POD_INVALID],
)
def test_invalid_engine_pod_settings_name_their_field_in_invalid_spec(
    changes: dict[str, Any], field: str
) -> None:
    """Where the CRD is older than the operator, the models refuse what the API server let
    through; the InvalidSpec message (handlers._invalid_by_schema) names the same field."""
    obj = manifest()
    for dotted, value in changes.items():
        obj["spec"] = _set(obj["spec"], dotted, value)
    with pytest.raises(ValidationError) as err:
        DeepSeekDeployment.from_k8s(obj)
    named = field.removeprefix("spec.").replace("[", ".").replace("]", "")
    assert named in validation_message(err.value), validation_message(err.value)


SECRET = "hf_Zq8vT3sEcReTtOkEnNeVeRpRiNtEd"
LEAKS = [
    # (case, spec changes besides the plain env value holding SECRET, field the message names)
    ("replicas out of range (a rule on the whole spec)", {"replicas": 9}, "spec"),
    ("bad pull policy elsewhere", {"engine.imagePullPolicy": "Sometimes"}, "spec.engine"),
    ("an unknown field elsewhere", {"engine.imagePullSecret": [{"name": "x"}]}, "spec.engine"),
    (
        "a duplicate of the secret's entry (a rule on engine)",
        {
            "engine.env": [
                {"name": "HF_TOKEN", "value": SECRET},
                {"name": "HF_TOKEN", "value": SECRET},
            ]
        },
        "spec.engine",
    ),
    (
        "the secret's own entry also has valueFrom",
        {"engine.env": [{"name": "HF_TOKEN", "value": SECRET, "valueFrom": {"fieldRef": _POD_IP}}]},
        "spec.engine.env.0",
    ),
    (
        "the secret's own entry has a bad name",
        {"engine.env": [{"name": "HF TOKEN", "value": SECRET}]},
        "spec.engine.env.0.name",
    ),
    (
        "the secret is too long",
        {"engine.env": [{"name": "HF_TOKEN", "value": SECRET * 200}]},
        "spec.engine.env.0.value",
    ),
]


@pytest.mark.parametrize(("changes", "field"), [c[1:] for c in LEAKS], ids=[c[0] for c in LEAKS])
def test_invalid_spec_message_never_echoes_an_env_value(
    changes: dict[str, Any], field: str
) -> None:
    """A token written as a plain engine.env[].value stays out of the InvalidSpec condition and
    its Event (handlers._invalid_by_schema) whatever else is wrong: pydantic's own text of the
    error (str(err)) carries the input, for a rule on a whole object the whole object."""
    obj = manifest(
        engine={"env": [{"name": "HF_TOKEN", "value": SECRET}]}, scaling={"maxReplicas": 4}
    )
    for dotted, value in changes.items():
        obj["spec"] = _set(obj["spec"], dotted, value)
    with pytest.raises(ValidationError) as err:
        DeepSeekDeployment.from_k8s(obj)
    message = validation_message(err.value)
    assert message.startswith(field), message
    assert SECRET[:12] not in message


def test_pydantic_own_error_text_would_echo_the_value() -> None:
    """Why validation_message exists: pydantic's str(err) shows (the start of) the input."""
    entry = {"name": "HF_TOKEN", "value": SECRET * 200}
    with pytest.raises(ValidationError) as err:
        DeepSeekDeployment.from_k8s(manifest(engine={"env": [entry]}))
    assert SECRET[:12] in str(err.value)
    assert SECRET[:12] not in validation_message(err.value)
    ok = DeepSeekDeployment.from_k8s(manifest(engine={"env": [{"name": "T", "value": SECRET}]}))
    assert SECRET not in repr(ok) and SECRET not in str(ok.spec.engine)
