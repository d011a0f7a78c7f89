"""Node layout and addressing of a local cluster: pure data and functions, no I/O.

Addressing: every address the cluster hands out is a 10.0.0.0/8 address, and the same address
with its first octet replaced by 127 is where this machine serves it. Pod and node IPs have to be
ordinary unicast addresses because EndpointSlice (and Endpoints) validation rejects loopback
addresses ("may not be in the loopback range"), so a pod with a 127.x IP could never back a
Service. 127.0.0.0/8 is local on Linux, so any 127.a.b.c can be bound without privileges:
a simulated engine of a pod with IP 10.16.3.7 listens on 127.16.3.7:8000, the DCGM exporter of a
node with InternalIP 10.16.0.4 on 127.16.0.4:9400, and Prometheus (relabeling) and the router
apply the same mapping.

Per cluster with network octet N (us-east 16, eu-west 32):
    node k (1-based) InternalIP   10.N.0.k
    node k pod CIDR               10.N.k.0/24    (kwok hands out pod IPs from it)
    Service cluster IPs           10.(N+1).0.0/16
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from deepseek_operator import labels

REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB per GPU, as NVIDIA's GPU feature discovery
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
# Marks the nodes this tooling created (and may delete when the layout shrinks).
MANAGED_NODE_LABEL = "sim.deepseek.dev/node"

H100 = "NVIDIA-H100-80GB-HBM3"
H200 = "NVIDIA-H200"
# Memory per GPU in MiB, as nvidia-smi reports it (H100 SXM 80 GB HBM3, H200 141 GB HBM3e).
GPU_MEMORY_MIB = {H100: 81559, H200: 143771}
_SHORT = {H100: "h100", H200: "h200"}

DCGM_PORT = 9400
ENGINE_PORT = 8000


@dataclass(frozen=True)
class NodeSpec:
    """One simulated node. `gpu_product=None` makes a CPU node (no GPUs, no GPU taint)."""

    name: str
    zone: str
    gpu_product: str | None = None
    gpus: int = 8
    cpu: str = "192"
    memory: str = "2048Gi"
    pods: int = 110
    ephemeral_storage: str = "30Ti"
    extra_labels: dict[str, str] = field(default_factory=dict)

    @property
    def is_gpu(self) -> bool:
        return self.gpu_product is not None


def zones(region: str) -> list[str]:
    """The three zones of a region: `<region>-a`, `-b`, `-c`."""
    return [f"{region}-{s}" for s in "abc"]


def default_node_layout(
    region: str,
    *,
    h100_per_zone: int = 2,
    h200_per_zone: int = 1,
    cpu_nodes: int = 2,
) -> list[NodeSpec]:
    """GPU nodes in three zones (by default 2 H100 + 1 H200 nodes of 8 GPUs per zone) plus CPU
    nodes spread over the zones. Tests that want a smaller cluster pass smaller counts or their
    own list of NodeSpec."""
    nodes: list[NodeSpec] = []
    for zone in zones(region):
        for product, count in ((H100, h100_per_zone), (H200, h200_per_zone)):
            for i in range(1, count + 1):
                nodes.append(
                    NodeSpec(name=f"{zone}-{_SHORT[product]}-{i}", zone=zone, gpu_product=product)
                )
    zs = zones(region)
    for i in range(1, cpu_nodes + 1):
        nodes.append(
            NodeSpec(name=f"{region}-cpu-{i}", zone=zs[(i - 1) % len(zs)], cpu="64", memory="256Gi")
        )
    return nodes


def node_ip(octet: int, index: int) -> str:
    """InternalIP of the index-th node (1-based) of the cluster with network octet `octet`."""
    _check(octet, index)
    return f"10.{octet}.0.{index}"


def pod_cidr(octet: int, index: int) -> str:
    """Pod CIDR of the index-th node (1-based)."""
    _check(octet, index)
    return f"10.{octet}.{index}.0/24"


def service_cidr(octet: int) -> str:
    return f"10.{octet + 1}.0.0/16"


def _check(octet: int, index: int) -> None:
    if not 1 <= octet <= 253:
        raise ValueError(f"network octet {octet} must be in 1..253")
    if not 1 <= index <= 254:
        raise ValueError(f"node index {index} must be in 1..254 (one /24 pod CIDR per node)")


def loopback_address(ip: str) -> str:
    """Where this machine serves a cluster address: 10.a.b.c -> 127.a.b.c.

    Raises ValueError for addresses outside 10.0.0.0/8 (not handed out by a local cluster)."""
    addr = ipaddress.IPv4Address(ip)
    if addr not in ipaddress.IPv4Network("10.0.0.0/8"):
        raise ValueError(f"{ip} is not a local-cluster address (10.0.0.0/8)")
    return "127." + ip.split(".", 1)[1]


def node_manifest(
    spec: NodeSpec, *, region: str, octet: int, index: int, kube_version: str
) -> dict[str, object]:
    """The Node object (with status: nodes may set status on create) for one NodeSpec."""
    lbls = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        REGION_LABEL: region,
        ZONE_LABEL: spec.zone,
        MANAGED_NODE_LABEL: "true",
    }
    capacity: dict[str, str] = {
        "cpu": spec.cpu,
        "memory": spec.memory,
        "pods": str(spec.pods),
        "ephemeral-storage": spec.ephemeral_storage,
    }
    taints: list[dict[str, str]] = []
    if spec.gpu_product is not None:
        lbls |= {
            GPU_PRODUCT_LABEL: spec.gpu_product,
            GPU_COUNT_LABEL: str(spec.gpus),
            GPU_PRESENT_LABEL: "true",
            "node.kubernetes.io/instance-type": f"{_SHORT.get(spec.gpu_product, 'gpu')}"
            f"-{spec.gpus}x",
        }
        if spec.gpu_product in GPU_MEMORY_MIB:
            lbls[GPU_MEMORY_LABEL] = str(GPU_MEMORY_MIB[spec.gpu_product])
        capacity[GPU_RESOURCE] = str(spec.gpus)
        taints.append({"key": GPU_TAINT_KEY, "effect": "NoSchedule"})
    else:
        lbls["node.kubernetes.io/instance-type"] = "cpu"
    lbls |= spec.extra_labels
    cidr = pod_cidr(octet, index)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": lbls,
            "annotations": {
                "kwok.x-k8s.io/node": "fake",
                "node.alpha.kubernetes.io/ttl": "0",
            },
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr], "taints": taints},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "addresses": [
                {"type": "InternalIP", "address": node_ip(octet, index)},
                {"type": "Hostname", "address": spec.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "osImage": "kwok simulated node",
                "kernelVersion": "kwok",
                "containerRuntimeVersion": "kwok://v0.8.0",
                "kubeletVersion": kube_version,
                "kubeProxyVersion": kube_version,
                "bootID": "",
                "machineID": "",
                "systemUUID": "",
            },
        },
    }


def node_manifests(
    nodes: list[NodeSpec], *, region: str, octet: int, kube_version: str
) -> list[dict[str, object]]:
    """Node objects for a layout; node k (1-based, in layout order) gets address k."""
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate node names in layout: {names}")
    return [
        node_manifest(n, region=region, octet=octet, index=i, kube_version=kube_version)
        for i, n in enumerate(nodes, start=1)
    ]


def is_engine_pod(pod_labels: dict[str, str]) -> bool:
    """Whether the simulated fleet plays the container runtime of a pod (see stages.py)."""
    return (
        pod_labels.get(labels.COMPONENT) == labels.ENGINE_COMPONENT
        and labels.DEPLOYMENT in pod_labels
    )
