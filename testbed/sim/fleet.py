"""The simulated fleet: plays the container runtime and the GPUs of the local cluster's nodes.

It watches pods and nodes of one or more clusters (regions). For every engine pod
(`app.kubernetes.io/component=engine` with a `serving.deepseek.dev/deployment` label) that the
scheduler put on a local-cluster node and that kwok gave a pod IP, it runs a simulated vLLM
replica (replica.py) on the pod IP's loopback twin (10.a.b.c -> 127.a.b.c, see
cluster/layout.py) and the container port, configured from the pod spec the way a
real vLLM reads its command line: `--model` (or the positional model), `--served-model-name`,
`--quantization`, `--dtype`, `--kv-cache-dtype`, `--tensor-parallel-size`,
`--pipeline-parallel-size`, `--max-model-len`, `--gpu-memory-utilization`, `--max-num-seqs`,
`--max-num-batched-tokens`, `--block-size`, `--port`, `--shutdown-timeout`,
`--scheduling-policy` (fcfs|priority: the order of the waiting queue, engine.py); plus the
container's `nvidia.com/gpu` limit and the node's `nvidia.com/gpu.product` label.

Lifecycle, as the kubelet and a real vLLM would play it:
- Start: the replica loads its model (the preset's load time divided by `time_compression`),
  then listens and sets `sim.deepseek.dev/engine-ready: "true"` on the pod; kwok then marks the
  pod Ready. A model that cannot load (too big for the GPUs, fewer GPUs than the parallelism
  asks, unknown GPU) never listens: the pod gets a Warning Event and the annotation
  `sim.deepseek.dev/engine-error` saying why (the real pod would crash-loop).
- Deletion: on deletionTimestamp the replica keeps serving for the preStop sleep, then stops
  accepting connections (vLLM on SIGTERM), finishes in-flight requests for up to
  `--shutdown-timeout` (0 aborts them; without the flag, for the rest of the grace period, so
  that plain Deployments drain too), sets `sim.deepseek.dev/drained: "true"` (kwok then
  removes the pod) and stops.
- A pod that vanishes stops its replica at once.
Every node with GPUs gets a dcgm-exporter on `<InternalIP>:9400` (dcgm.py); the region's
Prometheus finds those through kubernetes_sd (role node) and the engines through role pod
(testbed/cluster/prometheus.py). What it cannot discover, the fleet's
own control endpoint, is registered as file_sd `<state>/prometheus/targets/sim-fleet.json`
(job `sim-fleet`); the router registers itself the same way (job `sim-router`).

Router pods (`app.kubernetes.io/component=router` or `router-batch`, with a
`serving.deepseek.dev/deployment`
label, container running `vllm-router`): the fleet runs the real vllm-router binary at the pod's
sim address, under the pod's ServiceAccount, reading the API server through the region's
address-mapping proxy (vllmrouter.py, apiproxy.py); `decide_router` is its lifecycle decision.

Helm test pods (`helm.sh/hook: test`) of every namespace: the fleet that plays all namespaces
runs their command on this machine under the pod's ServiceAccount and records the exit code,
from which kwok completes the pod (hooks.py).

Fault hooks (faults.py): the fleet follows the pod annotation `sim.deepseek.dev/fault`
(slow/error/crash) and the node annotation `sim.deepseek.dev/zone-down`; they are written by
`faults.apply_fault_request` / `faults.set_zone_down`, the CLI (`fault`, `zone`) or the control
endpoint (loopback): `POST /faults`, `POST /zones/{zone}/down`, `POST /zones/{zone}/up`,
`GET /status`, `GET /healthz`, `GET /metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import shlex
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from aiohttp import web
from deepseek_operator import labels as L
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from testbed.cluster.layout import loopback_address

from ..labels import ROUTER_COMPONENTS, SIM_DRAINED, SIM_ENGINE_ERROR, SIM_ENGINE_READY
from .dcgm import (
    DCGM_PORT,
    DcgmExporters,
    GpuDevice,
    GpuSample,
    PodRef,
    SampleSource,
    node_devices,
    reading,
    reading_from_engine,
)
from .engine import SCHEDULING_POLICIES, EngineModel, SchedulingPolicy
from .faults import (
    apply_fault_request,
    crash_xid,
    faults_from_annotations,
    parse_fault_request,
    set_zone_down,
)
from .hooks import HookRunner
from .presets import EnginePreset, make_preset, model_for_checkpoint
from .replica import ReplicaServer
from .router import WatchHandle, file_sd_groups, watch_objects, write_file_sd
from .vllmrouter import RouterPhase, RouterPods, is_router_pod

log = logging.getLogger("testbed.sim.fleet")

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
SIM_ZONE_DOWN = "sim.deepseek.dev/zone-down"  # faults.ZONE_DOWN_ANNOTATION
# "false" on a pod: not the fleet's (kwok makes it Ready after the start delay, cluster
# stages.FLEET_ANNOTATION); the cluster's fleet leaves it alone.
SIM_FLEET_OPT_OUT = "sim.deepseek.dev/fleet"
DEFAULT_PORT = 8000  # vLLM's --port default

# Flags of `vllm serve` that take no value (checked against vllm-0.32-serve-help.txt in the unit
# tests); any other flag followed by a non-flag token takes that token as its value.
BOOLEAN_FLAGS = frozenset(
    {
        "--trust-remote-code",
        "--no-trust-remote-code",
        "--enable-expert-parallel",
        "--no-enable-expert-parallel",
        "--enforce-eager",
        "--no-enforce-eager",
        "--disable-log-stats",
        "--enable-log-requests",
        "--no-enable-log-requests",
        "--enable-prefix-caching",
        "--no-enable-prefix-caching",
        "--enable-chunked-prefill",
        "--no-enable-chunked-prefill",
        "--disable-custom-all-reduce",
        "--no-disable-custom-all-reduce",
        "--enable-auto-tool-choice",
        "--no-enable-auto-tool-choice",
        "--enable-lora",
        "--no-enable-lora",
        "--enable-sleep-mode",
        "--no-enable-sleep-mode",
        "--headless",
    }
)

# --quantization methods -> the precision of the weights they serve.
_FP8_METHODS = {"fp8", "fbgemm_fp8", "modelopt", "ptpc_fp8", "fp_quant", "experts_int8"}
_INT4_METHODS = {
    "awq",
    "awq_marlin",
    "gptq",
    "gptq_marlin",
    "gptq_marlin_24",
    "moe_wna16",
    "marlin",
    "bitsandbytes",
    "modelopt_fp4",
    "mxfp4",
    "gguf",
}


# ---------------------------------------------------------------------------------------------
# Pure: what a vLLM container would run, from its pod


@dataclass(frozen=True)
class EngineArgs:
    """The parts of a `vllm serve` command line that shape the simulated engine."""

    model: str | None = None
    served_model_names: tuple[str, ...] = ()
    port: int = DEFAULT_PORT
    quantization: str | None = None
    dtype: str | None = None
    kv_cache_dtype: str = "auto"
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.92
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    block_size: int | None = None
    shutdown_timeout: float | None = None  # None: flag not given (vLLM's default is 0 = abort)
    port_given: bool = False
    scheduling_policy: SchedulingPolicy = "fcfs"

    @property
    def served_model_name(self) -> str:
        return self.served_model_names[0] if self.served_model_names else (self.model or "")

    @property
    def gpus(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size


def _is_flag(tok: str) -> bool:
    """`--flag`, `--flag=v` or a short `-tp` (not a negative number)."""
    if not tok.startswith("-") or tok == "-":
        return False
    try:
        float(tok)
    except ValueError:
        return True
    return False


def _split_argv(argv: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """(positionals, flag -> values) of an argv; `--a=b` and `--a b` forms; repeated flags and
    multi-value flags (`--served-model-name a b`) keep every value."""
    positionals: list[str] = []
    flags: dict[str, list[str]] = {}
    i = 0
    n = len(argv)
    while i < n:
        tok = argv[i]
        if _is_flag(tok):
            if "=" in tok:
                k, v = tok.split("=", 1)
                flags.setdefault(k, []).append(v)
                i += 1
                continue
            values: list[str] = []
            i += 1
            if tok not in BOOLEAN_FLAGS:
                while i < n and not _is_flag(argv[i]):
                    values.append(argv[i])
                    i += 1
                    if tok != "--served-model-name":
                        break
            flags.setdefault(tok, []).extend(values)
            continue
        positionals.append(tok)
        i += 1
    return positionals, flags


def _model_from_positionals(command: Sequence[str], positionals: Sequence[str]) -> str | None:
    """`vllm serve MODEL` (command or args), or an args list that starts with the model."""
    seq = list(positionals)
    if "serve" in seq:
        i = seq.index("serve")
        return seq[i + 1] if i + 1 < len(seq) else None
    if command and "serve" in command:
        return seq[0] if seq else None
    # The image's entrypoint is `vllm serve` and the args start with the model.
    if not command and seq:
        return seq[0]
    return None


def parse_engine_args(command: Sequence[str], args: Sequence[str]) -> EngineArgs:
    """Read a container's `command` + `args` as `vllm serve` would."""
    argv = list(command) + list(args)
    # A shell wrapper (`sh -c "vllm serve ..."`): split its script.
    if len(argv) >= 3 and argv[0].endswith("sh") and argv[1] == "-c":
        argv = shlex.split(argv[2])
        command, args = argv, []
    positionals, flags = _split_argv(argv)

    def last(flag: str) -> str | None:
        v = flags.get(flag)
        return v[-1] if v else None

    def as_int(flag: str, default: int | None) -> int | None:
        v = last(flag)
        if v is None:
            return default
        try:
            return int(v)
        except ValueError:
            raise ValueError(f"{flag} {v!r} is not an integer") from None

    def as_float(flag: str, default: float) -> float:
        v = last(flag)
        if v is None:
            return default
        try:
            return float(v)
        except ValueError:
            raise ValueError(f"{flag} {v!r} is not a number") from None

    model = last("--model") or _model_from_positionals(
        [c for c in command if not c.startswith("-")],
        [p for p in positionals if p not in ("vllm", "python", "python3", "-m")],
    )
    port = as_int("--port", None)
    policy = last("--scheduling-policy") or "fcfs"
    if policy not in SCHEDULING_POLICIES:
        # vLLM's argparse refuses it and the server does not start
        raise ValueError(f"--scheduling-policy {policy!r}: not one of {list(SCHEDULING_POLICIES)}")
    return EngineArgs(
        model=model,
        served_model_names=tuple(flags.get("--served-model-name", [])),
        port=port if port is not None else DEFAULT_PORT,
        port_given=port is not None,
        quantization=last("--quantization") or last("-q"),
        dtype=last("--dtype"),
        kv_cache_dtype=last("--kv-cache-dtype") or "auto",
        tensor_parallel_size=as_int("--tensor-parallel-size", None) or as_int("-tp", None) or 1,
        pipeline_parallel_size=as_int("--pipeline-parallel-size", None) or as_int("-pp", None) or 1,
        max_model_len=as_int("--max-model-len", None),
        gpu_memory_utilization=as_float("--gpu-memory-utilization", 0.92),
        max_num_seqs=as_int("--max-num-seqs", None),
        max_num_batched_tokens=as_int("--max-num-batched-tokens", None),
        block_size=as_int("--block-size", None),
        shutdown_timeout=(
            as_float("--shutdown-timeout", 0.0) if last("--shutdown-timeout") is not None else None
        ),
        scheduling_policy="priority" if policy == "priority" else "fcfs",
    )


def weight_precision(args: EngineArgs, native: str) -> str:
    """The precision vLLM would hold the weights in.

    `--quantization` decides when given; otherwise vLLM reads the checkpoint's own
    quantization_config, which the simulator infers from the checkpoint name (AWQ/GPTQ/INT4
    -> int4, FP8 -> fp8, BF16 -> bf16) and else takes the model's native precision. `--dtype`
    only sets the activation dtype: `--dtype bfloat16` on DeepSeek-R1's FP8 checkpoint still
    serves FP8 weights, as real vLLM does.
    """
    q = (args.quantization or "").lower()
    if q in _FP8_METHODS:
        return "fp8"
    if q in _INT4_METHODS:
        return "int4"
    name = (args.model or "").lower()
    if any(t in name for t in ("awq", "gptq", "int4", "w4a16", "4bit")):
        return "int4"
    if "fp8" in name:
        return "fp8"
    if "bf16" in name:
        return "bf16"
    return native


def _quantity_int(v: Any) -> int:
    try:
        return int(str(v))
    except ValueError:
        return 0


def engine_container(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The vLLM container: the one named `vllm`, else the first asking for GPUs, else the
    first."""
    containers = (pod.get("spec") or {}).get("containers") or []
    for c in containers:
        if c.get("name") == L.ENGINE_CONTAINER:
            return c  # type: ignore[no-any-return]
    for c in containers:
        limits = (c.get("resources") or {}).get("limits") or {}
        if GPU_RESOURCE in limits:
            return c  # type: ignore[no-any-return]
    return containers[0] if containers else None


def is_engine_pod(pod: Mapping[str, Any]) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get(L.COMPONENT) == L.ENGINE_COMPONENT and L.DEPLOYMENT in labels


def is_loopback(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def sim_address(ip: str | None) -> str | None:
    """Where this machine serves a cluster address (cluster/layout.py): 10.a.b.c ->
    127.a.b.c; a loopback address is served as it is; anything else is not ours (None)."""
    if not ip:
        return None
    if is_loopback(ip):
        return ip
    try:
        return loopback_address(ip)
    except ValueError:
        return None


def node_internal_ip(node: Mapping[str, Any]) -> str | None:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == "InternalIP":
            return str(a.get("address"))
    return None


def node_gpu_count(node: Mapping[str, Any]) -> int:
    status = node.get("status") or {}
    cap = status.get("capacity") or status.get("allocatable") or {}
    return _quantity_int(cap.get(GPU_RESOURCE, 0))


@dataclass(frozen=True)
class ReplicaPlan:
    """Everything needed to run one pod's simulated replica. `error` says why the engine
    cannot start (then `preset` may be None)."""

    namespace: str
    pod: str
    uid: str
    node: str
    zone: str
    pod_ip: str
    container: str
    args: EngineArgs
    gpu_limit: int
    gpu_product: str
    pre_stop_s: float
    grace_s: float
    labels: Mapping[str, str] = field(default_factory=dict)
    preset: EnginePreset | None = None
    error: str | None = None
    error_reason: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.pod}"

    @property
    def port(self) -> int:
        return self.args.port

    @property
    def model_name(self) -> str:
        return self.args.served_model_name or "model"

    def identity(self) -> tuple[Any, ...]:
        """What, if changed, needs a new replica (a pod's spec is immutable, so: the uid, its
        IP and node)."""
        return (self.uid, self.pod_ip, self.port, self.node)


def _pre_stop_seconds(container: Mapping[str, Any]) -> float:
    pre = ((container.get("lifecycle") or {}).get("preStop")) or {}
    sleep = pre.get("sleep") or {}
    if "seconds" in sleep:
        return float(sleep["seconds"])
    cmd = (pre.get("exec") or {}).get("command") or []
    # `sleep N` as an exec hook (the common form before the sleep action existed).
    for i, tok in enumerate(cmd):
        if tok.split()[-1:] == ["sleep"] and i + 1 < len(cmd):
            try:
                return float(cmd[i + 1])
            except ValueError:
                return 0.0
        parts = tok.split()
        if len(parts) == 2 and parts[0] == "sleep":
            try:
                return float(parts[1])
            except ValueError:
                return 0.0
    return 0.0


def _load_source(pod: Mapping[str, Any], container: Mapping[str, Any]) -> str:
    """Where vLLM would read the weights from: a PVC, a node-local hostPath cache, or the hub."""
    volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
    for m in container.get("volumeMounts") or []:
        v = volumes.get(m.get("name")) or {}
        path = m.get("mountPath", "")
        if path == "/dev/shm":
            continue
        if "persistentVolumeClaim" in v:
            return "pvc"
        if "hostPath" in v:
            return "nvme"
    return "hub"


def plan_replica(
    pod: Mapping[str, Any],
    node: Mapping[str, Any] | None,
) -> ReplicaPlan:
    """The simulated replica a pod asks for, read from its spec like a real vLLM would."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    node_meta = (node or {}).get("metadata") or {}
    node_labels = node_meta.get("labels") or {}
    c = engine_container(pod) or {}
    base = dict(
        namespace=meta.get("namespace", "default"),
        pod=meta.get("name", ""),
        uid=meta.get("uid", ""),
        node=spec.get("nodeName", ""),
        zone=node_labels.get(ZONE_LABEL, ""),
        pod_ip=status.get("podIP", ""),
        container=c.get("name", ""),
        gpu_product=node_labels.get(GPU_PRODUCT_LABEL, ""),
        pre_stop_s=_pre_stop_seconds(c),
        grace_s=float(spec.get("terminationGracePeriodSeconds", 30)),
        labels=dict(meta.get("labels") or {}),
    )
    limits = (c.get("resources") or {}).get("limits") or {}
    requests = (c.get("resources") or {}).get("requests") or {}
    gpu_limit = _quantity_int(limits.get(GPU_RESOURCE, requests.get(GPU_RESOURCE, 0)))
    try:
        args = parse_engine_args(c.get("command") or [], c.get("args") or [])
    except ValueError as e:
        return ReplicaPlan(
            args=EngineArgs(),
            gpu_limit=gpu_limit,
            error=f"bad vLLM arguments: {e}",
            error_reason="InvalidArguments",
            **base,
        )
    if not args.port_given:
        for p in c.get("ports") or []:
            if p.get("name") == L.ENGINE_PORT_NAME and p.get("containerPort"):
                args = _with_port(args, int(p["containerPort"]))
                break

    def fail(reason: str, message: str) -> ReplicaPlan:
        return ReplicaPlan(
            args=args,
            gpu_limit=gpu_limit,
            error=message,
            error_reason=reason,
            **base,
        )

    if not args.model:
        return fail("InvalidArguments", "no model given (--model or `vllm serve MODEL`)")
    if gpu_limit < 1:
        return fail("NoGPU", f"the container asks for no {GPU_RESOURCE}: vLLM finds no CUDA device")
    if args.gpus > gpu_limit:
        return fail(
            "NotEnoughGPUs",
            f"tensor_parallel_size x pipeline_parallel_size = {args.gpus} GPUs but the "
            f"container has {gpu_limit} ({GPU_RESOURCE} limit)",
        )
    try:
        model = model_for_checkpoint(args.model)
    except KeyError as e:
        return fail("UnknownModel", str(e.args[0]))
    product = base["gpu_product"] or ""
    if not product:
        return fail("UnknownGPU", f"node {base['node']!r} has no {GPU_PRODUCT_LABEL} label")
    weights = weight_precision(args, model.native_precision)
    engine: dict[str, Any] = {
        "gpu_memory_utilization": args.gpu_memory_utilization,
        "max_model_len": args.max_model_len or model.max_context,
        "load_source": _load_source(pod, c),
    }
    if args.max_num_seqs:
        engine["max_num_seqs"] = args.max_num_seqs
    if args.max_num_batched_tokens:
        engine["max_num_batched_tokens"] = args.max_num_batched_tokens
    if args.block_size:
        engine["block_size"] = args.block_size
    kv = "bf16" if args.kv_cache_dtype in ("bfloat16", "float16") else args.kv_cache_dtype
    try:
        preset = make_preset(
            model,
            product,
            args.gpus,
            weights,  # type: ignore[arg-type]
            kv,  # type: ignore[arg-type]
            **engine,
        )
        reason = preset.cannot_load_reason
    except (KeyError, ValueError) as e:
        msg = str(e.args[0]) if e.args else str(e)
        return fail("UnknownGPU" if isinstance(e, KeyError) else "InvalidArguments", msg)
    if reason is not None:
        return ReplicaPlan(
            args=args,
            gpu_limit=gpu_limit,
            preset=preset,
            error_reason="OutOfMemory",
            error=f"CUDA out of memory while loading {args.model}: {reason}",
            **base,
        )
    return ReplicaPlan(args=args, gpu_limit=gpu_limit, preset=preset, **base)


def _with_port(args: EngineArgs, port: int) -> EngineArgs:
    return replace(args, port=port)


# ---------------------------------------------------------------------------------------------
# Pure: what to do with a pod's replica


class ReplicaPhase(StrEnum):
    LOADING = "Loading"  # model loading, not listening yet
    SERVING = "Serving"
    FAILED = "Failed"  # the engine cannot start (see plan.error)
    CRASHED = "Crashed"  # crash fault or zone outage: not listening
    DRAINING = "Draining"  # pod terminating: pre-stop, then finishing in-flight requests
    STOPPED = "Stopped"


class Action(StrEnum):
    NONE = "none"
    START = "start"  # start a replica (loading, then serving)
    RESTART = "restart"  # the pod is another one now (uid/IP changed): stop, then start
    DRAIN = "drain"  # pod terminating: pre-stop, stop accepting, finish, mark drained
    STOP = "stop"  # stop at once (pod gone, or terminating with nothing to drain)
    MARK_DRAINED = "mark-drained"  # terminating pod without a replica: let it go
    CRASH = "crash"  # stop listening abruptly (fault)
    RECOVER = "recover"  # crash fault cleared: cold-start again


@dataclass(frozen=True)
class PodView:
    """What the fleet's decision needs to know about a pod."""

    exists: bool = True
    engine: bool = True
    scheduled_on_sim_node: bool = True
    has_ip: bool = True
    terminating: bool = False
    drained_marked: bool = False
    node_down: bool = False
    identity: tuple[Any, ...] = ()
    router: bool = False  # a router pod the fleet plays (vllmrouter.py), not an engine


def pod_view(
    pod: Mapping[str, Any] | None, node: Mapping[str, Any] | None, zones_down: set[str]
) -> PodView:
    if pod is None:
        return PodView(exists=False)
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    ann = meta.get("annotations") or {}
    node_meta = (node or {}).get("metadata") or {}
    node_labels = node_meta.get("labels") or {}
    zone = node_labels.get(ZONE_LABEL, "")
    node_marked_down = (node_meta.get("annotations") or {}).get(SIM_ZONE_DOWN) == "true"
    return PodView(
        exists=True,
        engine=is_engine_pod(pod) and ann.get(SIM_FLEET_OPT_OUT) != "false",
        router=is_router_pod(pod),
        scheduled_on_sim_node=bool(spec.get("nodeName"))
        and node is not None
        and sim_address(node_internal_ip(node)) is not None,
        has_ip=sim_address(status.get("podIP")) is not None,
        terminating=meta.get("deletionTimestamp") is not None,
        drained_marked=ann.get(SIM_DRAINED) == "true",
        node_down=node_marked_down or (bool(zone) and zone in zones_down),
        identity=(meta.get("uid", ""), status.get("podIP", ""), spec.get("nodeName", "")),
    )


def decide(
    view: PodView,
    phase: ReplicaPhase | None,
    identity: tuple[Any, ...] = (),
    crash_fault: bool = False,
) -> Action:
    """The next step for a pod's replica, from the pod as the API server shows it and the
    replica's phase (None: no replica). Level-based: calling it again with the same inputs
    after the step has been taken returns NONE."""
    if not view.exists or not view.engine:
        return Action.STOP if phase not in (None, ReplicaPhase.STOPPED) else Action.NONE
    if view.terminating:
        if phase == ReplicaPhase.SERVING:
            return Action.DRAIN
        if phase == ReplicaPhase.DRAINING:
            return Action.NONE
        if phase in (ReplicaPhase.LOADING, ReplicaPhase.FAILED, ReplicaPhase.CRASHED):
            return Action.STOP
        return Action.NONE if view.drained_marked else Action.MARK_DRAINED
    if not (view.scheduled_on_sim_node and view.has_ip):
        return Action.STOP if phase not in (None, ReplicaPhase.STOPPED) else Action.NONE
    if phase not in (None, ReplicaPhase.STOPPED) and identity and view.identity != identity:
        return Action.RESTART
    down = view.node_down or crash_fault
    if down:
        return (
            Action.CRASH if phase in (ReplicaPhase.LOADING, ReplicaPhase.SERVING) else Action.NONE
        )
    if phase is None or phase == ReplicaPhase.STOPPED:
        return Action.START
    if phase == ReplicaPhase.CRASHED:
        return Action.RECOVER
    return Action.NONE


def engine_ready_wanted(view: PodView, phase: ReplicaPhase | None) -> bool | None:
    """Whether the pod should carry `sim.deepseek.dev/engine-ready: "true"`, from which kwok
    makes it Ready: what a real readiness probe would say, True only while its replica listens
    (not while it loads, after a crash, when it cannot start, or when the fleet has no replica
    for it, e.g. after the fleet itself restarted). None: not the fleet's to say (a terminating
    pod, which kwok takes out of service itself, or a pod the fleet does not play).

    Level-based on purpose: the annotation is compared with this after every event of the pod,
    so a crash that races a replica's own "true" (a load finishing as the fault lands), or an
    annotation left by the previous fleet process, is corrected once the pod is seen again."""
    if not view.exists or not view.engine or view.terminating:
        return None
    if not (view.scheduled_on_sim_node and view.has_ip):
        return None
    return phase == ReplicaPhase.SERVING


def decide_router(
    view: PodView, phase: RouterPhase | None, identity: tuple[Any, ...] = ()
) -> Action:
    """The next step for a router pod's process (vllmrouter.py), level-based like `decide`:
    START a process (it restarts itself after exits), DRAIN it when the pod terminates (preStop,
    SIGTERM, grace period), STOP it at once when the pod is gone, CRASH it with its node,
    RESTART it when the pod is another one, MARK_DRAINED a terminating pod without a process."""
    running = phase == RouterPhase.RUNNING
    if not view.exists or not view.router:
        return Action.STOP if running or phase == RouterPhase.STOPPING else Action.NONE
    if view.terminating:
        if running:
            return Action.DRAIN
        if phase == RouterPhase.STOPPING:
            return Action.NONE
        return Action.NONE if view.drained_marked else Action.MARK_DRAINED
    if not (view.scheduled_on_sim_node and view.has_ip):
        return Action.STOP if running else Action.NONE
    if phase not in (None, RouterPhase.STOPPED) and identity and view.identity != identity:
        return Action.RESTART
    if view.node_down:
        return Action.CRASH if running else Action.NONE
    if phase in (None, RouterPhase.STOPPED, RouterPhase.CRASHED):
        return Action.START
    return Action.NONE


def router_ready_wanted(view: PodView, phase: RouterPhase | None, ready: bool) -> bool | None:
    """Whether a router pod should carry `sim.deepseek.dev/engine-ready: "true"`: while its
    process runs and passes the readiness probe (`ready`, see vllmrouter.RouterSlot.ready).
    None: not the fleet's to say (see engine_ready_wanted)."""
    if not view.exists or not view.router or view.terminating:
        return None
    if not (view.scheduled_on_sim_node and view.has_ip):
        return None
    return phase == RouterPhase.RUNNING and ready


# ---------------------------------------------------------------------------------------------
# Pure: which GPUs of a node each pod holds


def engine_target_labels(pod: Mapping[str, Any], node: str, container: str) -> dict[str, str]:
    """The target labels the region's Prometheus gives an engine (cluster/prometheus.py,
    job deepseek-engines; the operator's PodMonitor gives the same)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    return {
        "job": "deepseek-engines",
        L.PROM_NAMESPACE: meta.get("namespace", ""),
        L.PROM_POD: meta.get("name", ""),
        L.PROM_DSD: labels.get(L.DEPLOYMENT, ""),
        L.PROM_COLOUR: labels.get(L.COLOUR, ""),
        "mode": labels.get(L.MODE, ""),
        "node": node,
        "container": container,
    }


def pod_gpu_limit(pod: Mapping[str, Any]) -> int:
    """GPUs the kubelet's device plugin would give a pod (every container's limit)."""
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        lim = (res.get("limits") or {}).get(
            GPU_RESOURCE, (res.get("requests") or {}).get(GPU_RESOURCE, 0)
        )
        total += _quantity_int(lim)
    return total


def allocate_gpus(pods: Sequence[Mapping[str, Any]], gpus: int) -> dict[str, list[int]]:
    """GPU indices per pod (`namespace/name`) on one node: pods in order of creation take the
    lowest free indices, as the device plugin hands them out; pods that do not fit get none
    (the scheduler would not have bound them)."""

    def order(p: Mapping[str, Any]) -> tuple[str, str, str]:
        m = p.get("metadata") or {}
        return (m.get("creationTimestamp") or "", m.get("namespace", ""), m.get("name", ""))

    free = list(range(gpus))
    out: dict[str, list[int]] = {}
    for p in sorted(pods, key=order):
        phase = (p.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            continue
        n = pod_gpu_limit(p)
        if n < 1 or n > len(free):
            continue
        m = p.get("metadata") or {}
        out[f"{m.get('namespace', '')}/{m.get('name', '')}"] = free[:n]
        free = free[n:]
    return out


# ---------------------------------------------------------------------------------------------
# The fleet process (I/O)


@dataclass(frozen=True)
class RegionConfig:
    """A cluster the fleet plays the nodes of."""

    name: str
    kubeconfig: Path
    targets_dir: Path | None = None  # Prometheus file_sd directory of the region
    state_dir: Path | None = None  # where the fleet writes fleet.json (its control URL)
    context: str | None = None  # kubeconfig context (None: the current one)

    @classmethod
    def local(cls, region: str) -> RegionConfig:
        """A region of `make cluster` (testbed/cluster)."""
        from testbed.cluster.config import region_configs

        for c in region_configs():
            if c.name == region:
                return cls(c.name, c.kubeconfig, c.prometheus_targets_dir, c.state_dir, c.context)
        raise KeyError(f"unknown local region {region!r}")


@dataclass
class _Slot:
    """The simulated container of one pod."""

    key: str
    phase: ReplicaPhase = ReplicaPhase.STOPPED
    identity: tuple[Any, ...] = ()
    plan: ReplicaPlan | None = None
    server: ReplicaServer | None = None
    task: asyncio.Task[None] | None = None
    load_started: float = 0.0
    load_until: float = 0.0
    xid: int = 0
    reported_error: str | None = None


class _Region:
    def __init__(self, cfg: RegionConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.api: Any = None
        self.core: Any = None
        self.pods: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.slots: dict[str, _Slot] = {}
        self.dirty: set[str] = set()
        self.wake = asyncio.Event()
        self.watches: list[WatchHandle] = []
        self.synced = {"pods": False, "nodes": False}
        self.devices: dict[str, tuple[tuple[str, int], list[GpuDevice]]] = {}
        self.pod_scopes: dict[str, set[str]] = {}
        self.synced_scopes: set[str] = set()
        self.routers: RouterPods | None = None  # router pods (vllmrouter.py), set on start

    def played_keys(self) -> set[str]:
        """Pods that have a replica or a router process (also those the API no longer shows)."""
        return set(self.slots) | (set(self.routers.slots) if self.routers else set())


def _hop(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> None:
    """Run fn(*args) on the event loop (from a watch thread)."""
    loop.call_soon_threadsafe(fn, *args)


def _key(obj: Mapping[str, Any]) -> str:
    m = obj.get("metadata") or {}
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


class Fleet:
    """Plays the container runtime and GPUs of every engine pod of the given regions."""

    def __init__(
        self,
        regions: Sequence[RegionConfig],
        *,
        load_time_scale: float = 1.0,
        dcgm_port: int = DCGM_PORT,
        control_host: str = "127.0.0.1",
        control_port: int | None = 0,
        file_sd: bool = True,
        resync_s: float = 30.0,
        namespaces: Sequence[str] | None = None,
        dcgm: bool = True,
        file_sd_engines: bool = False,
    ) -> None:
        """`namespaces`: play only the pods of these namespaces (None: all), so that a test
        can run its own fleet beside another; `dcgm`: serve the nodes' dcgm-exporters (one
        process per region should); `file_sd_engines`: also register every replica and
        dcgm-exporter as file_sd targets with the labels the kubernetes_sd jobs give them, for
        a Prometheus built without kubernetes_sd (Debian's)."""
        if not regions:
            raise ValueError("the fleet needs at least one region")
        self.load_time_scale = max(load_time_scale, 0.0)
        self.regions = {r.name: _Region(r) for r in regions}
        self.dcgm = DcgmExporters(port=dcgm_port)
        self.control_host = control_host
        self.control_port = control_port
        self.file_sd = file_sd
        self.resync_s = resync_s
        self.namespaces = list(namespaces) if namespaces else None
        self.serve_dcgm = dcgm
        self.file_sd_engines = file_sd_engines
        self._tasks: list[asyncio.Task[None]] = []
        self._control: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        self._m_replicas = Gauge(
            "deepseek_sim_replicas",
            "Simulated replicas by region and phase.",
            ["region", "phase"],
            registry=self.registry,
        )
        self._m_actions = Counter(
            "deepseek_sim_replica_actions",
            "Lifecycle actions the fleet took, by region and action.",
            ["region", "action"],
            registry=self.registry,
        )

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def control_url(self) -> str | None:
        return None if self._control is None else f"http://{self.control_host}:{self.control_port}"

    async def start(self) -> None:
        from kubernetes import client
        from kubernetes import config as kconfig

        config: Any = kconfig
        self._loop = asyncio.get_running_loop()
        for region in self.regions.values():
            region.api = config.new_client_from_config(
                config_file=str(region.cfg.kubeconfig), context=region.cfg.context
            )
            region.core = client.CoreV1Api(region.api)
            region.routers = self._router_pods(region)
            self._watch(region)
            if self.namespaces is None:  # one runner per region: the fleet of all namespaces
                self._watch_test_hooks(region)
            self._tasks.append(
                asyncio.create_task(self._worker(region), name=f"fleet-{region.name}")
            )
        if self.control_port is not None:
            await self._start_control()
        for region in self.regions.values():
            self._write_state(region)
        log.info(
            "event=fleet_started regions=%s load_time_scale=%g control=%s",
            ",".join(self.regions),
            self.load_time_scale,
            self.control_url or "-",
        )

    async def wait_synced(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(all(r.synced.values()) for r in self.regions.values()):
                return True
            await asyncio.sleep(0.1)
        return False

    async def close(self) -> None:
        for region in self.regions.values():
            for w in region.watches:
                w.close()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        for region in self.regions.values():
            for slot in list(region.slots.values()):
                await self._stop(region, slot, crash=False)
            if region.routers is not None:
                await region.routers.close()
            if region.api is not None:
                region.api.close()
        await self.dcgm.close()
        for region in self.regions.values():
            mine: list[Path] = []
            if region.cfg.targets_dir is not None:
                if self.control_url is not None:
                    mine.append(region.cfg.targets_dir / "sim-fleet.json")
                if self.file_sd_engines:
                    mine += [
                        region.cfg.targets_dir / "sim-engines.json",
                        region.cfg.targets_dir / "sim-dcgm.json",
                    ]
            if region.cfg.state_dir is not None and self.control_url is not None:
                mine.append(region.cfg.state_dir / "fleet.json")
            for path in mine:
                with contextlib.suppress(OSError):
                    path.unlink()
        if self._control is not None:
            await self._control.cleanup()
            self._control = None
        log.info("event=fleet_stopped")

    # -- watches -----------------------------------------------------------------------------

    def _watch(self, region: _Region) -> None:
        loop = self._loop
        assert loop is not None
        sel = f"{L.COMPONENT} in ({','.join((L.ENGINE_COMPONENT, *ROUTER_COMPONENTS))})"
        scopes: list[str | None] = list(self.namespaces) if self.namespaces else [None]
        region.pod_scopes = {str(ns): set() for ns in scopes}
        for ns in scopes:
            kw: dict[str, Any] = {"label_selector": sel}
            if ns is None:
                list_fn = region.core.list_pod_for_all_namespaces
            else:
                list_fn = region.core.list_namespaced_pod
                kw["namespace"] = ns
            scope = str(ns)

            def synced(items: list[dict[str, Any]], scope: str = scope) -> None:
                _hop(loop, self._pods_synced, region, items, scope)

            region.watches.append(
                watch_objects(
                    list_fn,
                    synced,
                    lambda typ, obj: _hop(loop, self._pod_event, region, typ, obj),
                    name=f"pods-{region.name}-{ns or 'all'}",
                    **kw,
                )
            )
        region.watches.append(
            watch_objects(
                region.core.list_node,
                lambda items: _hop(loop, self._nodes_synced, region, items),
                lambda typ, obj: _hop(loop, self._node_event, region, typ, obj),
                name=f"nodes-{region.name}",
            )
        )

    def _watch_test_hooks(self, region: _Region) -> None:
        """Helm test pods: run their command here (hooks.py); every pod is watched, since a
        hook is an annotation, not a label."""
        runner = HookRunner(region.name, region.cfg.kubeconfig, region.cfg.context, region.api)

        def synced(items: list[dict[str, Any]]) -> None:
            for p in items:
                runner.on_pod(p)

        region.watches.append(
            watch_objects(
                region.core.list_pod_for_all_namespaces,
                synced,
                lambda typ, obj: None if typ == "DELETED" else runner.on_pod(obj),
                name=f"test-hooks-{region.name}",
            )
        )

    def _mark(self, region: _Region, keys: Iterable[str]) -> None:
        region.dirty.update(keys)
        region.wake.set()

    def _pods_synced(self, region: _Region, items: list[dict[str, Any]], scope: str) -> None:
        """A (re)list of one watched scope (a namespace, or "None": every namespace)."""
        old = region.pod_scopes.get(scope, set())
        for key in old:
            region.pods.pop(key, None)
        fresh = {_key(p): p for p in items}
        region.pods.update(fresh)
        region.pod_scopes[scope] = set(fresh)
        region.synced_scopes.add(scope)
        region.synced["pods"] = region.synced_scopes >= set(region.pod_scopes)
        self._mark(region, old | set(fresh) | region.played_keys())

    def _pod_event(self, region: _Region, typ: str, obj: dict[str, Any]) -> None:
        key = _key(obj)
        if typ == "DELETED":
            region.pods.pop(key, None)
        else:
            region.pods[key] = obj
        self._mark(region, [key])

    def _nodes_synced(self, region: _Region, items: list[dict[str, Any]]) -> None:
        region.nodes = {(n.get("metadata") or {}).get("name", ""): n for n in items}
        region.synced["nodes"] = True
        self._mark(region, set(region.pods) | region.played_keys())
        self._schedule_dcgm(region)

    def _node_event(self, region: _Region, typ: str, obj: dict[str, Any]) -> None:
        name = (obj.get("metadata") or {}).get("name", "")
        if typ == "DELETED":
            region.nodes.pop(name, None)
        else:
            region.nodes[name] = obj
        on_node = [
            k for k, p in region.pods.items() if (p.get("spec") or {}).get("nodeName") == name
        ]
        self._mark(region, on_node)
        self._schedule_dcgm(region)

    def _schedule_dcgm(self, region: _Region) -> None:
        self._tasks.append(asyncio.ensure_future(self._sync_dcgm(region)))
        self._tasks = [t for t in self._tasks if not t.done()]

    # -- reconcile ---------------------------------------------------------------------------

    async def _worker(self, region: _Region) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(region.wake.wait(), self.resync_s)
            region.wake.clear()
            if not all(region.synced.values()):
                continue
            if not region.dirty:
                region.dirty = set(region.pods) | region.played_keys()
            keys, region.dirty = region.dirty, set()
            for key in sorted(keys):
                try:
                    await self._reconcile(region, key)
                except Exception:
                    log.exception("event=reconcile_failed region=%s pod=%s", region.name, key)
            self._update_gauges()
            self._write_engine_sd(region)

    def _update_gauges(self) -> None:
        for region in self.regions.values():
            counts = dict.fromkeys(ReplicaPhase, 0)
            for s in region.slots.values():
                counts[s.phase] += 1
            for phase, n in counts.items():
                self._m_replicas.labels(region.name, phase.value).set(n)

    async def _reconcile(self, region: _Region, key: str) -> None:
        pod = region.pods.get(key)
        node = None
        if pod is not None:
            node = region.nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        view = pod_view(pod, node, set())
        if region.routers is not None and (view.router or key in region.routers.slots):
            await self._reconcile_router(region, key, pod, view)
            return
        slot = region.slots.get(key)
        ann = ((pod or {}).get("metadata") or {}).get("annotations") or {}
        faults = faults_from_annotations(ann)
        action = decide(
            view, slot.phase if slot else None, slot.identity if slot else (), faults.crashed
        )
        if action != Action.NONE:
            log.info(
                "event=replica_action region=%s pod=%s action=%s phase=%s",
                region.name,
                key,
                action.value,
                slot.phase.value if slot else "-",
            )
            self._m_actions.labels(region.name, action.value).inc()
        if action in (Action.START, Action.RECOVER, Action.RESTART):
            assert pod is not None
            if slot is not None and action == Action.RESTART:
                await self._stop(region, slot, crash=False)
            slot = region.slots.setdefault(key, _Slot(key))
            self._start(region, slot, pod, node, view)
        elif action == Action.DRAIN and slot is not None:
            slot.phase = ReplicaPhase.DRAINING
            slot.task = asyncio.create_task(self._drain(region, slot))
        elif action == Action.STOP and slot is not None:
            await self._stop(region, slot, crash=view.node_down or pod is None)
            if pod is not None:
                self._mark(region, [key])  # a terminating pod is then marked drained
        elif action == Action.MARK_DRAINED and pod is not None:
            await self._patch_pod(region, pod, {SIM_DRAINED: "true"})
        elif action == Action.CRASH and slot is not None:
            await self._crash(region, slot, crash_xid(ann))
            if pod is not None and not view.terminating:
                await self._patch_pod(region, pod, {SIM_ENGINE_READY: None})
        if pod is None and slot is not None and slot.phase == ReplicaPhase.STOPPED:
            region.slots.pop(key, None)
        wanted = engine_ready_wanted(view, slot.phase if slot else None)
        marked = ann.get(SIM_ENGINE_READY) == "true"
        if pod is not None and wanted is not None and wanted != marked:
            await self._patch_pod(region, pod, {SIM_ENGINE_READY: "true" if wanted else None})
        if slot is not None and slot.server is not None and slot.phase == ReplicaPhase.SERVING:
            want = replace(faults, crashed=False)
            if slot.server.faults != want:
                slot.server.apply_faults(want)
                log.info(
                    "event=replica_faults region=%s pod=%s faults=%s",
                    region.name,
                    key,
                    json.dumps(want.as_dict(), sort_keys=True),
                )

    async def _reconcile_router(
        self, region: _Region, key: str, pod: dict[str, Any] | None, view: PodView
    ) -> None:
        routers = region.routers
        assert routers is not None
        slot = routers.slots.get(key)
        action = decide_router(view, slot.phase if slot else None, slot.identity if slot else ())
        if action != Action.NONE:
            log.info(
                "event=router_action region=%s pod=%s action=%s phase=%s",
                region.name,
                key,
                action.value,
                slot.phase.value if slot else "-",
            )
            self._m_actions.labels(region.name, action.value).inc()
        if action in (Action.START, Action.RESTART):
            assert pod is not None
            if slot is not None:
                await routers.stop(slot)
            slot = routers.start(key, pod, view.identity)
        elif action == Action.DRAIN and slot is not None:
            routers.drain(slot, pod)
        elif action in (Action.STOP, Action.CRASH) and slot is not None:
            await routers.stop(slot, crash=action == Action.CRASH)
            if pod is not None:
                self._mark(region, [key])  # a terminating pod is then marked drained
        elif action == Action.MARK_DRAINED and pod is not None:
            await self._patch_pod(region, pod, {SIM_DRAINED: "true"})
        if pod is None and slot is not None and slot.phase == RouterPhase.STOPPED:
            routers.forget(key)
        ann = ((pod or {}).get("metadata") or {}).get("annotations") or {}
        wanted = router_ready_wanted(view, slot.phase if slot else None, bool(slot and slot.ready))
        marked = ann.get(SIM_ENGINE_READY) == "true"
        if pod is not None and wanted is not None and wanted != marked:
            await self._patch_pod(region, pod, {SIM_ENGINE_READY: "true" if wanted else None})

    def _router_pods(self, region: _Region) -> RouterPods:
        loop = self._loop
        assert loop is not None

        async def patch(pod: Mapping[str, Any], annotations: Mapping[str, str | None]) -> None:
            await self._patch_pod(region, pod, annotations)

        return RouterPods(
            region.name,
            region.cfg.kubeconfig,
            region.cfg.context,
            region.core,
            region.pods,
            patch,
            lambda key: self._mark(region, [key]),
            state_dir=region.cfg.state_dir,
        )

    def _start(
        self,
        region: _Region,
        slot: _Slot,
        pod: Mapping[str, Any],
        node: Mapping[str, Any] | None,
        view: PodView,
    ) -> None:
        plan = plan_replica(pod, node)
        slot.plan = plan
        slot.identity = view.identity
        if plan.error is not None or plan.preset is None:
            slot.phase = ReplicaPhase.FAILED
            if slot.reported_error != plan.error:
                slot.reported_error = plan.error
                log.warning(
                    "event=replica_cannot_start region=%s pod=%s reason=%s error=%r",
                    region.name,
                    slot.key,
                    plan.error_reason,
                    plan.error,
                )
                slot.task = asyncio.create_task(self._report_error(region, pod, plan))
            return
        slot.phase = ReplicaPhase.LOADING
        now = time.monotonic()
        slot.load_started = now
        slot.load_until = now + plan.preset.load_time_s * self.load_time_scale
        slot.task = asyncio.create_task(self._load(region, slot, plan))

    async def _report_error(
        self, region: _Region, pod: Mapping[str, Any], plan: ReplicaPlan
    ) -> None:
        await self._patch_pod(region, pod, {SIM_ENGINE_ERROR: plan.error, SIM_ENGINE_READY: None})
        from kubernetes import client

        meta = pod.get("metadata") or {}
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{meta.get('name', 'pod')}.", namespace=plan.namespace
            ),
            involved_object=client.V1ObjectReference(
                kind="Pod",
                namespace=plan.namespace,
                name=plan.pod,
                uid=plan.uid,
                api_version="v1",
                field_path=f"spec.containers{{{plan.container}}}" if plan.container else None,
            ),
            reason=plan.error_reason or "EngineFailed",
            message=plan.error,
            type="Warning",
            source=client.V1EventSource(component="sim-fleet", host=plan.node),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            await asyncio.to_thread(region.core.create_namespaced_event, plan.namespace, event)
        except Exception as e:
            log.warning("event=event_failed pod=%s error=%r", plan.key, e)

    async def _load(self, region: _Region, slot: _Slot, plan: ReplicaPlan) -> None:
        assert plan.preset is not None
        await asyncio.sleep(max(0.0, slot.load_until - time.monotonic()))
        host = sim_address(plan.pod_ip)
        assert host is not None
        pod = region.pods.get(slot.key) or {}
        faults = replace(
            faults_from_annotations((pod.get("metadata") or {}).get("annotations")), crashed=False
        )
        engine = EngineModel(
            plan.preset,
            start_time=time.monotonic(),
            loaded=True,
            name=slot.key,
            seed=zlib.crc32(slot.key.encode()),
            scheduling_policy=plan.args.scheduling_policy,
        )
        names = plan.args.served_model_names or (plan.args.model or "model",)
        server = ReplicaServer(
            engine,
            host=host,
            port=plan.port,
            served_names=names,
            max_model_len=plan.preset.max_model_len,
            model_path=plan.args.model or "",
            faults=faults,
            name=slot.key,
        )
        for attempt in range(60):
            try:
                await server.start()
                break
            except OSError as e:
                # The address is still held (a replica of the pod's previous life closing).
                if attempt == 0:
                    log.warning(
                        "event=replica_bind_retry pod=%s address=%s:%d error=%r",
                        slot.key,
                        host,
                        plan.port,
                        e,
                    )
                await asyncio.sleep(0.5)
        else:
            slot.phase = ReplicaPhase.FAILED
            log.error("event=replica_bind_failed pod=%s address=%s:%d", slot.key, host, plan.port)
            return
        slot.server = server
        slot.phase = ReplicaPhase.SERVING
        log.info(
            "event=replica_ready region=%s pod=%s url=%s preset=%s load_s=%.2f",
            region.name,
            slot.key,
            server.url,
            plan.preset.name,
            time.monotonic() - slot.load_started,
        )
        live = region.pods.get(slot.key)
        if live is not None and (live.get("metadata") or {}).get("deletionTimestamp") is None:
            await self._patch_pod(region, live, {SIM_ENGINE_READY: "true", SIM_ENGINE_ERROR: None})
        self._mark(region, [slot.key])

    async def _drain(self, region: _Region, slot: _Slot) -> None:
        plan = slot.plan
        assert plan is not None
        started = time.monotonic()
        if plan.pre_stop_s > 0:
            await asyncio.sleep(min(plan.pre_stop_s, plan.grace_s))
        left = max(0.0, plan.grace_s - (time.monotonic() - started))
        timeout = left if plan.args.shutdown_timeout is None else plan.args.shutdown_timeout
        timeout = min(timeout, left)
        aborted = 0
        if slot.server is not None:
            aborted = await slot.server.drain(timeout)
            slot.server = None
        slot.phase = ReplicaPhase.STOPPED
        log.info(
            "event=replica_drained region=%s pod=%s aborted=%d seconds=%.2f",
            region.name,
            slot.key,
            aborted,
            time.monotonic() - started,
        )
        pod = region.pods.get(slot.key)
        if pod is not None:
            await self._patch_pod(region, pod, {SIM_DRAINED: "true"})
        self._mark(region, [slot.key])

    async def _crash(self, region: _Region, slot: _Slot, xid: int) -> None:
        if slot.task is not None and not slot.task.done():
            slot.task.cancel()
        if slot.server is not None:
            await slot.server.crash(xid)
            slot.server = None
        slot.xid = xid
        slot.phase = ReplicaPhase.CRASHED

    async def _stop(self, region: _Region, slot: _Slot, crash: bool) -> None:
        if slot.task is not None and not slot.task.done():
            slot.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await slot.task
        if slot.server is not None:
            if crash:
                await slot.server.crash(slot.xid)
            else:
                await slot.server.close()
            slot.server = None
        slot.phase = ReplicaPhase.STOPPED

    async def _patch_pod(
        self, region: _Region, pod: Mapping[str, Any], annotations: Mapping[str, str | None]
    ) -> None:
        meta = pod.get("metadata") or {}
        current = meta.get("annotations") or {}
        if all(current.get(k) == v for k, v in annotations.items()):
            return
        body = {"metadata": {"annotations": dict(annotations)}}
        try:
            await asyncio.to_thread(
                region.core.patch_namespaced_pod, meta.get("name"), meta.get("namespace"), body
            )
        except Exception as e:
            if getattr(e, "status", None) != 404:
                log.warning("event=patch_failed pod=%s error=%r", _key(pod), e)

    # -- DCGM ------------------------------------------------------------------------------

    async def _sync_dcgm(self, region: _Region) -> None:
        if not self.serve_dcgm:
            return
        want: dict[str, str] = {}
        for name, node in region.nodes.items():
            addr = sim_address(node_internal_ip(node))
            if addr is not None and node_gpu_count(node) > 0:
                want[name] = addr
        mine = {n for n, s in region.devices.items()}
        for name in mine - set(want):
            region.devices.pop(name, None)
            await self.dcgm.remove_node(name)
        for name, addr in want.items():
            await self.dcgm.add_node(name, addr, self._sample_source(region, name))
        self._write_dcgm_sd(region)

    def _node_devices(self, region: _Region, name: str) -> list[GpuDevice]:
        node = region.nodes.get(name) or {}
        product = ((node.get("metadata") or {}).get("labels") or {}).get(GPU_PRODUCT_LABEL, "")
        count = node_gpu_count(node)
        cached = region.devices.get(name)
        if cached is None or cached[0] != (product, count):
            cached = ((product, count), node_devices(name, product, count))
            region.devices[name] = cached
        return cached[1]

    def _sample_source(self, region: _Region, name: str) -> SampleSource:
        return lambda: self.node_samples(region.name, name)

    def node_samples(self, region_name: str, node_name: str) -> list[GpuSample]:
        """What the node's dcgm-exporter reports now."""
        region = self.regions[region_name]
        devices = self._node_devices(region, node_name)
        pods = [
            p for p in region.pods.values() if (p.get("spec") or {}).get("nodeName") == node_name
        ]
        alloc = allocate_gpus(pods, len(devices))
        samples: dict[int, GpuSample] = {}
        now = time.monotonic()
        for key, indices in alloc.items():
            pod = region.pods[key]
            c = engine_container(pod) or {}
            ns, pod_name = key.split("/", 1)
            ref = PodRef(ns, pod_name, c.get("name", ""))
            slot = region.slots.get(key)
            stats: list[Any] = []
            if slot is not None and slot.server is not None:
                stats = slot.server.gpu_stats()
            for j, i in enumerate(indices):
                product = devices[i].product
                if j < len(stats):
                    r = reading_from_engine(product, stats[j])
                elif slot is not None and slot.phase == ReplicaPhase.LOADING and slot.plan:
                    span = max(slot.load_until - slot.load_started, 1e-9)
                    frac = min(1.0, (now - slot.load_started) / span)
                    weights_mib = 0.0
                    if slot.plan.preset is not None and j < slot.plan.preset.gpus:
                        weights_mib = slot.plan.preset.weight_bytes_per_gpu / (1024 * 1024)
                    r = reading(
                        product, fb_used_mib=product.reserved_mib + frac * weights_mib, held=True
                    )
                elif slot is not None and slot.phase == ReplicaPhase.CRASHED:
                    r = reading(product, xid=slot.xid)
                else:
                    r = reading(product, held=slot is not None and slot.server is not None)
                if slot is not None and slot.xid and not r.xid:
                    r = replace(r, xid=slot.xid)
                samples[i] = GpuSample(devices[i], r, ref)
        for d in devices:
            if d.index not in samples:
                samples[d.index] = GpuSample(d, reading(d.product))
        return [samples[i] for i in sorted(samples)]

    # -- Prometheus file_sd and state ---------------------------------------------------------

    def _write_engine_sd(self, region: _Region) -> None:
        if not self.file_sd_engines or region.cfg.targets_dir is None:
            return
        groups = []
        for slot in sorted(region.slots.values(), key=lambda s: s.key):
            if slot.server is None or slot.plan is None:
                continue
            pod = region.pods.get(slot.key) or {}
            groups.append(
                {
                    "targets": [f"{slot.server.host}:{slot.server.port}"],
                    "labels": engine_target_labels(pod, slot.plan.node, slot.plan.container),
                }
            )
        write_file_sd(region.cfg.targets_dir / "sim-engines.json", groups)

    def _write_dcgm_sd(self, region: _Region) -> None:
        if not self.file_sd_engines or region.cfg.targets_dir is None:
            return
        groups = []
        for name in sorted(region.nodes):
            addr = self.dcgm.nodes.get(name)
            if addr is None:
                continue
            node_labels = (region.nodes[name].get("metadata") or {}).get("labels") or {}
            groups.append(
                {
                    "targets": [f"{addr}:{self.dcgm.port}"],
                    "labels": {
                        "job": "dcgm",
                        "node": name,
                        "zone": node_labels.get(ZONE_LABEL, ""),
                    },
                }
            )
        write_file_sd(region.cfg.targets_dir / "sim-dcgm.json", groups)

    def _write_state(self, region: _Region) -> None:
        if region.cfg.state_dir is not None:
            state = {"pid": os.getpid(), "control": self.control_url, "dcgmPort": self.dcgm.port}
            path = region.cfg.state_dir / "fleet.json"
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(state, indent=1) + "\n")
        if self.file_sd and region.cfg.targets_dir is not None and self.control_url:
            write_file_sd(
                region.cfg.targets_dir / "sim-fleet.json",
                file_sd_groups(
                    [f"{self.control_host}:{self.control_port}"],
                    {"job": "sim-fleet", "region": region.name},
                ),
            )

    # -- status and control endpoint ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"regions": {}}
        for region in self.regions.values():
            replicas = []
            for s in sorted(region.slots.values(), key=lambda s: s.key):
                replicas.append(
                    {
                        "pod": s.key,
                        "phase": s.phase.value,
                        "url": s.server.url if s.server else None,
                        "preset": s.plan.preset.name if s.plan and s.plan.preset else None,
                        "node": s.plan.node if s.plan else None,
                        "outstanding": s.server.outstanding() if s.server else 0,
                        "faults": s.server.faults.as_dict() if s.server else None,
                        "error": s.plan.error if s.plan else None,
                    }
                )
            out["regions"][region.name] = {
                "synced": all(region.synced.values()),
                "replicas": replicas,
                "routers": region.routers.status() if region.routers else [],
                "dcgm": {
                    n: f"{a}:{self.dcgm.port}"
                    for n, a in self.dcgm.nodes.items()
                    if n in region.nodes
                },
            }
        return out

    def replica(self, region: str, key: str) -> ReplicaServer | None:
        slot = self.regions[region].slots.get(key)
        return None if slot is None else slot.server

    def _region_for(self, body: Mapping[str, Any]) -> _Region:
        name = body.get("region")
        if name is None:
            if len(self.regions) != 1:
                raise ValueError('several regions: say which ("region")')
            return next(iter(self.regions.values()))
        if name not in self.regions:
            raise ValueError(f"unknown region {name!r}")
        return self.regions[str(name)]

    async def _start_control(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._h_health)
        app.router.add_get("/status", self._h_status)
        app.router.add_get("/metrics", self._h_metrics)
        app.router.add_post("/faults", self._h_faults)
        app.router.add_post("/zones/{zone}/{state}", self._h_zone)
        self._control = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._control.setup()
        site = web.TCPSite(self._control, self.control_host, self.control_port or 0)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.control_port = sockets[0].getsockname()[1]

    async def _h_health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _h_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def _h_metrics(self, request: web.Request) -> web.Response:
        self._update_gauges()
        return web.Response(
            body=generate_latest(self.registry),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    async def _h_faults(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            region = self._region_for(body)
            req = parse_fault_request(body)
        except (ValueError, json.JSONDecodeError) as e:
            return web.json_response({"error": str(e)}, status=400)
        pods = await asyncio.to_thread(apply_fault_request, region.core, req)
        log.info("event=faults_set region=%s pods=%s", region.name, ",".join(pods) or "-")
        return web.json_response({"region": region.name, "pods": pods})

    async def _h_zone(self, request: web.Request) -> web.Response:
        zone = request.match_info["zone"]
        state = request.match_info["state"]
        if state not in ("down", "up"):
            return web.json_response({"error": "use /zones/{zone}/down or /up"}, status=404)
        try:
            body = await request.json() if request.can_read_body else {}
            region = self._region_for(body)
        except (ValueError, json.JSONDecodeError) as e:
            return web.json_response({"error": str(e)}, status=400)
        result = await asyncio.to_thread(set_zone_down, region.core, zone, state == "down")
        log.info(
            "event=zone_%s region=%s zone=%s nodes=%d pods_deleted=%d",
            state,
            region.name,
            zone,
            len(result["nodes"]),
            len(result["deletedPods"]),
        )
        return web.json_response({"region": region.name, "zone": zone, **result})
