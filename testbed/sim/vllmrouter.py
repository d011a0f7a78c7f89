"""The test bed's player of router pods: the real vllm-router binary, run as the pod would run it.

kwok nodes execute nothing. For a pod labelled `app.kubernetes.io/component=router` (or
`router-batch`, the batch pool) and
`serving.deepseek.dev/deployment` whose container (the one named `router`, else the first) runs
`vllm-router ARGS` (its `command`, or `args` starting with it), the fleet runs the binary that
`pip install vllm-router` put next to this interpreter, with the container's ARGS except:

- `--host` is the pod's sim address (10.a.b.c -> 127.a.b.c, cluster/layout.py), so that the
  router answers where clients and the fleet reach the pod; `--prometheus-host` too (the CLI
  serves metrics on port 29000 unless told otherwise, and two routers on one 127.0.0.1:29000
  would collide where real pods each have their own loopback). A router told to listen on a
  loopback address (or given no `--host`: its default is 127.0.0.1) would be unreachable at its
  pod IP in a real cluster: it runs, but its pod never becomes Ready and says why
  (`sim.deepseek.dev/engine-error`).
- `KUBECONFIG` names a kubeconfig whose server is the region's address-mapping API proxy
  (apiproxy.py: pod IPs read through it are sim addresses) and whose `tokenFile` holds a token
  of the pod's ServiceAccount (TokenRequest API, bound to the pod, 3607 s, rotated at 80% of
  its life as the kubelet rotates projected tokens), so the router's own RBAC is what the API
  server checks. No token when the pod sets `automountServiceAccountToken: false`.
- The environment is the container's literal `env` values, `PATH`, `HOME` and `KUBECONFIG`,
  nothing else of the fleet's (no KUBERNETES_SERVICE_HOST: kube-rs falls back to KUBECONFIG).

Readiness, as the kubelet would probe it: the container's `readinessProbe` (`httpGet` path and
port, 200-399 passes; or `tcpSocket`), with its period, timeout and thresholds; without one, the
pod is Ready once the router's HTTP port answers `GET /liveness` (the router serves /liveness,
/readiness (503 until it has a healthy worker) and /health). The result goes to
`sim.deepseek.dev/engine-ready`, from which kwok sets the pod's Ready condition (stages.py).

A router that exits on its own makes the pod not Ready, is recorded on the pod
(`sim.deepseek.dev/last-exit-code`, `sim.deepseek.dev/last-output`: the last 2,000 characters of
its output, `sim.deepseek.dev/restart-count`) and is restarted after the kubelet's back-off
(10 s doubling to 300 s, reset after 10 minutes of running). On deletion: the preStop sleep,
SIGTERM, the rest of the grace period, SIGKILL, then `sim.deepseek.dev/drained: "true"` (kwok
removes the pod). Output goes to `<state>/logs/router-<namespace>.<pod>.log`.

The lifecycle decision (`decide_router`) is in fleet.py beside the engines'; this module holds
the pure parts of a router pod (`router_args`, `local_args`, `readiness_probe`, `probe_step`,
`restart_delay`) and the process runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from deepseek_operator import labels as L

from ..cluster.stages import FLEET_ANNOTATION
from ..labels import (
    ROUTER_COMPONENTS,
    SIM_ENGINE_ERROR,
    SIM_LAST_EXIT_CODE,
    SIM_LAST_OUTPUT,
    SIM_RESTART_COUNT,
)
from .apiproxy import ApiProxy, cluster_endpoint, proxy_kubeconfig, sim_ip
from .hooks import tail

log = logging.getLogger("testbed.sim.vllmrouter")

ROUTER_CONTAINER = "router"
ROUTER_BINARY = "vllm-router"
DEFAULT_PORT = 30000  # vllm-router's --port default
LOOPBACK_DEFAULT_HOST = "127.0.0.1"  # vllm-router's --host default
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]"})
LIVENESS_PATH = "/liveness"
TOKEN_SECONDS = 3607  # the kubelet's projected ServiceAccount token lifetime
TOKEN_REFRESH_FRACTION = 0.8
BACKOFF_BASE_S = 10.0  # the kubelet's CrashLoopBackOff
BACKOFF_MAX_S = 300.0
BACKOFF_RESET_S = 600.0
TOKEN_RETRY_S = 30.0
KILL_WAIT_S = 2.0  # after SIGTERM of a pod that is gone already


# ---------------------------------------------------------------------------------------------
# Pure: which pods, which command line


def is_router_pod(pod: Mapping[str, Any]) -> bool:
    """A router pod the fleet plays (labels as in the module docstring, not opted out)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    ann = meta.get("annotations") or {}
    return (
        labels.get(L.COMPONENT) in ROUTER_COMPONENTS
        and L.DEPLOYMENT in labels
        and ann.get(FLEET_ANNOTATION) != "false"
    )


def router_container(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The container named `router`, else the first."""
    containers = (pod.get("spec") or {}).get("containers") or []
    for c in containers:
        if c.get("name") == ROUTER_CONTAINER:
            return c  # type: ignore[no-any-return]
    return containers[0] if containers else None


def router_args(container: Mapping[str, Any]) -> list[str] | None:
    """The arguments of `vllm-router` in the container's command line (`command` + `args`), or
    None when it runs something else (the image's entrypoint is unknown here)."""
    argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    if argv and Path(argv[0]).name == ROUTER_BINARY:
        return argv[1:]
    return None


def flag_value(args: Sequence[str], flag: str) -> str | None:
    """The last value of `--flag V` or `--flag=V` (None: not given)."""
    value: str | None = None
    for i, tok in enumerate(args):
        if tok == flag and i + 1 < len(args):
            value = args[i + 1]
        elif tok.startswith(flag + "="):
            value = tok.split("=", 1)[1]
    return value


def with_flag(args: Sequence[str], flag: str, value: str) -> list[str]:
    """`args` with every `--flag V` / `--flag=V` replaced by one `--flag value` at the place of
    the first (appended when absent)."""
    out: list[str] = []
    placed = False
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == flag or tok.startswith(flag + "="):
            if not placed:
                out += [flag, value]
                placed = True
            i += 2 if tok == flag else 1
            continue
        out.append(tok)
        i += 1
    return out if placed else [*out, flag, value]


def local_args(args: Sequence[str], sim_host: str) -> list[str]:
    """The command line the fleet runs: the pod's, listening (and serving metrics) at the pod's
    sim address."""
    return with_flag(with_flag(args, "--host", sim_host), "--prometheus-host", sim_host)


def listen_port(args: Sequence[str]) -> int:
    value = flag_value(args, "--port")
    try:
        return int(value) if value is not None else DEFAULT_PORT
    except ValueError:
        return DEFAULT_PORT


def serves_pod_ip(args: Sequence[str], pod_ip: str) -> bool:
    """Whether the router, as the pod runs it, answers at the pod IP (a wildcard or the pod's
    own address; not 127.0.0.1, its default)."""
    host = flag_value(args, "--host") or LOOPBACK_DEFAULT_HOST
    return host in WILDCARD_HOSTS or host == pod_ip


# ---------------------------------------------------------------------------------------------
# Pure: readiness, as the kubelet probes it


@dataclass(frozen=True)
class Probe:
    """A readiness probe: HTTP GET of `path` (None: a TCP connect) on `port`."""

    port: int
    path: str | None = LIVENESS_PATH
    period_s: float = 10.0
    timeout_s: float = 1.0
    initial_delay_s: float = 0.0
    success_threshold: int = 1
    failure_threshold: int = 3
    # No readiness probe: the pod is Ready while its container runs; the fleet only waits for
    # the port to answer once, then stops probing.
    until_ready: bool = False


def _probe_port(value: Any, container: Mapping[str, Any], default: int) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        for p in container.get("ports") or []:
            if p.get("name") == value and p.get("containerPort"):
                return int(p["containerPort"])
    return default


def readiness_probe(container: Mapping[str, Any], router_port: int) -> Probe:
    """The container's readinessProbe (httpGet or tcpSocket); without one (or with an exec
    probe, which cannot run here), `GET /liveness` on the router's port every 0.2 s until it
    answers: the pod is Ready once the server listens, as a pod without a probe is Ready once
    its container runs."""
    rp = container.get("readinessProbe") or {}
    http = rp.get("httpGet")
    tcp = rp.get("tcpSocket")
    if not isinstance(http, dict) and not isinstance(tcp, dict):
        return Probe(port=router_port, period_s=0.2, until_ready=True)
    action: Mapping[str, Any] = http if isinstance(http, dict) else (tcp or {})
    return Probe(
        port=_probe_port(action.get("port"), container, router_port),
        path=(str(action.get("path") or "/") if isinstance(http, dict) else None),
        period_s=float(rp.get("periodSeconds", 10)),
        timeout_s=float(rp.get("timeoutSeconds", 1)),
        initial_delay_s=float(rp.get("initialDelaySeconds", 0)),
        success_threshold=int(rp.get("successThreshold", 1)),
        failure_threshold=int(rp.get("failureThreshold", 3)),
    )


@dataclass(frozen=True)
class ProbeState:
    """Consecutive results of a probe since the container started; not Ready at start."""

    ready: bool = False
    successes: int = 0
    failures: int = 0


def probe_step(state: ProbeState, ok: bool, probe: Probe) -> ProbeState:
    """The state after one probe: Ready after `success_threshold` passes in a row, not Ready
    after `failure_threshold` failures in a row, unchanged in between."""
    if ok:
        n = state.successes + 1
        return ProbeState(ready=state.ready or n >= probe.success_threshold, successes=n)
    n = state.failures + 1
    return ProbeState(ready=state.ready and n < probe.failure_threshold, failures=n)


def restart_delay(failures: int) -> float:
    """The kubelet's back-off before the `failures`-th restart in a row: 10 s, 20 s, 40 s, ...
    at most 300 s."""
    if failures < 1:
        return 0.0
    return float(min(BACKOFF_BASE_S * 2 ** (failures - 1), BACKOFF_MAX_S))


def pre_stop_seconds(container: Mapping[str, Any]) -> float:
    """The preStop `sleep` action's seconds (other hooks: none)."""
    sleep = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}
    try:
        return float(sleep.get("seconds", 0))
    except (TypeError, ValueError):
        return 0.0


# ---------------------------------------------------------------------------------------------
# The processes (I/O)


class RouterPhase(StrEnum):
    RUNNING = "Running"  # the process runs (or is between a crash and its restart)
    FAILED = "Failed"  # cannot run at all (not vllm-router, no binary): see `error`
    CRASHED = "Crashed"  # killed with its node (zone down); started again when it is back
    STOPPING = "Stopping"  # pod terminating: preStop, SIGTERM, grace period
    STOPPED = "Stopped"


@dataclass
class RouterSlot:
    """The router container of one pod."""

    key: str
    namespace: str
    pod: str
    uid: str
    identity: tuple[Any, ...]
    phase: RouterPhase = RouterPhase.STOPPED
    argv: list[str] = field(default_factory=list)
    host: str = ""
    port: int = DEFAULT_PORT
    probe: Probe | None = None
    probe_state: ProbeState = field(default_factory=ProbeState)
    reachable: bool = True  # listens at the pod IP (see serves_pod_ip)
    running: bool = False  # a process is up now
    error: str | None = None
    restarts: int = 0
    proc: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    workdir: Path | None = None
    log_path: Path | None = None

    @property
    def ready(self) -> bool:
        return self.running and self.reachable and self.probe_state.ready

    @property
    def url(self) -> str | None:
        return f"http://{self.host}:{self.port}" if self.running else None


PatchFn = Callable[[Mapping[str, Any], Mapping[str, str | None]], Awaitable[None]]


class RouterPods:
    """Runs the router pods of one region. The fleet decides (fleet.decide_router) and calls
    start/drain/stop; this class runs the processes and reports through `patch` (annotations
    of the pod) and `mark` (reconcile the pod again)."""

    def __init__(
        self,
        region: str,
        kubeconfig: Path,
        context: str | None,
        core: Any,
        pods: Mapping[str, Mapping[str, Any]],
        patch: PatchFn,
        mark: Callable[[str], None],
        state_dir: Path | None = None,
        binary: Path | None = None,
    ) -> None:
        self.region = region
        self.kubeconfig = kubeconfig
        self.context = context
        self.core = core
        self.pods = pods
        self.patch = patch
        self.mark = mark
        self.binary = binary or Path(sys.executable).parent / ROUTER_BINARY
        if state_dir is not None:
            self.logs_dir = state_dir / "logs"
            self.run_dir = state_dir / "run" / "routers"
        else:
            tmp = Path(tempfile.mkdtemp(prefix=f"sim-routers-{region}-"))
            self.logs_dir, self.run_dir = tmp / "logs", tmp / "run"
        self.slots: dict[str, RouterSlot] = {}
        self.proxy: ApiProxy | None = None
        self._http: aiohttp.ClientSession | None = None

    # -- the fleet's actions -----------------------------------------------------------------

    def start(self, key: str, pod: Mapping[str, Any], identity: tuple[Any, ...]) -> RouterSlot:
        meta = pod.get("metadata") or {}
        slot = RouterSlot(
            key=key,
            namespace=meta.get("namespace", ""),
            pod=meta.get("name", ""),
            uid=meta.get("uid", ""),
            identity=identity,
            phase=RouterPhase.RUNNING,
        )
        self.slots[key] = slot
        slot.task = asyncio.create_task(self._supervise(slot, dict(pod)), name=f"router-{key}")
        return slot

    def drain(self, slot: RouterSlot, pod: Mapping[str, Any] | None) -> None:
        """Pod terminating: preStop sleep, SIGTERM, the rest of the grace period, SIGKILL;
        then the pod is marked drained (kwok removes it)."""
        spec = (pod or {}).get("spec") or {}
        grace = float(spec.get("terminationGracePeriodSeconds", 30))
        c = router_container(pod or {}) or {}
        slot.phase = RouterPhase.STOPPING
        supervisor = slot.task
        slot.task = asyncio.create_task(
            self._drain(slot, supervisor, grace, min(pre_stop_seconds(c), grace)),
            name=f"router-stop-{slot.key}",
        )

    async def stop(self, slot: RouterSlot, *, crash: bool = False) -> None:
        """Stop at once: the pod is gone (SIGTERM, a moment, SIGKILL) or its node is (SIGKILL)."""
        await self._cancel(slot)
        await self._terminate(slot, 0.0 if crash else KILL_WAIT_S)
        slot.phase = RouterPhase.CRASHED if crash else RouterPhase.STOPPED
        if not crash:
            self._cleanup(slot)

    def forget(self, key: str) -> None:
        self.slots.pop(key, None)

    async def close(self) -> None:
        for slot in list(self.slots.values()):
            if slot.phase != RouterPhase.STOPPED:
                await self.stop(slot)
        if self.proxy is not None:
            await self.proxy.close()
            self.proxy = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "pod": s.key,
                "phase": s.phase.value,
                "url": s.url,
                "ready": s.ready,
                "restarts": s.restarts,
                "error": s.error,
                "log": str(s.log_path) if s.log_path else None,
            }
            for s in sorted(self.slots.values(), key=lambda s: s.key)
        ]

    # -- running the process -------------------------------------------------------------------

    async def _supervise(self, slot: RouterSlot, pod: dict[str, Any]) -> None:
        """Start the router, probe it, restart it with back-off when it exits, until cancelled
        (by drain/stop, which then stop the process)."""
        c = router_container(pod) or {}
        args = router_args(c)
        pod_ip = str((pod.get("status") or {}).get("podIP") or "")
        if args is None:
            cmd = [*(c.get("command") or []), *(c.get("args") or [])]
            return await self._fail(slot, f"the test bed runs only `{ROUTER_BINARY}`, not {cmd}")
        if not self.binary.exists():
            return await self._fail(
                slot, f"{self.binary} is missing: install the test bed (pip install -e .[testbed])"
            )
        slot.host = sim_ip(pod_ip)
        slot.argv = [str(self.binary), *local_args(args, slot.host)]
        slot.port = listen_port(args)
        slot.probe = readiness_probe(c, slot.port)
        slot.reachable = serves_pod_ip(args, pod_ip)
        if not slot.reachable:
            host = flag_value(args, "--host") or LOOPBACK_DEFAULT_HOST
            slot.error = (
                f"vllm-router listens on {host} (--host) inside the pod: nothing answers at the "
                f"pod IP {pod_ip}; use --host 0.0.0.0"
            )
            await self._patch(slot, {SIM_ENGINE_ERROR: slot.error})
        failures = 0
        while True:
            started = time.monotonic()
            try:
                code, output = await self._run_once(slot, pod, c)
            except Exception as e:  # the runner's own failure (token, files): as a crash
                log.exception("event=router_start_failed region=%s pod=%s", self.region, slot.key)
                code, output = -1, f"test bed router runner: {e!r}"
            failures = 1 if time.monotonic() - started > BACKOFF_RESET_S else failures + 1
            slot.restarts += 1
            delay = restart_delay(failures)
            log.warning(
                "event=router_exited region=%s pod=%s exit_code=%d restart_in_s=%g log=%s",
                self.region,
                slot.key,
                code,
                delay,
                slot.log_path,
            )
            await self._patch(
                slot,
                {
                    SIM_LAST_EXIT_CODE: str(code),
                    SIM_LAST_OUTPUT: tail(output),
                    SIM_RESTART_COUNT: str(slot.restarts),
                },
            )
            self.mark(slot.key)
            await asyncio.sleep(delay)

    async def _run_once(
        self, slot: RouterSlot, pod: Mapping[str, Any], container: Mapping[str, Any]
    ) -> tuple[int, str]:
        """One life of the process: start, probe until it exits; (exit code, its output)."""
        assert slot.probe is not None
        workdir = self.run_dir / f"{slot.namespace}.{slot.pod}"
        workdir.mkdir(parents=True, exist_ok=True)
        workdir.chmod(0o700)
        slot.workdir = workdir
        env = {
            e["name"]: str(e["value"])
            for e in container.get("env") or []
            if "name" in e and "value" in e
        }
        env.update({"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir)})
        token_due = float("inf")
        if (pod.get("spec") or {}).get("automountServiceAccountToken") is not False:
            await self._ensure_proxy()
            token_due = await self._write_token(slot, pod, workdir)
            env["KUBECONFIG"] = str(workdir / "kubeconfig")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        slot.log_path = self.logs_dir / f"router-{slot.namespace}.{slot.pod}.log"
        with slot.log_path.open("ab") as out:
            offset = out.tell()
            out.write(f"=== {time.strftime('%FT%T')} {' '.join(slot.argv)}\n".encode())
            out.flush()
            slot.proc = await asyncio.create_subprocess_exec(
                *slot.argv,
                env=env,
                cwd=workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        slot.running = True
        slot.probe_state = ProbeState()
        log.info(
            "event=router_started region=%s pod=%s pid=%d url=http://%s:%d",
            self.region,
            slot.key,
            slot.proc.pid,
            slot.host,
            slot.port,
        )
        try:
            code = await self._watch_process(slot, pod, workdir, token_due)
        finally:
            if slot.proc is not None and slot.proc.returncode is not None:
                slot.running = False
        slot.proc = None
        was_ready = slot.probe_state.ready
        slot.probe_state = ProbeState()
        if was_ready:
            self.mark(slot.key)
        return code, _read_from(slot.log_path, offset)

    async def _watch_process(
        self, slot: RouterSlot, pod: Mapping[str, Any], workdir: Path, token_due: float
    ) -> int:
        probe, proc = slot.probe, slot.proc
        assert probe is not None and proc is not None
        next_probe = time.monotonic() + probe.initial_delay_s
        while True:
            due = min(next_probe, token_due)
            wait = None if due == float("inf") else max(0.0, due - time.monotonic())
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(proc.wait(), wait)
            now = time.monotonic()
            if now >= token_due:
                try:
                    token_due = await self._write_token(slot, pod, workdir)
                except Exception as e:  # the old token is still valid for a while: retry
                    log.warning(
                        "event=router_token_failed region=%s pod=%s error=%r",
                        self.region,
                        slot.key,
                        e,
                    )
                    token_due = now + TOKEN_RETRY_S
            if now >= next_probe:
                ok = await self._probe(slot.host, probe)
                before = slot.probe_state.ready
                slot.probe_state = probe_step(slot.probe_state, ok, probe)
                if slot.probe_state.ready != before:
                    log.info(
                        "event=router_probe region=%s pod=%s ready=%s",
                        self.region,
                        slot.key,
                        slot.probe_state.ready,
                    )
                    self.mark(slot.key)
                next_probe = time.monotonic() + probe.period_s
                if probe.until_ready and slot.probe_state.ready:
                    next_probe = float("inf")

    async def _probe(self, host: str, probe: Probe) -> bool:
        try:
            if probe.path is None:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, probe.port), probe.timeout_s
                )
                writer.close()
                return True
            if self._http is None:
                self._http = aiohttp.ClientSession()
            url = f"http://{host}:{probe.port}{probe.path}"
            timeout = aiohttp.ClientTimeout(total=probe.timeout_s)
            async with self._http.get(url, timeout=timeout, allow_redirects=False) as r:
                return 200 <= r.status < 400
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def _ensure_proxy(self) -> ApiProxy:
        if self.proxy is None:
            admin = yaml.safe_load(self.kubeconfig.read_text())
            server, ca = cluster_endpoint(admin, self.kubeconfig.parent, self.context)
            proxy = ApiProxy(server, ca, name=self.region)
            await proxy.start()
            self.proxy = proxy
        return self.proxy

    async def _write_token(self, slot: RouterSlot, pod: Mapping[str, Any], workdir: Path) -> float:
        """A fresh token of the pod's ServiceAccount in workdir/token (and the kubeconfig that
        reads it); returns when to renew it (monotonic)."""
        from kubernetes import client

        assert self.proxy is not None
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        req = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[],
                expiration_seconds=TOKEN_SECONDS,
                bound_object_ref=client.V1BoundObjectReference(
                    api_version="v1", kind="Pod", name=slot.pod, uid=slot.uid
                ),
            )
        )
        issued = await asyncio.to_thread(
            self.core.create_namespaced_service_account_token, sa, slot.namespace, req
        )
        token = issued.status.token if issued.status is not None else None
        if not token:
            raise RuntimeError(f"no token issued for ServiceAccount {slot.namespace}/{sa}")
        _write_private(workdir / "token", token)
        _write_private(
            workdir / "kubeconfig",
            json.dumps(proxy_kubeconfig(self.proxy.url, workdir / "token", sa)),
        )
        return time.monotonic() + TOKEN_SECONDS * TOKEN_REFRESH_FRACTION

    async def _fail(self, slot: RouterSlot, message: str) -> None:
        slot.phase = RouterPhase.FAILED
        slot.error = message
        log.warning(
            "event=router_cannot_run region=%s pod=%s error=%r", self.region, slot.key, message
        )
        await self._patch(slot, {SIM_ENGINE_ERROR: message})
        self.mark(slot.key)

    async def _patch(self, slot: RouterSlot, annotations: Mapping[str, str | None]) -> None:
        pod = self.pods.get(slot.key)
        if pod is not None and (pod.get("metadata") or {}).get("uid") == slot.uid:
            await self.patch(pod, annotations)

    async def _drain(
        self,
        slot: RouterSlot,
        supervisor: asyncio.Task[None] | None,
        grace_s: float,
        pre_stop_s: float,
    ) -> None:
        started = time.monotonic()
        if pre_stop_s > 0:
            await asyncio.sleep(pre_stop_s)  # the router keeps serving (and being probed)
        if supervisor is not None and not supervisor.done():
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await supervisor
        left = max(0.0, grace_s - (time.monotonic() - started))
        code = await self._terminate(slot, left)
        slot.phase = RouterPhase.STOPPED
        self._cleanup(slot)
        log.info(
            "event=router_stopped region=%s pod=%s exit_code=%s seconds=%.2f",
            self.region,
            slot.key,
            code,
            time.monotonic() - started,
        )
        self.mark(slot.key)

    async def _cancel(self, slot: RouterSlot) -> None:
        task, slot.task = slot.task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _terminate(self, slot: RouterSlot, wait_s: float) -> int | None:
        """SIGTERM, up to `wait_s` for it to exit, then SIGKILL (0: SIGKILL at once)."""
        proc, slot.proc = slot.proc, None
        slot.running = False
        slot.probe_state = ProbeState()
        if proc is None or proc.returncode is not None:
            return None if proc is None else proc.returncode
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM if wait_s > 0 else signal.SIGKILL)
        try:
            return await asyncio.wait_for(proc.wait(), max(wait_s, 0.1))
        except TimeoutError:
            log.warning("event=router_killed region=%s pod=%s", self.region, slot.key)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            return await proc.wait()

    def _cleanup(self, slot: RouterSlot) -> None:
        if slot.workdir is not None:
            shutil.rmtree(slot.workdir, ignore_errors=True)
            slot.workdir = None


def _write_private(path: Path, text: str) -> None:
    """Replace a file atomically, readable by this user only (a reader never sees half)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def _read_from(path: Path | None, offset: int) -> str:
    if path is None:
        return ""
    try:
        with path.open("rb") as f:
            f.seek(max(offset, 0))
            data = f.read()
    except OSError:
        return ""
    return data[-8192:].decode("utf-8", "replace")
