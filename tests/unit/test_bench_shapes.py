"""bench.shapes: the unseen load shapes are what their docstring says, and replayable."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import shapes as S
from testbed.sim import traces as T


def _azure(tmp_path: Path) -> Path:
    """A two-minute Azure-format trace: 60 then 120 requests per minute."""
    p = tmp_path / "azure.csv"
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    times = [i * 1.0 for i in range(60)] + [60.0 + i * 0.5 for i in range(120)]
    for t in times:
        rows.append(f"2023-11-16 18:{int(t // 60):02d}:{t % 60:09.6f}0,100,50")
    p.write_text("\n".join(rows) + "\n")
    return p


def test_every_shape_stays_under_the_bound_its_thinning_uses(tmp_path: Path) -> None:
    for name, (rate, length, peak) in S.shapes(
        T.load_azure_trace(_azure(tmp_path)), seed=7
    ).items():
        top = max(rate(t * length / 2000) for t in range(2000))
        assert 0 < top <= peak, name


@pytest.mark.parametrize(
    "name,t,expected",
    [
        ("ramp_hold", 0.0, 6.0),
        ("ramp_hold", 600.0, 14.0),
        ("ramp_hold", 1800.0, 22.0),
        ("ramp_hold", 3000.0, 8.0),
        ("sawtooth", 0.0, 6.0),
        ("sawtooth", 1199.0, 6.0 + 14.0 * 1199 / 1200),
        ("sawtooth", 1200.0, 6.0),
        ("conv_rev", 0.0, 6.0),  # the trace's last minute (120 / 60 x 3), first
        ("conv_rev", 119.0, 3.0),  # its first minute (60 / 60 x 3), last
    ],
)
def test_shape_rates(tmp_path: Path, name: str, t: float, expected: float) -> None:
    rate, _, _ = S.shapes(T.load_azure_trace(_azure(tmp_path)), seed=7)[name]
    assert rate(t) == pytest.approx(expected)


def test_spiky_spends_a_small_share_of_the_hour_in_short_spikes(tmp_path: Path) -> None:
    rate, length, _ = S.shapes(T.load_azure_trace(_azure(tmp_path)), seed=7)["spiky"]
    high = sum(1 for s in range(int(length)) if rate(float(s)) > 10.0)
    assert 90 <= high <= 7 * 90  # seven 90 s spikes (overlapping ones merge)


@pytest.mark.slow
def test_written_traces_replay_at_their_shapes_rate(tmp_path: Path) -> None:
    out = tmp_path / "shapes"
    assert S.main(["--out", str(out), "--azure", str(_azure(tmp_path))]) == 0
    tr = T.load_azure_trace(out / "ramp_hold.csv")
    hold = [r for r in tr.requests if 1200.0 <= r.arrival < 2400.0]
    assert len(hold) / 1200.0 == pytest.approx(22.0, rel=0.05)
    assert {(r.prompt_tokens, r.max_tokens) for r in tr.requests} == {(100, 50)}


def test_a_missing_public_trace_is_a_clear_error(tmp_path: Path) -> None:
    assert S.main(["--out", str(tmp_path), "--azure", str(tmp_path / "absent.csv")]) == 2
