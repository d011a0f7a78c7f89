"""The `spec` of a DeepSeekDeployment.

These models are the single source of truth: the CRD in crds/ is generated from them
(`deepseek-operator crd`), field descriptions become `kubectl explain` text, defaults become API
server defaults, and every cross-field rule exists twice: as a CEL rule the API server enforces
and as a pydantic validator the operator and the unit tests use.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, model_validator

from .base import ApiModel, cel, k8s_extra

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Names of Secrets, ConfigMaps, ServiceAccounts, PriorityClasses, RuntimeClasses (RFC 1123).
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Keys of a Secret or ConfigMap, as the API server validates them.
DATA_KEY = r"^[-._a-zA-Z0-9]+$"
# The pod fields a container's env may read through fieldRef (the Downward API).
POD_FIELD_PATH = (
    r"^(metadata\.(name|namespace|uid|labels\['[^']+'\]|annotations\['[^']+'\])"
    r"|spec\.(nodeName|serviceAccountName)|status\.(hostIP|hostIPs|podIP|podIPs))$"
)
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"
# DNS: an IPv4 address (an A record), anything with a colon (an IPv6 address: an AAAA record; the
# models check it fully), else a hostname (a CNAME). `[.]` rather than an escaped dot: the same
# text is a CEL string literal in the CRD.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"^({_OCTET}[.]){{3}}{_OCTET}$"
_HOST = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*[.]?"
HOSTNAME = rf"^{_HOST}$"
DNS_TARGET = rf"^([0-9a-fA-F:.]*:[0-9a-fA-F:.]*|{_HOST})$"
# `aws/weight`, `webhook/weight`, `weight`: external-dns keeps a `x/` property only for provider x.
PROVIDER_PROPERTY = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
# CEL: a target that is an IP address (A or AAAA), not a hostname (CNAME).
_CEL_IP = f"(t.matches('{IPV4}') || t.contains(':'))"
# The project's engine image: vllm/vllm-openai of the same tag plus the entrypoint
# (serving/engine/Dockerfile), which passes the operator's vLLM arguments through.
DEFAULT_IMAGE = "ghcr.io/deepseek-operator/deepseek-engine:v0.32.0"
# The project's router image: vllm-router of this release on a slim Python base
# (serving/router/Dockerfile; tests/unit/test_image.py keeps the three in step).
ROUTER_VERSION = "0.1.17"
DEFAULT_ROUTER_IMAGE = f"ghcr.io/deepseek-operator/deepseek-router:{ROUTER_VERSION}"
ROUTER_BATCH_NEEDS_ROUTER = "router.batch needs router.enabled: true (the batch pool is a router)"
ROUTER_BATCH_NEEDS_PRIORITY = (
    "router.batch needs engine.schedulingPolicy: priority (the engines must run P0 requests "
    "before the P2 ones the batch router admits)"
)

DnsLabel = Annotated[str, Field(pattern=DNS_LABEL, min_length=1, max_length=63)]
DnsSubdomain = Annotated[str, Field(pattern=DNS_SUBDOMAIN, min_length=1, max_length=253)]
Quantity = Annotated[str, Field(pattern=QUANTITY, max_length=32)]
DnsTarget = Annotated[str, Field(pattern=DNS_TARGET, min_length=1, max_length=253)]


def dns_record_type(target: str) -> Literal["A", "AAAA", "CNAME"]:
    """The DNS record a target makes: an IPv4 address an A, an IPv6 address an AAAA, a hostname
    a CNAME (the same split as the CRD's rules)."""
    if ":" in target:
        return "AAAA"
    return "A" if re.match(IPV4, target) else "CNAME"


class WeightPrecision(StrEnum):
    """Precision of the model weights on a rung of the quantization ladder."""

    BF16 = "bf16"
    FP8 = "fp8"
    INT4 = "int4"


class KVCacheDtype(StrEnum):
    """vLLM `--kv-cache-dtype` values the operator offers (a subset of vLLM's list)."""

    AUTO = "auto"
    FP8 = "fp8"
    FP8_E4M3 = "fp8_e4m3"
    FP8_E5M2 = "fp8_e5m2"


class QuantizationMethod(StrEnum):
    """vLLM `--quantization` methods accepted by vLLM 0.32 (shared/reference)."""

    AWQ = "awq"
    AWQ_MARLIN = "awq_marlin"
    FP8 = "fp8"
    FBGEMM_FP8 = "fbgemm_fp8"
    GPTQ = "gptq"
    GPTQ_MARLIN = "gptq_marlin"
    COMPRESSED_TENSORS = "compressed-tensors"
    EXPERTS_INT8 = "experts_int8"
    MOE_WNA16 = "moe_wna16"
    MODELOPT = "modelopt"
    MODELOPT_FP4 = "modelopt_fp4"
    MXFP4 = "mxfp4"
    DEEPSEEK_V4_FP8 = "deepseek_v4_fp8"
    FP8_PER_BLOCK = "fp8_per_block"
    FP8_PER_TENSOR = "fp8_per_tensor"
    FP8_PER_CHANNEL = "fp8_per_channel"


class ModelCache(ApiModel):
    """Where model weights are kept between pod starts, so a new replica does not download them."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": k8s_extra(
            cel(
                "has(self.persistentVolumeClaim) != has(self.hostPath)",
                "set exactly one of model.cache.persistentVolumeClaim and model.cache.hostPath",
            )
        )
    }

    persistent_volume_claim: DnsLabel | None = Field(
        None,
        description="Name of an existing PersistentVolumeClaim in the same namespace that holds "
        "the weights (ReadOnlyMany or ReadWriteMany for more than one replica). The operator "
        "never creates or deletes it.",
    )
    host_path: str | None = Field(
        None,
        max_length=4096,
        pattern=r"^/",
        description="Absolute path on every GPU node where the weights are pre-staged.",
    )
    mount_path: str = Field(
        "/models",
        max_length=4096,
        pattern=r"^/",
        description="Where the cache is mounted in the engine container; passed to vLLM as "
        "--download-dir and HF_HOME.",
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Self:
        if (self.persistent_volume_claim is None) == (self.host_path is None):
            raise ValueError(
                "set exactly one of model.cache.persistentVolumeClaim and model.cache.hostPath"
            )
        return self


class ModelSpec(ApiModel):
    """What to serve."""

    checkpoint: str = Field(
        min_length=1,
        max_length=512,
        description="Hugging Face model id (e.g. deepseek-ai/DeepSeek-R1) or a path inside the "
        "model cache. A quantization rung may name its own checkpoint.",
    )
    served_name: str | None = Field(
        None,
        max_length=253,
        description="Model name clients send in the OpenAI API `model` field "
        "(vLLM --served-model-name). Defaults to the DeepSeekDeployment's name.",
    )
    revision: str | None = Field(
        None,
        max_length=253,
        description="Branch, tag or commit of the checkpoint (vLLM --revision). Changing it "
        "starts a blue-green rollout.",
    )
    max_model_len: int | None = Field(
        None,
        ge=1,
        le=1_048_576,
        description="Context length in tokens, prompt plus output (vLLM --max-model-len). "
        "Unset: the model's own maximum.",
    )
    trust_remote_code: bool = Field(
        False, description="Allow the checkpoint's custom code (vLLM --trust-remote-code)."
    )
    cache: ModelCache | None = Field(
        None,
        description="Model cache volume. Without one every new pod downloads the weights "
        "(about 700 GB for R1/V3 671B).",
    )
    architecture: Literal["MoE", "Dense"] | None = Field(
        None,
        description="How a decode step's time grows with the batch, which the autoscaler's "
        "learned capacity extrapolates from: MoE (a mixture of experts, DeepSeek-V2/V3/R1: the "
        "step time flattens once a batch touches every expert, so the learned line on TPOT is "
        "used) or Dense (the R1-Distill Qwen and Llama models: the step time grows with the "
        "batch, and the running-requests curve bounds that line). Unset: MoE for DeepSeek "
        "V2, V3 and R1 checkpoints that are not distills, Dense for any other.",
    )

    def is_moe(self) -> bool:
        """Whether the model is a mixture of experts (`architecture`, else from the name)."""
        if self.architecture is not None:
            return self.architecture == "MoE"
        return checkpoint_is_moe(self.checkpoint)


def checkpoint_is_moe(checkpoint: str) -> bool:
    """DeepSeek-V2/V3/R1 and their exports (DeepSeek-R1-AWQ, DeepSeek-Coder-V2-Lite) are
    mixtures of experts; the R1 distills and other checkpoints are taken as dense."""
    name = checkpoint.rstrip("/").rsplit("/", 1)[-1].lower()
    return (
        "deepseek" in name
        and "distill" not in name
        and re.search(r"(^|[-_.])(v2|v3|r1)([-_.]|$)", name) is not None
    )


class EnvSecretKeyRef(ApiModel):
    """A key of a Secret in the namespace, read by the kubelet (never by the operator)."""

    name: DnsSubdomain = Field(description="Name of the Secret.")
    key: str = Field(
        min_length=1, max_length=253, pattern=DATA_KEY, description="Key in the Secret."
    )
    optional: bool | None = Field(
        None,
        description="Start the container even when the Secret or the key is missing (the "
        "variable is then left out). Unset: false, the container waits for them.",
    )


class EnvConfigMapKeyRef(ApiModel):
    """A key of a ConfigMap in the DeepSeekDeployment's namespace, read by the kubelet."""

    name: DnsSubdomain = Field(description="Name of the ConfigMap.")
    key: str = Field(
        min_length=1, max_length=253, pattern=DATA_KEY, description="Key in the ConfigMap."
    )
    optional: bool | None = Field(
        None,
        description="Start the container even when the ConfigMap or the key is missing (the "
        "variable is then left out). Unset: false, the container waits for them.",
    )


class EnvFieldRef(ApiModel):
    """A field of the engine pod itself (the Downward API)."""

    field_path: str = Field(
        max_length=316,
        pattern=POD_FIELD_PATH,
        description="metadata.name, metadata.namespace, metadata.uid, metadata.labels['KEY'], "
        "metadata.annotations['KEY'], spec.nodeName, spec.serviceAccountName, status.hostIP, "
        "status.hostIPs, status.podIP or status.podIPs.",
    )


class EnvVarSource(ApiModel):
    """Where the value comes from: exactly one of secretKeyRef, configMapKeyRef and fieldRef."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": k8s_extra(
            cel(
                "(has(self.secretKeyRef) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0) + "
                "(has(self.fieldRef) ? 1 : 0) == 1",
                "set exactly one of engine.env[].valueFrom.secretKeyRef, configMapKeyRef and "
                "fieldRef",
            )
        )
    }

    secret_key_ref: EnvSecretKeyRef | None = Field(
        None,
        description="A key of a Secret, e.g. a Hugging Face token: {name: hf-token, key: token}. "
        "The kubelet reads it when the pod starts; the operator never does.",
    )
    config_map_key_ref: EnvConfigMapKeyRef | None = Field(None, description="A key of a ConfigMap.")
    field_ref: EnvFieldRef | None = Field(None, description=EnvFieldRef.__doc__)

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Self:
        sources = (self.secret_key_ref, self.config_map_key_ref, self.field_ref)
        if sum(s is not None for s in sources) != 1:
            raise ValueError(
                "set exactly one of engine.env[].valueFrom.secretKeyRef, configMapKeyRef and "
                "fieldRef"
            )
        return self


class EnvVar(ApiModel):
    """An engine environment variable: a literal value, or valueFrom a Secret, ConfigMap or pod."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": k8s_extra(
            cel(
                "has(self.value) != has(self.valueFrom)",
                "set exactly one of engine.env[].value and engine.env[].valueFrom",
            )
        )
    }

    name: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$",
        description="Variable name. An entry named like one the operator sets itself "
        "(POD_NAME, POD_NAMESPACE, VLLM_NO_USAGE_STATS, HF_HOME) replaces it.",
    )
    value: str | None = Field(
        None,
        max_length=4096,
        repr=False,  # kept out of any log line or assertion message that prints the spec
        description='Literal value ("" for an empty variable). Anyone who may read the '
        "DeepSeekDeployment reads it: keep tokens in a Secret and use valueFrom.secretKeyRef.",
    )
    value_from: EnvVarSource | None = Field(None, description=EnvVarSource.__doc__)

    @model_validator(mode="after")
    def _exactly_one_value(self) -> Self:
        # The message names the field only: the value may be a secret and must not be echoed.
        if (self.value is None) == (self.value_from is None):
            raise ValueError("set exactly one of engine.env[].value and engine.env[].valueFrom")
        return self


class ImagePullSecret(ApiModel):
    """A Secret of type kubernetes.io/dockerconfigjson in the DeepSeekDeployment's namespace."""

    name: DnsSubdomain = Field(description="Name of the Secret.")


class DrainSpec(ApiModel):
    """How an engine pod leaves: stop new traffic, let in-flight requests finish, then exit."""

    pre_stop_delay_seconds: int = Field(
        10,
        ge=0,
        le=300,
        description="Seconds the pod keeps serving after it is marked for deletion, so load "
        "balancers see the endpoint go away before the engine stops accepting requests. A "
        "preStop `sleep` action on Kubernetes 1.30+; below, `exec: sleep N`, so the engine "
        "image needs a `sleep` binary there (the vLLM images have one).",
    )
    timeout_seconds: int = Field(
        300,
        ge=0,
        le=3600,
        description="Most seconds in-flight requests get to finish after SIGTERM. The pod's "
        "terminationGracePeriodSeconds is preStopDelaySeconds + timeoutSeconds + 15.",
    )


class AdmissionSpec(ApiModel):
    """Admission in front of vLLM inside each engine pod: the engine image's entrypoint
    (serving/deepseek_serving/admission.py) takes the API port, vLLM moves behind it to a
    loopback port. At most maxRunning generation requests (POSTs under /v1/) are in vLLM at
    once; the others wait at the gate (oldest first, newest first once the oldest has waited
    half of maxWaitSeconds: under overload the newest can still meet the TTFT SLO), and one
    that waited maxWaitSeconds is
    answered 503 with Retry-After: 1 at once (vLLM's own queue has no deadline), as is a
    streamed one with no first token maxWaitSeconds after it arrived (aborted in vLLM; its
    client has seen nothing yet; a request not streamed, once it has a place, runs to its
    end). A request that late has missed its TTFT SLO anyway; answered now, the router
    retries it on another replica and the client backs off, while this replica's steps stay
    with the requests that can still meet their SLOs. While a pod drains, waiting and new
    generation requests get 503; the ones in vLLM finish. The pods' /metrics gain
    deepseek_admission_limit, _running, _waiting, _admitted_total, _refused_total and
    _aborted_total; the operator's signals count the refused as arrivals and failures, the
    aborted as failures, the waiting as queued. Needs the project's engine image (or one
    with its entrypoint): other images ignore the DEEPSEEK_ADMISSION_* variables it is
    passed as."""

    max_running: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Generation requests one pod lets into vLLM at once. Unset: learned. The "
        "autoscaler's step-time curve (mean TPOT against running requests per pod) gives the "
        "running requests at which the mean TPOT reaches the TPOT SLO (scaling.slo."
        "tpotP99Seconds x targets.tpotSloFraction); the operator publishes that number in the "
        "ConfigMap <name>-admission (key maxRunning, mounted into the engine pods; their gate "
        "re-reads it, kubelet refreshes it within about a minute), republishes it once it moves "
        "by 10%, and says so in status.scaling.admissionLimit and an AdmissionLimitLearned "
        "Event. Until the curve is learned (needs scaling.enabled and metrics) the gate has no "
        "limit and only the wait deadline applies. Set: fixed; pick it below vLLM's "
        "--max-num-seqs (256; 1024 on H100/H200-class GPUs), where the step time still keeps "
        "TPOT within the SLO under prefill bursts.",
    )
    max_wait_seconds: float | None = Field(
        None,
        ge=0,
        le=600,
        description="Seconds a generation request may wait for a place at the gate, and a "
        "streamed one for its first token, before it is answered 503 (0: at once when the pod "
        "is full, and streams get no first-token deadline). Unset: the TTFT SLO "
        "(scaling.slo.ttftP99Seconds).",
    )


class EngineSpec(ApiModel):
    """How vLLM runs."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": k8s_extra(
            cel(
                "self.env.all(e, self.env.exists_one(f, f.name == e.name))",
                "engine.env names must be unique",
                ".env",
            ),
            cel(
                "self.imagePullSecrets.all(s, self.imagePullSecrets.exists_one(t, "
                "t.name == s.name))",
                "engine.imagePullSecrets names must be unique",
                ".imagePullSecrets",
            ),
        )
    }

    image: str = Field(
        DEFAULT_IMAGE,
        min_length=1,
        max_length=512,
        description="Engine image. The default is the project's engine image "
        "(serving/engine/Dockerfile: vllm/vllm-openai of the same tag plus an entrypoint that "
        "passes the operator's vLLM arguments through, checks the model cache and drains on "
        "SIGTERM). Any image whose entrypoint takes vLLM's `serve` arguments works, e.g. "
        "vllm/vllm-openai.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Image pull policy of the engine container."
    )
    pipeline_parallel_size: int = Field(
        1,
        ge=1,
        le=64,
        description="vLLM --pipeline-parallel-size. Tensor parallel size is GPUs per replica "
        "divided by this.",
    )
    expert_parallel: bool = Field(
        False,
        description="Use expert parallelism for the MoE layers of DeepSeek-V3/R1 "
        "(vLLM --enable-expert-parallel).",
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        le=0.99,
        description="Fraction of each GPU's memory vLLM may use for weights, activations and "
        "KV cache (vLLM --gpu-memory-utilization).",
    )
    port: int = Field(8000, ge=1024, le=65535, description="HTTP port of the OpenAI API server.")
    scheduling_policy: Literal["fcfs", "priority"] = Field(
        "fcfs",
        description="Order in which each engine admits waiting requests (vLLM "
        "--scheduling-policy). fcfs: by arrival (vLLM's default; no flag is passed). priority: "
        "by the request's priority, lower first, arrival breaking ties; when the KV cache runs "
        "short vLLM preempts the running request with the highest value first (it never "
        "preempts to admit one). A request's priority is the integer `priority` field of the "
        "body (/v1/completions, /v1/chat/completions) or the header X-Vllm-Priority, which "
        "wins when both are given; absent: 0. Convention: 0 = P0 (interactive), 1 = P1, "
        "2 = P2 (batch). The router passes both through unchanged and sets neither. Changing "
        "this field rolls the engines out.",
    )
    extra_args: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=64,
        description="More vLLM arguments, appended verbatim after the ones the operator sets.",
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        description="Extra environment variables of the engine container, e.g. "
        "{name: HF_TOKEN, valueFrom: {secretKeyRef: {name: hf-token, key: token}}} for gated "
        "Hugging Face models.",
    )
    image_pull_secrets: list[ImagePullSecret] = Field(
        default_factory=list,
        max_length=16,
        description="Secrets with the registry credentials for pulling the engine image "
        "(the pod's imagePullSecrets). The operator passes the names on and never reads them.",
    )
    service_account_name: DnsSubdomain | None = Field(
        None,
        description="ServiceAccount the engine pods run as; it must exist in the namespace (the "
        "API server refuses pods naming a missing one). Unset: the namespace's default.",
    )
    runtime_class_name: DnsSubdomain | None = Field(
        None,
        description="RuntimeClass of the engine pods, e.g. nvidia where the NVIDIA container "
        "runtime is not the nodes' default. It must exist (the API server refuses pods naming "
        "a missing one). Unset: the nodes' default runtime.",
    )
    pod_labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict,
        description="Extra labels on engine pods. The operator's own labels "
        "(serving.deepseek.dev/*, app.kubernetes.io/*) win over these.",
    )
    pod_annotations: dict[str, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict, description="Extra annotations on engine pods."
    )
    startup_timeout_seconds: int = Field(
        1800,
        ge=60,
        le=14400,
        description="How long a new pod may take to load the model before its startup probe "
        "fails and it is restarted. 671B models take many minutes.",
    )
    drain: DrainSpec = Field(default_factory=DrainSpec, description=DrainSpec.__doc__)
    admission: AdmissionSpec | None = Field(
        None,
        description=(AdmissionSpec.__doc__ or "")
        + " Unset (the default): no gate, vLLM takes every request on the API port itself. "
        "Setting, changing or unsetting it rolls the engine pods (a new pod template).",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        # A Deployment's env and imagePullSecrets are maps keyed by name: a duplicate would
        # make every server-side apply of the engine Deployment fail.
        for what, names in (
            ("engine.env", [e.name for e in self.env]),
            ("engine.imagePullSecrets", [p.name for p in self.image_pull_secrets]),
        ):
            if len(set(names)) != len(names):
                raise ValueError(f"{what} names must be unique")
        return self


class ResourcesSpec(ApiModel):
    """What one replica needs from a node."""

    gpus_per_replica: int = Field(
        1,
        ge=1,
        le=64,
        description="GPUs (nvidia.com/gpu) per replica, all on one node. A quantization rung "
        "may override it.",
    )
    gpu_product: str | None = Field(
        None,
        max_length=128,
        description="Required value of the node label nvidia.com/gpu.product, e.g. "
        "NVIDIA-H100-80GB-HBM3. Unset: any GPU node.",
    )
    cpu: Quantity = Field("8", description="CPU request and limit of the engine container.")
    memory: Quantity = Field(
        "64Gi", description="Memory request and limit of the engine container."
    )
    shared_memory: Quantity = Field(
        "16Gi", description="Size of the in-memory /dev/shm volume (NCCL and vLLM workers use it)."
    )


class QuantizationRung(ApiModel):
    """One mode on the quantization ladder."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": k8s_extra(
            cel(
                "self.weights != 'int4' || has(self.checkpoint)",
                "an int4 rung needs a pre-quantized checkpoint (AWQ or GPTQ): set checkpoint",
            )
        )
    }

    name: DnsLabel = Field(description="Name of the mode, e.g. fp8 or fp8-kv8.")
    weights: WeightPrecision = Field(description="Precision of the weights.")
    kv_cache_dtype: KVCacheDtype = Field(
        KVCacheDtype.AUTO, description="KV-cache dtype (vLLM --kv-cache-dtype); fp8 halves it."
    )
    method: QuantizationMethod | None = Field(
        None,
        description="vLLM --quantization method. Unset: fp8 rungs use fp8, others let vLLM "
        "read the checkpoint's quantization_config.",
    )
    checkpoint: str | None = Field(
        None,
        min_length=1,
        max_length=512,
        description="Checkpoint for this rung, e.g. an AWQ int4 export. Unset: model.checkpoint.",
    )
    gpus_per_replica: int | None = Field(
        None,
        ge=1,
        le=64,
        description="GPUs per replica on this rung. Unset: resources.gpusPerReplica.",
    )
    capacity_factor: float | None = Field(
        None,
        gt=0,
        le=100,
        description="Requests/s one replica of this rung serves within the SLO, relative to "
        "one replica of the first rung (e.g. 1.3: 30% more per replica). The automatic policy "
        "uses it until it has learned the rung's capacity. Unset: derived from the weights "
        "(bf16 1.0, fp8 1.6, int4 2.0 per GPU), x1.25 for an fp8 KV cache (counted only while "
        "the served rung's KV cache binds, usage >= 90%, with TPOT p99 within the SLO), scaled "
        "by GPUs per replica.",
    )

    @model_validator(mode="after")
    def _int4_needs_checkpoint(self) -> Self:
        if self.weights is WeightPrecision.INT4 and self.checkpoint is None:
            raise ValueError(
                "an int4 rung needs a pre-quantized checkpoint (AWQ or GPTQ): set checkpoint"
            )
        return self


def default_ladder() -> list[QuantizationRung]:
    return [
        QuantizationRung(name="bf16", weights=WeightPrecision.BF16),
        QuantizationRung(name="fp8", weights=WeightPrecision.FP8),
        QuantizationRung(
            name="fp8-kv8", weights=WeightPrecision.FP8, kv_cache_dtype=KVCacheDtype.FP8
        ),
    ]


class QuantizationPolicy(ApiModel):
    """Whether and when the operator moves along the ladder by itself under GPU pressure."""

    # Down the ladder when the SLO is breached, or the load (or its forecast over the time a
    # switch takes) passes what the served rung carries, and more replicas cannot come; back
    # up when a higher-precision rung would carry the load with headroom. See quantization.py.

    automatic: bool = Field(
        False,
        description="Switch rungs under GPU pressure. While false the operator serves "
        "quantization.mode (the user's pin); while true it chooses the rung and "
        "quantization.mode is ignored. The rung served and why are in status.quantization.",
    )
    lowest_rung: DnsLabel | None = Field(
        None,
        description="The most compressed rung the policy may serve (its name): it never steps "
        "below it. Unset: the last rung of the ladder.",
    )
    step_down_after_seconds: int = Field(
        60,
        ge=0,
        le=3600,
        description="How long the pressure must last before stepping down: the SLO breached, "
        "the arriving load above what the Ready replicas carry, or a rising forecast above what "
        "the served rung carries on all its GPUs within the time a switch takes (replicas x "
        "(drain + cold start) under a GPU cap). The step goes straight to the rung needed.",
    )
    step_up_after_seconds: int = Field(
        600,
        ge=0,
        le=86400,
        description="How long the higher-precision rung must have had headroom "
        "(stepUpHeadroom) before stepping back up.",
    )
    min_dwell_seconds: int = Field(
        900,
        ge=0,
        le=86400,
        description="Least time on a rung between two switches (each switch is a rollout that "
        "replaces every replica).",
    )
    max_switches_per_hour: int = Field(
        4, ge=1, le=60, description="Most rung switches in any hour."
    )
    step_up_headroom: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Step up only when a higher-precision rung, on the GPUs the deployment "
        "holds plus the free ones (at most maxReplicas replicas), would carry the arriving "
        "load, its forecast over a switch, and the busiest minute of the time a step back down "
        "would take (stepDownAfterSeconds plus a switch) at no more than this fraction of its "
        "capacity (the highest such rung is chosen). A rung not yet served is counted by a "
        "prior taken on the safe side: one without the fp8 KV cache of the rung it is derived "
        "from, at half that rung's capacity where the cache may bind.",
    )


class QuantizationSpec(ApiModel):
    """The quantization ladder (highest precision first), the mode to serve, and the policy."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": k8s_extra(
            cel(
                "!has(self.mode) || self.ladder.exists(r, r.name == self.mode)",
                "quantization.mode must name a rung of quantization.ladder",
                ".mode",
            ),
            cel(
                "self.ladder.all(r, self.ladder.exists_one(s, s.name == r.name))",
                "quantization.ladder rung names must be unique",
                ".ladder",
            ),
            cel(
                "!has(self.policy) || !has(self.policy.lowestRung) || "
                "self.ladder.exists(r, r.name == self.policy.lowestRung)",
                "quantization.policy.lowestRung must name a rung of quantization.ladder",
                ".policy.lowestRung",
            ),
        )
    }

    mode: DnsLabel | None = Field(
        None,
        description="The rung to serve (its name) while policy.automatic is false. Unset: the "
        "first rung. Changing it starts a rollout. Ignored while policy.automatic is true: the "
        "policy chooses the rung (see status.quantization).",
    )
    ladder: list[QuantizationRung] = Field(
        default_factory=default_ladder,
        min_length=1,
        max_length=8,
        description="Modes ordered from highest precision to most compressed.",
    )
    policy: QuantizationPolicy = Field(
        default_factory=QuantizationPolicy, description=QuantizationPolicy.__doc__
    )

    @model_validator(mode="after")
    def _mode_on_ladder(self) -> Self:
        names = [r.name for r in self.ladder]
        if len(set(names)) != len(names):
            raise ValueError("quantization.ladder rung names must be unique")
        if self.mode is not None and self.mode not in names:
            raise ValueError(
                f"quantization.mode {self.mode!r} must name a rung of quantization.ladder "
                f"({', '.join(names)})"
            )
        floor = self.policy.lowest_rung
        if floor is not None and floor not in names:
            raise ValueError(
                f"quantization.policy.lowestRung {floor!r} must name a rung of "
                f"quantization.ladder ({', '.join(names)})"
            )
        return self

    def current(self) -> QuantizationRung:
        """The rung named by `mode`, or the first one."""
        for rung in self.ladder:
            if rung.name == self.mode:
                return rung
        return self.ladder[0]

    def rung(self, name: str) -> QuantizationRung | None:
        """The rung called `name`, or None."""
        return next((r for r in self.ladder if r.name == name), None)

    def floor_index(self) -> int:
        """Index of the most compressed rung the policy may serve (policy.lowestRung)."""
        names = [r.name for r in self.ladder]
        floor = self.policy.lowest_rung
        return names.index(floor) if floor in names else len(names) - 1


class SloSpec(ApiModel):
    """Service level objectives the autoscaler and the rollout analysis defend."""

    ttft_p99_seconds: float = Field(
        2.0, gt=0, le=600, description="99th percentile time to first token, in seconds."
    )
    tpot_p99_seconds: float = Field(
        0.1,
        gt=0,
        le=60,
        description="99th percentile, over requests, of time per output token (a request's "
        "decode time divided by its output tokens; vLLM's "
        "request_time_per_output_token_seconds), in seconds.",
    )
    max_error_rate: float = Field(
        0.01, ge=0, le=1, description="Highest tolerated fraction of failed requests."
    )
    attainment: float = Field(
        0.99,
        ge=0.5,
        le=0.9999,
        description="Share of requests to serve within both latency SLOs and without error, "
        "over windowSeconds. The autoscaler measures it at the engines (their TTFT and TPOT "
        "histograms and 5xx answers; requests a router refused or a client abandoned before an "
        "engine are not seen) into status.scaling.sloBudget and the SLOMet condition; it "
        "reports it and does not size replicas from it.",
    )
    window_seconds: int = Field(
        3600,
        ge=300,
        le=2592000,
        description="Time over which attainment is measured (exponentially weighted: older "
        "requests count less, by e per window).",
    )


class ScalingTargets(ApiModel):
    """Per-replica load the autoscaler aims for (target tracking on the highest ratio)."""

    queue_depth_per_replica: float = Field(
        2.0,
        gt=0,
        le=10000,
        description="Requests waiting (vllm:num_requests_waiting) per replica.",
    )
    kv_cache_usage: float = Field(
        0.8, gt=0, le=1, description="KV-cache usage per replica (vllm:kv_cache_usage_perc)."
    )
    running_per_replica: float | None = Field(
        None,
        gt=0,
        le=10000,
        description="Running requests per replica (vllm:num_requests_running). Unset: not used.",
    )
    tpot_slo_fraction: float = Field(
        1.0,
        ge=0.1,
        le=1,
        description="TPOT p99 at which a replica's capacity is measured, as a fraction of "
        "slo.tpotP99Seconds (the margin a one-minute p99 wanders by). Headroom for bursts is "
        "not taken from here: the planner sizes it from the load's own volatility.",
    )
    gpu_utilization: float | None = Field(
        None,
        gt=0,
        le=1,
        description="GPU utilization (DCGM_FI_DEV_GPU_UTIL / 100). Unset: not used; it is a "
        "poor load signal for LLM decoding, which keeps it near 100% at any batch size.",
    )


class ScaleUpBehavior(ApiModel):
    """How fast replicas are added."""

    stabilization_seconds: int = Field(
        0,
        ge=0,
        le=3600,
        description="The lowest recommendation over this window is used, so a blip does not "
        "add replicas. 0: act on the newest recommendation.",
    )
    max_step_replicas: int = Field(
        4, ge=1, le=1000, description="Most replicas added by one decision."
    )
    project_rising_load: bool = Field(
        False,
        description="Deprecated and ignored: the planner always forecasts the request rate "
        "to when a new pod would be Ready (the start time is learned from earlier scale-ups).",
    )


class ScaleDownBehavior(ApiModel):
    """How slowly replicas are removed."""

    stabilization_seconds: int | None = Field(
        None,
        ge=0,
        le=86400,
        description="The highest recommendation over this window is used, so Ready replicas "
        "leave only after load has stayed low this long. Unset: as long as it takes to bring "
        "a replica back, one rate window (60s) plus the learned start time "
        "(status.scaling.startSeconds), at most 300s, and 300s until a start was timed: a "
        "Ready replica held idle longer costs more GPU time than starting it again would. Pods "
        "still starting (not Ready) that no recommendation asked for over the last minute are "
        "removed without it (not during a rollout): they serve nothing yet (reason "
        "StartingNotNeeded).",
    )
    max_step_replicas: int = Field(
        1, ge=1, le=1000, description="Most replicas removed by one decision."
    )


HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
Weekday = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
WEEKDAYS: tuple[Weekday, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class ScalingSchedule(ApiModel):
    """A window of known load (business hours, a launch, a nightly batch) and the replicas it
    needs: the autoscaler orders them one learned start time (status.scaling.startSeconds;
    300 s before a scale-up was timed) before the window opens, so they are Ready when it does,
    and keeps at least that many until it closes; the planner may ask for more. Afterwards the
    load decides again, through the scale-down stabilization. Applies while scaling.enabled."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": k8s_extra(
            cel(
                "self.start != self.end",
                "scaling.schedules[].start and end must differ (end <= start: the window ends "
                "the next day)",
                ".end",
            ),
        )
    }

    name: DnsLabel = Field(description="Names the window in decisions and Events.")
    start: str = Field(
        pattern=HH_MM,
        description="Local time the window opens (HH:MM, 24-hour, in timeZone): the replicas "
        "are Ready by then.",
    )
    end: str = Field(
        pattern=HH_MM,
        description="Local time the window closes (HH:MM). At or before start: the next day.",
    )
    days: list[Weekday] = Field(
        default_factory=lambda: list(WEEKDAYS),
        min_length=1,
        max_length=7,
        description="Days the window opens on (Mon..Sun, in timeZone). Default: every day.",
    )
    time_zone: str = Field(
        "UTC",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$",
        description="IANA time zone of start, end and days (e.g. Europe/Paris; daylight saving "
        "time follows it).",
    )
    min_replicas: int = Field(
        ge=0,
        le=1000,
        description="Replicas Ready from start to end (at most scaling.maxReplicas).",
    )

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.start == self.end:
            raise ValueError(
                "scaling.schedules[].start and end must differ (end <= start: the window ends "
                "the next day)"
            )
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"scaling.schedules[].timeZone: unknown time zone {self.time_zone!r} "
                "(an IANA name such as Europe/Paris)"
            ) from None
        return self


class ScalingSpec(ApiModel):
    """Metric-driven autoscaling."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": k8s_extra(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "scaling.minReplicas must be less than or equal to scaling.maxReplicas",
                ".minReplicas",
            ),
            cel(
                "self.minReplicas >= 1 || self.scaleToZero",
                "scaling.minReplicas may be 0 only with scaling.scaleToZero: true",
                ".minReplicas",
            ),
            cel(
                "self.schedules.all(w, w.minReplicas <= self.maxReplicas)",
                "scaling.schedules[].minReplicas must be less than or equal to scaling.maxReplicas",
                ".schedules",
            ),
            cel(
                "self.schedules.all(w, self.schedules.exists_one(v, v.name == w.name))",
                "scaling.schedules names must be unique",
                ".schedules",
            ),
        )
    }

    enabled: bool = Field(
        True,
        description="Let the operator set spec.replicas from metrics. When false, replicas "
        "only change through spec.replicas or kubectl scale.",
    )
    min_replicas: int = Field(1, ge=0, le=1000, description="Fewest replicas.")
    max_replicas: int = Field(4, ge=1, le=1000, description="Most replicas.")
    scale_to_zero: bool = Field(
        False,
        description="Allow scaling to zero replicas when idle (minReplicas 0). Off by default: "
        "a 671B model takes minutes to come back.",
    )
    interval_seconds: int = Field(
        15, ge=5, le=600, description="Seconds between two autoscaling decisions."
    )
    slo: SloSpec = Field(default_factory=SloSpec, description=SloSpec.__doc__)
    targets: ScalingTargets = Field(
        default_factory=ScalingTargets, description=ScalingTargets.__doc__
    )
    scale_up: ScaleUpBehavior = Field(
        default_factory=ScaleUpBehavior, description=ScaleUpBehavior.__doc__
    )
    scale_down: ScaleDownBehavior = Field(
        default_factory=ScaleDownBehavior, description=ScaleDownBehavior.__doc__
    )
    seasonal_period_seconds: int = Field(
        86400,
        ge=0,
        le=604800,
        description="Period the load repeats with (a day by default). Once a whole period has "
        "been seen, the planner forecasts with the load's profile over it instead of a trend. "
        "0: no seasonality.",
    )
    panic_threshold: float = Field(
        2.0,
        ge=1.1,
        le=100,
        description="When the plan asks for this multiple of the current replicas or more, "
        "one decision may at least double them (scaleUp.maxStepReplicas notwithstanding).",
    )
    schedules: list[ScalingSchedule] = Field(
        default_factory=list,
        max_length=16,
        description="Windows of known load and the replicas each needs, Ready when it opens "
        "(ordered one learned start time ahead). Where several are open, the most replicas. "
        "The load the planner measures still scales beyond them.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                "scaling.minReplicas must be less than or equal to scaling.maxReplicas"
            )
        if self.min_replicas < 1 and not self.scale_to_zero:
            raise ValueError("scaling.minReplicas may be 0 only with scaling.scaleToZero: true")
        if any(w.min_replicas > self.max_replicas for w in self.schedules):
            raise ValueError(
                "scaling.schedules[].minReplicas must be less than or equal to scaling.maxReplicas"
            )
        names = [w.name for w in self.schedules]
        if len(set(names)) != len(names):
            raise ValueError("scaling.schedules names must be unique")
        return self


class AnalysisSpec(ApiModel):
    """Checks a preview colour must pass, on its own metrics, before it takes traffic."""

    duration_seconds: int = Field(
        120, ge=0, le=86400, description="How long the preview is analysed. 0 skips analysis."
    )
    max_error_rate: float = Field(
        0.01, ge=0, le=1, description="Highest fraction of failed requests on the preview."
    )
    max_ttft_p99_seconds: float | None = Field(
        None,
        gt=0,
        le=600,
        description="Highest TTFT p99 on the preview. Unset: scaling.slo.ttftP99Seconds.",
    )
    min_requests: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="Requests the preview must have served for the analysis to count; with "
        "fewer, the analysis is inconclusive and keeps waiting until the duration runs out.",
    )


class RolloutSpec(ApiModel):
    """Blue-green updates: any change to the engine pod starts one; replica changes do not.
    Where free GPUs cannot hold a whole preview colour, the transition moves capacity in
    steps instead of waiting: stop maxUnavailable old pods, start new pods in their GPUs,
    analyse the first new pods (on the preview Service), continue; a failed analysis rolls back
    the same way. Once the first new pods passed, Ready new pods serve through the stable
    Service beside the old ones."""

    strategy: Literal["BlueGreen"] = Field("BlueGreen", description="Update strategy.")
    auto_promote: bool = Field(
        True,
        description="Switch traffic to the preview as soon as it passes analysis. When false "
        "the rollout waits for the serving.deepseek.dev/promote annotation.",
    )
    ready_timeout_seconds: int = Field(
        3600,
        ge=60,
        le=86400,
        description="A preview not Ready within this many seconds is rolled back.",
    )
    warmup_requests: int = Field(
        0,
        ge=0,
        le=10000,
        description="Completions sent to each preview pod before analysis, to warm caches.",
    )
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec, description=AnalysisSpec.__doc__)
    scale_down_delay_seconds: int = Field(
        300,
        ge=0,
        le=86400,
        description="How long the old colour keeps running after the switch, for a fast "
        "manual rollback, before it is scaled to zero.",
    )
    max_surge: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="Preview replicas that may run beyond the desired count at once. Unset: a "
        "whole second copy (classic blue-green; needs free GPUs for every replica). Lower than "
        "the replicas: a stepped transition from the start (GPUs move from the old colour to "
        "the new in steps).",
    )
    max_unavailable: int = Field(
        1,
        ge=0,
        le=1000,
        description="In a stepped transition, how many replicas may be out of service at once: "
        "each step the old colour gives up this many pods' GPUs to the new one. 0: the old "
        "colour only shrinks as new pods become Ready, so a preview that cannot get GPUs waits "
        "(reported in status and Events) until readyTimeoutSeconds rolls it back.",
    )
    unschedulable_seconds: int = Field(
        60,
        ge=0,
        le=86400,
        description="How long preview pods may wait for GPUs (Pending, Unschedulable) before a "
        "classic blue-green rollout turns into a stepped transition.",
    )


class Toleration(ApiModel):
    """A Kubernetes toleration."""

    key: str | None = Field(None, max_length=316, description="Taint key; unset with Exists: all.")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal.")
    value: str | None = Field(None, max_length=63, description="Taint value (Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect; unset: all."
    )
    toleration_seconds: int | None = Field(
        None, ge=0, description="How long a NoExecute taint is tolerated."
    )


def default_tolerations() -> list[Toleration]:
    return [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]


class PlacementSpec(ApiModel):
    """Where replicas run."""

    zones: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        default_factory=list,
        max_length=16,
        description="Zones (topology.kubernetes.io/zone) replicas may use. Empty: all zones.",
    )
    max_skew: int = Field(
        1, ge=1, le=100, description="Largest difference in replica count between two zones."
    )
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"] = Field(
        "DoNotSchedule",
        description="DoNotSchedule keeps a replica Pending rather than break the zone spread.",
    )
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict, description="Extra node labels engine pods require."
    )
    tolerations: list[Toleration] = Field(
        default_factory=default_tolerations,
        max_length=32,
        description="Tolerations of engine pods. Default: tolerate the nvidia.com/gpu taint.",
    )
    node_not_ready_toleration_seconds: int | None = Field(
        None,
        ge=0,
        le=86400,
        description="How long an engine pod stays bound to a node that is NotReady or "
        "unreachable (its kubelet stopped reporting) before Kubernetes evicts it and the "
        "replica is recreated on a Ready node: the tolerationSeconds of the NoExecute "
        "tolerations the operator then adds for node.kubernetes.io/not-ready and "
        "node.kubernetes.io/unreachable. A replica on a lost node serves nothing; 30 is a good "
        "value for GPU serving. The node is marked NotReady only after the controller "
        "manager's --node-monitor-grace-period (50 s by default), so a replica is replaced "
        "that long plus this many seconds after its node stops. A toleration of your own for "
        "either key in tolerations wins. Unset: no toleration is added and the cluster's "
        "default applies (DefaultTolerationSeconds, 300 s); engine pods of resources made "
        "before this field existed stay as they are (setting it rolls them out once).",
    )
    priority_class_name: DnsSubdomain | None = Field(
        None,
        description="PriorityClass of the engine pods, e.g. to let serving replicas preempt "
        "batch jobs for GPUs. It must exist (the API server refuses pods naming a missing one). "
        "Unset: the cluster's default priority.",
    )


class SecretKeyRef(ApiModel):
    """A key in a Secret of the DeepSeekDeployment's namespace."""

    name: DnsLabel = Field(description="Secret name.")
    key: str = Field("kubeconfig", min_length=1, max_length=253, description="Key in the Secret.")


class RegionSpec(ApiModel):
    """A member region: another cluster that serves the same model."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": k8s_extra(
            cel(
                "!has(self.minReplicas) || !has(self.maxReplicas) || "
                "self.minReplicas <= self.maxReplicas",
                "regions[].minReplicas must be less than or equal to regions[].maxReplicas",
                ".minReplicas",
            ),
            cel(
                f"!has(self.dnsTargets) || self.dnsTargets.all(t, {_CEL_IP}) || "
                "(size(self.dnsTargets) == 1 && self.dnsTargets.all(t, !" + _CEL_IP + "))",
                "regions[].dnsTargets must be IP addresses (A/AAAA records) or one hostname (a "
                "CNAME), not both",
                ".dnsTargets",
            ),
        )
    }

    name: DnsLabel = Field(description="Region name, e.g. us-east.")
    role: Literal["primary", "standby"] = Field("primary", description="primary or standby.")
    weight: int = Field(
        100, ge=0, le=100, description="Share of traffic while every region is healthy."
    )
    kubeconfig_secret_ref: SecretKeyRef | None = Field(
        None,
        description="Secret holding a kubeconfig for the region's cluster. The operator "
        "creates and keeps in sync a copy of this DeepSeekDeployment there (same "
        "namespace/name, without regions and failover, with this region's overrides; edits "
        "made there are reverted; an object of that name it did not create is left alone), "
        "reads its ready pods to health-check the region, and deletes the copy when this "
        "resource is deleted. The region's own operator serves the copy, so the region keeps "
        "serving when this cluster is unreachable. Unset: the cluster the operator runs in. "
        "The operator's RBAC must allow reading it (chart value rbac.kubeconfigSecrets); the "
        "kubeconfig needs get/create/update/delete on deepseekdeployments there.",
    )
    prometheus_url: str | None = Field(
        None, max_length=2048, description="Prometheus of that region (its health signals)."
    )
    min_replicas: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="scaling.minReplicas of this region's copy. Unset: the home value.",
    )
    max_replicas: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="scaling.maxReplicas of this region's copy (its GPUs may differ). Unset: "
        "the home value.",
    )
    standby_replicas: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="role standby: Ready replicas the region's copy keeps without traffic (its "
        "scaling.minReplicas, or spec.replicas when scaling is disabled). While regions that "
        "carried traffic are out of rotation, each region in rotation is raised to its share "
        "(by weight) of the replicas they ran (status.regions[].carryingReplicas), within its "
        "maxReplicas, and lowered back at failback.",
    )
    dns_targets: list[DnsTarget] = Field(
        default_factory=list,
        max_length=8,
        description="With failover.dns: where the global hostname points for this region, e.g. "
        "its load balancer's hostname (one, a CNAME record, e.g. "
        "abc-123.elb.us-east-1.amazonaws.com) or its IP addresses (A records for IPv4, AAAA for "
        "IPv6). The region's weighted record set (set identifier: the region name) has these "
        "targets. Every region's targets must be of one kind: all hostnames or all addresses.",
    )

    @model_validator(mode="after")
    def _dns_targets(self) -> RegionSpec:
        kinds = {dns_record_type(t) for t in self.dns_targets}
        for t in self.dns_targets:
            if ":" in t:
                try:
                    ipaddress.IPv6Address(t)
                except ValueError:
                    raise ValueError(
                        f"regions[].dnsTargets: {t!r} is neither an IP address nor a hostname"
                    ) from None
        if "CNAME" in kinds and len(self.dns_targets) > 1:
            raise ValueError(
                "regions[].dnsTargets must be IP addresses (A/AAAA records) or one hostname (a "
                "CNAME), not both"
            )
        return self

    @model_validator(mode="after")
    def _bounds(self) -> RegionSpec:
        if (
            self.min_replicas is not None
            and self.max_replicas is not None
            and self.min_replicas > self.max_replicas
        ):
            raise ValueError(
                "regions[].minReplicas must be less than or equal to regions[].maxReplicas"
            )
        return self


DNS_DESCRIPTION = (
    "Publish the traffic weights as DNS: one external-dns DNSEndpoint (externaldns.k8s.io/"
    "v1alpha1) named after this resource, in its namespace, with one weighted record set per "
    "region in rotation (set identifier: the region name; weight: status.regions[].weight; "
    "targets: regions[].dnsTargets). A region out of rotation, or with weight 0, has no record; "
    "while no region is in rotation the records published last stay. external-dns "
    "(--source=crd) writes them to Route53-style weighted routing. Needs external-dns's "
    "DNSEndpoint CRD in this cluster. Unset: nothing is published."
)


class DnsSpec(ApiModel):
    """Weighted DNS records for the regions, through an external-dns DNSEndpoint."""

    hostname: str = Field(
        pattern=HOSTNAME,
        min_length=1,
        max_length=253,
        description="The global name clients resolve, e.g. deepseek.example.com (in a zone "
        "external-dns manages).",
    )
    ttl_seconds: int = Field(
        30,
        ge=1,
        le=86400,
        description="TTL of the records: how long resolvers may keep sending clients to a "
        "region after its record changed (part of the failover time).",
    )
    weight_property: str = Field(
        "aws/weight",
        pattern=PROVIDER_PROPERTY,
        max_length=127,
        description="The external-dns provider-specific property that carries each record's "
        "weight: aws/weight for Route53 (--provider=aws). external-dns drops a `x/` property "
        "unless x is its --provider, so a webhook provider needs webhook/weight.",
    )
    self_fencing: bool = Field(
        False,
        description="Each member region publishes its own record: the home writes only its own "
        "regions' records here, and each member region's copy carries its record "
        "(spec.regionRecord) with the weight decided here; that region's operator writes it to "
        "a DNSEndpoint in its own cluster (read by an external-dns there with its own "
        "--txt-owner-id) and withdraws it when its own engines fail failover.failureThreshold "
        "checks in a row, also while this cluster is unreachable.",
    )


class RegionRecordSpec(ApiModel):
    """Written by the home region's operator on a member region's copy (failover.dns.
    selfFencing): the region's own weighted record, which its own operator publishes in a
    DNSEndpoint in its cluster, and withdraws when its engines fail its own checks."""

    region: str = Field(
        min_length=1, max_length=63, description="The region (the record's set identifier)."
    )
    dns: DnsSpec = Field(description="The home resource's failover.dns.")
    dns_targets: list[DnsTarget] = Field(
        min_length=1, max_length=8, description="The region's regions[].dnsTargets."
    )
    weight: int = Field(
        ge=0,
        le=100,
        description="The weight the home region last decided for this region "
        "(status.regions[].weight there; 0: out of rotation, no record).",
    )
    health_check_interval_seconds: int = Field(
        10, ge=1, le=3600, description="Seconds between two checks of this region's own engines."
    )
    failure_threshold: int = Field(
        3,
        ge=1,
        le=100,
        description="Consecutive failed checks of its own engines before the region withdraws "
        "its record.",
    )


class FailoverSpec(ApiModel):
    """Health checking and traffic shifting between regions."""

    enabled: bool = Field(False, description="Shift traffic away from unhealthy regions.")
    health_check_interval_seconds: int = Field(
        10, ge=1, le=3600, description="Seconds between two health checks of each region."
    )
    failure_threshold: int = Field(
        3, ge=1, le=100, description="Consecutive failed checks before a region is unhealthy."
    )
    failback_delay_seconds: int = Field(
        600,
        ge=0,
        le=86400,
        description="How long a recovered region must stay healthy before traffic returns.",
    )
    dns: DnsSpec | None = Field(None, description=DNS_DESCRIPTION)


# Kubernetes label syntax (apimachinery's validation.IsQualifiedName / IsValidLabelValue).
LABEL_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
# `[.]` rather than an escaped dot: the same text is a CEL string literal in the CRD.
LABEL_KEY = rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{LABEL_NAME}$"
LABEL_VALUE = rf"^({LABEL_NAME})?$"
MAX_MONITORING_LABELS = 16

LabelValue = Annotated[str, Field(pattern=LABEL_VALUE, max_length=63)]


def label_problem(key: str, value: str) -> str | None:
    """Why `key: value` is not a valid Kubernetes label, or None."""
    prefix, _, name = key.rpartition("/")
    if not re.match(LABEL_KEY, key) or len(name) > 63 or len(prefix) > 253:
        return (
            f"label key {key!r} must be a qualified name ([prefix/]name, name at most 63 "
            "alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric)"
        )
    if len(value) > 63 or not re.match(LABEL_VALUE, value):
        return (
            f"label value {value!r} of {key!r} must be at most 63 alphanumerics, '-', '_' or "
            "'.', starting and ending with an alphanumeric"
        )
    return None


class MonitoringSpec(ApiModel):
    """How the operator reads metrics and what monitoring objects it creates."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": k8s_extra(
            cel(
                "!has(self.labels) || self.labels.all(k, size(k) <= 317 && "
                f"k.matches('{LABEL_KEY}'))",
                "monitoring.labels keys must be Kubernetes label keys ([prefix/]name)",
                ".labels",
            ),
        )
    }

    prometheus_url: str | None = Field(
        None,
        max_length=2048,
        description="Prometheus to query. Unset: the operator's --prometheus-url.",
    )
    pod_monitor: bool | None = Field(
        None,
        description="Create a PodMonitor (Prometheus Operator) that scrapes the engine pods, "
        "where the monitoring.coreos.com CRDs exist. Unset: serviceMonitor if set, else true.",
    )
    service_monitor: bool | None = Field(
        None,
        description="Deprecated: use podMonitor (the object created has always been a "
        "PodMonitor). Still accepted with the same meaning; when both are set, podMonitor wins.",
    )
    prometheus_rule: bool = Field(
        True,
        description="Create a PrometheusRule with this deployment's SLO alerts where the "
        "monitoring.coreos.com CRDs exist.",
    )
    labels: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=MAX_MONITORING_LABELS,
        description="Labels for the PodMonitor and PrometheusRule the operator creates, e.g. "
        "{release: kube-prometheus-stack}, the label a kube-prometheus-stack Prometheus selects "
        "them by. Merged over the operator's --monitor-label ones (these win); the operator's "
        "own labels (app.kubernetes.io/*, serving.deepseek.dev/*) win over both.",
    )

    @property
    def pod_monitor_enabled(self) -> bool:
        """podMonitor, else the deprecated serviceMonitor, else on."""
        if self.pod_monitor is not None:
            return self.pod_monitor
        if self.service_monitor is not None:
            return self.service_monitor
        return True

    @model_validator(mode="after")
    def _labels_valid(self) -> Self:
        for key, value in self.labels.items():
            problem = label_problem(key, value)
            if problem:
                raise ValueError(f"monitoring.labels: {problem}")
        return self


class RouterPolicy(StrEnum):
    """vllm-router --policy values the operator offers (all of 0.1.17's but kv_aware)."""

    CACHE_AWARE = "cache_aware"
    ROUND_ROBIN = "round_robin"
    RANDOM = "random"
    POWER_OF_TWO = "power_of_two"
    CONSISTENT_HASH = "consistent_hash"
    STICKY_LEAST_LOADED = "sticky_least_loaded"


class RouterResources(ApiModel):
    """CPU and memory of one router pod (request and limit)."""

    cpu: Quantity = Field(
        "2",
        description="CPU request and limit of the router container. The router is a Rust proxy: "
        "2 cores carry thousands of requests per second.",
    )
    memory: Quantity = Field(
        "2Gi",
        description="Memory request and limit of the router container. The cache_aware policy "
        "keeps a prefix tree of recent prompts per engine (vllm-router bounds it to 32 MiB of "
        "text per engine); the rest is connection buffers.",
    )


class RouterRetries(ApiModel):
    """How the router retries a request an engine failed: again after a backoff, on the engine
    the policy picks then (vllm-router 0.1.17 retries 408, 429, 500, 502, 503, 504 and
    connection errors; not other 4xx nor 501). The policy may pick the failed engine again
    (cache_aware always does for the same prompt), so retries alone do not route around a sick
    engine: the circuit breaker takes it out. A retry adds load where engines may already be
    overloaded, so the defaults stay small (vllm-router's own: 4 retries, 50 ms to 30 s, x1.5)."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": k8s_extra(
            cel(
                "self.initialBackoffMs <= self.maxBackoffMs",
                "router.retries.initialBackoffMs must be at most router.retries.maxBackoffMs",
                ".initialBackoffMs",
            )
        )
    }

    max_retries: int = Field(
        2,
        ge=0,
        le=20,
        description="Retries after a request's first attempt: a request goes out at most "
        "maxRetries + 1 times. 0: no retry. (vllm-router's --retry-max-retries counts every "
        "attempt, the first included, so the operator passes maxRetries + 1: measured with "
        "vllm-router 0.1.17.)",
    )
    initial_backoff_ms: int = Field(
        100,
        ge=1,
        le=60_000,
        description="Wait before the first retry, in milliseconds (--retry-initial-backoff-ms).",
    )
    max_backoff_ms: int = Field(
        2000,
        ge=1,
        le=600_000,
        description="Longest wait between two attempts, in milliseconds "
        "(--retry-max-backoff-ms). A client waits for the whole chain before its first token.",
    )
    backoff_multiplier: float = Field(
        2.0,
        ge=1,
        le=10,
        description="Each wait is the previous one times this, up to maxBackoffMs "
        "(--retry-backoff-multiplier).",
    )
    jitter_factor: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Random spread of each wait, as a fraction of it (--retry-jitter-factor), so "
        "that clients failed by the same engine do not retry in step.",
    )

    @model_validator(mode="after")
    def _backoff_bounds(self) -> Self:
        if self.initial_backoff_ms > self.max_backoff_ms:
            raise ValueError(
                "router.retries.initialBackoffMs must be at most router.retries.maxBackoffMs"
            )
        return self


class RouterCircuitBreaker(ApiModel):
    """The router's circuit breaker, one per engine in each router pod: after failureThreshold
    failed attempts in a row on an engine (a 5xx answer or a connection error; each retry is an
    attempt; any other answer, 4xx and 429 included, resets the count) its circuit opens
    and that router pod sends it nothing for timeoutSeconds. Then the engine gets requests
    again as the policy picks it (half-open): successThreshold successes in a row close the
    circuit, one failure opens it for another timeoutSeconds. With every circuit open the router
    answers 503 at once. This, not the health checks, takes out an engine that answers /health
    but fails requests (vllm-router's defaults: 10 failures, 3 successes, 60 s open, 120 s
    window; behaviour measured with 0.1.17, docs/resource.md)."""

    enabled: bool = Field(
        True, description="false: no circuit breaker (vllm-router --disable-circuit-breaker)."
    )
    failure_threshold: int = Field(
        5,
        ge=1,
        le=10_000,
        description="Failed attempts in a row that open an engine's circuit "
        "(--cb-failure-threshold). A client request fails only when all its attempts failed, "
        "so before it stops sending to an engine that fails everything, one router pod fails "
        "failureThreshold / (retries.maxRetries + 1) requests at most, rounded down (1 with "
        "the defaults), plus any whose last attempt was already on its way when the circuit "
        "opened.",
    )
    success_threshold: int = Field(
        2,
        ge=1,
        le=10_000,
        description="Successful trial requests in a row that close it again "
        "(--cb-success-threshold).",
    )
    timeout_seconds: int = Field(
        30,
        ge=1,
        le=3600,
        description="How long an open circuit keeps the engine out before it gets requests "
        "again, half-open (--cb-timeout-duration-secs).",
    )
    window_seconds: int = Field(
        60,
        ge=1,
        le=3600,
        description="Passed to vllm-router as --cb-window-duration-secs. 0.1.17 counts failures "
        "in a row whatever their spacing: with a 2 s window, failures 4 s apart still opened "
        "the circuit together.",
    )


class RouterHealthCheck(ApiModel):
    """The router's own health checks of each engine it discovered. The router adds an engine
    once its pod is Running and Ready and removes it when the pod is deleted; in between only
    these checks take an engine that stopped answering out of rotation (vllm-router's defaults:
    every 60 s, 5 s timeout, 3 failures, 2 successes)."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": k8s_extra(
            cel(
                "self.timeoutSeconds <= self.intervalSeconds",
                "router.healthCheck.timeoutSeconds must be at most intervalSeconds",
                ".timeoutSeconds",
            )
        )
    }

    interval_seconds: int = Field(
        10,
        ge=1,
        le=3600,
        description="Seconds between two checks of one engine (--health-check-interval-secs). "
        "An engine that stops answering leaves the rotation after about intervalSeconds x "
        "failureThreshold.",
    )
    timeout_seconds: int = Field(
        5,
        ge=1,
        le=600,
        description="A check not answered within this many seconds fails "
        "(--health-check-timeout-secs).",
    )
    failure_threshold: int = Field(
        3,
        ge=1,
        le=100,
        description="Failed checks in a row that mark an engine unhealthy "
        "(--health-failure-threshold).",
    )
    success_threshold: int = Field(
        2,
        ge=1,
        le=100,
        description="Passed checks in a row that mark it healthy again "
        "(--health-success-threshold).",
    )
    endpoint: str = Field(
        "/health",
        min_length=1,
        max_length=256,
        pattern=r"^/[-A-Za-z0-9._~/%]*$",
        description="Engine path the router checks (--health-check-endpoint): vLLM's /health.",
    )

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> Self:
        if self.timeout_seconds > self.interval_seconds:
            raise ValueError("router.healthCheck.timeoutSeconds must be at most intervalSeconds")
        return self


class RouterBatch(ApiModel):
    """A second router pool for batch work (P2), a bulkhead in front of the same engines:
    vllm-router 0.1.17 has no priorities of its own (one first-come-first-served admission
    bucket per pod), so P2 gets its own pods with their own, small admission limits. Set: the
    Deployment <name>-router-batch (the router's account, flags and engines; these limits)
    and the Service <name>-batch over its pods, with a PodDisruptionBudget from 2 replicas.
    Clients send batch work to <name>-batch with the header X-Vllm-Priority: 2 (or the body's
    priority 2), interactive work to <name>; the engines (engine.schedulingPolicy: priority)
    run P0 first. Beyond the limits the batch router answers 429 with Retry-After: 1 at once
    (queueSize 0) while <name> keeps admitting P0. Unset: those objects are removed."""

    replicas: int = Field(
        1,
        ge=1,
        le=100,
        description="Batch router pods; each admits up to these limits, so the batch pool's "
        "total is replicas times them. With 2 or more a PodDisruptionBudget keeps one.",
    )
    max_concurrent_requests: int = Field(
        8,
        ge=1,
        le=1_000_000,
        description="Burst size of one batch router pod's admission bucket "
        "(--max-concurrent-requests): requests it admits at once from a full bucket. A "
        "request takes a token and gives it back when its response starts (a streamed "
        "response: at its first byte). Fixed per pod rather than per engine replica: the "
        "flag lives in the pod template, and following the engine count would roll the "
        "batch routers at every scale step.",
    )
    rate_limit_tokens_per_second: int = Field(
        1,
        ge=1,
        le=1_000_000,
        description="Tokens the bucket regains per second whether or not requests finish "
        "(--rate-limit-tokens-per-second; at least 1, vllm-router reads 0 as 1). A pod admits "
        "maxConcurrentRequests at once, then one request per finished one plus this many per "
        "second, so under T seconds of P2 overload up to maxConcurrentRequests + this x T "
        "requests are in flight per pod (measured with vllm-router 0.1.17: it limits the "
        "rate, not the number in flight). The defaults, 8 and 1/s, keep a minute of overload "
        "under 68 P2 requests in flight per pod, a quarter of the smallest default batch of "
        "one vLLM engine (max_num_seqs 256; 1024 on H100/H200-class GPUs).",
    )
    queue_size: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="Requests one batch router pod holds waiting for a token (--queue-size). "
        "0 (the default): a request beyond the limits is answered 429 with Retry-After: 1 at "
        "once. Above 0, vllm-router 0.1.17 answers a waiting request 408 (no Retry-After) "
        "when no token came within about 1/rateLimitTokensPerSecond seconds, or "
        "queueTimeoutSeconds if shorter (measured), and its queue never fills, so no 429.",
    )
    queue_timeout_seconds: int = Field(
        60,
        ge=1,
        le=3600,
        description="Longest wait in that queue (--queue-timeout-secs); see queueSize.",
    )


class RouterSpec(ApiModel):
    """A router in front of the engines: vllm-router (github.com/vllm-project/router), per
    DeepSeekDeployment a Deployment <name>-router with its own ServiceAccount allowed to watch
    the namespace's pods. It finds the engine pods of the serving colour itself (both colours
    during a stepped transition), routes each request by the policy, retries, breaks circuits,
    checks engines' health, limits concurrency and exports its metrics. While at least one
    router replica is available the Service <name> selects the router pods and the Service
    <name>-engines the engines (what <name> selects without a router); while none is, <name>
    selects the engines directly."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": k8s_extra(
            cel(
                "self.port != self.metricsPort",
                "router.port and router.metricsPort must differ",
                ".metricsPort",
            ),
            cel(
                "self.imagePullSecrets.all(s, self.imagePullSecrets.exists_one(t, "
                "t.name == s.name))",
                "router.imagePullSecrets names must be unique",
                ".imagePullSecrets",
            ),
        )
    }

    enabled: bool = Field(
        False,
        description="Deploy the router and let the Service <name> point at it. Off by default "
        "in v1alpha1: turning it on changes what clients of the Service <name> reach (the "
        "router, no longer the engines), and users who run their own gateway keep the "
        "engines directly. Turning it off points <name> back at the engines and removes the "
        "router's Deployment, ServiceAccount, Role, RoleBinding, budget, PodMonitor and the "
        "Service <name>-engines.",
    )
    replicas: int = Field(
        2,
        ge=1,
        le=100,
        description="Router pods. With more than one, a PodDisruptionBudget keeps one available "
        "through node drains and a new version rolls out one pod at a time without a gap.",
    )
    image: str = Field(
        DEFAULT_ROUTER_IMAGE,
        min_length=1,
        max_length=512,
        description="Router image. The default is the project's router image "
        f"(serving/router/Dockerfile: vllm-router {ROUTER_VERSION} on a slim Python base). The "
        "container runs `vllm-router` with the flags set from these fields; any image with "
        "that command of a compatible release works.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Image pull policy of the router container."
    )
    image_pull_secrets: list[ImagePullSecret] = Field(
        default_factory=list,
        max_length=16,
        description="Secrets with the registry credentials for pulling the router image.",
    )
    resources: RouterResources = Field(
        default_factory=RouterResources, description=RouterResources.__doc__
    )
    policy: RouterPolicy = Field(
        RouterPolicy.CACHE_AWARE,
        description="How the router picks an engine (--policy). cache_aware (the default): the "
        "engine whose recent prompts share the longest prefix with the request, so its prefix "
        "cache is reused, unless the engines' loads drift apart, then the least loaded; "
        "round_robin; random; power_of_two: the less loaded of two random engines; "
        "consistent_hash: a hash of the session (x-session-id or x-user-id header, the "
        "request's `user` field), so a session keeps its engine; sticky_least_loaded: a new "
        "session goes to the engine with fewest sessions and stays there. kv_aware is not "
        "offered: it needs the engines' KV-cache event streams, which the operator does not "
        "wire.",
    )
    retries: RouterRetries = Field(default_factory=RouterRetries, description=RouterRetries.__doc__)
    circuit_breaker: RouterCircuitBreaker = Field(
        default_factory=RouterCircuitBreaker, description=RouterCircuitBreaker.__doc__
    )
    health_check: RouterHealthCheck = Field(
        default_factory=RouterHealthCheck, description=RouterHealthCheck.__doc__
    )
    max_concurrent_requests: int = Field(
        1024,
        ge=1,
        le=1_000_000,
        description="Requests one router pod admits at once (--max-concurrent-requests): the "
        "size of its admission token bucket; a request takes a token and gives it back when "
        "its response starts (a stream: at its first byte), and the bucket also regains "
        "rateLimitTokensPerSecond tokens per second. Beyond it requests wait in the queue or "
        "are refused. vllm-router's default, 32768, admits any flood; 1024 per pod is far "
        "above what the engines behind one DeepSeekDeployment batch, yet bounds what a "
        "runaway client can pile on them at once.",
    )
    queue_size: int = Field(
        256,
        ge=0,
        le=1_000_000,
        description="Requests one router pod holds waiting for a token (--queue-size). 0: no "
        "queue, 429 with Retry-After: 1 as soon as the bucket is empty. Above 0, vllm-router "
        "0.1.17 answers a waiting request 408 (no Retry-After) when no token came within "
        "about 1/rateLimitTokensPerSecond seconds, or queueTimeoutSeconds if shorter; it "
        "takes requests off this queue at once, so the queue never fills and never answers "
        "429 (measured; vllm-router's default: 100).",
    )
    queue_timeout_seconds: int = Field(
        60,
        ge=1,
        le=3600,
        description="Longest wait in that queue; a request still waiting then is answered 408 "
        "(--queue-timeout-secs; vllm-router's default: 60). See queueSize: the refill rate "
        "usually ends the wait first.",
    )
    rate_limit_tokens_per_second: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Rate at which the admission bucket refills besides the tokens finished "
        "requests give back (--rate-limit-tokens-per-second): the sustained admissions per "
        "second of one router pod beyond maxConcurrentRequests. Unset: vllm-router's default, "
        "maxConcurrentRequests per second.",
    )
    port: int = Field(
        8000,
        ge=1024,
        le=65535,
        description="HTTP port of the router (the OpenAI API, /health, /readiness, /liveness); "
        "the Service <name> serves it under the port name http.",
    )
    metrics_port: int = Field(
        29000,
        ge=1024,
        le=65535,
        description="Port of the router's Prometheus metrics (--prometheus-port, /metrics), "
        "scraped by the PodMonitor <name>-router where the Prometheus Operator is installed.",
    )
    batch: RouterBatch | None = Field(
        None,
        description=(RouterBatch.__doc__ or "")
        + " Needs enabled: true and engine.schedulingPolicy: priority.",
    )

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if self.port == self.metrics_port:
            raise ValueError("router.port and router.metricsPort must differ")
        names = [s.name for s in self.image_pull_secrets]
        if len(set(names)) != len(names):
            raise ValueError("router.imagePullSecrets names must be unique")
        return self


class DeepSeekDeploymentSpec(ApiModel):
    """Desired state of a DeepSeek model served by vLLM."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": k8s_extra(
            cel(
                "!has(self.replicas) || (self.replicas >= self.scaling.minReplicas && "
                "self.replicas <= self.scaling.maxReplicas)",
                "replicas must be between scaling.minReplicas and scaling.maxReplicas",
                ".replicas",
            ),
            cel(
                "self.resources.gpusPerReplica % self.engine.pipelineParallelSize == 0 && "
                "self.quantization.ladder.all(r, !has(r.gpusPerReplica) || "
                "r.gpusPerReplica % self.engine.pipelineParallelSize == 0)",
                "GPUs per replica (resources and every quantization rung) must be a multiple of "
                "engine.pipelineParallelSize",
                ".engine.pipelineParallelSize",
            ),
            cel(
                "size(self.regions) == 0 || self.regions.exists_one(r, r.role == 'primary')",
                "regions must have exactly one primary",
                ".regions",
            ),
            cel(
                "!has(self.router.batch) || self.router.enabled",
                ROUTER_BATCH_NEEDS_ROUTER,
                ".router.batch",
            ),
            cel(
                "!has(self.router.batch) || self.engine.schedulingPolicy == 'priority'",
                ROUTER_BATCH_NEEDS_PRIORITY,
                ".router.batch",
            ),
            cel(
                "self.regions.all(r, self.regions.exists_one(s, s.name == r.name))",
                "region names must be unique",
                ".regions",
            ),
            cel(
                "!has(self.failover) || !has(self.failover.dns) || (size(self.regions) > 0 && "
                "self.regions.all(r, has(r.dnsTargets) && size(r.dnsTargets) > 0))",
                "failover.dns needs regions[].dnsTargets in every region (where its record points)",
                ".regions",
            ),
            cel(
                "!has(self.failover) || !has(self.failover.dns) || "
                f"self.regions.all(r, !has(r.dnsTargets) || r.dnsTargets.all(t, {_CEL_IP})) || "
                "self.regions.all(r, !has(r.dnsTargets) || r.dnsTargets.all(t, !" + _CEL_IP + "))",
                "regions[].dnsTargets must be addresses in every region or hostnames in every "
                "region: a CNAME cannot share the failover.dns hostname with A/AAAA records",
                ".regions",
            ),
        )
    }

    replicas: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="Replicas of the active colour. Unset: scaling.minReplicas. With "
        "scaling.enabled the operator writes it (like a HorizontalPodAutoscaler); kubectl "
        "scale works through the scale subresource.",
    )
    model: ModelSpec = Field(description=ModelSpec.__doc__)
    engine: EngineSpec = Field(default_factory=EngineSpec, description=EngineSpec.__doc__)
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description=ResourcesSpec.__doc__
    )
    quantization: QuantizationSpec = Field(
        default_factory=QuantizationSpec, description=QuantizationSpec.__doc__
    )
    scaling: ScalingSpec = Field(default_factory=ScalingSpec, description=ScalingSpec.__doc__)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description=RolloutSpec.__doc__)
    placement: PlacementSpec = Field(
        default_factory=PlacementSpec, description=PlacementSpec.__doc__
    )
    regions: list[RegionSpec] = Field(
        default_factory=list,
        max_length=8,
        description="Member regions. Empty: serve in this cluster only.",
    )
    failover: FailoverSpec = Field(default_factory=FailoverSpec, description=FailoverSpec.__doc__)
    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec, description=MonitoringSpec.__doc__
    )
    router: RouterSpec = Field(default_factory=RouterSpec, description=RouterSpec.__doc__)
    region_record: RegionRecordSpec | None = Field(
        None,
        description="Set by the home region's operator on a member region's copy, with "
        "failover.dns.selfFencing: " + (RegionRecordSpec.__doc__ or "").split(": ", 1)[1],
    )

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        s = self.scaling
        if self.replicas is not None and not (s.min_replicas <= self.replicas <= s.max_replicas):
            raise ValueError("replicas must be between scaling.minReplicas and scaling.maxReplicas")
        pp = self.engine.pipeline_parallel_size
        gpus = [self.resources.gpus_per_replica] + [
            r.gpus_per_replica for r in self.quantization.ladder if r.gpus_per_replica is not None
        ]
        if any(g % pp for g in gpus):
            raise ValueError(
                "GPUs per replica (resources and every quantization rung) must be a multiple of "
                "engine.pipelineParallelSize"
            )
        if self.regions:
            if sum(r.role == "primary" for r in self.regions) != 1:
                raise ValueError("regions must have exactly one primary")
            names = [r.name for r in self.regions]
            if len(set(names)) != len(names):
                raise ValueError("region names must be unique")
        self._dns_cross_field()
        if self.router.batch is not None and not self.router.enabled:
            raise ValueError(ROUTER_BATCH_NEEDS_ROUTER)
        if self.router.batch is not None and self.engine.scheduling_policy != "priority":
            raise ValueError(ROUTER_BATCH_NEEDS_PRIORITY)
        return self

    def _dns_cross_field(self) -> None:
        if self.failover.dns is None:
            return
        if not self.regions or any(not r.dns_targets for r in self.regions):
            raise ValueError(
                "failover.dns needs regions[].dnsTargets in every region (where its record points)"
            )
        cname = {r.name: dns_record_type(r.dns_targets[0]) == "CNAME" for r in self.regions}
        if len(set(cname.values())) > 1:
            raise ValueError(
                "regions[].dnsTargets must be addresses in every region or hostnames in every "
                "region: a CNAME cannot share the failover.dns hostname with A/AAAA records"
            )

    def desired_replicas(self) -> int:
        """spec.replicas, or scaling.minReplicas when unset."""
        return self.replicas if self.replicas is not None else self.scaling.min_replicas

    def gpus_per_replica(self) -> int:
        """GPUs per replica of the current quantization mode."""
        rung = self.quantization.current()
        return rung.gpus_per_replica or self.resources.gpus_per_replica
