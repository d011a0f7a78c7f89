"""Warm-up completions sent to a preview colour's pods before its analysis, so caches are warm
and the analysis has traffic to judge even before any user request reaches the preview."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from . import labels as L
from .api.resource import DeepSeekDeployment
from .api.status import Colour

if TYPE_CHECKING:
    from .adapters.kube import Kube

log = logging.getLogger("deepseek_operator.warmup")
PROMPT = "Write one sentence about the sea."


def warm_up_pods(
    kube: Kube, dsd: DeepSeekDeployment, colour: Colour, per_pod: int, timeout: float = 60.0
) -> int:
    """Send `per_pod` short completions to every Ready pod of a colour, straight to the pod IPs
    (the preview takes no Service traffic yet). Returns how many succeeded."""
    selector = ",".join(f"{k}={v}" for k, v in L.engine_selector(dsd.name, colour.value).items())
    pods = kube.core.list_namespaced_pod(dsd.namespace, label_selector=selector).items
    ok = 0
    for pod in pods:
        ip = pod.status.pod_ip if pod.status else None
        ready = (
            any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
            if pod.status
            else False
        )
        if not ip or not ready or (pod.metadata and pod.metadata.deletion_timestamp):
            continue
        url = f"http://{ip}:{dsd.spec.engine.port}/v1/completions"
        for _ in range(per_pod):
            body = json.dumps(
                {"model": dsd.served_name(), "prompt": PROMPT, "max_tokens": 16}
            ).encode()
            req = urllib.request.Request(
                url, data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    resp.read()
                    ok += 1
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                log.warning(
                    "warmup_failed namespace=%s name=%s pod=%s error=%r",
                    dsd.namespace,
                    dsd.name,
                    pod.metadata.name if pod.metadata else None,
                    str(e),
                )
    log.info(
        "warmup_done namespace=%s name=%s colour=%s ok=%d",
        dsd.namespace,
        dsd.name,
        colour.value,
        ok,
    )
    return ok
