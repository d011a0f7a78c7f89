"""The processes of one local cluster and their command lines (pure: paths in, argv out).

Start order: etcd -> kube-apiserver -> kube-controller-manager, kube-scheduler, kwok,
prometheus -> the simulated fleet (unless the cluster runs without it). Everything listens on
loopback only (the fleet's replicas and dcgm-exporters on 127.N.x.y, layout.py).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ClusterConfig
from .layout import service_cidr
from .pki import ADMIN_USER, Pki

ETCD_QUOTA_BYTES = 256 * 1024 * 1024  # a test cluster's objects need a few MiB
# The kwok-managed nodes carry this annotation (layout.node_manifest).
KWOK_NODE_SELECTOR = "kwok.x-k8s.io/node=fake"


@dataclass(frozen=True)
class Component:
    """One process of a cluster: `name` is also its pid/log file name."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Changes when the command line or the environment changes (then `up` restarts it)."""
        raw = json.dumps([self.argv, sorted(self.env.items())])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Paths:
    """Files of one cluster under its state directory."""

    state: Path

    @property
    def pki(self) -> Pki:
        return Pki(self.state / "pki")

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def kwok_config(self) -> Path:
        return self.state / "kwok.yaml"

    @property
    def prometheus_dir(self) -> Path:
        return self.state / "prometheus"

    @property
    def prometheus_config(self) -> Path:
        return self.prometheus_dir / "prometheus.yml"

    @property
    def prometheus_data(self) -> Path:
        return self.prometheus_dir / "data"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def run(self) -> Path:
        return self.state / "run"


def service_ip(cfg: ClusterConfig) -> str:
    """The first address of the Service range (the `kubernetes` Service)."""
    return str(ipaddress.ip_network(service_cidr(cfg.octet))[1])


# Go runtimes: return memory to the OS early, two clusters share a small machine.
_GO_ENV = {"GOGC": "50"}


def etcd(cfg: ClusterConfig, bindir: Path, paths: Paths) -> Component:
    p = cfg.ports
    peer = f"http://127.0.0.1:{p.etcd_peer}"
    client = f"http://127.0.0.1:{p.etcd}"
    return Component(
        "etcd",
        (
            str(bindir / "etcd"),
            f"--name={cfg.name}",
            f"--data-dir={paths.etcd_data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={cfg.name}={peer}",
            "--initial-cluster-state=new",
            f"--quota-backend-bytes={ETCD_QUOTA_BYTES}",
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=5m",
            "--snapshot-count=5000",
            # A throwaway test cluster: losing the last writes on a power cut is acceptable,
            # an fsync per write on a shared disk is not.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ),
        _GO_ENV,
    )


def kube_apiserver(cfg: ClusterConfig, bindir: Path, paths: Paths) -> Component:
    pki = paths.pki
    return Component(
        "kube-apiserver",
        (
            str(bindir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{cfg.ports.etcd}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={cfg.ports.apiserver}",
            f"--service-cluster-ip-range={service_cidr(cfg.octet)}",
            # The `kubernetes` Service would point at 127.0.0.1, which Endpoints reject; nothing
            # in the cluster talks to the API server through it.
            "--endpoint-reconciler-type=none",
            f"--client-ca-file={pki.ca_crt}",
            f"--tls-cert-file={pki.apiserver_crt}",
            f"--tls-private-key-file={pki.apiserver_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--profiling=false",
            "--event-ttl=1h",
        ),
        _GO_ENV,
    )


def kube_controller_manager(cfg: ClusterConfig, bindir: Path, paths: Paths) -> Component:
    pki, kc = paths.pki, str(paths.kubeconfig)
    return Component(
        "kube-controller-manager",
        (
            str(bindir / "kube-controller-manager"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={cfg.ports.controller_manager}",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_crt}",
            f"--cluster-signing-cert-file={pki.ca_crt}",
            f"--cluster-signing-key-file={pki.ca_key}",
            f"--service-cluster-ip-range={service_cidr(cfg.octet)}",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--profiling=false",
        ),
        _GO_ENV,
    )


def kube_scheduler(cfg: ClusterConfig, bindir: Path, paths: Paths) -> Component:
    kc = str(paths.kubeconfig)
    return Component(
        "kube-scheduler",
        (
            str(bindir / "kube-scheduler"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={cfg.ports.scheduler}",
            "--leader-elect=false",
            "--profiling=false",
        ),
        _GO_ENV,
    )


def kwok(cfg: ClusterConfig, bindir: Path, paths: Paths) -> Component:
    return Component(
        "kwok",
        (
            str(bindir / "kwok"),
            f"--kubeconfig={paths.kubeconfig}",
            f"--config={paths.kwok_config}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_SELECTOR}",
            f"--server-address=127.0.0.1:{cfg.ports.kwok}",
            "--node-lease-duration-seconds=40",
            f"--cidr=10.{cfg.octet}.255.0/24",
            f"--node-ip=10.{cfg.octet}.0.254",
        ),
        _GO_ENV,
    )


def prometheus(cfg: ClusterConfig, bindir: Path, paths: Paths) -> Component:
    return Component(
        "prometheus",
        (
            str(bindir / "prometheus"),
            f"--config.file={paths.prometheus_config}",
            f"--storage.tsdb.path={paths.prometheus_data}",
            "--storage.tsdb.retention.time=2d",
            f"--web.listen-address=127.0.0.1:{cfg.ports.prometheus}",
            "--web.enable-lifecycle",
            "--web.enable-admin-api",
            "--log.level=warn",
        ),
        _GO_ENV,
    )


def fleet(cfg: ClusterConfig, bindir: Path, paths: Paths) -> Component:
    """The simulated GPU fleet of this cluster (testbed/sim): one process per
    region, so that its dcgm-exporters (<node address>:9400) never collide with another's."""
    return Component(
        "fleet",
        (
            sys.executable,
            "-m",
            "testbed.sim",
            "fleet",
            f"--kubeconfig={paths.kubeconfig}",
            f"--name={cfg.name}",
            f"--targets-dir={cfg.prometheus_targets_dir}",
            f"--state-dir={paths.state}",
            f"--control-port={cfg.ports.fleet}",
            f"--load-time-scale={cfg.fleet_load_time_scale:g}",
        ),
        {"PYTHONUNBUFFERED": "1"},
    )


CONTROL_PLANE = (etcd, kube_apiserver)
WORKERS = (kube_controller_manager, kube_scheduler, kwok, prometheus)
FLEET = "fleet"
STOP_ORDER = (
    FLEET,
    "kwok",
    "prometheus",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-apiserver",
    "etcd",
)


def components(cfg: ClusterConfig, bindir: Path, paths: Paths) -> list[Component]:
    """The processes the cluster runs (the fleet only when `cfg.fleet`)."""
    fns = (*CONTROL_PLANE, *WORKERS, *((fleet,) if cfg.fleet else ()))
    return [f(cfg, bindir, paths) for f in fns]


def kubeconfig(cfg: ClusterConfig, pki: Pki) -> dict[str, Any]:
    """A self-contained kubeconfig (certificates embedded) for the cluster's admin user."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    ctx = cfg.context
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": ctx,
                "cluster": {
                    "server": cfg.api_url,
                    "certificate-authority-data": b64(pki.ca_crt),
                },
            }
        ],
        "users": [
            {
                "name": f"{ADMIN_USER}@{cfg.name}",
                "user": {
                    "client-certificate-data": b64(pki.admin_crt),
                    "client-key-data": b64(pki.admin_key),
                },
            }
        ],
        "contexts": [
            {
                "name": ctx,
                "context": {"cluster": ctx, "user": f"{ADMIN_USER}@{cfg.name}"},
            }
        ],
        "current-context": ctx,
    }
