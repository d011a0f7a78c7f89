"""The capacity-learning benchmark's pure parts: where the KV cache reaches its target, and the
learned-to-true ratios it reports."""

from __future__ import annotations

from typing import Any

import pytest

from bench.capacity import LEVELS, STEADY_S, WARM_S, kv_capped, ramp_trace, report_md, summarize
from testbed.sim import traces as T


def level(learned: float | None, kv: float | None) -> dict[str, Any]:
    return {"learned_rps": learned, "kv_usage": kv, "tpot_p99": 0.05, "source": "x"}


@pytest.mark.parametrize(
    ("usages", "target", "expected"),
    [
        # 0.4 / 0.6 / 0.8 / 0.95 x 1.0 req/s: 0.8 is reached halfway between 0.8 and 0.95
        ((0.2, 0.35, 0.7, 0.9), 0.8, 0.875),
        ((0.2, 0.35, 0.59, 0.84), 0.8, 0.926),
        ((0.1, 0.2, 0.3, 0.4), 0.8, None),  # the SLO binds first: the cache never gets there
        ((0.85, 0.9, 0.95, 0.99), 0.8, None),  # past it at the lowest level: no bracket
        ((0.2, None, 0.7, 0.9), 0.8, 0.875),  # a level without the signal is skipped
    ],
)
def test_kv_capped_interpolates_where_the_cache_reaches_its_target(
    usages: tuple[float | None, ...], target: float, expected: float | None
) -> None:
    levels = {f"{lv}": level(1.0, u) for lv, u in zip(LEVELS, usages, strict=True)}
    assert kv_capped(levels, 1.0, target) == expected


def test_summary_compares_with_the_lower_of_slo_and_kv_capacity() -> None:
    cases = {
        # decode-bound: the cache stays low, truth is the calibrated 5.0
        "chat": {
            "calibrated_rps": 5.0,
            "levels": {
                "0.4": level(4.5, 0.1),
                "0.6": level(5.0, 0.15),
                "0.8": level(5.5, 0.2),
                "0.95": level(None, 0.25),
            },
        },
        # KV-bound: the cache reads 80% at 0.875 x 1.0, the truth there
        "reasoning": {
            "calibrated_rps": 1.0,
            "levels": {
                "0.4": level(1.05, 0.2),
                "0.6": level(1.0, 0.35),
                "0.8": level(0.875, 0.7),
                "0.95": level(0.7, 0.9),
            },
        },
    }
    s = summarize(cases, 0.8)
    assert cases["chat"]["truth_rps"] == 5.0
    assert cases["reasoning"]["truth_rps"] == 0.875
    assert cases["chat"]["levels"]["0.4"]["ratio"] == 0.9
    assert cases["chat"]["levels"]["0.95"]["ratio"] is None
    assert cases["reasoning"]["levels"]["0.4"]["ratio"] == 1.2
    assert s["measured"] == 7
    assert s["within_10pct"] == 4  # 0.9, 1.0, 1.1 and 1.0 (reasoning at 0.8)
    assert (s["ratio_min"], s["ratio_max"]) == (0.8, 1.2)
    md = report_md(
        {
            "cases": cases,
            "summary": s,
            "command": "python -m bench.capacity",
            "seed": 1,
            "runtime_s": 1.0,
        }
    )
    # no ramp measured in these cases: "none" in its column
    assert (
        "| reasoning | 0.875 | 1.05 (1.20x) | 1 (1.14x) | 0.875 (1.00x) | 0.7 (0.80x) | none |"
        in md
    )
    assert "| chat | 5 | 4.5 (0.90x) | 5 (1.00x) | 5.5 (1.10x) | none | none |" in md


def test_the_ramp_holds_its_first_rate_then_rises_to_its_last() -> None:
    lengths = T.AZURE_CONV_LENGTHS
    tr = ramp_trace(2.0, 8.0, lengths, seed=1)
    arrivals = [r.arrival for r in tr.requests]
    settle = sum(1 for a in arrivals if a < WARM_S) / WARM_S
    last = sum(1 for a in arrivals if a >= WARM_S + STEADY_S - 120) / 120
    assert settle == pytest.approx(2.0, rel=0.15)
    assert last == pytest.approx(8.0 - 6.0 * 60 / STEADY_S, rel=0.15)
    assert max(arrivals) < WARM_S + STEADY_S


def test_kv_capped_reads_the_steady_levels_only() -> None:
    levels = {f"{lv}": level(1.0, u) for lv, u in zip(LEVELS, (0.2, 0.35, 0.7, 0.9), strict=True)}
    levels["ramp"] = level(1.0, 0.99)  # its usage is the end of a rise, not a level's
    assert kv_capped(levels, 1.0, 0.8) == 0.875
