"""`deepseek-operator run`: configure the adapters and start Kopf."""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys

import kopf
from kubernetes import client, config
from prometheus_client import start_http_server

from . import __version__
from .adapters import metrics
from .adapters.events import EventRecorder
from .adapters.kube import Kube
from .adapters.prometheus import SignalPoller


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("kubernetes", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _load_kube_config(kubeconfig: str | None) -> client.ApiClient:
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    else:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def run_operator(args: argparse.Namespace) -> int:
    _configure_logging(args.verbose)
    api = _load_kube_config(args.kubeconfig)

    from . import handlers

    handlers.RUNTIME = handlers.Runtime(
        kube=Kube(api),
        events=EventRecorder(api),
        poller=SignalPoller(),
        prometheus_url=args.prometheus_url,
        signal_interval=args.signal_interval,
    )

    @kopf.on.login()
    def _login(**kwargs: object) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)  # type: ignore[arg-type]

    metrics.INFO.info({"version": __version__})
    start_http_server(args.metrics_port, addr=args.bind_address, registry=metrics.REGISTRY)
    namespaces = list(args.namespace or [])
    # Distinct priorities make Kopf peering a leader election: the highest-priority replica
    # works, the others stay paused until its peering record expires.
    priority = None if args.standalone else random.SystemRandom().randint(1, 2**30)
    logging.getLogger("deepseek_operator").info(
        "starting version=%s namespaces=%s peering=%s priority=%s prometheus=%s",
        __version__,
        namespaces or "all",
        None if args.standalone else args.peering,
        priority,
        args.prometheus_url,
    )
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=args.standalone,
        peering_name=None if args.standalone else args.peering,
        priority=priority,
        liveness_endpoint=f"http://{args.bind_address}:{args.health_port}/healthz",
    )
    return 0
