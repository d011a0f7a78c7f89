"""Unschedulable engine pods counted from pod bodies (the pod watch's, or a list's)."""

from __future__ import annotations

from typing import Any

import pytest
from deepseek_operator import labels as L
from deepseek_operator.adapters.kube import unschedulable_pods


def pod(colour: str, *conditions: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"labels": {L.COLOUR: colour}},
        "status": {"conditions": list(conditions)},
    }


UNSCHEDULABLE = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
}


@pytest.mark.parametrize(
    ("pods", "count", "by_colour"),
    [
        ([], 0, {}),
        ([pod("blue", {"type": "PodScheduled", "status": "True"})], 0, {}),
        ([pod("blue", UNSCHEDULABLE)], 1, {"blue": 1}),
        ([pod("blue", UNSCHEDULABLE), pod("green", UNSCHEDULABLE)], 2, {"blue": 1, "green": 1}),
        # scheduling gated, not refused: not counted
        ([pod("blue", {**UNSCHEDULABLE, "reason": "SchedulingGated"})], 0, {}),
        ([{"metadata": {}, "status": None}], 0, {}),  # a pod just created
    ],
)
def test_unschedulable_pods(
    pods: list[dict[str, Any]], count: int, by_colour: dict[str, int]
) -> None:
    n, message, colours = unschedulable_pods(pods)
    assert (n, colours) == (count, by_colour)
    assert (message == UNSCHEDULABLE["message"]) is (count > 0)
