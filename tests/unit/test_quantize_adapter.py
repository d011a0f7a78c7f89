"""The handler's glue between a rollout and the quantization policy (handlers._quantize): a
switch whose rollout was rolled back is recognised from status.rollout (its failed template
hash is the hash of the pods the policy's target renders)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from deepseek_operator import handlers
from deepseek_operator import quantization as Q
from deepseek_operator.api import Colour, DeepSeekDeployment
from deepseek_operator.desired import template_hash
from deepseek_operator.reconcile import Observed

ROOT = Path(__file__).resolve().parents[2]


def r1(rollout: dict[str, Any] | None, target: str = "fp8-kv8") -> DeepSeekDeployment:
    doc = yaml.safe_load((ROOT / "examples" / "deepseek-r1.yaml").read_text())
    doc["metadata"] = {"name": "r1", "namespace": "ns", "uid": "u", "generation": 3}
    doc["spec"]["scaling"]["enabled"] = False  # the policy runs at every reconcile
    doc["spec"]["quantization"]["policy"] = {"automatic": True}
    status: dict[str, Any] = {
        "activeColour": "blue",
        "mode": "fp8",
        "quantization": {"automatic": True, "served": "fp8", "target": target},
    }
    if rollout is not None:
        status["rollout"] = rollout
    doc["status"] = status
    return DeepSeekDeployment.from_k8s(doc)


def hash_of(mode: str) -> str:
    d = r1(None)
    return template_hash(d.name, handlers._with_mode(d, mode).spec)


@pytest.mark.parametrize(
    ("phase", "failed", "rolled_back"),
    [
        ("RolledBack", "fp8-kv8", True),  # the switch's own version failed
        ("Aborted", "fp8-kv8", True),
        ("RolledBack", "int4", False),  # an older failure, not this switch
        ("Progressing", None, False),  # still moving: hold
    ],
)
def test_a_rolled_back_switch_is_recognised(
    phase: str, failed: str | None, rolled_back: bool
) -> None:
    rollout: dict[str, Any] = {"phase": phase, "activeColour": "blue"}
    if failed is not None:
        rollout["failedTemplateHash"] = hash_of(failed)
    d = r1(rollout)
    out = handlers._quantize(d, Observed(modes={Colour.BLUE: "fp8"}), None, None, 100.0)
    assert out is not None
    if rolled_back:
        assert (out.reason, out.target, out.switched) == (Q.SWITCH_ROLLED_BACK, "fp8", True)
    else:
        assert out.reason != Q.SWITCH_ROLLED_BACK and out.target == "fp8-kv8"
