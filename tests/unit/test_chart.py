"""The Helm chart charts/deepseek-operator, rendered by the real helm (no cluster): lint, the
objects each values set produces, least-privilege RBAC matching the operator's API calls, the
security context, monitoring objects equal to the generated rules and dashboards, CRDs equal to
crds/, and values.schema.json rejecting bad values. Validation of the rendered objects against
the API server's schemas and the install under the chart's RBAC are in tests/e2e/test_chart.py.

helm is built by scripts/build-tools.sh into $DEEPSEEK_CACHE/bin (tools/go/helm). Without it
the tests skip locally and fail under CI=true.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import DASHBOARDS
from dashboards.generate import CRDS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "deepseek-operator"
DSD_CRD = "deepseekdeployments.serving.deepseek.dev.yaml"
RELEASE, NAMESPACE = "dso", "deepseek-system"
FULLNAME = "dso-deepseek-operator"

# Values sets the tests render; tests/e2e/test_chart.py validates the same sets against the API
# server.
VALUES_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cluster-ha-monitoring": {
        "replicaCount": 2,
        "operator": {"prometheusUrl": "http://prometheus.monitoring:9090"},
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True},
        "dashboards": {"enabled": True, "annotations": {"grafana_folder": "DeepSeek"}},
    },
    "namespaced": {"operator": {"watchNamespaces": ["team-a", "team-b"]}},
    "namespaced-ha-monitoring": {
        "replicaCount": 2,
        "operator": {"watchNamespaces": ["team-a"]},
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "dashboards": {"enabled": True, "namespace": "grafana"},
    },
    "standalone-scaled-to-zero": {"replicaCount": 0, "operator": {"peering": {"enabled": False}}},
    "regions": {
        "operator": {"watchNamespaces": ["team-a"]},
        "rbac": {"kubeconfigSecrets": ["eu-west-kubeconfig", "ap-south-kubeconfig"]},
    },
    "network-policy": {
        "operator": {"metricsPort": 9100},
        "networkPolicy": {
            "enabled": True,
            "apiServerTo": [{"ipBlock": {"cidr": "10.96.0.1/32"}}],
            "extraEgress": [{"ports": [{"port": 4317, "protocol": "TCP"}]}],
        },
    },
    "nvml-exporter": {
        "nvmlExporter": {
            "enabled": True,
            "runtimeClassName": "nvidia",
            "podMonitor": {"enabled": True},
        }
    },
    # kube-prometheus-stack's release label on every monitoring object, the operator's included;
    # runbooks and the operator's scrape job elsewhere.
    "monitoring-labels": {
        "monitoring": {
            "labels": {"release": "kube-prometheus-stack", "example.com/team": "serving"}
        },
        "serviceMonitor": {"enabled": True, "labels": {"example.com/team": "ops"}},
        "prometheusRule": {
            "enabled": True,
            "runbookBaseUrl": "https://wiki.example.com/deepseek/runbooks/",
            "operatorJob": "dso-metrics",
        },
        "nvmlExporter": {"enabled": True, "podMonitor": {"enabled": True}},
    },
}


def helm_binary() -> str:
    cache = Path(os.environ.get("DEEPSEEK_CACHE", Path.home() / ".cache" / "deepseek-operator"))
    for candidate in (os.environ.get("HELM"), str(cache / "bin" / "helm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("helm")
    if found:
        return found
    msg = f"helm not found in {cache}/bin: run scripts/build-tools.sh (make tools)"
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def helm(*args: str, values: dict[str, Any] | None = None, tmp: Path | None = None) -> str:
    cmd = [helm_binary(), *args]
    if values:
        assert tmp is not None
        f = tmp / "values.yaml"
        f.write_text(yaml.safe_dump(values))
        cmd += ["--values", str(f)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
    return res.stdout


_RENDERED: dict[str, list[dict[str, Any]]] = {}


def render(values: dict[str, Any], tmp: Path) -> list[dict[str, Any]]:
    """`helm template` with these values; one helm run per distinct values in the session."""
    key = json.dumps(values, sort_keys=True)
    if key not in _RENDERED:
        out = helm(
            "template", RELEASE, str(CHART), "--namespace", NAMESPACE, values=values, tmp=tmp
        )
        _RENDERED[key] = [d for d in yaml.safe_load_all(out) if d]
    return copy.deepcopy(_RENDERED[key])


def render_error(values: dict[str, Any], tmp: Path) -> str:
    f = tmp / "bad.yaml"
    f.write_text(yaml.safe_dump(values))
    res = subprocess.run(
        [helm_binary(), "template", RELEASE, str(CHART), "--values", str(f)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode != 0, f"helm accepted {values}"
    return res.stderr


def is_hook(o: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (o["metadata"].get("annotations") or {})


def by_kind(objs: list[dict[str, Any]], kind: str, hooks: bool = False) -> list[dict[str, Any]]:
    """Objects of a kind that `helm install` creates; hooks=True: those `helm test` creates."""
    return [o for o in objs if o["kind"] == kind and is_hook(o) == hooks]


def one(objs: list[dict[str, Any]], kind: str, hooks: bool = False) -> dict[str, Any]:
    found = by_kind(objs, kind, hooks)
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


# ---- lint and drift -------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUES_SETS)
def test_helm_lint(name: str, tmp_path: Path) -> None:
    out = helm("lint", "--strict", str(CHART), values=VALUES_SETS[name], tmp=tmp_path)
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("crd", CRDS)
def test_chart_crds_equal_the_generated_crds(crd: str) -> None:
    """Helm only reads files inside the chart, so the chart keeps copies of crds/ (written by
    `make dashboards`); they must not drift from the CRDs generated from the models."""
    assert (CHART / CRDS[crd] / crd).read_text() == (ROOT / "crds" / crd).read_text()
    for where in set(CRDS.values()):
        assert sorted(p.name for p in (CHART / where).iterdir()) == sorted(
            c for c, w in CRDS.items() if w == where
        )


def test_dsd_crd_is_a_template_helm_upgrades_and_uninstall_keeps(tmp_path: Path) -> None:
    generated = yaml.safe_load((ROOT / "crds" / DSD_CRD).read_text())
    crd = one(render({}, tmp_path), "CustomResourceDefinition")
    assert crd["metadata"]["name"] == generated["metadata"]["name"]
    assert crd["spec"] == generated["spec"]
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert crd["metadata"]["labels"]["app.kubernetes.io/part-of"] == "deepseek-operator"
    assert not by_kind(render({"crds": {"install": False}}, tmp_path), "CustomResourceDefinition")


# ---- objects per values set -----------------------------------------------------------------


@pytest.mark.parametrize("name", VALUES_SETS)
def test_every_object_is_labelled(name: str, tmp_path: Path) -> None:
    for o in render(VALUES_SETS[name], tmp_path):
        labels = o["metadata"]["labels"]
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "helm.sh/chart"):
            assert key in labels, (o["kind"], o["metadata"]["name"], key)
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_defaults_cluster_mode(tmp_path: Path) -> None:
    objs = render({}, tmp_path)
    kinds = sorted(o["kind"] for o in objs if not is_hook(o))
    assert kinds == [
        "ClusterKopfPeering",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    dep = one(objs, "Deployment")
    assert dep["spec"]["replicas"] == 1
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][:2] == ["run", "--all-namespaces"]
    assert "--peering=deepseek-operator" in c["args"]
    assert one(objs, "ClusterKopfPeering")["metadata"]["name"] == "deepseek-operator"
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME == one(objs, "ServiceAccount")["metadata"]["name"]
    crb = one(objs, "ClusterRoleBinding")
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]


def test_two_replicas_elect_a_leader(tmp_path: Path) -> None:
    objs = render(VALUES_SETS["cluster-ha-monitoring"], tmp_path)
    dep = one(objs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peering=deepseek-operator" in args and "--standalone" not in args
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert "--prometheus-url=http://prometheus.monitoring:9090" in args
    anti = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert one(objs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_each_replica_is_named_in_the_peering_by_its_pod(tmp_path: Path) -> None:
    """POD_NAME from the pod's own name is the operator's --identity default: a container
    restarted in the same pod takes its own peering record over instead of waiting for it."""
    dep = one(render(VALUES_SETS["cluster-ha-monitoring"], tmp_path), "Deployment")
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    pod_name = next(e for e in env if e["name"] == "POD_NAME")
    assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_two_replicas_without_peering_are_refused(tmp_path: Path) -> None:
    err = render_error({"replicaCount": 2, "operator": {"peering": {"enabled": False}}}, tmp_path)
    assert "peering" in err


def test_namespaced_mode(tmp_path: Path) -> None:
    objs = render(VALUES_SETS["namespaced"], tmp_path)
    args = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args
    assert {(o["kind"], o["metadata"]["namespace"]) for o in by_kind(objs, "KopfPeering")} == {
        ("KopfPeering", "team-a"),
        ("KopfPeering", "team-b"),
    }
    assert not by_kind(objs, "ClusterKopfPeering")
    roles = {o["metadata"]["namespace"] for o in by_kind(objs, "Role")}
    bindings = {o["metadata"]["namespace"] for o in by_kind(objs, "RoleBinding")}
    assert roles == bindings == {"team-a", "team-b"}


def test_scaled_to_zero_standalone(tmp_path: Path) -> None:
    objs = render(VALUES_SETS["standalone-scaled-to-zero"], tmp_path)
    dep = one(objs, "Deployment")
    assert dep["spec"]["replicas"] == 0
    assert "--standalone" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert dep["spec"]["strategy"] == {"type": "Recreate"}  # never two unelected operators
    assert not by_kind(objs, "ClusterKopfPeering") and not by_kind(objs, "PodDisruptionBudget")
    rules = one(objs, "ClusterRole")["rules"]
    assert not any("kopf.dev" in r["apiGroups"] for r in rules)


# ---- security -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUES_SETS)
def test_operator_pod_is_locked_down(name: str, tmp_path: Path) -> None:
    pod = one(render(VALUES_SETS[name], tmp_path), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]  # writable scratch only
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_network_policy_lets_in_scrapes_and_out_only_what_the_operator_calls(
    tmp_path: Path,
) -> None:
    """The operator's traffic: /metrics in from Prometheus; DNS, the API servers, Prometheus
    and the engine pods it warms up (labels the operator sets on them) out; nothing else."""
    from deepseek_operator import labels as L

    assert not by_kind(render({}, tmp_path), "NetworkPolicy")  # opt-in
    objs = render(VALUES_SETS["network-policy"], tmp_path)
    np = one(objs, "NetworkPolicy")["spec"]
    dep = one(objs, "Deployment")
    assert np["podSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert np["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = np["ingress"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    metrics = next(p["containerPort"] for p in c["ports"] if p["name"] == "metrics")
    assert ingress["ports"] == [{"port": metrics, "protocol": "TCP"}] and metrics == 9100
    assert ingress["from"] == [
        {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ]

    def ports(rule: dict[str, Any]) -> set[tuple[int, str]]:
        return {(p["port"], p["protocol"]) for p in rule["ports"]}

    dns, api, prom, engines, extra = np["egress"]
    assert ports(dns) == {(53, "UDP"), (53, "TCP")} and "to" not in dns
    assert ports(api) == {(443, "TCP"), (6443, "TCP")}
    assert api["to"] == [{"ipBlock": {"cidr": "10.96.0.1/32"}}]
    assert ports(prom) == {(9090, "TCP")} and "to" not in prom
    assert ports(engines) == {(8000, "TCP")}
    assert engines["to"] == [
        {
            "namespaceSelector": {},
            "podSelector": {
                "matchLabels": {
                    L.MANAGED_BY: L.MANAGED_BY_VALUE,
                    L.COMPONENT: L.ENGINE_COMPONENT,
                }
            },
        }
    ]
    assert ports(extra) == {(4317, "TCP")}
    assert "enginePorts" in render_error({"networkPolicy": {"enginePorts": []}}, tmp_path)


def test_values_schema_rejects_unsafe_or_misspelt_values(tmp_path: Path) -> None:
    assert "readOnlyRootFilesystem" in render_error(
        {"securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False}},
        tmp_path,
    )
    assert "runAsNonRoot" in render_error({"podSecurityContext": {"runAsNonRoot": False}}, tmp_path)
    assert "replicaCount" in render_error({"replicaCount": "two"}, tmp_path)
    assert "watchNamespaces" in render_error(
        {"operator": {"watchNamespaces": ["Not_A_Namespace"]}}, tmp_path
    )
    assert "serviceMonitr" in render_error({"serviceMonitr": {"enabled": True}}, tmp_path)


def test_works_as_a_subchart_with_global_values(tmp_path: Path) -> None:
    # Helm hands a parent chart's `global` to every subchart; the schema must let it through.
    objs = render({"global": {"imageRegistry": "registry.example", "foo": "bar"}}, tmp_path)
    assert one(objs, "Deployment")["metadata"]["name"] == FULLNAME
    parent = tmp_path / "parent"
    (parent / "charts").mkdir(parents=True)
    (parent / "Chart.yaml").write_text("apiVersion: v2\nname: platform\nversion: 0.1.0\n")
    (parent / "values.yaml").write_text("global:\n  foo: bar\n")
    shutil.copytree(CHART, parent / "charts" / "deepseek-operator")
    out = helm("template", RELEASE, str(parent), "--namespace", NAMESPACE, "--set", "global.x=1")
    kinds = {d["kind"] for d in yaml.safe_load_all(out) if d}
    assert {"Deployment", "ClusterRole", "ServiceAccount"} <= kinds


# ---- helm test ------------------------------------------------------------------------------

TEST_NAME = f"{FULLNAME}-test"


def hooks(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if is_hook(o)]


@pytest.mark.parametrize("name", VALUES_SETS)
def test_helm_test_hook_is_only_test_hooks_and_locked_down(name: str, tmp_path: Path) -> None:
    objs = hooks(render(VALUES_SETS[name], tmp_path))
    for o in objs:
        ann = o["metadata"]["annotations"]
        assert ann["helm.sh/hook"] == "test", o["metadata"]["name"]
        assert "before-hook-creation" in ann["helm.sh/hook-delete-policy"]
        # never selected by the operator's Service, PDB or NetworkPolicy
        assert o["metadata"]["labels"]["app.kubernetes.io/component"] == "test"
        if o["kind"] != "Pod":  # RBAC first, gone once the test passed
            assert int(ann["helm.sh/hook-weight"]) < 0
            assert "hook-succeeded" in ann["helm.sh/hook-delete-policy"]
    pod = one(objs, "Pod", hooks=True)
    spec = pod["spec"]
    assert spec["serviceAccountName"] == TEST_NAME and spec["restartPolicy"] == "Never"
    assert one(objs, "ServiceAccount", hooks=True)["metadata"]["name"] == TEST_NAME
    # restricted Pod Security, like the operator pod
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = spec["containers"]
    assert (
        c["image"]
        == one(render(VALUES_SETS[name], tmp_path), "Deployment")["spec"]["template"]["spec"][
            "containers"
        ][0]["image"]
    )
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["command"] == ["deepseek-operator"] and c["args"][0] == "selftest"


def rules_of(objs: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """(kind, namespace, name) of each hook Role/ClusterRole -> its rules."""
    return {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o["rules"]
        for o in hooks(objs)
        if o["kind"] in ("Role", "ClusterRole")
    }


def test_helm_test_with_cluster_peering_reads_the_peering_by_name(tmp_path: Path) -> None:
    objs = render({}, tmp_path)
    assert one(objs, "Pod", hooks=True)["spec"]["containers"][0]["args"] == [
        "selftest",
        f"--namespace={NAMESPACE}",
        "--peering=deepseek-operator",
    ]
    assert rules_of(objs) == {
        ("Role", NAMESPACE, TEST_NAME): [
            {
                "apiGroups": ["serving.deepseek.dev"],
                "resources": ["deepseekdeployments"],
                "verbs": ["list"],
            }
        ],
        ("ClusterRole", "", TEST_NAME): [
            {
                "apiGroups": ["kopf.dev"],
                "resources": ["clusterkopfpeerings"],
                "resourceNames": ["deepseek-operator"],
                "verbs": ["get"],
            }
        ],
    }
    binding = one(objs, "ClusterRoleBinding", hooks=True)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": TEST_NAME, "namespace": NAMESPACE}
    ]


def test_helm_test_namespaced_reads_each_watched_peering(tmp_path: Path) -> None:
    objs = render(VALUES_SETS["namespaced"], tmp_path)
    args = one(objs, "Pod", hooks=True)["spec"]["containers"][0]["args"]
    assert args[-2:] == ["--peering-namespace=team-a", "--peering-namespace=team-b"]
    rules = rules_of(objs)
    assert set(rules) == {
        ("Role", NAMESPACE, TEST_NAME),
        ("Role", "team-a", TEST_NAME),
        ("Role", "team-b", TEST_NAME),
    }
    assert rules[("Role", "team-a", TEST_NAME)][0]["resources"] == ["kopfpeerings"]
    assert not by_kind(objs, "ClusterRole", hooks=True)


def test_helm_test_without_peering_reads_the_operator_deployment(tmp_path: Path) -> None:
    objs = render(VALUES_SETS["standalone-scaled-to-zero"], tmp_path)
    args = one(objs, "Pod", hooks=True)["spec"]["containers"][0]["args"]
    assert args == ["selftest", f"--namespace={NAMESPACE}", f"--deployment={FULLNAME}"]
    (rules,) = rules_of(objs).values()
    assert {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "resourceNames": [FULLNAME],
        "verbs": ["get"],
    } in rules


def test_helm_test_hook_args_parse_with_the_cli(tmp_path: Path) -> None:
    from deepseek_operator.cli import build_parser

    for values in VALUES_SETS.values():
        c = one(render(values, tmp_path), "Pod", hooks=True)["spec"]["containers"][0]
        args = build_parser().parse_args(c["args"])
        assert args.command == "selftest" and args.namespace == NAMESPACE


# ---- RBAC -----------------------------------------------------------------------------------

# What the operator calls, resource by resource (adapters/kube.py, adapters/events.py,
# handlers.py, warmup.py, and Kopf's watches, finalizer/annotation patches and peering).
NAMESPACED_RULES = {
    ("serving.deepseek.dev", "deepseekdeployments"): {"get", "list", "watch", "patch"},
    ("serving.deepseek.dev", "deepseekdeployments/status"): {"patch"},
    ("serving.deepseek.dev", "deepseekdeployments/scale"): {"patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("apps", "deployments/scale"): {"patch"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "delete"},
    ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("monitoring.coreos.com", "podmonitors"): {"get", "list", "create", "patch", "delete"},
    ("monitoring.coreos.com", "prometheusrules"): {"get", "list", "create", "patch", "delete"},
    ("externaldns.k8s.io", "dnsendpoints"): {"get", "create", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    # The router's account and its Role/RoleBinding to watch pods (spec.router).
    ("", "serviceaccounts"): {"get", "list", "watch", "create", "patch", "delete"},
    ("rbac.authorization.k8s.io", "roles"): {"get", "list", "watch", "create", "patch", "delete"},
    ("rbac.authorization.k8s.io", "rolebindings"): {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "delete",
    },
    ("", "persistentvolumeclaims"): {"get"},
    ("", "events"): {"create", "patch"},
    # The learned admission limit's ConfigMap: written, never read.
    ("", "configmaps"): {"create", "patch"},
}
CLUSTER_READ_RULES = {
    ("", "nodes"): {"get", "list"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get"},
}
PEERING_VERBS = {"get", "list", "watch", "patch"}


def flatten(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for r in rules:
        for g in r["apiGroups"]:
            for res in r["resources"]:
                out.setdefault((g, res), set()).update(r["verbs"])
    return out


def test_cluster_mode_rbac_is_exactly_what_the_operator_calls(tmp_path: Path) -> None:
    rules = one(render({}, tmp_path), "ClusterRole")["rules"]
    expected = {
        **NAMESPACED_RULES,
        **CLUSTER_READ_RULES,
        ("kopf.dev", "clusterkopfpeerings"): PEERING_VERBS,
    }
    assert flatten(rules) == expected
    crd_rule = next(r for r in rules if "customresourcedefinitions" in r["resources"])
    assert sorted(crd_rule["resourceNames"]) == [
        "dnsendpoints.externaldns.k8s.io",
        "podmonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
    ]


def test_namespaced_mode_rbac_keeps_writes_in_the_watched_namespaces(tmp_path: Path) -> None:
    objs = render(VALUES_SETS["namespaced"], tmp_path)
    assert flatten(one(objs, "ClusterRole")["rules"]) == CLUSTER_READ_RULES
    for role in by_kind(objs, "Role"):
        assert flatten(role["rules"]) == {
            **NAMESPACED_RULES,
            ("kopf.dev", "kopfpeerings"): PEERING_VERBS,
        }


def test_region_kubeconfig_secrets_are_readable_by_name_only(tmp_path: Path) -> None:
    objs = render(VALUES_SETS["regions"], tmp_path)
    assert "secrets" not in str(one(objs, "ClusterRole")["rules"])
    (role,) = by_kind(objs, "Role")
    secret_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert secret_rules == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["eu-west-kubeconfig", "ap-south-kubeconfig"],
            "verbs": ["get"],
        }
    ]


@pytest.mark.parametrize("name", VALUES_SETS)
def test_no_wildcards_secrets_or_escalation(name: str, tmp_path: Path) -> None:
    objs = render(VALUES_SETS[name], tmp_path)
    roles = [o for o in objs if o["kind"] in ("ClusterRole", "Role")]  # helm test's too
    for o in roles:
        for r in o["rules"]:
            assert "*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"]
            assert "serviceaccounts/token" not in r["resources"]
            if "configmaps" in r["resources"]:  # the learned admission limit: written, not read
                assert r["resources"] == ["configmaps"] and r["verbs"] == ["create", "patch"], r
            if "secrets" in r["resources"]:  # only the named region kubeconfigs, read-only
                assert r["resources"] == ["secrets"] and r["verbs"] == ["get"], r
                allowed = VALUES_SETS[name].get("rbac", {}).get("kubeconfigSecrets")
                assert allowed and r["resourceNames"] == allowed, r
            assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(r["verbs"])
            if "rbac.authorization.k8s.io" in r["apiGroups"]:  # the routers' namespaced Roles
                assert r["apiGroups"] == ["rbac.authorization.k8s.io"], r
                assert set(r["resources"]) <= {"roles", "rolebindings"}, r
            assert "update" not in r["verbs"]  # the operator patches (merge or apply), never PUTs


# ---- monitoring -----------------------------------------------------------------------------


def test_monitoring_objects_off_by_default(tmp_path: Path) -> None:
    kinds = {o["kind"] for o in render({}, tmp_path)}
    assert not {"ServiceMonitor", "PrometheusRule", "ConfigMap", "PodMonitor", "DaemonSet"} & kinds


def test_service_monitor_scrapes_the_operator_as_job_deepseek_operator(tmp_path: Path) -> None:
    objs = render(VALUES_SETS["cluster-ha-monitoring"], tmp_path)
    sm = one(objs, "ServiceMonitor")
    svc = one(objs, "Service")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # job label = the Service's label named by jobLabel = what the rules and dashboards select
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == "deepseek-operator"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == svc["spec"]["ports"][0]["name"] == "metrics"
    assert ep["honorLabels"] is True
    pod = one(objs, "Deployment")["spec"]["template"]
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_prometheus_rule_carries_the_generated_rules(tmp_path: Path) -> None:
    objs = render(VALUES_SETS["cluster-ha-monitoring"], tmp_path)
    pr = one(objs, "PrometheusRule")
    generated = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    assert pr["spec"] == generated
    alerts = [r for g in pr["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts and all(a["annotations"]["runbook_url"] for a in alerts)


MONITORING_KINDS = ("ServiceMonitor", "PrometheusRule", "PodMonitor")


def test_monitoring_labels_on_the_charts_objects_and_passed_to_the_operator(
    tmp_path: Path,
) -> None:
    """monitoring.labels reach the chart's ServiceMonitor, PrometheusRule and exporter
    PodMonitor (an object's own labels win) and, as --monitor-label flags the operator's own
    parser reads back, the PodMonitors and PrometheusRules the operator creates."""
    from deepseek_operator.cli import build_parser
    from deepseek_operator.operator_main import monitoring_settings

    values = VALUES_SETS["monitoring-labels"]
    objs = render(values, tmp_path)
    for kind in MONITORING_KINDS:
        labels = one(objs, kind)["metadata"]["labels"]
        assert labels["release"] == "kube-prometheus-stack", kind
        team = "ops" if kind == "ServiceMonitor" else "serving"
        assert labels["example.com/team"] == team, kind
        assert labels["app.kubernetes.io/managed-by"] == "Helm", kind
    args = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    settings = monitoring_settings(build_parser().parse_args(args))
    assert dict(settings.labels) == values["monitoring"]["labels"]
    assert settings.runbook_base_url == values["prometheusRule"]["runbookBaseUrl"]
    default_args = one(render({}, tmp_path), "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert not [a for a in default_args if a.startswith("--monitor-label")]


def _rules_text(spec: dict[str, Any]) -> str:
    return yaml.safe_dump(spec)


def test_prometheus_rule_runbook_base_and_operator_job_are_values(tmp_path: Path) -> None:
    """prometheusRule.runbookBaseUrl and .operatorJob replace the generated defaults in every
    alert, and nothing else changes."""
    from dashboards import rules
    from dashboards.queries import OPERATOR_JOB

    values = VALUES_SETS["monitoring-labels"]
    pr = one(render(values, tmp_path), "PrometheusRule")
    base = values["prometheusRule"]["runbookBaseUrl"].rstrip("/")
    alerts = [r for g in pr["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) == len(rules.alerts())
    for a in alerts:
        assert a["annotations"]["runbook_url"] == f"{base}/{a['alert']}.md"
    text = _rules_text(pr["spec"])
    assert f'job="{OPERATOR_JOB}"' not in text and rules.RUNBOOK_BASE not in text
    generated = (CHART / "files" / "prometheus-rules.yaml").read_text()
    assert text.count('job="dso-metrics"') == _rules_text(yaml.safe_load(generated)).count(
        f'job="{OPERATOR_JOB}"'
    )
    down = next(a for a in alerts if a["alert"] == "DeepSeekOperatorDown")
    assert down["expr"] == 'absent(up{job="dso-metrics"} == 1)'
    # back to the defaults: the generated file unchanged
    expected = yaml.safe_load(
        generated.replace(f'job="{OPERATOR_JOB}"', 'job="dso-metrics"').replace(
            rules.RUNBOOK_BASE, base
        )
    )
    assert pr["spec"] == expected


def test_operator_job_follows_the_service_monitors_job_by_default(tmp_path: Path) -> None:
    """Empty operatorJob: the job the chart's ServiceMonitor gives the operator (the Service's
    app.kubernetes.io/name, which nameOverride changes)."""
    objs = render(
        {
            "nameOverride": "dso",
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
        },
        tmp_path,
    )
    sm, svc = one(objs, "ServiceMonitor"), one(objs, "Service")
    job = svc["metadata"]["labels"][sm["spec"]["jobLabel"]]
    assert job == "dso"
    alerts = [r for g in one(objs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    down = next(a for a in alerts if a.get("alert") == "DeepSeekOperatorDown")
    assert down["expr"] == 'absent(up{job="dso"} == 1)'


def test_prometheus_rule_template_fails_when_the_generated_defaults_move(tmp_path: Path) -> None:
    """The template substitutes literal defaults; a generated file without them fails the
    render instead of silently ignoring the values."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    f = chart / "files" / "prometheus-rules.yaml"
    f.write_text(f.read_text().replace("blob/main/docs/runbooks", "tree/main/runbooks"))
    res = subprocess.run(
        [helm_binary(), "template", RELEASE, str(chart), "--set", "prometheusRule.enabled=true"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode != 0
    assert "update templates/prometheusrule.yaml" in res.stderr


def test_values_schema_rejects_bad_monitoring_values(tmp_path: Path) -> None:
    assert 'monitoring.labels: "re lease" is not a Kubernetes label key' in render_error(
        {"monitoring": {"labels": {"re lease": "x"}}}, tmp_path
    )
    assert "labels" in render_error({"monitoring": {"labels": {"release": "a b"}}}, tmp_path)
    assert "runbookBaseUrl" in render_error(
        {"prometheusRule": {"enabled": True, "runbookBaseUrl": "wiki/runbooks"}}, tmp_path
    )
    assert "operatorJob" in render_error(
        {"prometheusRule": {"enabled": True, "operatorJob": 'x"} or vector(1)'}}, tmp_path
    )


def test_chart_defaults_equal_the_generators(tmp_path: Path) -> None:
    from dashboards import rules

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["prometheusRule"]["runbookBaseUrl"] == rules.RUNBOOK_BASE
    template = (CHART / "templates" / "prometheusrule.yaml").read_text()
    assert f'"{rules.RUNBOOK_BASE}/"' in template
    # the label-key check of monitoring.labels is the operator's own (--monitor-label)
    from deepseek_operator.api.spec import LABEL_KEY

    assert f"`{LABEL_KEY}`" in (CHART / "templates" / "deployment.yaml").read_text()


def test_dashboard_configmaps_for_the_grafana_sidecar(tmp_path: Path) -> None:
    objs = render(VALUES_SETS["namespaced-ha-monitoring"], tmp_path)
    cms = by_kind(objs, "ConfigMap")
    assert len(cms) == len(DASHBOARDS)
    for cm in cms:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == "grafana"
        ((key, text),) = cm["data"].items()
        uid = key.removesuffix(".json")
        generated = ROOT / "dashboards" / "generated" / key
        assert json.loads(text) == json.loads(generated.read_text())
        assert json.loads(text)["uid"] == uid
    assert {next(iter(c["data"])) for c in cms} == {f"{d.uid}.json" for d in DASHBOARDS}


def test_dashboard_configmaps_carry_the_monitoring_labels_and_the_sidecar_label_wins(
    tmp_path: Path,
) -> None:
    values = {
        "dashboards": {"enabled": True},
        "monitoring": {"labels": {"release": "kube-prometheus-stack", "grafana_dashboard": "0"}},
    }
    cms = by_kind(render(values, tmp_path), "ConfigMap")
    assert len(cms) == len(DASHBOARDS)
    for cm in cms:
        assert cm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_nvml_exporter_daemonset(tmp_path: Path) -> None:
    objs = render(VALUES_SETS["nvml-exporter"], tmp_path)
    ds = one(objs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    (c,) = pod["containers"]
    assert c["command"] == ["python", "-m", "deepseek_serving.nvml_exporter"]
    assert "--port=9400" in c["args"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    pm = one(objs, "PodMonitor")
    assert pm["spec"]["podMetricsEndpoints"][0]["honorLabels"] is True
    assert (
        pm["spec"]["selector"]["matchLabels"].items()
        <= ds["spec"]["template"]["metadata"]["labels"].items()
    )
    # the operator's own selector must not pick up exporter pods
    op = one(objs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert not op.items() <= ds["spec"]["template"]["metadata"]["labels"].items()


def test_nvml_exporter_command_matches_the_module() -> None:
    """The default command runs a module that exists and takes --port."""
    import deepseek_serving.nvml_exporter as exporter

    src = Path(exporter.__file__).read_text()
    assert '"--port"' in src
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["nvmlExporter"]["command"][-1] == exporter.__name__
    assert values["nvmlExporter"]["port"] == exporter.DEFAULT_PORT
