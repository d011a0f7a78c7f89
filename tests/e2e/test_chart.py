"""The Helm chart on the local cluster (real kube-apiserver with RBAC authorization):

1. every values set of tests/unit/test_chart.py, rendered by `helm template`, is accepted by the
   API server's own validation (`kubectl apply --dry-run=server`: OpenAPI schemas, CRD
   schemas, admission);
2. `helm install` with the operator Deployment scaled to 0 (no image can run here), then the
   operator run locally as `deepseek-operator run` with a kubeconfig holding a token of the
   chart's ServiceAccount (TokenRequest), so every API call it makes goes through the chart's
   RBAC: a DeepSeekDeployment gets its engine Deployment and its status, and its member
   region is health-checked through a kubeconfig Secret, without a single 403, in namespaced
   mode (Role per namespace + Kopf peering) and in cluster mode (ClusterRole); under the same
   RBAC, engine pods get HF_TOKEN from a Secret, imagePullSecrets, a ServiceAccount, a
   RuntimeClass and a PriorityClass, and no token reaches the status, Events or the log;
3. `helm test` (the chart's hook pod, `deepseek-operator selftest`, run by the test bed's hook
   runner under the hook's own ServiceAccount) passes while the operator peers and fails,
   naming the peering, when no operator is alive;
4. what the operator does not need is denied to that ServiceAccount (`kubectl auth can-i`
   with its own token: Secrets other than the named region kubeconfig, ClusterRoles and
   bindings, escalate or bind on Roles, tokens, other namespaces, ...); the routers' Roles and
   RoleBindings (spec.router) it makes, and deletes, under these rules;
5. with the Prometheus Operator's real CRDs (scripts/fetch-monitoring-crds.sh) installed for this
   module: the chart's ServiceMonitor and PrometheusRule and the operator's PodMonitor and
   PrometheusRule are accepted and carry monitoring.labels / spec.monitoring.labels.

The operator in cluster mode would reconcile every DeepSeekDeployment of the shared cluster,
so the cluster-mode run watches only the test namespace (`--namespace`, standalone) while
holding the cluster-mode ClusterRole; cluster-wide peering is checked with `can-i`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shlex
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from deepseek_operator.api.spec import DEFAULT_IMAGE
from kubernetes import client

from testbed.cluster import RegionInfo
from tests.e2e.conftest import PRIMARY
from tests.e2e.operator_process import OperatorProcess, install_crds
from tests.unit.test_chart import CHART, VALUES_SETS, helm_binary

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
DSD_NAME = "chart-e2e"
# monitoring.labels of the chart (on its ServiceMonitor and PrometheusRule, and passed to the
# operator as --monitor-label) and spec.monitoring.labels of the DeepSeekDeployment.
MONITOR_LABELS = {"release": "kube-prometheus-stack"}
DSD_MONITOR_LABELS = {"team": "serving"}
RUNBOOKS = "https://wiki.example.com/deepseek/runbooks"
# A member region reached through a kubeconfig Secret (here the same cluster again, under the
# name "mirror"): the chart grants `get` on this Secret by name (rbac.kubeconfigSecrets).
MEMBER_SECRET = "mirror-kubeconfig"
CRD_RESOURCE = "customresourcedefinitions.apiextensions.k8s.io"
CRD_NAME = "deepseekdeployments.serving.deepseek.dev"
# `... cannot list resource "namespaces" in API group "" at the cluster scope`
FORBIDDEN = re.compile(r'cannot (\w+) resource "([^"]+)" in API group "([^"]*)"')
KOPF_SCANNING = {
    (verb, resource, group)
    for verb in ("list", "watch")
    for resource, group in (
        ("namespaces", ""),
        ("customresourcedefinitions", "apiextensions.k8s.io"),
    )
}


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    prometheus_url: str
    bindir: Path

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        stdin: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        res = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=120, check=False
        )
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)}:\n{res.stdout}\n{res.stderr}")
        return res

    def helm(self, *args: str) -> str:
        cmd = [helm_binary(), f"--kubeconfig={self.kubeconfig}", *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)}:\n{res.stdout}\n{res.stderr}")
        return res.stdout

    def get(self, *args: str) -> dict[str, Any] | None:
        res = self.kubectl("get", *args, "-o", "json", check=False)
        if res.returncode != 0:
            if "NotFound" in res.stderr:
                return None
            raise AssertionError(res.stderr)
        return json.loads(res.stdout)  # type: ignore[no-any-return]


def monitoring_crd_files() -> list[Path]:
    """The Prometheus Operator's own CRDs, fetched from its Go module by
    scripts/fetch-monitoring-crds.sh (make tools)."""
    from testbed.cluster import cache_dir

    current = cache_dir() / "monitoring-crds" / "current"
    files = sorted(current.glob("monitoring.coreos.com_*.yaml"))
    if len(files) != len(MONITORING_KINDS):
        msg = f"no Prometheus Operator CRDs in {current}: run scripts/fetch-monitoring-crds.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return files


@pytest.fixture(scope="module")
def cluster(region: RegionInfo, api_clients: dict[str, client.ApiClient]) -> Iterator[Cluster]:
    """The primary region of the local cluster (conftest.py starts or reuses it), with the
    project's CRDs installed as the chart ships them, and the Prometheus Operator's real
    PodMonitor, ServiceMonitor and PrometheusRule CRDs for this module only: the other suites'
    operators create monitoring objects only where these exist, so they are removed afterwards
    (those that were already there are left alone) and the other suites run as before."""
    from testbed.cluster import cache_dir

    helm_binary()
    install_crds(api_clients[PRIMARY])
    c = Cluster(region.kubeconfig, region.prometheus_url, cache_dir() / "bin")
    names = [f"{k.lower()}s.monitoring.coreos.com" for k in sorted(MONITORING_KINDS)]
    ours = [n for n in names if c.get("crd", n) is None]
    files = monitoring_crd_files()
    try:
        for f in files:
            c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
        c.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in names)
        )
        yield c
    finally:
        if ours:
            c.kubectl("delete", "crd", *ours, "--ignore-not-found", "--timeout=120s", check=False)


def _suffix() -> str:
    return secrets.token_hex(3)


@pytest.fixture
def namespaces(cluster: Cluster) -> Iterator[list[str]]:
    """Namespaces a test creates; deleted afterwards (without waiting)."""
    made: list[str] = []
    yield made
    for ns in made:
        cluster.kubectl(
            "delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False
        )


def _values_for(name: str, suffix: str) -> dict[str, Any]:
    """A values set with namespaces made unique for a shared cluster."""
    values: dict[str, Any] = json.loads(json.dumps(VALUES_SETS[name]))
    op = values.setdefault("operator", {})
    op["watchNamespaces"] = [f"{ns}-{suffix}" for ns in op.get("watchNamespaces", [])]
    op.setdefault("peering", {})["name"] = f"dso-{suffix}"
    dash = values.get("dashboards", {})
    if dash.get("namespace"):
        dash["namespace"] = f"{dash['namespace']}-{suffix}"
    return values


# ---- 1. rendered objects pass the API server's validation -----------------------------------


@pytest.mark.parametrize("name", VALUES_SETS)
def test_rendered_chart_passes_server_side_validation(
    cluster: Cluster, namespaces: list[str], tmp_path: Path, name: str
) -> None:
    suffix = _suffix()
    release_ns = f"dso-dry-{suffix}"
    values = _values_for(name, suffix)
    f = tmp_path / "values.yaml"
    f.write_text(yaml.safe_dump(values))
    out = cluster.helm(
        "template", f"dry-{suffix}", str(CHART), "--namespace", release_ns, "--values", str(f)
    )
    objs = [o for o in yaml.safe_load_all(out) if o]
    needed = {release_ns} | {o["metadata"].get("namespace") for o in objs} - {None}
    for ns in sorted(needed):
        cluster.kubectl("create", "namespace", ns)
        namespaces.append(ns)
    # Every object, the Prometheus Operator kinds included (their real CRDs are installed; the
    # PrometheusRule's PromQL is checked by promtool in tests/unit/test_rules.py).
    checked = objs
    # A Pod is admitted only when its ServiceAccount exists (helm test creates the hook's first,
    # hook weight -1); a dry run creates nothing, so create it for real.
    for pod in (o for o in checked if o["kind"] == "Pod"):
        cluster.kubectl(
            "create", "serviceaccount", pod["spec"]["serviceAccountName"],
            "-n", pod["metadata"]["namespace"],
        )  # fmt: skip
    res = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        stdin="\n---\n".join(yaml.safe_dump(o) for o in checked),
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("(server dry run)") == len(checked), res.stdout


def test_operator_pod_is_admitted_under_the_restricted_pod_security_standard(
    cluster: Cluster, namespaces: list[str]
) -> None:
    """The API server's PodSecurity admission, enforcing "restricted" on the namespace, admits
    the chart's operator pod as rendered, and rejects it without the container's security
    context (so the namespace label is enforced, and the check can fail); it admits the
    `helm test` pod as rendered too."""
    suffix = _suffix()
    ns = f"dso-pss-{suffix}"
    cluster.kubectl("create", "namespace", ns)
    namespaces.append(ns)
    cluster.kubectl(
        "label",
        "namespace",
        ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )
    out = cluster.helm("template", f"pss-{suffix}", str(CHART), "--namespace", ns)
    dep = next(o for o in yaml.safe_load_all(out) if o and o["kind"] == "Deployment")
    template = dep["spec"]["template"]
    cluster.kubectl("create", "serviceaccount", template["spec"]["serviceAccountName"], "-n", ns)

    def admit(spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"operator-{suffix}", "namespace": ns, **template["metadata"]},
            "spec": spec,
        }
        return cluster.kubectl(
            "create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(pod), check=False
        )

    res = admit(template["spec"])
    assert res.returncode == 0, res.stderr
    assert "would violate" not in res.stderr, res.stderr
    loose = json.loads(json.dumps(template["spec"]))
    for c in loose["containers"]:
        c.pop("securityContext", None)
    res = admit(loose)
    assert res.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in res.stderr, res.stderr
    # the `helm test` pod too, as rendered
    hook = next(o for o in yaml.safe_load_all(out) if o and o["kind"] == "Pod")
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "test"
    cluster.kubectl("create", "serviceaccount", hook["spec"]["serviceAccountName"], "-n", ns)
    res = cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(hook), check=False
    )
    assert res.returncode == 0 and "would violate" not in res.stderr, res.stderr


# ---- 2. install, then run the operator under the chart's RBAC --------------------------------


def _sa_kubeconfig(cluster: Cluster, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig for the ServiceAccount: the admin kubeconfig's server and CA, and a token
    from the TokenRequest API."""
    token = cluster.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    ctx_name = admin.get("current-context") or admin["contexts"][0]["name"]
    ctx = next(c for c in admin["contexts"] if c["name"] == ctx_name)["context"]
    cl = dict(next(c for c in admin["clusters"] if c["name"] == ctx["cluster"])["cluster"])
    if "certificate-authority" in cl:
        ca = Path(cl.pop("certificate-authority"))
        if not ca.is_absolute():
            ca = cluster.kubeconfig.parent / ca
        cl["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": cl}],
                "users": [{"name": sa, "user": {"token": token}}],
                "contexts": [{"name": sa, "context": {"cluster": "local", "user": sa}}],
                "current-context": sa,
            }
        )
    )
    path.chmod(0o600)
    return path


@dataclass
class Installed:
    cluster: Cluster
    mode: str
    release: str
    release_ns: str
    app_ns: str
    peering: str
    sa: str
    kubeconfig: Path  # the ServiceAccount's


@pytest.fixture(scope="module", params=["namespaced", "cluster"])
def installed(
    request: pytest.FixtureRequest, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    mode = request.param
    suffix = _suffix()
    release, release_ns, app_ns = f"dso-{suffix}", f"dso-sys-{suffix}", f"dso-app-{suffix}"
    for ns in (release_ns, app_ns):
        cluster.kubectl("create", "namespace", ns)
    tmp = tmp_path_factory.mktemp(f"chart-{mode}")
    values: dict[str, Any] = {
        "replicaCount": 0,
        "operator": {"peering": {"enabled": True, "name": f"dso-{suffix}"}},
        "rbac": {"kubeconfigSecrets": [MEMBER_SECRET]},
        "monitoring": {"labels": MONITOR_LABELS},
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True, "runbookBaseUrl": RUNBOOKS},
    }
    if mode == "namespaced":
        values["operator"]["watchNamespaces"] = [app_ns]
    (tmp / "values.yaml").write_text(yaml.safe_dump(values))
    try:
        cluster.helm(
            "install",
            release,
            str(CHART),
            "--namespace",
            release_ns,
            "--values",
            str(tmp / "values.yaml"),
            # The CRD exists already (install_crds), as after an install by an older chart.
            "--take-ownership",
            "--wait",
            "--timeout=2m",
        )
        sa = f"{release}-deepseek-operator"
        kubeconfig = _sa_kubeconfig(cluster, release_ns, sa, tmp / "sa.kubeconfig")
        yield Installed(cluster, mode, release, release_ns, app_ns, f"dso-{suffix}", sa, kubeconfig)
    finally:
        # A DeepSeekDeployment left with the operator's finalizer would block its namespace.
        for dsd in cluster.kubectl(
            "get", "dsd", "-n", app_ns, "-o", "name", check=False
        ).stdout.split():
            cluster.kubectl(
                "patch", dsd, "-n", app_ns, "--type=merge", "-p",
                '{"metadata":{"finalizers":null}}', check=False,
            )  # fmt: skip
        cluster.kubectl("delete", "dsd", "--all", "-n", app_ns, "--wait=false", check=False)
        res = subprocess.run(
            [helm_binary(), f"--kubeconfig={cluster.kubeconfig}", "uninstall", release,
             "--namespace", release_ns, "--wait", "--timeout=1m"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        for ns in (release_ns, app_ns):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        # Without the simulated fleet no one marks terminating engine pods drained, and kwok
        # keeps them (and so the namespace) forever: remove them once their owners are gone.
        deadline = time.monotonic() + 60
        while cluster.get("namespace", app_ns) and time.monotonic() < deadline:
            cluster.kubectl(
                "delete", "pods", "--all", "-n", app_ns, "--grace-period=0", "--force", check=False
            )
            time.sleep(2)


def _dsd_manifest(namespace: str) -> str:
    doc = yaml.safe_load((ROOT / "examples" / "deepseek-r1-distill-7b.yaml").read_text())
    doc["metadata"] = {"name": DSD_NAME, "namespace": namespace}
    doc["spec"]["scaling"]["minReplicas"] = 1
    doc["spec"]["scaling"]["maxReplicas"] = 2
    doc["spec"]["regions"] = [
        {"name": "local", "role": "primary", "weight": 100},
        {"name": "mirror", "role": "standby", "weight": 0,
         "kubeconfigSecretRef": {"name": MEMBER_SECRET}},
    ]  # fmt: skip
    doc["spec"]["failover"] = {"enabled": True, "healthCheckIntervalSeconds": 2}
    doc["spec"]["monitoring"] = {"podMonitor": True, "labels": DSD_MONITOR_LABELS}
    # The router's Role is granted by the operator under the chart's RBAC: Kubernetes refuses
    # it unless the operator holds what it grants (pods get/list/watch).
    doc["spec"]["router"] = {"enabled": True, "replicas": 2}
    return yaml.safe_dump(doc)


def _chart_operator_flags(installed: Installed) -> list[str]:
    """The monitoring flags the chart gives the operator container (replicas 0 here), for the
    operator run locally."""
    dep = installed.cluster.get(
        "deployment", f"{installed.release}-deepseek-operator", "-n", installed.release_ns
    )
    assert dep is not None
    args: list[str] = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    flags = [a for a in args if a.startswith(("--monitor-label=", "--runbook-base-url="))]
    assert flags == [
        *(f"--monitor-label={k}={v}" for k, v in sorted(MONITOR_LABELS.items())),
        f"--runbook-base-url={RUNBOOKS}",
    ]
    return flags


@pytest.fixture
def operator_run(installed: Installed, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`deepseek-operator run` as a local process with the ServiceAccount's kubeconfig; yields
    its log file."""
    # this checkout's code, whatever the shared environment's editable install points at
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(ROOT / "operator"), str(ROOT / "serving")])
    )
    # Kopf's login (kopf.login_via_client) reads $KUBECONFIG as the kubernetes library saw it at
    # import, not --kubeconfig: without this it finds no credentials at all.
    monkeypatch.setenv("KUBECONFIG", str(installed.kubeconfig))
    # namespaced mode joins the chart's KopfPeering in the watched namespace; the cluster-mode
    # run watches one namespace too (see the module docstring), where no KopfPeering exists
    peering = (
        ["--peering", installed.peering] if installed.mode == "namespaced" else ["--standalone"]
    )
    op = OperatorProcess(
        installed.kubeconfig,
        namespaces=[installed.app_ns],
        prometheus_url=installed.cluster.prometheus_url,
        name=f"chart-{installed.mode}",
        extra=[*peering, *_chart_operator_flags(installed), "--verbose"],
    ).start()
    try:
        yield op.log_path
    finally:
        op.stop()


def _wait_for(what: str, check: Any, timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}; operator log:\n{log.read_text()[-6000:]}")


def _secret_values(*kubeconfigs: Path) -> dict[str, str]:
    """Pieces of every credential in these kubeconfigs that must never be printed: the client
    key (base64 as in the Secret, and a line of its PEM body) and the bearer token's signature."""
    found: dict[str, str] = {}
    for path in kubeconfigs:
        for u in yaml.safe_load(path.read_text())["users"]:
            user = u["user"]
            if "client-key-data" in user:
                b64 = user["client-key-data"]
                found[f"{u['name']} client key (base64)"] = b64[16:80]
                pem = base64.b64decode(b64).decode()
                body = max(pem.splitlines(), key=len)
                found[f"{u['name']} client key (PEM)"] = body[:48]
            if "token" in user:
                found[f"{u['name']} token"] = user["token"].rsplit(".", 1)[-1][:48]
    assert found, f"no credential found in {kubeconfigs}"
    return found


def test_operator_reconciles_under_the_chart_rbac(installed: Installed, operator_run: Path) -> None:
    c, ns = installed.cluster, installed.app_ns
    c.kubectl(
        "create", "secret", "generic", MEMBER_SECRET, "-n", ns,
        f"--from-file=kubeconfig={c.kubeconfig}",
    )  # fmt: skip
    c.kubectl("apply", "-f", "-", stdin=_dsd_manifest(ns))

    dep = _wait_for(
        "the engine Deployment",
        lambda: c.get("deployment", f"{DSD_NAME}-blue", "-n", ns),
        120,
        operator_run,
    )
    assert dep["metadata"]["ownerReferences"][0]["name"] == DSD_NAME
    assert dep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "deepseek-operator"
    # the operator read this API server's version under the chart's identity: 1.30+, so the
    # engine's preStop is the kubelet's sleep action (below 1.30: `exec: sleep N`)
    (engine,) = dep["spec"]["template"]["spec"]["containers"]
    assert set(engine["lifecycle"]["preStop"]) == {"sleep"}, engine["lifecycle"]
    assert re.search(r"kube_version=v1\.\d+\.\d+\S* pre_stop=sleep", operator_run.read_text())

    def status_written() -> dict[str, Any] | None:
        dsd = c.get("dsd", DSD_NAME, "-n", ns)
        if dsd and dsd.get("status", {}).get("observedGeneration") == dsd["metadata"]["generation"]:
            return dsd
        return None

    dsd = _wait_for("status.observedGeneration", status_written, 120, operator_run)
    assert dsd["status"]["phase"] and dsd["status"]["conditions"]
    assert f"{DSD_NAME}" in (c.get("service", DSD_NAME, "-n", ns) or {}).get("metadata", {}).get(
        "name", ""
    )

    # The member region was read through its kubeconfig Secret under the chart's RBAC: its
    # check reports what it found there (this DeepSeekDeployment), not a refused Secret.
    def mirror_checked() -> dict[str, Any] | None:
        dsd = c.get("dsd", DSD_NAME, "-n", ns) or {}
        regions = {r["name"]: r for r in dsd.get("status", {}).get("regions", [])}
        mirror = regions.get("mirror", {})
        return mirror if mirror.get("lastCheckTime") else None

    _check_monitoring_objects(installed, operator_run)
    _check_router_objects(installed, operator_run)

    mirror = _wait_for("the member region's health check", mirror_checked, 60, operator_run)
    assert "Secret" not in mirror["message"] and "403" not in mirror["message"], mirror
    events = c.get("events", "-n", ns, f"--field-selector=involvedObject.name={DSD_NAME}")
    assert events and any(e["source"].get("component") for e in events["items"]), (
        "no Event recorded"
    )
    log = operator_run.read_text()
    assert "reconcile_failed" not in log, log[-6000:]
    denied = set(FORBIDDEN.findall(log))
    # Kopf's optional cluster scanning (settings.scanning) falls back to the given namespaces and
    # the resources found at start when it may not list namespaces/CRDs, and says so in a
    # warning; nothing else may be refused.
    assert denied <= KOPF_SCANNING, f"operator refused {denied - KOPF_SCANNING}:\n{log[-6000:]}"
    # No credential, neither the member region's kubeconfig Secret nor the operator's own
    # token, is printed in its (verbose) log, the Events or the status.
    every_event = c.get("events", "-n", ns) or {}
    now = c.get("dsd", DSD_NAME, "-n", ns) or {}
    surfaces = {
        "operator log": log,
        "events": json.dumps(every_event),
        "status": json.dumps(now.get("status", {})),
    }
    for what, value in _secret_values(c.kubeconfig, installed.kubeconfig).items():
        for where, text in surfaces.items():
            assert value not in text, f"the {what} appears in the {where}"
    if installed.mode == "namespaced":
        peering = c.get("kopfpeering", installed.peering, "-n", ns)
        assert peering and peering.get("status"), "the operator did not join the Kopf peering"

    # deleting the resource: the operator removes its finalizer, garbage collection the rest
    c.kubectl("delete", "dsd", DSD_NAME, "-n", ns, "--wait=false")
    _wait_for(
        "the DeepSeekDeployment to go", lambda: c.get("dsd", DSD_NAME, "-n", ns) is None, 60,
        operator_run,
    )  # fmt: skip


ROUTER_KINDS = ("deployment", "serviceaccount", "role", "rolebinding", "poddisruptionbudget")


def _check_router_objects(installed: Installed, log: Path) -> None:
    """The router's objects, its Role and RoleBinding included, made under the chart's RBAC;
    then the router turned off and every one of them deleted under it."""
    c, ns = installed.cluster, installed.app_ns
    router = f"{DSD_NAME}-router"
    for kind in ROUTER_KINDS:
        obj = _wait_for(f"the router's {kind}", lambda k=kind: c.get(k, router, "-n", ns), 60, log)
        assert obj["metadata"]["ownerReferences"][0]["name"] == DSD_NAME
    role = c.get("role", router, "-n", ns)
    assert role is not None and role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    c.kubectl(
        "patch", "dsd", DSD_NAME, "-n", ns, "--type=merge",
        "-p", json.dumps({"spec": {"router": {"enabled": False}}}),
    )  # fmt: skip
    for kind in ROUTER_KINDS:
        _wait_for(
            f"the router's {kind} to go",
            lambda k=kind: c.get(k, router, "-n", ns) is None,
            60,
            log,
        )


def _check_monitoring_objects(installed: Installed, log: Path) -> None:
    """The Prometheus Operator objects, accepted by its real CRDs, carry the labels a
    kube-prometheus-stack Prometheus selects them by: the operator's PodMonitor and
    PrometheusRule (created under the chart's RBAC) with the chart's monitoring.labels and the
    resource's spec.monitoring.labels, and the chart's own ServiceMonitor and PrometheusRule."""
    c, ns = installed.cluster, installed.app_ns
    for kind in ("podmonitor", "prometheusrule"):
        obj = _wait_for(
            f"the operator's {kind}", lambda k=kind: c.get(k, DSD_NAME, "-n", ns), 60, log
        )
        labels = obj["metadata"]["labels"]
        assert labels.items() >= {**MONITOR_LABELS, **DSD_MONITOR_LABELS}.items(), labels
        assert labels["app.kubernetes.io/managed-by"] == "deepseek-operator"
        assert obj["metadata"]["ownerReferences"][0]["name"] == DSD_NAME
    rule = c.get("prometheusrule", DSD_NAME, "-n", ns)
    assert rule is not None
    urls = {r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert all(u.startswith(f"{RUNBOOKS}/") for u in urls), urls
    pm = c.get("podmonitor", DSD_NAME, "-n", ns)
    assert pm is not None and pm["spec"]["podMetricsEndpoints"][0]["relabelings"]
    for kind in ("servicemonitor", "prometheusrule"):
        obj = c.get(kind, f"{installed.release}-deepseek-operator", "-n", installed.release_ns)
        assert obj is not None, kind
        assert obj["metadata"]["labels"].items() >= MONITOR_LABELS.items(), obj["metadata"]
    chart_rule = c.get(
        "prometheusrule", f"{installed.release}-deepseek-operator", "-n", installed.release_ns
    )
    assert chart_rule is not None
    alerts = [r for g in chart_rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts and all(a["annotations"]["runbook_url"].startswith(RUNBOOKS) for a in alerts)
    # what the operator would write, checked strictly (unknown fields are errors, not pruned)
    from deepseek_operator.api.resource import DeepSeekDeployment
    from deepseek_operator.desired import MonitoringSettings, pod_monitor, prometheus_rule

    dsd = DeepSeekDeployment.from_k8s(c.get("dsd", DSD_NAME, "-n", ns) or {})
    settings = MonitoringSettings(labels=MONITOR_LABELS, runbook_base_url=RUNBOOKS)
    for obj in (pod_monitor(dsd, settings), prometheus_rule(dsd, settings)):
        obj["metadata"].pop("ownerReferences", None)
        obj["metadata"]["name"] = f"{DSD_NAME}-dry"
        res = c.kubectl(
            "apply", "--dry-run=server", "--validate=strict", "-f", "-",
            stdin=yaml.safe_dump(obj), check=False,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr


POD_DSD = "chart-e2e-pod"
PRIORITY_VALUE = 100000


def _pod_settings_manifest(namespace: str, plain_token: str, priority: str, runtime: str) -> str:
    doc = yaml.safe_load((ROOT / "examples" / "deepseek-r1-distill-7b.yaml").read_text())
    doc["metadata"] = {"name": POD_DSD, "namespace": namespace}
    doc["spec"]["scaling"].update(minReplicas=1, maxReplicas=1)
    doc["spec"]["engine"] = {
        "env": [
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
            },
            # what not to do, and still never printed: a token as a literal value
            {"name": "DEBUG_TOKEN", "value": plain_token},
        ],
        "imagePullSecrets": [{"name": "ghcr-pull"}],
        "serviceAccountName": "deepseek-engine",
        "runtimeClassName": runtime,
    }
    doc["spec"]["placement"]["priorityClassName"] = priority
    return yaml.safe_dump(doc)


def test_engine_pod_settings_and_secrets_under_the_chart_rbac(
    installed: Installed, operator_run: Path
) -> None:
    """HF_TOKEN from a Secret, imagePullSecrets, a ServiceAccount, a RuntimeClass and a
    PriorityClass reach the engine pod template, with the chart's RBAC (which grants no read of
    those Secrets: the kubelet reads them, not the operator); the API server admits the pods (it
    refuses a pod naming a missing ServiceAccount, PriorityClass or RuntimeClass); and neither
    the Secret's value nor a token written as a plain env value appears in the resource's status,
    the namespace's Events or the operator's verbose log."""
    c, ns = installed.cluster, installed.app_ns
    suffix = _suffix()
    secret_token = f"hf_{secrets.token_hex(16)}"
    plain_token = f"plain_{secrets.token_hex(16)}"
    priority, runtime = f"dso-serving-{suffix}", f"nvidia-{suffix}"
    c.kubectl(
        "create", "secret", "generic", "hf-token", "-n", ns, f"--from-literal=token={secret_token}"
    )
    c.kubectl(
        "create", "secret", "docker-registry", "ghcr-pull", "-n", ns, "--docker-server=ghcr.io",
        "--docker-username=puller", f"--docker-password={secrets.token_hex(8)}",
    )  # fmt: skip
    c.kubectl("create", "serviceaccount", "deepseek-engine", "-n", ns)
    cluster_scoped = [
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": priority},
            "value": PRIORITY_VALUE,
            "description": "chart e2e: engine pods",
        },
        {
            "apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass",
            "metadata": {"name": runtime},
            "handler": "nvidia",
        },
    ]
    c.kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": cluster_scoped}),
    )
    try:
        c.kubectl(
            "apply", "-f", "-", stdin=_pod_settings_manifest(ns, plain_token, priority, runtime)
        )
        dep = _wait_for(
            "the engine Deployment",
            lambda: c.get("deployment", f"{POD_DSD}-blue", "-n", ns),
            120,
            operator_run,
        )
        pod_spec = dep["spec"]["template"]["spec"]
        (engine,) = pod_spec["containers"]
        env = {e["name"]: e for e in engine["env"]}
        assert env["HF_TOKEN"] == {
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
        }
        assert engine["image"] == DEFAULT_IMAGE
        assert pod_spec["imagePullSecrets"] == [{"name": "ghcr-pull"}]
        assert pod_spec["serviceAccountName"] == "deepseek-engine"
        assert pod_spec["runtimeClassName"] == runtime
        assert pod_spec["priorityClassName"] == priority

        def engine_pod() -> dict[str, Any] | None:
            pods = c.get("pods", "-n", ns, "-l", f"serving.deepseek.dev/deployment={POD_DSD}")
            items = (pods or {}).get("items", [])
            return items[0] if items else None

        pod = _wait_for("an engine pod the API server admitted", engine_pod, 120, operator_run)
        # the admission plugins resolved every name: the PriorityClass's value is on the pod
        assert pod["spec"]["priority"] == PRIORITY_VALUE
        assert pod["spec"]["serviceAccountName"] == "deepseek-engine"
        assert pod["spec"]["runtimeClassName"] == runtime

        def status_written() -> dict[str, Any] | None:
            dsd = c.get("dsd", POD_DSD, "-n", ns)
            st = (dsd or {}).get("status", {})
            return (
                dsd
                if dsd and st.get("observedGeneration") == dsd["metadata"]["generation"]
                else None
            )

        dsd = _wait_for("status.observedGeneration", status_written, 120, operator_run)
        log = operator_run.read_text()
        assert "reconcile_failed" not in log, log[-6000:]
        denied = set(FORBIDDEN.findall(log))
        assert denied <= KOPF_SCANNING, f"operator refused {denied - KOPF_SCANNING}:\n{log[-6000:]}"
        surfaces = {
            "operator log": log,
            "events": json.dumps(c.get("events", "-n", ns) or {}),
            "status": json.dumps(dsd.get("status", {})),
        }
        for what, value in (("Secret's value", secret_token), ("plain env value", plain_token)):
            for where, text in surfaces.items():
                assert value not in text, f"the {what} appears in the {where}"
        # the verbose log did say what Kopf was doing, without the object
        assert "is in progress: <object not logged" in log

        c.kubectl("delete", "dsd", POD_DSD, "-n", ns, "--wait=false")
        _wait_for(
            "the DeepSeekDeployment to go", lambda: c.get("dsd", POD_DSD, "-n", ns) is None, 60,
            operator_run,
        )  # fmt: skip
    finally:
        c.kubectl(
            "delete", "priorityclass", priority, "--ignore-not-found", "--wait=false", check=False
        )
        c.kubectl(
            "delete", "runtimeclass", runtime, "--ignore-not-found", "--wait=false", check=False
        )


# ---- helm test: the chart's hook pod, run by the test bed (testbed/sim/hooks.py) --------------


def _helm_test(installed: Installed) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`helm test RELEASE` and the test pod as it ended (phase, termination message)."""
    c = installed.cluster
    res = subprocess.run(
        [helm_binary(), f"--kubeconfig={c.kubeconfig}", "test", installed.release,
         "--namespace", installed.release_ns, "--timeout=2m"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    pod = c.get("pod", f"{installed.release}-deepseek-operator-test", "-n", installed.release_ns)
    assert pod is not None, f"no test pod:\n{res.stdout}\n{res.stderr}"
    return res, pod


def _message(pod: dict[str, Any]) -> str:
    (cs,) = pod["status"]["containerStatuses"]
    return str(cs["state"]["terminated"].get("message", ""))


def _peering_object(installed: Installed) -> dict[str, Any] | None:
    if installed.mode == "namespaced":
        return installed.cluster.get("kopfpeering", installed.peering, "-n", installed.app_ns)
    return installed.cluster.get("clusterkopfpeering", installed.peering)


def test_helm_test_passes_while_the_operator_peers(
    installed: Installed, operator_run: Path
) -> None:
    if installed.mode == "cluster":
        pytest.skip("the cluster-mode run is standalone (module docstring): no cluster peer")
    from deepseek_operator.selftest import live_peers

    _wait_for(
        "the operator's keep-alive in the KopfPeering",
        lambda: live_peers((_peering_object(installed) or {}).get("status"), datetime.now(UTC)),
        60,
        operator_run,
    )
    res, pod = _helm_test(installed)
    msg = _message(pod)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{msg}"
    assert "Succeeded" in res.stdout, res.stdout
    assert pod["status"]["phase"] == "Succeeded"
    assert "PASS api: deepseekdeployments.serving.deepseek.dev is served" in msg, msg
    assert f"PASS operator: 1 live operator(s) in KopfPeering {installed.app_ns}/" in msg, msg
    # the hook's ServiceAccount and RBAC are gone once the test passed (hook-succeeded)
    name = f"{installed.release}-deepseek-operator-test"
    assert installed.cluster.get("serviceaccount", name, "-n", installed.release_ns) is None
    assert installed.cluster.get("role", name, "-n", installed.release_ns) is None


def test_helm_test_fails_without_a_live_operator(installed: Installed) -> None:
    """No operator runs (the previous test's stopped; Kopf removes its peer entry on exit)."""
    from deepseek_operator.selftest import live_peers

    deadline = time.monotonic() + 90
    while live_peers((_peering_object(installed) or {}).get("status"), datetime.now(UTC)):
        assert time.monotonic() < deadline, "a peer stayed alive with no operator running"
        time.sleep(2)
    res, pod = _helm_test(installed)
    msg = _message(pod)
    assert res.returncode != 0, res.stdout
    assert pod["status"]["phase"] == "Failed"
    where = (
        f"KopfPeering {installed.app_ns}/{installed.peering}"
        if installed.mode == "namespaced"
        else f"ClusterKopfPeering {installed.peering}"
    )
    assert "PASS api:" in msg, msg  # the API is fine: only the operator is missing
    assert f"FAIL operator: no live operator in {where}" in msg, msg


def _can_i(installed: Installed, verb: str, what: str, *args: str) -> bool:
    """`kubectl auth can-i VERB RESOURCE[.GROUP][/NAME] [-n NS | -A] [--subresource=S]` asked
    as the ServiceAccount itself (a SelfSubjectAccessReview with its token), without kubectl's
    discovery, so resources whose CRDs are not installed (PodMonitor) are answered too."""
    target, _, name = what.partition("/")
    resource, _, group = target.partition(".")
    attrs: dict[str, str] = {"verb": verb, "resource": resource, "group": group}
    if name:
        attrs["name"] = name
    it = iter(args)
    for a in it:
        if a == "-n":
            attrs["namespace"] = next(it)
        elif a.startswith("--subresource="):
            attrs["subresource"] = a.split("=", 1)[1]
        elif a != "-A":
            raise ValueError(a)
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attrs},
    }
    res = installed.cluster.kubectl(
        "create",
        "--validate=false",
        "-f",
        "-",
        "-o",
        "json",
        kubeconfig=installed.kubeconfig,
        stdin=json.dumps(review),
    )
    return bool(json.loads(res.stdout)["status"]["allowed"])


def test_the_service_account_can_do_what_the_operator_needs(installed: Installed) -> None:
    ns = installed.app_ns
    for verb, resource, extra in (
        ("watch", "deepseekdeployments.serving.deepseek.dev", ()),
        ("patch", "deepseekdeployments.serving.deepseek.dev", ("--subresource=status",)),
        ("patch", "deepseekdeployments.serving.deepseek.dev", ("--subresource=scale",)),
        ("create", "deployments.apps", ()),
        ("patch", "deployments.apps", ("--subresource=scale",)),
        ("delete", "deployments.apps", ()),  # the router's, when it is turned off
        ("create", "serviceaccounts", ()),
        ("create", "roles.rbac.authorization.k8s.io", ()),
        ("create", "rolebindings.rbac.authorization.k8s.io", ()),
        ("delete", "rolebindings.rbac.authorization.k8s.io", ()),
        ("delete", "services", ()),
        ("delete", "poddisruptionbudgets.policy", ()),
        ("create", "podmonitors.monitoring.coreos.com", ()),
        ("list", "pods", ()),
        ("create", "events", ()),
        ("list", "nodes", ()),
        ("get", f"{CRD_RESOURCE}/prometheusrules.monitoring.coreos.com", ()),
        ("get", f"{CRD_RESOURCE}/dnsendpoints.externaldns.k8s.io", ()),
        ("get", "dnsendpoints.externaldns.k8s.io", ()),
        ("create", "dnsendpoints.externaldns.k8s.io", ()),
        ("patch", "dnsendpoints.externaldns.k8s.io", ()),
        ("delete", "dnsendpoints.externaldns.k8s.io", ()),
        ("get", f"secrets/{MEMBER_SECRET}", ()),
    ):  # fmt: skip
        assert _can_i(installed, verb, resource, "-n", ns, *extra), (verb, resource, extra)
    if installed.mode == "cluster":
        assert _can_i(installed, "patch", "clusterkopfpeerings.kopf.dev")
        assert _can_i(installed, "create", "deployments.apps", "-n", "default")
    else:
        assert _can_i(installed, "patch", "kopfpeerings.kopf.dev", "-n", ns)


def test_the_service_account_is_denied_what_the_operator_does_not_need(
    installed: Installed,
) -> None:
    ns = installed.app_ns
    denied = [
        ("delete", "secrets", "-n", ns),
        ("get", "secrets", "-n", ns),
        ("get", "secrets/another-secret", "-n", ns),
        ("update", f"secrets/{MEMBER_SECRET}", "-n", ns),
        ("list", "secrets", "-A"),
        ("get", "configmaps", "-n", ns),
        ("update", "deployments.apps", "-n", ns),
        ("create", "pods", "-n", ns),
        ("delete", "pods", "-n", ns),
        ("create", "pods/exec", "-n", ns),
        ("update", "dnsendpoints.externaldns.k8s.io", "-n", ns),
        ("list", "dnsendpoints.externaldns.k8s.io", "-n", ns),
        ("delete", "deepseekdeployments.serving.deepseek.dev", "-n", ns),
        ("create", "deepseekdeployments.serving.deepseek.dev", "-n", ns),
        ("patch", "nodes"),
        ("delete", "nodes"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("get", f"{CRD_RESOURCE}/deepseekdeployments.serving.deepseek.dev"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("create", "clusterroles.rbac.authorization.k8s.io"),
        # the routers' Roles hold only what the operator holds: no escalate, no bind
        ("escalate", "roles.rbac.authorization.k8s.io", "-n", ns),
        ("bind", "roles.rbac.authorization.k8s.io", "-n", ns),
        ("impersonate", "serviceaccounts", "-n", ns),
        # tokens of any account (the subresource: `serviceaccounts/token` alone would name an
        # account called "token", which the operator may create as it may the routers')
        ("create", "serviceaccounts", "--subresource=token", "-n", ns),
        ("create", "serviceaccounts", "--subresource=token", "-n", installed.release_ns),
        ("get", "persistentvolumeclaims", "-n", installed.release_ns)
        if installed.mode == "namespaced"
        else ("delete", "persistentvolumeclaims", "-n", ns),
        ("delete", "namespaces"),
    ]  # fmt: skip
    if installed.mode == "namespaced":
        denied += [
            ("create", "deployments.apps", "-n", "default"),
            ("list", "pods", "-n", "kube-system"),
            ("watch", "deepseekdeployments.serving.deepseek.dev", "-A"),
            ("patch", "clusterkopfpeerings.kopf.dev"),
        ]
    allowed = [d for d in denied if _can_i(installed, *d)]
    assert allowed == [], f"the operator's ServiceAccount may do more than it needs: {allowed}"


OLD_CRD = ROOT / "tests" / "e2e" / "data" / "deepseekdeployments-chart-0.1.0.yaml"


def _engine_schema(cluster: Cluster) -> dict[str, Any]:
    crd = cluster.get("crd", "deepseekdeployments.serving.deepseek.dev")
    assert crd is not None
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["spec"]["properties"]["engine"]["properties"])


def test_helm_upgrade_updates_the_crd_of_an_older_chart_and_uninstall_keeps_it(
    cluster: Cluster, namespaces: list[str], api_clients: dict[str, client.ApiClient]
) -> None:
    """Chart 0.1.0 shipped the CRD in crds/, which Helm never upgrades. From 0.2.0 the CRD is
    a template: `helm upgrade --take-ownership` adopts the old CRD once and updates it, a field
    added since round-trips, and `helm uninstall` keeps the CRD and the resources."""
    suffix = _suffix()
    release, ns = f"dso-up-{suffix}", f"dso-up-{suffix}"
    cluster.kubectl("create", "namespace", ns)
    namespaces.append(ns)
    dsd = yaml.safe_load(_dsd_manifest(ns))
    dsd["metadata"]["name"] = "upgraded"
    del dsd["spec"]["regions"], dsd["spec"]["failover"]
    dsd["spec"].setdefault("engine", {})["runtimeClassName"] = "nvidia"
    try:
        cluster.kubectl("replace", "-f", str(OLD_CRD))
        cluster.kubectl("wait", "--for=condition=Established", "crd/" + CRD_NAME, "--timeout=60s")
        assert "runtimeClassName" not in _engine_schema(cluster)
        # The old CRD does not know the new field: strict validation refuses it, and without
        # validation it is pruned. So the round trip below can fail.
        res = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(dsd), check=False)
        assert res.returncode != 0 and 'unknown field "spec.engine.runtimeClassName"' in res.stderr
        cluster.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(dsd))
        got = cluster.get("dsd", "upgraded", "-n", ns)
        assert got is not None and "runtimeClassName" not in got["spec"].get("engine", {})
        cluster.kubectl("delete", "dsd", "upgraded", "-n", ns)

        cluster.helm(
            "upgrade", "--install", release, str(CHART), "--namespace", ns,
            "--set", "replicaCount=0", "--take-ownership", "--wait", "--timeout=2m",
        )  # fmt: skip
        assert "runtimeClassName" in _engine_schema(cluster)
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(dsd))
        got = cluster.get("dsd", "upgraded", "-n", ns)
        assert got is not None and got["spec"]["engine"]["runtimeClassName"] == "nvidia"

        cluster.helm("uninstall", release, "--namespace", ns, "--wait", "--timeout=1m")
        assert cluster.get("crd", CRD_NAME) is not None
        assert cluster.get("dsd", "upgraded", "-n", ns) is not None
    finally:
        cluster.kubectl("delete", "dsd", "--all", "-n", ns, "--wait=false", check=False)
        install_crds(api_clients[PRIMARY])  # the current CRDs, as the other tests expect them


# ---- the README's real-cluster quickstart, command by command -----------------------------

QUICKSTART = "## On a real GPU cluster"


def quickstart_commands() -> list[list[str]]:
    """The shell block of the README's real-cluster quickstart: one argv per command (joined
    continuation lines, comments and a trailing `&` dropped)."""
    text = (ROOT / "README.md").read_text()
    section = text.split(QUICKSTART, 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def _engine_address(cluster: Cluster, ns: str, service: str) -> str | None:
    """Where `kubectl port-forward svc/...` would connect: a Ready endpoint of the Service, at
    the simulated engine's local address (no kubelet here to forward through)."""
    from testbed.sim.router import local_cluster_address

    slices = cluster.get(
        "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={service}"
    ) or {"items": []}
    for s in slices["items"]:
        port = (s.get("ports") or [{}])[0].get("port")
        for ep in s.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") and port:
                return f"{local_cluster_address(ep['addresses'][0])}:{port}"
    return None


def test_the_readme_quickstart_on_the_local_cluster(
    cluster: Cluster, namespaces: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command of the README's real-cluster quickstart, as written, with three stand-ins
    the local cluster needs: unique release and namespace names (a shared cluster), the
    operator Deployment at 0 replicas with the operator run locally under the chart's
    ServiceAccount and with the chart's arguments (no image runs on kwok nodes), and the
    Service's Ready endpoint instead of `kubectl port-forward` (no kubelet). `--take-ownership`
    because the CRD exists already (as after an install by an older chart)."""
    cmds = quickstart_commands()
    suffix = _suffix()
    release, sys_ns, llm = f"qs-{suffix}", f"qs-sys-{suffix}", f"qs-llm-{suffix}"
    namespaces.extend([sys_ns, llm])
    rename = {"dso": release, "deepseek-system": sys_ns, "llm": llm}
    ran: list[str] = []
    op: OperatorProcess | None = None
    try:
        for argv in cmds:
            argv = [rename.get(a, a) for a in argv if a != "&"]
            argv = [str(ROOT / a) if "/" in a and (ROOT / a).exists() else a for a in argv]
            tool, verb = argv[0], argv[1]
            if tool == "git":
                assert verb == "clone"  # this checkout
            elif tool == "helm" and verb == "install":
                assert "--wait" in argv  # so that `helm test` finds the operator up
                cluster.helm(*argv[1:], "--set", "replicaCount=0", "--take-ownership")
                op = _run_the_charts_operator(cluster, release, sys_ns, tmp_path, monkeypatch)
            elif tool == "helm" and verb == "test":
                assert op is not None
                res = subprocess.run(
                    [helm_binary(), f"--kubeconfig={cluster.kubeconfig}", *argv[1:],
                     "--timeout=2m"],
                    capture_output=True, text=True, timeout=180, check=False,
                )  # fmt: skip
                assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{op.log_path}"
            elif tool == "kubectl" and "get" in argv and "-w" in argv:
                name = yaml.safe_load(
                    (ROOT / "examples" / "deepseek-r1-distill-7b.yaml").read_text()
                )["metadata"]["name"]
                _wait_for(
                    "READY 1",
                    lambda n=name: (
                        ((cluster.get("dsd", n, "-n", llm) or {}).get("status") or {}).get(
                            "readyReplicas", 0
                        )
                        >= 1
                    ),
                    180,
                    op.log_path if op else tmp_path,
                )
            elif tool == "kubectl" and "port-forward" in argv:
                service = argv[argv.index("port-forward") + 1].removeprefix("svc/")
                address = _wait_for(
                    "a Ready endpoint of the Service",
                    lambda s=service: _engine_address(cluster, llm, s),
                    60,
                    op.log_path if op else tmp_path,
                )
            elif tool == "curl":
                url = next(a for a in argv if a.startswith("localhost:"))
                body = argv[argv.index("-d") + 1]
                path = url.split("/", 1)[1]
                req = urllib.request.Request(
                    f"http://{address}/{path}",
                    data=body.encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=60) as resp:
                    answer = json.loads(resp.read())
                assert answer["choices"][0]["message"]["content"], answer
                assert answer["model"] == json.loads(body)["model"]
            elif tool == "kubectl":
                cluster.kubectl(*argv[1:])
            else:
                raise AssertionError(f"the quickstart has a command this test does not run: {argv}")
            ran.append(f"{tool} {verb}")
    finally:
        if op is not None:
            op.stop()
        cluster.kubectl("delete", "dsd", "--all", "-n", llm, "--wait=false", check=False)
        subprocess.run(
            [helm_binary(), f"--kubeconfig={cluster.kubeconfig}", "uninstall", release,
             "--namespace", sys_ns, "--wait", "--timeout=1m"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert ran[:3] == ["git clone", "helm install", "helm test"], ran
    assert "curl -s" in ran, ran


def _run_the_charts_operator(
    cluster: Cluster, release: str, ns: str, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> OperatorProcess:
    """The operator the release would run: its Deployment's arguments (watch scope, peering,
    monitoring labels, runbook URL), its ServiceAccount's token; the local Prometheus and ports."""
    dep = cluster.get("deployment", f"{release}-deepseek-operator", "-n", ns)
    assert dep is not None
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["run", "--all-namespaces"], args
    local = ("--prometheus-url", "--metrics-port", "--health-port", "--signal-interval")
    extra = [a for a in args[2:] if not a.startswith(local)]
    sa = f"{release}-deepseek-operator"
    kubeconfig = _sa_kubeconfig(cluster, ns, sa, tmp / "qs-sa.kubeconfig")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(ROOT / "operator"), str(ROOT / "serving")])
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    op = OperatorProcess(
        kubeconfig, prometheus_url=cluster.prometheus_url, name=f"quickstart-{release}",
        extra=extra,
    ).start()  # fmt: skip
    # what `helm install --wait` waits for where the operator runs in its pod: it is up
    from deepseek_operator.selftest import live_peers

    peering = next(a.split("=", 1)[1] for a in extra if a.startswith("--peering="))
    _wait_for(
        "the operator's keep-alive in the ClusterKopfPeering",
        lambda: live_peers(
            (cluster.get("clusterkopfpeering", peering) or {}).get("status"), datetime.now(UTC)
        ),
        60,
        op.log_path,
    )
    return op
