"""`python -m testbed cluster up|down|status` (wired into the parser by testbed/__main__.py)."""

from __future__ import annotations

import argparse

from .config import (
    PROFILES,
    cache_dir,
    default_fleet_load_time_scale,
    region_configs,
)
from .runner import ClusterError, LocalCluster, RegionInfo


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "cluster",
        help="local GPU cluster: real control plane, kwok GPU nodes, Prometheus (two regions)",
    )
    csub = p.add_subparsers(dest="cluster_command", required=True)
    up = csub.add_parser("up", help="start both regions, or reuse them if they run")
    _profile_arg(up)
    up.add_argument(
        "--no-fleet",
        action="store_true",
        help="run no simulated fleet: engine pods become Ready after the start delay",
    )
    up.add_argument(
        "--fleet-load-time-scale",
        type=float,
        default=None,
        help="the fleet's model load time multiplier (default: $DEEPSEEK_SIM_LOAD_TIME_SCALE, "
        f"else {default_fleet_load_time_scale():g}: a 7B cold start in ~1-2 s)",
    )
    up.add_argument(
        "--start-delay", type=float, default=3.0, help="seconds until ordinary pods are Ready"
    )
    up.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for readiness")
    up.set_defaults(func=_up)
    down = csub.add_parser("down", help="stop every process of both regions")
    down.add_argument(
        "--purge", action="store_true", help="also delete the state (etcd, certificates, TSDB)"
    )
    _profile_arg(down)
    down.set_defaults(func=_down)
    st = csub.add_parser("status", help="what runs, where, and whether it is healthy")
    _profile_arg(st)
    st.set_defaults(func=_status)


def _profile_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=None,
        help="which pair of clusters: 'demo' (make demo, make cluster; .local/cluster) or "
        "'test' (the e2e suites'; .local/test-cluster); they share no state, port or address. "
        "Default: $DEEPSEEK_CLUSTER_PROFILE, else demo",
    )


def _cluster(args: argparse.Namespace) -> LocalCluster:
    return LocalCluster(region_configs(profile=args.profile))


def _print_info(regions: dict[str, RegionInfo]) -> None:
    for r in regions.values():
        print(f"{r.name}:")
        print(f"  kubeconfig   {r.kubeconfig}   (context {r.context})")
        print(f"  api server   {r.api_url}")
        print(f"  prometheus   {r.prometheus_url}   (web/API port {r.ports['prometheus']})")
        if r.fleet_url:
            print(
                f"  fleet        {r.fleet_url}   (simulated GPUs: /status, POST /faults; "
                f"load-time scale {r.fleet_load_time_scale:g}; log {r.log_dir / 'fleet.log'})"
            )
        else:
            print("  fleet        off (--no-fleet: engine pods Ready after the start delay)")
        print(f"  file_sd      {r.prometheus_targets_dir}/*.json")
        print(f"  rules        {r.prometheus_rules_dir}/*.yaml   (then POST /-/reload)")
        print(f"  logs         {r.log_dir}")
        print(
            f"  zones        {', '.join(r.zones)};  node IPs 10.{r.octet}.0.k -> 127.{r.octet}.0.k"
        )
    first = next(iter(regions.values()))
    print(f"\n  export KUBECONFIG={first.kubeconfig}")
    print(f"  {cache_dir() / 'bin' / 'kubectl'} get nodes -L topology.kubernetes.io/zone")


def _up(args: argparse.Namespace) -> int:
    cluster = LocalCluster(
        region_configs(
            profile=args.profile,
            fleet=not args.no_fleet,
            start_delay_s=args.start_delay,
            fleet_load_time_scale=args.fleet_load_time_scale,
        )
    )
    try:
        regions = cluster.up(timeout_s=args.timeout)
    except ClusterError as e:
        print(f"cluster up failed: {e}")
        return 1
    _print_info(regions)
    return 0


def _down(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    stopped = cluster.down(purge=args.purge)
    print(f"stopped {len(stopped)} processes" if stopped else "nothing was running")
    where = sorted({str(c.state_dir.parent) for c in cluster.configs})
    if args.purge:
        print(f"deleted the state in {', '.join(where)}")
    else:
        print(
            f"kept the state in {', '.join(where)} (etcd data with every object, certificates, "
            "Prometheus data): the next `up` starts from it; `make clean` deletes it"
        )
    return 0


def _status(args: argparse.Namespace) -> int:
    statuses = _cluster(args).status()
    code = 0
    for name, st in statuses.items():
        state = "healthy" if st.healthy else ("stopped" if st.stopped else "DEGRADED")
        print(f"{name}: {state}; nodes Ready {st.nodes_ready}/{st.nodes_total}")
        for c in st.components:
            flag = "ok" if c.healthy else ("running, not healthy" if c.running else "not running")
            print(f"  {c.name:24} pid {c.pid or '-':>7}  {flag}")
        if not st.healthy:
            code = 1
    _print_info({n: s.info for n, s in statuses.items()})
    return code
