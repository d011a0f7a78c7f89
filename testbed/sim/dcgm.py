"""DCGM-exporter-compatible GPU metrics for the simulated nodes.

Each simulated GPU node gets a `/metrics` endpoint on `<node InternalIP>:9400`, like the
dcgm-exporter DaemonSet of the NVIDIA GPU Operator. Names, types and help texts follow
dcgm-exporter's default counter files (etc/default-counters.csv and etc/dcp-metrics-included.csv
in github.com/NVIDIA/dcgm-exporter); labels follow its exposition: `gpu, UUID, pci_bus_id,
device, modelName, Hostname, DCGM_FI_DRIVER_VERSION`, plus `container, namespace, pod` for a
GPU that the kubelet's pod-resources API maps to a pod (dcgm-exporter's pod-mapping labels).
GPUs that no pod holds report without pod labels.

Readings: an idle GPU reads like the idle H100 in shared/reference/h100-nvml-sample.txt (0 %,
~75 W, 31 C, SM 345 MHz, ~480 MiB used). A busy GPU's power, temperature and SM clock are
interpolated over that file's measured duty cycles (100 % duty: ~700 W at the power cap,
54 C, SM ~1350 MHz). Utilization and memory come from the engine model of the pod holding
the GPU.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

log = logging.getLogger("testbed.sim.dcgm")

DCGM_PORT = 9400
DRIVER_VERSION = "580.159.04"  # the driver of the reference H100 reading
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class GpuProduct:
    """What NVML reports for a GPU model, and its idle/peak power and temperature."""

    model_name: str  # NVML name, dcgm-exporter's modelName label
    memory_mib: int  # NVML total framebuffer
    idle_power_w: float  # no process on the GPU
    loaded_power_w: float  # an engine holds the memory but runs no kernel
    max_power_w: float  # power cap of the SXM part
    idle_temp_c: float
    max_temp_c: float
    reserved_mib: int  # framebuffer used with no process


def product_for(label: str) -> GpuProduct:
    """NVML facts for a node's `nvidia.com/gpu.product` label (GPU feature discovery writes the
    NVML name with '-' for ' '). Known GPUs come from presets.GpuSpec; others read like an
    H100 under the label's name."""
    from .presets import H100_SXM, gpu_for_product

    try:
        spec = gpu_for_product(label)
    except KeyError:
        spec = H100_SXM
    name = label.replace("-", " ") if label else "NVIDIA H100 80GB HBM3"
    return GpuProduct(
        model_name=name,
        memory_mib=spec.memory_mib,
        idle_power_w=spec.power_idle_w,
        loaded_power_w=spec.power_idle_loaded_w,
        max_power_w=spec.power_max_w,
        idle_temp_c=spec.temp_idle_c,
        max_temp_c=spec.temp_max_c,
        reserved_mib=spec.fb_reserved_mib,
    )


# PCI bus ids of the eight SXM GPUs of an HGX H100/H200 board.
_BUS_IDS = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)


@dataclass(frozen=True)
class GpuDevice:
    """One GPU of a node, as NVML identifies it."""

    index: int
    uuid: str
    pci_bus_id: str
    product: GpuProduct

    @property
    def device(self) -> str:
        return f"nvidia{self.index}"


def node_devices(node_name: str, product_label: str, count: int) -> list[GpuDevice]:
    """The GPUs of a node; UUIDs are stable for a node name so series survive fleet restarts."""
    product = product_for(product_label)
    out = []
    for i in range(count):
        u = uuid.uuid5(uuid.NAMESPACE_DNS, f"{node_name}.gpu{i}.sim.deepseek.dev")
        bus = _BUS_IDS[i] if i < len(_BUS_IDS) else 0xE0 + i
        out.append(GpuDevice(i, f"GPU-{u}", f"00000000:{bus:02X}:00.0", product))
    return out


@dataclass(frozen=True)
class GpuReading:
    """One sample of one GPU, in dcgm-exporter's units."""

    util_pct: float  # DCGM_FI_DEV_GPU_UTIL, 0..100: time any kernel ran
    gr_engine_active: float  # DCGM_FI_PROF_GR_ENGINE_ACTIVE, 0..1
    dram_active: float  # DCGM_FI_PROF_DRAM_ACTIVE, 0..1
    mem_copy_util_pct: float  # DCGM_FI_DEV_MEM_COPY_UTIL, 0..100
    fb_used_mib: int
    fb_free_mib: int
    power_w: float
    temp_c: float
    sm_clock_mhz: int
    mem_clock_mhz: int
    xid: int = 0


# Duty cycle -> (power, temperature) as fractions of the idle..max span, and SM clock (MHz),
# from the reference H100 reading at 0 / 25 / 50 / 100 % duty (the clock drops under the
# 700 W power cap).
_CURVE = (
    (0.0, 0.0, 0.0, 345.0),
    (0.25, 0.415, 0.435, 1955.0),
    (0.5, 0.722, 0.652, 1790.0),
    (1.0, 1.0, 1.0, 1355.0),
)
MEM_CLOCK_MHZ = 2619  # HBM3 clock NVML reports on H100 SXM


def _interp(x: float, col: int) -> float:
    x = min(max(x, 0.0), 1.0)
    for lo, hi in itertools.pairwise(_CURVE):
        if x <= hi[0]:
            t = 0.0 if hi[0] == lo[0] else (x - lo[0]) / (hi[0] - lo[0])
            return lo[col] + t * (hi[col] - lo[col])
    return _CURVE[-1][col]


def _duty_for_power(fraction: float) -> float:
    """Invert the power column of the curve: the duty cycle that draws this share of the
    idle..max span."""
    f = min(max(fraction, 0.0), 1.0)
    for lo, hi in itertools.pairwise(_CURVE):
        if f <= hi[1]:
            t = 0.0 if hi[1] == lo[1] else (f - lo[1]) / (hi[1] - lo[1])
            return lo[0] + t * (hi[0] - lo[0])
    return 1.0


def sm_clock_mhz(product: GpuProduct, util_pct: float, power_w: float) -> int:
    """SM clock for a reading: idle clock when no kernel runs, else the reference curve at the
    duty cycle that draws this power (the clock falls as power approaches the cap)."""
    if util_pct <= 0:
        return 345
    span = product.max_power_w - product.idle_power_w
    duty = _duty_for_power((power_w - product.idle_power_w) / span if span > 0 else 1.0)
    return round(_interp(max(duty, 0.25), 3))


def reading(
    product: GpuProduct,
    *,
    busy: float = 0.0,
    load: float | None = None,
    fb_used_mib: float | None = None,
    held: bool = False,
    xid: int = 0,
) -> GpuReading:
    """A synthetic reading (GPUs that no engine model describes).

    busy: fraction of the sample period a kernel ran (NVML utilization and
        DCGM_FI_PROF_GR_ENGINE_ACTIVE are both time-based).
    load: how hard the kernels drive the GPU, 0..1 (sets power and temperature like the
        reference duty cycles); defaults to `busy`.
    held: a process holds the GPU (idle power is then the loaded-idle power).
    """
    b = min(max(busy, 0.0), 1.0)
    x = b if load is None else min(max(load, 0.0), 1.0)
    used = product.reserved_mib if fb_used_mib is None else fb_used_mib
    used_i = int(min(max(used, 0.0), product.memory_mib))
    base = product.loaded_power_w if held else product.idle_power_w
    power = base + _interp(x, 1) * (product.max_power_w - base)
    temp = product.idle_temp_c + _interp(x, 2) * (product.max_temp_c - product.idle_temp_c)
    util = round(100.0 * b)
    return GpuReading(
        util_pct=util,
        gr_engine_active=round(b, 6),
        dram_active=round(0.6 * x, 6),
        mem_copy_util_pct=round(60.0 * x),
        fb_used_mib=used_i,
        fb_free_mib=product.memory_mib - used_i,
        power_w=round(power, 3),
        temp_c=round(temp),
        sm_clock_mhz=sm_clock_mhz(product, util, power),
        mem_clock_mhz=MEM_CLOCK_MHZ,
        xid=xid,
    )


def reading_from_engine(product: GpuProduct, stats: object) -> GpuReading:
    """A reading from the engine model's `GpuStats` of the GPU (engine.py)."""

    def f(name: str, default: float = 0.0) -> float:
        return float(getattr(stats, name, default) or 0.0)

    util = f("utilization_pct")
    power = f("power_w", product.loaded_power_w)
    used = int(min(max(f("fb_used_mib"), 0.0), product.memory_mib))
    return GpuReading(
        util_pct=round(util, 1),
        gr_engine_active=round(f("engine_active"), 6),
        dram_active=round(f("mem_copy_util_pct") / 100.0, 6),
        mem_copy_util_pct=round(f("mem_copy_util_pct"), 1),
        fb_used_mib=used,
        fb_free_mib=product.memory_mib - used,
        power_w=round(power, 3),
        temp_c=round(f("temperature_c", product.idle_temp_c), 1),
        sm_clock_mhz=sm_clock_mhz(product, util, power),
        mem_clock_mhz=MEM_CLOCK_MHZ,
        xid=int(f("xid_errors")),
    )


def idle_reading(product: GpuProduct) -> GpuReading:
    return reading(product)


@dataclass(frozen=True)
class PodRef:
    """The pod (and container) holding a GPU, as dcgm-exporter's pod mapper labels it."""

    namespace: str
    pod: str
    container: str


@dataclass(frozen=True)
class GpuSample:
    device: GpuDevice
    reading: GpuReading
    pod: PodRef | None = None


# (metric name, type, help, value getter) in dcgm-exporter's counter-file order.
_FIELDS: tuple[tuple[str, str, str, Callable[[GpuReading], float]], ...] = (
    (
        "DCGM_FI_DEV_SM_CLOCK",
        "gauge",
        "SM clock frequency (in MHz).",
        lambda r: r.sm_clock_mhz,
    ),
    (
        "DCGM_FI_DEV_MEM_CLOCK",
        "gauge",
        "Memory clock frequency (in MHz).",
        lambda r: r.mem_clock_mhz,
    ),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", lambda r: r.temp_c),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", lambda r: r.power_w),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", lambda r: r.util_pct),
    (
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "gauge",
        "Memory utilization (in %).",
        lambda r: r.mem_copy_util_pct,
    ),
    (
        "DCGM_FI_DEV_XID_ERRORS",
        "gauge",
        "Value of the last XID error encountered.",
        lambda r: r.xid,
    ),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", lambda r: r.fb_free_mib),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", lambda r: r.fb_used_mib),
    (
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "gauge",
        "Ratio of time the graphics engine is active.",
        lambda r: r.gr_engine_active,
    ),
    (
        "DCGM_FI_PROF_DRAM_ACTIVE",
        "gauge",
        "Ratio of cycles the device memory interface is active sending or receiving data.",
        lambda r: r.dram_active,
    ),
)
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
METRIC_NAMES = (*tuple(f[0] for f in _FIELDS), ENERGY)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(hostname: str, s: GpuSample) -> str:
    d = s.device
    parts = [
        ("gpu", str(d.index)),
        ("UUID", d.uuid),
        ("pci_bus_id", d.pci_bus_id),
        ("device", d.device),
        ("modelName", d.product.model_name),
        ("Hostname", hostname),
        ("DCGM_FI_DRIVER_VERSION", DRIVER_VERSION),
    ]
    if s.pod is not None:
        parts += [
            ("container", s.pod.container),
            ("namespace", s.pod.namespace),
            ("pod", s.pod.pod),
        ]
    return ",".join(f'{k}="{_esc(v)}"' for k, v in parts)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:f}"


def render(hostname: str, samples: list[GpuSample], energy_mj: dict[str, float]) -> str:
    """dcgm-exporter's text exposition for one node (energy_mj: GPU UUID -> mJ since boot)."""
    lines: list[str] = []
    for name, typ, help_, get in _FIELDS:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {typ}")
        for s in samples:
            lines.append(f"{name}{{{_labels(hostname, s)}}} {_num(get(s.reading))}")
    lines.append(f"# HELP {ENERGY} Total energy consumption since boot (in mJ).")
    lines.append(f"# TYPE {ENERGY} counter")
    for s in samples:
        lines.append(f"{ENERGY}{{{_labels(hostname, s)}}} {int(energy_mj.get(s.device.uuid, 0))}")
    return "\n".join(lines) + "\n"


SampleSource = Callable[[], list[GpuSample]]


class _NodeState:
    def __init__(self, name: str, ip: str, source: SampleSource) -> None:
        self.name = name
        self.ip = ip
        self.source = source
        self.energy_mj: dict[str, float] = {}
        self.last_power: dict[str, float] = {}
        self.last_t = time.monotonic()
        self.site: web.TCPSite | None = None

    def scrape(self) -> str:
        samples = self.source()
        now = time.monotonic()
        dt = now - self.last_t
        self.last_t = now
        for s in samples:
            u = s.device.uuid
            # Energy integrates the power seen at the previous sample (mJ = W * s * 1000).
            prev = self.last_power.get(u, s.reading.power_w)
            self.energy_mj[u] = self.energy_mj.get(u, 0.0) + prev * dt * 1000.0
            self.last_power[u] = s.reading.power_w
        return render(self.name, samples, self.energy_mj)


class DcgmExporters:
    """One dcgm-exporter per simulated node, all in one aiohttp application: each node's
    InternalIP gets its own listening socket on `port` and sees only its own GPUs."""

    def __init__(self, port: int = DCGM_PORT) -> None:
        self.port = port
        self._nodes: dict[str, _NodeState] = {}
        self._by_ip: dict[str, _NodeState] = {}
        self._runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()

    async def _ensure_runner(self) -> web.AppRunner:
        if self._runner is None:
            app = web.Application()
            app.router.add_get("/metrics", self._metrics)
            app.router.add_get("/health", self._health)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await self._runner.setup()
        return self._runner

    def _node_for(self, request: web.Request) -> _NodeState | None:
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        return self._by_ip.get(sock[0]) if sock else None

    async def _metrics(self, request: web.Request) -> web.Response:
        node = self._node_for(request)
        if node is None:
            return web.Response(status=404, text="no such node\n")
        return web.Response(body=node.scrape().encode(), headers={"Content-Type": CONTENT_TYPE})

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    @property
    def nodes(self) -> dict[str, str]:
        """Node name -> InternalIP of every node served."""
        return {n.name: n.ip for n in self._nodes.values()}

    async def add_node(self, name: str, ip: str, source: SampleSource) -> None:
        """Serve a node's GPUs on ip:port (again, if its IP changed)."""
        async with self._lock:
            old = self._nodes.get(name)
            if old is not None:
                old.source = source
                if old.ip == ip:
                    return
                await self._stop_site(old)
            state = _NodeState(name, ip, source)
            runner = await self._ensure_runner()
            site = web.TCPSite(runner, ip, self.port, reuse_address=True)
            try:
                await site.start()
            except OSError as e:
                log.warning(
                    "event=dcgm_bind_failed node=%s ip=%s port=%d error=%r", name, ip, self.port, e
                )
                return
            state.site = site
            self._nodes[name] = state
            self._by_ip[ip] = state
            log.info("event=dcgm_serving node=%s address=%s:%d", name, ip, self.port)

    async def _stop_site(self, state: _NodeState) -> None:
        if state.site is not None:
            await state.site.stop()
            state.site = None
        self._nodes.pop(state.name, None)
        if self._by_ip.get(state.ip) is state:
            del self._by_ip[state.ip]

    async def remove_node(self, name: str) -> None:
        async with self._lock:
            state = self._nodes.get(name)
            if state is not None:
                await self._stop_site(state)
                log.info("event=dcgm_stopped node=%s", name)

    async def close(self) -> None:
        async with self._lock:
            for state in list(self._nodes.values()):
                await self._stop_site(state)
            if self._runner is not None:
                await self._runner.cleanup()
                self._runner = None
