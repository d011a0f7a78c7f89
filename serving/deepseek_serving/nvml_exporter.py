"""A small GPU exporter on NVML with dcgm-exporter's metric names and labels.

For GPU nodes without NVIDIA's dcgm-exporter: the operator's GPU signals
(operator/deepseek_operator/signals.py) and the GPU dashboard query `DCGM_FI_*` series with
dcgm-exporter's labels, and this exporter serves the same names, so nothing else changes.

    python -m deepseek_serving.nvml_exporter --port 9400 [--host 0.0.0.0] [--interval 1]

Series (one per GPU, gauges, dcgm-exporter's units):

| name                            | unit   | NVML source                                         |
| ------------------------------- | ------ | --------------------------------------------------- |
| DCGM_FI_DEV_GPU_UTIL            | %      | nvmlDeviceGetUtilizationRates().gpu                 |
| DCGM_FI_DEV_MEM_COPY_UTIL       | %      | nvmlDeviceGetUtilizationRates().memory              |
| DCGM_FI_DEV_FB_USED / _FB_FREE  | MiB    | nvmlDeviceGetMemoryInfo()                           |
| DCGM_FI_DEV_POWER_USAGE         | W      | nvmlDeviceGetPowerUsage() (mW)                      |
| DCGM_FI_DEV_GPU_TEMP            | C      | nvmlDeviceGetTemperature(GPU)                       |
| DCGM_FI_DEV_SM_CLOCK            | MHz    | nvmlDeviceGetClockInfo(SM)                          |
| DCGM_FI_DEV_XID_ERRORS          | xid    | last XID of nvmlEventTypeXidCriticalError events    |
| DCGM_FI_PROF_GR_ENGINE_ACTIVE   | 0..1   | GPM NVML_GPM_METRIC_GRAPHICS_UTIL (Hopper and newer) |
| DCGM_FI_PROF_SM_ACTIVE          | 0..1   | GPM NVML_GPM_METRIC_SM_UTIL (Hopper and newer)       |

A series whose NVML call is unsupported on a GPU is left out for that GPU (not reported as 0);
`deepseek_nvml_exporter_unsupported{gpu,field}` says which. Labels as dcgm-exporter sets them:
`gpu` (NVML index), `UUID`, `device` (nvidiaN), `modelName`, `Hostname`, `pci_bus_id`,
`DCGM_FI_DRIVER_VERSION`, and `pod`, `namespace`, `container` of the pod holding the GPU when the
kubelet's pod-resources API answers (socket at --pod-resources-socket; needs the `grpcio`
package, which the official dcgm-exporter-less images may lack: without it, or without the
socket, the series carry no pod labels and the log says so once).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

log = logging.getLogger("nvml_exporter")

DEFAULT_PORT = 9400  # dcgm-exporter's port
POD_RESOURCES_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
GPU_RESOURCE = "nvidia.com/gpu"

# name -> (help, type); the order is the exposition order.
METRICS: dict[str, str] = {
    "DCGM_FI_DEV_GPU_UTIL": "GPU utilization (in %).",
    "DCGM_FI_DEV_MEM_COPY_UTIL": "Memory utilization (in %).",
    "DCGM_FI_DEV_FB_USED": "Framebuffer memory used (in MiB).",
    "DCGM_FI_DEV_FB_FREE": "Framebuffer memory free (in MiB).",
    "DCGM_FI_DEV_POWER_USAGE": "Power draw (in W).",
    "DCGM_FI_DEV_GPU_TEMP": "GPU temperature (in C).",
    "DCGM_FI_DEV_SM_CLOCK": "SM clock frequency (in MHz).",
    "DCGM_FI_DEV_XID_ERRORS": "Value of the last XID error encountered.",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "Ratio of time the graphics engine is active.",
    "DCGM_FI_PROF_SM_ACTIVE": "The ratio of cycles an SM has at least 1 warp assigned.",
}
LABELS = ("gpu", "UUID", "device", "modelName", "Hostname", "pci_bus_id", "DCGM_FI_DRIVER_VERSION")
POD_LABELS = ("pod", "namespace", "container")


# ---------------------------------------------------------------------------------------------
# What one sample of one GPU holds (pure data)


@dataclass(frozen=True)
class GpuIdentity:
    index: int
    uuid: str
    minor: int
    name: str
    pci_bus_id: str


@dataclass(frozen=True)
class GpuSample:
    gpu: GpuIdentity
    values: dict[str, float]  # metric name -> value, only those NVML answered
    unsupported: tuple[str, ...] = ()  # metric names NVML refused on this GPU


@dataclass(frozen=True)
class PodRef:
    pod: str
    namespace: str
    container: str


# ---------------------------------------------------------------------------------------------
# Exposition (pure)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def render(
    samples: Sequence[GpuSample],
    hostname: str,
    driver: str,
    pods: Mapping[str, PodRef] | None = None,
) -> str:
    """Prometheus text exposition of the samples, dcgm-exporter style.

    pods maps a GPU UUID to the pod holding it (kubelet pod-resources); GPUs not in it carry
    no pod labels."""
    pods = pods or {}
    out: list[str] = []

    def gpu_labels(s: GpuSample) -> list[tuple[str, str]]:
        g = s.gpu
        pairs = [
            ("gpu", str(g.index)),
            ("UUID", g.uuid),
            ("device", f"nvidia{g.minor}"),
            ("modelName", g.name),
            ("Hostname", hostname),
            ("pci_bus_id", g.pci_bus_id),
            ("DCGM_FI_DRIVER_VERSION", driver),
        ]
        ref = pods.get(g.uuid)
        if ref is not None:
            pairs += [("pod", ref.pod), ("namespace", ref.namespace), ("container", ref.container)]
        return pairs

    for name, help_text in METRICS.items():
        rows = [(s, s.values[name]) for s in samples if name in s.values]
        if not rows:
            continue
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} gauge")
        out += [f"{name}{_labels(gpu_labels(s))} {_num(v)}" for s, v in rows]
    unsupported = [(s.gpu.index, f) for s in samples for f in s.unsupported]
    out.append("# HELP deepseek_nvml_exporter_unsupported NVML fields this GPU does not report.")
    out.append("# TYPE deepseek_nvml_exporter_unsupported gauge")
    out += [
        f"deepseek_nvml_exporter_unsupported{_labels([('gpu', str(i)), ('field', f)])} 1"
        for i, f in unsupported
    ]
    out.append("# HELP deepseek_nvml_exporter_gpus GPUs this exporter sees.")
    out.append("# TYPE deepseek_nvml_exporter_gpus gauge")
    out.append(f"deepseek_nvml_exporter_gpus {len(samples)}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# NVML access: the real one wraps pynvml; the unit tests pass a fake with the same methods


class NvmlUnsupported(Exception):
    """NVML answered NOT_SUPPORTED / INVALID_ARGUMENT / NO_PERMISSION for one field."""


class Nvml(Protocol):
    def device_count(self) -> int: ...
    def driver_version(self) -> str: ...
    def identity(self, index: int) -> GpuIdentity: ...
    def read(self, index: int, field: str) -> float:
        """One DCGM_FI_DEV_* value (not the PROF ones, not XID); NvmlUnsupported if absent."""
        ...

    def gpm_sample(self, index: int) -> Any:
        """A GPM sample handle for later `gpm_metrics`; NvmlUnsupported before Hopper."""
        ...

    def gpm_metrics(self, index: int, older: Any, newer: Any) -> dict[str, float]:
        """{'DCGM_FI_PROF_GR_ENGINE_ACTIVE': 0..1, 'DCGM_FI_PROF_SM_ACTIVE': 0..1}."""
        ...

    def gpm_free(self, sample: Any) -> None: ...
    def watch_xid(self, on_xid: Callable[[str, int], None], stop: threading.Event) -> None:
        """Block, calling on_xid(uuid, xid) for each XID critical error, until stop is set;
        NvmlUnsupported if the driver refuses XID events."""
        ...


DEV_FIELDS = (
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_MEM_COPY_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_SM_CLOCK",
)
PROF_FIELDS = ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_SM_ACTIVE")


class PyNvml:
    """The real NVML through nvidia-ml-py (`import pynvml`)."""

    def __init__(self) -> None:
        import pynvml

        self.n = pynvml
        pynvml.nvmlInit()
        self._handles: dict[int, Any] = {}

    def _h(self, index: int) -> Any:
        if index not in self._handles:
            self._handles[index] = self.n.nvmlDeviceGetHandleByIndex(index)
        return self._handles[index]

    @staticmethod
    def _text(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    def _unsupported(self, e: Exception) -> bool:
        n = self.n
        codes = {
            n.NVML_ERROR_NOT_SUPPORTED,
            n.NVML_ERROR_INVALID_ARGUMENT,
            n.NVML_ERROR_NO_PERMISSION,
            getattr(n, "NVML_ERROR_FUNCTION_NOT_FOUND", -1),
        }
        return isinstance(e, n.NVMLError) and getattr(e, "value", None) in codes

    def device_count(self) -> int:
        return int(self.n.nvmlDeviceGetCount())

    def driver_version(self) -> str:
        return self._text(self.n.nvmlSystemGetDriverVersion())

    def identity(self, index: int) -> GpuIdentity:
        h = self._h(index)
        try:
            minor = int(self.n.nvmlDeviceGetMinorNumber(h))
        except self.n.NVMLError:
            minor = index
        return GpuIdentity(
            index=index,
            uuid=self._text(self.n.nvmlDeviceGetUUID(h)),
            minor=minor,
            name=self._text(self.n.nvmlDeviceGetName(h)),
            pci_bus_id=self._text(self.n.nvmlDeviceGetPciInfo(h).busId),
        )

    def read(self, index: int, field: str) -> float:
        n, h = self.n, self._h(index)
        try:
            if field == "DCGM_FI_DEV_GPU_UTIL":
                return float(n.nvmlDeviceGetUtilizationRates(h).gpu)
            if field == "DCGM_FI_DEV_MEM_COPY_UTIL":
                return float(n.nvmlDeviceGetUtilizationRates(h).memory)
            if field in ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"):
                mem = n.nvmlDeviceGetMemoryInfo(h)
                used = field == "DCGM_FI_DEV_FB_USED"
                return float((mem.used if used else mem.free) // (1024 * 1024))
            if field == "DCGM_FI_DEV_POWER_USAGE":
                return float(n.nvmlDeviceGetPowerUsage(h)) / 1000.0
            if field == "DCGM_FI_DEV_GPU_TEMP":
                return float(n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU))
            if field == "DCGM_FI_DEV_SM_CLOCK":
                return float(n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM))
        except n.NVMLError as e:
            if self._unsupported(e):
                raise NvmlUnsupported(str(e)) from None
            raise
        raise KeyError(field)

    def gpm_sample(self, index: int) -> Any:
        n, h = self.n, self._h(index)
        try:
            if not n.nvmlGpmQueryDeviceSupport(h).isSupportedDevice:
                raise NvmlUnsupported("GPM not supported on this GPU")
            sample = n.nvmlGpmSampleAlloc()
            try:
                n.nvmlGpmSampleGet(h, sample)
            except n.NVMLError:
                n.nvmlGpmSampleFree(sample)
                raise
            return sample
        except n.NVMLError as e:
            if self._unsupported(e):
                raise NvmlUnsupported(str(e)) from None
            raise

    def gpm_metrics(self, index: int, older: Any, newer: Any) -> dict[str, float]:
        n = self.n
        ids = {
            "DCGM_FI_PROF_GR_ENGINE_ACTIVE": n.NVML_GPM_METRIC_GRAPHICS_UTIL,
            "DCGM_FI_PROF_SM_ACTIVE": n.NVML_GPM_METRIC_SM_UTIL,
        }
        req = n.c_nvmlGpmMetricsGet_t()
        req.version = n.NVML_GPM_METRICS_GET_VERSION
        req.numMetrics = len(ids)
        req.sample1 = older
        req.sample2 = newer
        for i, metric_id in enumerate(ids.values()):
            req.metrics[i].metricId = metric_id
        n.nvmlGpmMetricsGet(req)
        out: dict[str, float] = {}
        for i, name in enumerate(ids):
            m = req.metrics[i]
            if m.nvmlReturn == n.NVML_SUCCESS:
                out[name] = max(0.0, min(1.0, m.value / 100.0))  # NVML: percent; DCGM: ratio
        return out

    def gpm_free(self, sample: Any) -> None:
        self.n.nvmlGpmSampleFree(sample)

    def watch_xid(self, on_xid: Callable[[str, int], None], stop: threading.Event) -> None:
        n = self.n
        try:
            es = n.nvmlEventSetCreate()
            uuids = {}
            for i in range(self.device_count()):
                h = self._h(i)
                n.nvmlDeviceRegisterEvents(h, n.nvmlEventTypeXidCriticalError, es)
                uuids[i] = self._text(n.nvmlDeviceGetUUID(h))
        except n.NVMLError as e:
            if self._unsupported(e):
                raise NvmlUnsupported(str(e)) from None
            raise
        try:
            while not stop.is_set():
                try:
                    data = n.nvmlEventSetWait_v2(es, 1000)
                except n.NVMLError as e:
                    if getattr(e, "value", None) == n.NVML_ERROR_TIMEOUT:
                        continue
                    raise
                uuid = self._text(n.nvmlDeviceGetUUID(data.device))
                on_xid(uuid, int(data.eventData))
        finally:
            n.nvmlEventSetFree(es)


# ---------------------------------------------------------------------------------------------
# The sampler: reads every GPU each interval, keeps the newest samples for scrapes


@dataclass
class Sampler:
    nvml: Nvml
    hostname: str = field(default_factory=socket.gethostname)
    samples: list[GpuSample] = field(default_factory=list)
    xid: dict[str, int] = field(default_factory=dict)  # uuid -> last XID (0: none seen)
    xid_supported: bool = True
    _gpm_prev: dict[int, Any] = field(default_factory=dict)
    _gpm_unsupported: set[int] = field(default_factory=set)
    _warned: set[tuple[int, str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sample_once(self) -> list[GpuSample]:
        out: list[GpuSample] = []
        for i in range(self.nvml.device_count()):
            gpu = self.nvml.identity(i)
            values: dict[str, float] = {}
            unsupported: list[str] = []
            for name in DEV_FIELDS:
                try:
                    values[name] = self.nvml.read(i, name)
                except NvmlUnsupported as e:
                    unsupported.append(name)
                    self._warn_once(i, name, str(e))
            prof = self._gpm(i)
            if prof is None:
                unsupported += PROF_FIELDS
            else:
                values.update(prof)
            with self._lock:
                if self.xid_supported:
                    values["DCGM_FI_DEV_XID_ERRORS"] = float(self.xid.get(gpu.uuid, 0))
                else:
                    unsupported.append("DCGM_FI_DEV_XID_ERRORS")
            out.append(GpuSample(gpu, values, tuple(unsupported)))
        with self._lock:
            self.samples = out
        return out

    def _gpm(self, i: int) -> dict[str, float] | None:
        """GR engine / SM activity between the previous sample and now; {} on the first."""
        if i in self._gpm_unsupported:
            return None
        try:
            newer = self.nvml.gpm_sample(i)
        except NvmlUnsupported as e:
            self._gpm_unsupported.add(i)
            self._warn_once(i, "DCGM_FI_PROF_*", str(e))
            return None
        older = self._gpm_prev.get(i)
        self._gpm_prev[i] = newer
        if older is None:
            return {}
        try:
            return self.nvml.gpm_metrics(i, older, newer)
        finally:
            self.nvml.gpm_free(older)

    def _warn_once(self, i: int, name: str, why: str) -> None:
        if (i, name) not in self._warned:
            self._warned.add((i, name))
            log.info("event=field_unsupported gpu=%d field=%s reason=%r", i, name, why)

    def on_xid(self, uuid: str, xid: int) -> None:
        log.warning("event=xid_error uuid=%s xid=%d", uuid, xid)
        with self._lock:
            self.xid[uuid] = xid

    def latest(self) -> list[GpuSample]:
        with self._lock:
            return list(self.samples)


# ---------------------------------------------------------------------------------------------
# Kubelet pod-resources API: which pod holds which GPU (optional)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, bytes | int]]:
    """Protocol-buffers wire fields of one message: (field number, bytes or int)."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(buf, i)
            yield num, v
        elif wire == 2:
            n, i = _varint(buf, i)
            yield num, buf[i : i + n]
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def parse_pod_resources(payload: bytes, resource: str = GPU_RESOURCE) -> dict[str, PodRef]:
    """Device id (a GPU UUID for NVIDIA's device plugin) -> pod, from a kubelet
    `v1.PodResourcesLister/List` response (ListPodResourcesResponse, k8s.io/kubelet
    pkg/apis/podresources/v1: pod_resources=1; PodResources name=1 namespace=2 containers=3;
    ContainerResources name=1 devices=2; ContainerDevices resource_name=1 device_ids=2)."""
    out: dict[str, PodRef] = {}
    for num, pod in _fields(payload):
        if num != 1 or not isinstance(pod, bytes):
            continue
        name = namespace = ""
        containers: list[bytes] = []
        for f, v in _fields(pod):
            if isinstance(v, bytes):
                if f == 1:
                    name = v.decode()
                elif f == 2:
                    namespace = v.decode()
                elif f == 3:
                    containers.append(v)
        for c in containers:
            cname = ""
            devices: list[bytes] = []
            for f, v in _fields(c):
                if isinstance(v, bytes):
                    if f == 1:
                        cname = v.decode()
                    elif f == 2:
                        devices.append(v)
            for d in devices:
                rname = ""
                ids: list[str] = []
                for f, v in _fields(d):
                    if isinstance(v, bytes):
                        if f == 1:
                            rname = v.decode()
                        elif f == 2:
                            ids.append(v.decode())
                if rname == resource:
                    for dev in ids:
                        out[dev] = PodRef(name, namespace, cname)
    return out


def list_pod_resources(sock: str, timeout: float = 5.0) -> dict[str, PodRef] | None:
    """Ask the kubelet; None when the socket or the grpcio package is missing."""
    if not os.path.exists(sock):
        return None
    try:
        import grpc
    except ImportError:
        return None
    with grpc.insecure_channel(f"unix://{sock}") as ch:
        call = ch.unary_unary(
            "/v1.PodResourcesLister/List",
            request_serializer=lambda _req: b"",
            response_deserializer=lambda b: b,
        )
        payload = call(None, timeout=timeout)
    return parse_pod_resources(payload)


# ---------------------------------------------------------------------------------------------
# HTTP server


class Exporter:
    def __init__(self, sampler: Sampler, driver: str, pod_resources_socket: str):
        self.sampler = sampler
        self.driver = driver
        self.sock = pod_resources_socket
        self._pods_note: str | None = None

    def pods(self) -> dict[str, PodRef]:
        try:
            found = list_pod_resources(self.sock)
            note = "ok" if found is not None else "unavailable"
        except Exception as e:  # a kubelet hiccup must not fail the scrape
            found, note = None, f"error: {e}"
        if note != self._pods_note:
            self._pods_note = note
            log.info("event=pod_resources socket=%s state=%r", self.sock, note)
        return found or {}

    def exposition(self) -> str:
        return render(self.sampler.latest(), self.sampler.hostname, self.driver, self.pods())


def serve(exporter: Exporter, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, ctype = exporter.exposition().encode(), "text/plain; version=0.0.4"
            elif path in ("/health", "/"):
                body, ctype = b"ok\n", "text/plain"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: Sequence[str] | None = None, nvml: Nvml | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deepseek_serving.nvml_exporter")
    p.add_argument("--host", default=os.environ.get("NVML_EXPORTER_HOST", "0.0.0.0"))
    p.add_argument("--port", type=int, default=int(os.environ.get("NVML_EXPORTER_PORT", "9400")))
    p.add_argument("--interval", type=float, default=1.0, help="seconds between NVML reads")
    p.add_argument("--pod-resources-socket", default=POD_RESOURCES_SOCKET)
    p.add_argument("--hostname", default=os.environ.get("NODE_NAME") or socket.gethostname())
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="level=%(levelname)s %(message)s"
    )
    nvml = nvml or PyNvml()
    sampler = Sampler(nvml, hostname=args.hostname)
    stop = threading.Event()

    def watch() -> None:
        try:
            nvml.watch_xid(sampler.on_xid, stop)
        except NvmlUnsupported as e:
            sampler.xid_supported = False
            log.info("event=xid_events_unsupported reason=%r", str(e))
        except Exception as e:
            sampler.xid_supported = False
            log.warning("event=xid_watch_failed error=%r", str(e))

    threading.Thread(target=watch, daemon=True).start()
    sampler.sample_once()
    exporter = Exporter(sampler, nvml.driver_version(), args.pod_resources_socket)
    server = serve(exporter, args.host, args.port)
    log.info(
        "event=listening host=%s port=%d gpus=%d driver=%s",
        args.host,
        args.port,
        len(sampler.latest()),
        exporter.driver,
    )
    import signal

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(args.interval):
            try:
                sampler.sample_once()
            except Exception as e:  # keep serving the last good sample
                log.warning("event=sample_failed error=%r", str(e))
    except KeyboardInterrupt:
        pass
    stop.set()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
