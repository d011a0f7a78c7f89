"""`deepseek-operator run`: configure the adapters and start Kopf."""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import kopf
from kubernetes import client
from prometheus_client import start_http_server

from . import __version__
from .adapters import metrics
from .adapters.events import EventRecorder
from .adapters.kube import Kube, load_api
from .adapters.prometheus import SignalPoller
from .adapters.regions import RegionReader
from .adapters.store import Store
from .desired import MonitoringSettings


def monitoring_settings(args: argparse.Namespace) -> MonitoringSettings:
    """--monitor-label (the last one of a key wins) and --runbook-base-url."""
    settings = MonitoringSettings(labels=dict(args.monitor_label or []))
    if args.runbook_base_url:
        settings = replace(settings, runbook_base_url=args.runbook_base_url)
    return settings


# Kopf's messages that carry a whole object, its diff or a patch of it (with its
# last-handled-configuration annotation, a copy of the spec): with --verbose it logs
# "Creation is in progress: {body}", and a warning (which it also posts as an Event) can quote
# a patch. A spec may hold tokens (engine.env[].value), so only the words before the payload
# are kept.
_KOPF_PAYLOAD = re.compile(
    r"^(?P<head>.*?(?: is in progress| diff|Merge-patching the resource with"
    r"|finished with inconsistencies)): "
)
_SPEC_MARKERS = ("'spec'", '"spec"', "last-handled-configuration")
REDACTED = "<object not logged: it may hold secret values>"


def redact_kopf_message(message: str) -> str:
    """A Kopf log message without the object, diff or patch it would print."""
    m = _KOPF_PAYLOAD.match(message)
    if m:
        return f"{m['head']}: {REDACTED}"
    if any(marker in message for marker in _SPEC_MARKERS):
        head, sep, _ = message.partition(": ")
        return f"{head}: {REDACTED}" if sep else REDACTED
    return message


class _RedactKopfPayloads(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_kopf_message(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("kubernetes", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # On the logger, not a handler: it runs before the log line and before Kopf's Event poster
    # (a handler of this logger).
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _RedactKopfPayloads) for f in objects.filters):
        objects.addFilter(_RedactKopfPayloads())


def _load_kube_config(kubeconfig: str | None, connections: int | None = None) -> client.ApiClient:
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig  # Kopf's own login reads it
    return load_api(kubeconfig, connections)


def _connection_info(cfg: client.Configuration) -> kopf.ConnectionInfo:
    """Kopf's credentials from the client configuration loaded above (the same kubeconfig or
    in-cluster account the adapters use; Kopf's own loader would only read the default paths)."""
    if cfg.refresh_api_key_hook is not None:  # in-cluster: re-read the rotated token
        cfg.refresh_api_key_hook(cfg)
    token = None
    auth = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
    if auth:
        token = auth.removeprefix("Bearer ").strip()
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
        token=token,
        default_namespace=None,
    )


def _ensure_peering(
    api: client.ApiClient, name: str, targets: list[str | None], quiet: bool = False
) -> list[str | None]:
    """Create the Kopf peering object(s) when missing: Kopf keeps every watch paused until the
    peering it is told to use exists, so a first start would otherwise do nothing. Already there
    (the Helm chart creates it): left as is. Returns the namespaces (None: cluster-wide) where it
    could not be created yet: the namespace does not exist yet or is being deleted, or creating
    it is not allowed; Kopf says what it waits for."""
    custom = client.CustomObjectsApi(api)
    log = logging.getLogger("deepseek_operator")
    body: dict[str, object] = {"apiVersion": "kopf.dev/v1", "metadata": {"name": name}}
    missing: list[str | None] = []
    for ns in targets:
        try:
            if ns is None:
                custom.create_cluster_custom_object(
                    "kopf.dev", "v1", "clusterkopfpeerings", {**body, "kind": "ClusterKopfPeering"}
                )
            else:
                custom.create_namespaced_custom_object(
                    "kopf.dev", "v1", ns, "kopfpeerings", {**body, "kind": "KopfPeering"}
                )
            log.info("peering_created name=%s namespace=%s", name, ns or "<cluster>")
        except client.ApiException as e:
            if e.status not in (403, 404, 409):
                raise
            if e.status != 409:
                missing.append(ns)
                if not quiet:
                    log.warning(
                        "peering_not_created name=%s namespace=%s status=%s: retrying every "
                        "%ss; create it (crds/kopf-peering.yaml defines the kind) or run with "
                        "--standalone",
                        name,
                        ns or "<cluster>",
                        e.status,
                        PEERING_RETRY_SECONDS,
                    )
    return missing


PEERING_RETRY_SECONDS = 5.0


def _keep_ensuring_peering(api: client.ApiClient, name: str, missing: list[str | None]) -> None:
    """Retry in the background until every peering object exists (a namespace the operator
    watches may be created, or finish being deleted and be created again, after it starts)."""

    def loop() -> None:
        left = missing
        while left:
            time.sleep(PEERING_RETRY_SECONDS)
            try:
                left = _ensure_peering(api, name, left, quiet=True)
            except Exception:  # pragma: no cover - an API hiccup: try again
                logging.getLogger("deepseek_operator").exception("peering_retry_failed")

    threading.Thread(target=loop, name="peering", daemon=True).start()


def run_operator(args: argparse.Namespace) -> int:
    _configure_logging(args.verbose)
    # Every reconcile thread and the signal poller may talk to the API server at once.
    api = _load_kube_config(args.kubeconfig, args.reconcile_workers + 4)

    from . import handlers

    kube = Kube(api, Store())
    kube.learn_server_version()
    poller = SignalPoller()
    handlers.RUNTIME = handlers.Runtime(
        kube=kube,
        events=EventRecorder(api),
        poller=poller,
        prometheus_url=args.prometheus_url,
        signal_interval=args.signal_interval,
        reconcile_pool=ThreadPoolExecutor(args.reconcile_workers, thread_name_prefix="reconcile"),
        regions=RegionReader(kube.core, poller),
        monitoring=monitoring_settings(args),
    )

    @kopf.on.login()
    def _login(**_: object) -> kopf.ConnectionInfo:
        return _connection_info(api.configuration)

    metrics.INFO.info({"version": __version__})
    start_http_server(args.metrics_port, addr=args.bind_address, registry=metrics.REGISTRY)
    namespaces = list(args.namespace or [])
    if not args.standalone:
        missing = _ensure_peering(api, args.peering, list(namespaces) or [None])
        if missing:
            _keep_ensuring_peering(api, args.peering, missing)
    # Distinct priorities make Kopf peering a leader election: the highest-priority replica
    # works, the others stay paused until its peering record expires.
    priority = None
    if not args.standalone:
        priority = args.priority or random.SystemRandom().randint(1, 2**30)
    logging.getLogger("deepseek_operator").info(
        "starting version=%s namespaces=%s peering=%s identity=%s priority=%s prometheus=%s "
        "monitor_labels=%s kube_version=%s pre_stop=%s",
        __version__,
        namespaces or "all",
        None if args.standalone else args.peering,
        args.identity or "generated",
        priority,
        args.prometheus_url,
        handlers.RUNTIME.monitoring.labels,
        kube.server_version or "unknown",
        "sleep" if kube.sleep_action else "exec",
    )
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=args.standalone,
        peering_name=None if args.standalone else args.peering,
        priority=priority,
        # The same name across restarts of one pod: Kopf takes a record of its own identity as
        # itself, so a restarted container is not paused behind its dead predecessor's record.
        identity=args.identity or None,
        liveness_endpoint=f"http://{args.bind_address}:{args.health_port}/healthz",
    )
    return 0
