"""The test bed's Helm test runner (testbed/sim/hooks.py): which pods it runs, as what."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from testbed.labels import SIM_EXIT_CODE
from testbed.sim import hooks as H

PY = "/venv/bin/python"


def pod(
    hook: str | None = "test",
    phase: str = "Running",
    ip: bool = True,
    deleting: bool = False,
    exit_code: str | None = None,
) -> dict[str, Any]:
    ann: dict[str, str] = {}
    if hook is not None:
        ann["helm.sh/hook"] = hook
    if exit_code is not None:
        ann[SIM_EXIT_CODE] = exit_code
    meta: dict[str, Any] = {"name": "t", "namespace": "ns", "uid": "u1", "annotations": ann}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-03T00:00:00Z"
    status: dict[str, Any] = {"phase": phase}
    if ip:
        status["podIP"] = "10.0.0.9"
    return {"metadata": meta, "status": status}


@pytest.mark.parametrize(
    ("p", "run"),
    [
        (pod(), True),
        (pod(hook="test-success"), True),
        (pod(hook="pre-install"), False),  # other hooks complete like jobs (stages.py)
        (pod(hook=None), False),
        (pod(phase="Pending", ip=False), False),  # kwok has not started it yet
        (pod(deleting=True), False),
        (pod(exit_code="0"), False),  # already ran
        (pod(phase="Failed", exit_code="1"), False),
    ],
)
def test_which_pods_run(p: dict[str, Any], run: bool) -> None:
    assert H.wants_run(p) is run


@pytest.mark.parametrize(
    ("container", "argv"),
    [
        (
            {"command": ["deepseek-operator"], "args": ["selftest", "--namespace=x"]},
            [PY, "-m", "deepseek_operator", "selftest", "--namespace=x"],
        ),
        ({"args": ["selftest"]}, None),  # the image's entrypoint is not known here
        (
            {"command": ["python", "-m", "deepseek_operator", "selftest"]},
            [PY, "-m", "deepseek_operator", "selftest"],
        ),
        (
            {"command": ["/usr/local/bin/python3", "-m", "deepseek_operator"], "args": ["crd"]},
            [PY, "-m", "deepseek_operator", "crd"],
        ),
        ({"command": ["sh", "-c", "curl http://x"]}, None),
        ({"command": ["python", "-m", "other"]}, None),
        ({}, None),  # the image's entrypoint: unknown here
    ],
)
def test_commands_map_to_this_checkout(container: dict[str, Any], argv: list[str] | None) -> None:
    assert H.local_command(container, PY) == argv


def test_kubeconfig_has_the_clusters_server_and_ca_and_the_pods_token(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_bytes(b"CA")
    admin = {
        "current-context": "admin@us-east",
        "contexts": [{"name": "admin@us-east", "context": {"cluster": "us-east", "user": "a"}}],
        "clusters": [
            {
                "name": "us-east",
                "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority": "ca.crt"},
            }
        ],
        "users": [{"name": "a", "user": {"client-certificate-data": "secret"}}],
    }
    kc = H.token_kubeconfig(admin, tmp_path, "tok", "dso-test")
    (cl,) = kc["clusters"]
    assert cl["cluster"] == {
        "server": "https://127.0.0.1:6443",
        "certificate-authority-data": base64.b64encode(b"CA").decode(),
    }
    # only the ServiceAccount's token: none of the admin's credentials
    assert kc["users"] == [{"name": "dso-test", "user": {"token": "tok"}}]


def test_process_sees_the_pod_identity_not_the_runners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBECONFIG", "/admin/kubeconfig")
    container = {"env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {}}]}
    env = H.process_env(container, tmp_path / "kc")
    assert env["KUBECONFIG"] == str(tmp_path / "kc")
    assert env["A"] == "1" and "B" not in env
    assert "KUBERNETES_SERVICE_HOST" not in env  # in-cluster config must not be found
    assert env["PYTHONPATH"].split(":")[0] == str(H.ROOT / "operator")


def test_output_tail_is_printable_and_bounded() -> None:
    out = H.tail("x" * 5000 + "\x1b[31mFAIL operator: down\n")
    assert len(out) == H.OUTPUT_TAIL and out.endswith("?[31mFAIL operator: down")
