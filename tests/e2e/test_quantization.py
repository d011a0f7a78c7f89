"""Issue 15 on the local cluster: the quantization ladder under GPU pressure, with the fleet
under load.

One H100 node of us-east has 2 GPUs left for the test (a placeholder pod of the test holds the
other 6: the scheduler, not the test, says no to a third replica). The 7B model serves bf16 on
1 GPU per replica; fp8 carries ~1.4x more per replica on the simulated engine (its model is
calibrated from published vLLM measurements, testbed/sim/presets.py). A surge beyond what 2 bf16
replicas carry: the autoscaler asks for more, the GPUs say no (ScalingLimited), the SLO breaks,
so the policy steps down to fp8; the switch is a stepped transition (no spare GPUs), clients
see no failed request, and the SLO holds again. The surge ends: the policy steps back up to
bf16. Status, Events, operator metrics and the dashboard panel's query show each step.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from deepseek_operator import labels as L
from kubernetes import client

from testbed.cluster import RegionInfo

from .operator_process import OperatorProcess
from .test_autoscale import (  # noqa: F401  (fixtures)
    Load,
    Router,
    crds,
    custom,
    fleet,
    loads,
    operator,
    routers,
)
from .test_operator import GROUP, PLURAL, VERSION, create_dsd, events_of, example, get_dsd
from .waiting import wait_for

OPERATOR_JOB = "deepseek-operator"

pytestmark = pytest.mark.e2e

NAME = "r1-distill-7b"
FREE_GPUS = 2
# Evenly spaced requests of these lengths: one bf16 replica keeps TPOT p99 within the 50 ms SLO
# up to ~10.5 req/s, one fp8 replica up to ~13 (the engine model of testbed/sim/engine.py).
PROMPT, OUTPUT = 2048, 128
LOW, SURGE = 2.0, 24.0  # req/s: too much for 2 bf16 replicas, within what 2 fp8 carry
SURGE_S, AFTER_S = 270.0, 210.0


def write_phases(path: Path, phases: list[tuple[float, float]]) -> Path:
    """A trace file in the Azure trace's CSV format: (rate, seconds) phases, constant lengths
    (the rows are made up here)."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    t = 0.0
    for rate, seconds in phases:
        for i in range(int(rate * seconds)):
            ts = datetime.fromtimestamp(t0 + t + i / rate, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            lines.append(f"{ts},{PROMPT},{OUTPUT}")
        t += seconds
    path.write_text("\n".join(lines) + "\n")
    return path


def gpu_pods_on(core: client.CoreV1Api, node: str) -> int:
    used = 0
    for p in core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items:
        if p.metadata.deletion_timestamp is None and p.status.phase not in ("Succeeded", "Failed"):
            for c in p.spec.containers:
                used += int(((c.resources and c.resources.limits) or {}).get("nvidia.com/gpu", 0))
    return used


@pytest.fixture
def small_node(core: client.CoreV1Api, namespace: str) -> Iterator[str]:
    """An H100 node with exactly FREE_GPUS GPUs free: the rest held by a placeholder pod."""
    nodes = core.list_node(label_selector="nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3").items
    node = None
    for n in sorted(nodes, key=lambda n: n.metadata.name):
        if gpu_pods_on(core, n.metadata.name) == 0 and not n.spec.unschedulable:
            node = n
            break
    assert node is not None, "no free H100 node"
    name = node.metadata.name
    hold = int(node.status.allocatable["nvidia.com/gpu"]) - FREE_GPUS
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {
                "name": "placeholder",
                "annotations": {"sim.deepseek.dev/fleet": "false"},  # not an engine
            },
            "spec": {
                "nodeName": name,
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                "containers": [
                    {
                        "name": "hold",
                        "image": "registry.k8s.io/pause:3.10",
                        "resources": {"limits": {"nvidia.com/gpu": str(hold)}},
                    }
                ],
            },
        },
    )
    wait_for(lambda: gpu_pods_on(core, name) == hold, timeout=60, what="the placeholder placed")
    yield name


def body(node: str) -> dict[str, Any]:
    b = example("deepseek-r1-distill-7b.yaml", fleet=True)
    spec = b["spec"]
    spec["resources"]["gpuProduct"] = "NVIDIA-H100-80GB-HBM3"
    spec["placement"] = {"nodeSelector": {"kubernetes.io/hostname": node}}
    spec["scaling"] = {
        "minReplicas": 2,
        "maxReplicas": 4,  # more than the GPUs allow: the cluster, not the spec, is the limit
        "intervalSeconds": 5,
        "slo": {"ttftP99Seconds": 1, "tpotP99Seconds": 0.05},
        "scaleDown": {"stabilizationSeconds": 30},
    }
    spec["quantization"] = {
        "ladder": [{"name": "bf16", "weights": "bf16"}, {"name": "fp8", "weights": "fp8"}],
        "policy": {
            "automatic": True,
            "stepDownAfterSeconds": 15,
            "stepUpAfterSeconds": 30,
            "minDwellSeconds": 60,
            "maxSwitchesPerHour": 10,
        },
    }
    spec["rollout"] = {
        "unschedulableSeconds": 5,
        "maxUnavailable": 1,
        "readyTimeoutSeconds": 180,
        "scaleDownDelaySeconds": 5,
        "analysis": {"durationSeconds": 15, "minRequests": 0, "maxErrorRate": 0.01},
    }
    return b


def prom(region: RegionInfo, q: str) -> float | None:
    url = f"{region.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': q})}"
    with urllib.request.urlopen(url, timeout=10) as r:
        res = json.loads(r.read())["data"]["result"]
    return float(res[0]["value"][1]) if res else None


def quant(api: client.CustomObjectsApi, ns: str) -> dict[str, Any]:
    return dict((get_dsd(api, ns, NAME).get("status") or {}).get("quantization") or {})


def serves(api: client.CustomObjectsApi, ns: str, mode: str) -> dict[str, Any] | None:
    """The status once `mode` serves alone: the rollout to it completed."""
    st = get_dsd(api, ns, NAME).get("status") or {}
    done = (st.get("rollout") or {}).get("phase") == "Completed"
    return st if st.get("mode") == mode and done else None


def served_mode(core: client.CoreV1Api, ns: str) -> set[str]:
    """Modes of the Ready engine pods."""
    pods = core.list_namespaced_pod(ns, label_selector=f"{L.DEPLOYMENT}={NAME}").items
    out = set()
    for p in pods:
        conds = {c.type: c.status for c in (p.status.conditions or [])}
        if conds.get("Ready") == "True" and p.metadata.deletion_timestamp is None:
            out.add(p.metadata.labels.get(L.MODE))
    return out


def test_a_surge_beyond_the_gpus_steps_down_a_rung_and_back_up_when_it_ends(
    namespace: str,
    region: RegionInfo,
    fleet: None,  # noqa: F811
    operator: OperatorProcess,  # noqa: F811
    custom: client.CustomObjectsApi,  # noqa: F811
    core: client.CoreV1Api,
    routers: Callable[[str, str], Router],  # noqa: F811
    loads: Callable[[str, Path, Path], Load],  # noqa: F811
    small_node: str,
    tmp_path: Path,
) -> None:
    ns = namespace
    # the operator scraped as the dashboards expect it (job deepseek-operator)
    sd = region.prometheus_targets_dir / f"{ns}-operator.json"
    target = {"targets": [f"127.0.0.1:{operator.metrics_port}"], "labels": {"job": OPERATOR_JOB}}
    sd.write_text(json.dumps([target]))
    try:
        surge_steps_down_and_back_up(ns, region, custom, core, routers, loads, small_node, tmp_path)
    finally:
        sd.unlink(missing_ok=True)


def surge_steps_down_and_back_up(
    ns: str,
    region: RegionInfo,
    api: client.CustomObjectsApi,
    core: client.CoreV1Api,
    make_router: Callable[[str, str], Router],
    make_load: Callable[[str, Path, Path], Load],
    small_node: str,
    tmp_path: Path,
) -> None:
    create_dsd(api, ns, body(small_node))
    wait_for(lambda: served_mode(core, ns) == {"bf16"}, timeout=120, what="bf16 serving")
    router = make_router(ns, NAME)
    trace = write_phases(tmp_path / "trace.csv", [(LOW, 30), (SURGE, SURGE_S), (LOW, AFTER_S)])
    load = make_load(router.url, trace, tmp_path)

    # The surge: more replicas cannot come (the GPUs), the SLO breaks, the policy steps down.
    down = wait_for(
        lambda: (q := quant(api, ns)).get("target") == "fp8" and q,
        timeout=180,
        every=2.0,
        what="the policy stepping down to fp8",
    )
    assert down["reason"] == "StepDown", down
    assert "SLO" in down["message"] and "fp8" in down["message"], down
    cond = {c["type"]: c for c in get_dsd(api, ns, NAME)["status"].get("conditions", [])}.get(
        "ScalingLimited"
    )
    assert cond is not None and cond["status"] == "True", cond  # the GPUs, not the spec
    r = wait_for(
        lambda: serves(api, ns, "fp8"),
        timeout=240,
        every=2.0,
        what="fp8 serving (a stepped transition: no spare GPUs)",
    )
    assert served_mode(core, ns) == {"fp8"}
    assert "in steps" in r["rollout"]["message"], r["rollout"]
    # The SLO holds again on fp8 while the surge goes on.
    sel = f'namespace="{ns}",dsd="{NAME}"'
    ttft = (
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(vllm:time_to_first_token_seconds_bucket{{{sel}}}[30s])))"
    )
    wait_for(
        lambda: (v := prom(region, ttft)) is not None and v <= 1.0,
        timeout=200,
        every=5.0,
        what="TTFT p99 back within the 1 s SLO on fp8",
    )
    assert (prom(region, f"max(deepseek_operator_quantization_rung{{{sel}}})") or 0) == 1

    # The surge ends: the policy steps back up to bf16 (again in steps).
    up = wait_for(
        lambda: (q := quant(api, ns)).get("target") == "bf16" and q,
        timeout=AFTER_S,
        every=3.0,
        what="the policy stepping back up to bf16",
    )
    assert up["reason"] == "StepUp", up
    wait_for(lambda: serves(api, ns, "bf16"), timeout=240, every=2.0, what="bf16 again")
    assert served_mode(core, ns) == {"bf16"}
    hops = [(s["from"], s["to"], s["reason"]) for s in quant(api, ns)["switches"]]
    assert hops == [("bf16", "fp8", "StepDown"), ("fp8", "bf16", "StepUp")], hops
    reasons = [e.reason for e in events_of(core, ns, NAME)]
    assert reasons.count("QuantizationSwitched") == 2, reasons
    assert "SteppedTransition" in reasons, reasons
    wait_for(
        lambda: prom(region, f"max(deepseek_operator_quantization_rung{{{sel}}})") == 0,
        timeout=60,
        what="the dashboard's rung query back at 0",
    )
    down_total = prom(
        region, f'sum(deepseek_operator_quantization_switches_total{{{sel},direction="down"}})'
    )
    assert down_total == 1

    load.proc.wait(timeout=AFTER_S + 120)  # the trace runs out; the summary is written
    summary = json.loads(load.summary.read_text()) if load.summary.exists() else {}
    assert summary.get("failed", 1) == 0, summary  # no client request failed in either switch
    assert summary.get("ok", 0) > SURGE * SURGE_S * 0.9, summary
    assert (
        api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, NAME)["spec"][
            "quantization"
        ].get("mode")
        is None
    )  # the policy never writes the user's spec
