"""Issue 21's acceptance "a burst beyond the limits gets 429s for P2 while P0 is served", on the
local cluster: spec.router.batch puts a second vllm-router pool, with its own small admission
limits, in front of the same engines (a bulkhead per class), behind the Service <name>-batch.

The real `deepseek-operator run` against us-east; the cluster's fleet plays the engine pods
(simulated vLLMs with `--scheduling-policy priority` and a small `--max-num-seqs`, so a burst of
long batch requests let through would fill them) and both router pools' pods (the real
vllm-router binary). What a user checks: the batch pool's objects, BatchRouterReady and its
Events; then, as clients through the Services (the test bed's Service router in this process
playing kube-proxy), a burst of long P2 requests (X-Vllm-Priority: 2) to <name>-batch, far
beyond its limits, is answered 429 with Retry-After beyond them, while short interactive (P0)
requests to <name> during the burst are all answered 200 about as fast as before it, whereas
the same burst sent to <name> (past no batch limits) fills the engine and slows them; and
turning batch off removes its objects and nothing else.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from deepseek_operator import labels as L
from kubernetes import client

from testbed.cluster import RegionInfo
from testbed.sim.router import Route, Router, local_cluster_address

from .operator_process import OperatorProcess
from .test_operator import (
    GROUP,
    PLURAL,
    VERSION,
    condition,
    create_dsd,
    events_of,
    example,
    get_dsd,
)
from .test_router import (  # noqa: F401 (crds, custom: fixtures)
    crds,
    custom,
    endpoint_ips,
    read,
    ready_pod_ips,
    selector,
)
from .waiting import wait_for

pytestmark = pytest.mark.e2e

NAME = "gwb"
BATCH_ROUTER = f"{NAME}-router-batch"
BATCH = f"{NAME}-batch"
TIMEOUT = 120
# The batch pool's limits: a burst of 4, then 1 more per second (plus one per finished request).
BURST, RATE = 4, 1
MAX_NUM_SEQS = 16  # each engine's batch: what P2 must not fill
P2_TOKENS, P0_TOKENS = 1200, 32  # a long batch job, a short interactive answer
PROMPT = "batch " * 64


@pytest.fixture
def operator(region: RegionInfo, namespace: str, crds: None) -> Iterator[OperatorProcess]:  # noqa: F811
    assert region.fleet_url, "this test needs the cluster's fleet (cluster up without --no-fleet)"
    op = OperatorProcess(region.kubeconfig, namespaces=[namespace], name=f"batch-{namespace}")
    op.start()
    yield op
    op.stop()


def patch_spec(objects: client.CustomObjectsApi, ns: str, spec: dict[str, Any]) -> None:
    objects.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, NAME, {"spec": spec})


def reasons(core: client.CoreV1Api, ns: str) -> set[str]:
    return {e.reason for e in events_of(core, ns, NAME)}


def body() -> dict[str, Any]:
    """The 7B example played by the fleet: one engine with priority scheduling and a batch of
    MAX_NUM_SEQS, the router (one pod) and its batch pool (one pod) with small limits."""
    b = example("deepseek-r1-distill-7b.yaml", fleet=True)
    b["metadata"]["name"] = NAME
    spec = b["spec"]
    spec["replicas"] = 1
    spec["scaling"]["enabled"] = False
    spec["rollout"] = {"readyTimeoutSeconds": 120, "warmupRequests": 0}
    spec["engine"] = {
        "schedulingPolicy": "priority",
        "extraArgs": ["--max-num-seqs", str(MAX_NUM_SEQS)],
    }
    spec["router"] = {
        "enabled": True,
        "replicas": 1,
        "policy": "round_robin",
        "batch": {
            "replicas": 1,
            "maxConcurrentRequests": BURST,
            "rateLimitTokensPerSecond": RATE,
            "queueSize": 0,
        },
    }
    return b


@dataclass
class Answer:
    status: int  # 0: no HTTP answer
    seconds: float
    retry_after: str | None


async def complete(
    http: aiohttp.ClientSession, url: str, model: str, tokens: int, priority: int | None
) -> Answer:
    headers = {"X-Vllm-Priority": str(priority)} if priority is not None else {}
    t0 = time.monotonic()
    try:
        async with http.post(
            f"{url}/v1/completions",
            json={"model": model, "prompt": PROMPT, "max_tokens": tokens},
            headers=headers,
        ) as r:
            await r.read()
            return Answer(r.status, time.monotonic() - t0, r.headers.get("Retry-After"))
    except aiohttp.ClientError:
        return Answer(0, time.monotonic() - t0, None)


async def later(delay: float, coro: Any) -> Answer:
    await asyncio.sleep(delay)
    return await coro  # type: ignore[no-any-return]


@dataclass
class Outcome:
    before: list[Answer]  # P0 alone
    p0: list[Answer]  # P0 during the P2 burst
    p2: list[Answer]


async def burst(api: client.ApiClient, ns: str, model: str, p2_service: str = BATCH) -> Outcome:
    """Through the Services: P0 alone, then a P2 burst to p2_service (30 at once, then 3 a
    second for 10 s) with P0 requests to <name> every half second meanwhile."""
    router = Router(
        [Route(ns, NAME), Route(ns, BATCH, prefix="batch")],
        host="127.0.0.1",
        port=0,
        address_map=local_cluster_address,
    )
    await router.start()
    try:
        router.watch(api)
        assert await router.wait_for_endpoints(f"{ns}/{NAME}", 1, timeout=60)
        assert await router.wait_for_endpoints(f"{ns}/{BATCH}", 1, timeout=60)
        timeout = aiohttp.ClientTimeout(total=180)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            p0_url = router.url
            p2_url = f"{router.url}/batch" if p2_service == BATCH else router.url
            before = [await complete(http, p0_url, model, P0_TOKENS, None) for _ in range(6)]
            p2 = [complete(http, p2_url, model, P2_TOKENS, 2) for _ in range(30)]
            p2 += [later(i / 3, complete(http, p2_url, model, P2_TOKENS, 2)) for i in range(30)]
            p0 = [
                later(0.5 + i / 2, complete(http, p0_url, model, P0_TOKENS, None))
                for i in range(20)
            ]
            done = await asyncio.gather(*p2, *p0)
        return Outcome(before, list(done[len(p2) :]), list(done[: len(p2)]))
    finally:
        await router.close()


def test_a_p2_burst_beyond_the_batch_limits_gets_429s_while_p0_is_served(
    namespace: str,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,  # noqa: F811
    api_clients: dict[str, client.ApiClient],
) -> None:
    ns = namespace
    api = api_clients["us-east"]
    b = body()
    create_dsd(custom, ns, b)

    # ---- both pools come up in front of the engine -------------------------------------------
    batch_pods = {L.DEPLOYMENT: NAME, L.COMPONENT: "router-batch"}
    routers = {L.DEPLOYMENT: NAME, L.COMPONENT: "router"}
    wait_for(
        lambda: len(ready_pod_ips(core, ns, batch_pods)) == 1, timeout=TIMEOUT, what="batch router"
    )
    wait_for(
        lambda: selector(core, ns, NAME) == routers, timeout=TIMEOUT, what=f"{NAME} on the router"
    )
    assert selector(core, ns, BATCH) == batch_pods
    wait_for(
        lambda: endpoint_ips(core, ns, BATCH) == ready_pod_ips(core, ns, batch_pods),
        timeout=60,
        what=f"the endpoints of {BATCH} = the Ready batch router pod",
    )
    # The batch router pods are not the Service <name>'s (nor its router's).
    assert not endpoint_ips(core, ns, NAME) & ready_pod_ips(core, ns, batch_pods)
    dep = apps.read_namespaced_deployment(BATCH_ROUTER, ns)
    (c,) = dep.spec.template.spec.containers
    args = list(c.args)
    assert c.command == ["vllm-router"]
    assert dep.spec.template.spec.service_account_name == f"{NAME}-router"
    assert args[args.index("--max-concurrent-requests") + 1] == str(BURST)
    assert args[args.index("--rate-limit-tokens-per-second") + 1] == str(RATE)
    assert args[args.index("--queue-size") + 1] == "0"
    obj = wait_for(
        lambda: (
            o
            if (condition(o := get_dsd(custom, ns, NAME), "BatchRouterReady") or {}).get("status")
            == "True"
            else None
        ),
        timeout=60,
        what="BatchRouterReady True",
    )
    assert condition(obj, "BatchRouterReady")["reason"] == "BatchRouterAvailable"
    assert (condition(obj, "RouterReady") or {}).get("status") == "True"
    wait_for(lambda: "BatchRouterCreated" in reasons(core, ns), what="Event BatchRouterCreated")

    # ---- the burst -----------------------------------------------------------------------------
    t0 = time.monotonic()
    out = asyncio.run(burst(api, ns, b["spec"]["model"]["servedName"]))
    took = time.monotonic() - t0
    p2 = Counter(a.status for a in out.p2)
    p0 = Counter(a.status for a in out.p0)
    before = statistics.median(a.seconds for a in out.before)
    during = statistics.median(a.seconds for a in out.p0)
    p2_ok = sorted(a.seconds for a in out.p2 if a.status == 200)
    print(
        f"\nP2 to {BATCH}: {dict(p2)}; P0 to {NAME}: {dict(p0)}; P0 median {before:.2f} s alone, "
        f"{during:.2f} s during the burst (max {max(a.seconds for a in out.p0):.2f} s); "
        f"admitted P2 median {statistics.median(p2_ok) if p2_ok else 0:.2f} s; {took:.0f} s"
    )
    assert all(a.status == 200 for a in out.before), [a.status for a in out.before]
    # Every interactive request was served, about as fast as without the burst.
    assert p0 == {200: len(out.p0)}, p0
    assert during <= 2 * before + 0.5, (before, during)
    # The batch pool let its burst and its rate through and refused the rest with 429 at once,
    # telling the client when to come back.
    assert set(p2) <= {200, 429}, p2
    assert p2[200] >= BURST, p2
    assert p2[429] >= 30, p2
    assert all(a.retry_after == "1" for a in out.p2 if a.status == 429)
    assert max(a.seconds for a in out.p2 if a.status == 429) < 2.0
    # What it let through was served, slowly (long jobs), after the P0 requests.
    assert statistics.median(p2_ok) > during

    # ---- the same burst without the bulkhead: sent to <name>, it fills the engine -------------
    # Every P2 request is admitted; the engine runs MAX_NUM_SEQS at a time and never preempts
    # to admit, so a P0 request, first in its queue, still waits for a running P2 to finish.
    control = asyncio.run(burst(api, ns, b["spec"]["model"]["servedName"], p2_service=NAME))
    flooded = statistics.median(a.seconds for a in control.p0)
    print(
        f"the same burst to {NAME}: P2 {dict(Counter(a.status for a in control.p2))}, P0 "
        f"{dict(Counter(a.status for a in control.p0))}, P0 median {flooded:.2f} s"
    )
    assert all(a.status == 200 for a in control.p2 + control.p0)
    assert flooded > 2 * during + 0.5, (during, flooded)

    # ---- batch off: its objects go, the router stays -----------------------------------------
    patch_spec(custom, ns, {"router": {"batch": None}})

    def batch_objects() -> list[str]:
        found = []
        if read(apps.read_namespaced_deployment, BATCH_ROUTER, ns) is not None:
            found.append("Deployment")
        if read(core.read_namespaced_service, BATCH, ns) is not None:
            found.append("Service")
        pdb = client.PolicyV1Api(api).read_namespaced_pod_disruption_budget
        if read(pdb, BATCH_ROUTER, ns) is not None:
            found.append("PodDisruptionBudget")
        return found

    wait_for(lambda: not batch_objects(), timeout=60, what="the batch pool's objects gone")
    wait_for(
        lambda: condition(get_dsd(custom, ns, NAME), "BatchRouterReady") is None,
        timeout=60,
        what="BatchRouterReady gone",
    )
    wait_for(lambda: "BatchRouterRemoved" in reasons(core, ns), what="Event BatchRouterRemoved")
    wait_for(
        lambda: not ready_pod_ips(core, ns, batch_pods), timeout=60, what="batch router pods gone"
    )
    assert read(apps.read_namespaced_deployment, f"{NAME}-router", ns) is not None
    assert selector(core, ns, NAME) == routers
