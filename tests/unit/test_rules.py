"""Prometheus rules (dashboards/rules.py -> dashboards/generated/rules): `promtool check rules`,
`promtool test rules` (dashboards/tests/*.test.yaml) and the contract that every alert has a
case where it fires and one where it stays silent, plus severity, summary, description and a
runbook in docs/runbooks.

Both promtools scripts/build-tools.sh puts in $DEEPSEEK_CACHE/bin run every test: `promtool`
(Debian's Prometheus 2.42 package, unpacked) and `promtool3` (Prometheus 3, built from Go
modules). Without them the tests skip locally and fail under CI=true.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards import names, rules
from dashboards.generate import CHART, GENERATED

ROOT = Path(__file__).resolve().parents[2]
RULE_TESTS = ROOT / "dashboards" / "tests"
RUNBOOKS = ROOT / "docs" / "runbooks"
RULE_FILES = sorted((GENERATED / "rules").glob("*.rules.yaml"))
CHART_RULES = CHART / "files" / "prometheus-rules.yaml"


def _cache_bin() -> Path:
    return (
        Path(os.environ.get("DEEPSEEK_CACHE", Path.home() / ".cache" / "deepseek-operator")) / "bin"
    )


def _promtool(name: str = "promtool") -> str:
    """`promtool`: Debian's Prometheus 2.42 (what many clusters still run); `promtool3`: the
    Prometheus 3 release the local cluster runs (range selectors left-open, `le` normalised).
    The rules must behave the same under both."""
    env = os.environ.get(name.upper())
    for candidate in (env, str(_cache_bin() / name)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return found
    msg = f"{name} not found in {_cache_bin()}: run scripts/build-tools.sh (make tools)"
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="module", params=["promtool", "promtool3"])
def promtool(request: pytest.FixtureRequest) -> str:
    return _promtool(request.param)


def _run(promtool: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_generated_rule_files_are_up_to_date() -> None:
    stale = [p for p in [*RULE_FILES, CHART_RULES] if not p.exists()]
    assert RULE_FILES, "no generated rule files"
    assert not stale
    from dashboards.generate import stale as stale_files

    assert stale_files() == [], "run `make dashboards` (python -m dashboards)"


def test_promtool_check_rules(promtool: str) -> None:
    res = _run(promtool, "check", "rules", *map(str, RULE_FILES), str(CHART_RULES))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("SUCCESS") == len(RULE_FILES) + 1


RULE_TEST_FILES = sorted(RULE_TESTS.glob("*.test.yaml"))


@pytest.mark.parametrize("test_file", RULE_TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(promtool: str, test_file: Path) -> None:
    res = _run(promtool, "test", "rules", test_file.name, cwd=RULE_TESTS)
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_test_rules_can_fail(tmp_path: Path) -> None:
    """A wrong expectation (the alert on another deployment) makes promtool fail, so the
    passing runs above mean something."""
    src = (RULE_TESTS / "operator.test.yaml").read_text()
    bad = src.replace("dsd: stale", "dsd: fresh", 1)
    assert bad != src
    bad = bad.replace("../generated/rules/", f"{GENERATED / 'rules'}/")
    (tmp_path / "bad.test.yaml").write_text(bad)
    res = _run(_promtool(), "test", "rules", "bad.test.yaml", cwd=tmp_path)
    assert res.returncode != 0
    assert "DeepSeekOperatorNotReconciling" in res.stdout + res.stderr


def _alert_cases() -> dict[str, list[list[dict[str, object]]]]:
    """alertname -> the exp_alerts lists of every alert_rule_test case naming it."""
    cases: dict[str, list[list[dict[str, object]]]] = {}
    for f in RULE_TEST_FILES:
        for t in yaml.safe_load(f.read_text())["tests"]:
            for case in t.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(case.get("exp_alerts") or [])
    return cases


@pytest.mark.parametrize("alert", rules.alert_names())
def test_every_alert_has_firing_and_silent_cases(alert: str) -> None:
    cases = _alert_cases().get(alert, [])
    assert any(not c for c in cases), f"{alert}: no case where it stays silent"
    fired = [a for c in cases for a in c]
    assert fired, f"{alert}: no case where it fires"
    severities = {a.severity for a in rules.alerts() if a.name == alert}
    tested = {a["exp_labels"]["severity"] for a in fired}  # type: ignore[index]
    assert severities <= tested, f"{alert}: severities {severities - tested} never fire in a test"


def test_alert_names_cover_the_issue() -> None:
    """Every alert the product promises exists (issue 8)."""
    want = {
        "DeepSeekTTFTBudgetBurn",
        "DeepSeekErrorBudgetBurn",
        "DeepSeekKVCacheSaturated",
        "DeepSeekQueueGrowing",
        "DeepSeekEnginePodsUnschedulable",
        "DeepSeekGPUXidError",
        "DeepSeekGPUTemperatureHigh",
        "DeepSeekRolloutStuck",
        "DeepSeekRolloutRolledBack",
        "DeepSeekAtMaxReplicasBreachingSLO",
        "DeepSeekRegionUnhealthy",
        "DeepSeekOperatorDown",
        "DeepSeekOperatorNotReconciling",
    }
    assert want <= set(rules.alert_names())


def _all_generated_rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(CHART_RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_alerts_carry_severity_summary_description_runbook() -> None:
    alerts = [r for r in _all_generated_rules() if "alert" in r]
    assert len(alerts) == len(rules.alerts())
    for a in alerts:
        labels, ann = a["labels"], a["annotations"]
        assert isinstance(labels, dict) and isinstance(ann, dict)
        assert labels["severity"] in {"critical", "warning", "info"}, a["alert"]
        assert ann["summary"] and ann["description"], a["alert"]
        assert ann["runbook_url"] == f"{rules.RUNBOOK_BASE}/{a['alert']}.md"


@pytest.mark.parametrize("alert", rules.alert_names())
def test_every_alert_has_a_runbook(alert: str) -> None:
    path = RUNBOOKS / f"{alert}.md"
    assert path.exists(), f"missing runbook {path.relative_to(ROOT)}"
    text = path.read_text()
    assert text.startswith(f"# {alert}\n")
    for section in ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation"):
        assert section in text, f"{path.name}: no {section}"


def _operator_made_alerts() -> list[dict[str, object]]:
    """The alerts of the PrometheusRule the operator creates per DeepSeekDeployment."""
    from deepseek_operator import desired
    from deepseek_operator.api.resource import DeepSeekDeployment

    dsd = DeepSeekDeployment.model_validate(
        yaml.safe_load((ROOT / "examples" / "deepseek-r1.yaml").read_text())
    )
    rule = desired.prometheus_rule(dsd)
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


def test_runbook_base_points_into_this_repository() -> None:
    """One base for every runbook link, the chart's alerts and the operator's own, and one page
    per alert, no more."""
    from deepseek_operator import desired

    assert rules.RUNBOOK_BASE == desired.RUNBOOK_BASE
    assert rules.RUNBOOK_BASE.endswith("/blob/main/docs/runbooks")
    operator_made = _operator_made_alerts()
    for a in operator_made:
        assert a["annotations"]["runbook_url"] == f"{rules.RUNBOOK_BASE}/{a['alert']}.md"  # type: ignore[index]
        assert (RUNBOOKS / f"{a['alert']}.md").exists(), a["alert"]
    expected = set(rules.alert_names()) | {str(a["alert"]) for a in operator_made}
    assert {p.stem for p in RUNBOOKS.glob("DeepSeek*.md")} == expected


RECORDED = frozenset(r.record for r in rules.recordings())


def test_recording_rule_names_are_level_metric_operations() -> None:
    pattern = re.compile(r"^[a-z_]+:[a-zA-Z0-9_]+:[a-z0-9_]+$")
    for r in rules.recordings():
        assert pattern.match(r.record), r.record
        level = r.record.split(":")[0].split("_")
        # the level lists the labels the rule keeps, and the expression keeps exactly them
        by = re.search(r"(?:sum|avg|max|count|min) by \(([^)]*)\)", r.expr)
        if by and "histogram_quantile" not in r.expr and level != ["namespace", "dsd", "slo"]:
            kept = [x.strip() for x in by.group(1).split(",") if x.strip() != "le"]
            if r.record.split(":")[0] != "namespace_dsd_le":
                assert kept == level, r.record


ALL_RULES: list[rules.Recording | rules.Alert] = [*rules.recordings(), *rules.alerts()]


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: getattr(r, "record", None) or r.name)
def test_rules_query_real_metric_names(rule: rules.Recording | rules.Alert) -> None:
    assert names.unknown_metrics(rule.expr, RECORDED) == set()


def test_unknown_metric_names_are_caught() -> None:
    assert names.unknown_metrics("rate(vllm:time_to_first_token_second_bucket[5m])") == {
        "vllm:time_to_first_token_second_bucket"
    }
    assert names.unknown_metrics('deepseek_operator_desired_replica{dsd="x"}') == {
        "deepseek_operator_desired_replica"
    }


def test_alert_probes_are_real_series() -> None:
    """The probes the e2e test runs against a live fleet name real series or recordings."""
    for a in rules.alerts():
        assert a.probes, a.name
        for p in a.probes:
            assert names.unknown_metrics(p, RECORDED) == set(), (a.name, p)


def test_ttft_buckets_match_the_real_vllm_exposition() -> None:
    text = names.VLLM_EXPOSITION.read_text()
    les = re.findall(r'vllm:time_to_first_token_seconds_bucket\{[^}]*le="([^"]+)"', text)
    assert tuple(float(x) for x in les if x != "+Inf") == rules.TTFT_BUCKETS


# ---- one page per symptom ------------------------------------------------------------------
# A deployment failing 20% of its completions against a 1% error SLO trips both the chart's
# DeepSeekErrorBudgetBurn (fast burn, critical) and the operator's per-deployment
# DeepSeekDeploymentErrorsAboveSLO (critical). Where the chart's rules are loaded, only the
# burn-rate alert may page; without them the per-deployment alert is the page.

ERRORS_DSD = {
    "metadata": {"name": "r1", "namespace": "prod"},
    "spec": {
        "model": {"checkpoint": "deepseek-ai/DeepSeek-R1"},
        "scaling": {"slo": {"maxErrorRate": 0.01}},
    },
}
ERROR_SERIES = [
    {"series": 'deepseek_operator_slo_target{namespace="prod",dsd="r1",slo="error_rate"}',
     "values": "0.01x40"},
    {"series": 'up{job="deepseek-operator",namespace="ops",pod="op-1"}', "values": "1x40"},
    *(
        {"series": "http_requests_total{namespace=\"prod\",dsd=\"r1\",colour=\"blue\","
         f"pod=\"r1-1\",handler=\"/v1/completions\",method=\"POST\",status=\"{status}\"}}",
         "values": f"0+{per_min}x40"}
        for status, per_min in (("2xx", 80), ("5xx", 20))
    ),
]  # fmt: skip
BURN_PAGE = {
    "exp_labels": {"severity": "critical", "namespace": "prod", "dsd": "r1"},
    "exp_annotations": {
        "summary": "DeepSeekDeployment prod/r1 burns its error-rate error budget fast.",
        "description": "20% of requests failed with a 5xx over the long window; at this rate "
        "the deployment spends 2% of its 30-day error budget in an hour or 5% in 6 hours.",
        "runbook_url": f"{rules.RUNBOOK_BASE}/DeepSeekErrorBudgetBurn.md",
    },
}


def _operator_rule_groups() -> list[dict[str, object]]:
    from deepseek_operator import desired
    from deepseek_operator.api.resource import DeepSeekDeployment

    rule = desired.prometheus_rule(DeepSeekDeployment.from_k8s(ERRORS_DSD))
    return rule["spec"]["groups"]  # type: ignore[no-any-return]


def _critical_alerts_on(
    tmp_path: Path, promtool: str, with_chart_rules: bool, expected: dict[str, list[object]]
) -> subprocess.CompletedProcess[str]:
    """promtool test rules on the error series above, 14 minutes in (past both alerts' `for`),
    expecting exactly `expected` of every critical alert of both rule files (none elsewhere)."""
    (tmp_path / "operator.rules.yaml").write_text(
        yaml.safe_dump({"groups": _operator_rule_groups()})
    )
    files = ["operator.rules.yaml"] + ([str(CHART_RULES)] if with_chart_rules else [])
    operator_critical = {
        str(r["alert"])
        for g in _operator_rule_groups()
        for r in g["rules"]  # type: ignore[attr-defined]
        if r["labels"]["severity"] == "critical"
    }
    critical = sorted(
        {a.name for a in rules.alerts() if a.severity == "critical"} | operator_critical
    )
    assert "DeepSeekDeploymentErrorsAboveSLO" in critical and "DeepSeekErrorBudgetBurn" in critical
    test = {
        "rule_files": files,
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": ERROR_SERIES,
                "alert_rule_test": [
                    {"eval_time": "14m", "alertname": name, "exp_alerts": expected.get(name, [])}
                    for name in critical
                ],
            }
        ],
    }
    (tmp_path / "pages.test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    return _run(promtool, "test", "rules", "pages.test.yaml", cwd=tmp_path)


def test_one_error_symptom_pages_once_with_the_chart_rules(promtool: str, tmp_path: Path) -> None:
    """With the chart's rules and the operator's per-deployment rule both loaded, the error
    series pages through DeepSeekErrorBudgetBurn only: every other critical alert, the
    per-deployment DeepSeekDeploymentErrorsAboveSLO included, stays silent."""
    res = _critical_alerts_on(tmp_path, promtool, True, {"DeepSeekErrorBudgetBurn": [BURN_PAGE]})
    assert res.returncode == 0, res.stdout + res.stderr


def test_per_deployment_error_alert_pages_without_the_chart_rules(
    promtool: str, tmp_path: Path
) -> None:
    """Only the operator's PrometheusRule loaded (the chart's prometheusRule.enabled=false):
    DeepSeekDeploymentErrorsAboveSLO is the page. Also shows the check above can fail: the
    same expectation as with the chart rules does not hold here."""
    alert = next(
        r
        for g in _operator_rule_groups()
        for r in g["rules"]  # type: ignore[attr-defined]
        if r["alert"] == "DeepSeekDeploymentErrorsAboveSLO"
    )
    page = {"exp_labels": alert["labels"], "exp_annotations": alert["annotations"]}
    res = _critical_alerts_on(
        tmp_path, promtool, False, {"DeepSeekDeploymentErrorsAboveSLO": [page]}
    )
    assert res.returncode == 0, res.stdout + res.stderr
    res = _critical_alerts_on(tmp_path, promtool, False, {"DeepSeekErrorBudgetBurn": [BURN_PAGE]})
    assert res.returncode != 0
    assert "DeepSeekDeploymentErrorsAboveSLO" in res.stdout + res.stderr


def test_per_deployment_error_alert_defers_to_the_chart_recording_rule() -> None:
    """The series whose presence silences the per-deployment alert is one the chart records."""
    from deepseek_operator import desired

    assert rules.error_ratio("5m") == desired.FLEET_ERROR_RATIO
    assert desired.FLEET_ERROR_RATIO in {r.record for r in rules.recordings()}
