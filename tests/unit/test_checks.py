"""Spec problems only the cluster reveals: they stop the reconcile and name the field."""

from __future__ import annotations

from typing import Any

import pytest
from deepseek_operator.api import DeepSeekDeployment
from deepseek_operator.checks import ClusterFacts, GpuNode, spec_problems

NODES = (
    GpuNode("h100-a", "NVIDIA-H100-80GB-HBM3", "z-a", 8),
    GpuNode("h100-b", "NVIDIA-H100-80GB-HBM3", "z-b", 8),
    GpuNode("h200-c", "NVIDIA-H200", "z-c", 8),
)
FACTS = ClusterFacts(gpu_nodes=NODES, pvcs=frozenset({"weights"}))


def dsd(**spec: Any) -> DeepSeekDeployment:
    body: dict[str, Any] = {"model": {"checkpoint": "m"}}
    body.update(spec)
    return DeepSeekDeployment.from_k8s({"metadata": {"name": "x", "namespace": "ns"}, "spec": body})


CASES = [
    # (case, spec, facts, [(field, reason)])
    ("fits", {"resources": {"gpusPerReplica": 8, "gpuProduct": "NVIDIA-H200"}}, FACTS, []),
    ("any product", {"resources": {"gpusPerReplica": 8}}, FACTS, []),
    (
        "unknown product",
        {"resources": {"gpuProduct": "NVIDIA-B200"}},
        FACTS,
        [("spec.resources.gpuProduct", "UnknownGPUProduct")],
    ),
    (
        "too many gpus",
        {"resources": {"gpusPerReplica": 16}},
        FACTS,
        [("spec.resources.gpusPerReplica", "GPUsPerReplicaExceedNode")],
    ),
    (
        "rung asks too many",
        {
            "resources": {"gpusPerReplica": 8},
            "quantization": {
                "mode": "big",
                "ladder": [{"name": "big", "weights": "bf16", "gpusPerReplica": 16}],
            },
        },
        FACTS,
        [("spec.quantization.ladder[0].gpusPerReplica", "GPUsPerReplicaExceedNode")],
    ),
    (
        "no gpu nodes",
        {},
        ClusterFacts(),
        [("spec.resources.gpusPerReplica", "GPUsPerReplicaExceedNode")],
    ),
    (
        "missing pvc",
        {"model": {"checkpoint": "m", "cache": {"persistentVolumeClaim": "nope"}}},
        FACTS,
        [("spec.model.cache.persistentVolumeClaim", "ModelCacheNotFound")],
    ),
    (
        "present pvc",
        {"model": {"checkpoint": "m", "cache": {"persistentVolumeClaim": "weights"}}},
        FACTS,
        [],
    ),
    (
        "unknown zone",
        {"placement": {"zones": ["z-a", "z-q"]}},
        FACTS,
        [("spec.placement.zones", "UnknownZone")],
    ),
    (
        "zone without that product",
        {"resources": {"gpuProduct": "NVIDIA-H200"}, "placement": {"zones": ["z-a"]}},
        FACTS,
        [("spec.resources.gpusPerReplica", "GPUsPerReplicaExceedNode")],
    ),
]


@pytest.mark.parametrize(
    ("spec", "facts", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_spec_problems(
    spec: dict[str, Any], facts: ClusterFacts, expected: list[tuple[str, str]]
) -> None:
    got = [(p.field, p.reason) for p in spec_problems(dsd(**spec), facts)]
    assert got == expected


def test_messages_say_what_to_do() -> None:
    (p,) = spec_problems(dsd(resources={"gpuProduct": "NVIDIA-B200"}), FACTS)
    assert "NVIDIA-H100-80GB-HBM3" in p.message and "NVIDIA-H200" in p.message
    (p,) = spec_problems(
        dsd(model={"checkpoint": "m", "cache": {"persistentVolumeClaim": "nope"}}), FACTS
    )
    assert "ns/nope" in p.message and "never creates or deletes" in p.message
