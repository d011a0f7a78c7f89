"""Generated files and processes of the local cluster: Prometheus config, command lines,
certificates, daemon start/stop. promtool (from the tools cache) validates the generated config
for real when it has been built."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from testbed.cluster import components as C
from testbed.cluster import procs
from testbed.cluster.config import cache_dir, region_configs
from testbed.cluster.pki import ensure_pki
from testbed.cluster.prometheus import prometheus_config, render


def _cfg(tmp_path: Path) -> Any:
    return region_configs(root=tmp_path)[0]


def _prom(tmp_path: Path) -> dict[str, Any]:
    return prometheus_config(_cfg(tmp_path), ca_file="ca", cert_file="crt", key_file="key")


def _job(conf: dict[str, Any], name: str) -> dict[str, Any]:
    return next(j for j in conf["scrape_configs"] if j["job_name"] == name)


def _relabel(rules: list[dict[str, Any]], meta: dict[str, str]) -> dict[str, str] | None:
    """Prometheus relabeling (replace/keep/drop) applied to a target's labels."""
    labels = dict(meta)
    for r in rules:
        value = r.get("separator", ";").join(labels.get(s, "") for s in r["source_labels"])
        m = re.fullmatch(r.get("regex", "(.*)"), value)
        action = r.get("action", "replace")
        if action == "keep" and not m:
            return None
        if action == "drop" and m:
            return None
        if action == "replace" and m:
            groups = [m.group(0), *m.groups()]
            repl = re.sub(
                r"\$(\d+)", lambda g, gs=groups: gs[int(g.group(1))], r.get("replacement", "$1")
            )
            labels[r["target_label"]] = repl
    return {k: v for k, v in labels.items() if not k.startswith("__") or k == "__address__"}


ENGINE_META = {
    "__address__": "10.16.3.7:8000",
    "__meta_kubernetes_namespace": "team-a",
    "__meta_kubernetes_pod_name": "r1-blue-abc",
    "__meta_kubernetes_pod_ip": "10.16.3.7",
    "__meta_kubernetes_pod_phase": "Running",
    "__meta_kubernetes_pod_node_name": "us-east-a-h100-1",
    "__meta_kubernetes_pod_container_name": "vllm",
    "__meta_kubernetes_pod_container_port_name": "http",
    "__meta_kubernetes_pod_container_port_number": "8000",
    "__meta_kubernetes_pod_label_app_kubernetes_io_component": "engine",
    "__meta_kubernetes_pod_label_serving_deepseek_dev_deployment": "r1",
    "__meta_kubernetes_pod_label_serving_deepseek_dev_colour": "blue",
    "__meta_kubernetes_pod_label_serving_deepseek_dev_mode": "fp8",
}


def test_engine_pods_are_scraped_on_loopback_with_the_target_labels(tmp_path: Path) -> None:
    rules = _job(_prom(tmp_path), "deepseek-engines")["relabel_configs"]
    got = _relabel(rules, ENGINE_META)
    assert got is not None
    assert got["__address__"] == "127.16.3.7:8000"
    assert {k: got[k] for k in ("namespace", "pod", "dsd", "colour", "mode")} == {
        "namespace": "team-a",
        "pod": "r1-blue-abc",
        "dsd": "r1",
        "colour": "blue",
        "mode": "fp8",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"__meta_kubernetes_pod_label_app_kubernetes_io_component": "router"},
        {"__meta_kubernetes_pod_label_serving_deepseek_dev_deployment": ""},
        {"__meta_kubernetes_pod_container_port_name": "metrics"},
        {"__meta_kubernetes_pod_phase": "Succeeded"},
    ],
)
def test_other_pods_and_ports_are_not_scraped(tmp_path: Path, change: dict[str, str]) -> None:
    rules = _job(_prom(tmp_path), "deepseek-engines")["relabel_configs"]
    assert _relabel(rules, {**ENGINE_META, **change}) is None


ROUTER_META = {
    **ENGINE_META,
    "__meta_kubernetes_pod_name": "r1-router-7d9f-x2",
    "__meta_kubernetes_pod_ip": "10.16.3.9",
    "__meta_kubernetes_pod_container_name": "router",
    "__meta_kubernetes_pod_container_port_name": "metrics",
    "__meta_kubernetes_pod_container_port_number": "29000",
    "__meta_kubernetes_pod_label_app_kubernetes_io_component": "router",
}


@pytest.mark.parametrize("component", ["router", "router-batch"])
def test_router_pods_metrics_port_is_scraped_with_the_pool(tmp_path: Path, component: str) -> None:
    rules = _job(_prom(tmp_path), "deepseek-routers")["relabel_configs"]
    meta = {**ROUTER_META, "__meta_kubernetes_pod_label_app_kubernetes_io_component": component}
    got = _relabel(rules, meta)
    assert got is not None
    assert got["__address__"] == "127.16.3.9:29000"
    assert {k: got[k] for k in ("namespace", "pod", "dsd", "component")} == {
        "namespace": "team-a",
        "pod": "r1-router-7d9f-x2",
        "dsd": "r1",
        "component": component,
    }


@pytest.mark.parametrize(
    "change",
    [
        {"__meta_kubernetes_pod_label_app_kubernetes_io_component": "engine"},
        {"__meta_kubernetes_pod_label_serving_deepseek_dev_deployment": ""},
        {"__meta_kubernetes_pod_container_port_name": "http"},
        {"__meta_kubernetes_pod_phase": "Pending"},
    ],
)
def test_router_job_scrapes_only_router_metrics_ports(
    tmp_path: Path, change: dict[str, str]
) -> None:
    rules = _job(_prom(tmp_path), "deepseek-routers")["relabel_configs"]
    assert _relabel(rules, {**ROUTER_META, **change}) is None


def test_dcgm_scrapes_gpu_nodes_on_loopback_port_9400_with_honor_labels(tmp_path: Path) -> None:
    job = _job(_prom(tmp_path), "dcgm")
    assert job["honor_labels"] is True
    node = {
        "__address__": "10.16.0.4:10250",
        "__meta_kubernetes_node_name": "us-east-b-h100-1",
        "__meta_kubernetes_node_address_InternalIP": "10.16.0.4",
        "__meta_kubernetes_node_label_nvidia_com_gpu_present": "true",
        "__meta_kubernetes_node_label_topology_kubernetes_io_zone": "us-east-b",
    }
    got = _relabel(job["relabel_configs"], node)
    assert got is not None
    assert got["__address__"] == "127.16.0.4:9400"
    assert got["zone"] == "us-east-b"
    cpu = {**node, "__meta_kubernetes_node_label_nvidia_com_gpu_present": ""}
    assert _relabel(job["relabel_configs"], cpu) is None


def test_intervals_file_sd_rules_and_discovery_point_at_the_region(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    conf = _prom(tmp_path)
    assert conf["global"]["scrape_interval"] == "5s"
    assert conf["global"]["evaluation_interval"] == "5s"
    assert conf["global"]["external_labels"] == {"region": "us-east"}
    assert conf["rule_files"] == [str(cfg.prometheus_rules_dir / "*.yaml")]
    file_sd = _job(conf, "local-targets")["file_sd_configs"][0]
    assert file_sd["files"] == [str(cfg.prometheus_targets_dir / "*.json")]
    sd = _job(conf, "deepseek-engines")["kubernetes_sd_configs"][0]
    assert sd["api_server"] == "https://127.0.0.1:24443"
    assert sd["role"] == "pod"


def test_promtool_accepts_the_generated_config(tmp_path: Path) -> None:
    # promtool3: the promtool of the Prometheus release the cluster runs (Debian's 2.42 promtool
    # has no Kubernetes service discovery).
    promtool = cache_dir() / "bin" / "promtool3"
    if not promtool.exists():
        pytest.skip("promtool3 not built yet (make tools)")
    cfg = _cfg(tmp_path)
    pki = ensure_pki(tmp_path / "pki", cluster_name="t", service_ip="10.17.0.1")
    path = tmp_path / "prometheus.yml"
    path.write_text(
        render(
            cfg, ca_file=str(pki.ca_crt), cert_file=str(pki.admin_crt), key_file=str(pki.admin_key)
        )
    )
    assert path.read_text().startswith("# Generated")
    res = subprocess.run(
        [str(promtool), "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_components_listen_on_loopback_and_fingerprints_follow_the_command_line(
    tmp_path: Path,
) -> None:
    cfg = _cfg(tmp_path)
    paths = C.Paths(cfg.state_dir)
    comps = C.components(cfg, Path("/bin"), paths)
    assert [c.name for c in comps] == [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "prometheus",
        "fleet",
    ]
    fleet = comps[-1]
    assert "--control-port=24400" in fleet.argv
    assert f"--kubeconfig={paths.kubeconfig}" in fleet.argv
    assert f"--load-time-scale={cfg.fleet_load_time_scale:g}" in fleet.argv
    slower = C.fleet(cfg.with_(fleet_load_time_scale=0.5), Path("/bin"), paths)
    assert slower.fingerprint != fleet.fingerprint  # `up` restarts a fleet whose scale changed
    no_fleet = C.components(cfg.with_(fleet=False), Path("/bin"), paths)
    assert [c.name for c in no_fleet] == [c.name for c in comps[:-1]]
    for c in comps:
        for a in c.argv[1:]:
            assert "0.0.0.0" not in a, (c.name, a)
    api = comps[1]
    assert "--bind-address=127.0.0.1" in api.argv
    assert "--secure-port=24443" in api.argv
    assert "--service-cluster-ip-range=10.17.0.0/16" in api.argv
    eu = C.components(region_configs(root=tmp_path)[1], Path("/bin"), paths)[1]
    assert eu.fingerprint != api.fingerprint
    assert C.components(cfg, Path("/bin"), paths)[1].fingerprint == api.fingerprint
    assert C.service_ip(cfg) == "10.17.0.1"


def test_pki_is_created_once_and_certifies_the_api_server_and_admin(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, cluster_name="us-east", service_ip="10.17.0.1")
    first = pki.apiserver_crt.read_bytes()
    assert ensure_pki(tmp_path, cluster_name="us-east", service_ip="10.17.0.1").complete()
    assert pki.apiserver_crt.read_bytes() == first
    cert = x509.load_pem_x509_certificate(first)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.17.0.1"}
    admin = x509.load_pem_x509_certificate(pki.admin_crt.read_bytes())
    assert "O=system:masters" in admin.subject.rfc4514_string()
    # The chain verifies with the standard library, as the runner's client uses it.
    ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
    ctx.load_cert_chain(str(pki.admin_crt), str(pki.admin_key))
    assert (pki.ca_key.stat().st_mode & 0o777) == 0o600


def test_kubeconfig_is_self_contained(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    pki = ensure_pki(tmp_path, cluster_name="us-east", service_ip="10.17.0.1")
    kc = yaml.safe_load(yaml.safe_dump(C.kubeconfig(cfg, pki)))
    assert kc["current-context"] == "deepseek-us-east"
    assert kc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:24443"
    assert kc["users"][0]["user"]["client-key-data"]


def _live_in_group(pgid: int) -> list[str]:
    out = subprocess.run(
        ["ps", "-o", "pid=,stat=", "-g", str(pgid)], capture_output=True, text=True, check=False
    ).stdout
    return [line.split()[0] for line in out.splitlines() if not line.split()[1].startswith("Z")]


def test_daemon_survives_its_starter_and_stop_ends_its_whole_process_group(tmp_path: Path) -> None:
    sh = shutil.which("sh")
    assert sh
    # A parent with a child of its own: stopping must leave neither behind.
    comp = C.Component("sleeper", (sh, "-c", "sleep 60 & echo started; wait"))
    pidfile, log = tmp_path / "run" / "sleeper.pid", tmp_path / "logs" / "sleeper.log"
    rec = procs.start(comp, pidfile=pidfile, logfile=log, cwd=tmp_path)
    deadline = time.monotonic() + 5
    while "started" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert procs.running(pidfile) == rec
    assert len(_live_in_group(rec.pid)) == 2  # sh and its sleep
    assert procs.stop(pidfile) is True
    assert not pidfile.exists()
    assert _live_in_group(rec.pid) == []  # no process left (zombies await their new parent)
    assert procs.stop(pidfile) is False


def test_a_recycled_pid_is_not_taken_for_the_recorded_process(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    own = procs.PidRecord(pid=1, start_ticks=-1, fingerprint="f", argv0="/bin/x")
    pidfile.write_text(own.to_json())
    assert procs.running(pidfile) is None
    assert procs.stop(pidfile) is False


@pytest.mark.parametrize(
    ("a", "b"),
    [("2048Gi", "2Ti"), ("192", "192"), ("30Ti", "30720Gi"), ("500m", "0.5"), ("1k", "1000")],
)
def test_quantities_compare_as_the_api_server_rewrites_them(a: str, b: str) -> None:
    from testbed.cluster.runner import quantity

    assert quantity(a) == quantity(b)


def test_cluster_and_demo_subcommands_are_the_test_beds_not_the_operators() -> None:
    from deepseek_operator.cli import build_parser as operator_parser

    from testbed.__main__ import build_parser

    for product_has_none_of in (["cluster", "up"], ["demo", "up"]):
        with pytest.raises(SystemExit):
            operator_parser().parse_args(product_has_none_of)
    args = build_parser().parse_args(["cluster", "up", "--no-fleet", "--start-delay", "1"])
    assert (args.cluster_command, args.no_fleet, args.start_delay) == ("up", True, 1.0)
    assert args.profile is None  # $DEEPSEEK_CLUSTER_PROFILE, else demo
    assert build_parser().parse_args(["cluster", "status", "--profile", "test"]).profile == "test"
    assert build_parser().parse_args(["demo", "clean"]).action == "clean"
    args = build_parser().parse_args(["cluster", "up", "--fleet-load-time-scale", "0.1"])
    assert (args.no_fleet, args.fleet_load_time_scale) == (False, 0.1)
    assert build_parser().parse_args(["cluster", "down", "--purge"]).purge is True
    assert build_parser().parse_args(["cluster", "status"]).cluster_command == "status"
