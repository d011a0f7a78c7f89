"""The real vllm-router in a router pod of the local cluster, played by the cluster's fleet
(testbed/sim/vllmrouter.py): no operator, plain manifests. The router discovers the engine pods
itself through the API server (its own ServiceAccount and Role; pod IPs mapped to this machine's
sim addresses by the fleet's API proxy), its pod becomes Ready through its readiness probe, it
balances completions over both engines, and when one engine pod is deleted it stops sending
to it while that engine still serves (preStop), so no request fails; a graceful delete stops it
at once. A router that exits (bad arguments) leaves its pod not Ready, with the exit code and
the output's tail on the pod, and is restarted with the kubelet's back-off."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
import pytest
from deepseek_operator import labels as L
from kubernetes import client

from testbed.labels import (
    ROUTER_COMPONENT,
    SIM_ENGINE_READY,
    SIM_LAST_EXIT_CODE,
    SIM_LAST_OUTPUT,
    SIM_RESTART_COUNT,
)
from testbed.sim.apiproxy import sim_ip

pytestmark = pytest.mark.e2e

T = TypeVar("T")
DSD = "gw"
MODEL = "ds-7b"
PORT = 8000
ENGINE_PRE_STOP_S = 10  # the deleted engine keeps serving this long: the router must stop first
SUCCESS = re.compile(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", re.M)


async def until(
    check: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.3
) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await asyncio.to_thread(check)
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(every)


def rbac(ns: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    sa = {"metadata": {"name": "router"}}
    role = {
        "metadata": {"name": "router"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    }
    binding = {
        "metadata": {"name": "router"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "router"},
        "subjects": [{"kind": "ServiceAccount", "name": "router", "namespace": ns}],
    }
    return sa, role, binding


def engine_pod(name: str) -> dict[str, Any]:
    """An engine pod as the operator renders one (7B distill on one H100), by hand."""
    return {
        "metadata": {
            "name": name,
            "labels": {
                L.COMPONENT: L.ENGINE_COMPONENT,
                L.DEPLOYMENT: DSD,
                L.COLOUR: "blue",
                L.NAME: L.NAME_VALUE,
            },
        },
        "spec": {
            "terminationGracePeriodSeconds": 40,
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "containers": [
                {
                    "name": L.ENGINE_CONTAINER,
                    "image": "vllm/vllm-openai:v0.32.0",
                    "args": [
                        "--model",
                        "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
                        "--served-model-name",
                        MODEL,
                        "--max-model-len",
                        "8192",
                        "--shutdown-timeout",
                        "20",
                    ],
                    "ports": [{"name": L.ENGINE_PORT_NAME, "containerPort": PORT}],
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    "lifecycle": {"preStop": {"sleep": {"seconds": ENGINE_PRE_STOP_S}}},
                }
            ],
        },
    }


def router_pod(ns: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "router",
            "labels": {L.COMPONENT: ROUTER_COMPONENT, L.DEPLOYMENT: DSD},
        },
        "spec": {
            "serviceAccountName": "router",
            "terminationGracePeriodSeconds": 10,
            "containers": [
                {
                    "name": "router",
                    "image": "vllm/vllm-router:v0.1.17",
                    "command": ["vllm-router"],
                    "args": [
                        "--host",
                        "0.0.0.0",
                        "--port",
                        str(PORT),
                        "--service-discovery",
                        "--selector",
                        f"{L.COMPONENT}={L.ENGINE_COMPONENT}",
                        f"{L.DEPLOYMENT}={DSD}",
                        "--service-discovery-port",
                        str(PORT),
                        "--service-discovery-namespace",
                        ns,
                        "--policy",
                        "round_robin",
                    ],
                    "ports": [{"name": "http", "containerPort": PORT}],
                    # /readiness answers 200 once the router has a healthy worker.
                    "readinessProbe": {
                        "httpGet": {"path": "/readiness", "port": "http"},
                        "periodSeconds": 1,
                        "failureThreshold": 2,
                    },
                }
            ],
        },
    }


def pod_ready(core: client.CoreV1Api, ns: str, name: str) -> str | None:
    """The pod's IP once it is Ready."""
    p = core.read_namespaced_pod(name, ns)
    conds = {c.type: c.status for c in (p.status.conditions or [])}
    return p.status.pod_ip if conds.get("Ready") == "True" else None


async def served(http: aiohttp.ClientSession, engine_url: str) -> float:
    """Requests the engine finished (vllm:request_success_total, every finish reason)."""
    async with http.get(f"{engine_url}/metrics") as r:
        assert r.status == 200
        return sum(float(v) for v in SUCCESS.findall(await r.text()))


async def complete(http: aiohttp.ClientSession, url: str) -> int:
    body = {"model": MODEL, "prompt": "one two three", "max_tokens": 4}
    try:
        async with http.post(f"{url}/v1/completions", json=body) as r:
            await r.read()
            return r.status
    except aiohttp.ClientError:
        return 0


async def workers(http: aiohttp.ClientSession, url: str) -> set[str]:
    async with http.get(f"{url}/workers") as r:
        assert r.status == 200
        return {w["url"] for w in (await r.json())["workers"]}


async def test_real_vllm_router_discovers_balances_and_follows_a_deletion(
    region: Any, namespace: str, api_clients: dict[str, client.ApiClient], core: Any
) -> None:
    assert region.fleet_url, "the cluster runs without the fleet (cluster up --no-fleet)"
    ns = namespace
    api = api_clients[region.name]
    sa, role, binding = rbac(ns)
    core.create_namespaced_service_account(ns, sa)
    client.RbacAuthorizationV1Api(api).create_namespaced_role(ns, role)
    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(ns, binding)
    for name in ("engine-a", "engine-b"):
        core.create_namespaced_pod(ns, engine_pod(name))
    core.create_namespaced_pod(ns, router_pod(ns))

    engines = {}
    for name in ("engine-a", "engine-b"):
        ip = await until(lambda n=name: pod_ready(core, ns, n), timeout=60, what=f"{name} Ready")
        engines[name] = f"http://{sim_ip(ip)}:{PORT}"
    # The router pod is Ready once its /readiness passes: it has found a healthy engine.
    router_ip = await until(lambda: pod_ready(core, ns, "router"), timeout=60, what="router Ready")
    pod = core.read_namespaced_pod("router", ns)
    assert pod.metadata.annotations[SIM_ENGINE_READY] == "true"
    router = f"http://{sim_ip(router_ip)}:{PORT}"

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        # It discovered both engines at their sim addresses (through the fleet's API proxy).
        async def both_found() -> bool:
            return await workers(http, router) == set(engines.values())

        deadline = time.monotonic() + 30
        while not await both_found():
            assert time.monotonic() < deadline, await workers(http, router)
            await asyncio.sleep(0.3)

        before = {n: await served(http, u) for n, u in engines.items()}
        codes = [await complete(http, router) for _ in range(20)]
        assert codes == [200] * 20
        after = {n: await served(http, u) for n, u in engines.items()}
        grown = {n: after[n] - before[n] for n in engines}
        assert sum(grown.values()) == 20 and all(g > 0 for g in grown.values()), grown  # both

        # Delete engine-b; a client keeps sending requests the whole time.
        results: list[int] = []
        stop = asyncio.Event()

        async def load() -> None:
            while not stop.is_set():
                results.append(await complete(http, router))
                await asyncio.sleep(0.05)

        loader = asyncio.create_task(load())
        await asyncio.to_thread(core.delete_namespaced_pod, "engine-b", ns)
        deleted_at = time.monotonic()
        # The router drops engine-b as soon as it sees the pod terminating...
        while await workers(http, router) != {engines["engine-a"]}:
            assert time.monotonic() - deleted_at < 5, await workers(http, router)
            await asyncio.sleep(0.1)
        # ...while engine-b still serves (its preStop sleep). The client sends one request at a
        # time: the one in flight when the router dropped engine-b may still be served there;
        # once it is answered, every later request was routed after the drop, and only
        # engine-a may grow.
        in_flight = len(results)
        while len(results) <= in_flight:
            assert time.monotonic() - deleted_at < ENGINE_PRE_STOP_S, "no answer after the drop"
            await asyncio.sleep(0.05)
        b_dropped = await served(http, engines["engine-b"])
        a_dropped = await served(http, engines["engine-a"])
        sent_dropped = len(results)
        await asyncio.sleep(3)
        stop.set()
        await loader
        assert time.monotonic() - deleted_at < ENGINE_PRE_STOP_S, "engine-b stopped serving"
        b_end = await served(http, engines["engine-b"])
        a_end = await served(http, engines["engine-a"])
        assert results and results == [200] * len(results), results
        assert b_end == b_dropped, (b_dropped, b_end)
        assert a_end - a_dropped >= len(results) - sent_dropped - 1 > 0  # one may be in flight

        # A graceful delete of the router pod: SIGTERM, the router exits, kwok removes the pod
        # long before its grace period (10 s) ends.
        await asyncio.to_thread(core.delete_namespaced_pod, "router", ns)
        deleted_at = time.monotonic()

        def router_gone() -> bool:
            names = [p.metadata.name for p in core.list_namespaced_pod(ns).items]
            return "router" not in names

        await until(router_gone, timeout=10, what="the router pod removed")
        assert time.monotonic() - deleted_at < 6


async def test_a_router_that_exits_is_not_ready_says_why_and_restarts_with_back_off(
    region: Any, namespace: str, core: Any
) -> None:
    pod = router_pod(namespace)
    pod["spec"]["serviceAccountName"] = "default"
    pod["spec"]["containers"][0]["args"] += ["--policy", "fastest"]  # not a vllm-router policy
    core.create_namespaced_pod(namespace, pod)

    def annotations() -> dict[str, str]:
        return dict(core.read_namespaced_pod("router", namespace).metadata.annotations or {})

    first = await until(
        lambda: annotations().get(SIM_RESTART_COUNT) == "1" and annotations(),
        timeout=30,
        what="the router's first exit recorded on its pod",
    )
    seen_first = time.monotonic()
    assert first[SIM_LAST_EXIT_CODE] == "2"  # argparse's usage error
    assert "invalid choice: 'fastest'" in first[SIM_LAST_OUTPUT], first[SIM_LAST_OUTPUT]
    assert pod_ready(core, namespace, "router") is None
    assert first.get(SIM_ENGINE_READY) != "true"
    # Restarted after the kubelet's first back-off (10 s), and it exits again.
    await until(
        lambda: annotations().get(SIM_RESTART_COUNT) == "2",
        timeout=30,
        what="the router restarted and exited again",
    )
    assert time.monotonic() - seen_first > 8
    assert pod_ready(core, namespace, "router") is None
