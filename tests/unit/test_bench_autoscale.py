"""The autoscaling benchmark's per-minute misses (the plot's bottom panel), its warm-ups, the
results kept from an earlier run (`--merge`), the admission gate (`--admission`) and ours'
learned admission limit (`--ours-admission`)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest

import bench.autoscale as A
from bench.autoscale import (
    DEFAULT_AZURE,
    WARMUP_LEAD_S,
    Config,
    _admission,
    _section,
    admission_setup,
    admission_words,
    build_trace,
    floor_of,
    has_frontier,
    judge,
    kept_sources,
    kept_with,
    limit_words,
    main,
    margin_of,
    merged_cold_starts,
    missed_by_minute,
    ours_admission_setup,
    plot_frontier,
    plotted_words,
    shown,
    simulate,
    trace_warmup,
    with_kept,
)
from bench.fleet import LIMIT_LAG_S, Fleet
from testbed.sim import traces as T
from testbed.sim.engine import SimRequest

MISSED_TABLE = [
    # (case, (arrival, met) outcomes, times, expected shares)
    ("all met", [(10.0, True), (20.0, True)], [60.0], [0.0]),
    ("one of four missed", [(1.0, True), (2.0, False), (3.0, True), (4.0, True)], [60.0], [0.25]),
    # the minute before each time: [0, 60) and [60, 120); an arrival at 60 is the second's
    ("each minute its own", [(30.0, False), (60.0, True), (90.0, True)], [60.0, 120.0], [1.0, 0.0]),
    ("unsorted outcomes", [(90.0, False), (30.0, True)], [60.0, 120.0], [0.0, 1.0]),
]


@pytest.mark.parametrize(
    "case,outcomes,at,expected", MISSED_TABLE, ids=[c[0] for c in MISSED_TABLE]
)
def test_missed_by_minute(
    case: str, outcomes: list[tuple[float, bool]], at: list[float], expected: list[float]
) -> None:
    assert missed_by_minute(outcomes, at) == pytest.approx(expected)


def test_a_minute_without_arrivals_is_not_a_share() -> None:
    assert math.isnan(missed_by_minute([(10.0, False)], [200.0])[0])


WARMUP_TABLE = [
    # (trace, its period in durations (None: no period), expected warm-up in seconds), the
    # duration 120 s and the warm-up given 240 s
    ("bursty", None, 240.0),  # --warmup as given
    ("step", None, 240.0),
    # a period and the lead before it, the minutes an operator reads no rates yet
    ("diurnal", 1.0, 120.0 + WARMUP_LEAD_S),
    ("diurnal_2h", 2.0, 240.0 + WARMUP_LEAD_S),
]


@pytest.mark.parametrize("name,period,expected", WARMUP_TABLE, ids=[c[0] for c in WARMUP_TABLE])
def test_a_periodic_load_is_warmed_on_a_whole_period(
    name: str, period: float | None, expected: float
) -> None:
    d = 120.0
    tr = build_trace(Config(duration_s=d, warmup_s=2 * d), name, {})
    assert trace_warmup(tr) == expected
    assert tr.meta.get("period_s") == (None if period is None else period * d)


def test_a_warm_up_longer_than_the_period_and_its_lead_is_as_given() -> None:
    tr = build_trace(Config(duration_s=120.0, warmup_s=1000.0), "diurnal", {})
    assert trace_warmup(tr) == 1000.0


def test_a_short_warm_up_still_covers_the_period() -> None:
    """An operator that ran yesterday has seen the whole day: a shorter warm-up is preceded by
    the rest of the period, drawn apart, so that what follows (the warm-up given and the
    measured part, from the period's trough) is the load the generator draws for that warm-up."""
    d, warmup = 600.0, 60.0
    tr = build_trace(Config(duration_s=d, warmup_s=warmup), "diurnal_2h", {})
    w = trace_warmup(tr)
    assert w == 2 * d + WARMUP_LEAD_S  # the period and the lead before it
    alone = T.diurnal(
        12.0, warmup + 4 * d, amplitude=0.7, period_s=2 * d,
        phase=-math.pi / 2 - 2 * math.pi * warmup / (2 * d), seed=1,
    )  # fmt: skip
    tail = [(round(r.arrival - (w - warmup), 6), r.prompt_tokens, r.max_tokens)
            for r in tr.requests if r.arrival >= w - warmup]  # fmt: skip
    assert tail == [(round(r.arrival, 6), r.prompt_tokens, r.max_tokens) for r in alone.requests]
    assert any(r.arrival < w - warmup for r in tr.requests)  # the day before is there
    measured = [t for t, _, _ in tail if t >= warmup]
    first, middle = (sum(1 for t in measured if lo <= t < lo + 60.0) for lo in (warmup, warmup + d))
    assert first < middle / 3  # trough first, peak half a period later
    day = build_trace(Config(warmup_s=60.0, day_s=1200.0, day_mean_rate=2.0), "day_long", {})
    assert trace_warmup(day) == 1200.0 + WARMUP_LEAD_S


def test_a_trace_beside_the_repository_is_recorded_relative_to_it() -> None:
    assert shown(str(DEFAULT_AZURE)) == "../shared/traces/AzureLLMInferenceTrace_conv.csv"
    assert shown("/elsewhere/trace.csv") == "/elsewhere/trace.csv"


@pytest.mark.parametrize(
    "name,margin",
    [("margin2", 2.0), ("margin1.5", 1.5), ("margin1", 1.0), ("margin0.5", None),
     ("marginx", None), ("reactive", None), ("ours", None)],
)  # fmt: skip
def test_a_margin_reference_is_named_by_its_margin(name: str, margin: float | None) -> None:
    assert margin_of(name) == margin


@pytest.mark.parametrize(
    "name,floor",
    [("floor5", 5), ("floor1", 1), ("floor0", None), ("floorx", None), ("floor1.5", None),
     ("margin2", None), ("ours", None)],
)  # fmt: skip
def test_a_floor_reference_is_named_by_its_floor(name: str, floor: int | None) -> None:
    assert floor_of(name) == floor


def test_the_frontier_plot_draws_the_floors_beside_the_policies(tmp_path: Path) -> None:
    per = {
        "ours": _cell(0.90, 16.2),
        "static_peak": _cell(1.0, 24.0),
        "oracle": _cell(1.0, 16.3),
        "floor2": _cell(0.91, 16.0),
        "floor5": _cell(0.99, 21.5),
    }
    plot_frontier("bursty", per, 90.0, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _row(slo: float, gpu_h: float) -> dict[str, float]:
    """A result row with every column summary.md prints."""
    return {
        **_cell(slo, gpu_h), "ttft_slo_attainment": slo, "tpot_slo_attainment": slo,
        "mean_replicas": gpu_h / 4, "scale_events": 0, "ttft_p99_s": 1.0, "tpot_p99_s": 0.05,
        "failed": 0,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("policies", "drawn"),
    [
        (("ours", "static_peak", "oracle", "floor4"), True),
        (("ours", "static_peak", "oracle"), False),  # no floor ran
        (("ours", "oracle", "floor4"), False),  # no static peak: the bar has no bound
    ],
)
def test_a_trace_with_floors_gets_its_frontier_in_the_summary(
    policies: tuple[str, ...], drawn: bool
) -> None:
    per = {pn: _row(0.99, 18.0) for pn in policies}
    assert has_frontier(per) is drawn
    doc = {
        "setup": {
            "traces": {"bursty": {"requests": 1, "duration_s": 1800.0, "mean_rate_rps": 1.0}},
            "replica_capacity_rps": {"bursty": 4.8},
        }
    }
    text = "\n".join(_section(doc, judge({"bursty": per}), "90", primary=False))
    assert ("![bursty: frontier](frontier_bursty_cs90.png)" in text) is drawn


def _cell(slo: float, gpu_h: float) -> dict[str, float]:
    return {"slo_attainment": slo, "gpu_hours": gpu_h}


def _per(ours: float) -> dict[str, dict[str, dict[str, float]]]:
    return {
        "step": {
            "ours": _cell(0.9, ours),
            "hpa": _cell(1.0, 60.0),
            "static_peak": _cell(1.0, 24.0),
            "oracle": _cell(1.0, 14.0),
        }
    }


def test_merge_keeps_the_cold_starts_not_run_again() -> None:
    earlier = {
        "setup": {"cold_start_s": 344.0},
        **judge(_per(17.0)),
        "cold_starts": {"90": judge(_per(16.0)), "900": judge(_per(18.0))},
    }
    now = {"90": _per(15.0)}
    kept = merged_cold_starts(now, earlier)
    assert sorted(kept) == ["344", "900"]  # the 90 s column is this run's
    both = kept_with(now, kept)
    assert list(both) == ["90", "344", "900"]
    assert both["90"]["step"]["ours"]["gpu_hours"] == 15.0
    assert both["900"]["step"]["ours"]["gpu_hours"] == 18.0
    # judged again with the rest: the gap closed of a kept column is the same as before
    assert judge(both["344"])["acceptance"]["median_trace"]["gap_closed"] == 0.7


def _two(ours: float) -> dict[str, dict[str, dict[str, float]]]:
    """Two traces, `ours` on both."""
    return {"diurnal": _per(ours)["step"], "step": _per(ours)["step"]}


def test_merge_keeps_the_traces_not_run_again_at_a_cold_start_it_ran() -> None:
    earlier = {
        "setup": {"cold_start_s": 344.0, "command": "full", "runtime_s": 100.0},
        **judge(_two(17.0)),
        "cold_starts": {"90": judge(_two(16.0))},
    }
    now = {"344": {"diurnal": _per(15.0)["step"]}, "90": {"diurnal": _per(14.0)["step"]}}
    kept = merged_cold_starts(now, earlier)
    assert {k: sorted(v) for k, v in kept.items()} == {"344": ["step"], "90": ["step"]}
    both = kept_with(now, kept)
    assert list(both) == ["90", "344"]
    assert list(both["344"]) == ["diurnal", "step"]  # the tables' order, not the merge's
    assert both["344"]["diurnal"]["ours"]["gpu_hours"] == 15.0  # this run's
    assert both["344"]["step"]["ours"]["gpu_hours"] == 17.0  # kept
    assert both["90"]["step"]["ours"]["gpu_hours"] == 16.0


SOURCES_TABLE = [
    # (case, earlier run's kept, expected sources of the kept 344 s step and 90 s step)
    (
        "kept from the earlier run itself",
        None,
        {("full", 100.0): {"344": ["step"], "90": ["step"]}},
    ),
    (
        "the earlier run had kept a cold start whole (the older form)",
        {"cold_starts_s": [90.0], "command": "older", "runtime_s": 50.0},
        {("full", 100.0): {"344": ["step"]}, ("older", 50.0): {"90": ["step"]}},
    ),
    (
        "the earlier run had kept single traces",
        {"sources": [{"command": "older", "runtime_s": 50.0, "traces": {"344": ["step"]}}]},
        {("older", 50.0): {"344": ["step"]}, ("full", 100.0): {"90": ["step"]}},
    ),
]


@pytest.mark.parametrize("case,prior,expected", SOURCES_TABLE, ids=[c[0] for c in SOURCES_TABLE])
def test_kept_results_name_the_run_that_made_them(
    case: str, prior: dict[str, Any] | None, expected: dict[tuple[str, float], Any]
) -> None:
    earlier = {
        "setup": {"cold_start_s": 344.0, "command": "full", "runtime_s": 100.0, "kept": prior},
        **judge(_two(17.0)),
        "cold_starts": {"90": judge(_two(16.0))},
    }
    now = {"344": {"diurnal": _per(15.0)["step"]}, "90": {"diurnal": _per(14.0)["step"]}}
    sources = kept_sources(earlier, merged_cold_starts(now, earlier))
    assert {(s["command"], s["runtime_s"]): s["traces"] for s in sources} == expected


def test_a_merged_report_describes_the_kept_traces_too() -> None:
    """summary.md describes every trace in the tables: the kept ones from the earlier setup."""
    earlier = {
        "setup": {
            "cold_start_s": 344.0,
            "command": "full",
            "runtime_s": 100.0,
            "traces": {"diurnal": {"requests": 1}, "step": {"requests": 2}},
            "replica_capacity_rps": {"diurnal": 5.0, "step": 4.0},
        },
        **judge(_two(17.0)),
        "attribution": ["the step's source"],
    }
    now = {"344": {"diurnal": _per(15.0)["step"]}}
    kept = merged_cold_starts(now, earlier)
    doc = {
        "setup": {
            "command": "only diurnal",
            "traces": {"diurnal": {"requests": 3}},
            "replica_capacity_rps": {"diurnal": 5.1},
        },
        "attribution": [],
    }
    out = with_kept(doc, earlier, kept)
    assert out["setup"]["traces"] == {"diurnal": {"requests": 3}, "step": {"requests": 2}}
    assert out["setup"]["replica_capacity_rps"] == {"diurnal": 5.1, "step": 4.0}
    assert out["setup"]["kept"]["sources"] == [
        {"command": "full", "runtime_s": 100.0, "traces": {"344": ["step"]}}
    ]
    assert out["attribution"] == ["the step's source"]


# --- --admission: the engine pod's admission gate ------------------------------------------
def _one_replica(deadline: float | None, max_num_seqs: int) -> list[bool]:
    """Outcomes (ok) of three requests at once on one warm 7B replica whose gate lets
    `max_num_seqs` of them in: the first holds its place for its 2000 tokens."""
    cfg = Config(preset_name="distill-7b-bf16-1xh100", admission=(max_num_seqs, deadline or 1.0))
    fleet = Fleet(cfg.serving_preset, 45.0, gate_wait_s=deadline)
    fleet.add_pod(0.0, warm=True)
    for i, out in enumerate((2000, 20, 20)):
        fleet.arrive(SimRequest(f"r{i}", 100, out, 0.0))
    for t in range(1, 200):
        fleet.advance(float(t))
    return [o.ok for o in sorted(fleet.outcomes, key=lambda o: o.ok, reverse=True)]


def test_without_a_deadline_the_queued_requests_wait_their_turn() -> None:
    assert _one_replica(None, 1) == [True, True, True]


def test_the_gate_sheds_the_requests_that_found_no_place_in_time() -> None:
    # the two behind the long one get no place within 2 s: answered 503, failed
    assert _one_replica(2.0, 1) == [True, False, False]


def test_the_gate_sheds_a_started_stream_without_its_first_token() -> None:
    """A request the engine has scheduled whose first token is later than the wait (a
    5000-token prompt on a 7B replica whose gate waits 0.01 s) is shed: the gate holds a
    stream's head until its first token; a wait that leaves room serves it."""
    outcomes = []
    for wait in (0.01, 2.0):
        cfg = Config(preset_name="distill-7b-bf16-1xh100", admission=(8, wait))
        fleet = Fleet(cfg.serving_preset, 45.0, gate_wait_s=wait)
        fleet.add_pod(0.0, warm=True)
        fleet.arrive(SimRequest("long-prompt", 5000, 10, 0.0))
        for t in range(1, 60):
            fleet.advance(t / 10)
        outcomes.append([o.ok for o in fleet.outcomes])
    assert outcomes == [[False], [True]]


@pytest.mark.parametrize(
    ("fixed_gate", "late", "first"),
    [
        (True, 0.9, "r1"),  # r1 waited 0.8 s of 2 when r2 came: arrival order
        (True, 1.5, "r2"),  # r1 waited 1.4 s, past half its wait: the newest first
        (False, 1.5, "r1"),  # no limit at the gate: vLLM's own queue, arrival order
    ],
)
def test_the_gate_serves_the_newest_once_the_oldest_waited_half(
    fixed_gate: bool, late: float, first: str
) -> None:
    """One warm 7B replica whose gate lets one request in and waits 2 s: r0 holds the place
    until 1.77 s, r1 waits from 0.1 s, r2 from `late`."""
    cfg = Config(preset_name="distill-7b-bf16-1xh100", admission=(1, 2.0))
    fleet = Fleet(cfg.serving_preset, 45.0, gate_wait_s=2.0, fixed_gate=fixed_gate)
    pod = fleet.add_pod(0.0, warm=True)
    arrivals = {"r0": 0.0, "r1": 0.1, "r2": late}
    for rid, at in arrivals.items():
        fleet.arrive(SimRequest(rid, 100, 270 if rid == "r0" else 20, at))
    assert pod.engine.oldest_wait(late) == pytest.approx(late - 0.1)
    for t in range(1, 30):
        fleet.advance(t / 5)
    firsts = {o.arrival: o.arrival + (o.ttft or math.inf) for o in fleet.outcomes}
    assert all(o.ok for o in fleet.outcomes) and len(firsts) == 3
    served = sorted(["r1", "r2"], key=lambda rid: firsts[arrivals[rid]])
    assert served[0] == first


def test_a_batch_with_room_needs_no_shedding() -> None:
    assert _one_replica(2.0, 8) == [True, True, True]


@pytest.mark.parametrize(
    "text,expected",
    [("128,2", (128, 2.0)), ("64,1.5", (64, 1.5))],
)
def test_admission_is_read_as_requests_and_seconds(text: str, expected: tuple[int, float]) -> None:
    assert _admission(text) == expected


@pytest.mark.parametrize("text", ["128", "0,2", "128,0", "a,b"])
def test_a_bad_admission_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _admission(text)


def test_the_admission_gate_is_recorded_and_said() -> None:
    assert admission_setup(None) is None and admission_words(None) == []
    setup = admission_setup((128, 2.0))
    assert setup == {"max_running": 128, "max_wait_s": 2.0}
    (line,) = admission_words(setup)
    assert "spec.engine.admission" in line and "maxRunning 128" in line and "2)" in line
    assert Config(admission=(128, 2.0)).serving_preset.max_num_seqs == 128
    assert Config().serving_preset == Config().preset


def test_merge_keeps_the_policies_not_run_again_on_a_trace_it_ran() -> None:
    """`--policies ours --merge ...` re-runs ours alone: the earlier static_peak, oracle and
    HPA of the same trace are kept, and ours is judged against them."""
    earlier = {"setup": {"cold_start_s": 344.0}, **judge(_per(17.0))}
    now = {"344": {"step": {"ours": _cell(0.95, 16.0)}}}
    kept = merged_cold_starts(now, earlier)
    assert {k: {tn: sorted(per) for tn, per in v.items()} for k, v in kept.items()} == {
        "344": {"step": ["hpa", "oracle", "static_peak"]}
    }
    both = kept_with(now, kept)
    assert list(both["344"]["step"]) == ["ours", "hpa", "static_peak", "oracle"]
    assert both["344"]["step"]["ours"]["gpu_hours"] == 16.0  # this run's
    judged = judge(both["344"])
    assert judged["traces"]["step"]["ours"]["gap_closed"] == pytest.approx(0.8)  # (24-16)/10
    # the acceptance judged against the kept rows: neither dominates at 16 GPU-hours
    assert judged["acceptance"]["per_trace"]["step"] == {
        "dominated_by_static_peak": False,
        "dominated_by_hpa": False,
        "gpu_hours_le_static_peak": True,
    }
    # a policy run on no trace here and kept nowhere is not invented
    assert merged_cold_starts({"344": {"step": _per(15.0)["step"]}}, earlier) == {}


# --- ours' learned admission limit ------------------------------------------------------------
def _gated(limit_at: float | None, arrive_at: float) -> tuple[list[bool], int]:
    """Three requests at `arrive_at` on one warm 7B replica that sheds at 2 s, whose learned
    limit of 1 was published at `limit_at` (None: never): the outcomes (ok first) and the
    batch cap of a pod created after them."""
    fleet = Fleet(Config(preset_name="distill-7b-bf16-1xh100").preset, 45.0, gate_wait_s=2.0)
    fleet.add_pod(0.0, warm=True)
    if limit_at is not None:
        fleet.publish_limit(limit_at, 1)
    for i, out in enumerate((2000, 20, 20)):
        fleet.arrive(SimRequest(f"r{i}", 100, out, arrive_at))
    for t in range(int(arrive_at) + 1, int(arrive_at) + 200):
        fleet.advance(float(t))
    later = fleet.add_pod(arrive_at + 200.0)
    return [o.ok for o in sorted(fleet.outcomes, key=lambda o: o.ok, reverse=True)], (
        later.engine._max_seqs
    )


def test_a_published_limit_holds_the_pods_once_it_reaches_them() -> None:
    batch = Config(preset_name="distill-7b-bf16-1xh100").preset.max_num_seqs
    # no limit: the preset's batch takes all three
    assert _gated(None, 10.0) == ([True, True, True], batch)
    # published 10 s before: not at the pods yet (LIMIT_LAG_S), all three run
    assert _gated(0.0, 10.0)[0] == [True, True, True]
    # once it is there, one runs and the two behind it are shed after 2 s; a pod created
    # later runs it too
    assert _gated(0.0, LIMIT_LAG_S) == ([True, False, False], 1)


def test_the_limit_in_force_is_the_last_one_that_reached_the_pods() -> None:
    p = Config(preset_name="distill-7b-bf16-1xh100").preset
    fleet = Fleet(p, 45.0)
    pod = fleet.add_pod(0.0, warm=True)
    fleet.publish_limit(0.0, 8)
    fleet.publish_limit(30.0, 4000)  # above vLLM's max_num_seqs: vLLM's cap holds
    assert fleet.limit_at(LIMIT_LAG_S - 1) is None
    fleet.advance(LIMIT_LAG_S - 1)
    assert pod.engine._max_seqs == p.max_num_seqs  # None: the preset's batch
    fleet.advance(LIMIT_LAG_S)
    assert fleet.limit_at(LIMIT_LAG_S) == 8 and pod.engine._max_seqs == 8
    fleet.advance(30.0 + LIMIT_LAG_S)
    assert fleet.limit_at(30.0 + LIMIT_LAG_S) == 4000 and pod.engine._max_seqs == p.max_num_seqs


def _short_ours(monkeypatch: pytest.MonkeyPatch, **cfg: Any) -> tuple[dict[str, Any], Fleet]:
    """Ours on 5 minutes of the bursty trace after a 10-minute warm-up (capacity given, not
    calibrated), and the fleet it ran."""
    fleets: list[Fleet] = []

    def fleet(*args: Any, **kwargs: Any) -> Fleet:
        fleets.append(Fleet(*args, **kwargs))
        return fleets[-1]

    monkeypatch.setattr(A, "Fleet", fleet)
    c = Config(duration_s=300.0, warmup_s=600.0, **cfg)
    res, _ = simulate(c, build_trace(c, "bursty", {}), "ours", 4.7)
    return res, fleets[0]


def test_ours_publishes_the_learned_limit_and_its_pods_run_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    res, fleet = _short_ours(monkeypatch)
    spec = Config().scaling_spec()
    assert fleet.gate_wait_s == spec.slo.ttft_p99_seconds  # maxWaitSeconds' default
    last = res["admission_limit_last"]
    assert isinstance(last, int) and 1 <= last < Config().preset.max_num_seqs
    # learned within the warm-up here: in force when the measured part starts
    assert res["admission_limit_at_start"] == last
    assert all(0.0 <= t <= 300.0 for t, _ in res["admission_limits"])
    assert {p.engine._max_seqs for p in fleet.pods if p.gone is None} == {last}
    assert f"{last} per pod in force at the start" in limit_words(res)


def test_ours_without_the_learned_limit_runs_plain_vllm_pods(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for cfg in ({"ours_admission": "off"}, {"admission": (64, 3.0)}):
        res, fleet = _short_ours(monkeypatch, **cfg)
        assert "admission_limits" not in res and "admission_limit_last" not in res, cfg
        assert not fleet._limits, cfg
        if "admission" in cfg:  # the fixed gate instead, as every policy's
            assert fleet.gate_wait_s == 3.0
            assert {p.engine._max_seqs for p in fleet.pods} == {64}
        else:
            assert fleet.gate_wait_s is None
            assert {p.engine._max_seqs for p in fleet.pods} == {Config().preset.max_num_seqs}


def test_ours_admission_is_recorded_and_said() -> None:
    assert ours_admission_setup(Config()) == "learned"
    assert ours_admission_setup(Config(ours_admission="off")) == "off"
    assert ours_admission_setup(Config(admission=(128, 2.0))) == "off"  # the fixed gate
    assert admission_words(None, "off") == []
    (line,) = admission_words(None, "learned")
    assert "learned" in line and f"{LIMIT_LAG_S:.0f}s" in line and "plain vLLM" in line


def _merge_main(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: dict[str, Any], argv: list[str]
) -> list[dict[str, Any]]:
    """main(argv) merging an earlier run with ours and the HPA on the step trace at the
    preset's cold start (344 s) and `setup`: the earlier runs `run` was called to merge."""
    merged: list[dict[str, Any]] = []
    monkeypatch.setattr(A, "run", lambda *a, **kw: merged.append(kw["merge"]))
    path = tmp_path / "autoscale.json"
    earlier = {"setup": {"cold_start_s": 344.0, "admission": None, **setup}, **judge(_per(17.0))}
    path.write_text(json.dumps(earlier))
    main(["--merge", str(path), "--out", str(tmp_path), "--cold-start", "preset", *argv])
    return merged


@pytest.mark.parametrize(
    "setup,argv",
    [
        ({}, []),  # an earlier JSON without the key ran without it
        ({}, ["--only", "bursty"]),  # ours on step would be kept
        ({"ours_admission": "learned"}, ["--ours-admission", "off", "--only", "bursty"]),
    ],
)
def test_merge_refuses_to_keep_ours_run_with_another_ours_admission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: dict[str, Any], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        _merge_main(tmp_path, monkeypatch, setup, ["--only", "step", "--policies", "hpa", *argv])
    assert e.value.code == 2


def test_merge_keeps_the_other_policies_when_ours_is_run_again_with_the_learned_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other policies run plain vLLM pods with or without ours' gate: re-running ours
    where the earlier run had it keeps them."""
    argv = ["--only", "step", "--policies", "ours"]
    assert len(_merge_main(tmp_path, monkeypatch, {}, argv)) == 1


@pytest.mark.parametrize(
    ("slo", "gpu_h", "holds"),
    [
        (0.995, 17.0, True),  # 0.7 of the gap at 0.995
        (0.989, 17.0, False),  # the gap, but attainment under 0.99
        (0.995, 20.0, False),  # 0.4 of the gap
    ],
)
def test_the_median_trace_is_judged_against_the_bar(slo: float, gpu_h: float, holds: bool) -> None:
    per = _per(gpu_h)
    per["step"]["ours"]["slo_attainment"] = slo
    mt = judge(per)["acceptance"]["median_trace"]
    assert mt["holds"] is holds


def test_the_summary_says_which_policies_a_merged_run_plots() -> None:
    assert plotted_words({"policies_run": ["ours"]}) == []  # a whole run: every policy plotted
    words = plotted_words({"policies_run": ["ours"], "kept": {"sources": []}})
    assert len(words) == 1 and "(ours)" in words[0] and "not their time series" in words[0]


@pytest.mark.parametrize(("argv", "floor"), [([], 1), (["--min-replicas", "4"], 4)])
def test_min_replicas_is_ours_floor_and_the_spec_it_runs(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], floor: int
) -> None:
    cfgs: list[Config] = []
    monkeypatch.setattr(A, "run", lambda cfg, *a, **kw: cfgs.append(cfg))
    main(["--azure", "", "--only", "bursty", "--policies", "ours", *argv])
    assert cfgs[0].min_replicas == floor
    assert cfgs[0].scaling_spec().min_replicas == floor
