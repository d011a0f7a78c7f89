"""Node layout, addressing and configuration of the local cluster (pure values)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from testbed.cluster import layout as L
from testbed.cluster.config import REGIONS, ClusterConfig, Ports, region_configs


def test_default_layout_spreads_gpu_nodes_over_three_zones_plus_cpu_nodes() -> None:
    nodes = L.default_node_layout("us-east")
    gpu = [n for n in nodes if n.is_gpu]
    assert Counter(n.zone for n in gpu) == {"us-east-a": 3, "us-east-b": 3, "us-east-c": 3}
    assert {n.gpu_product for n in gpu} == {L.H100, L.H200}
    assert len([n for n in nodes if not n.is_gpu]) == 2


@pytest.mark.parametrize(
    ("ip", "served_at"),
    [("10.16.0.4", "127.16.0.4"), ("10.32.7.200", "127.32.7.200"), ("10.0.0.1", "127.0.0.1")],
)
def test_cluster_addresses_are_served_on_loopback(ip: str, served_at: str) -> None:
    assert L.loopback_address(ip) == served_at


@pytest.mark.parametrize("ip", ["127.16.0.4", "192.168.1.1", "11.0.0.1"])
def test_addresses_outside_10_8_are_rejected(ip: str) -> None:
    with pytest.raises(ValueError):
        L.loopback_address(ip)


def test_gpu_node_manifest_has_labels_capacity_taint_and_address() -> None:
    spec = L.NodeSpec(name="us-east-a-h100-1", zone="us-east-a", gpu_product=L.H100)
    node = L.node_manifest(spec, region="us-east", octet=16, index=3, kube_version="v1.36.3")
    labels = node["metadata"]["labels"]  # type: ignore[index]
    assert labels[L.REGION_LABEL] == "us-east"
    assert labels[L.ZONE_LABEL] == "us-east-a"
    assert labels[L.GPU_PRODUCT_LABEL] == L.H100
    status = node["status"]
    assert status["capacity"]["nvidia.com/gpu"] == "8"  # type: ignore[index]
    assert status["allocatable"]["nvidia.com/gpu"] == "8"  # type: ignore[index]
    assert status["addresses"][0] == {"type": "InternalIP", "address": "10.16.0.3"}  # type: ignore[index]
    assert node["spec"]["podCIDR"] == "10.16.3.0/24"  # type: ignore[index]
    assert node["spec"]["taints"] == [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]  # type: ignore[index]


def test_cpu_node_has_no_gpus_and_no_taint() -> None:
    spec = L.NodeSpec(name="cpu-1", zone="eu-west-b")
    node = L.node_manifest(spec, region="eu-west", octet=32, index=1, kube_version="v1.36.3")
    assert "nvidia.com/gpu" not in node["status"]["capacity"]  # type: ignore[index]
    assert node["spec"]["taints"] == []  # type: ignore[index]
    assert L.GPU_PRODUCT_LABEL not in node["metadata"]["labels"]  # type: ignore[index]


def test_node_manifests_number_nodes_in_layout_order_and_reject_duplicates() -> None:
    nodes = L.default_node_layout("eu-west")
    ips = [
        m["status"]["addresses"][0]["address"]  # type: ignore[index]
        for m in L.node_manifests(nodes, region="eu-west", octet=32, kube_version="v1.36.3")
    ]
    assert ips == [f"10.32.0.{i}" for i in range(1, len(nodes) + 1)]
    with pytest.raises(ValueError, match="duplicate"):
        L.node_manifests([nodes[0], nodes[0]], region="eu-west", octet=32, kube_version="x")


@pytest.mark.parametrize(("octet", "index"), [(0, 1), (254, 1), (16, 0), (16, 255)])
def test_addressing_rejects_out_of_range_values(octet: int, index: int) -> None:
    with pytest.raises(ValueError):
        L.node_ip(octet, index)


def test_engine_pods_are_recognised_by_component_and_deployment_labels() -> None:
    engine = {"app.kubernetes.io/component": "engine", "serving.deepseek.dev/deployment": "r1"}
    assert L.is_engine_pod(engine)
    assert not L.is_engine_pod({"app.kubernetes.io/component": "engine"})
    assert not L.is_engine_pod({"serving.deepseek.dev/deployment": "r1"})


def test_ports_of_the_two_regions_are_distinct_and_below_the_ephemeral_range() -> None:
    ports = [p for c in region_configs() for p in c.ports.as_dict().values()]
    assert len(ports) == len(set(ports))
    assert all(1024 < p < 32768 for p in ports)
    assert Ports.from_base(24000).apiserver == 24443
    with pytest.raises(ValueError):
        Ports.from_base(24500)


def test_region_configs_put_state_under_dot_local_cluster(tmp_path: Path) -> None:
    cfgs = region_configs(root=tmp_path)
    assert [c.name for c in cfgs] == list(REGIONS)
    us = cfgs[0]
    assert us.kubeconfig == tmp_path / ".local" / "cluster" / "us-east" / "kubeconfig"
    assert us.prometheus_targets_dir == tmp_path / ".local/cluster/us-east/prometheus/targets"
    assert us.rule_globs == (str(tmp_path / ".local/cluster/us-east/prometheus/rules/*.yaml"),)
    assert us.api_url == "https://127.0.0.1:24443"
    assert us.prometheus_url == "http://127.0.0.1:24090"
    octets = {c.octet for c in cfgs}
    assert len(octets) == len(cfgs)


def test_the_demo_and_test_profiles_share_no_state_port_or_address(tmp_path: Path) -> None:
    """`make demo` leaves objects in its clusters; the e2e suites must never see them, and both
    may run at once: no state directory, port or network octet in common (nor with the
    restart test's throwaway region: 26000, octet 48)."""
    demo = region_configs(root=tmp_path, profile="demo")
    test = region_configs(root=tmp_path, profile="test")
    assert [c.name for c in demo] == [c.name for c in test] == ["us-east", "eu-west"]
    assert {c.state_dir.parent for c in demo} == {tmp_path / ".local" / "cluster"}
    assert {c.state_dir.parent for c in test} == {tmp_path / ".local" / "test-cluster"}
    ports = [p for c in demo + test for p in c.ports.as_dict().values()]
    ports += list(Ports.from_base(26000).as_dict().values())
    assert len(ports) == len(set(ports))
    assert all(1024 < p < 32768 for p in ports)
    octets = [c.octet for c in demo + test] + [48]
    assert len(octets) == len(set(octets))
    # The scale benchmark's region: apart from both, Service CIDRs (octet + 1) included.
    bench = region_configs(root=tmp_path, profile="bench")
    assert [c.name for c in bench] == ["us-east"]
    assert bench[0].state_dir.parent == tmp_path / ".local" / "bench-cluster"
    assert not set(bench[0].ports.as_dict().values()) & set(ports)
    assert all(1024 < p < 32768 for p in bench[0].ports.as_dict().values())
    taken = {o + d for o in octets for d in (0, 1)}
    assert not {bench[0].octet, bench[0].octet + 1} & taken
    assert region_configs(root=tmp_path) == demo  # the default is the demo's
    with pytest.raises(KeyError):
        region_configs(root=tmp_path, profile="prod")


def test_config_with_overrides_fields() -> None:
    cfg = ClusterConfig(name="t", region="t", port_base=40000, octet=64)
    assert cfg.with_(fleet=False).fleet is False
    assert cfg.fleet is True


def test_the_profile_env_picks_the_default_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The e2e session sets $DEEPSEEK_CLUSTER_PROFILE=test, so the processes it starts that find
    a region by name find the tests' cluster; an explicit profile wins; a wrong name is an
    error, not a silent fallback to the demo's cluster."""
    monkeypatch.setenv("DEEPSEEK_CLUSTER_PROFILE", "test")
    assert region_configs(root=tmp_path) == region_configs(root=tmp_path, profile="test")
    assert region_configs(root=tmp_path, profile="demo")[0].port_base == 24000
    monkeypatch.setenv("DEEPSEEK_CLUSTER_PROFILE", "tset")
    with pytest.raises(ValueError, match="DEEPSEEK_CLUSTER_PROFILE"):
        region_configs(root=tmp_path)
    monkeypatch.delenv("DEEPSEEK_CLUSTER_PROFILE")
    assert region_configs(root=tmp_path)[0].state_dir.parent.name == "cluster"
