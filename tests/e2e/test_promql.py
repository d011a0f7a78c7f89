"""Every dashboard panel's and every rule's PromQL, run against the real Prometheus of the local
cluster while the simulated fleet serves a DeepSeekDeployment under load: each must return
data (issue 8: "a dashboard panel or alert whose query returns nothing on a running fleet
fails a test").

Set-up, once for the module, in a namespace of its own in us-east:
- the generated rule files (dashboards/generated/rules) go into the region's Prometheus rules
  folder, and Prometheus reloads them (removed again afterwards);
- the real operator runs for the namespace with --prometheus-url, and its /metrics is a file_sd
  target with job="deepseek-operator" (the job the chart's ServiceMonitor gives it and the
  dashboards and rules select);
- a DeepSeekDeployment (the 7B example, 2 replicas) is served by the simulated fleet that
  `cluster up` runs (it plays every namespace and serves the nodes' dcgm-exporters);
- the resource has `spec.router` on: one pod of the real vllm-router (run by the fleet) sits
  behind the Service, scraped by the region's `deepseek-routers` job;
- a router (`python -m testbed.sim router`, the front door over the Service, hence over the
  vllm-router pod) and the load generator (`... load`) keep requests flowing; a blue-green
  rollout runs to promotion (the vllm-router pod rolls with it), and then a fault makes 5% of
  the engines' answers HTTP 500 (vllm-router retries them elsewhere: failed attempts and
  retries), so the error, retry and rollout series are real, not zero-filled;
- the autoscaler measures the SLO attainment of that load (spec.scaling.slo.attainment 0.9, so
  SLOMet is judged after about 100 requests).

Each panel target, each template variable, each recording rule's output series and each
alert's probes (rules.Alert.probes: the expressions under its threshold) is then one test.
Template variables are substituted the way Grafana does ($namespace and $deployment with this
test's values). A query passes when it returns at least one sample with a finite value; a NaN
(histogram_quantile of no traffic, 0/0) is a panel without data to a user. Queries that
cannot have data in this set-up are in EXCLUDED, with the reason.

Environment: DEEPSEEK_E2E_PROMQL_DUMP=FILE appends each query and its first samples to FILE
(JSON lines), to review the values.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import pytest
import yaml
from deepseek_operator import labels as L
from kubernetes import client

import dashboards
from dashboards import rules as R
from dashboards.queries import OPERATOR_JOB
from testbed.cluster import RegionInfo

from .conftest import PRIMARY, Prometheus
from .operator_process import LOGS, REPO, OperatorProcess, free_port, install_crds
from .waiting import wait_for

pytestmark = pytest.mark.e2e

DSD = "promql"
RULES_DIR = REPO / "dashboards" / "generated" / "rules"
EXAMPLE = REPO / "examples" / "deepseek-r1-distill-7b.yaml"
# Placeholders substituted at collection time and replaced by the real values at run time.
NS_MARK = "__NAMESPACE__"
DSD_MARK = "__DEPLOYMENT__"
VARIABLES = {"namespace": NS_MARK, "deployment": DSD_MARK}
# How long one query may take to return data, after the set-up saw the recording rules produce
# series; once one query has timed out, the others get the short one (a broken set-up fails
# every query, and should not take hours to say so).
DATA_TIMEOUT = 120.0
DATA_TIMEOUT_AFTER_A_MISS = 10.0
_missed: list[str] = []

# Queries that cannot return data in this set-up, and why. Keys: ("panel", dashboard uid,
# panel title, refId) or ("probe", alert name, probe expression). Keep this list short and
# honest: anything not here that returns nothing fails.
EXCLUDED: dict[tuple[str, ...], str] = {}

# Series without a `namespace` label (Prometheus' own `up`, the operator's process-wide
# histograms): their probes are narrowed to this test's operator by instance instead.
PROCESS_WIDE = ("up", "deepseek_operator_reconcile_", "deepseek_operator_prometheus_")


# --- collection --------------------------------------------------------------------------------


def _id(*parts: str) -> str:
    return "/".join(re.sub(r"[^A-Za-z0-9_.:-]+", "_", p).strip("_") for p in parts)


PANELS = [
    pytest.param(q, id=_id(q.dashboard, q.panel, q.ref_id))
    for q in dashboards.panel_queries(VARIABLES)
]
TEMPLATE_VARIABLES = [
    pytest.param(v, id=_id(v[0], v[1])) for v in dashboards.variable_queries(VARIABLES)
]
RECORDINGS = [pytest.param(r, id=r.record) for r in R.recordings()]
PROBES = [
    pytest.param(a.name, a.severity, p, id=_id(a.name, a.severity, p))
    for a in R.alerts()
    for p in a.probes
]


# --- set-up --------------------------------------------------------------------------------------


@dataclass
class Env:
    region: RegionInfo
    prom: Prometheus
    namespace: str
    operator: OperatorProcess
    router_url: str
    core: client.CoreV1Api
    active_colour: str

    @property
    def operator_instance(self) -> str:
        return f"127.0.0.1:{self.operator.metrics_port}"

    def fill(self, expr: str) -> str:
        return expr.replace(NS_MARK, self.namespace).replace(DSD_MARK, DSD)


class Background:
    """A subprocess of the set-up, its output in .local/e2e-logs/."""

    def __init__(self, name: str, cmd: list[str]) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"promql-{name}-{int(time.time() * 1000)}.log"
        self._log: IO[bytes] = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def sim(*args: str) -> list[str]:
    return [sys.executable, "-m", "testbed.sim", *args]


def cluster_fleet_running(region: RegionInfo) -> bool:
    """Whether the region's simulated fleet (started by `cluster up`) answers."""
    try:
        control = (
            getattr(region, "fleet_url", None)
            or json.loads((region.state_dir / "fleet.json").read_text())["control"]
        )
        with urllib.request.urlopen(f"{control}/healthz", timeout=3) as r:
            return bool(r.status == 200)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def dsd_body() -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"] = {"name": DSD}
    spec = body["spec"]
    spec["replicas"] = 2
    spec["scaling"].update({"minReplicas": 2, "maxReplicas": 3})
    # The autoscaler (on by default) measures the SLO attainment from the load below and judges
    # SLOMet once the budget allows 10 misses: 100 requests at 0.9 (1,000 at the default 0.99),
    # so the attainment panel and DeepSeekSLOAttainmentBelowTarget's probes have data early.
    spec["scaling"]["slo"]["attainment"] = 0.9
    # A quick blue-green rollout: promote after 5 s of analysis, drop the old colour at once.
    spec["rollout"] = {"analysis": {"durationSeconds": 5}, "scaleDownDelaySeconds": 0}
    # One member region (this cluster), health-checked every 2 s: the region panels and the
    # region alert read deepseek_operator_region_{healthy,weight} (test_failover.py covers the
    # checks and the weights across two regions).
    spec["regions"] = [{"name": PRIMARY, "role": "primary", "weight": 100}]
    spec["failover"] = {"enabled": True, "healthCheckIntervalSeconds": 2}
    # The router (spec.router): one pod of the real vllm-router in front of the engines, scraped
    # by the region's deepseek-routers job, so the router panels and alerts read its series.
    spec["router"] = {"enabled": True, "replicas": 1}
    return body


def dsd_status(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any]:
    obj = cast(
        "dict[str, Any]",
        custom.get_namespaced_custom_object(
            "serving.deepseek.dev", "v1alpha1", ns, "deepseekdeployments", DSD
        ),
    )
    return dict(obj.get("status") or {})


def has_data(prom: Prometheus, expr: str) -> list[dict[str, Any]]:
    """The samples of an instant query with a finite value."""
    return [r for r in prom.query(expr) if math.isfinite(float(r["value"][1]))]


def write_json(path: Path, body: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    tmp.replace(path)  # file_sd reads whole files only


@pytest.fixture(scope="module")
def env(
    regions: dict[str, RegionInfo],
    api_clients: dict[str, client.ApiClient],
    prometheus: dict[str, Prometheus],
) -> Iterator[Env]:
    region = regions[PRIMARY]
    prom = prometheus[PRIMARY]
    api = api_clients[PRIMARY]
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    ns = f"e2e-promql-{secrets.token_hex(3)}"
    background: list[Background] = []
    placed: list[Path] = []
    operator: OperatorProcess | None = None
    try:
        install_crds(api)
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels={"e2e": "true"}))
        )

        # (a) the generated rules, loaded by the region's Prometheus
        rules_dir = region.prometheus_rules_dir
        for src in sorted(RULES_DIR.glob("*.yaml")):
            dst = rules_dir / f"{ns}-{src.name}"
            shutil.copyfile(src, dst)
            placed.append(dst)
        prom.reload()
        loaded = wait_for(
            lambda: {
                r.get("name") or r.get("record")
                for g in prom.get("/api/v1/rules")["groups"]
                if Path(g["file"]).name.startswith(ns)
                for r in g["rules"]
            },
            timeout=30,
            what="Prometheus to load the generated rules",
        )
        assert {r.record for r in R.recordings()} <= loaded

        assert cluster_fleet_running(region), (
            "the simulated fleet of the local cluster is not running: `deepseek-operator "
            "cluster up` (without --no-fleet) starts it"
        )

        # (b) the operator, scraped as job="deepseek-operator"
        operator = OperatorProcess(
            region.kubeconfig,
            namespaces=[ns],
            prometheus_url=region.prometheus_url,
            name=f"promql-{ns}",
        ).start()
        target = f"127.0.0.1:{operator.metrics_port}"
        sd = region.prometheus_targets_dir / f"{ns}-operator.json"
        write_json(sd, [{"targets": [target], "labels": {"job": OPERATOR_JOB}}])
        placed.append(sd)

        # (c) a DeepSeekDeployment of 2 replicas, Ready through the fleet
        custom.create_namespaced_custom_object(
            "serving.deepseek.dev", "v1alpha1", ns, "deepseekdeployments", dsd_body()
        )

        def ready() -> dict[str, Any] | None:
            st = dsd_status(custom, ns)
            rollout = st.get("rollout") or {}
            idle = rollout.get("phase") in (None, "Idle", "Completed", "Promoted")
            return st if st.get("readyReplicas", 0) >= 2 and idle else None

        first = wait_for(ready, timeout=240, what=f"{DSD} Ready", every=2) or {}

        # (d) a router in front of the stable Service, and steady load through it
        port = free_port()
        background.append(
            Background(
                "router",
                sim(
                    "router",
                    "--kubeconfig",
                    str(region.kubeconfig),
                    "--name",
                    region.name,
                    "--route",
                    f"{ns}/{DSD}",
                    "--port",
                    str(port),
                    "--no-file-sd",
                ),
            )
        )
        router_url = f"http://127.0.0.1:{port}"

        def models() -> bool:
            try:
                with urllib.request.urlopen(f"{router_url}/v1/models", timeout=3) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_for(models, timeout=60, what="the router to reach the engines")
        background.append(
            Background(
                "load",
                sim(
                    "load",
                    "--url",
                    router_url,
                    "--trace",
                    "constant",
                    "--rate",
                    "4",
                    "--duration",
                    "1800",
                    "--max-prompt-tokens",
                    "512",
                    "--max-output-tokens",
                    "32",
                    "--drain-timeout",
                    "5",
                ),
            )
        )

        # Prometheus must have scraped the promotion counter at 0 before the rollout starts: a
        # target found late (file_sd, then a scrape offset) would first see it at 1, and
        # increase() of a series that first appears at 1 is 0
        zero = f'deepseek_operator_rollouts_total{{namespace="{ns}",dsd="{DSD}",result="promoted"}}'
        wait_for(
            lambda: [r for r in has_data(prom, zero) if float(r["value"][1]) == 0],
            timeout=120,
            what=f"{zero} scraped at 0",
            every=1,
        )

        # a blue-green rollout (an engine env change), run to promotion
        custom.patch_namespaced_custom_object(
            "serving.deepseek.dev",
            "v1alpha1",
            ns,
            "deepseekdeployments",
            DSD,
            {"spec": {"engine": {"env": [{"name": "PROMQL_E2E_REVISION", "value": "2"}]}}},
        )

        def promoted() -> dict[str, Any] | None:
            st = ready()
            if st and st.get("activeColour") != first.get("activeColour"):
                return st
            return None

        after = wait_for(promoted, timeout=240, what="the promotion", every=2) or {}

        # 5% of requests on the (new) active colour fail with HTTP 500
        subprocess.run(
            sim(
                "fault",
                "--kubeconfig",
                str(region.kubeconfig),
                "--name",
                region.name,
                "-n",
                ns,
                "-l",
                f"{L.DEPLOYMENT}={DSD},{L.COLOUR}={after['activeColour']}",
                "--error-rate",
                "0.05",
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )

        # (e) the recording rules have produced this namespace's series, errors included
        sel = f'{{namespace="{ns}",dsd="{DSD}"}}'
        for expr in (
            f"{R.error_ratio('5m')}{sel} > 0",
            f"{R.TTFT_GOOD_RATE}{sel}",
            f"{R.QUEUE}{sel}",
            f"deepseek_operator_rollouts_total{sel}",
            f'vllm_router_cb_outcomes_total{{namespace="{ns}",outcome="failure"}}',
            f"vllm_router_retries_total{sel}",
            f"deepseek_operator_slo_attainment{sel}",
            f'deepseek_operator_condition{{namespace="{ns}",dsd="{DSD}",type="SLOMet"}}',
        ):

            def present(expr: str = expr) -> list[dict[str, Any]]:
                return has_data(prom, expr)

            wait_for(present, timeout=240, what=f"{expr} to have data", every=2)
        for b in background:
            assert b.alive(), f"{b.log_path} exited:\n{b.log()}"
        yield Env(region, prom, ns, operator, router_url, core, str(after["activeColour"]))
    finally:
        for b in reversed(background):
            b.stop()
        if operator is not None:
            operator.stop()
        for p in placed:
            p.unlink(missing_ok=True)
        if placed:
            prom.reload()
        try:
            core.delete_namespace(ns, propagation_policy="Background")
        except client.ApiException as e:
            if e.status != 404:
                raise


# --- the checks ----------------------------------------------------------------------------------


def assert_data(env: Env, expr: str, key: tuple[str, ...]) -> None:
    if key in EXCLUDED:
        pytest.skip(f"excluded: {EXCLUDED[key]}")
    timeout = DATA_TIMEOUT_AFTER_A_MISS if _missed else DATA_TIMEOUT
    try:
        rows = wait_for(lambda: has_data(env.prom, expr), timeout=timeout, what="data")
    except AssertionError:
        _missed.append(expr)
        raw = env.prom.query(expr)
        pytest.fail(f"no data (finite samples) for\n{expr}\nraw result: {raw[:5]}")
    assert rows
    if dump := os.environ.get("DEEPSEEK_E2E_PROMQL_DUMP"):
        with open(dump, "a") as f:
            f.write(json.dumps({"key": key, "expr": expr, "rows": rows[:4]}) + "\n")


@pytest.mark.parametrize("q", PANELS)
def test_panel_returns_data(env: Env, q: dashboards.PanelQuery) -> None:
    assert_data(env, env.fill(q.expr), ("panel", q.dashboard, q.panel, q.ref_id))


_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<match>.+),\s*)?(?P<label>\w+)\)$", re.S)


@pytest.mark.parametrize("v", TEMPLATE_VARIABLES)
def test_template_variable_lists_this_deployment(env: Env, v: tuple[str, str, str]) -> None:
    """`label_values(series, label)` as Grafana runs it (the series API), holding this test's
    namespace, deployment or a node of its GPUs."""
    _, name, query = v
    m = _LABEL_VALUES.match(env.fill(query))
    assert m, f"not a label_values() query: {query}"
    params = {"match[]": m["match"]} if m["match"] else {}
    values = env.prom.get(f"/api/v1/label/{m['label']}/values", **params)
    if name == "node":  # the Hostname of the GPUs: the nodes this test's engines run on
        rows = env.prom.query(f'vllm:num_requests_running{{namespace="{env.namespace}"}}')
        want = {r["metric"]["node"] for r in rows}
        assert want and want <= set(values), f"{query}: {values}, engines on {want}"
    else:
        want_one = {"namespace": env.namespace, "deployment": DSD}[name]
        assert want_one in values, f"{query}: {values}"


@pytest.mark.parametrize("r", RECORDINGS)
def test_recording_rule_produces_series(env: Env, r: R.Recording) -> None:
    """The rule's output for this test's deployment (every rule aggregates by namespace)."""
    assert_data(env, f'{r.record}{{namespace="{env.namespace}"}}', ("record", r.record))


def scoped(env: Env, probe: str) -> str:
    """A probe narrowed to this test: its namespace, or its operator for process-wide series."""
    m = re.fullmatch(r"([A-Za-z_:][\w:]*)(?:\{(.*)\})?", probe)
    if m is None:
        return probe
    name, matchers = m[1], m[2] or ""
    if name.startswith(PROCESS_WIDE):
        extra = f'job="{OPERATOR_JOB}",instance="{env.operator_instance}"'
    else:
        extra = f'namespace="{env.namespace}"'
    return f"{name}{{{','.join(x for x in (matchers, extra) if x)}}}"


@pytest.mark.parametrize(("alert", "severity", "probe"), PROBES)
def test_alert_probe_returns_data(env: Env, alert: str, severity: str, probe: str) -> None:
    assert_data(env, scoped(env, probe), ("probe", alert, probe))


def test_every_alert_has_probes() -> None:
    """A new alert without probes would escape this suite."""
    assert all(a.probes for a in R.alerts())
    assert {k[1] for k in EXCLUDED if k[0] == "probe"} <= set(R.alert_names())
    panels = {("panel", q.dashboard, q.panel, q.ref_id) for q in dashboards.panel_queries()}
    assert {k for k in EXCLUDED if k[0] == "panel"} <= panels


def test_finished_rollouts_panel_counts_the_promotion(env: Env) -> None:
    """The set-up promoted one rollout: the 24 h panel must say 1, not 0 (a counter series that
    first appears at 1 gives increase() == 0; the operator exports every result at 0 first)."""
    (q,) = (
        q
        for q in dashboards.panel_queries(VARIABLES)
        if q.dashboard == "deepseek-operator" and q.panel == "Finished rollouts (24h)"
    )

    def promoted() -> float | None:
        rows = env.prom.query(env.fill(q.expr))
        v = [float(r["value"][1]) for r in rows if r["metric"].get("result") == "promoted"]
        return v[0] if v and v[0] >= 0.9 else None

    wait_for(promoted, timeout=60, what="result=promoted >= 1 in the finished-rollouts panel")


def _completion(url: str, model: str, max_tokens: int) -> str:
    """One completion; its HTTP status (or the error's name)."""
    body = json.dumps({"model": model, "prompt": "router limit " * 8, "max_tokens": max_tokens})
    req = urllib.request.Request(
        f"{url}/v1/completions", body.encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
            return str(r.status)
    except urllib.error.HTTPError as e:
        return str(e.code)
    except OSError as e:
        return type(e).__name__


def test_router_at_its_admission_limit_meets_the_alert_condition(env: Env) -> None:
    """DeepSeekRouterAtAdmissionLimit's condition (its expression, without its 5 minutes) on
    the real vllm-router and Prometheus: with the router's bucket at 2, refilled 1/s, no queue,
    and bursts of long requests through the Service, the router pod answers some of them 429
    and the condition holds for it (for a pod running with the new bucket: while the old pods
    run on, the condition compares them with the new limit too). Then the limits go back to
    their defaults."""
    custom = client.CustomObjectsApi(env.core.api_client)
    model = dsd_body()["spec"]["model"]["servedName"]
    (alert,) = (a for a in R.alerts() if a.name == "DeepSeekRouterAtAdmissionLimit")
    limits = {"maxConcurrentRequests": 2, "rateLimitTokensPerSecond": 1, "queueSize": 0}

    def patch(router: dict[str, Any]) -> None:
        custom.patch_namespaced_custom_object(
            "serving.deepseek.dev",
            "v1alpha1",
            env.namespace,
            "deepseekdeployments",
            DSD,
            {"spec": {"router": router}},
        )

    statuses: Counter[str] = Counter()
    stop = threading.Event()

    def bursts() -> None:
        with ThreadPoolExecutor(8) as pool:
            while not stop.is_set():
                statuses.update(
                    pool.map(lambda _: _completion(env.router_url, model, 200), range(8))
                )

    t0 = time.monotonic()
    patch(limits)
    sender = threading.Thread(target=bursts, daemon=True)
    sender.start()
    try:
        wait_for(
            lambda: has_data(
                env.prom,
                f'deepseek_operator_router_limit{{namespace="{env.namespace}",'
                'limit="max_concurrent_requests"} == 2',
            ),
            timeout=60,
            what="the operator exporting the new bucket size",
        )
        t_gauge = time.monotonic() - t0
        wait_for(lambda: statuses["429"], timeout=120, what="a 429 from the router")
        t_429 = time.monotonic() - t0

        def limited_pods() -> set[str]:
            """Router pods running with the new bucket (during the roll the old ones run on
            with 1024, while the operator already exports 2)."""
            pods = env.core.list_namespaced_pod(
                env.namespace, label_selector=f"{L.DEPLOYMENT}={DSD},{L.COMPONENT}=router"
            ).items
            out = set()
            for p in pods:
                args = [a for c in p.spec.containers for a in (c.command or []) + (c.args or [])]
                flags = dict(itertools.pairwise(args))
                if (
                    flags.get("--max-concurrent-requests") == "2"
                    and not p.metadata.deletion_timestamp
                ):
                    out.add(p.metadata.name)
            return out

        def holds() -> set[str]:
            rows = has_data(env.prom, alert.expr)
            pods = {r["metric"]["pod"] for r in rows if r["metric"]["namespace"] == env.namespace}
            return pods & limited_pods() if statuses["429"] else set()

        wait_for(holds, timeout=120, what=f"{alert.name}'s condition and a 429", every=2)
        print(
            f"\nthrough the router at a bucket of 2 (1/s, no queue): {dict(statuses)}; limit "
            f"exported after {t_gauge:.0f} s, first 429 after {t_429:.0f} s, the condition "
            f"after {time.monotonic() - t0:.0f} s"
        )
    finally:
        stop.set()
        t_stop = time.monotonic()
        sender.join(120)
        print(f"the last burst took {time.monotonic() - t_stop:.0f} s more")
        patch({k: None for k in limits})


def test_engine_crash_xid_fires_the_gpu_alert(env: Env) -> None:
    """Last (it breaks a replica): a crash through the fleet's fault hook makes the pod's GPU
    report XID 79 (fallen off the bus); the loaded rule fires DeepSeekGPUXidError (critical)
    for that GPU, labelled with the pod."""
    # a pod of the active colour that exists now (the old colour's series outlive its pods)
    live = {
        p.metadata.name
        for p in env.core.list_namespaced_pod(
            env.namespace, label_selector=f"{L.DEPLOYMENT}={DSD},{L.COLOUR}={env.active_colour}"
        ).items
        if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
    }
    rows = env.prom.query(f'vllm:num_requests_running{{namespace="{env.namespace}"}}')
    scraped = {r["metric"]["pod"] for r in rows}
    assert live & scraped, f"no running {env.active_colour} pod among the scraped {scraped}"
    pod = sorted(live & scraped)[0]
    fault = [
        "--kubeconfig",
        str(env.region.kubeconfig),
        "--name",
        env.region.name,
        "-n",
        env.namespace,
        "--pod",
        pod,
    ]
    crash = subprocess.run(
        sim("fault", *fault, "--crash"), capture_output=True, text=True, timeout=60
    )
    assert crash.returncode == 0, f"fault --crash on {pod} failed:\n{crash.stdout}{crash.stderr}"
    try:
        xid = wait_for(
            lambda: has_data(env.prom, f'DCGM_FI_DEV_XID_ERRORS{{pod="{pod}"}} == 79'),
            timeout=60,
            what=f"XID 79 on the GPU of {pod}",
        )
        uuid = xid[0]["metric"]["UUID"]
        alert = (
            'ALERTS{alertname="DeepSeekGPUXidError",alertstate="firing",severity="critical",'
            f'namespace="{env.namespace}",pod="{pod}"}}'
        )
        firing = wait_for(lambda: has_data(env.prom, alert), timeout=60, what=alert)
        assert [r["metric"]["UUID"] for r in firing] == [uuid]
        warning = f'ALERTS{{alertname="DeepSeekGPUXidError",severity="warning",pod="{pod}"}}'
        assert env.prom.query(warning) == []  # a fatal XID is not also a warning
    finally:
        subprocess.run(sim("fault", *fault, "--clear"), check=True, capture_output=True, timeout=60)
