"""Contract with the real engine: vLLM 0.32 (CPU build), started through
serving/deepseek_serving/entrypoint.py with the arguments the operator renders, scraped by a real
Prometheus 2.42, queried with the operator's and the dashboards' exact PromQL.

The tests run in file order against one server; the drain test stops it and comes last.

Excluded, because a CPU server exports no DCGM series (the NVML exporter serves them on GPU
nodes; tests/unit/test_nvml_exporter.py checks its names, docs/gpu-exporter.md its H100 run):
the signals gpuUtilization and gpuMemoryUsed, the dashboards' DCGM panels and rules. Also
excluded: dashboard panels on the operator's own series (deepseek_operator_*, up{job=...}) and
on recording rules (the e2e suite runs those with the operator and the rule files loaded).
"""

from __future__ import annotations

import json
import math
import re
import signal
import threading
import time
import urllib.request
from typing import Any

import pytest
from deepseek_operator.adapters.prometheus import signals_by_key
from deepseek_operator.signals import BUCKET_SIGNALS, Key, Signal, promql, share_over

from .conftest import COLOUR, DSD, NAMESPACE, NODE, ROOT, Engine, Prometheus, http

pytestmark = [pytest.mark.contract, pytest.mark.slow]

GPU_SIGNALS = {Signal.GPU_UTILIZATION, Signal.GPU_MEMORY_USED}
ENGINE_SERIES = re.compile(r"^(vllm:[a-z_:]+|http_requests_total)$")
LATENCY_SIGNALS = {Signal.TTFT_P50, Signal.TTFT_P99, Signal.TPOT_P99}
# The drain test's request: long enough to still run when SIGTERM arrives (a 2-layer model
# decodes a few hundred tokens a second on 2 cores), within max_model_len 2048.
LONG_TOKENS = 1800


def complete(
    engine: Engine,
    prompt: str,
    max_tokens: int,
    headers: dict[str, str] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    body = {
        "model": engine.served_name,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "temperature": 0,
        **kw,
    }
    code, raw = http(engine.base + "/v1/completions", body, timeout=300, headers=headers)
    assert code == 200, raw[:2000]
    return json.loads(raw)  # type: ignore[no-any-return]


def stream(engine: Engine, prompt: str, max_tokens: int, started: threading.Event | None = None):
    """Streamed completion: (text chunks, final usage, saw [DONE])."""
    body = {
        "model": engine.served_name,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    req = urllib.request.Request(
        engine.base + "/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    chunks: list[str] = []
    usage: dict[str, Any] | None = None
    done = False
    with urllib.request.urlopen(req, timeout=300) as r:
        assert r.status == 200
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            if data == "[DONE]":
                done = True
                break
            doc = json.loads(data)
            if doc.get("usage"):
                usage = doc["usage"]
            for choice in doc.get("choices", []):
                chunks.append(choice.get("text", ""))
            if started is not None and chunks:
                started.set()
    return chunks, usage, done


def test_engine_started_through_entrypoint_with_operator_args(engine: Engine) -> None:
    args = engine.args
    assert args[args.index("--shutdown-timeout") + 1] == "60"
    assert args[args.index("--dtype") + 1] == "bfloat16"  # the bf16 rung
    events = engine.events()
    for phase in ("config_loaded", "checking_cache", "cache_checked", "starting_engine"):
        assert phase in events, events
    deadline = time.monotonic() + 10
    while "engine_healthy" not in engine.events() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "engine_healthy" in engine.events()
    code, body = http(engine.status + "/ready", timeout=5)
    assert code == 200 and json.loads(body)["phase"] == "ready"


def test_health_and_models(engine: Engine) -> None:
    assert http(engine.base + "/health")[0] == 200
    code, body = http(engine.base + "/v1/models")
    assert code == 200
    models = json.loads(body)["data"]
    assert [m["id"] for m in models] == [DSD]
    assert models[0]["max_model_len"] == 2048


def test_completion(engine: Engine) -> None:
    doc = complete(engine, "The operator scales replicas on", 16)
    assert doc["model"] == DSD
    [choice] = doc["choices"]
    assert isinstance(choice["text"], str) and choice["text"]
    assert choice["finish_reason"] == "length"
    assert doc["usage"]["completion_tokens"] == 16
    assert doc["usage"]["prompt_tokens"] > 0


def test_request_priorities_accepted(engine: Engine) -> None:
    """engine.schedulingPolicy priority renders --scheduling-policy priority; vLLM then takes a
    request's priority from the body's `priority` (P2 = 2 here) or from the X-Vllm-Priority
    header (which wins over the body). (Chat completions take the same field; the tiny model
    has no chat template to try them with.)"""
    args = engine.args
    assert args[args.index("--scheduling-policy") + 1] == "priority"
    for doc in (
        complete(engine, "Batch jobs wait behind interactive users", 8, priority=2),
        complete(engine, "Interactive users go first", 8, priority=0),
        complete(engine, "A header says P1", 8, headers={"X-Vllm-Priority": "1"}),
    ):
        [choice] = doc["choices"]
        assert choice["text"] and choice["finish_reason"] == "length"
        assert doc["usage"]["completion_tokens"] == 8


def test_streaming_completion(engine: Engine) -> None:
    chunks, usage, done = stream(engine, "Blue-green rollouts switch traffic", 12)
    assert done
    assert usage is not None and usage["completion_tokens"] == 12
    assert len([c for c in chunks if c]) >= 2  # really streamed, not one blob


def _labels_ok(result: list[dict[str, Any]]) -> bool:
    return any(
        r["metric"].get("namespace") == NAMESPACE
        and r["metric"].get("dsd") == DSD
        and r["metric"].get("colour") == COLOUR
        for r in result
    )


def _warm_prometheus(engine: Engine, prometheus: Prometheus) -> None:
    """Requests while Prometheus scrapes every second, so that rates and latency quantiles
    over the last minute have data."""
    deadline = time.monotonic() + 60
    while prometheus.scrapes() < 3:
        assert time.monotonic() < deadline, "Prometheus did not scrape vLLM"
        time.sleep(0.5)
    # http_requests_total{handler=...} exists from a handler's first request on: one request
    # and two scrapes first, or a test run alone sees that series appear at its final value
    # (a rate of 0, errorRate 0/0)
    complete(engine, "Prometheus scrapes every engine pod", 8)
    seen = prometheus.scrapes()
    while prometheus.scrapes() < seen + 2:
        assert time.monotonic() < deadline, "Prometheus stopped scraping vLLM"
        time.sleep(0.5)
    for i in range(4):
        complete(engine, f"Prometheus scrapes every engine pod {i}", 8)
    stream(engine, "Grafana shows the fleet", 8)
    time.sleep(4)  # a few more scrapes after the last request


def test_operator_signals_return_data_with_expected_labels(
    engine: Engine, prometheus: Prometheus
) -> None:
    _warm_prometheus(engine, prometheus)
    up = prometheus.query('up{job="vllm"}')["result"]
    assert up and up[0]["value"][1] == "1"
    problems = []
    values: dict[str, float] = {}
    for sig in Signal:
        if sig in GPU_SIGNALS:
            continue
        expr = promql(sig)
        result = prometheus.query(expr)["result"]
        if not result:
            problems.append(f"{sig.value}: no data from {expr}")
            continue
        if not _labels_ok(result):
            problems.append(f"{sig.value}: labels {[r['metric'] for r in result]}")
            continue
        value = float(result[0]["value"][1])
        values[sig.value] = value
        if math.isnan(value):
            problems.append(f"{sig.value}: NaN from {expr}")
    assert not problems, "\n".join(problems)
    # Values a user would expect after the requests above.
    assert values[Signal.REQUEST_RATE.value] > 0
    assert values[Signal.REQUESTS_TOTAL.value] >= 6
    assert values[Signal.ERRORS_TOTAL.value] == 0
    assert values[Signal.ERROR_RATE.value] == 0
    assert values[Signal.PODS_REPORTING.value] == 1
    assert 0 <= values[Signal.KV_CACHE_USAGE.value] <= 1
    assert 0 <= values[Signal.SAMPLE_AGE.value] < 30
    for sig in LATENCY_SIGNALS:
        assert 0 < values[sig.value] < 60, (sig, values[sig.value])
    # The histograms by bucket: one series per le, which the adapter keeps in Signals.buckets
    # (ascending, ending at +Inf); none of these few short requests took a minute.
    results = {sig: prometheus.query(promql(sig))["result"] for sig in BUCKET_SIGNALS}
    for sig, result in results.items():
        assert all("le" in r["metric"] for r in result), (sig, result)
    ours = signals_by_key(results, time.time())[Key(NAMESPACE, DSD, COLOUR)]
    assert set(ours.buckets) == BUCKET_SIGNALS
    for sig, buckets in ours.buckets.items():
        les = [le for le, _ in buckets]
        assert len(les) > 2 and les == sorted(les) and les[-1] == math.inf, (sig, les)
        assert buckets[-1][1] > 0, (sig, buckets)
        assert share_over(buckets, 60.0) == 0, (sig, buckets)
    # The filtered form the dashboards use selects the same series.
    filt = f'namespace="{NAMESPACE}",dsd="{DSD}"'
    assert prometheus.query(promql(Signal.RUNNING, filt))["result"]
    assert not prometheus.query(promql(Signal.RUNNING, 'dsd="other"'))["result"]


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
PROMQL_WORDS |= {"and", "or", "unless", "offset", "inf", "nan"}


def _metric_names(expr: str) -> set[str]:
    """Series names an expression reads: identifiers that are not functions, keywords, label
    names (in braces or grouping lists), durations or numbers."""
    e = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        rest = e[m.end() :].lstrip()
        if not rest.startswith("(") and m.group().lower() not in PROMQL_WORDS:
            names.add(m.group())
    return names


def dashboard_engine_queries() -> list[tuple[str, str]]:
    """(where, expr) for every dashboard panel and recording rule over engine series only."""
    gen = ROOT / "dashboards" / "generated"
    found: list[tuple[str, str]] = []

    def walk(o: Any, where: str) -> None:
        if isinstance(o, dict):
            if isinstance(o.get("expr"), str):
                found.append((where, o["expr"]))
            for v in o.values():
                walk(v, where)
        elif isinstance(o, list):
            for v in o:
                walk(v, where)

    for path in sorted(gen.glob("*.json")):
        walk(json.loads(path.read_text()), path.name)
    import yaml

    for path in sorted((gen / "rules").glob("*.yaml")):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            for rule in group.get("rules", []):
                if "record" in rule:
                    found.append((f"{path.name}:{rule['record']}", rule["expr"]))
    subst = {"$namespace": NAMESPACE, "$deployment": DSD, "$node": NODE, "$__rate_interval": "1m"}
    out = []
    for where, expr in found:
        names = _metric_names(expr)
        if names and all(ENGINE_SERIES.match(n) for n in names):
            for k, v in subst.items():
                expr = expr.replace(k, v)
            out.append((where, expr))
    return out


def test_dashboard_and_rule_queries_return_data(engine: Engine, prometheus: Prometheus) -> None:
    if not (ROOT / "dashboards" / "generated").is_dir():
        pytest.skip("dashboards/generated is not there yet")
    queries = dashboard_engine_queries()
    assert len(queries) >= 10, queries
    _warm_prometheus(engine, prometheus)
    empty = [f"{where}: {expr}" for where, expr in queries if not prometheus.query(expr)["result"]]
    assert not empty, "engine queries without data:\n" + "\n".join(empty)


def test_sigterm_drains_in_flight_request_then_exits_0(engine: Engine) -> None:
    """SIGTERM while a long streamed request runs: it completes in full, the entrypoint stops
    being ready during the drain, and the process exits 0 within the drain timeout."""
    started = threading.Event()
    outcome: dict[str, Any] = {}

    def long_request() -> None:
        try:
            outcome["result"] = stream(engine, "Drain me slowly", LONG_TOKENS, started)
        except Exception as e:
            outcome["error"] = repr(e)

    t = threading.Thread(target=long_request)
    t.start()
    assert started.wait(120), outcome
    t0 = time.monotonic()
    engine.proc.send_signal(signal.SIGTERM)
    readiness = []
    while engine.proc.poll() is None and time.monotonic() - t0 < 90:
        readiness.append(http(engine.status + "/ready", timeout=2)[0])
        time.sleep(0.2)
    t.join(60)
    rc = engine.proc.wait(timeout=30)
    took = time.monotonic() - t0
    assert "error" not in outcome, outcome
    _chunks, usage, done = outcome["result"]
    assert done and usage is not None and usage["completion_tokens"] == LONG_TOKENS, usage
    assert rc == 0, engine.log_text()[-4000:]
    assert took < 60 + 10 + 5  # --shutdown-timeout + stop timeout + slack
    assert 503 in readiness  # not ready while draining
    events = engine.events()
    for phase in ("drain_started", "drain_complete", "exit"):
        assert phase in events, events
    assert "drain_timeout" not in events
    # vLLM itself saw the request in flight when the SIGTERM reached it, and drained it.
    assert re.search(
        r"\[shutdown\] EngineCore: draining in-flight requests count=[1-9]", engine.log_text()
    )
    exit_line = [ln for ln in engine.log_text().splitlines() if "event=exit" in ln][-1]
    assert "code=0" in exit_line and "reason=OK" in exit_line
