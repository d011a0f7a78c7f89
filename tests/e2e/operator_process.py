"""The operator as the e2e tests run it: the real `deepseek-operator run` in a subprocess against a
region of the local cluster, its log in .local/e2e-logs/, killable and restartable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

from deepseek_operator.api.base import GROUP, PLURAL, VERSION
from kubernetes import client, utils

from testbed.ports import free_port

REPO = Path(__file__).resolve().parents[2]
LOGS = REPO / ".local" / "e2e-logs"


def install_crds(api: client.ApiClient) -> None:
    """Create or replace the project's CRDs (crds/*.yaml) and wait until they are served."""
    ext = client.ApiextensionsV1Api(api)
    import yaml

    for path in sorted((REPO / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            name = doc["metadata"]["name"]
            try:
                cur = ext.read_custom_resource_definition(name)
                doc["metadata"]["resourceVersion"] = cur.metadata.resource_version
                ext.replace_custom_resource_definition(name, doc)
            except client.ApiException as e:
                if e.status != 404:
                    raise
                utils.create_from_dict(api, doc)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition("deepseekdeployments.serving.deepseek.dev")
        conds = {c.type: c.status for c in (crd.status.conditions or [])}
        if conds.get("Established") == "True":
            return
        time.sleep(0.5)
    raise AssertionError("the DeepSeekDeployment CRD did not become Established")


class OperatorProcess:
    """One `deepseek-operator run` process; start(), kill(), stop(), restart()."""

    def __init__(
        self,
        kubeconfig: Path,
        *,
        namespaces: list[str] | None = None,
        prometheus_url: str | None = None,
        name: str = "operator",
        extra: list[str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.prometheus_url = prometheus_url
        self.extra = list(extra or [])
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{name}-{int(time.time() * 1000)}.log"
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.outranked = 0  # start_outranking() calls

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "deepseek_operator",
            "run",
            "--kubeconfig",
            str(self.kubeconfig),
        ]
        if self.namespaces:
            for ns in self.namespaces:
                cmd += ["-n", ns]
        else:
            cmd.append("-A")
        if self.prometheus_url:
            cmd += ["--prometheus-url", self.prometheus_url, "--signal-interval", "2"]
        cmd += [
            "--bind-address",
            "127.0.0.1",
            "--metrics-port",
            str(self.metrics_port),
            "--health-port",
            str(self.health_port),
            *self.extra,
        ]
        return cmd

    def start(self) -> OperatorProcess:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited at start:\n{self.log()}")
            try:
                urllib.request.urlopen(self.metrics_url, timeout=2).close()
                return self
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"operator /metrics never answered:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
            return str(r.read().decode())

    def kill(self) -> None:
        """SIGKILL: no clean-up, as when a node dies under the operator."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log:
            self._log.close()
            self._log = None

    def restart(self) -> OperatorProcess:
        self.stop()
        return self.start()

    def start_outranking(self) -> OperatorProcess:
        """start() again after kill(), with a peering priority above every earlier start's.
        The killed process's peering record stays until it expires (Kopf's 60 s); a new
        process with a lower (random) priority stays paused until then, one with a higher one
        works at once. The kill tests that are about what the operator does once back, rather
        than when, use this to skip that wait (up to a minute, half the time)."""
        self.outranked += 1
        self.extra = [*self.extra, "--priority", str(2**30 + self.outranked)]
        return self.start()


def release_namespace(api: client.ApiClient, name: str) -> None:
    """Delete a test namespace. The test's operator is gone by now, so the finalizer it put on
    DeepSeekDeployments is dropped first: otherwise the namespace stays Terminating for good
    and the local cluster fills with them."""
    custom = client.CustomObjectsApi(api)
    try:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, name, PLURAL)["items"]
    except client.ApiException as e:
        if e.status != 404:  # no CRD in this region, or no namespace
            raise
        items = []
    for o in items:
        try:
            custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                name,
                PLURAL,
                o["metadata"]["name"],
                {"metadata": {"finalizers": None}},
            )
        except client.ApiException as e:
            if e.status != 404:
                raise
    core = client.CoreV1Api(api)
    try:
        core.delete_namespace(name, propagation_policy="Background")
        # The test is over: its pods need no graceful drain. Engine pods have grace periods of
        # minutes (preStop + vLLM's shutdown timeout), which kwok honours, so a namespace whose
        # pods were still serving would stay Terminating that long.
        core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    except client.ApiException as e:
        if e.status != 404:
            raise
