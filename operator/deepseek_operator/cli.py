"""`deepseek-operator` command line: run the operator, print the CRD, print the version."""

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


def monitor_label(text: str) -> tuple[str, str]:
    """`KEY=VALUE` of --monitor-label, checked as a Kubernetes label."""
    from .api.spec import label_problem

    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    problem = label_problem(key, value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return key, value


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
    run.add_argument(
        "--monitor-label",
        type=monitor_label,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label of every PodMonitor and PrometheusRule the operator creates (repeatable), "
        "e.g. release=kube-prometheus-stack, the label a kube-prometheus-stack Prometheus "
        "selects them by; a resource's spec.monitoring.labels win over these",
    )
    run.add_argument(
        "--runbook-base-url",
        default=None,
        help="base URL of the runbooks the per-deployment alerts link (<url>/<alert>.md); "
        "default: the project's docs/runbooks on GitHub",
    )
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=_run)

    crd = sub.add_parser(
        "crd", help="print the DeepSeekDeployment CRD (YAML) generated from the models"
    )
    crd.set_defaults(func=_crd)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_version)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    return func(args)
