"""Router pods in the simulated fleet (testbed/sim/vllmrouter.py, fleet.decide_router): which
pods, which command line runs, when the pod is Ready, what happens on each pod state."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from testbed.labels import SIM_ENGINE_ERROR, SIM_RESTART_COUNT
from testbed.sim.fleet import (
    Action,
    PodView,
    decide_router,
    pod_view,
    router_ready_wanted,
)
from testbed.sim.vllmrouter import (
    LIVENESS_PATH,
    Probe,
    ProbeState,
    RouterPhase,
    RouterPods,
    is_router_pod,
    listen_port,
    local_args,
    pre_stop_seconds,
    probe_step,
    readiness_probe,
    restart_delay,
    router_args,
    router_container,
    serves_pod_ip,
    with_flag,
)

ARGS = [
    "--host",
    "0.0.0.0",
    "--port",
    "8000",
    "--service-discovery",
    "--selector",
    "app.kubernetes.io/component=engine",
    "serving.deepseek.dev/deployment=r1",
    "--service-discovery-port",
    "8000",
    "--service-discovery-namespace",
    "ns",
    "--policy",
    "round_robin",
]


def router_pod(
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": "r1-router-abc",
            "uid": "u1",
            "labels": labels
            if labels is not None
            else {"app.kubernetes.io/component": "router", "serving.deepseek.dev/deployment": "r1"},
            "annotations": annotations or {},
        },
        "spec": {
            "nodeName": "cpu-1",
            "containers": containers
            if containers is not None
            else [{"name": "router", "command": ["vllm-router"], "args": ARGS}],
        },
        "status": {"phase": "Running", "podIP": "10.16.9.4"},
    }


@pytest.mark.parametrize(
    ("desc", "pod", "want"),
    [
        ("router with a deployment label", router_pod(), True),
        (
            "batch router (spec.router.batch) with a deployment label",
            router_pod(
                labels={
                    "app.kubernetes.io/component": "router-batch",
                    "serving.deepseek.dev/deployment": "r1",
                }
            ),
            True,
        ),
        (
            "router without a deployment label",
            router_pod(labels={"app.kubernetes.io/component": "router"}),
            False,
        ),
        (
            "engine pod",
            router_pod(
                labels={
                    "app.kubernetes.io/component": "engine",
                    "serving.deepseek.dev/deployment": "r1",
                }
            ),
            False,
        ),
        (
            "opted out of the fleet",
            router_pod(annotations={"sim.deepseek.dev/fleet": "false"}),
            False,
        ),
    ],
)
def test_is_router_pod(desc: str, pod: dict[str, Any], want: bool) -> None:
    assert is_router_pod(pod) is want, desc


def test_router_container_is_the_one_named_router_else_the_first() -> None:
    side = {"name": "sidecar", "command": ["envoy"]}
    main = {"name": "router", "command": ["vllm-router"]}
    assert router_container(router_pod(containers=[side, main])) is main
    assert router_container(router_pod(containers=[side])) is side
    assert router_container(router_pod(containers=[])) is None


@pytest.mark.parametrize(
    ("container", "want"),
    [
        ({"command": ["vllm-router"], "args": ["--port", "8000"]}, ["--port", "8000"]),
        ({"command": ["/usr/local/bin/vllm-router", "--port", "1"]}, ["--port", "1"]),
        ({"args": ["vllm-router", "--policy", "random"]}, ["--policy", "random"]),
        ({"command": ["python", "-m", "vllm_router.launch_router"]}, None),
        ({"args": ["--port", "8000"]}, None),  # the image's entrypoint: unknown here
        ({}, None),
    ],
)
def test_router_args(container: dict[str, Any], want: list[str] | None) -> None:
    assert router_args(container) == want


def test_local_args_listen_at_the_sim_address_and_keep_the_rest() -> None:
    out = local_args(ARGS, "127.16.9.4")
    assert out[:4] == ["--host", "127.16.9.4", "--port", "8000"]
    assert out[4:-2] == ARGS[4:]
    # The CLI serves metrics on 127.0.0.1:29000 unless told otherwise: always the sim address.
    assert out[-2:] == ["--prometheus-host", "127.16.9.4"]
    both = local_args(
        ["--host=::", "--prometheus-port", "9000", "--prometheus-host", "0.0.0.0"], "h"
    )
    assert both == ["--host", "h", "--prometheus-port", "9000", "--prometheus-host", "h"]
    assert local_args([], "h") == ["--host", "h", "--prometheus-host", "h"]


def test_with_flag_replaces_every_occurrence_once() -> None:
    args = ["--host", "a", "--x", "--host=b", "--port", "1"]
    assert with_flag(args, "--host", "c") == ["--host", "c", "--x", "--port", "1"]


@pytest.mark.parametrize(
    ("args", "port"),
    [(ARGS, 8000), (["--port=9001"], 9001), ([], 30000), (["--port", "x"], 30000)],
)
def test_listen_port(args: list[str], port: int) -> None:
    assert listen_port(args) == port


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (["--host", "0.0.0.0"], True),
        (["--host", "::"], True),
        (["--host", "10.16.9.4"], True),  # the pod's own IP
        (["--host", "127.0.0.1"], False),
        ([], False),  # vllm-router's default is 127.0.0.1
        (["--host", "10.16.9.5"], False),
    ],
)
def test_serves_pod_ip(args: list[str], want: bool) -> None:
    assert serves_pod_ip(args, "10.16.9.4") is want


def test_readiness_probe_from_the_container() -> None:
    c = {
        "ports": [{"name": "http", "containerPort": 8000}],
        "readinessProbe": {
            "httpGet": {"path": "/readiness", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 2,
            "initialDelaySeconds": 1,
        },
    }
    assert readiness_probe(c, 8000) == Probe(
        port=8000, path="/readiness", period_s=2, initial_delay_s=1, failure_threshold=2
    )
    tcp = readiness_probe({"readinessProbe": {"tcpSocket": {"port": 9000}}}, 8000)
    assert (tcp.port, tcp.path, tcp.period_s) == (9000, None, 10)
    # No probe (or an exec probe, which cannot run here): the server answering once is enough.
    for c in ({}, {"readinessProbe": {"exec": {"command": ["true"]}}}):
        p = readiness_probe(c, 8000)
        assert (p.port, p.path, p.until_ready) == (8000, LIVENESS_PATH, True)


def test_probe_thresholds() -> None:
    p = Probe(port=1, success_threshold=2, failure_threshold=3)
    s = ProbeState()
    s = probe_step(s, True, p)
    assert not s.ready  # one pass of two
    s = probe_step(s, True, p)
    assert s.ready
    s = probe_step(probe_step(s, False, p), False, p)
    assert s.ready  # two failures of three
    s = probe_step(s, True, p)
    assert s.ready and s.failures == 0  # a pass resets the failures
    for _ in range(3):
        s = probe_step(s, False, p)
    assert not s.ready


def test_restart_delay_is_the_kubelets_back_off() -> None:
    assert [restart_delay(n) for n in range(7)] == [0, 10, 20, 40, 80, 160, 300]
    assert restart_delay(20) == 300


def test_pre_stop_sleep() -> None:
    assert pre_stop_seconds({"lifecycle": {"preStop": {"sleep": {"seconds": 5}}}}) == 5
    assert pre_stop_seconds({}) == 0


# --- the fleet's decision for a router pod -----------------------------------------------------

NODE = {
    "metadata": {"name": "cpu-1", "labels": {}},
    "status": {"addresses": [{"type": "InternalIP", "address": "10.16.0.9"}]},
}
LIVE = pod_view(router_pod(), NODE, set())
IDENTITY = LIVE.identity
DELETING = PodView(router=True, engine=False, terminating=True, identity=IDENTITY)
DRAINED = PodView(
    router=True, engine=False, terminating=True, drained_marked=True, identity=IDENTITY
)
GONE = PodView(exists=False)
NO_IP = PodView(router=True, engine=False, has_ip=False, identity=IDENTITY)
NODE_DOWN = PodView(router=True, engine=False, node_down=True, identity=IDENTITY)
OTHER = PodView(router=True, engine=False, identity=("u2", "10.16.9.8", "cpu-2"))


def test_pod_view_of_a_router_pod() -> None:
    assert LIVE.router and not LIVE.engine
    assert LIVE.scheduled_on_sim_node and LIVE.has_ip


@pytest.mark.parametrize(
    ("view", "phase", "want"),
    [
        (LIVE, None, Action.START),
        (LIVE, RouterPhase.STOPPED, Action.START),
        (LIVE, RouterPhase.RUNNING, Action.NONE),
        (LIVE, RouterPhase.FAILED, Action.NONE),  # cannot run; the spec will not change
        (LIVE, RouterPhase.CRASHED, Action.START),  # its node is back
        (OTHER, RouterPhase.RUNNING, Action.RESTART),
        (NO_IP, None, Action.NONE),
        (NO_IP, RouterPhase.RUNNING, Action.STOP),
        (NODE_DOWN, RouterPhase.RUNNING, Action.CRASH),
        (NODE_DOWN, RouterPhase.CRASHED, Action.NONE),
        (DELETING, RouterPhase.RUNNING, Action.DRAIN),
        (DELETING, RouterPhase.STOPPING, Action.NONE),
        (DELETING, RouterPhase.STOPPED, Action.MARK_DRAINED),
        (DELETING, RouterPhase.FAILED, Action.MARK_DRAINED),
        (DELETING, None, Action.MARK_DRAINED),
        (DRAINED, RouterPhase.STOPPED, Action.NONE),
        (GONE, RouterPhase.RUNNING, Action.STOP),
        (GONE, RouterPhase.STOPPING, Action.STOP),  # removed before the grace period ran out
        (GONE, RouterPhase.STOPPED, Action.NONE),
        (GONE, None, Action.NONE),
    ],
)
def test_decide_router(view: PodView, phase: RouterPhase | None, want: Action) -> None:
    assert decide_router(view, phase, IDENTITY) == want


@pytest.mark.parametrize(
    ("view", "phase", "ready", "want"),
    [
        (LIVE, RouterPhase.RUNNING, True, True),
        (LIVE, RouterPhase.RUNNING, False, False),  # starting, failing its probe, or exited
        (LIVE, RouterPhase.FAILED, False, False),
        (LIVE, None, False, False),  # the fleet has no process for it (it restarted)
        (DELETING, RouterPhase.STOPPING, True, None),  # kwok takes it out of service
        (GONE, None, False, None),
        (NO_IP, None, False, None),
    ],
)
def test_router_ready_follows_the_process_and_its_probe(
    view: PodView, phase: RouterPhase | None, ready: bool, want: bool | None
) -> None:
    assert router_ready_wanted(view, phase, ready) == want


# --- the runner, with the real binary (no cluster: no token, no discovery) ---------------------


async def _until(check: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_the_runner_runs_probes_and_stops_the_real_router(tmp_path: Path) -> None:
    """Start (at the sim address), Ready once /liveness answers, drain: preStop, SIGTERM, the
    router exits well within the grace period. A router on its default 127.0.0.1 runs but is
    never Ready, and the pod says why."""
    a, b = random.randrange(1, 255), random.randrange(1, 255)
    pods: dict[str, dict[str, Any]] = {}
    patches: list[tuple[str, dict[str, str | None]]] = []

    async def patch(pod: Mapping[str, Any], ann: Mapping[str, str | None]) -> None:
        patches.append((pod["metadata"]["name"], dict(ann)))

    def make(name: str, host_args: list[str], ip: str) -> dict[str, Any]:
        p = router_pod(containers=[{"name": "router", "command": ["vllm-router"]}])
        p["metadata"]["name"] = name
        p["metadata"]["uid"] = name
        p["status"]["podIP"] = ip
        p["spec"]["automountServiceAccountToken"] = False
        p["spec"]["terminationGracePeriodSeconds"] = 10
        c = p["spec"]["containers"][0]
        c["args"] = [*host_args, "--port", "18000", "--policy", "round_robin"]
        c["lifecycle"] = {"preStop": {"sleep": {"seconds": 1}}}
        pods[f"ns/{name}"] = p
        return p

    good = make("good", ["--host", "0.0.0.0"], f"10.251.{a}.{b}")
    local = make("local", [], f"10.252.{a}.{b}")
    runner = RouterPods(
        "unit", tmp_path / "none", None, None, pods, patch, lambda key: None, state_dir=tmp_path
    )
    try:
        s_good = runner.start("ns/good", good, ())
        s_local = runner.start("ns/local", local, ())
        await _until(lambda: s_good.ready and s_local.probe_state.ready)
        assert s_good.url == f"http://127.251.{a}.{b}:18000"
        assert not s_local.ready  # it answers at the sim address, but not at its pod IP
        assert s_local.error and "--host 0.0.0.0" in s_local.error
        assert ("local", {SIM_ENGINE_ERROR: s_local.error}) in patches
        log = (tmp_path / "logs" / "router-ns.good.log").read_text()
        assert f"Starting server on 127.251.{a}.{b}:18000" in log

        started = asyncio.get_running_loop().time()
        runner.drain(s_good, good)
        assert s_good.task is not None
        await s_good.task
        took = asyncio.get_running_loop().time() - started
        assert s_good.phase == RouterPhase.STOPPED and not s_good.ready
        assert 1.0 <= took < 5.0, took  # preStop 1 s, then SIGTERM: a prompt, graceful exit
        assert "graceful shutdown" in (tmp_path / "logs" / "router-ns.good.log").read_text()
        assert not any(SIM_RESTART_COUNT in ann for _, ann in patches)  # not a crash
    finally:
        await runner.close()
