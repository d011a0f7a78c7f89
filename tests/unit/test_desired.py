"""The desired-state function: spec + plan -> objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from deepseek_operator import labels as L
from deepseek_operator.api import Colour, DeepSeekDeployment
from deepseek_operator.api.spec import DeepSeekDeploymentSpec, QuantizationRung
from deepseek_operator.desired import (
    ColourPlan,
    MonitoringSettings,
    Plan,
    admission_config_map,
    pod_template,
    quantization_args,
    render,
    supports_sleep_action,
    template_hash,
    vllm_args,
)

from .vllm_reference import check_args

ROOT = Path(__file__).resolve().parents[2]


def dsd(**spec: Any) -> DeepSeekDeployment:
    body: dict[str, Any] = {"model": {"checkpoint": "deepseek-ai/DeepSeek-R1"}}
    body.update(spec)
    return DeepSeekDeployment.from_k8s(
        {
            "metadata": {"name": "r1", "namespace": "prod", "uid": "u-1", "generation": 3},
            "spec": body,
        }
    )


def plan_for(d: DeepSeekDeployment, replicas: int = 2, **kw: Any) -> Plan:
    return Plan(Colour.BLUE, (ColourPlan(Colour.BLUE, d.spec, replicas),), **kw)


def arg(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


# Every quantization mode -> vLLM flags (issue: "checked against vllm-0.32-serve-help.txt").
MODES = [
    # (rung, expected flags)
    ({"name": "bf16", "weights": "bf16"}, ["--dtype", "bfloat16"]),
    ({"name": "fp8", "weights": "fp8"}, ["--quantization", "fp8"]),
    (
        {"name": "fp8-kv8", "weights": "fp8", "kvCacheDtype": "fp8"},
        ["--quantization", "fp8", "--kv-cache-dtype", "fp8"],
    ),
    (
        {"name": "fp8-e5m2", "weights": "fp8", "kvCacheDtype": "fp8_e5m2"},
        ["--quantization", "fp8", "--kv-cache-dtype", "fp8_e5m2"],
    ),
    (
        {"name": "bf16-kv8", "weights": "bf16", "kvCacheDtype": "fp8_e4m3"},
        ["--dtype", "bfloat16", "--kv-cache-dtype", "fp8_e4m3"],
    ),
    ({"name": "int4", "weights": "int4", "checkpoint": "org/R1-AWQ"}, []),
    (
        {"name": "int4-awq", "weights": "int4", "checkpoint": "org/R1-AWQ", "method": "awq_marlin"},
        ["--quantization", "awq_marlin"],
    ),
    (
        {
            "name": "int4-gptq",
            "weights": "int4",
            "checkpoint": "org/R1-GPTQ",
            "method": "gptq_marlin",
            "kvCacheDtype": "fp8",
        },
        ["--quantization", "gptq_marlin", "--kv-cache-dtype", "fp8"],
    ),
    (
        {"name": "fp8-block", "weights": "fp8", "method": "fp8_per_block"},
        ["--quantization", "fp8_per_block"],
    ),
]


@pytest.mark.parametrize(("rung", "flags"), MODES, ids=[m[0]["name"] for m in MODES])
def test_quantization_mode_flags(rung: dict[str, Any], flags: list[str]) -> None:
    r = QuantizationRung.model_validate(rung)
    assert quantization_args(r) == flags
    d = dsd(quantization={"mode": rung["name"], "ladder": [rung]}, resources={"gpusPerReplica": 8})
    args = vllm_args(d.name, d.spec)
    assert check_args(args) == []
    assert arg(args, "--gpu-memory-utilization") == "0.9"
    if "checkpoint" in rung:
        assert arg(args, "--model") == rung["checkpoint"]


def test_engine_args_from_spec() -> None:
    d = dsd(
        model={
            "checkpoint": "deepseek-ai/DeepSeek-R1",
            "servedName": "r1-chat",
            "revision": "main",
            "maxModelLen": 32768,
            "trustRemoteCode": True,
            "cache": {"persistentVolumeClaim": "w"},
        },
        engine={
            "pipelineParallelSize": 2,
            "expertParallel": True,
            "gpuMemoryUtilization": 0.92,
            "extraArgs": ["--enable-prefix-caching"],
            "drain": {"timeoutSeconds": 120},
        },
        resources={"gpusPerReplica": 8},
        quantization={"mode": "fp8"},
    )
    args = vllm_args("r1", d.spec)
    assert check_args(args) == []
    assert arg(args, "--model") == "deepseek-ai/DeepSeek-R1"
    assert arg(args, "--served-model-name") == "r1-chat"
    assert arg(args, "--tensor-parallel-size") == "4"
    assert arg(args, "--pipeline-parallel-size") == "2"
    assert arg(args, "--max-model-len") == "32768"
    assert arg(args, "--revision") == "main"
    assert arg(args, "--download-dir") == "/models"
    assert arg(args, "--gpu-memory-utilization") == "0.92"
    assert arg(args, "--shutdown-timeout") == "120"
    assert "--enable-expert-parallel" in args and "--trust-remote-code" in args
    assert args[-1] == "--enable-prefix-caching"  # extra args last, verbatim


def test_served_name_defaults_to_resource_name_and_pp1_is_implicit() -> None:
    args = vllm_args("r1", dsd().spec)
    assert arg(args, "--served-model-name") == "r1"
    assert "--pipeline-parallel-size" not in args and "--revision" not in args
    assert arg(args, "--tensor-parallel-size") == "1"


@pytest.mark.parametrize(
    ("engine", "flag"),
    [
        ({}, None),  # fcfs is vLLM's default: no flag, the template hash of older engines holds
        ({"schedulingPolicy": "fcfs"}, None),
        ({"schedulingPolicy": "priority"}, "priority"),
    ],
)
def test_scheduling_policy_flag(engine: dict[str, Any], flag: str | None) -> None:
    args = vllm_args("r1", dsd(engine=engine).spec)
    assert check_args(args) == []  # a flag and value of vLLM 0.32's serve --help
    assert arg(args, "--scheduling-policy") == flag
    assert args.count("--scheduling-policy") == (flag is not None)


def test_scheduling_policy_changes_the_engine_template() -> None:
    assert template_hash("r1", dsd().spec) == template_hash(
        "r1", dsd(engine={"schedulingPolicy": "fcfs"}).spec
    )
    assert template_hash("r1", dsd().spec) != template_hash(
        "r1", dsd(engine={"schedulingPolicy": "priority"}).spec
    )


def test_engine_deployment_shape() -> None:
    d = dsd(
        resources={"gpusPerReplica": 8, "gpuProduct": "NVIDIA-H200", "sharedMemory": "64Gi"},
        model={"checkpoint": "x", "cache": {"persistentVolumeClaim": "weights"}},
        placement={
            "maxSkew": 1,
            "zones": ["us-east-a", "us-east-b"],
            "nodeSelector": {"pool": "gpu"},
        },
        engine={
            "drain": {"preStopDelaySeconds": 10, "timeoutSeconds": 300},
            "startupTimeoutSeconds": 3600,
        },
    )
    dep = render(d, plan_for(d, 3)).get("Deployment", "r1-blue")
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert spec["replicas"] == 3
    assert spec["selector"]["matchLabels"] == {
        L.DEPLOYMENT: "r1",
        L.COMPONENT: "engine",
        L.COLOUR: "blue",
    }
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert c["resources"]["requests"]["nvidia.com/gpu"] == "8"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H200", "pool": "gpu"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    (tsc,) = pod["topologySpreadConstraints"]
    assert tsc["topologyKey"] == "topology.kubernetes.io/zone" and tsc["maxSkew"] == 1
    assert tsc["whenUnsatisfiable"] == "DoNotSchedule"
    assert tsc["labelSelector"]["matchLabels"][L.COLOUR] == "blue"
    zones = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert zones["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [
        "us-east-a",
        "us-east-b",
    ]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    assert vols["model-cache"]["persistentVolumeClaim"] == {"claimName": "weights"}
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == {"/dev/shm", "/models"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    # startup probe covers the model load time
    sp = c["startupProbe"]
    assert sp["periodSeconds"] * sp["failureThreshold"] >= 3600
    assert c["lifecycle"]["preStop"] == {"sleep": {"seconds": 10}}
    assert pod["terminationGracePeriodSeconds"] == 10 + 300 + 15
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert dep["metadata"]["ownerReferences"][0]["controller"] is True
    assert spec["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize(
    ("git_version", "sleep_action"),
    [
        ("v1.29.4", False),
        ("v1.29.0-eks-1234", False),
        ("v1.30.0", True),
        ("v1.30.0-gke.1", True),
        ("v1.31.2+k3s1", True),
        ("v1.33.1", True),
        ("v2.0.0", True),
        ("v1.28.15", False),
        ("", False),  # /version unreadable
        ("garbage", False),
        ("v1", False),
    ],
)
def test_pre_stop_sleep_action_only_where_the_api_server_has_it(
    git_version: str, sleep_action: bool
) -> None:
    assert supports_sleep_action(git_version) is sleep_action


@pytest.mark.parametrize(
    ("sleep_action", "pre_stop"),
    [
        (True, {"sleep": {"seconds": 10}}),
        # below 1.30: the engine image's own `sleep` (coreutils) waits the same time
        (False, {"exec": {"command": ["sleep", "10"]}}),
    ],
)
def test_pre_stop_form_follows_the_cluster(sleep_action: bool, pre_stop: dict[str, Any]) -> None:
    d = dsd(engine={"drain": {"preStopDelaySeconds": 10}})
    dep = render(d, plan_for(d, sleep_action=sleep_action)).get("Deployment", "r1-blue")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["lifecycle"]["preStop"] == pre_stop
    # the form is part of the pod: the template hash (what rollouts compare) follows it
    assert dep["spec"]["template"]["metadata"]["labels"][L.TEMPLATE_HASH] == template_hash(
        "r1", d.spec, sleep_action
    )
    assert template_hash("r1", d.spec, True) != template_hash("r1", d.spec, False)


def test_pod_labels_and_annotations_never_override_ours() -> None:
    d = dsd(engine={"podLabels": {"team": "llm", L.COLOUR: "pink"}, "podAnnotations": {"a": "b"}})
    meta = render(d, plan_for(d)).get("Deployment", "r1-blue")["spec"]["template"]["metadata"]
    assert meta["labels"]["team"] == "llm" and meta["labels"][L.COLOUR] == "blue"
    assert meta["annotations"] == {"a": "b"}


def test_host_path_cache() -> None:
    d = dsd(
        model={
            "checkpoint": "/models/r1",
            "cache": {"hostPath": "/mnt/weights", "mountPath": "/models"},
        }
    )
    pod = render(d, plan_for(d)).get("Deployment", "r1-blue")["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["model-cache"]["hostPath"] == {"path": "/mnt/weights", "type": "Directory"}
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["HF_HOME"] == "/models"


@pytest.mark.parametrize(
    ("spec", "env"),
    [
        ({}, {}),
        (
            {"engine": {"admission": {"maxRunning": 128}}},
            {"DEEPSEEK_ADMISSION_MAX_RUNNING": "128", "DEEPSEEK_ADMISSION_MAX_WAIT": "2"},
        ),
        (
            {
                "engine": {"admission": {"maxRunning": 64}},
                "scaling": {"slo": {"ttftP99Seconds": 1.5}},
            },
            {"DEEPSEEK_ADMISSION_MAX_RUNNING": "64", "DEEPSEEK_ADMISSION_MAX_WAIT": "1.5"},
        ),
        (
            {"engine": {"admission": {"maxRunning": 8, "maxWaitSeconds": 0}}},
            {"DEEPSEEK_ADMISSION_MAX_RUNNING": "8", "DEEPSEEK_ADMISSION_MAX_WAIT": "0"},
        ),
        (  # no maxRunning: the learned one, from the mounted ConfigMap
            {"engine": {"admission": {}}},
            {
                "DEEPSEEK_ADMISSION_LIMIT_FILE": "/etc/deepseek/admission/maxRunning",
                "DEEPSEEK_ADMISSION_MAX_WAIT": "2",
            },
        ),
    ],
)
def test_admission_gate_settings_reach_the_engine_entrypoint(
    spec: dict[str, Any], env: dict[str, str]
) -> None:
    """spec.engine.admission -> the entrypoint's DEEPSEEK_ADMISSION_* variables, the wait
    defaulting to the TTFT SLO; unset: none."""
    d = dsd(**spec)
    pod = render(d, plan_for(d)).get("Deployment", "r1-blue")["spec"]["template"]["spec"]
    got = {
        e["name"]: e["value"]
        for e in pod["containers"][0]["env"]
        if e["name"].startswith("DEEPSEEK_ADMISSION_")
    }
    assert got == env
    # setting it changes the pod template (the pods roll, as the field's description says)
    assert (template_hash("r1", d.spec) == template_hash("r1", dsd().spec)) is (not spec)


def test_admission_limit_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="maxRunning"):
        dsd(engine={"admission": {"maxRunning": 0}})


def test_a_learned_admission_limit_is_mounted_from_its_config_map() -> None:
    d = dsd(engine={"admission": {}})
    pod = render(d, plan_for(d)).get("Deployment", "r1-blue")["spec"]["template"]["spec"]
    vol = next(v for v in pod["volumes"] if v["name"] == "admission")
    assert vol["configMap"] == {"name": "r1-admission", "optional": True}  # pods start first
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "admission")
    assert mount == {"name": "admission", "mountPath": "/etc/deepseek/admission", "readOnly": True}
    # a fixed limit mounts nothing
    fixed = dsd(engine={"admission": {"maxRunning": 8}})
    pod = render(fixed, plan_for(fixed)).get("Deployment", "r1-blue")["spec"]["template"]["spec"]
    assert all(v["name"] != "admission" for v in pod["volumes"])


@pytest.mark.parametrize(("limit", "value"), [(None, ""), (131, "131")])
def test_the_admission_config_map_holds_the_learned_limit(limit: int | None, value: str) -> None:
    d = dsd(engine={"admission": {}})
    cm = admission_config_map(d, limit)
    assert (cm["kind"], cm["metadata"]["name"]) == ("ConfigMap", "r1-admission")
    assert cm["data"] == {"maxRunning": value}
    owner = cm["metadata"]["ownerReferences"][0]  # removed with its DeepSeekDeployment
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("DeepSeekDeployment", "u-1", True)


def test_services_select_active_and_other_colour() -> None:
    d = dsd()
    state = render(d, Plan(Colour.GREEN, (ColourPlan(Colour.GREEN, d.spec, 1),)))
    stable = state.get("Service", "r1")
    preview = state.get("Service", "r1-preview")
    assert stable["spec"]["selector"][L.COLOUR] == "green"
    assert preview["spec"]["selector"][L.COLOUR] == "blue"
    assert stable["spec"]["ports"][0]["targetPort"] == "http"
    pdb = state.get("PodDisruptionBudget", "r1")
    assert pdb["spec"]["selector"]["matchLabels"] == {L.DEPLOYMENT: "r1", L.COMPONENT: "engine"}


def test_a_stepped_transition_lets_the_stable_service_select_both_colours() -> None:
    d = dsd()
    state = render(d, plan_for(d, mixed=True))
    stable = state.get("Service", "r1")
    assert stable["spec"]["selector"] == {L.DEPLOYMENT: "r1", L.COMPONENT: "engine"}
    assert state.get("Service", "r1-preview")["spec"]["selector"][L.COLOUR] == "green"


def test_monitoring_objects_only_where_crds_exist_and_wanted() -> None:
    d = dsd()
    kinds = lambda s: sorted(o["kind"] for o in s.objects)  # noqa: E731
    assert kinds(render(d, plan_for(d))) == [
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "Service",
    ]
    with_crds = render(d, plan_for(d, monitoring_crds=True))
    assert "PodMonitor" in kinds(with_crds) and "PrometheusRule" in kinds(with_crds)
    pm = with_crds.get("PodMonitor", "r1")
    relabels = pm["spec"]["podMetricsEndpoints"][0]["relabelings"]
    assert {
        "sourceLabels": ["__meta_kubernetes_pod_label_serving_deepseek_dev_deployment"],
        "targetLabel": "dsd",
    } in relabels
    off = dsd(monitoring={"serviceMonitor": False, "prometheusRule": False})
    assert kinds(render(off, plan_for(off, monitoring_crds=True))) == kinds(render(d, plan_for(d)))


POD_MONITOR_SWITCH = [
    # (spec.monitoring, PodMonitor created?)
    ({}, True),
    ({"podMonitor": False}, False),
    ({"serviceMonitor": False}, False),  # the deprecated name still works
    ({"serviceMonitor": True}, True),
    ({"podMonitor": True, "serviceMonitor": False}, True),  # podMonitor wins
    ({"podMonitor": False, "serviceMonitor": True}, False),
]


@pytest.mark.parametrize(("monitoring", "created"), POD_MONITOR_SWITCH)
def test_pod_monitor_switch_and_its_deprecated_alias(
    monitoring: dict[str, bool], created: bool
) -> None:
    d = dsd(monitoring=monitoring)
    state = render(d, plan_for(d, monitoring_crds=True))
    assert bool(state.by_kind("PodMonitor")) is created
    assert len(state.by_kind("PrometheusRule")) == 1


def test_monitoring_labels_operator_wide_then_per_resource_then_own() -> None:
    """--monitor-label, then spec.monitoring.labels over them, then the operator's own labels
    over both, on the PodMonitor and the PrometheusRule alike; other objects get none."""
    d = dsd(
        monitoring={
            "labels": {"team": "serving", "release": "prom-b", L.MANAGED_BY: "someone-else"}
        }
    )
    settings = MonitoringSettings(labels={"release": "prom-a", "tier": "gpu"})
    state = render(d, plan_for(d, monitoring_crds=True), settings)
    for kind in ("PodMonitor", "PrometheusRule"):
        labels = state.get(kind, "r1")["metadata"]["labels"]
        assert labels["release"] == "prom-b"
        assert labels["tier"] == "gpu"
        assert labels["team"] == "serving"
        assert labels[L.MANAGED_BY] == L.MANAGED_BY_VALUE
        assert labels[L.DEPLOYMENT] == "r1"
    assert "release" not in state.get("Service", "r1")["metadata"]["labels"]
    plain = render(d, plan_for(d, monitoring_crds=True))
    assert plain.get("PodMonitor", "r1")["metadata"]["labels"]["release"] == "prom-b"
    assert "tier" not in plain.get("PodMonitor", "r1")["metadata"]["labels"]


def test_runbook_base_url_of_the_per_deployment_alerts() -> None:
    d = dsd()
    settings = MonitoringSettings(runbook_base_url="https://wiki.example.com/runbooks/")
    rule = render(d, plan_for(d, monitoring_crds=True), settings).get("PrometheusRule", "r1")
    urls = [r["annotations"]["runbook_url"] for r in rule["spec"]["groups"][0]["rules"]]
    assert urls == [
        "https://wiki.example.com/runbooks/DeepSeekDeploymentTTFTAboveSLO.md",
        "https://wiki.example.com/runbooks/DeepSeekDeploymentErrorsAboveSLO.md",
    ]


def test_kept_colour_is_not_rendered() -> None:
    d = dsd()
    state = render(d, Plan(Colour.BLUE, (ColourPlan(Colour.GREEN, d.spec, 2),)))
    assert [o["metadata"]["name"] for o in state.by_kind("Deployment")] == ["r1-green"]
    assert state.get("Service", "r1")["spec"]["selector"][L.COLOUR] == "blue"


def test_render_is_deterministic() -> None:
    d = dsd()
    assert render(d, plan_for(d)) == render(d, plan_for(d))


HF_TOKEN = {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}

POD_SETTINGS = [
    # (case, spec changes, expected pod spec fields (None: left out), expected container env)
    (
        "nothing set: the pod spec says nothing",
        {},
        {
            "imagePullSecrets": None,
            "serviceAccountName": None,
            "runtimeClassName": None,
            "priorityClassName": None,
        },
        {},
    ),
    (
        "every pod setting",
        {
            "engine": {
                "imagePullSecrets": [{"name": "ghcr-pull"}, {"name": "mirror"}],
                "serviceAccountName": "deepseek-engine",
                "runtimeClassName": "nvidia",
            },
            "placement": {"priorityClassName": "gpu-serving"},
        },
        {
            "imagePullSecrets": [{"name": "ghcr-pull"}, {"name": "mirror"}],
            "serviceAccountName": "deepseek-engine",
            "runtimeClassName": "nvidia",
            "priorityClassName": "gpu-serving",
        },
        {},
    ),
    (
        "a token from a Secret, passed as a reference",
        {"engine": {"env": [HF_TOKEN]}},
        {},
        {"HF_TOKEN": {"valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}},
    ),
    (
        "optional ConfigMap key and the pod IP",
        {
            "engine": {
                "env": [
                    {
                        "name": "NCCL_IB_HCA",
                        "valueFrom": {
                            "configMapKeyRef": {"name": "nccl", "key": "hca", "optional": True}
                        },
                    },
                    {
                        "name": "VLLM_HOST_IP",
                        "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
                    },
                ]
            }
        },
        {},
        {
            "NCCL_IB_HCA": {
                "valueFrom": {"configMapKeyRef": {"name": "nccl", "key": "hca", "optional": True}}
            },
            "VLLM_HOST_IP": {"valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        },
    ),
    (
        "a literal value, empty or not",
        {"engine": {"env": [{"name": "A", "value": "1"}, {"name": "EMPTY", "value": ""}]}},
        {},
        {"A": {"value": "1"}, "EMPTY": {"value": ""}},
    ),
    (
        "the user's entry replaces the operator's of the same name",
        {
            "model": {"checkpoint": "x", "cache": {"persistentVolumeClaim": "w"}},
            "engine": {"env": [{"name": "HF_HOME", "value": "/models/hf"}, HF_TOKEN]},
        },
        {},
        {"HF_HOME": {"value": "/models/hf"}, "VLLM_NO_USAGE_STATS": {"value": "1"}},
    ),
]


@pytest.mark.parametrize(
    ("change", "pod_fields", "env"),
    [c[1:] for c in POD_SETTINGS],
    ids=[c[0] for c in POD_SETTINGS],
)
def test_engine_pod_settings_render_into_the_pod_template(
    change: dict[str, Any], pod_fields: dict[str, Any], env: dict[str, Any]
) -> None:
    d = dsd(**change)
    pod = render(d, plan_for(d)).get("Deployment", "r1-blue")["spec"]["template"]["spec"]
    for name, value in pod_fields.items():
        assert pod.get(name) == value, name
    (c,) = pod["containers"]
    names = [e["name"] for e in c["env"]]
    assert len(names) == len(set(names)), names  # a map keyed by name for server-side apply
    by_name = {e.pop("name"): e for e in c["env"]}
    for name, entry in env.items():
        assert by_name[name] == entry, name
    assert by_name["POD_NAME"] == {"valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


HASH_CASES = [
    # (change, does the pod template change?)
    ({"replicas": 2, "scaling": {"maxReplicas": 8}}, False),
    ({"scaling": {"slo": {"ttftP99Seconds": 9}}}, False),
    ({"rollout": {"autoPromote": False}}, False),
    ({"model": {"checkpoint": "deepseek-ai/DeepSeek-R1", "revision": "v2"}}, True),
    ({"engine": {"image": "ghcr.io/deepseek-operator/deepseek-engine:v0.33.0"}}, True),
    ({"engine": {"env": [HF_TOKEN]}}, True),
    ({"engine": {"imagePullSecrets": [{"name": "ghcr-pull"}]}}, True),
    ({"engine": {"serviceAccountName": "deepseek-engine"}}, True),
    ({"engine": {"runtimeClassName": "nvidia"}}, True),
    ({"placement": {"priorityClassName": "gpu-serving"}}, True),
    ({"engine": {"extraArgs": ["--enable-prefix-caching"]}}, True),
    ({"quantization": {"mode": "fp8"}}, True),
    ({"resources": {"gpusPerReplica": 2}}, True),
]


@pytest.mark.parametrize(("change", "changes_template"), HASH_CASES)
def test_template_hash_changes_only_with_the_pod(
    change: dict[str, Any], changes_template: bool
) -> None:
    base = dsd()
    changed = dsd(**change)
    assert (template_hash("r1", base.spec) != template_hash("r1", changed.spec)) == changes_template


def test_hash_ignores_colour_and_is_on_the_pods() -> None:
    spec = dsd().spec
    blue = pod_template("r1", Colour.BLUE, spec)
    green = pod_template("r1", Colour.GREEN, spec)
    assert (
        blue["metadata"]["labels"][L.TEMPLATE_HASH] == green["metadata"]["labels"][L.TEMPLATE_HASH]
    )
    assert blue != green


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_render_valid_engine_args(path: Path) -> None:
    d = DeepSeekDeployment.from_k8s(yaml.safe_load(path.read_text()) | {"metadata": {"name": "x"}})
    for rung in d.spec.quantization.ladder:
        spec = DeepSeekDeploymentSpec.model_validate(
            d.spec.model_dump(by_alias=True)
            | {
                "quantization": {
                    "mode": rung.name,
                    "ladder": [r.to_k8s() for r in d.spec.quantization.ladder],
                }
            }
        )
        assert check_args(vllm_args("x", spec)) == []


# Engine pods leave a node whose kubelet stopped reporting after
# placement.nodeNotReadyTolerationSeconds when it is set (unset: no toleration added, the
# cluster's 300 s, pods unchanged); a toleration of the user's own for a node-failure taint
# wins over the operator's.
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
GPU = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _failure_tolerations(seconds: int) -> list[dict[str, Any]]:
    return [
        {"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
        for k in (NOT_READY, UNREACHABLE)
    ]


@pytest.mark.parametrize(
    ("placement", "expected"),
    [
        ({}, [GPU]),  # unset: the pods of existing resources do not change
        ({"nodeNotReadyTolerationSeconds": 30}, [GPU, *_failure_tolerations(30)]),
        ({"nodeNotReadyTolerationSeconds": 0}, [GPU, *_failure_tolerations(0)]),
        ({"nodeNotReadyTolerationSeconds": 300}, [GPU, *_failure_tolerations(300)]),
        # the user's own for one key: kept as written, the operator's only for the other
        (
            {
                "tolerations": [
                    {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"},
                ],
                "nodeNotReadyTolerationSeconds": 10,
            },
            [
                {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"},
                _failure_tolerations(10)[0],
            ],
        ),
        # tolerating every taint covers both
        (
            {"tolerations": [{"operator": "Exists"}], "nodeNotReadyTolerationSeconds": 30},
            [{"operator": "Exists"}],
        ),
        # a NoSchedule toleration of the key does not cover eviction
        (
            {
                "tolerations": [{"key": NOT_READY, "operator": "Exists", "effect": "NoSchedule"}],
                "nodeNotReadyTolerationSeconds": 30,
            },
            [
                {"key": NOT_READY, "operator": "Exists", "effect": "NoSchedule"},
                *_failure_tolerations(30),
            ],
        ),
    ],
)
def test_engine_pods_tolerate_a_failed_node_for_the_configured_seconds(
    placement: dict[str, Any], expected: list[dict[str, Any]]
) -> None:
    d = dsd(placement=placement)
    pod = render(d, plan_for(d)).get("Deployment", "r1-blue")["spec"]["template"]["spec"]
    assert pod["tolerations"] == expected


def test_node_not_ready_toleration_seconds_changes_the_template_hash() -> None:
    """A new value is a new pod (tolerations are part of it): a blue-green rollout."""
    assert template_hash("r1", dsd().spec) == template_hash(
        "r1", dsd(placement={"nodeNotReadyTolerationSeconds": None}).spec
    )
    assert template_hash("r1", dsd().spec) != template_hash(
        "r1", dsd(placement={"nodeNotReadyTolerationSeconds": 60}).spec
    )
