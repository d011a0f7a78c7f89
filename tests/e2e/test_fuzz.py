"""Generated manifests (tests/unit/fuzzgen.py) against the real kube-apiserver and a running
operator (issue 19, bad input):

1. 1000 manifests, valid and invalid, created with server-side dry run and strict field
   validation: one with a forbidden value or an unknown field is refused with a message that
   names that field; the others are admitted exactly when the offline check (crdcheck: schema
   and CEL, as the unit tests use it) admits them, and a refusal names a spec field;
2. a sample of admitted manifests created for real, with the operator running: each one gets
   its status for its generation, and either its engine Deployment or InvalidSpec naming a spec
   field with no engine Deployment (nothing half-applied); the operator does not crash.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from deepseek_operator.api import GROUP, PLURAL, VERSION
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client import ApiException

from testbed.cluster import RegionInfo
from tests.e2e.conftest import PRIMARY
from tests.e2e.operator_process import OperatorProcess, install_crds, release_namespace
from tests.e2e.waiting import wait_for
from tests.unit.crdcheck import validate
from tests.unit.fuzzgen import Case, cases

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:The recursion limit will not be reset"),
]

DRY_RUN_CASES = int(os.environ.get("DEEPSEEK_FUZZ_E2E_EXAMPLES", "1000"))
REAL_CASES = 12


@pytest.fixture(scope="module")
def custom(api_clients: dict[str, client.ApiClient]) -> client.CustomObjectsApi:
    install_crds(api_clients[PRIMARY])
    return client.CustomObjectsApi(api_clients[PRIMARY])


@pytest.fixture
def fuzz_ns(core: client.CoreV1Api) -> Iterator[str]:
    """A namespace without the simulated fleet (no engine needs to start here)."""
    name = f"e2e-fuzz-{os.urandom(3).hex()}"
    labels = {"e2e": "true", "sim.deepseek.dev/fleet": "false"}
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    yield name
    release_namespace(core.api_client, name)
    # Without the simulated fleet nobody marks terminating engine pods drained and kwok keeps
    # them (and so the namespace): remove them once their owners are gone.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            core.read_namespace(name)
        except ApiException as e:
            if e.status == 404:
                return
            raise
        core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
        time.sleep(2)


def _refusal(e: ApiException) -> str:
    try:
        return str(json.loads(e.body or "{}").get("message", e.body))
    except ValueError:
        return str(e.body)


def test_generated_manifests_are_admitted_or_refused_naming_the_field(
    custom: client.CustomObjectsApi, fuzz_ns: str
) -> None:
    ns = fuzz_ns
    seen: Counter[str] = Counter()

    @settings(
        max_examples=DRY_RUN_CASES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.integers(0, 10**6).flatmap(lambda i: cases(name=f"fuzz-{i}")))
    def check(case: Case) -> None:
        body = {**case.manifest, "metadata": {**case.manifest["metadata"], "namespace": ns}}
        _, offline = validate(case.manifest)
        try:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, body, dry_run="All", field_validation="Strict"
            )
            refused = None
        except ApiException as e:
            assert e.status in (400, 422), (e.status, e.body)
            refused = _refusal(e)
        if case.broken is not None:
            seen[f"broken: {case.how}"] += 1
            assert refused is not None, f"{case.broken.dotted} ({case.how}) was admitted"
            assert case.broken.dotted in refused, (case.broken.dotted, case.how, refused)
            return
        seen["refused" if refused else "admitted"] += 1
        assert (refused is None) == (not offline), (offline, refused)
        if refused is not None:
            assert offline[0].split(":")[0] in refused, (offline, refused)

    check()
    print(dict(seen))
    assert sum(seen.values()) >= DRY_RUN_CASES
    assert seen["admitted"] and sum(v for k, v in seen.items() if k.startswith("broken")), seen


@pytest.fixture
def operator_ns(region: RegionInfo, fuzz_ns: str) -> Iterator[tuple[str, OperatorProcess]]:
    ns = fuzz_ns
    op = OperatorProcess(region.kubeconfig, namespaces=[ns], name=f"fuzz-{ns}").start()
    try:
        yield ns, op
    finally:
        op.stop()


def test_admitted_manifests_reconcile_or_say_which_field_with_nothing_applied(
    custom: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    operator_ns: tuple[str, OperatorProcess],
) -> None:
    ns, op = operator_ns
    admitted: list[dict[str, Any]] = []
    edit_sets: set[frozenset[tuple[str, ...]]] = set()

    @settings(
        max_examples=200,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.integers(0, 10**6).flatmap(lambda i: cases(invalid=False, name=f"real-{i}")))
    def collect(case: Case) -> None:
        # admitted ones with edits, each set of edited fields once (the first examples
        # Hypothesis draws are the plain examples/ manifests)
        fresh = case.manifest["metadata"]["name"] not in {d["metadata"]["name"] for d in admitted}
        wanted = fresh and len(admitted) < REAL_CASES
        new_edits = bool(case.edits) and frozenset(case.edits) not in edit_sets
        if wanted and new_edits and not validate(case.manifest)[1]:
            admitted.append(case.manifest)
            edit_sets.add(frozenset(case.edits))

    collect()
    assert len(admitted) == REAL_CASES
    for body in admitted:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, {**body, "metadata": {**body["metadata"], "namespace": ns}}
        )

    def settled() -> dict[str, dict[str, Any]] | None:
        listed: dict[str, Any] = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
        items: list[dict[str, Any]] = listed["items"]
        done = {
            o["metadata"]["name"]: o
            for o in items
            if (o.get("status") or {}).get("observedGeneration") == o["metadata"]["generation"]
        }
        return done if len(done) == REAL_CASES else None

    objs = wait_for(settled, timeout=180, what=f"status for all {REAL_CASES} resources") or {}
    engines = {
        (d.metadata.labels or {}).get("serving.deepseek.dev/deployment")
        for d in apps.list_namespaced_deployment(ns).items
        if d.metadata is not None
    }
    outcomes: Counter[str] = Counter()
    for name, o in objs.items():
        conds = {c["type"]: c for c in o["status"].get("conditions") or []}
        invalid = conds.get("InvalidSpec")
        if invalid and invalid["status"] == "True":
            outcomes["InvalidSpec"] += 1
            assert "spec." in invalid["message"], invalid
            assert name not in engines, f"{name}: InvalidSpec, yet its engine Deployment exists"
        else:
            outcomes["reconciled"] += 1
            assert name in engines, f"{name}: no engine Deployment and no InvalidSpec: {conds}"
    print(dict(outcomes))
    assert op.proc is not None and op.proc.poll() is None, op.log()
    assert "Traceback" not in op.log_path.read_text(errors="replace"), op.log()
