"""The latest bodies of the objects the reconcile reads, kept from the watch events the operator
already receives, so that a steady-state reconcile reads memory instead of the API server.

Fed by the Kopf event handlers (DeepSeekDeployments, the Deployments, Services,
PodDisruptionBudgets, ServiceAccounts, Roles and RoleBindings the operator labels as its own,
and its engine pods) and by the answers to the operator's own writes. Every event is stored
before the resource's loop is woken, so a reconcile that an event woke sees that event. Owned
objects are trusted only once they were listed in their namespace in this process (`relist`,
`seeded`); a missing DeepSeekDeployment body is read with a GET (kube.py), and stored.

Events and reads can arrive out of order (a LIST answered before a watch event that the API
server sent earlier, a late MODIFIED after the operator's own patch). Each key keeps the newest
body by resourceVersion, and a deletion leaves a floor so that an older body cannot bring the
object back: `accepts` below. resourceVersion is opaque by contract; every API server backed by
etcd gives integers (etcd's revision), and where one does not, the incoming body wins (the
behaviour without this ordering).
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from .. import labels as L

DSD_KIND = "DeepSeekDeployment"
OWNED_KINDS = (
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Role",
    "RoleBinding",
)

Key = tuple[str, str, str]  # kind, namespace, name


def _rv(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def accepts(held: str | None, floor: str | None, incoming: str | None) -> bool:
    """Whether a body at resourceVersion `incoming` replaces the one held (at `held`), given
    the lowest version a body may have (`floor`: set by a deletion or by a write whose answer
    was not a whole body). Versions that are not integers are not compared: the body wins."""
    new = _rv(incoming)
    if new is None:
        return True
    f = _rv(floor)
    if f is not None and new < f:
        return False
    old = _rv(held)
    return old is None or new >= old


def slim(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The part of a body the store keeps. managedFields go: nothing reads them, and they are
    often the larger part of a body. Of an engine pod a reconcile reads its metadata and its
    status conditions (kube.unschedulable_pods); its spec and container statuses, most of a
    pod, go too (a thousand resources' pods were ~0.1 MB each in memory)."""
    meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    if kind != "Pod":
        return {**body, "metadata": meta}
    status = body.get("status") or {}
    return {
        "metadata": meta,
        "status": {k: status[k] for k in ("phase", "conditions") if k in status},
    }


class Store:
    """Thread-safe: the Kopf handlers write from the event loop, reconciles read and write from
    worker threads. Bodies handed out are the stored dicts: callers only read them (the
    DeepSeekDeployment's body is handed out as a copy, since the reconcile edits its status)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Key, dict[str, Any]] = {}
        self._floors: dict[Key, str] = {}
        # (namespace, DeepSeekDeployment) -> keys of the objects labelled as its own
        self._by_owner: dict[tuple[str, str], set[Key]] = {}
        self._owner_of: dict[Key, tuple[str, str]] = {}
        self._seeded: set[str] = set()  # namespaces whose owned objects were listed

    @staticmethod
    def _key(kind: str, body: dict[str, Any]) -> Key:
        m = body["metadata"]
        return kind, m.get("namespace") or "", m["name"]

    def put(self, kind: str, body: dict[str, Any]) -> bool:
        """Store a body (from a watch event, a read or a write's answer); False when an
        equally new or newer one is held. Only what a reconcile reads is kept (`slim`)."""
        key = self._key(kind, body)
        body = slim(kind, body)
        rv = body["metadata"].get("resourceVersion")
        with self._lock:
            held = self._objects.get(key)
            held_rv = held["metadata"].get("resourceVersion") if held is not None else None
            if not accepts(held_rv, self._floors.get(key), rv):
                return False
            self._objects[key] = body
            if kind != DSD_KIND:
                self._index(key, body)
            return True

    def _index(self, key: Key, body: dict[str, Any]) -> None:
        owner_name = (body["metadata"].get("labels") or {}).get(L.DEPLOYMENT)
        owner = (key[1], owner_name) if owner_name else None
        old = self._owner_of.get(key)
        if old is not None and old != owner:
            self._by_owner.get(old, set()).discard(key)
        if owner is not None:
            self._owner_of[key] = owner
            self._by_owner.setdefault(owner, set()).add(key)
        else:
            self._owner_of.pop(key, None)

    def delete(self, kind: str, body: dict[str, Any]) -> None:
        """The object is gone (a DELETED event, or the operator deleted it). A body older than
        the deletion's version is refused from now on."""
        key = self._key(kind, body)
        rv = _rv(body["metadata"].get("resourceVersion"))
        with self._lock:
            self._drop(key)
            if rv is not None:
                self._floors[key] = str(rv + 1)

    def forget(self, kind: str, namespace: str, name: str, floor: str | None = None) -> None:
        """Drop a body that a write made stale without answering with a new one (e.g. a write
        through the scale subresource): the next read goes to the API server."""
        key = (kind, namespace, name)
        with self._lock:
            self._drop(key)
            if floor is not None:
                self._floors[key] = floor

    def _drop(self, key: Key) -> None:
        self._objects.pop(key, None)
        owner = self._owner_of.pop(key, None)
        if owner is not None:
            self._by_owner.get(owner, set()).discard(key)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            body = self._objects.get((kind, namespace, name))
        if body is None:
            return None
        return copy.deepcopy(body) if kind == DSD_KIND else body

    def seeded(self, namespace: str) -> bool:
        with self._lock:
            return namespace in self._seeded

    def relist(
        self, kind: str, namespace: str, items: list[dict[str, Any]], list_rv: str | None
    ) -> None:
        """A LIST of every operator-labelled object of `kind` in `namespace`, at `list_rv`:
        store its items, and drop held objects it no longer has unless they are newer than the
        list (created since). The namespace's owned objects are trusted from then on."""
        for body in items:
            self.put(kind, body)
        present = {b["metadata"]["name"] for b in items}
        with self._lock:
            for key in [k for k in self._objects if k[0] == kind and k[1] == namespace]:
                if key[2] in present:
                    continue
                rv = self._objects[key]["metadata"].get("resourceVersion")
                if accepts(rv, None, list_rv):  # the list is as new or newer: it is gone
                    self._drop(key)
            self._seeded.add(namespace)

    def owned(self, namespace: str, name: str) -> list[tuple[str, dict[str, Any]]]:
        """(kind, body) of every stored object labelled as this DeepSeekDeployment's."""
        with self._lock:
            keys = list(self._by_owner.get((namespace, name), ()))
            return [(k[0], self._objects[k]) for k in keys if k in self._objects]
