"""`deepseek-operator run` flags that configure the monitoring objects."""

from __future__ import annotations

import pytest
from deepseek_operator.cli import build_parser
from deepseek_operator.desired import RUNBOOK_BASE
from deepseek_operator.operator_main import monitoring_settings


def test_monitor_labels_and_runbook_base_url() -> None:
    args = build_parser().parse_args(
        [
            "run",
            "--monitor-label",
            "release=kube-prometheus-stack",
            "--monitor-label=example.com/team=serving",
            "--monitor-label",
            "release=prom-b",
            "--runbook-base-url",
            "https://wiki.example.com/runbooks",
        ]
    )
    settings = monitoring_settings(args)
    assert dict(settings.labels) == {"release": "prom-b", "example.com/team": "serving"}
    assert settings.runbook_base_url == "https://wiki.example.com/runbooks"


def test_defaults_are_no_labels_and_the_project_runbooks() -> None:
    settings = monitoring_settings(build_parser().parse_args(["run"]))
    assert dict(settings.labels) == {}
    assert settings.runbook_base_url == RUNBOOK_BASE


@pytest.mark.parametrize(
    ("flag", "words"),
    [
        ("release", "is not KEY=VALUE"),
        ("re lease=x", "label key 're lease'"),
        ("release=a/b", "label value 'a/b'"),
        (f"release={'x' * 64}", "at most 63"),
    ],
)
def test_invalid_monitor_label_is_rejected_naming_it(
    flag: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--monitor-label", flag])
    err = capsys.readouterr().err
    assert "--monitor-label" in err and words in err, err


def test_reconcile_workers_default_and_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["run"]).reconcile_workers == 16
    assert build_parser().parse_args(["run", "--reconcile-workers", "64"]).reconcile_workers == 64
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--reconcile-workers", "0"])
    assert "must be at least 1, not 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "argv", "identity"),
    [
        ({}, [], None),  # Kopf makes one up per start
        ({"POD_NAME": "deepseek-operator-7d9f-abcde"}, [], "deepseek-operator-7d9f-abcde"),
        ({"POD_NAME": "from-env"}, ["--identity", "given"], "given"),
        ({"POD_NAME": ""}, [], None),
    ],
)
def test_peering_identity_defaults_to_the_pod_name(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], argv: list[str], identity: str | None
) -> None:
    monkeypatch.delenv("POD_NAME", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert build_parser().parse_args(["run", *argv]).identity == identity
