"""The test bed's runner of Helm test pods: kwok nodes execute nothing, so for `helm test` to
test anything the fleet runs a test pod's command on this machine, as that pod would.

For each pod annotated `helm.sh/hook: test` (or `test-success`) that kwok has started, not
deleted and not yet finished:

1. map its container's command to this checkout: an explicit `command` of
   `deepseek-operator ARGS` or `python -m deepseek_operator ARGS` becomes this interpreter with
   `-m deepseek_operator ARGS` and PYTHONPATH=<checkout>/operator:<checkout>/serving (the pod's
   image is the operator image; nothing else can run here: exit code 127);
2. give it the pod's identity: a kubeconfig with a token of the pod's ServiceAccount from the
   TokenRequest API, and the cluster's server and CA from the region's kubeconfig, in
   $KUBECONFIG (no KUBERNETES_SERVICE_HOST, so in-cluster config is not found and the
   kubernetes client falls back to $KUBECONFIG); the container's literal `env` values too;
3. run it (at most RUN_TIMEOUT_S), then annotate the pod with the exit code
   (sim.deepseek.dev/exit-code) and the output's tail (sim.deepseek.dev/output): the kwok stage
   `test-exited` (testbed/cluster/stages.py) then moves it to Succeeded (0) or Failed, with the
   output as the container's termination message.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..labels import SIM_EXIT_CODE, SIM_OUTPUT, TEST_HOOKS

log = logging.getLogger("testbed.sim.hooks")

ROOT = Path(__file__).resolve().parents[2]  # the checkout
RUN_TIMEOUT_S = 120.0
OUTPUT_TAIL = 2000  # characters of output kept in the annotation
NOT_RUNNABLE = 127
TIMED_OUT = 124
TOKEN_SECONDS = 600


def is_test_hook(pod: Mapping[str, Any]) -> bool:
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    return ann.get("helm.sh/hook") in TEST_HOOKS


def wants_run(pod: Mapping[str, Any]) -> bool:
    """A started, live test pod without an exit code yet."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return (
        is_test_hook(pod)
        and not meta.get("deletionTimestamp")
        and status.get("phase") == "Running"
        and bool(status.get("podIP"))
        and SIM_EXIT_CODE not in (meta.get("annotations") or {})
    )


def local_command(container: Mapping[str, Any], python: str) -> list[str] | None:
    """The container's command + args as a local process, or None when it is not the operator
    CLI (the only program the test bed can stand in for)."""
    if not container.get("command"):  # the image's entrypoint: unknown here
        return None
    argv = [*container["command"], *(container.get("args") or [])]
    if argv[:1] == ["deepseek-operator"]:
        return [python, "-m", "deepseek_operator", *argv[1:]]
    if (
        len(argv) >= 3
        and Path(argv[0]).name in ("python", "python3")
        and argv[1:3]
        == [
            "-m",
            "deepseek_operator",
        ]
    ):
        return [python, "-m", "deepseek_operator", *argv[3:]]
    return None


def token_kubeconfig(
    admin: Mapping[str, Any], base_dir: Path, token: str, user: str, context: str | None = None
) -> dict[str, Any]:
    """A kubeconfig with the admin kubeconfig's server and CA (embedded) and this token."""
    ctx_name = context or admin.get("current-context") or admin["contexts"][0]["name"]
    ctx = next(c for c in admin["contexts"] if c["name"] == ctx_name)["context"]
    cluster = dict(next(c for c in admin["clusters"] if c["name"] == ctx["cluster"])["cluster"])
    if "certificate-authority" in cluster:
        ca = Path(cluster.pop("certificate-authority"))
        if not ca.is_absolute():
            ca = base_dir / ca
        cluster["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "cluster", "user": user}}],
        "current-context": user,
    }


def process_env(container: Mapping[str, Any], kubeconfig: Path) -> dict[str, str]:
    """What the process sees: the container's literal env values, the pod identity's
    kubeconfig, this checkout's code; nothing of the runner's own environment but PATH."""
    env = {
        e["name"]: str(e["value"])
        for e in container.get("env") or []
        if "name" in e and "value" in e
    }
    env.update(
        {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tempfile.gettempdir(),
            "KUBECONFIG": str(kubeconfig),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT / "serving")]),
        }
    )
    return env


def tail(output: str) -> str:
    """The output's last characters, printable (it goes into a YAML status template)."""
    clean = "".join(ch if ch.isprintable() or ch == "\n" else "?" for ch in output)
    return clean.strip()[-OUTPUT_TAIL:]


class HookRunner:
    """Runs the test pods of one region; `on_pod` is fed every pod the region's watch sees."""

    def __init__(self, region: str, kubeconfig: Path, context: str | None, api: Any) -> None:
        from kubernetes import client

        self.region = region
        self.kubeconfig = kubeconfig
        self.context = context
        self.core = client.CoreV1Api(api)
        self._started: set[str] = set()  # pod uids
        self._lock = threading.Lock()

    def on_pod(self, pod: Mapping[str, Any]) -> None:
        if not wants_run(pod):
            return
        uid = str((pod.get("metadata") or {}).get("uid"))
        with self._lock:
            if uid in self._started:
                return
            self._started.add(uid)
        threading.Thread(
            target=self._run, args=(dict(pod),), name=f"hook-{uid[:8]}", daemon=True
        ).start()

    def _run(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        ns, name = meta["namespace"], meta["name"]
        try:
            code, output = self._execute(pod)
        except Exception as e:  # the runner's own failure fails the pod, with the reason
            log.exception("event=hook_error region=%s pod=%s/%s", self.region, ns, name)
            code, output = NOT_RUNNABLE, f"test bed hook runner: {e}"
        log.info("event=hook_exited region=%s pod=%s/%s exit_code=%d", self.region, ns, name, code)
        body = {"metadata": {"annotations": {SIM_EXIT_CODE: str(code), SIM_OUTPUT: tail(output)}}}
        try:
            self.core.patch_namespaced_pod(name, ns, body)
        except Exception:
            log.exception("event=hook_patch_failed region=%s pod=%s/%s", self.region, ns, name)

    def _execute(self, pod: dict[str, Any]) -> tuple[int, str]:
        from kubernetes import client

        spec = pod.get("spec") or {}
        (container, *_) = spec.get("containers") or [{}]
        argv = local_command(container, sys.executable)
        if argv is None:
            cmd = [*(container.get("command") or []), *(container.get("args") or [])]
            return NOT_RUNNABLE, f"the test bed runs only deepseek-operator commands, not {cmd}"
        ns = pod["metadata"]["namespace"]
        sa = spec.get("serviceAccountName") or "default"
        req = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=TOKEN_SECONDS)
        )
        issued = self.core.create_namespaced_service_account_token(sa, ns, req)
        token = issued.status.token if issued.status is not None else None
        if not token:
            return NOT_RUNNABLE, f"no token issued for ServiceAccount {ns}/{sa}"
        admin = yaml.safe_load(self.kubeconfig.read_text())
        with tempfile.TemporaryDirectory(prefix="hook-") as tmp:
            kc = Path(tmp) / "kubeconfig"
            kc.write_text(
                json.dumps(token_kubeconfig(admin, self.kubeconfig.parent, token, sa, self.context))
            )
            kc.chmod(0o600)
            log.info(
                "event=hook_run region=%s pod=%s/%s sa=%s argv=%s",
                self.region,
                ns,
                pod["metadata"]["name"],
                sa,
                " ".join(argv),
            )
            try:
                res = subprocess.run(
                    argv,
                    env=process_env(container, kc),
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    timeout=RUN_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                return TIMED_OUT, f"timed out after {RUN_TIMEOUT_S:g}s"
        return res.returncode, res.stdout + res.stderr
