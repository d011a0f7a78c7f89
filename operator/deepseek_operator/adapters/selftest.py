"""Reads for `deepseek-operator selftest`: what the pure checks in selftest.py judge. Each read
returns None (or the error) instead of raising, so every check gets its line."""

from __future__ import annotations

from typing import Any, cast

from kubernetes import client

from ..api.base import GROUP, PLURAL, VERSION


def _reason(e: client.ApiException) -> str:
    return f"{e.status} {e.reason}"


class SelftestReader:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)

    def count_dsds(self, namespace: str) -> tuple[int | None, str | None]:
        try:
            listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        except client.ApiException as e:
            return None, _reason(e)
        return len(cast(dict[str, Any], listed).get("items") or []), None

    def peering(self, namespace: str | None, name: str) -> tuple[dict[str, Any] | None, str]:
        """The peering object and how to name it in a message."""
        where = (
            f"ClusterKopfPeering {name}" if namespace is None else f"KopfPeering {namespace}/{name}"
        )
        try:
            if namespace is None:
                obj = self.custom.get_cluster_custom_object(
                    "kopf.dev", "v1", "clusterkopfpeerings", name
                )
            else:
                obj = self.custom.get_namespaced_custom_object(
                    "kopf.dev", "v1", namespace, "kopfpeerings", name
                )
        except client.ApiException as e:
            if e.status == 404:
                return None, where
            raise
        return cast(dict[str, Any], obj), where

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = self.apps.read_namespaced_deployment(name, namespace)
        except client.ApiException as e:
            if e.status == 404:
                return None
            raise
        return cast(dict[str, Any], self.api.sanitize_for_serialization(obj))  # type: ignore[no-untyped-call]
