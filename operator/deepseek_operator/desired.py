"""Spec + plan -> the Kubernetes objects a DeepSeekDeployment should own. Pure: no I/O, no clock.

The reconciler decides a `Plan` (which colour serves, which spec each colour runs, how many
replicas each gets); this module turns it into objects. Applying the same plan twice yields
byte-identical objects, which is what makes a repeated server-side apply a no-op.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import labels as L
from .api.base import API_VERSION, KIND
from .api.resource import DeepSeekDeployment
from .api.spec import (
    AdmissionSpec,
    DeepSeekDeploymentSpec,
    KVCacheDtype,
    PlacementSpec,
    QuantizationMethod,
    QuantizationRung,
    RouterSpec,
    WeightPrecision,
)
from .api.status import Colour

Obj = dict[str, Any]

MODEL_CACHE_VOLUME = "model-cache"
SHM_VOLUME = "dshm"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
ZONE_LABEL = "topology.kubernetes.io/zone"
PROBE_PERIOD_SECONDS = 10
RUNBOOK_BASE = "https://github.com/deepseek-operator/deepseek-operator/blob/main/docs/runbooks"
# The preStop `sleep` action (PodLifecycleSleepAction) is beta and on by default from 1.30; a
# 1.29 API server rejects it. Below, the engine image's own `sleep` binary does the same.
SLEEP_ACTION_SINCE = (1, 30)
_KUBE_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+].*)?$")


def parse_kube_version(git_version: str) -> tuple[int, int] | None:
    """(major, minor) of an API server's `gitVersion` ("v1.30.0-gke.1", "v1.31.2+k3s1");
    None when it is not a version."""
    m = _KUBE_VERSION.match(git_version.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def supports_sleep_action(git_version: str) -> bool:
    """Whether engine pods may use the preStop `sleep` action; an unknown version gets the
    `exec sleep` form, which every supported version accepts."""
    version = parse_kube_version(git_version)
    return version is not None and version >= SLEEP_ACTION_SINCE


def pre_stop(seconds: int, sleep_action: bool) -> Obj:
    """The engine's preStop handler: wait `seconds` before SIGTERM."""
    if sleep_action:
        return {"sleep": {"seconds": seconds}}
    return {"exec": {"command": ["sleep", str(seconds)]}}


@dataclass(frozen=True)
class MonitoringSettings:
    """Operator-wide settings of the monitoring objects (`deepseek-operator run` flags)."""

    # --monitor-label: e.g. {"release": "kube-prometheus-stack"}, the label a
    # kube-prometheus-stack Prometheus selects PodMonitors and PrometheusRules by.
    labels: Mapping[str, str] = field(default_factory=dict)
    runbook_base_url: str = RUNBOOK_BASE  # --runbook-base-url


@dataclass(frozen=True)
class ColourPlan:
    """What one colour's engine Deployment should run."""

    colour: Colour
    spec: DeepSeekDeploymentSpec  # the spec its pod template is rendered from
    replicas: int


@dataclass(frozen=True)
class Plan:
    """The reconciler's decision, to be rendered into objects."""

    active_colour: Colour  # the colour the stable Service selects
    # Engine Deployments to render from a spec. A colour that must keep the pod template it
    # already runs (the serving colour during a rollout) is absent: it is only scaled.
    deployments: tuple[ColourPlan, ...] = ()
    monitoring_crds: bool = False  # monitoring.coreos.com PodMonitor/PrometheusRule exist
    # The API server accepts the preStop `sleep` action (1.30+); else `exec: sleep N`.
    sleep_action: bool = True
    # A stepped transition: the stable Service selects both colours' Ready pods, so capacity
    # moves from one to the other without a switch.
    mixed: bool = False
    # spec.router.enabled and at least one router replica available: the stable Service
    # selects the router pods. Until one is (the router starting) or while none is, it keeps
    # selecting the engines, so turning the router on never leaves clients without endpoints.
    router_available: bool = False


@dataclass(frozen=True)
class DesiredState:
    """Objects to server-side apply, in order."""

    objects: list[Obj] = field(default_factory=list)

    def by_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        for o in self.objects:
            if o["kind"] == kind and o["metadata"]["name"] == name:
                return o
        raise KeyError(f"{kind}/{name}")


# ---------------------------------------------------------------------------------------------
# Names


def deployment_name(dsd_name: str, colour: Colour | str) -> str:
    return f"{dsd_name}-{Colour(colour).value}"


def stable_service_name(dsd_name: str) -> str:
    return dsd_name


def preview_service_name(dsd_name: str) -> str:
    return f"{dsd_name}-preview"


def engines_service_name(dsd_name: str) -> str:
    """The Service over the serving engines while a router fronts them (spec.router)."""
    return f"{dsd_name}-engines"


def router_name(dsd_name: str) -> str:
    """Name of the router's Deployment, ServiceAccount, Role, RoleBinding, budget, PodMonitor."""
    return f"{dsd_name}-router"


def router_batch_name(dsd_name: str) -> str:
    """Name of the batch router pool's Deployment and budget (spec.router.batch)."""
    return f"{dsd_name}-router-batch"


def batch_service_name(dsd_name: str) -> str:
    """The Service batch clients call (spec.router.batch): the batch router pods."""
    return f"{dsd_name}-batch"


# ---------------------------------------------------------------------------------------------
# vLLM arguments


def quantization_args(rung: QuantizationRung) -> list[str]:
    """vLLM flags for one rung (checked against vllm-0.32-serve-help.txt in the unit tests).

    bf16 pins --dtype bfloat16. fp8 uses --quantization fp8 (online dynamic FP8 for a bf16
    checkpoint; vLLM also accepts it for FP8-serialized checkpoints such as DeepSeek-R1's).
    int4 names no method unless the rung does: vLLM reads the pre-quantized checkpoint's
    quantization_config (AWQ/GPTQ) and picks its Marlin kernels itself.
    """
    args: list[str] = []
    method: QuantizationMethod | None = rung.method
    if rung.weights is WeightPrecision.BF16:
        args += ["--dtype", "bfloat16"]
    elif rung.weights is WeightPrecision.FP8 and method is None:
        method = QuantizationMethod.FP8
    if method is not None:
        args += ["--quantization", method.value]
    if rung.kv_cache_dtype is not KVCacheDtype.AUTO:
        args += ["--kv-cache-dtype", rung.kv_cache_dtype.value]
    return args


def vllm_args(dsd_name: str, spec: DeepSeekDeploymentSpec) -> list[str]:
    """The engine container's arguments (the vLLM OpenAI server's flags)."""
    rung = spec.quantization.current()
    gpus = rung.gpus_per_replica or spec.resources.gpus_per_replica
    pp = spec.engine.pipeline_parallel_size
    checkpoint = rung.checkpoint or spec.model.checkpoint
    args = [
        "--model",
        checkpoint,
        "--served-model-name",
        spec.model.served_name or dsd_name,
        "--host",
        "0.0.0.0",
        "--port",
        str(spec.engine.port),
        "--tensor-parallel-size",
        str(gpus // pp),
    ]
    if pp > 1:
        args += ["--pipeline-parallel-size", str(pp)]
    if spec.engine.expert_parallel:
        args += ["--enable-expert-parallel"]
    args += ["--gpu-memory-utilization", f"{spec.engine.gpu_memory_utilization:g}"]
    if spec.model.max_model_len is not None:
        args += ["--max-model-len", str(spec.model.max_model_len)]
    if spec.model.revision is not None and rung.checkpoint is None:
        args += ["--revision", spec.model.revision]
    if spec.model.trust_remote_code:
        args += ["--trust-remote-code"]
    if spec.model.cache is not None:
        args += ["--download-dir", spec.model.cache.mount_path]
    args += quantization_args(rung)
    if spec.engine.scheduling_policy != "fcfs":
        # fcfs is vLLM's default: no flag, so engines rendered before the field existed keep
        # their template hash (no rollout on upgrading the operator).
        args += ["--scheduling-policy", spec.engine.scheduling_policy]
    # vLLM waits this long for in-flight requests after SIGTERM (0 would abort them).
    args += ["--shutdown-timeout", str(spec.engine.drain.timeout_seconds)]
    args += list(spec.engine.extra_args)
    return args


# ---------------------------------------------------------------------------------------------
# Objects


def _meta(dsd: DeepSeekDeployment, name: str, extra_labels: dict[str, str] | None = None) -> Obj:
    labels = {
        L.NAME: L.NAME_VALUE,
        L.INSTANCE: dsd.name,
        L.MANAGED_BY: L.MANAGED_BY_VALUE,
        L.DEPLOYMENT: dsd.name,
    }
    labels.update(extra_labels or {})
    meta: Obj = {"name": name, "namespace": dsd.namespace, "labels": labels}
    if dsd.metadata.uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": dsd.name,
                "uid": dsd.metadata.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return meta


def termination_grace_seconds(spec: DeepSeekDeploymentSpec) -> int:
    d = spec.engine.drain
    return d.pre_stop_delay_seconds + d.timeout_seconds + 15


def pod_template(
    dsd_name: str, colour: Colour, spec: DeepSeekDeploymentSpec, sleep_action: bool = True
) -> Obj:
    """The engine pod template for one colour, labelled with its template hash."""
    template = _pod_template(dsd_name, colour, spec, sleep_action)
    template["metadata"]["labels"][L.TEMPLATE_HASH] = template_hash(dsd_name, spec, sleep_action)
    return template


def template_hash(dsd_name: str, spec: DeepSeekDeploymentSpec, sleep_action: bool = True) -> str:
    """Hash of the engine pod template, colour aside.

    Two specs with the same hash run identical pods, so only a hash change needs a rollout;
    replica, scaling and rollout-setting changes never alter it. The preStop form is part of
    the pod, so an operator that starts against an API server on the other side of 1.30 rolls
    each resource once (blue-green, no request dropped).
    """
    body = _pod_template(dsd_name, Colour.BLUE, spec, sleep_action)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return digest[:10]


# The taints the node lifecycle controller puts on a node whose kubelet stopped reporting
# (Ready Unknown: unreachable; Ready False: not-ready). Without a toleration of its own the API
# server gives a pod 300 s of each (DefaultTolerationSeconds).
NODE_FAILURE_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def engine_tolerations(placement: PlacementSpec) -> list[Obj]:
    """The user's tolerations, then, where placement.nodeNotReadyTolerationSeconds is set, a
    NoExecute toleration of that many seconds for each node-failure taint the user's do not
    cover already (a toleration naming that key or every key, for NoExecute or every effect).
    Unset adds nothing, so the pods of resources made before the field existed are unchanged."""
    own = [t.to_k8s() for t in placement.tolerations]

    def covered(key: str) -> bool:
        return any(
            (t.key == key or (t.key is None and t.operator == "Exists"))
            and t.effect in ("NoExecute", None)
            for t in placement.tolerations
        )

    seconds = placement.node_not_ready_toleration_seconds
    if seconds is None:
        return own
    return own + [
        {
            "key": key,
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": seconds,
        }
        for key in NODE_FAILURE_TAINTS
        if not covered(key)
    ]


ADMISSION_VOLUME = "admission"
ADMISSION_DIR = "/etc/deepseek/admission"
ADMISSION_KEY = "maxRunning"


def admission_config_map_name(dsd_name: str) -> str:
    """The ConfigMap the operator publishes a learned admission limit in."""
    return f"{dsd_name}-admission"


def admission_env(admission: AdmissionSpec, ttft_slo_seconds: float) -> list[Obj]:
    """The engine entrypoint's variables for spec.engine.admission (its gate in the pod): a
    fixed limit, or the file of the mounted ConfigMap that holds the learned one; the wait
    defaults to the TTFT SLO."""
    wait = admission.max_wait_seconds
    limit = (
        {"name": "DEEPSEEK_ADMISSION_MAX_RUNNING", "value": str(admission.max_running)}
        if admission.max_running is not None
        else {"name": "DEEPSEEK_ADMISSION_LIMIT_FILE", "value": f"{ADMISSION_DIR}/{ADMISSION_KEY}"}
    )
    return [
        limit,
        {
            "name": "DEEPSEEK_ADMISSION_MAX_WAIT",
            "value": f"{ttft_slo_seconds if wait is None else wait:g}",
        },
    ]


def admission_config_map(dsd: DeepSeekDeployment, limit: int | None) -> Obj:
    """The learned admission limit for the engine pods' gate (empty: none learned yet). Owned
    by the DeepSeekDeployment: the garbage collector removes it with it."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(dsd, admission_config_map_name(dsd.name)),
        "data": {ADMISSION_KEY: "" if limit is None else str(limit)},
    }


def _pod_template(
    dsd_name: str, colour: Colour, spec: DeepSeekDeploymentSpec, sleep_action: bool
) -> Obj:
    rung = spec.quantization.current()
    gpus = rung.gpus_per_replica or spec.resources.gpus_per_replica
    res = spec.resources
    eng = spec.engine

    env: list[Obj] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
    ]
    if eng.admission is not None:
        env += admission_env(eng.admission, spec.scaling.slo.ttft_p99_seconds)
    volumes: list[Obj] = [
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": res.shared_memory}}
    ]
    mounts: list[Obj] = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]
    if eng.admission is not None and eng.admission.max_running is None:
        # optional: the pods start before the operator has published it (no limit until then)
        volumes.append(
            {
                "name": ADMISSION_VOLUME,
                "configMap": {"name": admission_config_map_name(dsd_name), "optional": True},
            }
        )
        mounts.append({"name": ADMISSION_VOLUME, "mountPath": ADMISSION_DIR, "readOnly": True})
    cache = spec.model.cache
    if cache is not None:
        env.append({"name": "HF_HOME", "value": cache.mount_path})
        mounts.append({"name": MODEL_CACHE_VOLUME, "mountPath": cache.mount_path})
        if cache.persistent_volume_claim is not None:
            volumes.append(
                {
                    "name": MODEL_CACHE_VOLUME,
                    "persistentVolumeClaim": {"claimName": cache.persistent_volume_claim},
                }
            )
        else:
            volumes.append(
                {
                    "name": MODEL_CACHE_VOLUME,
                    "hostPath": {"path": cache.host_path, "type": "Directory"},
                }
            )
    # The user's entries come last and replace the operator's of the same name (the env of a
    # Deployment is a map keyed by name: a duplicate would fail the server-side apply).
    own = {e.name for e in eng.env}
    env = [e for e in env if e["name"] not in own] + [e.to_k8s() for e in eng.env]

    probe = {"httpGet": {"path": "/health", "port": L.ENGINE_PORT_NAME}}
    container: Obj = {
        "name": L.ENGINE_CONTAINER,
        "image": eng.image,
        "imagePullPolicy": eng.image_pull_policy,
        "args": vllm_args(dsd_name, spec),
        "ports": [{"name": L.ENGINE_PORT_NAME, "containerPort": eng.port, "protocol": "TCP"}],
        "env": env,
        "resources": {
            "requests": {"cpu": res.cpu, "memory": res.memory, GPU_RESOURCE: str(gpus)},
            "limits": {"cpu": res.cpu, "memory": res.memory, GPU_RESOURCE: str(gpus)},
        },
        "volumeMounts": mounts,
        # Model loading takes minutes: the startup probe holds liveness/readiness off until then.
        "startupProbe": {
            **probe,
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "failureThreshold": max(1, eng.startup_timeout_seconds // PROBE_PERIOD_SECONDS),
            "timeoutSeconds": 5,
        },
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3, "timeoutSeconds": 5},
        "livenessProbe": {
            **probe,
            "periodSeconds": 15,
            "failureThreshold": 4,
            "timeoutSeconds": 10,
        },
    }
    if eng.drain.pre_stop_delay_seconds > 0:
        # Keep serving while endpoints and load balancers forget this pod; then SIGTERM makes
        # vLLM finish in-flight requests (--shutdown-timeout) before it exits.
        container["lifecycle"] = {
            "preStop": pre_stop(eng.drain.pre_stop_delay_seconds, sleep_action)
        }

    node_selector = dict(spec.placement.node_selector)
    if res.gpu_product:
        node_selector[GPU_PRODUCT_LABEL] = res.gpu_product

    pod_labels = {
        **spec.engine.pod_labels,
        L.NAME: L.NAME_VALUE,
        L.INSTANCE: dsd_name,
        L.MANAGED_BY: L.MANAGED_BY_VALUE,
        L.COMPONENT: L.ENGINE_COMPONENT,
        L.DEPLOYMENT: dsd_name,
        L.COLOUR: colour.value,
        L.MODE: rung.name,
    }
    pod_spec: Obj = {
        "containers": [container],
        "volumes": volumes,
        "terminationGracePeriodSeconds": termination_grace_seconds(spec),
        "tolerations": engine_tolerations(spec.placement),
        "topologySpreadConstraints": [
            {
                "maxSkew": spec.placement.max_skew,
                "topologyKey": ZONE_LABEL,
                "whenUnsatisfiable": spec.placement.when_unsatisfiable,
                "labelSelector": {"matchLabels": L.engine_selector(dsd_name, colour.value)},
            }
        ],
        "enableServiceLinks": False,
    }
    if node_selector:
        pod_spec["nodeSelector"] = dict(sorted(node_selector.items()))
    if spec.placement.zones:
        pod_spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": ZONE_LABEL,
                                    "operator": "In",
                                    "values": list(spec.placement.zones),
                                }
                            ]
                        }
                    ]
                }
            }
        }
    if spec.placement.priority_class_name:
        pod_spec["priorityClassName"] = spec.placement.priority_class_name
    if eng.service_account_name:
        pod_spec["serviceAccountName"] = eng.service_account_name
    if eng.runtime_class_name:
        pod_spec["runtimeClassName"] = eng.runtime_class_name
    if eng.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [s.to_k8s() for s in eng.image_pull_secrets]

    meta: Obj = {"labels": pod_labels}
    if spec.engine.pod_annotations:
        meta["annotations"] = dict(sorted(spec.engine.pod_annotations.items()))
    return {"metadata": meta, "spec": pod_spec}


def engine_deployment(dsd: DeepSeekDeployment, plan: ColourPlan, sleep_action: bool = True) -> Obj:
    name = deployment_name(dsd.name, plan.colour)
    template = pod_template(dsd.name, plan.colour, plan.spec, sleep_action)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(
            dsd,
            name,
            {
                L.COMPONENT: L.ENGINE_COMPONENT,
                L.COLOUR: plan.colour.value,
                L.MODE: template["metadata"]["labels"][L.MODE],
                L.TEMPLATE_HASH: template["metadata"]["labels"][L.TEMPLATE_HASH],
            },
        ),
        "spec": {
            "replicas": plan.replicas,
            "selector": {"matchLabels": L.engine_selector(dsd.name, plan.colour.value)},
            # A colour's template only changes while it takes no traffic (rollouts switch
            # colours), so Recreate never drops a request and needs no spare GPU node.
            "strategy": {"type": "Recreate"},
            "revisionHistoryLimit": 2,
            "progressDeadlineSeconds": plan.spec.engine.startup_timeout_seconds + 600,
            "template": template,
        },
    }


def _service(dsd: DeepSeekDeployment, name: str, colour: Colour | None, role: str) -> Obj:
    """A ClusterIP Service over the engine pods of one colour (None: of both)."""
    port = dsd.spec.engine.port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(dsd, name, {L.COMPONENT: f"{role}-service"}),
        "spec": {
            "type": "ClusterIP",
            "selector": L.engine_selector(dsd.name, colour.value if colour else None),
            "ports": [
                {
                    "name": L.ENGINE_PORT_NAME,
                    "port": port,
                    "targetPort": L.ENGINE_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def pod_disruption_budget(dsd: DeepSeekDeployment) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(dsd, dsd.name),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": L.engine_selector(dsd.name)},
        },
    }


def monitoring_meta(dsd: DeepSeekDeployment, settings: MonitoringSettings) -> Obj:
    """Metadata of the PodMonitor and PrometheusRule: the operator-wide labels, then the
    resource's spec.monitoring.labels over them, then the operator's own labels over both (its
    selectors and ownership must not be overridden)."""
    meta = _meta(dsd, dsd.name)
    meta["labels"] = {**settings.labels, **dsd.spec.monitoring.labels, **meta["labels"]}
    return meta


def pod_monitor(dsd: DeepSeekDeployment, settings: MonitoringSettings | None = None) -> Obj:
    """Scrape config for prometheus-operator, with the labels the operator's PromQL groups by."""

    def relabel(source: str, target: str) -> Obj:
        return {
            "sourceLabels": [f"__meta_kubernetes_pod_label_{_prom_label(source)}"],
            "targetLabel": target,
        }

    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": monitoring_meta(dsd, settings or MonitoringSettings()),
        "spec": {
            "selector": {"matchLabels": L.engine_selector(dsd.name)},
            "podMetricsEndpoints": [
                {
                    "port": L.ENGINE_PORT_NAME,
                    "path": "/metrics",
                    "interval": "15s",
                    "relabelings": [
                        relabel(L.DEPLOYMENT, L.PROM_DSD),
                        relabel(L.COLOUR, L.PROM_COLOUR),
                        relabel(L.MODE, "mode"),
                    ],
                }
            ],
        },
    }


def _prom_label(k8s_label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in k8s_label)


# A recording rule of the chart's PrometheusRule (dashboards/rules.py, error_ratio("5m")). Where
# it exists the chart's DeepSeekErrorBudgetBurn pages for this deployment's errors, so the
# per-deployment error alert stays silent: one page per symptom (docs/runbooks).
FLEET_ERROR_RATIO = "namespace_dsd:vllm_http_requests_errors:ratio_rate5m"


def prometheus_rule(dsd: DeepSeekDeployment, settings: MonitoringSettings | None = None) -> Obj:
    """This deployment's own SLO alerts, with its thresholds baked in."""
    settings = settings or MonitoringSettings()
    runbooks = settings.runbook_base_url.rstrip("/")
    slo = dsd.spec.scaling.slo
    sel = f'namespace="{dsd.namespace}",dsd="{dsd.name}"'
    ttft = (
        "histogram_quantile(0.99, sum by (namespace, dsd, le) "
        f"(rate(vllm:time_to_first_token_seconds_bucket{{{sel}}}[5m])))"
    )
    errors = (
        f'sum(rate(http_requests_total{{{sel},status="5xx"}}[5m])) / '
        f"sum(rate(http_requests_total{{{sel}}}[5m]))"
    )

    def alert(name: str, expr: str, summary: str, severity: str) -> Obj:
        return {
            "alert": name,
            "expr": expr,
            "for": "10m",
            "labels": {"severity": severity, "namespace": dsd.namespace, "dsd": dsd.name},
            "annotations": {
                "summary": summary,
                "description": f"DeepSeekDeployment {dsd.namespace}/{dsd.name}: {summary}.",
                "runbook_url": f"{runbooks}/{name}.md",
            },
        }

    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": monitoring_meta(dsd, settings),
        "spec": {
            "groups": [
                {
                    "name": f"deepseek-{dsd.namespace}-{dsd.name}",
                    "rules": [
                        alert(
                            "DeepSeekDeploymentTTFTAboveSLO",
                            f"{ttft} > {slo.ttft_p99_seconds:g}",
                            f"TTFT p99 above its SLO of {slo.ttft_p99_seconds:g}s",
                            "warning",
                        ),
                        alert(
                            "DeepSeekDeploymentErrorsAboveSLO",
                            f"{errors} > {slo.max_error_rate:g}\n"
                            f"unless on () {FLEET_ERROR_RATIO}{{{sel}}}",
                            f"error rate above its SLO of {slo.max_error_rate:g}",
                            "critical",
                        ),
                    ],
                }
            ]
        },
    }


# ---------------------------------------------------------------------------------------------
# The router (spec.router): vllm-router in front of the engines

ROUTER_COMMAND = "vllm-router"
# The router image's user (serving/router/Dockerfile): any image works as this non-root user.
ROUTER_UID = 10001
ROUTER_READINESS_PATH = "/readiness"  # 503 until the router knows a healthy engine
ROUTER_LIVENESS_PATH = "/liveness"  # 200 while the process answers
HOSTNAME_LABEL = "kubernetes.io/hostname"


@dataclass(frozen=True)
class RouterPool:
    """One router Deployment: the main pool (spec.router, behind the Service <name>) or the
    batch pool (spec.router.batch, behind <name>-batch). Both run the same flags but these:
    their name, their pods' component label and their admission limits."""

    name: str  # the Deployment's (and budget's) name
    component: str  # its pods' app.kubernetes.io/component
    replicas: int
    max_concurrent_requests: int
    queue_size: int
    queue_timeout_seconds: int
    rate_limit_tokens_per_second: int | None

    def selector(self, dsd_name: str) -> dict[str, str]:
        return {L.DEPLOYMENT: dsd_name, L.COMPONENT: self.component}


def main_router_pool(dsd: DeepSeekDeployment) -> RouterPool:
    r = dsd.spec.router
    return RouterPool(
        name=router_name(dsd.name),
        component=L.ROUTER_COMPONENT,
        replicas=r.replicas,
        max_concurrent_requests=r.max_concurrent_requests,
        queue_size=r.queue_size,
        queue_timeout_seconds=r.queue_timeout_seconds,
        rate_limit_tokens_per_second=r.rate_limit_tokens_per_second,
    )


def batch_router_pool(dsd: DeepSeekDeployment) -> RouterPool | None:
    """The batch pool, while spec.router.batch is set (and the router on)."""
    b = dsd.spec.router.batch
    if b is None or not dsd.spec.router.enabled:
        return None
    return RouterPool(
        name=router_batch_name(dsd.name),
        component=L.ROUTER_BATCH_COMPONENT,
        replicas=b.replicas,
        max_concurrent_requests=b.max_concurrent_requests,
        queue_size=b.queue_size,
        queue_timeout_seconds=b.queue_timeout_seconds,
        rate_limit_tokens_per_second=b.rate_limit_tokens_per_second,
    )


def router_engine_selector(dsd_name: str, plan: Plan) -> dict[str, str]:
    """The engine pods the router discovers: what the stable Service selects without a router
    (the serving colour; both colours during a stepped transition)."""
    return L.engine_selector(dsd_name, None if plan.mixed else plan.active_colour.value)


def router_args(dsd: DeepSeekDeployment, plan: Plan, pool: RouterPool | None = None) -> list[str]:
    """The router container's arguments (vllm-router's flags; the unit tests parse them with
    vllm-router's own parser). Its pods watch the namespace's pods and add every Running and
    Ready one carrying all the selector's labels as http://<pod IP>:<engine port>. The pool
    (the main one by default) sets the admission limits."""
    r = dsd.spec.router
    pool = pool or main_router_pool(dsd)
    engines = router_engine_selector(dsd.name, plan)
    selector = [f"{L.COMPONENT}={engines[L.COMPONENT]}", f"{L.DEPLOYMENT}={dsd.name}"]
    if L.COLOUR in engines:
        selector.append(f"{L.COLOUR}={engines[L.COLOUR]}")
    args = ["--host", "0.0.0.0", "--port", str(r.port)]
    args += ["--service-discovery", "--selector", *selector]
    args += ["--service-discovery-port", str(dsd.spec.engine.port)]
    args += ["--service-discovery-namespace", dsd.namespace]
    args += ["--prometheus-port", str(r.metrics_port), "--prometheus-host", "0.0.0.0"]
    args += ["--policy", r.policy.value]
    rt = r.retries
    args += [
        # vllm-router's --retry-max-retries is the number of attempts, the first included.
        "--retry-max-retries",
        str(rt.max_retries + 1),
        "--retry-initial-backoff-ms",
        str(rt.initial_backoff_ms),
        "--retry-max-backoff-ms",
        str(rt.max_backoff_ms),
        "--retry-backoff-multiplier",
        f"{rt.backoff_multiplier:g}",
        "--retry-jitter-factor",
        f"{rt.jitter_factor:g}",
    ]
    cb = r.circuit_breaker
    if cb.enabled:
        args += [
            "--cb-failure-threshold",
            str(cb.failure_threshold),
            "--cb-success-threshold",
            str(cb.success_threshold),
            "--cb-timeout-duration-secs",
            str(cb.timeout_seconds),
            "--cb-window-duration-secs",
            str(cb.window_seconds),
        ]
    else:
        args += ["--disable-circuit-breaker"]
    hc = r.health_check
    args += [
        "--health-failure-threshold",
        str(hc.failure_threshold),
        "--health-success-threshold",
        str(hc.success_threshold),
        "--health-check-timeout-secs",
        str(hc.timeout_seconds),
        "--health-check-interval-secs",
        str(hc.interval_seconds),
        "--health-check-endpoint",
        hc.endpoint,
    ]
    args += ["--max-concurrent-requests", str(pool.max_concurrent_requests)]
    args += ["--queue-size", str(pool.queue_size)]
    args += ["--queue-timeout-secs", str(pool.queue_timeout_seconds)]
    if pool.rate_limit_tokens_per_second is not None:
        args += ["--rate-limit-tokens-per-second", str(pool.rate_limit_tokens_per_second)]
    return args


def router_termination_grace_seconds(spec: DeepSeekDeploymentSpec) -> int:
    """A router pod that stops finishes the streams it proxies (vllm-router shuts down
    gracefully on SIGTERM): they last as long as the engines' own, so it gets the engines'
    grace period."""
    return termination_grace_seconds(spec)


def _router_labels(dsd: DeepSeekDeployment, pool: RouterPool) -> dict[str, str]:
    return {
        L.NAME: L.NAME_VALUE,
        L.INSTANCE: dsd.name,
        L.MANAGED_BY: L.MANAGED_BY_VALUE,
        **pool.selector(dsd.name),
    }


def router_pod_template(dsd: DeepSeekDeployment, plan: Plan, pool: RouterPool | None = None) -> Obj:
    r: RouterSpec = dsd.spec.router
    pool = pool or main_router_pool(dsd)
    drain = dsd.spec.engine.drain

    def probe(path: str, **timing: int) -> Obj:
        return {"httpGet": {"path": path, "port": L.ROUTER_PORT_NAME}, **timing}

    container: Obj = {
        "name": L.ROUTER_CONTAINER,
        "image": r.image,
        "imagePullPolicy": r.image_pull_policy,
        "command": [ROUTER_COMMAND],
        "args": router_args(dsd, plan, pool),
        "ports": [
            {"name": L.ROUTER_PORT_NAME, "containerPort": r.port, "protocol": "TCP"},
            {
                "name": L.ROUTER_METRICS_PORT_NAME,
                "containerPort": r.metrics_port,
                "protocol": "TCP",
            },
        ],
        "resources": {
            "requests": {"cpu": r.resources.cpu, "memory": r.resources.memory},
            "limits": {"cpu": r.resources.cpu, "memory": r.resources.memory},
        },
        # Ready once it knows a healthy engine (a new pod of a rolling update takes no traffic
        # before it has discovered the serving colour); alive while it answers at all.
        "startupProbe": probe(
            ROUTER_LIVENESS_PATH, periodSeconds=2, failureThreshold=30, timeoutSeconds=2
        ),
        "readinessProbe": probe(
            ROUTER_READINESS_PATH, periodSeconds=5, failureThreshold=2, timeoutSeconds=3
        ),
        "livenessProbe": probe(
            ROUTER_LIVENESS_PATH, periodSeconds=10, failureThreshold=6, timeoutSeconds=5
        ),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": ROUTER_UID,
            "runAsGroup": ROUTER_UID,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if drain.pre_stop_delay_seconds > 0:
        # As the engines': keep serving while the Service's endpoints forget this pod.
        container["lifecycle"] = {
            "preStop": pre_stop(drain.pre_stop_delay_seconds, plan.sleep_action)
        }

    def spread(key: str) -> Obj:
        return {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": pool.selector(dsd.name)},
        }

    pod_spec: Obj = {
        "serviceAccountName": router_name(dsd.name),
        # The router's service discovery reads the pods with this account's token.
        "automountServiceAccountToken": True,
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        "terminationGracePeriodSeconds": router_termination_grace_seconds(dsd.spec),
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "topologySpreadConstraints": [spread(ZONE_LABEL), spread(HOSTNAME_LABEL)],
        "enableServiceLinks": False,
    }
    if r.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [s.to_k8s() for s in r.image_pull_secrets]
    return {"metadata": {"labels": _router_labels(dsd, pool)}, "spec": pod_spec}


def router_deployment(dsd: DeepSeekDeployment, plan: Plan, pool: RouterPool | None = None) -> Obj:
    """The router pods. Their template names the colour they discover, so a promotion rolls
    them: one new pod at a time, each Ready (it found the new colour) before an old one goes."""
    pool = pool or main_router_pool(dsd)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(dsd, pool.name, {L.COMPONENT: pool.component}),
        "spec": {
            "replicas": pool.replicas,
            "selector": {"matchLabels": pool.selector(dsd.name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "revisionHistoryLimit": 2,
            "template": router_pod_template(dsd, plan, pool),
        },
    }


def router_service_account(dsd: DeepSeekDeployment) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(dsd, router_name(dsd.name), {L.COMPONENT: L.ROUTER_COMPONENT}),
    }


def router_role(dsd: DeepSeekDeployment) -> Obj:
    """What the router's service discovery does: watch the pods of this namespace only."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(dsd, router_name(dsd.name), {L.COMPONENT: L.ROUTER_COMPONENT}),
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    }


def router_role_binding(dsd: DeepSeekDeployment) -> Obj:
    name = router_name(dsd.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(dsd, name, {L.COMPONENT: L.ROUTER_COMPONENT}),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": dsd.namespace}],
    }


def router_disruption_budget(dsd: DeepSeekDeployment, pool: RouterPool | None = None) -> Obj:
    """One router pod stays through voluntary disruptions; a pod that is not Ready (no healthy
    engine to route to) may always be evicted, so it never blocks a node drain."""
    pool = pool or main_router_pool(dsd)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(dsd, pool.name, {L.COMPONENT: pool.component}),
        "spec": {
            "minAvailable": 1,
            "selector": {"matchLabels": pool.selector(dsd.name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def router_pod_monitor(dsd: DeepSeekDeployment, settings: MonitoringSettings | None = None) -> Obj:
    """Scrape config of the router's metrics port, its series labelled with the resource (dsd)
    and the pool (component: router or router-batch), as the dashboards and alerts group them."""
    meta = monitoring_meta(dsd, settings or MonitoringSettings())
    meta["name"] = router_name(dsd.name)
    meta["labels"][L.COMPONENT] = L.ROUTER_COMPONENT
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": meta,
        "spec": {
            "selector": _router_pods_selector(dsd),
            "podMetricsEndpoints": [
                {
                    "port": L.ROUTER_METRICS_PORT_NAME,
                    "path": "/metrics",
                    "interval": "15s",
                    "relabelings": [
                        {
                            "sourceLabels": [f"__meta_kubernetes_pod_label_{_prom_label(label)}"],
                            "targetLabel": target,
                        }
                        for label, target in (
                            (L.DEPLOYMENT, L.PROM_DSD),
                            (L.COMPONENT, L.PROM_COMPONENT),
                        )
                    ],
                }
            ],
        },
    }


def _router_pods_selector(dsd: DeepSeekDeployment) -> Obj:
    """The router pods of both pools (the batch pool's while spec.router.batch is set)."""
    if batch_router_pool(dsd) is None:
        return {"matchLabels": L.router_selector(dsd.name)}
    return {
        "matchLabels": {L.DEPLOYMENT: dsd.name},
        "matchExpressions": [
            {
                "key": L.COMPONENT,
                "operator": "In",
                "values": [L.ROUTER_COMPONENT, L.ROUTER_BATCH_COMPONENT],
            }
        ],
    }


def batch_service(dsd: DeepSeekDeployment) -> Obj:
    """The Service batch clients call: the batch router pods, always (a batch pool with no
    pod available leaves it without endpoints rather than letting P2 past its limits)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(dsd, batch_service_name(dsd.name), {L.COMPONENT: "batch-service"}),
        "spec": {
            "type": "ClusterIP",
            "selector": L.router_batch_selector(dsd.name),
            "ports": [
                {
                    "name": L.ROUTER_PORT_NAME,
                    "port": dsd.spec.router.port,
                    "targetPort": L.ROUTER_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def router_service(dsd: DeepSeekDeployment) -> Obj:
    """The stable Service over the router pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(dsd, stable_service_name(dsd.name), {L.COMPONENT: "stable-service"}),
        "spec": {
            "type": "ClusterIP",
            "selector": L.router_selector(dsd.name),
            "ports": [
                {
                    "name": L.ROUTER_PORT_NAME,
                    "port": dsd.spec.router.port,
                    "targetPort": L.ROUTER_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def router_objects(
    dsd: DeepSeekDeployment, plan: Plan, monitoring: MonitoringSettings | None = None
) -> list[Obj]:
    """The router's own objects (spec.router.enabled): its account and the Role letting it
    watch pods before the Deployment that uses them, then its budget and PodMonitor."""
    objs = [
        router_service_account(dsd),
        router_role(dsd),
        router_role_binding(dsd),
        router_deployment(dsd, plan),
    ]
    if dsd.spec.router.replicas > 1:
        objs.append(router_disruption_budget(dsd))
    if (batch := batch_router_pool(dsd)) is not None:
        objs.append(router_deployment(dsd, plan, batch))
        if batch.replicas > 1:
            objs.append(router_disruption_budget(dsd, batch))
        objs.append(batch_service(dsd))
    if plan.monitoring_crds and dsd.spec.monitoring.pod_monitor_enabled:
        objs.append(router_pod_monitor(dsd, monitoring))
    return objs


def router_change_event(dsd_name: str, kind: str, name: str, verb: str) -> tuple[str, str] | None:
    """(reason, message) of the Event that says the router (or its batch pool) came or went,
    for one applied change; None for any other change."""
    if kind == "Deployment" and name == router_batch_name(dsd_name):
        return _batch_router_change_event(dsd_name, name, verb)
    if kind != "Deployment" or name != router_name(dsd_name):
        return None
    if verb == "created":
        return (
            "RouterCreated",
            f"router Deployment {name} created (vllm-router); the Service {dsd_name} selects "
            "its pods once one is available, the engines stay reachable through the Service "
            f"{engines_service_name(dsd_name)}",
        )
    if verb == "deleted":
        return (
            "RouterRemoved",
            f"router Deployment {name} removed (spec.router.enabled is false); the Service "
            f"{dsd_name} selects the engines again",
        )
    return None


def _batch_router_change_event(dsd_name: str, name: str, verb: str) -> tuple[str, str] | None:
    batch = batch_service_name(dsd_name)
    if verb == "created":
        return (
            "BatchRouterCreated",
            f"batch router Deployment {name} created (vllm-router with the limits of "
            f"spec.router.batch); batch clients call the Service {batch} with X-Vllm-Priority: 2",
        )
    if verb == "deleted":
        return (
            "BatchRouterRemoved",
            f"batch router Deployment {name} and the Service {batch} removed "
            "(spec.router.batch is unset or the router is off)",
        )
    return None


def render(
    dsd: DeepSeekDeployment, plan: Plan, monitoring: MonitoringSettings | None = None
) -> DesiredState:
    """Every object the DeepSeekDeployment owns, for this plan."""
    monitoring = monitoring or MonitoringSettings()
    objs: list[Obj] = [engine_deployment(dsd, d, plan.sleep_action) for d in plan.deployments]
    active = plan.active_colour
    stable = None if plan.mixed else active
    router = dsd.spec.router.enabled
    if router:
        objs += router_objects(dsd, plan, monitoring)
    if router and plan.router_available:
        objs.append(router_service(dsd))
    else:
        service = _service(dsd, stable_service_name(dsd.name), stable, "stable")
        if router:  # the port clients use stays the router's while the engines stand in
            service["spec"]["ports"][0]["port"] = dsd.spec.router.port
        objs.append(service)
    objs.append(_service(dsd, preview_service_name(dsd.name), active.other(), "preview"))
    if router:
        objs.append(_service(dsd, engines_service_name(dsd.name), stable, "engines"))
    objs.append(pod_disruption_budget(dsd))
    if plan.monitoring_crds:
        if dsd.spec.monitoring.pod_monitor_enabled:
            objs.append(pod_monitor(dsd, monitoring))
        if dsd.spec.monitoring.prometheus_rule:
            objs.append(prometheus_rule(dsd, monitoring))
    return DesiredState(objs)
