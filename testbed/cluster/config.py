"""Configuration of a local cluster: names, ports, addresses, paths. Pure values."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .layout import NodeSpec, default_node_layout

KUBE_VERSION = "v1.36.3"

# Ports: <base> + the usual port's last three digits, so that 24443 is us-east's API server and
# 25090 eu-west's Prometheus. The bases stay below Linux's ephemeral range (32768-60999) so that
# outgoing connections never hold them, and clear of the defaults (2379, 6443, 9090, 10250...).
_OFFSETS = {
    "etcd": 379,
    "etcd_peer": 380,
    "apiserver": 443,
    "controller_manager": 257,
    "scheduler": 259,
    "kwok": 247,
    "prometheus": 90,
    "fleet": 400,  # the simulated fleet's control endpoint (its dcgm-exporters: <node>:9400)
}

# The cluster's fleet loads models this much faster than the presets say: a 7B cold start takes
# ~1-2 s instead of ~70 s, so that tests wait for conditions, not for model loading.
DEFAULT_FLEET_LOAD_TIME_SCALE = 0.02


@dataclass(frozen=True)
class Ports:
    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int
    prometheus: int
    fleet: int

    @classmethod
    def from_base(cls, base: int) -> Ports:
        if not 1024 <= base <= 64000 or base % 1000:
            raise ValueError(f"port base {base} must be a multiple of 1000 in 1000..64000")
        return cls(**{k: base + off for k, off in _OFFSETS.items()})

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in _OFFSETS}


@dataclass(frozen=True)
class ClusterConfig:
    """One local cluster (one region).

    name          directory under <repo>/.local/<state_root>/ and kubeconfig context suffix
    region        value of topology.kubernetes.io/region; zones are <region>-a/b/c
    port_base     see Ports
    octet         network octet N: node IPs 10.N.0.k, pod CIDRs 10.N.k.0/24 (layout.py)
    fleet         True: the cluster runs a simulated fleet daemon (testbed/sim)
                  and engine pods wait for it (sim.deepseek.dev/engine-ready); False: no fleet,
                  engine pods behave like ordinary pods ("no fleet" mode)
    fleet_load_time_scale  the fleet's --load-time-scale (model load time multiplier)
    start_delay_s ordinary pods become Ready this long after they start (models loading)
    scrape_interval_s  Prometheus scrape and rule evaluation interval
    rule_files    globs of Prometheus rule files (default: <state>/prometheus/rules/*.yaml; a
                  broken rule file there stops Prometheus from reloading, not from running)
    nodes         the node layout; None: default_node_layout(region)
    state_root    the directory under <repo>/.local/ that holds this cluster's state: "cluster"
                  for the demo's and `make cluster`'s, "test-cluster" for the e2e suites' (see
                  PROFILES), so neither ever sees the other's objects
    """

    name: str
    region: str
    port_base: int
    octet: int
    fleet: bool = True
    fleet_load_time_scale: float = DEFAULT_FLEET_LOAD_TIME_SCALE
    start_delay_s: float = 3.0
    scrape_interval_s: float = 5.0
    rule_files: tuple[str, ...] | None = None
    nodes: tuple[NodeSpec, ...] | None = None
    repo_root: Path = field(default_factory=lambda: repo_root())
    state_root: str = "cluster"

    @property
    def ports(self) -> Ports:
        return Ports.from_base(self.port_base)

    @property
    def node_layout(self) -> list[NodeSpec]:
        return list(self.nodes) if self.nodes is not None else default_node_layout(self.region)

    @property
    def state_dir(self) -> Path:
        return self.repo_root / ".local" / self.state_root / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def context(self) -> str:
        return f"deepseek-{self.name}"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.prometheus}"

    @property
    def prometheus_targets_dir(self) -> Path:
        """Drop file_sd JSON files here to add scrape targets (no restart needed)."""
        return self.state_dir / "prometheus" / "targets"

    @property
    def prometheus_rules_dir(self) -> Path:
        """Drop rule files (*.yaml) here, then POST <prometheus_url>/-/reload."""
        return self.state_dir / "prometheus" / "rules"

    @property
    def fleet_url(self) -> str:
        """The fleet's control endpoint (GET /status, /healthz; POST /faults, /zones/...)."""
        return f"http://127.0.0.1:{self.ports.fleet}"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def rule_globs(self) -> tuple[str, ...]:
        if self.rule_files is not None:
            return self.rule_files
        return (str(self.prometheus_rules_dir / "*.yaml"),)

    def with_(self, **changes: object) -> ClusterConfig:
        return replace(self, **changes)  # type: ignore[arg-type]


def repo_root() -> Path:
    """The checkout whose .local/ holds cluster state: $DEEPSEEK_REPO_ROOT, else the source tree
    this package was installed from (editable install), else the current directory."""
    env = os.environ.get("DEEPSEEK_REPO_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[2]
    if (here / "scripts" / "build-tools.sh").exists():
        return here
    return Path.cwd().resolve()


def cache_dir() -> Path:
    return Path(os.environ.get("DEEPSEEK_CACHE", Path.home() / ".cache" / "deepseek-operator"))


REGIONS: dict[str, tuple[int, int]] = {
    # region: (port base, network octet)
    "us-east": (24000, 16),
    "eu-west": (25000, 32),
}


@dataclass(frozen=True)
class Profile:
    """A pair of local clusters with state, ports and addresses of its own.

    `demo` is what `make demo` and `make cluster` run; `test` is what the e2e suites run;
    `bench` (a single region) is what the scale benchmark runs. Two
    profiles never share a state directory, a port or a network octet, so whatever the demo
    left in its clusters (a DeepSeekDeployment, its pods, a namespace) is not in the tests'
    cluster, and both can even run at once.
    """

    name: str
    state_root: str  # <repo>/.local/<state_root>/<region>
    regions: dict[str, tuple[int, int]]  # region: (port base, network octet)


PROFILES: dict[str, Profile] = {
    "demo": Profile("demo", "cluster", REGIONS),
    "test": Profile("test", "test-cluster", {"us-east": (27000, 64), "eu-west": (28000, 80)}),
    # `make bench-scale` (bench/scale.py): one region of its own, started and purged by the
    # benchmark, so a run never touches the demo's or the tests' clusters.
    "bench": Profile("bench", "bench-cluster", {"us-east": (29000, 96)}),
}
DEFAULT_PROFILE = "demo"
PROFILE_ENV = "DEEPSEEK_CLUSTER_PROFILE"


def default_profile() -> str:
    """$DEEPSEEK_CLUSTER_PROFILE, else the demo's. The e2e session sets it to `test`, so every
    process it starts that finds a region by name (`python -m testbed.sim ... --region us-east`)
    finds the tests' cluster, not the demo's."""
    name = os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(f"${PROFILE_ENV}={name!r}: not one of {', '.join(sorted(PROFILES))}")
    return name


def profile_regions(profile: str | None = None) -> dict[str, tuple[int, int]]:
    """Region -> (port base, network octet) of a profile (default: default_profile())."""
    return PROFILES[profile or default_profile()].regions


def default_fleet_load_time_scale() -> float:
    """$DEEPSEEK_SIM_LOAD_TIME_SCALE, else DEFAULT_FLEET_LOAD_TIME_SCALE."""
    raw = os.environ.get("DEEPSEEK_SIM_LOAD_TIME_SCALE")
    return float(raw) if raw else DEFAULT_FLEET_LOAD_TIME_SCALE


def region_configs(
    *,
    fleet: bool = True,
    start_delay_s: float = 3.0,
    root: Path | None = None,
    fleet_load_time_scale: float | None = None,
    profile: str | None = None,
) -> list[ClusterConfig]:
    """The two clusters of a profile (PROFILES; default: default_profile()): us-east and
    eu-west."""
    base = root or repo_root()
    prof = PROFILES[profile or default_profile()]
    scale = (
        default_fleet_load_time_scale() if fleet_load_time_scale is None else fleet_load_time_scale
    )
    return [
        ClusterConfig(
            name=region,
            region=region,
            port_base=ports,
            octet=octet,
            fleet=fleet,
            fleet_load_time_scale=scale,
            start_delay_s=start_delay_s,
            repo_root=base,
            state_root=prof.state_root,
        )
        for region, (ports, octet) in prof.regions.items()
    ]
