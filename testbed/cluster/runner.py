"""Bring the local clusters up, find them again, take them down (the I/O side of cluster/).

`LocalCluster(configs).up()` is idempotent: a component whose recorded process still runs with
the same command line is reused, a dead or changed one is (re)started, missing nodes are
created. Processes are daemons (own session, pid files under <state>/run/), so they outlive the
CLI or the test session that started them; `down()` stops them by process group.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from . import components as C
from . import procs
from .config import KUBE_VERSION, ClusterConfig, cache_dir, region_configs
from .layout import MANAGED_NODE_LABEL, node_manifests, zones
from .pki import ensure_pki
from .prometheus import render as render_prometheus
from .stages import kwok_stages

BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "prometheus",
)


class ClusterError(RuntimeError):
    """The cluster could not be brought up (the message says what to look at)."""


@dataclass(frozen=True)
class RegionInfo:
    """Where a running region is: what tests, the fleet, the operator and the demo connect to."""

    name: str
    region: str
    zones: tuple[str, ...]
    kubeconfig: Path
    context: str
    api_url: str
    prometheus_url: str
    prometheus_targets_dir: Path  # file_sd: drop <name>.json target files here
    prometheus_rules_dir: Path  # rule_files: drop *.yaml here, then POST /-/reload
    state_dir: Path
    log_dir: Path
    octet: int  # node IPs 10.<octet>.0.k, served at 127.<octet>.0.k
    ports: dict[str, int]
    # The simulated fleet's control endpoint (None: the cluster runs without the fleet).
    fleet_url: str | None = None
    fleet_load_time_scale: float | None = None


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    running: bool
    healthy: bool


@dataclass(frozen=True)
class RegionStatus:
    info: RegionInfo
    components: tuple[ComponentStatus, ...]
    nodes_ready: int = 0
    nodes_total: int = 0

    @property
    def healthy(self) -> bool:
        return all(c.healthy for c in self.components)

    @property
    def stopped(self) -> bool:
        return not any(c.running for c in self.components)


def info(cfg: ClusterConfig) -> RegionInfo:
    return RegionInfo(
        name=cfg.name,
        region=cfg.region,
        zones=tuple(zones(cfg.region)),
        kubeconfig=cfg.kubeconfig,
        context=cfg.context,
        api_url=cfg.api_url,
        prometheus_url=cfg.prometheus_url,
        prometheus_targets_dir=cfg.prometheus_targets_dir,
        prometheus_rules_dir=cfg.prometheus_rules_dir,
        state_dir=cfg.state_dir,
        log_dir=cfg.log_dir,
        octet=cfg.octet,
        ports=cfg.ports.as_dict(),
        fleet_url=cfg.fleet_url if cfg.fleet else None,
        fleet_load_time_scale=cfg.fleet_load_time_scale if cfg.fleet else None,
    )


def _log(event: str, **kv: object) -> None:
    fields = " ".join(f"{k}={v}" for k, v in kv.items())
    print(f"{event} {fields}".rstrip(), file=sys.stderr, flush=True)


def _write_if_changed(path: Path, text: str) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class _Api:
    """A minimal JSON client for the cluster's API server (admin client certificate)."""

    def __init__(self, cfg: ClusterConfig, paths: C.Paths) -> None:
        self.base = cfg.api_url
        ctx = ssl.create_default_context(cafile=str(paths.pki.ca_crt))
        ctx.load_cert_chain(str(paths.pki.admin_crt), str(paths.pki.admin_key))
        self.ctx = ctx

    def request(self, method: str, path: str, body: Any = None, timeout: float = 5.0) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode()

    def ok(self, path: str) -> bool:
        try:
            self.request("GET", path, timeout=2.0)
            return True
        except (urllib.error.URLError, OSError, ValueError):
            return False


def _http_ok(url: str, *, insecure: bool = False) -> bool:
    ctx = None
    if url.startswith("https"):
        ctx = ssl.create_default_context()
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2.0, context=ctx) as resp:
            return bool(200 <= resp.status < 300)
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class _Region:
    cfg: ClusterConfig
    bindir: Path
    paths: C.Paths = field(init=False)

    def __post_init__(self) -> None:
        self.paths = C.Paths(self.cfg.state_dir)

    def pidfile(self, name: str) -> Path:
        return self.paths.run / f"{name}.pid"

    def logfile(self, name: str) -> Path:
        return self.paths.logs / f"{name}.log"

    def components(self) -> dict[str, C.Component]:
        comps = {}
        for c in C.components(self.cfg, self.bindir, self.paths):
            # The resolved binary is part of the fingerprint: a rebuilt tool restarts on `up`.
            comps[c.name] = replace(c, env={**c.env, "DSO_BINARY": os.path.realpath(c.argv[0])})
        # kwok reads its Stages once: a changed stage file restarts it (Prometheus reloads).
        kwok = comps["kwok"]
        comps["kwok"] = replace(kwok, env={**kwok.env, "DSO_STAGES": _sha(self.paths.kwok_config)})
        return comps

    def health(self, name: str) -> bool:
        p = self.cfg.ports
        if name == "etcd":
            return _http_ok(f"http://127.0.0.1:{p.etcd}/health")
        if name == "kube-apiserver":
            return self.paths.pki.complete() and _Api(self.cfg, self.paths).ok("/readyz")
        if name == "kube-controller-manager":
            return _http_ok(f"https://127.0.0.1:{p.controller_manager}/healthz", insecure=True)
        if name == "kube-scheduler":
            return _http_ok(f"https://127.0.0.1:{p.scheduler}/healthz", insecure=True)
        if name == "kwok":
            return _http_ok(f"http://127.0.0.1:{p.kwok}/healthz")
        if name == "prometheus":
            return _http_ok(f"http://127.0.0.1:{p.prometheus}/-/ready")
        if name == C.FLEET:
            return self.fleet_healthy()
        raise ValueError(name)

    @property
    def fleet_off(self) -> Path:
        """Present while the region runs without the fleet (`cluster up --no-fleet`)."""
        return self.paths.run / "fleet.off"

    def fleet_healthy(self) -> bool:
        """The fleet that fleet.json names is our recorded process, its control endpoint
        answers, and it has listed the region's pods and nodes once."""
        rec = procs.running(self.pidfile(C.FLEET))
        try:
            state = json.loads((self.paths.state / "fleet.json").read_text())
        except (FileNotFoundError, ValueError):
            return False
        if rec is None or state.get("pid") != rec.pid or not state.get("control"):
            return False
        try:
            with urllib.request.urlopen(f"{state['control']}/status", timeout=2.0) as resp:
                body = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return bool(body.get("regions", {}).get(self.cfg.name, {}).get("synced"))

    def port_of(self, name: str) -> int:
        key = name.removeprefix("kube-").replace("-", "_")
        return int(self.cfg.ports.as_dict()[key])


def _sha(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        return "none"


def _wait(what: str, check: Callable[[], bool], timeout_s: float, hint: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise ClusterError(f"timed out after {timeout_s:g}s waiting for {what}. {hint}".strip())


class LocalCluster:
    """The local clusters (default: us-east and eu-west, see config.region_configs)."""

    def __init__(
        self, configs: Sequence[ClusterConfig] | None = None, *, bindir: Path | None = None
    ) -> None:
        self.configs = list(configs) if configs is not None else region_configs()
        self.bindir = bindir or cache_dir() / "bin"
        self._regions = [_Region(c, self.bindir) for c in self.configs]

    # --- queries ---------------------------------------------------------------------------

    def info(self) -> dict[str, RegionInfo]:
        """Where each region is (whether it runs or not)."""
        return {c.name: info(c) for c in self.configs}

    def status(self) -> dict[str, RegionStatus]:
        out = {}
        for r in self._regions:
            comps = []
            for name in C.STOP_ORDER[::-1]:
                if name == C.FLEET and r.fleet_off.exists():
                    continue
                rec = procs.running(r.pidfile(name))
                comps.append(
                    ComponentStatus(
                        name,
                        rec.pid if rec else None,
                        rec is not None,
                        rec is not None and r.health(name),
                    )
                )
            ready = total = 0
            if comps[1].healthy:  # kube-apiserver
                ready, total = self._node_counts(r)
            where = info(r.cfg)
            if r.fleet_off.exists():
                where = replace(where, fleet_url=None, fleet_load_time_scale=None)
            out[r.cfg.name] = RegionStatus(where, tuple(comps), ready, total)
        return out

    def healthy(self) -> bool:
        return all(
            s.healthy and s.nodes_total and s.nodes_ready == s.nodes_total
            for s in self.status().values()
        )

    # --- faults ----------------------------------------------------------------------------

    def stop_component(self, region: str, name: str) -> bool:
        """Stop one component of one region (SIGTERM, then SIGKILL), as a fault: the API server
        restarting, Prometheus gone. `up()` starts it again. Returns whether it was running."""
        r = next((x for x in self._regions if x.cfg.name == region), None)
        if r is None:
            raise ValueError(f"no region {region!r}; known: {[x.cfg.name for x in self._regions]}")
        if name not in r.components():
            raise ValueError(f"no component {name!r} in {region}")
        _log("cluster.fault", region=region, component=name, action="stop")
        return procs.stop(r.pidfile(name))

    # --- up --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One `up`/`down` at a time per checkout: two test sessions starting together must not
        both start an etcd on the same port."""
        path = self.configs[0].state_dir.parent / ".lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def up(self, *, timeout_s: float = 240.0) -> dict[str, RegionInfo]:
        """Start (or reuse) every region; returns when nodes are Ready and Prometheus answers."""
        with self._lock():
            return self._up(timeout_s)

    def _up(self, timeout_s: float) -> dict[str, RegionInfo]:
        t0 = time.monotonic()
        missing = [b for b in BINARIES if not (self.bindir / b).exists()]
        if missing:
            raise ClusterError(
                f"missing binaries in {self.bindir}: {', '.join(missing)}; "
                "build them with `make tools` (scripts/build-tools.sh)"
            )
        for r in self._regions:
            self._prepare(r)
        started: dict[str, list[str]] = {r.cfg.name: [] for r in self._regions}
        # Changed components stop first, dependents before what they depend on (the API server
        # shuts down quickly while its etcd still answers), then start in the phases below.
        for name in C.STOP_ORDER:
            for r in self._regions:
                rec = procs.running(r.pidfile(name))
                comp = r.components().get(name)
                if rec is not None and comp is None:  # the fleet, now --no-fleet
                    _log("cluster.stop", region=r.cfg.name, component=name, reason="disabled")
                    procs.stop(r.pidfile(name))
                elif rec is not None and comp is not None and rec.fingerprint != comp.fingerprint:
                    _log("cluster.restart", region=r.cfg.name, component=name, reason="changed")
                    procs.stop(r.pidfile(name))
        # etcd, then the API server, then the rest: each phase for both regions at once.
        workers = tuple(n for n in C.STOP_ORDER if n not in ("etcd", "kube-apiserver", C.FLEET))
        for phase in (("etcd",), ("kube-apiserver",), workers):
            for r in self._regions:
                comps = r.components()
                for name in phase:
                    if self._ensure(r, comps[name]):
                        started[r.cfg.name].append(name)
            for r in self._regions:
                for name in phase:
                    _wait(
                        f"{r.cfg.name} {name}",
                        partial(self._check_started, r, name),
                        timeout_s,
                        f"See {r.logfile(name)}",
                    )
            if phase == ("kube-apiserver",):
                for r in self._regions:
                    self._sync_nodes(r)
        for r in self._regions:
            api = _Api(r.cfg, r.paths)
            want = len(r.cfg.node_layout)
            _wait(
                f"{r.cfg.name}: {want} nodes Ready",
                partial(self._nodes_ready, r, want),
                timeout_s,
                f"See {r.logfile('kwok')}",
            )
            _wait(
                f"{r.cfg.name}: default ServiceAccount",
                partial(api.ok, "/api/v1/namespaces/default/serviceaccounts/default"),
                timeout_s,
                f"See {r.logfile('kube-controller-manager')}",
            )
        # The fleet last: it watches the API server and serves the nodes' dcgm-exporters.
        for r in self._regions:
            if r.cfg.fleet:
                r.fleet_off.unlink(missing_ok=True)
                if self._ensure(r, r.components()[C.FLEET]):
                    started[r.cfg.name].append(C.FLEET)
            else:
                r.fleet_off.touch()
        for r in self._regions:
            if r.cfg.fleet:
                _wait(
                    f"{r.cfg.name} fleet",
                    partial(self._check_started, r, C.FLEET),
                    timeout_s,
                    f"See {r.logfile(C.FLEET)}",
                )
        for r in self._regions:
            _log(
                "cluster.ready",
                region=r.cfg.name,
                started=",".join(started[r.cfg.name]) or "none(reused)",
                api=r.cfg.api_url,
                prometheus=r.cfg.prometheus_url,
                fleet=r.cfg.fleet_url if r.cfg.fleet else "off",
                kubeconfig=r.cfg.kubeconfig,
            )
        _log("cluster.up", seconds=f"{time.monotonic() - t0:.1f}")
        return self.info()

    def _prepare(self, r: _Region) -> None:
        cfg, paths = r.cfg, r.paths
        for d in (paths.logs, paths.run, cfg.prometheus_targets_dir, cfg.prometheus_rules_dir):
            d.mkdir(parents=True, exist_ok=True)
        pki = ensure_pki(paths.pki.dir, cluster_name=cfg.name, service_ip=C.service_ip(cfg))
        _write_if_changed(paths.kubeconfig, yaml.safe_dump(C.kubeconfig(cfg, pki), sort_keys=False))
        paths.kubeconfig.chmod(0o600)
        stages = kwok_stages(start_delay_s=cfg.start_delay_s, fleet=cfg.fleet)
        _write_if_changed(
            paths.kwok_config,
            "# Generated by testbed.cluster (stages.py): do not edit.\n"
            + yaml.safe_dump_all(stages, sort_keys=False),
        )
        changed = _write_if_changed(
            paths.prometheus_config,
            render_prometheus(
                cfg,
                ca_file=str(pki.ca_crt),
                cert_file=str(pki.admin_crt),
                key_file=str(pki.admin_key),
            ),
        )
        if changed and procs.running(r.pidfile("prometheus")) is not None:
            self._reload_prometheus(r)

    def _reload_prometheus(self, r: _Region) -> None:
        req = urllib.request.Request(f"{r.cfg.prometheus_url}/-/reload", method="POST")
        try:
            urllib.request.urlopen(req, timeout=10).close()
            _log("prometheus.reload", region=r.cfg.name)
        except (urllib.error.URLError, OSError) as e:
            _log("prometheus.reload_failed", region=r.cfg.name, error=e)

    def _ensure(self, r: _Region, comp: C.Component) -> bool:
        """Start `comp` unless its recorded process runs with the same fingerprint."""
        pidfile = r.pidfile(comp.name)
        rec = procs.running(pidfile)
        if rec is not None and rec.fingerprint == comp.fingerprint:
            return False
        if rec is not None:
            _log("cluster.restart", region=r.cfg.name, component=comp.name, reason="changed")
            procs.stop(pidfile)
        port = r.port_of(comp.name)
        if not _port_free(port):
            # Give a just-stopped process a moment to release it.
            _wait(
                f"port {port} to be free",
                lambda: _port_free(port),
                10.0,
                f"127.0.0.1:{port} ({r.cfg.name} {comp.name}) is used by a process that is "
                "not this cluster's; stop it or change the port base (config.REGIONS)",
            )
        rec = procs.start(comp, pidfile=pidfile, logfile=r.logfile(comp.name), cwd=r.paths.state)
        _log(
            "cluster.start",
            region=r.cfg.name,
            component=comp.name,
            pid=rec.pid,
            log=r.logfile(comp.name),
        )
        return True

    def _check_started(self, r: _Region, name: str) -> bool:
        rec = procs.read_record(r.pidfile(name))
        if rec is None or not procs.is_alive(rec):
            tail = ""
            with contextlib.suppress(FileNotFoundError):
                tail = "\n".join(r.logfile(name).read_text().splitlines()[-15:])
            raise ClusterError(f"{r.cfg.name} {name} exited; last log lines:\n{tail}")
        return r.health(name)

    def _sync_nodes(self, r: _Region) -> None:
        """Create the layout's nodes that do not exist; replace changed ones; delete managed
        nodes that left the layout."""
        api = _Api(r.cfg, r.paths)
        want = {
            str(m["metadata"]["name"]): m  # type: ignore[index]
            for m in node_manifests(
                r.cfg.node_layout, region=r.cfg.region, octet=r.cfg.octet, kube_version=KUBE_VERSION
            )
        }
        have = {
            n["metadata"]["name"]: n
            for n in api.request("GET", f"/api/v1/nodes?labelSelector={MANAGED_NODE_LABEL}")[
                "items"
            ]
        }
        for name, node in have.items():
            if name not in want or not _same_node(want[name], node):
                api.request("DELETE", f"/api/v1/nodes/{name}")
                _log("cluster.node_delete", region=r.cfg.name, node=name)
        created = 0
        for name, manifest in want.items():
            if name in have and _same_node(manifest, have[name]):
                continue
            for _ in range(40):
                try:
                    api.request("POST", "/api/v1/nodes", manifest)
                    created += 1
                    break
                except urllib.error.HTTPError as e:
                    if e.code != 409:  # 409: the old one is still being deleted
                        raise ClusterError(f"creating node {name}: {e.read().decode()}") from e
                    time.sleep(0.25)
        if created:
            _log("cluster.nodes", region=r.cfg.name, created=created, total=len(want))

    def _nodes_ready(self, r: _Region, want: int) -> bool:
        return self._node_counts(r)[0] >= want

    def _node_counts(self, r: _Region) -> tuple[int, int]:
        try:
            nodes = _Api(r.cfg, r.paths).request("GET", "/api/v1/nodes")["items"]
        except (urllib.error.URLError, OSError, ValueError):
            return 0, 0
        ready = sum(
            1
            for n in nodes
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in n.get("status", {}).get("conditions") or []
            )
        )
        return ready, len(nodes)

    # --- down ------------------------------------------------------------------------------

    def down(self, *, purge: bool = False) -> list[str]:
        """Stop every process of every region (reverse start order); `purge` also deletes the
        state (etcd data, certificates, Prometheus data). Returns what was stopped."""
        with self._lock():
            return self._down(purge)

    def _down(self, purge: bool) -> list[str]:
        stopped = []
        for name in C.STOP_ORDER:
            for r in self._regions:
                if procs.stop(r.pidfile(name)):
                    stopped.append(f"{r.cfg.name}/{name}")
                    _log("cluster.stop", region=r.cfg.name, component=name)
        if purge:
            for r in self._regions:
                if r.paths.state.exists():
                    shutil.rmtree(r.paths.state)
                    _log("cluster.purge", region=r.cfg.name, dir=r.paths.state)
        return stopped


def _same_node(want: dict[str, Any], have: dict[str, Any]) -> bool:
    """Whether an existing node has the layout's labels, taints and capacity."""
    w_labels = want["metadata"]["labels"]
    h_labels = have["metadata"].get("labels") or {}
    h_cap = have.get("status", {}).get("capacity") or {}
    return (
        all(h_labels.get(k) == v for k, v in w_labels.items())
        and _taints_equal(want, have)
        and all(
            k in h_cap and quantity(h_cap[k]) == quantity(v)
            for k, v in want["status"]["capacity"].items()
        )
    )


_SUFFIX: dict[str, Decimal | int] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}


def quantity(q: str) -> Decimal:
    """A Kubernetes resource quantity as a number: the API server rewrites 2048Gi as 2Ti."""
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if q.endswith(suffix):
            return Decimal(q[: -len(suffix)]) * _SUFFIX[suffix]
    return Decimal(q)


def _taints_equal(want: dict[str, Any], have: dict[str, Any]) -> bool:
    def key(ts: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(t["key"], t["effect"]) for t in ts}

    mine = key(want["spec"]["taints"])
    # The node lifecycle controller adds and removes node.kubernetes.io/* taints itself.
    theirs = {
        t
        for t in key(have.get("spec", {}).get("taints") or [])
        if not t[0].startswith("node.kubernetes.io/")
    }
    return mine == theirs
