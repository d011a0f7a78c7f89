"""Issue 7 on the local cluster: blue-green rollouts under constant client load.

us-east with the cluster's simulated fleet (engine pods are simulated vLLMs on 127.16.x.y), the
router of the simulated fleet (in this process, on a free loopback port) in front of the stable
Service and, under the prefix /preview, of the preview Service, the load generator sending
constant streaming completions through it during each rollout, and the real `deepseek-operator
run` (namespaced, --prometheus-url = the region's Prometheus: analysis reads the preview's
error rate and TTFT p99 from real scrapes with real PromQL).

Analysis traffic: a trickle of requests through /preview (the preview Service). The operator's
own warm-up (spec.rollout.warmupRequests) is left at 0 here: it sends to pod IPs (10.16.x.y),
which this machine does not serve (only their 127.16.x.y twins), and test traffic stays on
loopback.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from deepseek_operator import labels as L
from kubernetes import client

from testbed.cluster import LocalCluster, RegionInfo
from testbed.sim.faults import FAULT_ANNOTATION as FAULT
from testbed.sim.loadgen import LoadGenerator, constant_rate
from testbed.sim.router import Route, Router, local_cluster_address

from .faults import record
from .operator_process import OperatorProcess, install_crds
from .test_operator import (
    GROUP,
    PLURAL,
    VERSION,
    create_dsd,
    events_of,
    example,
    get_dsd,
    kubectl,
)
from .waiting import wait_for

pytestmark = pytest.mark.e2e

NAME = "r1-distill-7b"
REPLICAS = 2
ROLLOUT_TIMEOUT = 240  # seconds a whole rollout may take before a wait fails


# ---------------------------------------------------------------------------------------------
# Traffic through the router


class Traffic:
    """A router (stable Service at /, preview Service at /preview) and two clients in a
    background event loop: constant streaming load on the stable route, a trickle of requests
    on the preview route whenever it has endpoints (the traffic the analysis judges)."""

    def __init__(self, api: client.ApiClient, ns: str, name: str, model: str) -> None:
        self.api, self.ns, self.name, self.model = api, ns, name, model
        self.stable_key = f"{ns}/{name}"
        self.preview_key = f"{ns}/{name}-preview"
        self.router: Router | None = None
        self.loop = asyncio.new_event_loop()
        self.stop_event = threading.Event()
        self.sent = self.ok = self.failed = 0
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.preview: Counter[int] = Counter()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._started = threading.Event()
        self._failure: BaseException | None = None

    # -- control (test thread) ------------------------------------------------------------

    def start(self) -> Traffic:
        self.thread.start()
        assert self._started.wait(60), "router did not start"
        if self._failure is not None:
            raise self._failure
        return self

    def stop(self) -> dict[str, Any]:
        self.stop_event.set()
        self.thread.join(120)
        assert not self.thread.is_alive(), "the load did not drain"
        if self._failure is not None:
            raise self._failure
        return self.counts()

    def counts(self) -> dict[str, Any]:
        with self.lock:
            return {
                "sent": self.sent,
                "ok": self.ok,
                "failed": self.failed,
                "statuses": dict(self.statuses),
                "errors": dict(self.errors),
                "preview": dict(self.preview),
            }

    def stable_pods(self) -> list[str]:
        r = self.router
        return sorted(e.pod or "" for e in r.endpoints(self.stable_key)) if r else []

    # -- background loop ------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as e:  # reported to the test thread
            self._failure = e
            self._started.set()
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self.router = Router(
            [Route(self.ns, self.name), Route(self.ns, f"{self.name}-preview", prefix="preview")],
            host="127.0.0.1",
            port=0,
            address_map=local_cluster_address,
        )
        await self.router.start()
        try:
            self.router.watch(self.api)
            assert await self.router.wait_for_endpoints(self.stable_key, 1, timeout=120)
            self._started.set()
            await asyncio.gather(self._stable(), self._preview())
        finally:
            await self.router.close()

    async def _stable(self) -> None:
        assert self.router is not None
        gen = LoadGenerator(self.router.url, model=self.model, drain_timeout=120)
        while not self.stop_event.is_set():
            # 5 s chunks at 4 requests/s: constant load, and counts as they come.
            res = await gen.run(constant_rate(rate=4.0, count=20, prompt_tokens=64, max_tokens=16))
            s = res.summary
            with self.lock:
                self.sent += s.sent
                self.ok += s.ok
                self.failed += s.failed
                self.statuses.update({str(k): int(v) for k, v in s.by_status.items()})
                self.errors.update({str(k): int(v) for k, v in s.errors.items()})

    async def _preview(self) -> None:
        assert self.router is not None
        url = f"{self.router.url}/preview/v1/completions"
        body = {"model": self.model, "prompt": "one two three", "max_tokens": 4}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            while not self.stop_event.is_set():
                if self.router.endpoints(self.preview_key):
                    try:
                        async with http.post(url, json=body) as r:
                            await r.read()
                            code = r.status
                    except aiohttp.ClientError:
                        code = 0
                    with self.lock:
                        self.preview[code] += 1
                await asyncio.sleep(0.4)


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def crds(api_clients: dict[str, client.ApiClient]) -> None:
    install_crds(api_clients["us-east"])


@pytest.fixture
def custom(api_clients: dict[str, client.ApiClient]) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_clients["us-east"])


@pytest.fixture
def operator(region: RegionInfo, namespace: str, crds: None) -> Iterator[OperatorProcess]:
    assert region.fleet_url, "these tests need the cluster's fleet (cluster up without --no-fleet)"
    op = OperatorProcess(
        region.kubeconfig,
        namespaces=[namespace],
        prometheus_url=region.prometheus_url,
        name=f"rollout-{namespace}",
    ).start()
    yield op
    op.stop()


def dsd_body(*, auto_promote: bool = True) -> dict[str, Any]:
    """The 7B example with the simulated fleet, 2 fixed replicas, a short rollout."""
    body = example("deepseek-r1-distill-7b.yaml", fleet=True)
    spec = body["spec"]
    spec["replicas"] = REPLICAS
    spec["scaling"]["enabled"] = False  # the replica count stays what the test says
    spec["rollout"] = {
        "autoPromote": auto_promote,
        "readyTimeoutSeconds": 120,
        "warmupRequests": 0,
        "scaleDownDelaySeconds": 5,
        "analysis": {"durationSeconds": 20, "maxErrorRate": 0.01, "minRequests": 10},
    }
    return body


def ready_pods(core: client.CoreV1Api, ns: str, colour: str) -> list[str]:
    sel = f"{L.DEPLOYMENT}={NAME},{L.COLOUR}={colour}"
    out = []
    for p in core.list_namespaced_pod(ns, label_selector=sel).items:
        conds = {c.type: c.status for c in (p.status.conditions or [])}
        if conds.get("Ready") == "True" and p.metadata.deletion_timestamp is None:
            out.append(p.metadata.name)
    return sorted(out)


def rollout(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any]:
    return dict((get_dsd(custom, ns, NAME).get("status") or {}).get("rollout") or {})


def wait_phase(custom: client.CustomObjectsApi, ns: str, *phases: str) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        nonlocal last
        last = rollout(custom, ns)
        return last if last.get("phase") in phases else None

    try:
        return wait_for(check, timeout=ROLLOUT_TIMEOUT, what=f"rollout phase in {phases}")
    except AssertionError as e:
        raise AssertionError(f"{e}; status.rollout: {last}") from None


def patch_spec(custom: client.CustomObjectsApi, ns: str, spec: dict[str, Any]) -> None:
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, NAME, {"spec": spec})


def annotate(custom: client.CustomObjectsApi, ns: str, key: str) -> None:
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, NAME, {"metadata": {"annotations": {key: "true"}}}
    )


def service_colour(core: client.CoreV1Api, ns: str, name: str = NAME) -> str | None:
    return (core.read_namespaced_service(name, ns).spec.selector or {}).get(L.COLOUR)


def deployment_replicas(apps: client.AppsV1Api, ns: str, colour: str) -> int | None:
    try:
        return int(apps.read_namespaced_deployment(f"{NAME}-{colour}", ns).spec.replicas)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def reasons(core: client.CoreV1Api, ns: str) -> list[str]:
    return [e.reason for e in events_of(core, ns, NAME)]


def times_said(core: client.CoreV1Api, ns: str) -> Counter[str]:
    """How many times each Event reason was said: an Event repeated by one process aggregates
    (its count goes up), one repeated after a restart is a new Event; both count here."""
    said: Counter[str] = Counter()
    for e in events_of(core, ns, NAME):
        said[e.reason] += e.count or 1
    return said


def kill_once_said(operator: OperatorProcess, core: client.CoreV1Api, ns: str, reason: str) -> None:
    """Kill the operator once the Event of the step just seen in the status is out: Events are
    said after the status that holds their decision is written, so a kill between the two loses
    the Event (said at most once, never twice)."""
    wait_for(lambda: times_said(core, ns)[reason] >= 1, timeout=15, what=f"the {reason} Event")
    operator.kill()


def reconciled_at(op: OperatorProcess) -> float | None:
    """When `op` last reconciled the resource (its last-reconcile gauge), None before."""
    for line in op.metrics().splitlines():
        if line.startswith("deepseek_operator_last_reconcile_timestamp_seconds{") and (
            f'dsd="{NAME}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return None


def active_column(region: RegionInfo, ns: str) -> str:
    row = kubectl(region, "get", "dsd", NAME, "-n", ns, "--no-headers").stdout.split()
    return row[5]  # NAME MODEL MODE READY DESIRED ACTIVE PHASE AGE


def _serve(
    namespace: str,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    api: client.ApiClient,
    auto_promote: bool,
    body: dict[str, Any] | None = None,
) -> Iterator[Traffic]:
    """blue serving 2 Ready replicas through the fleet, and load running through the router."""
    body = body or dsd_body(auto_promote=auto_promote)
    create_dsd(custom, namespace, body)
    wait_for(
        lambda: len(ready_pods(core, namespace, "blue")) == REPLICAS,
        timeout=120,
        what="2 Ready blue pods (through the fleet)",
    )
    wait_for(
        lambda: (
            (get_dsd(custom, namespace, NAME).get("status") or {}).get("readyReplicas") == REPLICAS
        ),
        timeout=60,
        what="status readyReplicas 2",
    )
    traffic = Traffic(api, namespace, NAME, body["spec"]["model"]["servedName"]).start()
    wait_for(lambda: traffic.counts()["ok"] > 0, timeout=60, what="load flowing through router")
    yield traffic
    if traffic.thread.is_alive():
        traffic.stop_event.set()
        traffic.thread.join(120)


@pytest.fixture
def serving(
    namespace: str,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    api_clients: dict[str, client.ApiClient],
) -> Iterator[Traffic]:
    """autoPromote: true."""
    yield from _serve(namespace, core, custom, api_clients["us-east"], True)


@pytest.fixture
def serving_manual(
    namespace: str,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    api_clients: dict[str, client.ApiClient],
) -> Iterator[Traffic]:
    """autoPromote: false (promote/abort annotations)."""
    yield from _serve(namespace, core, custom, api_clients["us-east"], False)


def finish(traffic: Traffic, what: str) -> dict[str, Any]:
    counts = traffic.stop()
    print(f"\n{what}: client requests through the router: {counts}")
    return counts


def assert_no_client_errors(counts: dict[str, Any]) -> None:
    assert counts["sent"] > 0 and counts["ok"] == counts["sent"], counts
    assert counts["failed"] == 0, counts


# ---------------------------------------------------------------------------------------------
# Tests


def test_revision_change_promotes_green_with_zero_failed_requests(
    namespace: str,
    serving: Traffic,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    region: RegionInfo,
) -> None:
    ns = namespace
    before = get_dsd(custom, ns, NAME)["status"]
    assert before["activeColour"] == "blue"
    assert service_colour(core, ns) == "blue"

    patch_spec(custom, ns, {"model": {"revision": "rev-2"}})
    seen: set[str] = set()

    def completed() -> dict[str, Any] | None:
        r = rollout(custom, ns)
        if r.get("phase"):
            seen.add(r["phase"])
        return r if r.get("phase") == "Completed" else None

    done = wait_for(completed, timeout=ROLLOUT_TIMEOUT, what="rollout Completed")
    assert {"Progressing", "Analyzing"} <= seen or "ScalingDown" in seen, seen
    assert done["activeColour"] == "green"
    checks = {a["metric"]: a for a in done["analysis"]}
    assert checks["errorRate"]["passed"] is True and checks["errorRate"]["value"] == 0
    assert checks["ttftP99Seconds"]["passed"] is True
    assert checks["requests"]["value"] >= 10

    status = get_dsd(custom, ns, NAME)["status"]
    assert status["activeColour"] == "green"
    assert service_colour(core, ns) == "green"
    wait_for(lambda: deployment_replicas(apps, ns, "blue") == 0, what="blue scaled to 0")
    green = apps.read_namespaced_deployment(f"{NAME}-green", ns)
    assert "rev-2" in green.spec.template.spec.containers[0].args
    assert len(ready_pods(core, ns, "green")) == REPLICAS
    # The router now sends the clients to green pods only.
    wait_for(
        lambda: (p := serving.stable_pods()) and all("-green-" in x for x in p),
        timeout=60,
        what="router endpoints = green pods",
    )
    want = {"RolloutStarted", "PreviewReady", "RolloutPromoted", "OldColourScaledDown"}
    wait_for(lambda: want <= set(reasons(core, ns)), what=f"Events {want}")
    assert active_column(region, ns) == "green"

    counts = finish(serving, "revision change blue->green")
    assert_no_client_errors(counts)
    assert counts["preview"].get(200, 0) >= 10, counts  # the analysis had traffic to judge


def test_erroring_preview_is_rolled_back_and_clients_see_no_errors(
    namespace: str,
    serving: Traffic,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    region: RegionInfo,
) -> None:
    ns = namespace
    # The new template's pods fail every completion (fault hook of the fleet).
    patch_spec(
        custom,
        ns,
        {
            "model": {"revision": "bad"},
            "engine": {"podAnnotations": {"sim.deepseek.dev/fault": "error"}},
        },
    )
    done = wait_phase(custom, ns, "RolledBack", "Completed")
    assert done["phase"] == "RolledBack", done
    assert done["activeColour"] == "blue"
    assert "analysis failed" in done["message"] and "errorRate" in done["message"], done
    checks = {a["metric"]: a for a in done["analysis"]}
    assert checks["errorRate"]["passed"] is False and checks["errorRate"]["value"] > 0.01
    assert service_colour(core, ns) == "blue"
    wait_for(lambda: deployment_replicas(apps, ns, "green") == 0, what="preview scaled to 0")
    wait_for(lambda: not ready_pods(core, ns, "green"), timeout=60, what="preview pods gone")
    wait_for(lambda: "AnalysisFailed" in reasons(core, ns), what="an AnalysisFailed Event")
    ev = next(e for e in events_of(core, ns, NAME) if e.reason == "AnalysisFailed")
    assert ev.type == "Warning" and "errorRate" in ev.message
    assert active_column(region, ns) == "blue"
    # The failed version is not retried: nothing starts again while the spec stays.
    status = get_dsd(custom, ns, NAME)["status"]
    assert status["activeColour"] == "blue" and status["readyReplicas"] == REPLICAS

    counts = finish(serving, "erroring preview rolled back")
    assert_no_client_errors(counts)
    assert counts["preview"].get(500, 0) > 0, counts  # the preview did fail its requests
    record(
        "preview-erroring",
        f"the analysis failed on errorRate and rolled back to blue; the preview answered "
        f"{counts['preview'].get(500, 0)} requests with 500 (analysis traffic), the stable "
        "Service none",
        counts,
    )


def test_manual_promote_waits_in_paused_then_promotes(
    namespace: str,
    serving_manual: Traffic,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
) -> None:
    """The operator is also killed in the two phases that wait on the cluster or a person:
    Progressing (the preview starting) and Paused (waiting for the promote annotation)."""
    ns = namespace
    patch_spec(custom, ns, {"model": {"revision": "rev-2"}})
    starting = wait_phase(custom, ns, "Progressing", "Analyzing", "Paused")
    assert starting["phase"] == "Progressing", starting
    kill_once_said(operator, core, ns, "RolloutStarted")
    starting = rollout(custom, ns)  # as the operator last wrote it
    assert starting["phase"] == "Progressing", starting
    # The preview gets Ready while it is down (the Deployment controller's work), and nothing
    # else moves: no analysis starts, the rollout's status is what it was.
    wait_for(
        lambda: len(ready_pods(core, ns, "green")) == REPLICAS,
        timeout=120,
        what="2 Ready green pods with the operator down",
    )
    assert rollout(custom, ns) == starting
    assert service_colour(core, ns) == "blue"
    operator.start_outranking()

    paused = wait_phase(custom, ns, "Paused", "Completed", "RolledBack")
    assert paused["phase"] == "Paused", paused
    assert paused["startedAt"] == starting["startedAt"]  # the same rollout, resumed
    assert paused["activeColour"] == "blue" and paused["previewColour"] == "green"
    assert all(a["passed"] is True for a in paused["analysis"]), paused["analysis"]
    assert service_colour(core, ns) == "blue"
    assert len(ready_pods(core, ns, "green")) == REPLICAS
    assert "RolloutPaused" in reasons(core, ns)

    # Killed while Paused: it stays Paused, the stable colour serving, across the restart.
    kill_once_said(operator, core, ns, "RolloutPaused")
    assert rollout(custom, ns)["phase"] == "Paused"
    restarted = time.time()
    operator.start_outranking()
    wait_for(
        lambda: (reconciled_at(operator) or 0) > restarted,
        timeout=60,
        what="a reconcile by the restarted operator",
    )
    assert rollout(custom, ns)["phase"] == "Paused"
    assert rollout(custom, ns)["startedAt"] == starting["startedAt"]
    assert service_colour(core, ns) == "blue"
    assert deployment_replicas(apps, ns, "blue") == REPLICAS

    annotate(custom, ns, L.PROMOTE)
    done = wait_phase(custom, ns, "ScalingDown", "Completed")
    assert done["activeColour"] == "green"
    assert done["startedAt"] == starting["startedAt"]
    assert service_colour(core, ns) == "green"
    wait_for(
        lambda: L.PROMOTE not in (get_dsd(custom, ns, NAME)["metadata"].get("annotations") or {}),
        what="the promote annotation consumed",
    )
    wait_phase(custom, ns, "Completed")
    wait_for(lambda: deployment_replicas(apps, ns, "blue") == 0, what="blue scaled to 0")
    said = times_said(core, ns)
    for once in ("RolloutStarted", "PreviewReady", "RolloutPaused", "RolloutPromoted"):
        assert said[once] == 1, (once, said)

    counts = finish(serving_manual, "manual promote")
    assert_no_client_errors(counts)
    record(
        "operator-killed-progressing",
        "killed in Progressing; the preview got Ready while it was down and the status did "
        "not move; once back the same rollout (same startedAt, one RolloutStarted, one "
        "PreviewReady) was analysed and paused",
        counts,
    )
    record(
        "operator-killed-paused",
        "killed in Paused; still Paused after the restart's first reconcile, blue serving; "
        "the promote annotation completed the same rollout to green (one RolloutPaused, one "
        "RolloutPromoted)",
        counts,
    )


def test_manual_abort_returns_to_the_stable_colour(
    namespace: str,
    serving_manual: Traffic,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
) -> None:
    ns = namespace
    patch_spec(custom, ns, {"model": {"revision": "rev-2"}})
    wait_phase(custom, ns, "Paused")
    annotate(custom, ns, L.ABORT)
    done = wait_phase(custom, ns, "Aborted")
    assert done["activeColour"] == "blue"
    assert service_colour(core, ns) == "blue"
    wait_for(lambda: deployment_replicas(apps, ns, "green") == 0, what="preview scaled to 0")
    wait_for(lambda: not ready_pods(core, ns, "green"), timeout=60, what="preview pods gone")
    wait_for(
        lambda: L.ABORT not in (get_dsd(custom, ns, NAME)["metadata"].get("annotations") or {}),
        what="the abort annotation consumed",
    )
    wait_for(lambda: "RolloutAborted" in reasons(core, ns), what="a RolloutAborted Event")
    blue = apps.read_namespaced_deployment(f"{NAME}-blue", ns)
    assert "rev-2" not in blue.spec.template.spec.containers[0].args
    assert len(ready_pods(core, ns, "blue")) == REPLICAS

    counts = finish(serving_manual, "manual abort")
    assert_no_client_errors(counts)


def test_operator_killed_mid_rollout_resumes_to_the_same_end_state(
    namespace: str,
    serving: Traffic,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    region: RegionInfo,
) -> None:
    ns = namespace
    patch_spec(custom, ns, {"model": {"revision": "rev-2"}})
    mid = wait_phase(custom, ns, "Analyzing", "Paused", "ScalingDown", "Completed")
    assert mid["phase"] == "Analyzing", mid  # killed in the middle of the analysis
    operator.kill()
    # Nobody acts while it is down: the rollout stays where it was.
    assert rollout(custom, ns)["phase"] == "Analyzing"
    assert service_colour(core, ns) == "blue"
    operator.start()
    done = wait_phase(custom, ns, "Completed", "RolledBack", "Aborted")
    assert done["phase"] == "Completed", done
    assert done["activeColour"] == "green"
    assert done["startedAt"] == mid["startedAt"]  # the same rollout, resumed
    assert service_colour(core, ns) == "green"
    wait_for(lambda: deployment_replicas(apps, ns, "blue") == 0, what="blue scaled to 0")
    assert len(ready_pods(core, ns, "green")) == REPLICAS
    assert reasons(core, ns).count("RolloutStarted") == 1
    assert active_column(region, ns) == "green"

    counts = finish(serving, "operator killed mid-rollout")
    assert_no_client_errors(counts)
    record(
        "operator-killed-mid-rollout",
        "killed in Analyzing; nothing moved while it was down; the same rollout (same "
        "startedAt, one RolloutStarted) completed to green",
        counts,
    )


def test_operator_killed_while_scaling_down_finishes_the_same_rollout(
    namespace: str,
    serving: Traffic,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
) -> None:
    ns = namespace
    # A scale-down delay long enough to kill the operator inside it.
    patch_spec(custom, ns, {"rollout": {"scaleDownDelaySeconds": 30}})
    patch_spec(custom, ns, {"model": {"revision": "rev-2"}})
    mid = wait_phase(custom, ns, "ScalingDown", "Completed", "RolledBack", "Aborted")
    assert mid["phase"] == "ScalingDown", mid  # traffic on green, blue kept for the delay
    operator.kill()
    assert service_colour(core, ns) == "green"
    assert deployment_replicas(apps, ns, "blue") == REPLICAS  # nobody scales it meanwhile
    operator.start()
    done = wait_phase(custom, ns, "Completed", "RolledBack", "Aborted")
    assert done["phase"] == "Completed", done
    assert done["startedAt"] == mid["startedAt"], (mid, done)  # the same rollout
    wait_for(lambda: deployment_replicas(apps, ns, "blue") == 0, what="blue scaled to 0")
    assert service_colour(core, ns) == "green"
    assert len(ready_pods(core, ns, "green")) == REPLICAS
    said = reasons(core, ns)
    # Events of one process aggregate; a repeated action after the restart would be a new one.
    assert said.count("RolloutStarted") == 1 and said.count("RolloutPromoted") == 1, said
    wait_for(
        lambda: reasons(core, ns).count("OldColourScaledDown") == 1,
        timeout=30,
        what="one OldColourScaledDown",
    )
    counts = finish(serving, "operator killed while scaling down")
    assert_no_client_errors(counts)
    record(
        "operator-killed-scaling-down",
        "killed in ScalingDown (traffic on green, blue kept for the delay); blue untouched "
        "while it was down; the same rollout completed, blue scaled to 0, one RolloutStarted",
        counts,
    )


def test_spec_change_during_a_rollout_supersedes_the_preview(
    namespace: str,
    serving_manual: Traffic,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
) -> None:
    ns = namespace
    patch_spec(custom, ns, {"model": {"revision": "rev-2"}})
    first = wait_phase(custom, ns, "Paused")
    patch_spec(custom, ns, {"model": {"revision": "rev-3"}})
    second = wait_for(
        lambda: (
            r
            if (r := rollout(custom, ns)).get("previewTemplateHash")
            not in (None, first["previewTemplateHash"])
            else None
        ),
        timeout=60,
        what="a new preview template",
    )
    assert second["previewColour"] == "green"
    wait_for(lambda: "RolloutSuperseded" in reasons(core, ns), what="a RolloutSuperseded Event")
    paused = wait_phase(custom, ns, "Paused")
    assert paused["previewTemplateHash"] == second["previewTemplateHash"]
    # Only rev-3 pods make up the preview now.
    green = apps.read_namespaced_deployment(f"{NAME}-green", ns)
    assert "rev-3" in green.spec.template.spec.containers[0].args
    pods = core.list_namespaced_pod(ns, label_selector=f"{L.DEPLOYMENT}={NAME},{L.COLOUR}=green")
    live = [p for p in pods.items if p.metadata.deletion_timestamp is None]
    assert live and all("rev-3" in p.spec.containers[0].args for p in live)
    annotate(custom, ns, L.PROMOTE)
    done = wait_phase(custom, ns, "Completed")
    assert done["activeColour"] == "green"
    assert service_colour(core, ns) == "green"
    wait_for(lambda: deployment_replicas(apps, ns, "blue") == 0, what="blue scaled to 0")

    counts = finish(serving_manual, "superseded rollout")
    assert_no_client_errors(counts)


def test_replica_change_alone_starts_no_rollout(
    namespace: str,
    serving: Traffic,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
) -> None:
    ns = namespace
    patch_spec(custom, ns, {"replicas": 3})
    wait_for(lambda: len(ready_pods(core, ns, "blue")) == 3, timeout=90, what="3 Ready blue")
    assert deployment_replicas(apps, ns, "green") in (None, 0)
    assert rollout(custom, ns).get("phase") in (None, "Idle")
    assert "RolloutStarted" not in reasons(core, ns)
    counts = finish(serving, "replica change")
    assert_no_client_errors(counts)


# ---------------------------------------------------------------------------------------------
# Stepped transitions: a cluster with no GPUs to spare


FULL_ZONES = ("us-east-a", "us-east-b")  # one H200 node each: 8 GPUs, one replica each


def h200_nodes_free(core: client.CoreV1Api) -> bool:
    """The H200 nodes of FULL_ZONES hold no GPU pod (other tests' pods are gone)."""
    nodes = {
        n.metadata.name
        for n in core.list_node(label_selector="nvidia.com/gpu.product=NVIDIA-H200").items
        if n.metadata.labels.get("topology.kubernetes.io/zone") in FULL_ZONES
    }
    for p in core.list_pod_for_all_namespaces().items:
        limits = [((c.resources and c.resources.limits) or {}) for c in p.spec.containers]
        if p.spec.node_name in nodes and any(lim.get("nvidia.com/gpu") for lim in limits):
            return False
    return len(nodes) == len(FULL_ZONES)


def full_cluster_body(*, auto_promote: bool = True) -> dict[str, Any]:
    """2 replicas of 8 H200 GPUs in two zones of one H200 node each: every GPU is taken, so a
    whole preview copy can never be scheduled."""
    body = dsd_body(auto_promote=auto_promote)
    spec = body["spec"]
    spec["resources"].update({"gpusPerReplica": 8, "gpuProduct": "NVIDIA-H200"})
    spec["placement"] = {"zones": list(FULL_ZONES), "maxSkew": 1}
    spec["rollout"].update({"unschedulableSeconds": 5, "maxUnavailable": 1})
    return body


@pytest.fixture
def serving_full(
    namespace: str,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    api_clients: dict[str, client.ApiClient],
) -> Iterator[Traffic]:
    wait_for(lambda: h200_nodes_free(core), timeout=120, what="the H200 nodes free")
    yield from _serve(namespace, core, custom, api_clients["us-east"], True, full_cluster_body())


def test_a_rollout_on_a_full_cluster_moves_capacity_in_steps_with_zero_failed_requests(
    namespace: str,
    serving_full: Traffic,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
) -> None:
    ns = namespace
    patch_spec(custom, ns, {"model": {"revision": "rev-2"}})
    seen: dict[str, Any] = {"phases": set(), "selectors": set(), "stepped": False}

    def completed() -> dict[str, Any] | None:
        r = rollout(custom, ns)
        seen["phases"].add(r.get("phase"))
        seen["stepped"] |= bool(r.get("stepped"))
        seen["selectors"].add(service_colour(core, ns))
        return r if r.get("phase") == "Completed" and r.get("activeColour") == "green" else None

    done = wait_for(completed, timeout=ROLLOUT_TIMEOUT, every=1.0, what="stepped rollout Completed")
    assert seen["stepped"], seen  # the whole copy could not start: it went stepped
    assert {"Progressing", "Analyzing"} <= seen["phases"], seen
    # blue alone, then both colours (the first green pod passed), then green alone
    assert {"blue", None, "green"} <= seen["selectors"], seen
    assert "in steps" in done["message"], done
    wait_for(lambda: len(ready_pods(core, ns, "green")) == REPLICAS, what="2 Ready green pods")
    assert deployment_replicas(apps, ns, "blue") == 0
    assert service_colour(core, ns) == "green"
    want = {"RolloutStarted", "SteppedTransition", "PreviewReady", "FirstPodsPassed"}
    want |= {"TransitionStep", "RolloutPromoted"}
    wait_for(lambda: want <= set(reasons(core, ns)), what=f"Events {want}")
    counts = finish(serving_full, "stepped rollout on a full cluster")
    assert_no_client_errors(counts)


def test_a_failed_analysis_on_a_full_cluster_rolls_back_in_steps(
    namespace: str,
    serving_full: Traffic,
    operator: OperatorProcess,
    local_cluster: LocalCluster,
    region: RegionInfo,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
) -> None:
    """The first new pod starts failing its requests while it is analysed; the operator is
    killed while it rolls back (RollingBack). RollingBack ends as soon as the preview's pods
    are gone, which takes the Deployment controller well under a second here; so that the kill
    lands inside it, the region's kube-controller-manager is frozen (SIGSTOP) before the errors
    start (the operator's scale-down of the preview then waits) and thawed after the kill."""
    ns = namespace
    patch_spec(custom, ns, {"model": {"revision": "bad"}})
    analysing = wait_phase(custom, ns, "Analyzing", "Completed", "RolledBack")
    assert analysing["phase"] == "Analyzing" and analysing["stepped"], analysing
    wait_for(
        lambda: serving_full.counts()["preview"].get(200, 0) > 0,
        timeout=30,
        what="the preview answering its analysis traffic",
    )
    green = [  # the one analysed, and the one Pending for the next step's GPUs
        p.metadata.name
        for p in core.list_namespaced_pod(
            ns, label_selector=f"{L.DEPLOYMENT}={NAME},{L.COLOUR}=green"
        ).items
        if p.metadata.deletion_timestamp is None
    ]
    kcm = next(
        c.pid
        for c in local_cluster.status()[region.name].components
        if c.name == "kube-controller-manager"
    )
    assert kcm is not None
    os.kill(kcm, signal.SIGSTOP)
    try:
        for pod in green:  # the fleet's fault hook: every completion answers 500
            core.patch_namespaced_pod(pod, ns, {"metadata": {"annotations": {FAULT: "error"}}})
        back = wait_phase(custom, ns, "RollingBack", "RolledBack", "Completed")
        assert back["phase"] == "RollingBack", back
        kill_once_said(operator, core, ns, "AnalysisFailed")
        assert rollout(custom, ns)["phase"] == "RollingBack"
        assert deployment_replicas(apps, ns, "green") == 0  # the preview's scale-down, asked
    finally:
        os.kill(kcm, signal.SIGCONT)
    # The controllers act on what was asked (the preview goes, blue comes back), and nobody
    # ends the rollback while the operator is down.
    wait_for(lambda: not ready_pods(core, ns, "green"), timeout=60, what="the preview pod gone")
    assert rollout(custom, ns)["phase"] == "RollingBack"
    operator.start_outranking()

    done = wait_phase(custom, ns, "RolledBack", "Completed")
    assert done["phase"] == "RolledBack" and done["activeColour"] == "blue", done
    assert done["startedAt"] == analysing["startedAt"], done  # the same rollout
    # back the way it came, the failing version kept away from the stable Service
    assert "rolled back in steps" in done["message"] and "errorRate" in done["message"], done
    wait_for(lambda: len(ready_pods(core, ns, "blue")) == REPLICAS, what="2 Ready blue pods")
    assert deployment_replicas(apps, ns, "green") == 0
    assert service_colour(core, ns) == "blue"
    said = times_said(core, ns)
    for once in ("RolloutStarted", "SteppedTransition", "AnalysisFailed", "RolledBackInSteps"):
        assert said[once] == 1, (once, said)
    status = get_dsd(custom, ns, NAME)["status"]
    cond = {c["type"]: c for c in status["conditions"]}
    assert cond["Degraded"]["status"] == "True", cond["Degraded"]
    counts = finish(serving_full, "failed stepped rollout rolled back")
    assert_no_client_errors(counts)  # the failing pod never served the stable Service
    assert counts["preview"].get(500, 0) > 0, counts
    record(
        "analysis-fails-full-cluster",
        "rolled back in steps (SteppedTransition, AnalysisFailed, RolledBackInSteps Events), "
        "2 Ready blue pods, Degraded=True",
        counts,
    )
    record(
        "operator-killed-rolling-back",
        "killed in RollingBack (the preview's scale-down asked, its pod not gone yet); the "
        "status did not move while it was down; once back the same rollout ended RolledBack "
        "(one AnalysisFailed, one RolledBackInSteps), 2 Ready blue pods, green at 0",
        counts,
    )
