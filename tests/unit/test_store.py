"""The watch-fed store (adapters/store.py): which body wins when events, reads and the
operator's own writes arrive out of order, and which objects a resource owns."""

from __future__ import annotations

from typing import Any

import pytest
from deepseek_operator import labels as L
from deepseek_operator.adapters.kube import unschedulable_pods
from deepseek_operator.adapters.store import DSD_KIND, Store, accepts


@pytest.mark.parametrize(
    ("held", "floor", "incoming", "expected"),
    [
        (None, None, "10", True),  # nothing held: taken
        ("10", None, "11", True),  # newer: taken
        ("10", None, "10", True),  # the same version again (our write, then its event)
        ("11", None, "10", False),  # a late event older than what is held: refused
        (None, "12", "11", False),  # older than the object's deletion: no ghost
        (None, "12", "12", True),  # re-created after the deletion
        ("10", "12", "13", True),
        ("10", None, "not-a-number", True),  # opaque versions are not compared
        ("x", None, "10", True),
        (None, None, None, True),
    ],
)
def test_accepts(held: str | None, floor: str | None, incoming: str | None, expected: bool) -> None:
    assert accepts(held, floor, incoming) is expected


def body(name: str, rv: str, owner: str | None = "dsd-a", ns: str = "ns") -> dict[str, Any]:
    labels = {L.DEPLOYMENT: owner} if owner else {}
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv, "labels": labels}}


def test_late_event_does_not_replace_a_newer_write() -> None:
    s = Store()
    assert s.put("Deployment", body("dsd-a-blue", "20"))  # the answer to our apply
    assert not s.put("Deployment", body("dsd-a-blue", "15"))  # the event of an older change
    held = s.get("Deployment", "ns", "dsd-a-blue")
    assert held is not None and held["metadata"]["resourceVersion"] == "20"


def test_deleted_object_is_not_brought_back_by_an_older_read() -> None:
    s = Store()
    s.put("Service", body("dsd-a", "5"))
    s.delete("Service", body("dsd-a", "9"))  # DELETED event: the deletion's version
    assert not s.put("Service", body("dsd-a", "5"))  # a list answered before the deletion
    assert s.owned("ns", "dsd-a") == []
    assert s.put("Service", body("dsd-a", "30"))  # created again
    assert [k for k, _ in s.owned("ns", "dsd-a")] == ["Service"]


def test_owned_by_label_and_namespace() -> None:
    s = Store()
    s.put("Deployment", body("dsd-a-blue", "1"))
    s.put("Service", body("dsd-a", "2"))
    s.put("Service", body("dsd-b", "3", owner="dsd-b"))
    s.put("Service", body("dsd-a", "4", ns="other"))
    s.put("Service", body("stray", "5", owner=None))
    assert sorted(k for k, _ in s.owned("ns", "dsd-a")) == ["Deployment", "Service"]
    # relabelled to another resource: no longer this one's
    s.put("Service", body("dsd-a", "6", owner="dsd-b"))
    assert [k for k, _ in s.owned("ns", "dsd-a")] == ["Deployment"]
    assert len(s.owned("ns", "dsd-b")) == 2


def test_resource_body_is_handed_out_as_a_copy() -> None:
    s = Store()
    s.put(DSD_KIND, {"metadata": {"name": "a", "namespace": "ns", "resourceVersion": "1"}})
    got = s.get(DSD_KIND, "ns", "a")
    assert got is not None
    got["status"] = {"phase": "Edited"}
    assert "status" not in (s.get(DSD_KIND, "ns", "a") or {})


def test_forget_with_floor_refuses_bodies_older_than_the_write() -> None:
    s = Store()
    s.put(DSD_KIND, {"metadata": {"name": "a", "namespace": "ns", "resourceVersion": "7"}})
    s.forget(DSD_KIND, "ns", "a", floor="8")  # a write through the scale subresource
    assert s.get(DSD_KIND, "ns", "a") is None  # the next reconcile GETs
    stale = {"metadata": {"name": "a", "namespace": "ns", "resourceVersion": "7"}}
    assert not s.put(DSD_KIND, stale)


def test_relist_drops_what_is_gone_and_keeps_what_is_newer_than_the_list() -> None:
    s = Store()
    assert not s.seeded("ns")
    s.put("Service", body("ghost", "5"))  # deleted while no watch told us
    s.put("Service", body("fresh", "40"))  # created after the list was taken
    s.put("Service", body("other-ns", "5", ns="other"))
    s.relist("Service", "ns", [body("kept", "8")], list_rv="30")
    assert s.seeded("ns") and not s.seeded("other")
    names = sorted(b["metadata"]["name"] for _, b in s.owned("ns", "dsd-a"))
    assert names == ["fresh", "kept"]
    assert s.get("Service", "other", "other-ns") is not None


def test_managed_fields_are_not_kept_and_the_event_body_is_not_edited() -> None:
    s = Store()
    event_body = body("dsd-a-blue", "3")
    event_body["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    s.put("Deployment", event_body)
    held = s.get("Deployment", "ns", "dsd-a-blue")
    assert held is not None and "managedFields" not in held["metadata"]
    assert "managedFields" in event_body["metadata"]


def test_an_engine_pod_keeps_what_the_reconcile_reads() -> None:
    """Of a pod the store keeps its metadata and status conditions, which is what finds
    unschedulable pods per colour; spec and container statuses (most of a pod) go."""
    s = Store()
    unschedulable = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    }
    pod = body("dsd-a-green-x1", "5")
    pod["metadata"]["labels"][L.COLOUR] = "green"
    pod["spec"] = {"containers": [{"name": "engine", "args": ["--model", "m"] * 50}]}
    pod["status"] = {
        "phase": "Pending",
        "conditions": [unschedulable],
        "containerStatuses": [{"name": "engine", "ready": False}],
    }
    s.put("Pod", pod)
    pods = [b for kind, b in s.owned("ns", "dsd-a") if kind == "Pod"]
    assert pods == [
        {
            "metadata": pod["metadata"],
            "status": {"phase": "Pending", "conditions": [unschedulable]},
        }
    ]
    assert unschedulable_pods(pods) == (1, unschedulable["message"], {"green": 1})
    assert "spec" in pod  # the event's body is not edited
