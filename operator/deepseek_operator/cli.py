"""`deepseek-operator` command line: run the operator, print the CRD, and local tooling."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import __version__

Command = Callable[[argparse.Namespace], int]


def _crd(_: argparse.Namespace) -> int:
    from .api.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def _version(_: argparse.Namespace) -> int:
    print(f"deepseek-operator {__version__}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from .operator_main import run_operator

    return int(run_operator(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepseek-operator",
        description="Kubernetes operator for DeepSeek models on vLLM (DeepSeekDeployment, dsd).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the operator (Kopf)")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument(
        "--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube/config)"
    )
    run.add_argument(
        "--prometheus-url",
        default=None,
        help="Prometheus to query for signals, unless a DeepSeekDeployment names its own",
    )
    run.add_argument(
        "--metrics-port", type=int, default=8080, help="port of the operator's /metrics"
    )
    run.add_argument("--health-port", type=int, default=8081, help="port of /healthz (liveness)")
    run.add_argument(
        "--bind-address",
        default="0.0.0.0",
        help="address the /metrics and /healthz servers listen on",
    )
    run.add_argument(
        "--signal-interval",
        type=float,
        default=10.0,
        help="seconds between two polls of Prometheus (one query per signal for all resources)",
    )
    run.add_argument(
        "--peering",
        default="deepseek-operator",
        help="Kopf peering name used for leader election between operator replicas",
    )
    run.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority of this replica (the highest one works); default: random",
    )
    run.add_argument(
        "--standalone",
        action="store_true",
        help="no peering/leader election (a single replica, e.g. during development)",
    )
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=_run)

    crd = sub.add_parser(
        "crd", help="print the DeepSeekDeployment CRD (YAML) generated from the models"
    )
    crd.set_defaults(func=_crd)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_version)

    from .localcluster.cli import add_parser as add_cluster_parser

    add_cluster_parser(sub)

    demo = sub.add_parser(
        "demo", help="local cluster + fleet + operator; an example scaling under a load step"
    )
    demo.add_argument(
        "action",
        nargs="?",
        choices=["up", "down", "clean"],
        default="up",
        help="up: run the demo; down: stop it (state kept); clean: stop and delete the state of "
        "every local cluster (the demo's and the tests') and the demo's logs",
    )
    demo.add_argument("--duration", type=float, default=240.0, help="seconds of load")
    demo.add_argument("--rate", type=float, default=2.0, help="base request rate (req/s)")
    demo.add_argument("--burst", type=float, default=24.0, help="request rate of the burst")
    demo.set_defaults(func=_demo)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from .localcluster import demo

    if args.action == "down":
        return demo.down()
    if args.action == "clean":
        return demo.clean()
    return demo.up(duration=args.duration, rate=args.rate, burst=args.burst)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    return func(args)
