"""`make demo`: the operator autoscaling a DeepSeek model on the local GPU cluster.

What runs (all on this machine, all real processes): both regions of the local cluster (real
kube-apiserver, controller-manager, scheduler, etcd; kwok GPU nodes; Prometheus with the
project's recording and alert rules) with the simulated fleet playing the engine pods, the
operator (`deepseek-operator run`, cluster-wide, reading Prometheus), a router in front of the
DeepSeekDeployment's Service, and the load generator sending a step of traffic: low, then a
burst, then low again. While it runs, one line every few seconds shows the load, the replicas
the operator asked for and how many are Ready, TTFT p99 and queue depth from Prometheus, and the
operator's last scaling decision. Everything keeps running afterwards for a look around;
`make demo-down` stops it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .cluster import procs
from .cluster.components import Component
from .cluster.config import PROFILE_ENV, region_configs
from .cluster.runner import LocalCluster, RegionInfo

NAMESPACE = "demo"
NAME = "r1-distill-7b"
REGION = "us-east"
OPERATOR_METRICS_PORT = 24180
OPERATOR_HEALTH_PORT = 24181


PROFILE = "demo"  # the demo's clusters, whatever $DEEPSEEK_CLUSTER_PROFILE says


def _cluster() -> LocalCluster:
    return LocalCluster(region_configs(profile=PROFILE))


def _repo() -> Path:
    return Path(__file__).resolve().parents[1]


def _state() -> Path:
    return _repo() / ".local" / "demo"


def _say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def _kubectl(r: RegionInfo, bindir: Path, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [str(bindir / "kubectl"), "--kubeconfig", str(r.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def _start(name: str, argv: list[str]) -> None:
    pidfile = _state() / f"{name}.pid"
    if procs.running(pidfile):
        procs.stop(pidfile)
    procs.start(
        Component(name, tuple(argv), {PROFILE_ENV: PROFILE}),
        pidfile=pidfile,
        logfile=_state() / f"{name}.log",
        cwd=_repo(),
    )


def _prom(r: RegionInfo, promql: str) -> float | None:
    url = f"{r.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            res = json.loads(resp.read())["data"]["result"]
    except (OSError, KeyError, ValueError):
        return None
    if not res:
        return None
    v = float(res[0]["value"][1])
    return None if v != v else v  # NaN: no data


def _manifest() -> dict[str, Any]:
    body = dict(yaml.safe_load((_repo() / "examples" / "deepseek-r1-distill-7b.yaml").read_text()))
    body["metadata"]["namespace"] = NAMESPACE
    scaling = body["spec"]["scaling"]
    # Demo pacing: decide every 5 s, scale down after 60 s of lower load (defaults are slower).
    scaling["intervalSeconds"] = 5
    scaling["scaleDown"] = {"stabilizationSeconds": 60}
    return body


def ensure_namespace(r: RegionInfo, bindir: Path, namespace: str = NAMESPACE) -> None:
    """Create the demo namespace. One an earlier run left Terminating (deleted while no operator
    ran to remove its finalizer from the DeepSeekDeployment) is let go first: creating anything
    in it is forbidden, so the operator could not even take its peering lease."""
    try:
        phase = _kubectl(
            r, bindir, "get", "namespace", namespace, "-o", "jsonpath={.status.phase}"
        ).strip()
    except RuntimeError as e:
        if "NotFound" not in str(e):
            raise
        phase = ""
    if phase == "Terminating":
        _say(f"namespace {namespace} is still being deleted (an earlier run); releasing it")
        _drop_finalizers(r, bindir, namespace)
        _kubectl(r, bindir, "wait", "--for=delete", f"namespace/{namespace}", "--timeout=120s")
        phase = ""
    if not phase:
        _kubectl(r, bindir, "create", "namespace", namespace)


def up(duration: float = 240.0, rate: float = 2.0, burst: float = 24.0) -> int:
    t0 = time.monotonic()
    cluster = _cluster()
    _say("local GPU cluster (first run builds the tools; see README)")
    regions = cluster.up()
    r = regions[REGION]
    bindir = cluster.bindir
    py = sys.executable
    _state().mkdir(parents=True, exist_ok=True)

    _say("CRDs and the project's Prometheus rules")
    for crd in sorted((_repo() / "crds").glob("*.yaml")):
        _kubectl(r, bindir, "apply", "--server-side", "--force-conflicts", "-f", str(crd))
    _kubectl(r, bindir, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    for rules in sorted((_repo() / "dashboards" / "generated" / "rules").glob("*.yaml")):
        shutil.copy(rules, r.prometheus_rules_dir / rules.name)
    urllib.request.urlopen(
        urllib.request.Request(f"{r.prometheus_url}/-/reload", method="POST"), timeout=30
    ).close()

    ensure_namespace(r, bindir)  # before the operator: it takes its peering lease in there
    _say(f"operator (log: {_state() / 'operator.log'})")
    _start(
        "operator",
        [
            py, "-m", "deepseek_operator", "run", "-n", NAMESPACE,
            "--kubeconfig", str(r.kubeconfig),
            "--prometheus-url", r.prometheus_url,
            "--signal-interval", "5",
            "--bind-address", "127.0.0.1",
            "--metrics-port", str(OPERATOR_METRICS_PORT),
            "--health-port", str(OPERATOR_HEALTH_PORT),
        ],
    )  # fmt: skip
    (r.prometheus_targets_dir / "deepseek-operator.json").write_text(
        json.dumps(
            [
                {
                    "targets": [f"127.0.0.1:{OPERATOR_METRICS_PORT}"],
                    "labels": {"job": "deepseek-operator"},
                }
            ]
        )
    )

    _say(f"DeepSeekDeployment {NAMESPACE}/{NAME} (examples/deepseek-r1-distill-7b.yaml)")
    _kubectl(r, bindir, "apply", "-f", "-", stdin=yaml.safe_dump(_manifest()))

    router_port = r.ports.get("router", 24080)
    _say(f"router on http://127.0.0.1:{router_port} -> Service {NAMESPACE}/{NAME}")
    _start(
        "router",
        [
            py, "-m", "testbed.sim", "router", "--region", REGION,
            "--route", f"{NAMESPACE}/{NAME}", "--port", str(router_port),
        ],
    )  # fmt: skip

    _say("waiting for the first replica to be Ready")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        st = _status(r, bindir)
        if (st.get("readyReplicas") or 0) >= 1:
            break
        time.sleep(2)
    else:
        _say("no replica became Ready in 3 minutes; see .local/demo/operator.log")
        return 1
    # The replica may have been Ready before the router listens (a second `make demo` finds the
    # first one's DeepSeekDeployment): load sent before that would only be refused.
    if not _router_routes(router_port, timeout=60):
        _say(f"the router sends nothing to a Ready replica after 60 s; see {_state()}/router.log")
        return 1

    _say(
        f"load: {rate:g} req/s, a burst of {burst:g} req/s in the middle third, for {duration:g} s "
        "(the Azure conversation trace's prompt/output lengths)"
    )
    summary = _state() / "load-summary.json"
    summary.unlink(missing_ok=True)  # an earlier run's numbers must not pass for this one's
    _start(
        "load",
        [
            py, "-m", "testbed.sim", "load",
            "--url", f"http://127.0.0.1:{router_port}", "--trace", "step",
            "--rate", str(rate), "--burst-factor", str(burst / rate), "--duration", str(duration),
            "--summary", str(_state() / "load-summary.json"),
        ],
    )  # fmt: skip
    load_pid = _state() / "load.pid"
    _watch(
        r, bindir, duration + 90, stop=lambda: not procs.running(load_pid) and not summary.exists()
    )
    if not summary.exists():
        _say(f"the load generator wrote no summary; see {_state() / 'load.log'}")
        return 1
    s = json.loads(summary.read_text())
    ttft, tpot = s.get("ttft_s") or {}, s.get("tpot_s") or {}
    _say(
        f"load done: {s.get('ok')} ok, {s.get('failed')} failed; client-side TTFT p50 "
        f"{ttft.get('p50', 0):.2f}s p99 {ttft.get('p99', 0):.2f}s, TPOT p99 "
        f"{tpot.get('p99', 0) * 1000:.0f} ms"
    )
    _say(f"demo ran {time.monotonic() - t0:.0f} s. Still running, to look around:")
    print(
        f"    export KUBECONFIG={r.kubeconfig}\n"
        f"    {bindir / 'kubectl'} get dsd -n {NAMESPACE}; kubectl describe dsd -n {NAMESPACE}\n"
        f"    Prometheus {r.prometheus_url}   operator metrics "
        f"http://127.0.0.1:{OPERATOR_METRICS_PORT}/metrics\n"
        f"    logs in {_state()}\n    make demo-down   # stop it all",
        flush=True,
    )
    return 0


def _router_routes(port: int, timeout: float) -> bool:
    """True once the router answers and has a Ready endpoint for the demo's Service."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/router/status", timeout=5) as f:
                routes = json.loads(f.read()).get("routes") or []
            if any(rt.get("endpoints") for rt in routes):
                return True
        except (OSError, ValueError):
            pass
        time.sleep(1)
    return False


def _status(r: RegionInfo, bindir: Path) -> dict[str, Any]:
    try:
        out = _kubectl(r, bindir, "get", "dsd", NAME, "-n", NAMESPACE, "-o", "json")
    except RuntimeError:
        return {}
    return dict(json.loads(out).get("status") or {})


def _watch(
    r: RegionInfo, bindir: Path, seconds: float, stop: Callable[[], bool] = lambda: False
) -> None:
    """A line every 5 s until `seconds` have passed or `stop()` (the load generator died)."""
    sel = f'namespace="{NAMESPACE}",dsd="{NAME}"'
    print(
        f"{'t':>5} {'req/s':>6} {'desired':>7} {'ready':>5} {'ttft p99':>9} {'queue':>5}  decision",
        flush=True,
    )
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds and not stop():
        st = _status(r, bindir)
        rps = _prom(r, f"sum(rate(vllm:request_success_total{{{sel}}}[30s]))")
        ttft = _prom(
            r,
            "histogram_quantile(0.99, sum by (le) "
            f"(rate(vllm:time_to_first_token_seconds_bucket{{{sel}}}[30s])))",
        )
        queue = _prom(r, f"sum(vllm:num_requests_waiting{{{sel}}})")
        d = st.get("lastScalingDecision") or {}
        decision = f"{d.get('reason', '')}: {d.get('message', '')}"[:70]
        line = (
            f"{time.monotonic() - t0:5.0f} {_fmt(rps, '{:6.1f}')} "
            f"{st.get('desiredReplicas', '-')!s:>7} {st.get('readyReplicas', '-')!s:>5} "
            f"{_fmt(ttft, '{:8.2f}s')} {_fmt(queue, '{:5.0f}')}  {decision}"
        )
        print(line, flush=True)
        time.sleep(5)


def _fmt(v: float | None, f: str) -> str:
    return f.format(v) if v is not None else f"{'-':>{len(f.format(0.0))}}"


def down() -> int:
    """Stop what `up` started. The demo's namespace goes first, while the operator still runs to
    finish its DeepSeekDeployment (a namespace deleted after the operator stopped would wait for
    it in Terminating); then the load, router and operator, then both clusters. The clusters'
    state (etcd, certificates, Prometheus data) is kept for a quicker next start and says so."""
    cluster = _cluster()
    r = cluster.info()[REGION]
    if cluster.healthy():
        _say(f"deleting namespace {NAMESPACE} (the demo's DeepSeekDeployment and its pods)")
        try:
            release_namespace(
                r, cluster.bindir, operator_running=procs.running(_pid("operator")) is not None
            )
        except RuntimeError as e:
            _say(f"could not delete namespace {NAMESPACE}: {e}")
    for name in ("load", "router", "operator"):
        if procs.stop(_pid(name)):
            _say(f"stopped {name}")
    for info in cluster.info().values():
        (info.prometheus_targets_dir / "deepseek-operator.json").unlink(missing_ok=True)
    cluster.down()
    state = sorted({str(c.state_dir.parent) for c in cluster.configs})
    _say(
        "local cluster stopped. Kept: its state in "
        f"{', '.join(state)} (etcd, certificates, Prometheus data; the next `make demo` starts "
        f"from it) and the demo's logs in {_state()}. `make clean` deletes both."
    )
    return 0


def _pid(name: str) -> Path:
    return _state() / f"{name}.pid"


def release_namespace(
    r: RegionInfo,
    bindir: Path,
    namespace: str = NAMESPACE,
    *,
    operator_running: bool,
    timeout_s: int = 120,
) -> None:
    """Delete the namespace and wait until it is gone. With no operator running, the finalizers
    of its DeepSeekDeployments are dropped first (nobody else would)."""
    try:
        _kubectl(r, bindir, "get", "namespace", namespace, "-o", "name")
    except RuntimeError as e:
        if "NotFound" in str(e):
            return
        raise
    if operator_running:
        _kubectl(r, bindir, "delete", "dsd", "--all", "-n", namespace, f"--timeout={timeout_s}s")
    else:
        _drop_finalizers(r, bindir, namespace)
    _kubectl(r, bindir, "delete", "namespace", namespace, "--wait=false")
    _kubectl(r, bindir, "wait", "--for=delete", f"namespace/{namespace}", f"--timeout={timeout_s}s")


def _drop_finalizers(r: RegionInfo, bindir: Path, namespace: str) -> None:
    for obj in _kubectl(r, bindir, "get", "dsd", "-n", namespace, "-o", "name").split():
        _kubectl(
            r, bindir, "patch", "-n", namespace, obj, "--type=merge",
            "-p", '{"metadata":{"finalizers":null}}',
        )  # fmt: skip


def clean() -> int:
    """`make clean`: stop and delete both profiles' clusters and the demo's state."""
    from .cluster.config import PROFILES

    for profile in sorted(PROFILES):
        cluster = LocalCluster(region_configs(profile=profile))
        stopped = cluster.down(purge=True)
        where = sorted({str(c.state_dir.parent) for c in cluster.configs})
        _say(f"{profile} clusters: stopped {len(stopped)} processes, deleted {', '.join(where)}")
    for name in ("load", "router", "operator"):
        procs.stop(_pid(name))
    if _state().exists():
        shutil.rmtree(_state())
        _say(f"deleted {_state()}")
    _say(f"the tool cache ({cluster.bindir.parent}) is kept: it takes ~25 min to build")
    return 0
