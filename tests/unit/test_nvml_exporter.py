"""NVML exporter: dcgm-exporter names and labels, parsed with Prometheus' own text parser.

There is no GPU on the build machines, so NVML is faked here (the one mock: the real run on an
H100 is recorded in docs/gpu-exporter.md)."""

from __future__ import annotations

import re
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from deepseek_operator.signals import Signal, promql
from deepseek_serving import nvml_exporter as ne
from deepseek_serving.nvml_exporter import GpuIdentity, NvmlUnsupported, PodRef
from prometheus_client.parser import text_string_to_metric_families


class FakeNvml:
    """Two H100s; the second has no GPM and no power reading."""

    def __init__(self) -> None:
        self.util = [0.0, 37.0]
        self.gpm_counter = [0.0, 0.0]
        self.freed: list[Any] = []

    def device_count(self) -> int:
        return 2

    def driver_version(self) -> str:
        return "580.159.04"

    def identity(self, index: int) -> GpuIdentity:
        return GpuIdentity(
            index=index,
            uuid=f"GPU-0000000{index}-bc7f-1504-fa8c-4bfc65b185c2",
            minor=index,
            name="NVIDIA H100 80GB HBM3",
            pci_bus_id=f"00000000:0{index + 1}:00.0",
        )

    def read(self, index: int, field: str) -> float:
        if index == 1 and field == "DCGM_FI_DEV_POWER_USAGE":
            raise NvmlUnsupported("Not Supported")
        return {
            "DCGM_FI_DEV_GPU_UTIL": self.util[index],
            "DCGM_FI_DEV_MEM_COPY_UTIL": 6.0,
            "DCGM_FI_DEV_FB_USED": 1490.0,
            "DCGM_FI_DEV_FB_FREE": 80068.0,
            "DCGM_FI_DEV_POWER_USAGE": 334.9,
            "DCGM_FI_DEV_GPU_TEMP": 40.0,
            "DCGM_FI_DEV_SM_CLOCK": 1950.0,
        }[field]

    def gpm_sample(self, index: int) -> Any:
        if index == 1:
            raise NvmlUnsupported("GPM not supported on this GPU")
        self.gpm_counter[index] += 1
        return ("sample", index, self.gpm_counter[index])

    def gpm_metrics(self, index: int, older: Any, newer: Any) -> dict[str, float]:
        assert older[2] < newer[2]
        return {"DCGM_FI_PROF_GR_ENGINE_ACTIVE": 0.5, "DCGM_FI_PROF_SM_ACTIVE": 0.25}

    def gpm_free(self, sample: Any) -> None:
        self.freed.append(sample)

    def watch_xid(self, on_xid: Callable[[str, int], None], stop: threading.Event) -> None:
        raise NvmlUnsupported("Invalid Argument")


def families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def test_exposition_parses_and_has_dcgm_names_and_labels() -> None:
    sampler = ne.Sampler(FakeNvml(), hostname="gpu-node-1")
    sampler.sample_once()
    sampler.sample_once()  # GPM needs two samples
    pods = {
        "GPU-00000000-bc7f-1504-fa8c-4bfc65b185c2": PodRef("r1-blue-abc", "prod", "vllm"),
    }
    fams = families(ne.render(sampler.latest(), "gpu-node-1", "580.159.04", pods))

    util = fams["DCGM_FI_DEV_GPU_UTIL"]
    assert [v for _, v in util] == [0.0, 37.0]
    first, second = util[0][0], util[1][0]
    assert first == {
        "gpu": "0",
        "UUID": "GPU-00000000-bc7f-1504-fa8c-4bfc65b185c2",
        "device": "nvidia0",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": "gpu-node-1",
        "pci_bus_id": "00000000:01:00.0",
        "DCGM_FI_DRIVER_VERSION": "580.159.04",
        "pod": "r1-blue-abc",
        "namespace": "prod",
        "container": "vllm",
    }
    assert "pod" not in second and second["gpu"] == "1"  # no pod holds GPU 1

    assert fams["DCGM_FI_DEV_FB_USED"][0][1] == 1490
    assert fams["DCGM_FI_DEV_FB_FREE"][0][1] == 80068
    assert fams["DCGM_FI_DEV_GPU_TEMP"][0][1] == 40
    # GPU 1 refuses power and GPM: those series are absent for it, not 0.
    assert [lab["gpu"] for lab, _ in fams["DCGM_FI_DEV_POWER_USAGE"]] == ["0"]
    assert fams["DCGM_FI_DEV_POWER_USAGE"][0][1] == pytest.approx(334.9)
    assert fams["DCGM_FI_PROF_GR_ENGINE_ACTIVE"] == [(first, 0.5)]
    assert fams["DCGM_FI_PROF_SM_ACTIVE"] == [(first, 0.25)]
    unsupported = {
        (lab["gpu"], lab["field"]) for lab, _ in fams["deepseek_nvml_exporter_unsupported"]
    }
    assert ("1", "DCGM_FI_DEV_POWER_USAGE") in unsupported
    assert ("1", "DCGM_FI_PROF_GR_ENGINE_ACTIVE") in unsupported
    assert fams["deepseek_nvml_exporter_gpus"] == [({}, 2.0)]


def test_first_sample_has_no_prof_series_and_old_gpm_samples_are_freed() -> None:
    fake = FakeNvml()
    sampler = ne.Sampler(fake, hostname="n")
    first = sampler.sample_once()
    assert "DCGM_FI_PROF_GR_ENGINE_ACTIVE" not in first[0].values
    sampler.sample_once()
    sampler.sample_once()
    assert fake.freed == [("sample", 0, 1.0), ("sample", 0, 2.0)]


def test_every_dcgm_series_the_operator_queries_is_served() -> None:
    queried = set()
    for s in Signal:
        queried |= set(re.findall(r"DCGM_FI_[A-Z_]+", promql(s)))
    assert queried, "signals.py queries no DCGM series any more"
    sampler = ne.Sampler(FakeNvml(), hostname="n")
    sampler.sample_once()
    served = set(families(ne.render(sampler.latest(), "n", "d")))
    assert queried <= served, queried - served


def test_dashboard_and_rule_dcgm_series_are_served() -> None:
    generated = Path(__file__).resolve().parents[2] / "dashboards" / "generated"
    files = [*generated.glob("*.json"), *generated.glob("rules/*.yaml")]
    if not files:
        pytest.skip("dashboards/generated is not there yet")
    wanted = set()
    for f in files:
        wanted |= set(re.findall(r"DCGM_FI_[A-Z_]+", f.read_text()))
    assert wanted, "the dashboards query no DCGM series any more"
    sampler = ne.Sampler(FakeNvml(), hostname="n")
    sampler.sample_once()
    sampler.sample_once()
    served = set(families(ne.render(sampler.latest(), "n", "d")))
    assert wanted <= served, wanted - served


def test_xid_is_zero_until_an_event_then_the_last_xid() -> None:
    sampler = ne.Sampler(FakeNvml(), hostname="n")
    sampler.sample_once()
    fams = families(ne.render(sampler.latest(), "n", "d"))
    assert {v for _, v in fams["DCGM_FI_DEV_XID_ERRORS"]} == {0.0}
    sampler.on_xid("GPU-00000001-bc7f-1504-fa8c-4bfc65b185c2", 79)
    sampler.sample_once()
    fams = families(ne.render(sampler.latest(), "n", "d"))
    assert [(lab["gpu"], v) for lab, v in fams["DCGM_FI_DEV_XID_ERRORS"]] == [("0", 0), ("1", 79)]
    sampler.xid_supported = False
    sampler.sample_once()
    assert "DCGM_FI_DEV_XID_ERRORS" not in families(ne.render(sampler.latest(), "n", "d"))


def test_label_values_are_escaped() -> None:
    gpu = GpuIdentity(0, 'GPU-"x"', 0, "A\\B\nC", "0")
    text = ne.render([ne.GpuSample(gpu, {"DCGM_FI_DEV_GPU_UTIL": 1.0})], "h", "d")
    [(labels, _)] = families(text)["DCGM_FI_DEV_GPU_UTIL"]
    assert labels["UUID"] == 'GPU-"x"' and labels["modelName"] == "A\\B\nC"


# --- kubelet pod-resources: a List response encoded by hand from the v1 proto ---------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _msg(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _s(num: int, text: str) -> bytes:
    return _msg(num, text.encode())


def test_parse_pod_resources_maps_gpu_uuids_to_pods() -> None:
    gpu_devices = _s(1, "nvidia.com/gpu") + _s(2, "GPU-aaa") + _s(2, "GPU-bbb")
    numa = _msg(3, _msg(1, _varint(0 << 3 | 0) + _varint(1)))  # TopologyInfo{nodes{ID:1}}
    other = _s(1, "example.com/nic") + _s(2, "nic0")
    container = _s(1, "vllm") + _msg(2, gpu_devices + numa) + _msg(2, other)
    cpu_ids = _varint(3 << 3 | 0) + _varint(5)  # a varint field (cpu_ids) is skipped
    pod = _s(1, "r1-blue-abc") + _s(2, "prod") + _msg(3, container + cpu_ids)
    idle = _s(1, "idle") + _s(2, "kube-system")
    payload = _msg(1, pod) + _msg(1, idle)
    assert ne.parse_pod_resources(payload) == {
        "GPU-aaa": PodRef("r1-blue-abc", "prod", "vllm"),
        "GPU-bbb": PodRef("r1-blue-abc", "prod", "vllm"),
    }
    assert ne.parse_pod_resources(b"") == {}


def test_no_kubelet_socket_means_no_pod_labels(tmp_path: Any) -> None:
    assert ne.list_pod_resources(str(tmp_path / "absent.sock")) is None


def test_http_server_serves_metrics() -> None:
    sampler = ne.Sampler(FakeNvml(), hostname="n")
    sampler.sample_once()
    exporter = ne.Exporter(sampler, "580.159.04", "/nonexistent/kubelet.sock")
    server = ne.serve(exporter, "127.0.0.1", 0)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert "DCGM_FI_DEV_GPU_UTIL" in families(text)
    finally:
        server.shutdown()
        server.server_close()
