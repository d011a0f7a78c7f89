"""`deepseek-operator` command line: run the operator, check an install (`selftest`, the chart's
`helm test`), print the CRD, print the version."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from . import __version__

Command = Callable[[argparse.Namespace], int]


def _positive_int(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


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


def _selftest(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from kubernetes import client

    from . import selftest
    from .adapters.kube import load_api
    from .adapters.selftest import SelftestReader

    reader = SelftestReader(load_api(args.kubeconfig))
    listed, error = reader.count_dsds(args.namespace)
    checks = [selftest.api_check(args.namespace, listed, error)]
    try:
        if args.peering:
            for ns in args.peering_namespace or [None]:
                peering, where = reader.peering(ns, args.peering)
                now = datetime.now(UTC)
                checks.append(selftest.peering_check(where, peering, now))
        else:
            deployment = reader.deployment(args.namespace, args.deployment)
            checks.append(selftest.deployment_check(args.deployment, deployment))
    except client.ApiException as e:
        checks.append(
            selftest.Check("operator", False, f"reading it failed: {e.status} {e.reason}")
        )
    lines, code = selftest.verdict(checks)
    for line in lines:
        print(line, flush=True)
    return code


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
        "--reconcile-workers",
        type=_positive_int,
        default=16,
        help="threads that run reconciles at once; a reconcile mostly waits for the API server, "
        "so there are more of them than cores (the signal poller has a thread of its own)",
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
        "--identity",
        default=os.environ.get("POD_NAME") or None,
        help="this replica's name in the peering object; default: the POD_NAME environment "
        "variable (the chart sets it to the pod's name), else one Kopf makes up per start. A "
        "process restarted in the same pod then takes its own record over at once instead of "
        "waiting for it to expire (Kopf's 60 s) behind its earlier priority",
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

    test = sub.add_parser(
        "selftest",
        help="check an install: the DeepSeekDeployment API is served and the operator is up "
        "(the chart's `helm test`); exit 0 when both hold",
    )
    test.add_argument(
        "-n", "--namespace", required=True, help="namespace to list DeepSeekDeployments in"
    )
    test.add_argument(
        "--peering",
        default=None,
        help="the operator's Kopf peering name: a peer in it must be alive",
    )
    test.add_argument(
        "--peering-namespace",
        action="append",
        default=[],
        help="namespace of a KopfPeering (repeatable); none: the ClusterKopfPeering",
    )
    test.add_argument(
        "--deployment",
        default="deepseek-operator",
        help="without --peering: the operator Deployment (in --namespace) that must have an "
        "available replica",
    )
    test.add_argument(
        "--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)"
    )
    test.set_defaults(func=_selftest)

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
