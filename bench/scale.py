"""Scale benchmark: the operator's cost with N DeepSeekDeployments on a real local cluster.

    python -m bench.scale [--points 10,100,1000] [--out bench/results]

For each N, on a local cluster of its own (profile `bench`: kube-apiserver, etcd,
controller-manager, scheduler, kwok nodes, Prometheus; no simulated fleet), it starts a fresh
`deepseek-operator run` watching one namespace, creates N DeepSeekDeployments there and
measures, from real processes:

- time until every resource is reconciled (status.observedGeneration == metadata.generation,
  counted from the first create) and until every one reports its replica Ready;
- reconcile latency p50/p99, from the `seconds=` of the operator's `reconciled` log lines (its
  /metrics histogram, bucketed, is the cross-check);
- the operator process's RSS (peak VmHWM and at the end) and CPU seconds, from /proc;
- Prometheus queries per signal tick, from the operator's /metrics;
- API requests per signal tick: the kube-apiserver's apiserver_request_total (resource
  requests) over a steady window with the operator running, minus the same over a window of
  the same cluster with the operator stopped (the control plane's own traffic).

Writes `scale.json` and `scale.png` into the output folder and takes its cluster down at the end
(also on error). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
NAMESPACE_PREFIX = "scale-"
SIGNAL_INTERVAL_S = 10.0  # the operator's default --signal-interval
DEFAULT_POINTS = (10, 100, 1000)
# Aims of the issue (#19), at the largest point.
AIM_RSS_MB = 300.0
AIM_RECONCILE_P99_S = 0.1

Samples = dict[str, list[tuple[dict[str, str], float]]]


# ---------------------------------------------------------------------------------------------
# Pure parts: parsing and summarising (tests/unit/test_bench_scale.py)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> Samples:
    """Prometheus text exposition -> {name: [(labels, value)]}."""
    out: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(3) or ""))
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        out.setdefault(m.group(1), []).append((labels, value))
    return out


def total(
    samples: Samples, name: str, keep: Callable[[dict[str, str]], bool] | None = None
) -> float:
    """Sum of a metric's samples whose labels pass `keep`."""
    return sum(v for lab, v in samples.get(name, []) if keep is None or keep(lab))


def requests_by_kind(samples: Samples) -> dict[str, float]:
    """The operator's own count of its API requests, by "verb resource"."""
    out: dict[str, float] = {}
    for lab, v in samples.get("deepseek_operator_api_requests_total", []):
        key = f"{lab.get('verb', '')} {lab.get('resource', '')}"
        out[key] = out.get(key, 0.0) + v
    return out


def is_resource_request(labels: dict[str, str]) -> bool:
    """apiserver_request_total samples of resource requests: the operator's traffic is all of
    this kind; /metrics, /healthz and discovery are not counted."""
    return bool(labels.get("resource"))


def quantile(values: Iterable[float], q: float) -> float | None:
    """Linear-interpolated quantile (numpy's default) of the values; None when there are none."""
    xs = sorted(values)
    if not xs:
        return None
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus' histogram_quantile over cumulative (le, count) buckets (+Inf included)."""
    bs = sorted(buckets)
    if not bs or bs[-1][1] <= 0:
        return None
    rank = q * bs[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for le, count in bs:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return bs[-1][0]


def reconcile_buckets(samples: Samples, handler: str = "reconcile") -> list[tuple[float, float]]:
    """The operator's reconcile duration histogram as (le, cumulative count)."""
    return [
        (float(lab["le"]), v)
        for lab, v in samples.get("deepseek_operator_reconcile_duration_seconds_bucket", [])
        if lab.get("handler") == handler
    ]


_RECONCILED = re.compile(r"reconciled namespace=(\S+) name=(\S+) .* seconds=([0-9.]+)")


def reconcile_seconds(log_text: str, namespace: str) -> list[float]:
    """Durations of the reconciles of `namespace` in the operator's log (`seconds=`)."""
    out = []
    for line in log_text.splitlines():
        m = _RECONCILED.search(line)
        if m and m.group(1) == namespace:
            out.append(float(m.group(3)))
    return out


def parse_proc_status(text: str) -> tuple[float, float]:
    """/proc/<pid>/status -> (VmRSS, VmHWM) in MiB."""
    kb = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            kb[key] = float(rest.split()[0])
    return kb.get("VmRSS", 0.0) / 1024, kb.get("VmHWM", 0.0) / 1024


def parse_proc_stat(text: str, ticks_per_s: float) -> float:
    """/proc/<pid>/stat -> user + system CPU seconds (the command may contain spaces)."""
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (float(fields[11]) + float(fields[12])) / ticks_per_s


@dataclass(frozen=True)
class Snapshot:
    """What the benchmark reads at one instant."""

    t: float  # monotonic seconds
    api_requests: float  # apiserver_request_total, resource requests, summed
    operator_cpu_s: float
    queries: float  # deepseek_operator_prometheus_query_duration_seconds_count, summed
    queries_per_tick_gauge: float | None
    reconciles: float  # deepseek_operator_reconcile_duration_seconds_count (reconcile)
    # deepseek_operator_api_requests_total by "verb resource": what the reconciles asked for
    requests: dict[str, float] = field(default_factory=dict)


@dataclass
class PointRaw:
    """Everything measured for one N, before summarising."""

    resources: int
    signal_interval_s: float
    all_reconciled_s: float | None  # None: not within the timeout
    all_ready_s: float | None
    reconcile_s: list[float]  # every reconcile of the point, from the log
    steady_reconcile_s: list[float]  # those that ended in the steady window
    histogram: list[tuple[float, float]]  # (le, count) at the end of the steady window
    rss_mb_peak: float
    rss_mb_end: float
    cpu_s_total: float  # the operator's CPU from its start to the end of the steady window
    steady: tuple[Snapshot, Snapshot]  # operator running, no benchmark traffic
    background: tuple[Snapshot, Snapshot]  # operator stopped
    create_s: float  # how long creating the N resources took
    errors: list[str] = field(default_factory=list)


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


def summarise(raw: PointRaw) -> dict[str, Any]:
    """One point of scale.json from the raw measurements."""
    a, b = raw.steady
    c, d = raw.background
    steady_s = b.t - a.t
    ticks = steady_s / raw.signal_interval_s
    api_rate = (b.api_requests - a.api_requests) / steady_s
    bg_rate = (d.api_requests - c.api_requests) / (d.t - c.t) if d.t > c.t else 0.0
    operator_api_rate = max(0.0, api_rate - bg_rate)
    reconciles = b.reconciles - a.reconciles
    return {
        "resources": raw.resources,
        "rss_mb": _round(raw.rss_mb_peak, 1),
        "rss_mb_end": _round(raw.rss_mb_end, 1),
        "reconcile_p50_s": _round(quantile(raw.reconcile_s, 0.5)),
        "reconcile_p99_s": _round(quantile(raw.reconcile_s, 0.99)),
        "reconcile_max_s": _round(max(raw.reconcile_s, default=None)),
        "reconciles": len(raw.reconcile_s),
        "steady_reconcile_p50_s": _round(quantile(raw.steady_reconcile_s, 0.5)),
        "steady_reconcile_p99_s": _round(quantile(raw.steady_reconcile_s, 0.99)),
        "reconcile_p99_s_histogram": _round(histogram_quantile(raw.histogram, 0.99)),
        "queries_per_tick": b.queries_per_tick_gauge,
        "queries_per_tick_window": _round((b.queries - a.queries) / ticks, 2),
        "api_requests_per_tick": _round(operator_api_rate * raw.signal_interval_s, 1),
        "api_requests_per_s": _round(operator_api_rate, 2),
        "api_requests_per_reconcile": _round(
            operator_api_rate * steady_s / reconciles if reconciles else None, 2
        ),
        "background_api_requests_per_s": _round(bg_rate, 2),
        # the operator's own count over the steady window, per reconcile, by verb and resource
        "operator_requests_per_reconcile": {
            k: _round((v - a.requests.get(k, 0.0)) / reconciles, 3)
            for k, v in sorted(b.requests.items())
            if reconciles and v > a.requests.get(k, 0.0)
        },
        "all_reconciled_s": _round(raw.all_reconciled_s, 1),
        "all_ready_s": _round(raw.all_ready_s, 1),
        "create_s": _round(raw.create_s, 1),
        "cpu_s": _round(raw.cpu_s_total, 1),
        "steady_cpu_cores": _round((b.operator_cpu_s - a.operator_cpu_s) / steady_s, 3),
        "steady_reconciles_per_s": _round(reconciles / steady_s, 2),
        "steady_window_s": _round(steady_s, 1),
        "errors": raw.errors,
    }


def aims(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's aims, judged on the measured points."""
    if not points:
        return {}
    largest = max(points, key=lambda p: int(p["resources"]))
    qs = {p["queries_per_tick"] for p in points}
    p99 = largest["reconcile_p99_s"]
    return {
        "at_resources": largest["resources"],
        "queries_per_tick_independent_of_n": len(qs) == 1,
        "rss_under_300_mb": largest["rss_mb"] is not None and largest["rss_mb"] < AIM_RSS_MB,
        "reconcile_p99_under_100_ms": p99 is not None and p99 < AIM_RECONCILE_P99_S,
    }


# ---------------------------------------------------------------------------------------------
# The run: cluster, operator, resources


def dsd_body(name: str) -> dict[str, Any]:
    """The resource every point creates N of: examples/deepseek-r1-distill-7b.yaml (one H100
    per replica) autoscaled between 1 and 2 replicas, the engine pod marked to run without the
    simulated fleet (it becomes Ready after the cluster's start delay)."""
    body = dict(yaml.safe_load((REPO / "examples" / "deepseek-r1-distill-7b.yaml").read_text()))
    body["metadata"] = {"name": name}
    body["spec"]["scaling"]["minReplicas"] = 1
    body["spec"]["scaling"]["maxReplicas"] = 2
    engine = body["spec"].setdefault("engine", {})
    engine.setdefault("podAnnotations", {})["sim.deepseek.dev/fleet"] = "false"
    return body


def _log(event: str, **kv: object) -> None:
    items = " ".join(f"{k}={v}" for k, v in kv.items())
    print(f"bench.scale {event} {items}".rstrip(), file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_cluster(max_resources: int) -> Any:
    """The `bench` profile's single region, no fleet, with kwok nodes enough for
    `max_resources` one-GPU, 8-CPU pods: H100 nodes of 96 GPUs and 110 pods in three zones (the
    scheduler's and kwok's work is not what is measured, so few large nodes)."""
    from testbed.cluster import LocalCluster, NodeSpec, region_configs, zones
    from testbed.cluster.layout import H100

    cfg = region_configs(profile="bench", fleet=False)[0]
    per_node = 96
    count = max(3, math.ceil(max_resources * 1.1 / per_node / 3) * 3)
    zs = zones(cfg.region)
    nodes = tuple(
        NodeSpec(
            name=f"{zs[i % 3]}-h100-{i // 3 + 1}",
            zone=zs[i % 3],
            gpu_product=H100,
            gpus=per_node,
            cpu="1024",
            memory="8Ti",
            pods=110,
        )
        for i in range(count)
    )
    return LocalCluster([cfg.with_(nodes=nodes)])


class Probe:
    """Reads the API server's, the operator's and /proc's numbers."""

    def __init__(self, region: Any, state_dir: Path) -> None:
        from testbed.cluster.components import Paths

        pki = Paths(state_dir).pki
        self.ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
        self.ctx.load_cert_chain(str(pki.admin_crt), str(pki.admin_key))
        self.api_url = str(region.api_url)
        self.operator_metrics_url = ""
        self.pid = 0
        self.ticks_per_s = float(os.sysconf("SC_CLK_TCK"))

    def apiserver(self) -> Samples:
        with urllib.request.urlopen(f"{self.api_url}/metrics", context=self.ctx, timeout=30) as r:
            return parse_metrics(r.read().decode())

    def operator(self) -> Samples:
        with urllib.request.urlopen(self.operator_metrics_url, timeout=30) as r:
            return parse_metrics(r.read().decode())

    def memory(self) -> tuple[float, float]:
        return parse_proc_status(Path(f"/proc/{self.pid}/status").read_text())

    def cpu(self) -> float:
        return parse_proc_stat(Path(f"/proc/{self.pid}/stat").read_text(), self.ticks_per_s)

    def snapshot(self, *, operator_running: bool = True) -> Snapshot:
        api = total(self.apiserver(), "apiserver_request_total", is_resource_request)
        if not operator_running:
            return Snapshot(time.monotonic(), api, 0.0, 0.0, None, 0.0)
        op = self.operator()
        gauge = op.get("deepseek_operator_prometheus_queries_per_tick")
        return Snapshot(
            t=time.monotonic(),
            api_requests=api,
            operator_cpu_s=self.cpu(),
            queries=total(op, "deepseek_operator_prometheus_query_duration_seconds_count"),
            queries_per_tick_gauge=gauge[0][1] if gauge else None,
            reconciles=total(
                op,
                "deepseek_operator_reconcile_duration_seconds_count",
                lambda lab: lab.get("handler") == "reconcile",
            ),
            requests=requests_by_kind(op),
        )


def _install_crds(kubectl: list[str]) -> None:
    for crd in sorted((REPO / "crds").glob("*.yaml")):
        subprocess.run(
            [*kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(crd)],
            check=True,
            capture_output=True,
        )
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"],
        check=True,
        capture_output=True,
    )


def _start_operator(
    region: Any, namespace: str, log_path: Path, metrics_port: int
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "deepseek_operator",
        "run",
        "--kubeconfig",
        str(region.kubeconfig),
        "-n",
        namespace,
        "--standalone",
        "--prometheus-url",
        str(region.prometheus_url),
        "--signal-interval",
        str(SIGNAL_INTERVAL_S),
        "--bind-address",
        "127.0.0.1",
        "--metrics-port",
        str(metrics_port),
        "--health-port",
        str(_free_port()),
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the operator exited at start; see {log_path}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return proc
        except OSError:
            time.sleep(0.3)
    _stop(proc)
    raise RuntimeError(f"the operator's /metrics never answered; see {log_path}")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _progress(custom: Any, namespace: str) -> tuple[int, int, int]:
    """(resources, reconciled, ready) in the namespace."""
    from deepseek_operator.api.base import GROUP, PLURAL, VERSION

    items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    reconciled = ready = 0
    for o in items:
        st = o.get("status") or {}
        if st.get("observedGeneration") == o["metadata"].get("generation"):
            reconciled += 1
            if int(st.get("readyReplicas") or 0) >= 1:
                ready += 1
    return len(items), reconciled, ready


def _release(custom: Any, core: Any, namespace: str, timeout_s: float) -> None:
    """Delete a point's namespace once its operator is gone: finalizers dropped first."""
    from deepseek_operator.api.base import GROUP, PLURAL, VERSION

    items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    for o in items:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            o["metadata"]["name"],
            {"metadata": {"finalizers": None}},
        )
    core.delete_namespace(namespace, propagation_policy="Background")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not [n for n in core.list_namespace().items if n.metadata.name == namespace]:
            return
        time.sleep(2)
    _log("release.timeout", namespace=namespace)


def run_point(
    n: int,
    *,
    region: Any,
    probe: Probe,
    api: Any,
    logs: Path,
    steady_s: float,
    background_s: float,
    reconcile_timeout_s: float,
) -> PointRaw:
    from deepseek_operator.api.base import GROUP, PLURAL, VERSION
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    ns = f"{NAMESPACE_PREFIX}{n}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    deadline = time.monotonic() + 30
    while not core.list_namespaced_service_account(ns).items and time.monotonic() < deadline:
        time.sleep(0.5)
    log_path = logs / f"operator-{n}.log"
    port = _free_port()
    proc = _start_operator(region, ns, log_path, port)
    probe.pid = proc.pid
    probe.operator_metrics_url = f"http://127.0.0.1:{port}/metrics"
    errors: list[str] = []
    try:
        cpu0 = probe.cpu()
        t0 = time.monotonic()
        for i in range(n):
            custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, dsd_body(f"dsd-{i:04d}")
            )
        create_s = time.monotonic() - t0
        _log("created", resources=n, seconds=f"{create_s:.1f}")
        all_reconciled = all_ready = None
        reconciled = ready = 0
        while time.monotonic() - t0 < reconcile_timeout_s:
            _, reconciled, ready = _progress(custom, ns)
            now = time.monotonic() - t0
            if all_reconciled is None and reconciled == n:
                all_reconciled = now
                _log("all_reconciled", resources=n, seconds=f"{now:.1f}")
            if ready == n:
                all_ready = now
                _log("all_ready", resources=n, seconds=f"{now:.1f}")
                break
            time.sleep(1.0)
        else:
            _log("timeout", resources=n, reconciled=reconciled, ready=ready)
            errors.append(
                f"after {reconcile_timeout_s:.0f} s: {reconciled}/{n} reconciled, {ready}/{n} Ready"
            )
        time.sleep(SIGNAL_INTERVAL_S)  # the wake-ups of the last pods settle
        a = probe.snapshot()
        log_a = log_path.stat().st_size
        time.sleep(steady_s)  # no API traffic of the benchmark in this window
        b = probe.snapshot()
        log_b = log_path.stat().st_size
        rss_end, rss_peak = probe.memory()
        cpu_total = probe.cpu() - cpu0
        histogram = reconcile_buckets(probe.operator())
        _stop(proc)
        time.sleep(2.0)
        c = probe.snapshot(operator_running=False)
        time.sleep(background_s)
        d = probe.snapshot(operator_running=False)
    finally:
        _stop(proc)
    text = log_path.read_bytes()
    durations = reconcile_seconds(text.decode(errors="replace"), ns)
    steady_durations = reconcile_seconds(text[log_a:log_b].decode(errors="replace"), ns)
    raw = PointRaw(
        resources=n,
        signal_interval_s=SIGNAL_INTERVAL_S,
        all_reconciled_s=all_reconciled,
        all_ready_s=all_ready,
        reconcile_s=durations,
        steady_reconcile_s=steady_durations,
        histogram=histogram,
        rss_mb_peak=rss_peak,
        rss_mb_end=rss_end,
        cpu_s_total=cpu_total,
        steady=(a, b),
        background=(c, d),
        create_s=create_s,
        errors=errors,
    )
    return raw


def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [p["resources"] for p in points]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0][0]
    ax.plot(ns, [p["rss_mb"] for p in points], "o-", label="RSS peak")
    ax.plot(ns, [p["rss_mb_end"] for p in points], "s--", label="RSS at end")
    ax.axhline(AIM_RSS_MB, color="grey", ls=":", label="aim 300 MB")
    ax.set_ylabel("MiB")
    ax.set_title("operator memory")
    ax = axes[0][1]
    for key, mark, label in (
        ("reconcile_p50_s", "o-", "p50"),
        ("reconcile_p99_s", "s-", "p99"),
        ("steady_reconcile_p50_s", "o--", "p50 steady"),
        ("steady_reconcile_p99_s", "s--", "p99 steady"),
    ):
        ax.plot(ns, [(p[key] or 0) * 1000 for p in points], mark, label=label)
    ax.axhline(AIM_RECONCILE_P99_S * 1000, color="grey", ls=":", label="aim p99 100 ms")
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    ax.set_title("reconcile duration")
    ax = axes[1][0]
    ax.plot(ns, [p["queries_per_tick"] for p in points], "o-", label="Prometheus queries")
    ax.plot(ns, [p["api_requests_per_tick"] for p in points], "s-", label="API requests")
    for p in points:
        for key in ("queries_per_tick", "api_requests_per_tick"):
            if p[key]:
                ax.annotate(f"{p[key]:g}", (p["resources"], p[key]), fontsize=7, va="bottom")
    ax.set_yscale("log")
    ax.set_ylabel(f"per {SIGNAL_INTERVAL_S:.0f} s tick")
    ax.set_title("requests per signal tick (steady)")
    ax = axes[1][1]
    ax.plot(ns, [p["all_reconciled_s"] for p in points], "o-", label="all reconciled")
    ax.plot(ns, [p["all_ready_s"] for p in points], "s--", label="all Ready")
    ax.plot(ns, [p["cpu_s"] for p in points], "^-", label="operator CPU s")
    late = [p for p in points if p["all_reconciled_s"] is None]
    for i, p in enumerate(late):
        msg = "; ".join(p["errors"]) or "not all reconciled"
        ax.text(
            0.02, 0.9 - 0.07 * i, f"N={p['resources']}: {msg}", transform=ax.transAxes, fontsize=8
        )
    ax.set_ylabel("seconds")
    ax.set_title("time from the first create; CPU used")
    for ax in axes.flat:
        ax.set_xscale("log")
        ax.set_xlabel("DeepSeekDeployments")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("deepseek-operator at scale (local cluster, kwok nodes, 2 CPU cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def setup(args: argparse.Namespace) -> dict[str, Any]:
    body = dsd_body("dsd-0000")
    return {
        "machine": f"{os.cpu_count()} CPU cores; the cluster, Prometheus, the operator and the "
        "benchmark share them",
        "cluster": "profile `bench` (testbed/cluster/config.py): one region, real kube-apiserver, "
        "etcd, controller-manager and scheduler, kwok H100 nodes of 96 GPUs, Prometheus; "
        "no simulated fleet (engine pods become Ready after the start delay, export nothing)",
        "spec": body["spec"],
        "spec_from": "examples/deepseek-r1-distill-7b.yaml, scaling 1..2 replicas (1 Ready "
        "pod each; no signals, so every autoscaling decision holds)",
        "operator": f"deepseek-operator run -n scale-N --standalone --signal-interval "
        f"{SIGNAL_INTERVAL_S:g} (fresh process per point)",
        "steady_window_s": args.steady,
        "background_window_s": args.background,
        "method": {
            "all_reconciled_s": "from the first create until every resource has "
            "status.observedGeneration == metadata.generation (polled each second)",
            "reconcile_p50_s/p99_s": "over every reconcile of the point (the start-up burst "
            "and the steady window), from the operator log's `seconds=` (wall time of one "
            "reconcile in its worker thread, waits for the API server and the GIL included); "
            "steady_reconcile_*: those in the steady window; reconcile_p99_s_histogram: the "
            "/metrics histogram's, interpolated in its buckets",
            "rss_mb": "peak resident set (VmHWM) of the operator process; rss_mb_end: VmRSS "
            "after the steady window",
            "cpu_s": "the operator's user+system CPU from its start to the end of the steady "
            "window (/proc)",
            "queries_per_tick": "the operator's own gauge (queries its last signal tick made); "
            "queries_per_tick_window: query count over the steady window / its length in ticks",
            "api_requests_per_tick": "apiserver_request_total (resource requests) per second "
            "over the steady window minus the same with the operator stopped, x the signal "
            "interval",
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--points", default=",".join(map(str, DEFAULT_POINTS)))
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    p.add_argument("--steady", type=float, default=60.0, help="steady window, seconds")
    p.add_argument("--background", type=float, default=30.0, help="operator-off window, seconds")
    p.add_argument("--timeout", type=float, default=600.0, help="per point: all Ready by then")
    p.add_argument("--replot", action="store_true", help="only redraw scale.png from scale.json")
    args = p.parse_args(argv)
    if args.replot:
        path = Path(args.out) / "scale.json"
        plot(json.loads(path.read_text())["points"], path.with_suffix(".png"))
        return 0
    points = sorted({int(x) for x in args.points.split(",") if x.strip()})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from kubernetes import config

    cluster = bench_cluster(max(points))
    logs = REPO / ".local" / "bench-scale"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    results: list[dict[str, Any]] = []
    t_start = time.monotonic()
    load_start = os.getloadavg()
    try:
        cluster.down(purge=True)  # a fresh cluster: nothing of an earlier run is left
        region = cluster.up()["us-east"]
        kubectl = [
            str(cluster.bindir / "kubectl"),
            "--kubeconfig",
            str(region.kubeconfig),
            "--context",
            region.context,
        ]
        _install_crds(kubectl)
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(region.kubeconfig), context=region.context
        )
        probe = Probe(region, region.state_dir)
        from kubernetes import client

        for i, n in enumerate(points):
            _log("point", resources=n)
            raw = run_point(
                n,
                region=region,
                probe=probe,
                api=api,
                logs=logs,
                steady_s=args.steady,
                background_s=args.background,
                reconcile_timeout_s=args.timeout,
            )
            point = summarise(raw)
            _log("point.done", **{k: v for k, v in point.items() if k != "errors"})
            results.append(point)
            if i < len(points) - 1:
                _release(client.CustomObjectsApi(api), client.CoreV1Api(api), f"scale-{n}", 300)
    finally:
        cluster.down(purge=True)
    doc = {
        "points": results,
        "aims": aims(results),
        "setup": setup(args),
        "command": "python -m bench.scale --points " + ",".join(map(str, points)),
        "wall_s": round(time.monotonic() - t_start, 1),
        # The machine is not the benchmark's alone (other sessions' clusters and benchmarks may
        # run): the 1/5/15-minute load averages before and after say how busy it was.
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
    }
    (out / "scale.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot(results, out / "scale.png")
    _log("wrote", json=out / "scale.json", png=out / "scale.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
