"""The local GPU cluster: a real Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler built from Go modules) with kwok-simulated GPU nodes and a
Prometheus per region. Used by `python -m testbed cluster up|down|status`, `make cluster`, the
e2e test fixtures and the demo.

    from testbed.cluster import LocalCluster
    regions = LocalCluster().up()          # {"us-east": RegionInfo, "eu-west": RegionInfo}
    regions["us-east"].kubeconfig          # <repo>/.local/cluster/us-east/kubeconfig
    LocalCluster().down()
"""

from .config import REGIONS, ClusterConfig, Ports, cache_dir, region_configs, repo_root
from .layout import NodeSpec, default_node_layout, loopback_address, zones
from .runner import ClusterError, ComponentStatus, LocalCluster, RegionInfo, RegionStatus

__all__ = [
    "REGIONS",
    "ClusterConfig",
    "ClusterError",
    "ComponentStatus",
    "LocalCluster",
    "NodeSpec",
    "Ports",
    "RegionInfo",
    "RegionStatus",
    "cache_dir",
    "default_node_layout",
    "loopback_address",
    "region_configs",
    "repo_root",
    "zones",
]
