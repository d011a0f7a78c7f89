"""Kubernetes Events about a DeepSeekDeployment (core/v1, as `kubectl describe` shows them)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client

from ..api.base import API_VERSION, KIND

log = logging.getLogger("deepseek_operator.events")
COMPONENT = "deepseek-operator"
AGGREGATE_SECONDS = 600.0


@dataclass(frozen=True)
class ObjectRef:
    namespace: str
    name: str
    uid: str | None


class EventRecorder:
    """Posts Events; a repeat of the same reason and message within ten minutes bumps the
    count of the earlier Event instead of adding a new one."""

    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self._recent: dict[tuple[str, str, str, str], tuple[str, int, float]] = {}
        self._lock = threading.Lock()

    def record(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        now = time.time()
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        key = (ref.namespace, ref.name, reason, message)
        log.info(
            "event namespace=%s name=%s type=%s reason=%s message=%r",
            ref.namespace,
            ref.name,
            type_,
            reason,
            message,
        )
        with self._lock:
            prev = self._recent.get(key)
        try:
            if prev is not None and now - prev[2] < AGGREGATE_SECONDS:
                name, count, _ = prev
                self.core.patch_namespaced_event(
                    name, ref.namespace, {"count": count + 1, "lastTimestamp": stamp}
                )
                with self._lock:
                    self._recent[key] = (name, count + 1, now)
                return
            name = f"{ref.name}.{uuid.uuid4().hex[:12]}"
            body: dict[str, Any] = {
                "metadata": {"name": name, "namespace": ref.namespace},
                "involvedObject": {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": ref.name,
                    "namespace": ref.namespace,
                    "uid": ref.uid,
                },
                "type": type_,
                "reason": reason,
                "message": message[:1024],
                "source": {"component": COMPONENT},
                "reportingComponent": COMPONENT,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            }
            self.core.create_namespaced_event(ref.namespace, body)  # type: ignore[arg-type]
            with self._lock:
                self._recent[key] = (name, 1, now)
                if len(self._recent) > 10000:
                    cutoff = now - AGGREGATE_SECONDS
                    self._recent = {k: v for k, v in self._recent.items() if v[2] >= cutoff}
        # An Event is never worth failing a reconcile for: one that fails after its decision
        # was applied would leave that decision out of the status, to be taken again.
        except client.ApiException as e:
            log.warning(
                "event_failed namespace=%s name=%s reason=%s status=%s",
                ref.namespace,
                ref.name,
                reason,
                e.status,
            )
        except (urllib3.exceptions.HTTPError, OSError) as e:  # refused, reset, timed out
            log.warning(
                "event_failed namespace=%s name=%s reason=%s error=%s",
                ref.namespace,
                ref.name,
                reason,
                type(e).__name__,
            )
