"""Generated manifests (tests/unit/fuzzgen.py), offline: the CRD's schema and CEL rules as the
API server applies them (crdcheck), then the operator's models, its reconcile and rendering.

- a manifest with one forbidden value is refused, and an error names that field;
- a manifest the CRD admits either parses, or the models refuse it naming a spec field;
- one that parses reconciles without raising: either a plan whose objects render (every engine
  Deployment within maxReplicas), or no plan at all with InvalidSpec naming a spec field
  (nothing half-applied).

A sample here (make check); tests/e2e/test_fuzz.py runs 1000 against the real API server.
"""

from __future__ import annotations

import os

import pytest
from deepseek_operator.api import DeepSeekDeployment
from deepseek_operator.checks import ClusterFacts, GpuNode
from deepseek_operator.desired import render
from deepseek_operator.reconcile import Observed, condition, reconcile
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError

from .crdcheck import validate
from .fuzzgen import Case, cases

# cel-python raises the recursion limit during a test; Hypothesis warns it cannot reset it
pytestmark = pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")
EXAMPLES = int(os.environ.get("DEEPSEEK_FUZZ_EXAMPLES", "100"))
FACTS = ClusterFacts(
    gpu_nodes=tuple(
        GpuNode(f"n{i}", product, "a", 8)
        for i, product in enumerate(("NVIDIA-H100-80GB-HBM3", "NVIDIA-H200"))
    ),
    pvcs=frozenset({"deepseek-weights", "weights"}),
)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same sample every run: a failure reproduces
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _k8s(case: Case, defaulted: dict[str, object]) -> dict[str, object]:
    obj = dict(defaulted)
    obj["metadata"] = {"name": "fuzz", "namespace": "ns", "uid": "u", "generation": 1}
    return obj


@FUZZ
@given(cases(invalid=True))
def test_a_forbidden_value_is_refused_naming_its_field(case: Case) -> None:
    assert case.broken is not None
    if case.how == "an unknown field":
        return  # pruned or, with strict field validation, refused by the API server (e2e)
    _, errors = validate(case.manifest)
    assert any(e.startswith(case.broken.dotted) for e in errors), (case.how, errors)


@FUZZ
@given(cases(invalid=False))
def test_an_admitted_manifest_parses_and_reconciles_or_is_refused_naming_a_field(
    case: Case,
) -> None:
    defaulted, errors = validate(case.manifest)
    if errors:  # a cross-field CEL rule (e.g. minReplicas above maxReplicas)
        assert all(e.startswith("spec") for e in errors), errors
        return
    try:
        dsd = DeepSeekDeployment.from_k8s(_k8s(case, defaulted))
    except ValidationError as e:
        loc = [str(p) for p in e.errors()[0]["loc"]]
        assert loc[0] == "spec", e
        return
    out = reconcile(dsd, Observed(facts=FACTS), now=100.0)
    invalid = condition(out.status, "InvalidSpec")
    if out.plan is None:
        assert out.problems and all(p.field.startswith("spec.") for p in out.problems)
        assert invalid is not None and invalid.status == "True"
        assert out.problems[0].field in invalid.message
        return
    assert invalid is None or invalid.status == "False"
    objs = render(dsd, out.plan).objects
    engines = [o for o in objs if o["kind"] == "Deployment"]
    assert engines, "a valid spec renders its engine Deployment"
    for d in engines:
        assert 0 <= d["spec"]["replicas"] <= dsd.spec.scaling.max_replicas, d["spec"]["replicas"]
