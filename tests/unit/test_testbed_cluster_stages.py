"""kwok Stages of the local cluster: which stage moves a pod in which state.

The selectors are evaluated with kwok's semantics by stages.matches(); every pod state below must
match exactly the stage named (or none), because kwok picks at random among matching stages."""

from __future__ import annotations

from typing import Any

import pytest
from deepseek_operator import labels

from testbed.cluster import stages as S
from testbed.labels import ROUTER_COMPONENT, SIM_DRAINED, SIM_ENGINE_READY, SIM_EXIT_CODE

ENGINE = {labels.COMPONENT: labels.ENGINE_COMPONENT, labels.DEPLOYMENT: "r1"}
ROUTER = {labels.COMPONENT: ROUTER_COMPONENT, labels.DEPLOYMENT: "r1"}


def pod(
    *,
    lbls: dict[str, str] | None = None,
    ann: dict[str, str] | None = None,
    ip: bool = True,
    ready: bool | None = False,
    deleting: bool = False,
    finalizers: bool = False,
    owner: str = "ReplicaSet",
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "p",
        "labels": lbls or {},
        "annotations": ann or {},
        "ownerReferences": [{"kind": owner}],
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-11-24T00:00:00Z"
    if finalizers:
        meta["finalizers"] = ["example.com/hold"]
    status: dict[str, Any] = {}
    if ip:
        status = {"phase": "Running", "podIP": "10.16.1.2", "startTime": "2026-11-24T00:00:00Z"}
        if ready is not None:
            status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": meta, "spec": {"nodeName": "n"}, "status": status}


FLEET = S.pod_stages(start_delay_s=3, fleet=True)
NO_FLEET = S.pod_stages(start_delay_s=3, fleet=False)


@pytest.mark.parametrize(
    ("desc", "p", "want"),
    [
        ("scheduled pod without IP starts", pod(ip=False), ["pod-start"]),
        ("scheduled engine pod starts too", pod(lbls=ENGINE, ip=False), ["pod-start"]),
        ("ordinary started pod becomes Ready after the delay", pod(), ["pod-ready"]),
        ("ordinary Ready pod stays", pod(ready=True), ["pod-steady"]),
        ("engine pod waits for the fleet", pod(lbls=ENGINE), ["pod-steady"]),
        (
            "engine pod the fleet serves becomes Ready",
            pod(lbls=ENGINE, ann={SIM_ENGINE_READY: "true"}),
            ["engine-ready"],
        ),
        (
            "engine pod whose engine went away becomes unready",
            pod(lbls=ENGINE, ready=True),
            ["engine-unready"],
        ),
        (
            "engine pod opted out of the fleet behaves like an ordinary pod",
            pod(lbls=ENGINE, ann={S.FLEET_ANNOTATION: "false"}),
            ["pod-ready"],
        ),
        ("router pod waits for the fleet too", pod(lbls=ROUTER), ["pod-steady"]),
        (
            "batch router pod (spec.router.batch) waits for the fleet too",
            pod(lbls={labels.COMPONENT: "router-batch", labels.DEPLOYMENT: "r1"}),
            ["pod-steady"],
        ),
        (
            "batch router pod whose router passes its probe becomes Ready",
            pod(
                lbls={labels.COMPONENT: "router-batch", labels.DEPLOYMENT: "r1"},
                ann={SIM_ENGINE_READY: "true"},
            ),
            ["engine-ready"],
        ),
        (
            "router pod whose router passes its probe becomes Ready",
            pod(lbls=ROUTER, ann={SIM_ENGINE_READY: "true"}),
            ["engine-ready"],
        ),
        (
            "router pod whose router exited becomes unready",
            pod(lbls=ROUTER, ready=True),
            ["engine-unready"],
        ),
        (
            "stopped router pod is removed",
            pod(lbls=ROUTER, deleting=True, ann={SIM_DRAINED: "true"}),
            ["engine-drained"],
        ),
        (
            "router label without a deployment label is ordinary",
            pod(lbls={labels.COMPONENT: ROUTER_COMPONENT}),
            ["pod-ready"],
        ),
        (
            "engine label without a deployment label is ordinary",
            pod(lbls={labels.COMPONENT: labels.ENGINE_COMPONENT}),
            ["pod-ready"],
        ),
        ("job pod completes", pod(owner="Job"), ["job-complete"]),
        (
            "helm install hook pod completes",
            pod(owner="Pod", ann={"helm.sh/hook": "pre-install"}),
            ["job-complete"],
        ),
        (
            "helm test pod waits for the hook runner",
            pod(owner="Pod", ann={"helm.sh/hook": "test"}),
            [],
        ),
        (
            "helm test pod completes with the runner's exit code",
            pod(owner="Pod", ann={"helm.sh/hook": "test", SIM_EXIT_CODE: "1"}),
            ["test-exited"],
        ),
        (
            "finished helm test pod stays",
            {
                **pod(owner="Pod", ann={"helm.sh/hook": "test-success", SIM_EXIT_CODE: "0"}),
                "status": {"phase": "Succeeded", "podIP": "10.16.1.2"},
            },
            [],
        ),
        (
            "deleted helm test pod is removed",
            pod(owner="Pod", ann={"helm.sh/hook": "test"}, deleting=True),
            ["pod-delete"],
        ),
        ("deleted ordinary pod is removed", pod(ready=True, deleting=True), ["pod-delete"]),
        ("deleted pod with finalizers stays", pod(deleting=True, finalizers=True), []),
        (
            "deleted Ready engine pod first becomes unready",
            pod(lbls=ENGINE, ready=True, deleting=True),
            ["engine-terminating"],
        ),
        (
            "drained engine pod is removed",
            pod(lbls=ENGINE, deleting=True, ann={SIM_DRAINED: "true"}),
            ["engine-drained"],
        ),
        (
            "draining engine pod is removed when the grace period ends",
            pod(lbls=ENGINE, deleting=True),
            ["engine-grace-expired"],
        ),
        (
            "deleted engine pod that never started is removed",
            pod(lbls=ENGINE, ip=False, deleting=True),
            ["pod-delete"],
        ),
    ],
)
def test_each_pod_state_matches_exactly_the_expected_stage(
    desc: str, p: dict[str, Any], want: list[str]
) -> None:
    assert S.matching_stages(FLEET, p) == want, desc


def test_without_the_fleet_engine_pods_become_ready_after_the_delay() -> None:
    assert S.matching_stages(NO_FLEET, pod(lbls=ENGINE)) == ["pod-ready"]
    assert S.matching_stages(NO_FLEET, pod(lbls=ENGINE, ready=True, deleting=True)) == [
        "pod-delete"
    ]
    assert not [s for s in NO_FLEET if s.name.startswith("engine-")]


def test_without_the_fleet_helm_test_pods_complete_like_jobs() -> None:
    assert S.matching_stages(NO_FLEET, pod(owner="Pod", ann={"helm.sh/hook": "test"})) == [
        "job-complete"
    ]


@pytest.mark.parametrize("fleet", [True, False])
def test_pod_classes_partition_every_label_combination(fleet: bool) -> None:
    cls = S.pod_classes(fleet)
    hooks = ({"helm.sh/hook": "test"}, {"helm.sh/hook": "test-success"}, {"helm.sh/hook": "x"})
    for lbls in (
        {},
        ENGINE,
        ROUTER,
        {labels.COMPONENT: "router"},
        {labels.COMPONENT: "gateway", labels.DEPLOYMENT: "x"},
        {labels.DEPLOYMENT: "x"},
    ):
        for ann in ({}, {S.FLEET_ANNOTATION: "false"}, *hooks):
            for owner in ("Job", "ReplicaSet"):
                p = pod(lbls=lbls, ann=ann, owner=owner)
                hits = [
                    name
                    for name, dnf in (
                        ("engine", cls.engine),
                        ("job", cls.job),
                        ("ord", cls.ordinary),
                        ("test", cls.test),
                    )
                    if any(S.matches(t, p) for t in dnf)
                ]
                assert len(hits) == 1, (lbls, ann, owner, hits)


def test_kwok_stage_objects_are_valid_and_uniquely_named() -> None:
    objs = S.kwok_stages(start_delay_s=2.5, fleet=True)
    names = [o["metadata"]["name"] for o in objs]
    assert len(names) == len(set(names))
    assert {o["kind"] for o in objs} == {"Stage"}
    assert {o["spec"]["resourceRef"]["kind"] for o in objs} == {"Pod", "Node"}
    ready = next(o for o in objs if o["metadata"]["name"].startswith("pod-ready"))
    assert ready["spec"]["delay"]["durationMilliseconds"] == 2500
    assert '// "2.5"' in ready["spec"]["delay"]["durationFrom"]["expressionFrom"]


def test_negative_start_delay_is_rejected() -> None:
    with pytest.raises(ValueError):
        S.pod_stages(start_delay_s=-1, fleet=True)
