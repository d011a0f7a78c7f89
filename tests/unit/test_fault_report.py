"""docs/reliability.md is generated from the fault matrix's rows (tests/e2e/faults.py)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.faults import FAULTS, Row, complete, read_rows, report


def test_report_lists_every_fault_with_its_outcome_or_not_run() -> None:
    rows = [
        Row("prometheus-down", "tests/e2e/test_faults.py::t", "held at 2", failed=0, sent=120),
        Row("operator-killed", "tests/e2e/test_operator.py::t", "converged"),
    ]
    text = report(rows, "2026-12-03 12:00 UTC")
    body = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(body) == 1 + len(FAULTS)  # the header and one line per fault
    assert "| held at 2 | 0 / 120 | `test_faults.py::t` |" in text
    assert "| converged | no load |" in text
    assert text.count("NOT RUN") == len(FAULTS) - 2
    assert not complete(rows)
    assert complete([Row(k, "t", "ok") for k in FAULTS])


def test_rows_round_trip_through_the_session_file(tmp_path: Path) -> None:
    path = tmp_path / "faults.jsonl"
    path.write_text('{"fault": "leader-killed", "test": "t", "observed": "took over"}\n')
    assert read_rows(path) == [Row("leader-killed", "t", "took over")]
    assert read_rows(tmp_path / "none.jsonl") == []
