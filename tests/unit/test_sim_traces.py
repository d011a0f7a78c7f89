"""Traces: the Azure/BurstGPT file formats, seeded synthetic generators, transforms."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.sim import traces as T

AZURE_ROWS = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:51.2224670,879,0
"""


def test_azure_trace_parses_times_and_lengths_and_carries_attribution(tmp_path: Path) -> None:
    f = tmp_path / "azure.csv"
    f.write_text(AZURE_ROWS)
    tr = T.load_trace(f)
    assert [r.prompt_tokens for r in tr.requests] == [374, 396, 879]
    assert [r.max_tokens for r in tr.requests] == [44, 109, 1]  # 0 output tokens -> 1
    assert [round(r.arrival, 4) for r in tr.requests] == [0.0, 4.3146, 4.5419]
    assert "CC BY 4.0" in tr.attribution and "Splitwise" in tr.attribution
    assert len({r.id for r in tr.requests}) == 3


def test_burstgpt_trace_filters_failed_rows(tmp_path: Path) -> None:
    f = tmp_path / "b.csv"
    f.write_text(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "5,ChatGPT,100,20,120,Conversation log\n"
        "7,GPT-4,50,0,50,API log\n"
        "9,GPT-4,70,30,100,API log\n"
    )
    tr = T.load_trace(f)
    assert [(r.arrival, r.prompt_tokens, r.max_tokens) for r in tr.requests] == [
        (0.0, 100, 20),
        (4.0, 70, 30),
    ]
    assert len(T.load_burstgpt_trace(f, model="GPT-4")) == 1
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError):
        T.load_trace(bad)


def test_synthetic_generators_are_deterministic_for_a_seed() -> None:
    makers: list[Callable[[int], T.Trace]] = [
        lambda s: T.bursty(5.0, 600.0, seed=s),
        lambda s: T.diurnal(5.0, 600.0, period_s=600.0, seed=s),
        lambda s: T.step(2.0, 8.0, 600.0, seed=s),
        lambda s: T.constant(5.0, 600.0, seed=s),
    ]
    for make in makers:
        a, b, c = make(1), make(1), make(2)
        key = [(r.arrival, r.prompt_tokens, r.max_tokens) for r in a.requests]
        assert key == [(r.arrival, r.prompt_tokens, r.max_tokens) for r in b.requests]
        assert key != [(r.arrival, r.prompt_tokens, r.max_tokens) for r in c.requests]
        assert all(x.arrival <= y.arrival for x, y in zip(a.requests, a.requests[1:], strict=False))


def test_synthetic_rates_follow_their_shapes() -> None:
    st = T.step(2.0, 10.0, 3000.0, seed=3)
    low = sum(1 for r in st.requests if r.arrival < 1000) / 1000
    high = sum(1 for r in st.requests if 1000 <= r.arrival < 2000) / 1000
    assert low == pytest.approx(2.0, rel=0.15) and high == pytest.approx(10.0, rel=0.1)
    di = T.diurnal(10.0, 3600.0, amplitude=0.8, period_s=3600.0, seed=3)
    series = dict(di.rate_series(300.0))
    assert series[1800.0] > 3 * series[0.0]  # trough at the start, peak in the middle
    bu = T.bursty(4.0, 7200.0, burst_rate=20.0, mean_gap_s=600.0, burst_s=120.0, seed=3)
    bursts = bu.meta["bursts"]
    assert isinstance(bursts, list) and bursts
    a, b = bursts[0]
    inside = sum(1 for r in bu.requests if a <= r.arrival < b) / (b - a)
    assert inside > 2.5 * 4.0


def test_lengths_follow_the_azure_fit() -> None:
    tr = T.constant(20.0, 1000.0, seed=5)
    prompts = sorted(r.prompt_tokens for r in tr.requests)
    outs = sorted(r.max_tokens for r in tr.requests)
    # medians of the lognormal fit: e^6.633 ~ 760 prompt tokens, e^5.019 ~ 151 output tokens
    assert prompts[len(prompts) // 2] == pytest.approx(760, rel=0.1)
    assert outs[len(outs) // 2] == pytest.approx(151, rel=0.1)
    assert min(prompts) >= 2 and max(outs) <= 1000


def test_transforms() -> None:
    tr = T.constant(10.0, 600.0, seed=1)
    fast = T.scale_time(tr, 0.1)
    assert fast.duration == pytest.approx(tr.duration * 0.1)
    assert len(fast) == len(tr)
    more = T.multiply_rate(tr, 2.5, seed=1)
    assert len(more) == pytest.approx(2.5 * len(tr), rel=0.05)
    assert len({r.id for r in more.requests}) == len(more)
    less = T.multiply_rate(tr, 0.5, seed=1)
    assert len(less) == pytest.approx(0.5 * len(tr), rel=0.1)
    w = T.window(tr, 100.0, 200.0)
    assert all(0.0 <= r.arrival < 100.0 for r in w.requests)
    assert w.attribution == tr.attribution


def test_redraw_lengths_keeps_the_arrivals_and_draws_the_new_workload() -> None:
    chat = T.constant(2.0, 600.0, seed=3)
    reasoning = T.LengthModel(
        prompt_mu=7.0, prompt_sigma=0.1, prompt_max=8000,
        output_mu=7.8, output_sigma=0.1, output_min=200, output_max=8000,
    )  # fmt: skip
    out = T.redraw_lengths(chat, reasoning, seed=1)
    assert [r.arrival for r in out.requests] == [r.arrival for r in chat.requests]
    assert out.attribution == chat.attribution and out.meta["lengths_redrawn"] is True
    outputs = sorted(r.max_tokens for r in out.requests)
    assert 2000 < outputs[len(outputs) // 2] < 3000  # e^7.8 ~ 2440
    assert (
        out.requests[0].max_tokens
        == T.redraw_lengths(chat, reasoning, seed=1).requests[0].max_tokens
    )
