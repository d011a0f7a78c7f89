"""Status is written as a JSON merge patch: only what changed, with deletions as null."""

from __future__ import annotations

from typing import Any

import pytest
from deepseek_operator.patches import merge_patch

CASES = [
    ({}, {}, {}),
    ({"a": 1}, {"a": 1}, {}),
    ({"a": 1}, {"a": 2}, {"a": 2}),
    ({"a": 1, "b": 2}, {"a": 1}, {"b": None}),
    (
        {"r": {"phase": "Analyzing", "preview": "green"}},
        {"r": {"phase": "Completed"}},
        {"r": {"phase": "Completed", "preview": None}},
    ),
    ({"c": [1, 2]}, {"c": [1, 3]}, {"c": [1, 3]}),
    ({"x": {"y": 1}}, {"x": 5}, {"x": 5}),
]


@pytest.mark.parametrize(("old", "new", "patch"), CASES)
def test_merge_patch(old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any]) -> None:
    assert merge_patch(old, new) == patch


def _apply(doc: Any, patch: Any) -> Any:
    """RFC 7386 application, to prove the round trip."""
    if not isinstance(patch, dict):
        return patch
    out = dict(doc) if isinstance(doc, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _apply(out.get(k), v)
    return out


@pytest.mark.parametrize(("old", "new", "patch"), CASES)
def test_round_trip(old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any]) -> None:
    assert _apply(old, merge_patch(old, new)) == new
