"""Grafana dashboards as code (dashboards/): the checked-in JSON matches the generator, the
JSON is a well-formed current-schema dashboard with `datasource`, `namespace` and `deployment`
variables, every panel queries real metric names through the data source variable, and every
query parses as PromQL (promtool, the same parser Prometheus uses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import dashboards
from dashboards import generate, grafana, names, rules, values_table
from tests.unit.test_rules import _promtool

ROOT = Path(__file__).resolve().parents[2]
RECORDED = frozenset(r.record for r in rules.recordings())
DS = {"type": "prometheus", "uid": "${datasource}"}


def _load(uid: str) -> dict[str, Any]:
    return json.loads((generate.GENERATED / f"{uid}.json").read_text())  # type: ignore[no-any-return]


UIDS = [d.uid for d in dashboards.DASHBOARDS]


def test_checked_in_files_match_the_generator() -> None:
    """`python -m dashboards --check`: dashboards, rules and the chart's copies (and the chart's
    CRDs, which must equal crds/) are what the code generates."""
    assert generate.stale() == [], "stale generated files: run `make dashboards`"
    res = subprocess.run(
        [sys.executable, "-m", "dashboards", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr


def test_drift_check_detects_an_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hand edit of a generated file is reported (the check can fail)."""
    outputs = generate.outputs()
    target = generate.GENERATED / "deepseek-fleet.json"
    copy = tmp_path / "deepseek-fleet.json"
    copy.write_text(outputs[target].replace("Fleet overview", "Fleet overwiew", 1))
    monkeypatch.setattr(generate, "outputs", lambda: {copy: outputs[target]})
    assert generate.stale() == [copy]


def test_three_dashboards_with_unique_uids() -> None:
    assert UIDS == ["deepseek-fleet", "deepseek-gpus", "deepseek-operator"]
    titles = [_load(u)["title"] for u in UIDS]
    assert len(set(titles)) == 3


@pytest.mark.parametrize("uid", UIDS)
def test_dashboard_schema(uid: str) -> None:
    d = _load(uid)
    assert d["uid"] == uid and len(uid) <= 40
    assert d["schemaVersion"] == grafana.SCHEMA_VERSION >= 39  # Grafana 11/12 dashboards
    assert "id" not in d  # provisioned dashboards must not carry a database id
    assert d["time"]["to"] == "now" and d["refresh"]
    # variables: datasource first, then namespace and deployment
    tpl = {v["name"]: v for v in d["templating"]["list"]}
    assert d["templating"]["list"][0]["name"] == "datasource"
    assert tpl["datasource"]["type"] == "datasource"
    assert tpl["datasource"]["query"] == "prometheus"
    for var in ("namespace", "deployment"):
        v = tpl[var]
        assert v["type"] == "query" and v["datasource"] == DS
        assert v["includeAll"] and v["multi"] and v["allValue"] == ".*"
        assert v["definition"].startswith("label_values(")
    assert "$namespace" in tpl["deployment"]["definition"]  # deployments of the chosen namespaces


@pytest.mark.parametrize("uid", UIDS)
def test_panels_layout_and_datasource(uid: str) -> None:
    d = _load(uid)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= grafana.GRID_WIDTH, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))
        if p["type"] == "row":
            continue
        assert p["title"] and p["description"], p
        assert p["datasource"] == DS, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        for t in p["targets"]:
            assert t["datasource"] == DS and t["expr"].strip(), p["title"]


def _titles(uid: str) -> str:
    return " | ".join(p["title"].lower() for p in _load(uid)["panels"])


def test_fleet_dashboard_shows_what_the_issue_asks() -> None:
    t = _titles("deepseek-fleet")
    for want in (
        "requests per second",
        "time to first token",
        "time per output token",
        "waiting",
        "kv-cache",
        "error",
        "replicas",
        "quantization",
        "active colour",
        "region traffic weights",
    ):
        assert want in t, want
    exprs = " ".join(q.expr for q in dashboards.panel_queries() if q.dashboard == "deepseek-fleet")
    assert "deepseek_operator_slo_target" in exprs  # latency and errors are drawn against SLO


def test_gpu_dashboard_shows_dcgm_per_gpu_and_pod() -> None:
    t = _titles("deepseek-gpus")
    for want in ("utilization", "memory", "power", "temperature", "xid"):
        assert want in t, want
    exprs = " ".join(q.expr for q in dashboards.panel_queries() if q.dashboard == "deepseek-gpus")
    for metric in (
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_XID_ERRORS",
    ):
        assert metric in exprs


def test_operator_dashboard_shows_decisions_latency_errors() -> None:
    t = _titles("deepseek-operator")
    for want in ("scaling decisions", "reconcile latency", "reconcile errors"):
        assert want in t, want


QUERIES = dashboards.panel_queries()


@pytest.mark.parametrize("q", QUERIES, ids=[f"{q.dashboard}:{q.panel}:{q.ref_id}" for q in QUERIES])
def test_panel_queries_use_real_metric_names(q: dashboards.PanelQuery) -> None:
    assert names.metric_names(q.expr), "a panel that queries no metric"
    assert names.unknown_metrics(q.expr, RECORDED) == set()


def test_per_deployment_panels_honour_the_variables() -> None:
    """Engine and per-deployment operator series are filtered by $namespace and $deployment
    (checked on the raw expressions, before substitution)."""
    for d in dashboards.DASHBOARDS:
        for p in d.panels():
            for t in p.targets:
                used = names.metric_names(t.expr)
                per_dsd = any(
                    n.startswith(("vllm:", "http_requests", "namespace_dsd")) or _has_dsd_label(n)
                    for n in used
                )
                if per_dsd:
                    assert "$namespace" in t.expr and "$deployment" in t.expr, (d.uid, p.title)


def _per_dsd_operator_metrics() -> set[str]:
    """Sample names of the operator's metrics that carry the `dsd` label."""
    from deepseek_operator.adapters import metrics
    from prometheus_client.metrics import MetricWrapperBase

    out = set()
    for m in vars(metrics).values():
        if isinstance(m, MetricWrapperBase) and "dsd" in m._labelnames:
            base = m._name
            out |= {base, f"{base}_total", f"{base}_bucket", f"{base}_count", f"{base}_sum"}
    return out


def _has_dsd_label(metric: str) -> bool:
    return metric in _per_dsd_operator_metrics()


def test_variable_queries_use_real_metric_names() -> None:
    for uid, var, query in dashboards.variable_queries():
        assert names.unknown_metrics(query, RECORDED) == set(), (uid, var)


@pytest.mark.parametrize(
    "variables",
    [{}, {"namespace": "prod|staging", "deployment": "r1", "node": "gpu-node-1"}],
    ids=["all", "selected"],
)
@pytest.mark.parametrize("tool", ["promtool", "promtool3"])
def test_every_panel_query_parses(tmp_path: Path, variables: dict[str, str], tool: str) -> None:
    """Each panel expression, variables substituted as Grafana does, wrapped in a recording
    rule and checked by promtool: a PromQL syntax error fails here, not on a user's screen."""
    promtool = _promtool(tool)
    queries = dashboards.panel_queries(variables)
    doc = {
        "groups": [
            {
                "name": "panels",
                "rules": [
                    {"record": f"panel:q{i}:check", "expr": q.expr} for i, q in enumerate(queries)
                ],
            }
        ]
    }
    f = tmp_path / "panels.yaml"
    f.write_text(yaml.safe_dump(doc))
    res = subprocess.run(
        [promtool, "check", "rules", str(f)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(queries)} rules found" in res.stdout


def test_substitute_rejects_unknown_variables() -> None:
    with pytest.raises(KeyError):
        dashboards.substitute('up{x=~"$nope"}', {})


VALUES_SAMPLE = """\
# -- Replicas.
replicaCount: 1
image:
  # -- The image,
  # continued.
  repository: x/y
  pullPolicy: IfNotPresent
# -- A mapping documented as a whole.
podSecurityContext:
  runAsUser: 10001
undocumented:
  nested:
    # -- Deep, e.g. <release> | pipe.
    leaf: [a]
"""


def test_values_table_rows() -> None:
    assert values_table.rows(VALUES_SAMPLE) == [
        ("replicaCount", "1", "Replicas."),
        ("image.repository", '"x/y"', "The image, continued."),
        ("image.pullPolicy", '"IfNotPresent"', ""),
        ("podSecurityContext", '{"runAsUser": 10001}', "A mapping documented as a whole."),
        ("undocumented.nested.leaf", '["a"]', "Deep, e.g. <release> | pipe."),
    ]
    table = values_table.table(VALUES_SAMPLE)
    assert (
        '| `undocumented.nested.leaf` | `["a"]` | Deep, e.g. &lt;release&gt; \\| pipe. |' in table
    )


def test_chart_readme_lists_every_value() -> None:
    readme = (generate.CHART / "README.md").read_text()
    values = (generate.CHART / "values.yaml").read_text()
    for path, _, _ in values_table.rows(values):
        assert f"| `{path}` |" in readme, path
    with pytest.raises(ValueError, match="markers"):
        values_table.with_table("no markers", values)
