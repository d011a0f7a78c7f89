"""Every metric name the dashboards and rules may query, from where each really comes from:
the exposition of a real vLLM 0.32 server (tests/fixtures/vllm-0.32/vllm-0.32-metrics.txt),
the exposition of the real vllm-router 0.1.17 (tests/fixtures/vllm-router-0.1.17/),
the operator's own registry (deepseek_operator.adapters.metrics), dcgm-exporter's names that
the NVML exporter and the simulated fleet serve, and the recording rules. Tests use
`unknown_metrics` to catch a misspelt name, which would otherwise make a panel empty or an
alert silently never fire."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VLLM_EXPOSITION = ROOT / "tests" / "fixtures" / "vllm-0.32" / "vllm-0.32-metrics.txt"
ROUTER_EXPOSITION = (
    ROOT / "tests" / "fixtures" / "vllm-router-0.1.17" / "vllm-router-0.1.17-metrics.txt"
)

# dcgm-exporter's default counters that our GPU dashboard and alerts use; the NVML exporter
# (serving/deepseek_serving/nvml_exporter.py) and the simulated fleet serve the same names.
DCGM = frozenset(
    {
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_SM_CLOCK",
        "DCGM_FI_DEV_XID_ERRORS",
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "DCGM_FI_PROF_SM_ACTIVE",
    }
)
# Series Prometheus itself makes for every target.
PROMETHEUS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

# Identifiers that name a metric rather than a function, keyword or label: a metric of ours
# starts with one of these prefixes or contains a colon (vLLM's names and recording rules).
_PREFIXES = ("vllm:", "vllm_router_", "deepseek_", "DCGM_", "http_", "process_", "up")
_TOKEN = re.compile(r"(?<![\w:\"'`.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])")
_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")


def _sample_names(exposition: Path) -> frozenset[str]:
    names = set()
    for line in exposition.read_text().splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return frozenset(names)


@cache
def vllm_metrics() -> frozenset[str]:
    """Sample names in the real vLLM exposition (histogram _bucket/_sum/_count included)."""
    return _sample_names(VLLM_EXPOSITION)


@cache
def router_metrics() -> frozenset[str]:
    """Sample names the real vllm-router 0.1.17 exported (a family appears at its first use)."""
    return _sample_names(ROUTER_EXPOSITION)


@cache
def operator_metrics() -> frozenset[str]:
    """Sample names the operator's registry serves."""
    from deepseek_operator.adapters.metrics import REGISTRY

    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        for suffix in ("_total", "_bucket", "_count", "_sum", "_info", "_created"):
            names.add(family.name + suffix)
    return frozenset(names)


@cache
def admission_metrics() -> frozenset[str]:
    """Sample names the engine pod's admission gate adds to vLLM's /metrics (text format)."""
    from deepseek_serving.admission import GateStats, metrics_text

    text = metrics_text(GateStats(1, 0, 0, 0, 0, 0, False), openmetrics=False)
    return frozenset(
        line.split(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")
    )


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (our prefixes and colon names only)."""
    stripped = _STRING.sub('""', expr)
    stripped = _MATCHERS.sub("{}", stripped)
    stripped = _LABEL_LIST.sub(" ", stripped)
    stripped = _RANGE.sub("[]", stripped)
    names = set()
    for m in _TOKEN.finditer(stripped):
        tok = m.group(1)
        if ":" in tok or tok.startswith(_PREFIXES[:-1]) or tok == "up":
            names.add(tok)
    return names


def unknown_metrics(expr: str, recorded: frozenset[str] = frozenset()) -> set[str]:
    """Names in `expr` that no vLLM server, vllm-router, admission gate, operator, DCGM
    exporter or recording rule has."""
    known = (
        vllm_metrics()
        | router_metrics()
        | admission_metrics()
        | operator_metrics()
        | DCGM
        | PROMETHEUS
        | recorded
    )
    return {n for n in metric_names(expr) if n not in known}
