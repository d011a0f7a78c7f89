"""The fleet's pure parts: reading a pod's vLLM command line like `vllm serve` does, choosing
the engine preset from it, and seeing which pods it plays (local-cluster addressing)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from testbed.sim.fleet import (
    EngineArgs,
    parse_engine_args,
    plan_replica,
    pod_view,
    sim_address,
)

H100 = "NVIDIA-H100-80GB-HBM3"
H200 = "NVIDIA-H200"


def node(product: str = H200, ip: str = "10.16.0.3", down: bool = False) -> dict[str, Any]:
    ann = {"sim.deepseek.dev/zone-down": "true"} if down else {}
    return {
        "metadata": {
            "name": "n1",
            "labels": {"nvidia.com/gpu.product": product, "topology.kubernetes.io/zone": "z-a"},
            "annotations": ann,
        },
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}],
            "capacity": {"nvidia.com/gpu": "8"},
        },
    }


def pod(args: list[str], gpus: int = 8, port: int | None = None, **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": "vllm",
        "args": args,
        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
    }
    if port is not None:
        c["ports"] = [{"name": "http", "containerPort": port}]
    return {
        "metadata": {
            "namespace": "ns",
            "name": "p",
            "uid": "u1",
            "labels": {
                "app.kubernetes.io/component": "engine",
                "serving.deepseek.dev/deployment": "r1",
            },
            **extra,
        },
        "spec": {"nodeName": "n1", "containers": [c], "terminationGracePeriodSeconds": 45},
        "status": {"phase": "Running", "podIP": "10.16.3.7"},
    }


def test_args_are_read_like_vllm_serve():
    a = parse_engine_args(
        ["vllm", "serve"],
        [
            "deepseek-ai/DeepSeek-R1",
            "--served-model-name",
            "r1",
            "r1-alias",
            "--tensor-parallel-size=8",
            "--trust-remote-code",
            "--kv-cache-dtype",
            "fp8",
            "--port",
            "9000",
            "--shutdown-timeout",
            "30",
        ],
    )
    assert a == EngineArgs(
        model="deepseek-ai/DeepSeek-R1",
        served_model_names=("r1", "r1-alias"),
        port=9000,
        port_given=True,
        kv_cache_dtype="fp8",
        tensor_parallel_size=8,
        shutdown_timeout=30.0,
    )
    sh = parse_engine_args(["sh", "-c", "exec vllm serve --model m -tp 2 --quantization awq"], [])
    assert (sh.model, sh.tensor_parallel_size, sh.quantization) == ("m", 2, "awq")
    assert parse_engine_args([], ["--model", "x"]).shutdown_timeout is None
    with pytest.raises(ValueError):
        parse_engine_args([], ["--model", "x", "--max-model-len", "lots"])
    assert parse_engine_args([], ["--model", "x"]).scheduling_policy == "fcfs"
    prio = parse_engine_args([], ["--model", "x", "--scheduling-policy", "priority"])
    assert prio.scheduling_policy == "priority"
    with pytest.raises(ValueError, match="scheduling-policy"):
        parse_engine_args([], ["--model", "x", "--scheduling-policy", "lifo"])


def test_preset_follows_checkpoint_gpus_and_quantization():
    fp8 = plan_replica(
        pod(["--model", "deepseek-ai/DeepSeek-R1", "--tensor-parallel-size", "8"]), node()
    )
    assert fp8.error is None and fp8.preset is not None
    assert (fp8.preset.weights, fp8.preset.gpus, fp8.preset.gpu.product) == ("fp8", 8, H200)
    assert fp8.model_name == "deepseek-ai/DeepSeek-R1" and fp8.port == 8000
    assert fp8.grace_s == 45
    kv8 = plan_replica(
        pod(["--model", "deepseek-ai/DeepSeek-R1", "-tp", "8", "--kv-cache-dtype", "fp8"]), node()
    )
    assert kv8.preset is not None and kv8.preset.num_gpu_blocks > fp8.preset.num_gpu_blocks
    # FP8 R1 does not fit 8x80 GB: the engine fails as vLLM would (CUDA OOM)
    oom = plan_replica(pod(["--model", "deepseek-ai/DeepSeek-R1", "-tp", "8"]), node(H100))
    assert oom.error_reason == "OutOfMemory"
    awq = plan_replica(
        pod(["--model", "deepseek-ai/DeepSeek-R1", "-tp", "8", "--quantization", "awq"]),
        node(H100),
    )
    assert awq.error is None and awq.preset is not None and awq.preset.weights == "int4"
    small = plan_replica(
        pod(["--model", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"], gpus=1, port=8080),
        node(H100),
    )
    assert small.preset is not None and small.preset.gpus == 1 and small.port == 8080
    few = plan_replica(pod(["--model", "deepseek-ai/DeepSeek-R1", "-tp", "8"], gpus=4), node())
    assert few.error_reason == "NotEnoughGPUs"
    unknown = plan_replica(pod(["--model", "meta/other"]), node())
    assert unknown.error_reason == "UnknownModel"


def test_local_cluster_addresses():
    assert sim_address("10.16.3.7") == "127.16.3.7"
    assert sim_address("127.0.0.5") == "127.0.0.5"
    assert sim_address("192.168.0.1") is None
    assert sim_address(None) is None
    v = pod_view(pod(["--model", "m"]), node(), set())
    assert v.engine and v.has_ip and v.scheduled_on_sim_node and not v.node_down
    assert pod_view(pod(["--model", "m"]), node(down=True), set()).node_down
    assert (
        pod_view(pod(["--model", "m"]), node(ip="192.168.0.1"), set()).scheduled_on_sim_node
        is False
    )
    gone = pod(["--model", "m"], deletionTimestamp="2026-01-01T00:00:00Z")
    assert pod_view(gone, node(), set()).terminating
    opted_out = pod(["--model", "m"], annotations={"sim.deepseek.dev/fleet": "false"})
    assert not pod_view(opted_out, node(), set()).engine


def test_prometheus_file_sd(tmp_path):
    from testbed.sim.fleet import engine_target_labels
    from testbed.sim.router import file_sd_groups, register_file_sd, write_file_sd

    path = register_file_sd(tmp_path / "targets", "sim-router-a", "127.0.0.1:24080", {"job": "r"})
    assert json.loads(path.read_text()) == [
        {"targets": ["127.0.0.1:24080"], "labels": {"job": "r"}}
    ]
    assert not write_file_sd(path, file_sd_groups(["127.0.0.1:24080"], {"job": "r"}))  # unchanged
    assert write_file_sd(path, file_sd_groups([], {"job": "r"}))
    assert json.loads(path.read_text()) == []
    labels = engine_target_labels(pod(["--model", "m"]), "n1", "vllm")
    assert labels == {
        "job": "deepseek-engines",
        "namespace": "ns",
        "pod": "p",
        "dsd": "r1",
        "colour": "",
        "mode": "",
        "node": "n1",
        "container": "vllm",
    }


@pytest.mark.parametrize(
    ("example", "product", "want"),
    [
        ("deepseek-r1.yaml", H200, "DeepSeek-R1-671B-fp8-8xH200"),
        ("deepseek-r1.yaml", H100, None),  # FP8 R1 does not fit 8x80 GB
        ("deepseek-r1-distill-7b.yaml", H100, "DeepSeek-R1-Distill-Qwen-7B-bf16-1xH100"),
    ],
)
def test_reads_the_pods_the_operator_makes(example: str, product: str, want: str | None):
    from pathlib import Path

    import yaml
    from deepseek_operator import desired
    from deepseek_operator.api import Colour, DeepSeekDeployment

    root = Path(__file__).resolve().parents[2]
    dsd = DeepSeekDeployment.model_validate(
        yaml.safe_load((root / "examples" / example).read_text())
    )
    tpl = desired.pod_template(dsd.metadata.name, Colour.BLUE, dsd.spec)
    p = {
        "metadata": {**tpl["metadata"], "namespace": "ns", "name": "p", "uid": "u"},
        "spec": {**tpl["spec"], "nodeName": "n1"},
        "status": {"phase": "Running", "podIP": "10.16.1.2"},
    }
    plan = plan_replica(p, node(product))
    assert (plan.preset.name if plan.preset and not plan.error else None) == want
    assert plan.port == 8000 and plan.container == "vllm"
    args = tpl["spec"]["containers"][0]["args"]
    assert plan.model_name == args[args.index("--served-model-name") + 1]
    assert plan.args.shutdown_timeout is not None and plan.grace_s > plan.args.shutdown_timeout
    assert pod_view(p, node(product), set()).engine
