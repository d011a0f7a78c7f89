"""DCGM-exporter output of the simulated GPU nodes: names, types and labels as dcgm-exporter
exposes them, readings calibrated on the real H100 NVML readings, one exporter per node address
over real HTTP."""

from __future__ import annotations

import time

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testbed.ports import free_port
from testbed.sim.dcgm import (
    DcgmExporters,
    GpuSample,
    PodRef,
    node_devices,
    product_for,
    reading,
    reading_from_engine,
    render,
)
from testbed.sim.engine import EngineModel, SimRequest
from testbed.sim.fleet import allocate_gpus
from testbed.sim.presets import preset

H100 = "NVIDIA-H100-80GB-HBM3"
REQUIRED = {
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_XID_ERRORS",
}
BASE_LABELS = {"gpu", "UUID", "device", "modelName", "Hostname", "pci_bus_id"}
POD_LABELS = {"pod", "namespace", "container"}


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float, str]]]:
    out: dict[str, list[tuple[dict[str, str], float, str]]] = {}
    for f in text_string_to_metric_families(text):
        for s in f.samples:
            out.setdefault(s.name, []).append((s.labels, s.value, f.type))
    return out


def test_exposition_names_types_and_labels():
    product = product_for(H100)
    devs = node_devices("us-east-a-h100-1", H100, 8)
    samples = [
        GpuSample(d, reading(product, busy=0.5, held=True), PodRef("ns", "engine-0", "vllm"))
        if d.index < 2
        else GpuSample(d, reading(product))
        for d in devs
    ]
    got = parse(render("us-east-a-h100-1", samples, {}))
    assert set(got) >= REQUIRED
    for name in REQUIRED:
        rows = got[name]
        assert len(rows) == 8
        assert {t for _, _, t in rows} == {"gauge"}
        for labels, _, _ in rows:
            gpu = int(labels["gpu"])
            want = BASE_LABELS | (POD_LABELS if gpu < 2 else set())
            assert want <= set(labels), (name, labels)
            assert labels["Hostname"] == "us-east-a-h100-1"
            assert labels["device"] == f"nvidia{gpu}"
            assert labels["modelName"] == "NVIDIA H100 80GB HBM3"
            assert labels["UUID"].startswith("GPU-")
            if gpu < 2:
                assert (labels["namespace"], labels["pod"], labels["container"]) == (
                    "ns",
                    "engine-0",
                    "vllm",
                )
            else:
                assert not POD_LABELS & set(labels)
    # UUIDs are stable per node name and distinct per GPU
    assert [d.uuid for d in devs] == [d.uuid for d in node_devices("us-east-a-h100-1", H100, 8)]
    assert len({d.uuid for d in devs}) == 8


def test_readings_follow_the_real_h100_measurements():
    # shared/reference/h100-nvml-sample.txt (H100 80GB HBM3, bf16 matmul loop): idle 75.5 W,
    # 31 C, 480 MiB used of 81,559; 50 % duty 522-528 W; 100 % duty ~700 W, 53-54 C.
    p = product_for(H100)
    idle = reading(p)
    assert (idle.util_pct, idle.power_w, idle.temp_c) == (0, pytest.approx(75, abs=1), 31)
    assert (idle.fb_used_mib, idle.fb_used_mib + idle.fb_free_mib) == (480, 81559)
    half = reading(p, busy=0.5)
    assert half.power_w == pytest.approx(526, rel=0.03)
    assert half.util_pct == 50
    full = reading(p, busy=1.0)
    assert full.power_w == pytest.approx(700, rel=0.01)
    assert full.temp_c == pytest.approx(54, abs=1)
    assert full.sm_clock_mhz < half.sm_clock_mhz  # the power cap lowers the clock
    assert reading(p, xid=79).xid == 79


def test_engine_load_shows_up_in_readings():
    pre = preset("distill-7b-bf16-1xh100")
    t0 = 1000.0
    engine = EngineModel(pre, start_time=t0, loaded=True)
    product = product_for(H100)
    idle = reading_from_engine(product, engine.gpu_stats()[0])
    assert idle.util_pct == 0
    assert idle.fb_used_mib > 60_000  # weights + KV pool held (gpu_memory_utilization)
    for i in range(64):
        engine.submit(SimRequest(f"r{i}", 512, 256, t0), t0)
    engine.advance(t0 + 1.5)
    busy = reading_from_engine(product, engine.gpu_stats()[0])
    assert busy.util_pct > 90
    assert idle.power_w < busy.power_w <= 700
    assert busy.temp_c > idle.temp_c
    assert busy.fb_used_mib == idle.fb_used_mib


def test_gpu_allocation_on_a_node():
    def pod(name: str, gpus: int, created: str, phase: str = "Running") -> dict:
        return {
            "metadata": {"namespace": "ns", "name": name, "creationTimestamp": created},
            "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
            "status": {"phase": phase},
        }

    pods = [
        pod("b", 4, "2026-01-01T00:00:02Z"),
        pod("a", 2, "2026-01-01T00:00:01Z"),
        pod("done", 8, "2026-01-01T00:00:00Z", phase="Succeeded"),
        pod("c", 4, "2026-01-01T00:00:03Z"),  # does not fit any more
        pod("cpu", 0, "2026-01-01T00:00:00Z"),
    ]
    assert allocate_gpus(pods, 8) == {"ns/a": [0, 1], "ns/b": [2, 3, 4, 5]}


async def test_one_exporter_per_node_address():
    port = free_port()
    exporters = DcgmExporters(port=port)
    product = product_for(H100)

    def source(name: str, n: int):
        devs = node_devices(name, H100, n)
        return lambda: [GpuSample(d, reading(product, busy=0.25)) for d in devs]

    await exporters.add_node("node-1", "127.0.0.51", source("node-1", 8))
    await exporters.add_node("node-2", "127.0.0.52", source("node-2", 4))
    try:
        async with aiohttp.ClientSession() as http:
            for ip, name, n in (("127.0.0.51", "node-1", 8), ("127.0.0.52", "node-2", 4)):
                async with http.get(f"http://{ip}:{port}/metrics") as r:
                    assert r.status == 200
                    got = parse(await r.text())
                rows = got["DCGM_FI_DEV_GPU_UTIL"]
                assert len(rows) == n
                assert {labels["Hostname"] for labels, _, _ in rows} == {name}
                assert {v for _, v, _ in rows} == {25}
            await exporters.remove_node("node-2")
            async with aiohttp.ClientSession() as fresh:
                with pytest.raises(aiohttp.ClientConnectorError):
                    async with fresh.get(f"http://127.0.0.52:{port}/metrics"):
                        pass
            time.sleep(0.01)
            async with http.get(f"http://127.0.0.51:{port}/metrics") as r:
                got = parse(await r.text())
            energy = next(v for k, v in got.items() if k.startswith("DCGM_FI_DEV_TOTAL_ENERGY"))
            assert all(v > 0 for _, v, _ in energy)
    finally:
        await exporters.close()
