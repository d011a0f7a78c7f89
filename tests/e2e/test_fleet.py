"""The simulated fleet on the real local cluster: a plain Deployment of engine-labelled pods
becomes Ready through the cluster's fleet (the daemon `cluster up` runs per region), the
router balances client requests over the Service's EndpointSlices, a scale-down drains
without failing a request, and the region's Prometheus (real scrape, real PromQL) holds vLLM
and DCGM series whose counts match what the load generator measured, and the operator's own poll
reads the TTFT and TPOT histograms by bucket from them."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import aiohttp
import pytest
from deepseek_operator import labels as L
from deepseek_operator.adapters.prometheus import SignalPoller
from deepseek_operator.signals import BUCKET_SIGNALS, Signals, share_over
from kubernetes import client

from testbed.labels import SIM_ENGINE_READY
from testbed.sim.loadgen import LoadGenerator, constant_rate
from testbed.sim.router import Route, Router, local_cluster_address

pytestmark = pytest.mark.e2e

T = TypeVar("T")
DSD = "fleet-e2e"
COLOUR = "blue"
MODEL = "ds-7b"
POD_LABELS = {
    L.COMPONENT: L.ENGINE_COMPONENT,
    L.DEPLOYMENT: DSD,
    L.COLOUR: COLOUR,
    L.NAME: L.NAME_VALUE,
}


async def until(
    check: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.5
) -> T:
    """Poll a blocking check off the event loop (the fleet runs on it) until it is truthy."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await asyncio.to_thread(check)
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(every)


def engine_deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "engine", "labels": POD_LABELS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {L.DEPLOYMENT: DSD, L.COLOUR: COLOUR}},
            "template": {
                "metadata": {"labels": POD_LABELS},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
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
                                "25",
                            ],
                            "ports": [{"name": L.ENGINE_PORT_NAME, "containerPort": 8000}],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                },
            },
        },
    }


def engine_service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "engine"},
        "spec": {
            "selector": {L.DEPLOYMENT: DSD, L.COLOUR: COLOUR},
            "ports": [{"name": L.ENGINE_PORT_NAME, "port": 8000, "targetPort": "http"}],
        },
    }


@pytest.fixture
async def fleet(region: Any) -> AsyncIterator[str]:
    """The control URL of the region's fleet (started by `cluster up`, cold starts 50x faster
    by default); its /status lists the replicas it plays."""
    assert region.fleet_url, "the cluster runs without the fleet (cluster up --no-fleet)"
    async with aiohttp.ClientSession() as http, http.get(f"{region.fleet_url}/status") as r:
        assert r.status == 200
        assert (await r.json())["regions"][region.name]["synced"]
    yield region.fleet_url


async def fleet_status(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/status") as r:
        assert r.status == 200
        return dict(await r.json())


def ready_pods(core: Any, ns: str) -> list[str]:
    pods = core.list_namespaced_pod(ns, label_selector=f"{L.DEPLOYMENT}={DSD}").items
    out = []
    for p in pods:
        conds = {c.type: c.status for c in (p.status.conditions or [])}
        if conds.get("Ready") == "True" and p.metadata.deletion_timestamp is None:
            out.append(p.metadata.name)
    return sorted(out)


def all_pods(core: Any, ns: str) -> list[Any]:
    return list(core.list_namespaced_pod(ns, label_selector=f"{L.DEPLOYMENT}={DSD}").items)


async def test_fleet_router_and_prometheus(
    fleet: str,
    region: Any,
    namespace: str,
    api_clients: dict[str, client.ApiClient],
    core: Any,
    apps: Any,
    prometheus: dict[str, Any],
) -> None:
    prom = prometheus[region.name]
    await asyncio.to_thread(core.create_namespaced_service, namespace, engine_service())
    await asyncio.to_thread(apps.create_namespaced_deployment, namespace, engine_deployment(2))

    # The fleet loads the model, then annotates the pods; kwok makes them Ready.
    def two_ready() -> list[str] | None:
        r = ready_pods(core, namespace)
        return r if len(r) == 2 else None

    pods = await until(two_ready, timeout=120, what="2 engine pods Ready through the fleet")
    for p in all_pods(core, namespace):
        assert p.metadata.annotations[SIM_ENGINE_READY] == "true"
    status = (await fleet_status(fleet))["regions"][region.name]
    # The fleet plays every engine pod of the cluster: only this test's are compared.
    serving = {
        r["pod"]
        for r in status["replicas"]
        if r["phase"] == "Serving" and r["pod"].startswith(f"{namespace}/")
    }
    assert serving == {f"{namespace}/{p}" for p in pods}

    router = Router(
        [Route(namespace, "engine")], host="127.0.0.1", port=0, address_map=local_cluster_address
    )
    route = f"{namespace}/engine"
    sel = f'namespace="{namespace}",dsd="{DSD}",colour="{COLOUR}"'
    await router.start()
    try:
        router.watch(api_clients[region.name])
        assert await router.wait_for_endpoints(route, 2, timeout=60)

        gen = LoadGenerator(router.url, model=MODEL)
        first = await gen.run(constant_rate(rate=20.0, count=40, prompt_tokens=64, max_tokens=16))
        s1 = first.summary
        assert (s1.ok, s1.failed) == (40, 0), s1.to_json()
        assert s1.ttft_s["p99"] is not None and s1.tpot_s["p99"] is not None

        # Prometheus (real scrape of both replicas, real PromQL) counts what the clients saw.
        def success_total() -> float | None:
            q = f'sum(vllm:request_success_total{{{sel},finished_reason="length"}})'
            rows = prom.query(q)
            value = float(rows[0]["value"][1]) if rows else None
            return value if value == s1.ok else None

        await until(success_total, timeout=90, what=f"vllm:request_success_total = {s1.ok}")
        rows = await asyncio.to_thread(
            prom.query, f'vllm:request_success_total{{{sel},finished_reason="length"}}'
        )
        assert {r["metric"]["pod"] for r in rows} == set(pods)
        assert all(r["metric"]["model_name"] == MODEL for r in rows)
        assert sum(float(r["value"][1]) > 0 for r in rows) == 2  # both replicas served
        prompt = await asyncio.to_thread(prom.query, f"sum(vllm:prompt_tokens_total{{{sel}}})")
        assert float(prompt[0]["value"][1]) == s1.prompt_tokens == 40 * 64
        gen_tokens = await asyncio.to_thread(
            prom.query, f"sum(vllm:generation_tokens_total{{{sel}}})"
        )
        assert float(gen_tokens[0]["value"][1]) == s1.output_tokens == 40 * 16
        ttft = await asyncio.to_thread(
            prom.query, f"sum(vllm:time_to_first_token_seconds_count{{{sel}}})"
        )
        assert float(ttft[0]["value"][1]) == s1.ok

        # DCGM: one GPU per pod, labelled with the pod, joinable to dsd/colour as the
        # operator's signals do (signals.py).
        def dcgm_rows() -> list[dict[str, Any]] | None:
            r = prom.query(f'DCGM_FI_DEV_GPU_UTIL{{namespace="{namespace}"}}')
            return r if len(r) == 2 else None

        rows = await until(dcgm_rows, timeout=60, what="DCGM series of both pods")
        assert {r["metric"]["pod"] for r in rows} == set(pods)
        for r in rows:
            m = r["metric"]
            assert m["container"] == L.ENGINE_CONTAINER
            assert m["modelName"] == "NVIDIA H100 80GB HBM3"
            assert {"gpu", "UUID", "device", "Hostname"} <= set(m)

        # The DCGM job scrapes on its own schedule: its newest sample of a pod may predate the
        # end of the model load (weights streaming in, the KV pool not allocated yet), so wait
        # for the next scrape to show both GPUs loaded.
        def fb_used_loaded() -> list[dict[str, Any]] | None:
            r = prom.query(
                f'DCGM_FI_DEV_FB_USED{{namespace="{namespace}"}} * on (namespace, pod) '
                f"group_left (dsd, colour) group by (namespace, pod, dsd, colour) "
                f"(vllm:num_requests_running{{{sel}}})"
            )
            # 7B weights + KV cache, MiB
            loaded = len(r) == 2 and all(float(x["value"][1]) > 60_000 for x in r)
            return r if loaded else None

        joined = await until(fb_used_loaded, timeout=60, what="FB used of both loaded GPUs")
        assert sorted(
            (r["metric"]["pod"], r["metric"]["dsd"], r["metric"]["colour"]) for r in joined
        ) == [(p, DSD, COLOUR) for p in pods]

        # Scale down under load: the removed pod drains; no client request fails.
        load = asyncio.create_task(
            gen.run(constant_rate(rate=10.0, count=30, prompt_tokens=64, max_tokens=32))
        )
        await asyncio.sleep(0.5)
        await asyncio.to_thread(
            apps.patch_namespaced_deployment_scale, "engine", namespace, {"spec": {"replicas": 1}}
        )
        s2 = (await load).summary
        assert (s2.ok, s2.failed) == (30, 0), s2.to_json()

        # The operator's own poll (signals.py's PromQL, the adapter's split by key): the TTFT
        # and TPOT histograms by bucket, and the share of requests over an SLO from them. After
        # the second load: Prometheus has scraped both replicas since before it began (the
        # first load may have ended before a replica's first scrape, and its buckets then read
        # as a flat counter, a rate of 0).
        poller = SignalPoller()

        def bucket_signals() -> Signals | None:
            """Once Prometheus has scraped the second load's requests: at least s2.ok in the
            minute, a rate of s2.ok / 60 in +Inf (the first load's may be in the window too)."""
            snap = poller.poll([prom.url], BUCKET_SIGNALS)[prom.url]
            got = snap.signals(namespace, DSD, COLOUR)
            full = set(got.buckets) == BUCKET_SIGNALS
            counted = all(b[-1][1] * 60 >= s2.ok * 0.999 for b in got.buckets.values())
            return got if full and counted else None

        got = await until(
            bucket_signals, timeout=90, what=f"ttftBuckets and tpotBuckets with {s2.ok} requests"
        )
        for sig, b in got.buckets.items():
            les = [le for le, _ in b]
            assert len(les) > 2 and les == sorted(les) and les[-1] == math.inf, (sig, b)
            rates = [r for _, r in b]
            assert all(y >= x * (1 - 1e-9) for x, y in itertools.pairwise(rates)), (sig, b)
            # short requests on idle replicas: none waited a minute
            assert share_over(b, 60.0) == 0, (sig, b)

        def one_pod() -> list[Any] | None:
            p = all_pods(core, namespace)
            return p if len(p) == 1 else None

        remaining = await until(one_pod, timeout=60, what="the scaled-down pod to drain and go")
        assert remaining[0].metadata.name in pods
        assert await until(
            lambda: len(router.endpoints(route)) == 1, timeout=30, what="one endpoint left"
        )

        # Faults through the fleet's control endpoint: a crash takes the pod out of the
        # Service (clients get 503 from the router), clearing it cold-starts the replica.
        survivor = remaining[0].metadata.name
        async with aiohttp.ClientSession() as http:
            body = {"region": region.name, "namespace": namespace, "pod": survivor, "crash": True}
            async with http.post(f"{fleet}/faults", json=body) as r:
                assert r.status == 200
                assert (await r.json())["pods"] == [f"{namespace}/{survivor}"]
            assert await until(
                lambda: ready_pods(core, namespace) == [], timeout=30, what="crashed pod NotReady"
            )
            assert await until(
                lambda: router.endpoints(route) == [], timeout=30, what="no endpoint left"
            )
            async with http.post(router.url + "/v1/models") as r:
                assert r.status == 503
            body = {"region": region.name, "namespace": namespace, "clear": True}
            async with http.post(f"{fleet}/faults", json=body) as r:
                assert r.status == 200
        assert await until(
            lambda: ready_pods(core, namespace) == [survivor], timeout=60, what="pod Ready again"
        )
        assert await router.wait_for_endpoints(route, 1, timeout=30)
        again = await gen.run(constant_rate(rate=10.0, count=5, prompt_tokens=8, max_tokens=4))
        assert (again.summary.ok, again.summary.failed) == (5, 0)
    finally:
        await router.close()
