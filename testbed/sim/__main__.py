"""Command line of the simulated GPU fleet: `python -m testbed.sim COMMAND ...`.

    fleet   play the GPU nodes of local clusters: a simulated vLLM per engine pod, the real
            vllm-router per router pod, a dcgm-exporter per GPU node, fault hooks (see fleet.py)
    router  the front door: balance over a Service's ready EndpointSlice endpoints
    load    replay a trace (Azure CSV, or a synthetic pattern) against a URL; JSON summary
    fault   set or clear faults on engine pods (pod annotations the fleet follows)
    zone    take a zone's nodes away, or give them back

Regions are the clusters of `make cluster` (`--region us-east`, state in
`.local/cluster/<region>/`); `--kubeconfig PATH` points at any other cluster.
Environment: DEEPSEEK_SIM_LOAD_TIME_SCALE (default for `fleet --load-time-scale`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .faults import FaultRequest, PodSelector, parse_label_selector

log = logging.getLogger("testbed.sim")

ROUTER_PORT_OFFSET = 80  # router of a local region: its port base + 80 (us-east 24080)


def _one_region(args: argparse.Namespace) -> Any:
    regions = _regions(args)
    if len(regions) != 1:
        raise SystemExit("say which cluster: one --region or --kubeconfig")
    return regions[0]


def _regions(args: argparse.Namespace) -> list[Any]:
    from .fleet import RegionConfig

    if args.kubeconfig:
        name = args.name or Path(args.kubeconfig).parent.name or "cluster"
        targets = Path(args.targets_dir) if getattr(args, "targets_dir", None) else None
        state = Path(args.state_dir) if getattr(args, "state_dir", None) else None
        return [RegionConfig(name, Path(args.kubeconfig), targets, state)]
    regions = args.region or []
    if not regions:
        from testbed.cluster.config import profile_regions

        regions = list(profile_regions())
    return [RegionConfig.local(r) for r in regions]


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _fleet(args: argparse.Namespace) -> int:
    from .fleet import Fleet

    fleet = Fleet(
        _regions(args),
        load_time_scale=args.load_time_scale,
        dcgm_port=args.dcgm_port,
        control_port=args.control_port,
        file_sd=not args.no_file_sd,
        namespaces=args.namespace,
        dcgm=not args.no_dcgm,
        file_sd_engines=args.file_sd_engines,
    )
    await fleet.start()
    print(json.dumps({"control": fleet.control_url, "regions": list(fleet.regions)}), flush=True)
    try:
        await _until_signal()
    finally:
        await fleet.close()
    return 0


def _kube(region: Any) -> tuple[Any, Any]:
    from kubernetes import client
    from kubernetes import config as kconfig

    cfg: Any = kconfig
    api = cfg.new_client_from_config(config_file=str(region.kubeconfig), context=region.context)
    return api, client.CoreV1Api(api)


async def _router(args: argparse.Namespace) -> int:
    from testbed.cluster.config import profile_regions

    from .router import Router, local_cluster_address, parse_route, register_file_sd

    region = _one_region(args)
    port = args.port
    if port is None:
        bases = profile_regions()
        port = bases[region.name][0] + ROUTER_PORT_OFFSET if region.name in bases else 0
    router = Router(
        [parse_route(r) for r in args.route],
        host=args.host,
        port=port,
        address_map=None if args.no_address_map else local_cluster_address,
    )
    api, _core = _kube(region)
    await router.start()
    router.watch(api)
    registered: Path | None = None
    if region.targets_dir is not None and not args.no_file_sd:
        registered = register_file_sd(
            region.targets_dir,
            f"sim-router-{args.router_name}",
            f"{router.host}:{router.port}",
            {"job": "sim-router", "region": region.name, "router": args.router_name},
        )
    print(json.dumps({"url": router.url, "region": region.name}), flush=True)
    try:
        await _until_signal()
    finally:
        await router.close()
        api.close()
        if registered is not None:
            with contextlib.suppress(OSError):
                registered.unlink()
    return 0


def build_trace(args: argparse.Namespace) -> Any:
    """The trace a `load` command asks for (traces.py), time-scaled and windowed."""
    from . import traces

    kind = args.trace
    if kind == "azure" or kind.endswith(".csv"):
        path = args.trace_file or (kind if kind.endswith(".csv") else None)
        if path is None:
            raise SystemExit("--trace azure needs --trace-file PATH (the Azure LLM trace CSV)")
        tr = traces.load_trace(path)
    elif kind == "constant":
        tr = traces.constant(args.rate, args.duration, seed=args.seed)
    elif kind == "bursty":
        tr = traces.bursty(
            args.rate,
            args.duration,
            burst_rate=args.rate * args.burst_factor,
            mean_gap_s=args.burst_gap,
            burst_s=args.burst_len,
            seed=args.seed,
        )
    elif kind == "diurnal":
        tr = traces.diurnal(args.rate, args.duration, period_s=args.period, seed=args.seed)
    elif kind == "step":
        tr = traces.step(args.rate, args.rate * args.burst_factor, args.duration, seed=args.seed)
    else:
        raise SystemExit(f"unknown trace {kind!r}")
    if args.start or args.window:
        end = args.start + args.window if args.window else tr.duration + 1
        tr = traces.window(tr, args.start, end)
    return tr


async def _load(args: argparse.Namespace) -> int:
    from .loadgen import LoadGenerator, LoadRequest

    tr = build_trace(args)
    reqs = [
        LoadRequest(
            r.id,
            min(r.prompt_tokens, args.max_prompt_tokens)
            if args.max_prompt_tokens
            else r.prompt_tokens,
            min(r.max_tokens, args.max_output_tokens) if args.max_output_tokens else r.max_tokens,
            r.arrival,
        )
        for r in tr.requests
    ]
    gen = LoadGenerator(
        args.url,
        model=args.model,
        api=args.api,
        stream=not args.no_stream,
        speedup=args.speedup,
        max_requests=args.max_requests,
        max_duration=args.max_duration,
        drain_timeout=args.drain_timeout,
    )
    result = await gen.run(reqs, trace=tr.name, attribution=tr.attribution)
    result.write(
        Path(args.summary) if args.summary else None,
        Path(args.records) if args.records else None,
    )
    print(result.summary.to_json())
    return 0 if result.summary.failed == 0 else 1


def _fault(args: argparse.Namespace) -> int:
    from .faults import apply_fault_request

    region = _one_region(args)
    req = FaultRequest(
        selector=PodSelector(
            namespace=args.namespace,
            name=args.pod,
            labels=parse_label_selector(args.selector or ""),
            node=args.node,
            zone=args.zone,
        ),
        slow_factor=args.slow,
        error_rate=args.error_rate,
        crash=True if args.crash else None,
        clear=args.clear,
    )
    if not req.clear and req.slow_factor is None and req.error_rate is None and req.crash is None:
        raise SystemExit("nothing to do: give --slow, --error-rate, --crash or --clear")
    api, core = _kube(region)
    try:
        pods = apply_fault_request(core, req)
    finally:
        api.close()
    print(json.dumps({"region": region.name, "pods": pods}))
    return 0 if pods else 1


def _zone(args: argparse.Namespace) -> int:
    from .faults import set_zone_down

    region = _one_region(args)
    api, core = _kube(region)
    try:
        result = set_zone_down(core, args.zone, args.state == "down")
    finally:
        api.close()
    print(json.dumps({"region": region.name, "zone": args.zone, **result}))
    return 0 if result["nodes"] else 1


def _cluster_args(p: argparse.ArgumentParser, many: bool) -> None:
    if many:
        p.add_argument(
            "--region",
            action="append",
            help="local region (repeatable; default: every region of `make cluster`)",
        )
    else:
        p.add_argument("--region", action="append", help="local region, e.g. us-east")
    p.add_argument("--kubeconfig", help="another cluster's kubeconfig instead of a local region")
    p.add_argument("--name", help="name of that cluster (default: the kubeconfig's folder)")
    p.add_argument("--targets-dir", help="Prometheus file_sd folder of that cluster")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m testbed.sim",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("fleet", help="run the simulated fleet")
    _cluster_args(p, many=True)
    p.add_argument(
        "--load-time-scale",
        type=float,
        default=float(os.environ.get("DEEPSEEK_SIM_LOAD_TIME_SCALE", "1")),
        help="multiply every preset's model load time (0.01: 100x faster cold starts)",
    )
    p.add_argument("--dcgm-port", type=int, default=9400)
    p.add_argument("--control-port", type=int, default=0, help="control endpoint port (0: any)")
    p.add_argument("--no-file-sd", action="store_true", help="do not write Prometheus file_sd")
    p.add_argument("--state-dir", help="with --kubeconfig: write fleet.json (control URL) here")
    p.add_argument(
        "--namespace", "-n", action="append", help="play only these namespaces' pods (repeatable)"
    )
    p.add_argument("--no-dcgm", action="store_true", help="serve no dcgm-exporters")
    p.add_argument(
        "--file-sd-engines",
        action="store_true",
        help="register replicas and dcgm-exporters as file_sd targets too (for a Prometheus "
        "without kubernetes_sd)",
    )

    p = sub.add_parser("router", help="run a router over Services' ready endpoints")
    _cluster_args(p, many=False)
    p.add_argument(
        "--route",
        action="append",
        required=True,
        help="[PREFIX=]NAMESPACE/SERVICE[:PORTNAME] (repeatable)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, help="listen port (default: region port base + 80)")
    p.add_argument("--no-address-map", action="store_true", help="do not map 10.x to 127.x")
    p.add_argument("--router-name", default="default", help="names its Prometheus target")
    p.add_argument("--no-file-sd", action="store_true")

    p = sub.add_parser("load", help="replay a trace against an OpenAI URL")
    p.add_argument("--url", required=True, help="e.g. http://127.0.0.1:24080[/PREFIX]")
    p.add_argument(
        "--trace",
        default="bursty",
        help="azure | constant | bursty | diurnal | step | PATH.csv",
    )
    p.add_argument("--trace-file", help="trace CSV for --trace azure")
    p.add_argument("--rate", type=float, default=1.0, help="base request rate (synthetic)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of trace (synthetic)")
    p.add_argument("--burst-factor", type=float, default=4.0, help="burst/step rate multiple")
    p.add_argument("--burst-gap", type=float, default=600.0)
    p.add_argument("--burst-len", type=float, default=120.0)
    p.add_argument("--period", type=float, default=3600.0, help="diurnal period")
    p.add_argument("--start", type=float, default=0.0, help="window start (trace seconds)")
    p.add_argument("--window", type=float, default=0.0, help="window length (0: to the end)")
    p.add_argument("--speedup", type=float, default=1.0, help="replay N times faster")
    p.add_argument("--max-requests", type=int)
    p.add_argument("--max-duration", type=float, help="send nothing after this many seconds")
    p.add_argument("--max-prompt-tokens", type=int)
    p.add_argument("--max-output-tokens", type=int)
    p.add_argument("--drain-timeout", type=float, default=600.0)
    p.add_argument("--api", choices=("completions", "chat"), default="completions")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--model", help="model name (default: the first of /v1/models)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--summary", help="write the JSON summary here")
    p.add_argument("--records", help="write per-request JSON lines here")

    p = sub.add_parser("fault", help="make engine pods slow, erroring or crash (or clear)")
    _cluster_args(p, many=False)
    p.add_argument("--namespace", "-n")
    p.add_argument("--pod")
    p.add_argument("--selector", "-l", help="k=v,... label selector")
    p.add_argument("--node")
    p.add_argument("--zone")
    p.add_argument("--slow", type=float, help="step time factor (>= 1)")
    p.add_argument("--error-rate", type=float, help="fraction of requests failing with 500")
    p.add_argument("--crash", action="store_true")
    p.add_argument("--clear", action="store_true", help="healthy first, then the rest")

    p = sub.add_parser("zone", help="take a zone's nodes away, or give them back")
    _cluster_args(p, many=False)
    p.add_argument("zone")
    p.add_argument("state", choices=("down", "up"))
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    if args.cmd == "fleet":
        return asyncio.run(_fleet(args))
    if args.cmd == "router":
        return asyncio.run(_router(args))
    if args.cmd == "load":
        return asyncio.run(_load(args))
    if args.cmd == "fault":
        return _fault(args)
    if args.cmd == "zone":
        return _zone(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
