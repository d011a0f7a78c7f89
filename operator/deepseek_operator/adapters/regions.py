"""Member region I/O: read what `failover.judge` needs from each member region, and read and
write this resource's copy there (what to write is `propagation`'s decision).

A region without `kubeconfigSecretRef` is the cluster the operator runs in: its observation
comes from what the reconcile already read (ready pods of the active colour) and from the
operator's own Prometheus snapshot. A remote region is read through the kubeconfig in the
referenced Secret (the DeepSeekDeployment of the same namespace/name there, its status) and,
when `prometheusUrl` is set, through the snapshot the signal poller keeps for that URL. No
decisions are made here.

Errors become `RegionUnreachable` (or `RegionApiError` with the HTTP status), whose message is
what status and Events show; `HomeApiUnavailable` when it was this cluster's API server that
did not answer (the Secret could not be read), which says nothing about the region.
"""

from __future__ import annotations

import base64
import logging
import threading
from typing import Any, cast

import yaml
from kubernetes import client, config

from ..api.base import GROUP, PLURAL, VERSION
from ..api.spec import RegionSpec
from ..failover import Observation
from ..signals import Signal
from .prometheus import SignalPoller, Snapshot

log = logging.getLogger("deepseek_operator.regions")

REQUEST_TIMEOUT = 5.0  # seconds; a region that cannot answer in time fails the check


def prometheus_view(
    url: str | None, snap: Snapshot | None, namespace: str, name: str, colour: str | None
) -> dict[str, Any]:
    """The Prometheus part of an Observation, from the poller's latest snapshot of `url`."""
    if url is None:
        return {}
    if snap is None:
        return {"prometheus_url": url, "polled": False}
    err = snap.errors.get(Signal.PODS_REPORTING)
    reporting = snap.signals(namespace, name, colour).get(Signal.PODS_REPORTING) if colour else None
    return {
        "prometheus_url": url,
        "polled": True,
        "prometheus_error": err,
        "reporting": reporting,
    }


class RegionReader:
    """Reads remote regions through kubeconfigs kept in Secrets (clients cached per Secret
    version)."""

    def __init__(self, core: client.CoreV1Api, poller: SignalPoller) -> None:
        self.core = core
        self.poller = poller
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str, str], tuple[str, client.ApiClient]] = {}

    def _client(self, namespace: str, secret: str, key: str) -> client.ApiClient:
        try:
            s = self.core.read_namespaced_secret(
                secret, namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except client.ApiException as e:
            if e.status not in (429,) and not 500 <= (e.status or 0) < 600:
                raise  # 403, 404: the Secret (or its RBAC) is wrong, said as the region's error
            raise HomeApiUnavailable(
                f"cannot read Secret {secret} (kubeconfigSecretRef): this cluster's API server "
                f"answered {e.status} {e.reason}"
            ) from e
        except Exception as e:  # connection refused, timeout: this cluster's API server is gone
            raise HomeApiUnavailable(
                f"cannot read Secret {secret} (kubeconfigSecretRef): this cluster's API server "
                f"did not answer: {_short(e)}"
            ) from e
        version = (s.metadata.resource_version if s.metadata else None) or ""
        with self._lock:
            cached = self._clients.get((namespace, secret, key))
            if cached is not None and cached[0] == version:
                return cached[1]
        raw = (s.data or {}).get(key)
        if raw is None:
            raise LookupError(f"Secret {secret} has no key {key}")
        cfg = yaml.safe_load(base64.b64decode(raw))
        api = cast(client.ApiClient, config.new_client_from_config_dict(cfg))  # type: ignore[no-untyped-call]
        with self._lock:
            self._clients[(namespace, secret, key)] = (version, api)
        return api

    def _api(self, namespace: str, region: RegionSpec) -> client.CustomObjectsApi:
        ref = region.kubeconfig_secret_ref
        assert ref is not None, "local regions are observed by the reconcile"
        try:
            return client.CustomObjectsApi(self._client(namespace, ref.name, ref.key))
        except HomeApiUnavailable:
            raise
        except client.ApiException as e:
            raise RegionUnreachable(
                f"cannot read Secret {ref.name} (kubeconfigSecretRef): {e.status} {e.reason}"
            ) from e
        except Exception as e:  # bad base64/YAML/kubeconfig: say so, do not crash the loop
            raise RegionUnreachable(f"Secret {ref.name} key {ref.key}: {_short(e)}") from e

    def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, _request_timeout=REQUEST_TIMEOUT, **kw)
        except client.ApiException as e:
            raise RegionApiError(e.status, f"region API answered {e.status} {e.reason}") from e
        except Exception as e:  # connection refused, timeout, TLS
            raise RegionUnreachable(f"region API unreachable: {_short(e)}") from e

    def get_copy(self, namespace: str, name: str, region: RegionSpec) -> dict[str, Any] | None:
        """The region's DeepSeekDeployment of this namespace/name, None when there is none.
        Raises RegionUnreachable."""
        api = self._api(namespace, region)
        try:
            obj = self._call(
                api.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
            )
        except RegionApiError as e:
            if e.status == 404:
                return None
            raise
        return cast(dict[str, Any], obj)

    def create_copy(self, region: RegionSpec, body: dict[str, Any]) -> None:
        ns = body["metadata"]["namespace"]
        api = self._api(ns, region)
        self._call(api.create_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, body)

    def update_copy(
        self,
        region: RegionSpec,
        existing: dict[str, Any],
        spec: dict[str, Any],
        annotations: dict[str, str],
    ) -> None:
        """Replace the copy's spec (optimistic: fails if it changed since it was read)."""
        meta = existing["metadata"]
        ns, name = meta["namespace"], meta["name"]
        body = {
            "apiVersion": existing.get("apiVersion", f"{GROUP}/{VERSION}"),
            "kind": existing.get("kind"),
            "metadata": {
                **meta,
                "annotations": {**(meta.get("annotations") or {}), **annotations},
            },
            "spec": spec,
        }
        api = self._api(ns, region)
        self._call(api.replace_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, name, body)

    def delete_copy(self, region: RegionSpec, existing: dict[str, Any]) -> None:
        """Delete the copy that was read (precondition on its UID: never a newer object)."""
        meta = existing["metadata"]
        ns, name = meta["namespace"], meta["name"]
        api = self._api(ns, region)
        try:
            self._call(
                api.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                ns,
                PLURAL,
                name,
                body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=meta["uid"])),
            )
        except RegionApiError as e:
            if e.status != 404:
                raise

    def observation(
        self, namespace: str, name: str, region: RegionSpec, obj: dict[str, Any] | None
    ) -> Observation:
        """What a health check needs from the region's copy as `get_copy` read it."""
        if obj is None:
            return Observation(found=False)
        status = obj.get("status") or {}
        colour = status.get("activeColour")
        url = region.prometheus_url
        desired = status.get("desiredReplicas")
        return Observation(
            ready=int(status.get("readyReplicas") or 0),
            desired=int(desired) if desired is not None else None,
            **prometheus_view(
                url, self.poller.latest(url) if url else None, namespace, name, colour
            ),
        )


class RegionUnreachable(Exception):
    """A member region's API, or the Secret that reaches it, could not be used."""


class HomeApiUnavailable(RegionUnreachable):
    """The region's kubeconfig Secret could not be read because this cluster's own API server
    did not answer (refused, timed out, 5xx, 429): nothing was learnt about the region itself,
    so a health check takes no verdict from it (a copy sync still reports it unreachable)."""


class RegionApiError(RegionUnreachable):
    """The member region's API answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[-1] if text else type(e).__name__)[:300]
