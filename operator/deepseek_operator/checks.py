"""Spec problems the schema cannot see because they depend on the cluster. Pure.

A problem stops the reconcile before anything is written (no half-applied state); whatever
already serves keeps serving. Each problem names the field to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .api.resource import DeepSeekDeployment


@dataclass(frozen=True)
class GpuNode:
    name: str
    product: str | None
    zone: str | None
    gpus: int  # allocatable nvidia.com/gpu
    schedulable: bool = True


@dataclass(frozen=True)
class ClusterFacts:
    """What the reconcile needs to know about the cluster around a DeepSeekDeployment."""

    gpu_nodes: tuple[GpuNode, ...] = ()
    pvcs: frozenset[str] = field(default_factory=frozenset)  # PVC names in the namespace
    monitoring_crds: bool = False  # PodMonitor and PrometheusRule CRDs installed
    sleep_action: bool = True  # the API server accepts the preStop `sleep` action (1.30+)


@dataclass(frozen=True)
class SpecProblem:
    field: str  # e.g. spec.resources.gpuProduct
    reason: str  # CamelCase, e.g. UnknownGPUProduct
    message: str


def spec_problems(dsd: DeepSeekDeployment, facts: ClusterFacts) -> list[SpecProblem]:
    """Problems that make the spec unservable in this cluster, most fundamental first."""
    spec = dsd.spec
    problems: list[SpecProblem] = []
    rung = spec.quantization.current()
    if rung.gpus_per_replica is not None:
        idx = [r.name for r in spec.quantization.ladder].index(rung.name)
        gpu_field = f"spec.quantization.ladder[{idx}].gpusPerReplica"
    else:
        gpu_field = "spec.resources.gpusPerReplica"
    gpus = spec.gpus_per_replica()

    nodes = list(facts.gpu_nodes)
    product = spec.resources.gpu_product
    if product is not None:
        known = sorted({n.product for n in nodes if n.product})
        if product not in known:
            problems.append(
                SpecProblem(
                    "spec.resources.gpuProduct",
                    "UnknownGPUProduct",
                    f"no node has nvidia.com/gpu.product={product}; products in this cluster: "
                    f"{', '.join(known) or 'none'}",
                )
            )
        nodes = [n for n in nodes if n.product == product]

    zones = set(spec.placement.zones)
    if zones:
        present = {n.zone for n in facts.gpu_nodes if n.zone}
        missing = sorted(zones - present)
        if missing:
            problems.append(
                SpecProblem(
                    "spec.placement.zones",
                    "UnknownZone",
                    f"no GPU node in zone(s) {', '.join(missing)}; GPU zones: "
                    f"{', '.join(sorted(present)) or 'none'}",
                )
            )
        nodes = [n for n in nodes if n.zone in zones]

    if not problems:
        most = max((n.gpus for n in nodes), default=0)
        if gpus > most:
            where = f" with {product}" if product else ""
            problems.append(
                SpecProblem(
                    gpu_field,
                    "GPUsPerReplicaExceedNode",
                    f"a replica needs {gpus} GPUs on one node, but the largest GPU node{where} "
                    f"offers {most}",
                )
            )

    cache = spec.model.cache
    pvc = cache.persistent_volume_claim if cache is not None else None
    if pvc is not None and pvc not in facts.pvcs:
        problems.append(
            SpecProblem(
                "spec.model.cache.persistentVolumeClaim",
                "ModelCacheNotFound",
                f"PersistentVolumeClaim {dsd.namespace}/{pvc} does not exist; create it "
                "(the operator never creates or deletes it)",
            )
        )
    return problems
