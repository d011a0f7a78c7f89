"""Kubernetes I/O for the reconciler: read what a DeepSeekDeployment owns, apply desired
objects with server-side apply, patch status. No decisions are made here."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, cast

from kubernetes import client, config
from kubernetes.dynamic import DynamicClient

from .. import labels as L
from ..api.base import GROUP, PLURAL, VERSION
from ..api.resource import DeepSeekDeployment
from ..api.status import Colour
from ..checks import ClusterFacts, GpuNode
from ..desired import (
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    ZONE_LABEL,
    DesiredState,
    deployment_name,
    router_batch_name,
    router_name,
    supports_sleep_action,
)
from ..reconcile import Observed, RouterObservation
from ..rollout import ColourObservation
from ..traffic import DNSENDPOINT_API_VERSION, DNSENDPOINT_CRD, DNSENDPOINT_KIND
from . import metrics
from .store import DSD_KIND, OWNED_KINDS, Store


def load_api(kubeconfig: str | None, connections: int | None = None) -> client.ApiClient:
    """In-cluster (the pod's ServiceAccount) first, then $KUBECONFIG or ~/.kube/config;
    --kubeconfig wins over both. `connections`: the HTTP connections kept to the API server
    (one per thread that may call it at once; the client's default is 5 per core)."""
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    else:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config()  # type: ignore[no-untyped-call]
    if connections is None:
        return client.ApiClient()
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = connections
    return client.ApiClient(cfg)


log = logging.getLogger("deepseek_operator.kube")

FIELD_MANAGER = "deepseek-operator"
APPLIED_HASH = f"{L.DOMAIN}/applied-hash"
NODE_CACHE_SECONDS = 30.0
# A resource's owned objects are listed again this often even though watch events keep them
# current: a safety net for what a watch cannot tell (an object deleted while a watch stream was
# re-listing, or between the first list and the watch's start).
RESEED_SECONDS = 600.0
CRD_CACHE_SECONDS = 120.0
MONITORING_CRDS = ("podmonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com")
OWNED_APIS = (  # kind, apiVersion, plural of the owned kinds the store keeps from watches
    ("Deployment", "apps/v1", "deployments"),
    ("Service", "v1", "services"),
    ("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets"),
    # The router's account and its permission to watch pods (spec.router).
    ("ServiceAccount", "v1", "serviceaccounts"),
    ("Role", "rbac.authorization.k8s.io/v1", "roles"),
    ("RoleBinding", "rbac.authorization.k8s.io/v1", "rolebindings"),
)
# The engine pods the operator watches (handlers.py) and keeps in the store.
ENGINE_SELECTOR = f"{L.COMPONENT}={L.ENGINE_COMPONENT},{L.MANAGED_BY}={L.MANAGED_BY_VALUE}"
PRUNABLE = {
    "Service": ("v1", "services"),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets"),
    "PodMonitor": ("monitoring.coreos.com/v1", "podmonitors"),
    "PrometheusRule": ("monitoring.coreos.com/v1", "prometheusrules"),
}
# Kinds pruned only when the object is the router's (labelled so) and this resource is its
# controlling owner: the engine Deployments are never deleted (a colour kept out of the desired
# objects is only scaled), and an account or Role a user made is never touched.
ROUTER_COMPONENTS = (L.ROUTER_COMPONENT, L.ROUTER_BATCH_COMPONENT)
ROUTER_PRUNABLE = {
    "Deployment": ("apps/v1", "deployments"),
    "ServiceAccount": ("v1", "serviceaccounts"),
    "Role": ("rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings"),
}


@dataclass
class Change:
    kind: str
    name: str
    verb: str  # created | updated | deleted | scaled
    detail: str = ""


@dataclass
class Owned:
    """Objects a DeepSeekDeployment owns, keyed by (kind, name)."""

    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def prunable(kind: str, obj: dict[str, Any]) -> tuple[str, str] | None:
    """(apiVersion, plural) of an owned object that is deleted once no longer desired; None
    for one that never is. Owned objects of the router kinds are the router's only (observe
    keeps no other), engine Deployments are never pruned."""
    if kind in PRUNABLE:
        return PRUNABLE[kind]
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if kind in ROUTER_PRUNABLE and labels.get(L.COMPONENT) in ROUTER_COMPONENTS:
        return ROUTER_PRUNABLE[kind]
    return None


def applied_hash(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _deployment_observation(d: dict[str, Any]) -> ColourObservation:
    spec, status, meta = d.get("spec", {}), d.get("status") or {}, d["metadata"]
    return ColourObservation(
        exists=True,
        replicas=spec.get("replicas", 0),
        ready=status.get("readyReplicas", 0) or 0,
        updated=status.get("updatedReplicas", 0) or 0,
        template_hash=spec.get("template", {})
        .get("metadata", {})
        .get("labels", {})
        .get(L.TEMPLATE_HASH),
        up_to_date=(status.get("observedGeneration") or 0) >= (meta.get("generation") or 0),
    )


def router_observation(d: dict[str, Any]) -> RouterObservation:
    spec, status, meta = d.get("spec", {}), d.get("status") or {}, d["metadata"]
    return RouterObservation(
        exists=True,
        replicas=spec.get("replicas", 0) or 0,
        available=status.get("availableReplicas", 0) or 0,
        updated=status.get("updatedReplicas", 0) or 0,
        up_to_date=(status.get("observedGeneration") or 0) >= (meta.get("generation") or 0),
        total=status.get("replicas", 0) or 0,
        selector=_router_selector(spec),
    )


def _router_selector(spec: dict[str, Any]) -> tuple[str, ...]:
    """The --selector values of the router container's arguments."""
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    args = next(
        (list(c.get("args") or []) for c in containers if c.get("name") == L.ROUTER_CONTAINER),
        [],
    )
    if "--selector" not in args:
        return ()
    out = []
    for a in args[args.index("--selector") + 1 :]:
        if a.startswith("--"):
            break
        out.append(a)
    return tuple(out)


def is_router_object(obj: dict[str, Any], dsd_name: str, dsd_uid: str | None) -> bool:
    """The router object this resource made: named and labelled as its router (or its batch
    pool), and controlled by it (its owner reference, where the resource has a uid)."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    component = {
        router_name(dsd_name): L.ROUTER_COMPONENT,
        router_batch_name(dsd_name): L.ROUTER_BATCH_COMPONENT,
    }.get(meta.get("name") or "")
    if component is None:
        return False
    if labels.get(L.COMPONENT) != component or labels.get(L.DEPLOYMENT) != dsd_name:
        return False
    if dsd_uid is None:
        return True
    return any(
        ref.get("uid") == dsd_uid and ref.get("controller")
        for ref in meta.get("ownerReferences") or []
    )


def unschedulable_pods(pods: list[dict[str, Any]]) -> tuple[int, str, dict[str, int]]:
    """Engine pods the scheduler could not place (PodScheduled False, Unschedulable): how
    many, the scheduler's last message, and how many per colour label."""
    count, message = 0, ""
    by_colour: dict[str, int] = {}
    for p in pods:
        for c in (p.get("status") or {}).get("conditions") or []:
            if (
                c.get("type") == "PodScheduled"
                and c.get("status") == "False"
                and c.get("reason") == "Unschedulable"
            ):
                count += 1
                message = c.get("message") or message
                colour = ((p.get("metadata") or {}).get("labels") or {}).get(L.COLOUR, "")
                by_colour[colour] = by_colour.get(colour, 0) + 1
    return count, message, by_colour


class Kube:
    """Thin, synchronous Kubernetes adapter (the handlers call it from worker threads)."""

    def __init__(self, api: client.ApiClient, store: Store | None = None) -> None:
        self.api = api
        # Bodies from watch events (store.py); None: every reconcile reads the API server.
        self.store = store
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.apiext = client.ApiextensionsV1Api(api)
        self._dyn: DynamicClient | None = None
        self._lock = threading.Lock()
        self._nodes: tuple[float, tuple[GpuNode, ...]] | None = None
        self._crds: tuple[float, bool] | None = None
        self._dns_crd: tuple[float, bool] | None = None
        self.calls = 0  # API requests made, for the operator's own metrics and benchmarks
        self._seeded_at: dict[str, float] = {}  # namespace -> when its owned objects were listed
        self._seed_locks: dict[str, threading.Lock] = {}
        # The API server's gitVersion, learned once by learn_server_version() at start.
        self.server_version = ""
        self.sleep_action = False
        # ConfigMaps this process applied, by (namespace, name): the applied body's hash. The
        # operator may write ConfigMaps but not read them (its RBAC has no get/list/watch).
        self._config_maps: dict[tuple[str, str], str] = {}

    def _count(self, verb: str, resource: str) -> None:
        self.calls += 1
        metrics.API_REQUESTS.labels(verb, resource).inc()

    def learn_server_version(self) -> str:
        """GET /version once: which preStop form engine pods get (`sleep` action on 1.30+).
        An unreadable version keeps the `exec sleep` form every supported version accepts."""
        self._count("get", "version")
        try:
            info = client.VersionApi(self.api).get_code()
            self.server_version = str(info.git_version or "")
        except (client.ApiException, OSError, ValueError) as e:
            log.warning("server_version_unknown error=%s: engine pods get `exec sleep`", e)
            self.server_version = ""
        self.sleep_action = supports_sleep_action(self.server_version)
        return self.server_version

    @property
    def dyn(self) -> DynamicClient:
        with self._lock:
            if self._dyn is None:
                self._dyn = DynamicClient(self.api)  # type: ignore[no-untyped-call]
            return self._dyn

    # ---- reads -------------------------------------------------------------------------

    def get_dsd(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The resource's latest body: from the watch (store) when held, else a GET."""
        if self.store is not None and (held := self.store.get(DSD_KIND, namespace, name)):
            return held
        self._count("get", "deepseekdeployments")
        try:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except client.ApiException as e:
            if e.status == 404:
                return None
            raise
        self._keep(DSD_KIND, obj)
        return cast(dict[str, Any], obj)

    def _keep(self, kind: str, body: Any) -> None:
        """Store a body read or written here (a copy: the caller may edit its own)."""
        if self.store is not None and isinstance(body, dict) and body.get("metadata"):
            self.store.put(kind, json.loads(json.dumps(body)))

    def gpu_nodes(self) -> tuple[GpuNode, ...]:
        now = time.monotonic()
        with self._lock:
            if self._nodes is not None and now - self._nodes[0] < NODE_CACHE_SECONDS:
                return self._nodes[1]
        self._count("list", "nodes")
        nodes = []
        for n in self.core.list_node().items:
            alloc = (n.status.allocatable or {}) if n.status else {}
            gpus = int(alloc.get(GPU_RESOURCE, "0") or 0)
            if gpus <= 0:
                continue
            meta = n.metadata
            if meta is None or meta.name is None:
                continue
            lbl = meta.labels or {}
            nodes.append(
                GpuNode(
                    name=meta.name,
                    product=lbl.get(GPU_PRODUCT_LABEL),
                    zone=lbl.get(ZONE_LABEL),
                    gpus=gpus,
                    schedulable=not (n.spec and n.spec.unschedulable),
                )
            )
        result = tuple(nodes)
        with self._lock:
            self._nodes = (now, result)
        return result

    def monitoring_crds(self) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._crds is not None and now - self._crds[0] < CRD_CACHE_SECONDS:
                return self._crds[1]
        present = True
        for name in MONITORING_CRDS:
            self._count("get", "customresourcedefinitions")
            try:
                self.apiext.read_custom_resource_definition(name)
            except client.ApiException as e:
                if e.status in (403, 404):
                    present = False
                    break
                raise
        with self._lock:
            self._crds = (now, present)
        return present

    def dns_crd(self) -> bool:
        """Whether external-dns's DNSEndpoint CRD is installed (read by name, cached like the
        monitoring CRDs: installing it later is noticed within CRD_CACHE_SECONDS)."""
        now = time.monotonic()
        with self._lock:
            if self._dns_crd is not None and now - self._dns_crd[0] < CRD_CACHE_SECONDS:
                return self._dns_crd[1]
        self.calls += 1
        try:
            self.apiext.read_custom_resource_definition(DNSENDPOINT_CRD)
            present = True
        except client.ApiException as e:
            if e.status not in (403, 404):
                raise
            present = False
        with self._lock:
            self._dns_crd = (now, present)
        return present

    def get_dns_endpoint(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls += 1
        res = self.dyn.resources.get(api_version=DNSENDPOINT_API_VERSION, kind=DNSENDPOINT_KIND)
        try:
            return cast(dict[str, Any], res.get(name=name, namespace=namespace).to_dict())
        except client.ApiException as e:
            if e.status == 404:
                return None
            raise

    def apply_dns_endpoint(self, body: dict[str, Any]) -> None:
        """Server-side apply (creates it, or updates the fields the operator owns)."""
        self.calls += 1
        res = self.dyn.resources.get(api_version=DNSENDPOINT_API_VERSION, kind=DNSENDPOINT_KIND)
        res.server_side_apply(
            body=body,
            name=body["metadata"]["name"],
            namespace=body["metadata"]["namespace"],
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )

    def apply_config_map(self, body: dict[str, Any]) -> bool:
        """Server-side apply a ConfigMap the operator owns (the learned admission limit) unless
        this process applied the same body already; True when it was written. After a restart
        the first reconcile writes it once (an apply of the same body changes nothing)."""
        meta = body["metadata"]
        key, h = (meta["namespace"], meta["name"]), applied_hash(body)
        if self._config_maps.get(key) == h:
            return False
        self._count("apply", "configmaps")
        res = self.dyn.resources.get(api_version="v1", kind="ConfigMap")
        res.server_side_apply(
            body=body,
            name=meta["name"],
            namespace=meta["namespace"],
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )
        self._config_maps[key] = h
        return True

    def forget_config_map(self, namespace: str, name: str) -> None:
        """Forget a ConfigMap applied for a deleted DeepSeekDeployment (it goes with it): one
        of the same name made later is applied again."""
        self._config_maps.pop((namespace, name), None)

    def delete_dns_endpoint(self, namespace: str, name: str, uid: str) -> None:
        """Delete it only while it is the one read (a precondition on its uid)."""
        self.calls += 1
        res = self.dyn.resources.get(api_version=DNSENDPOINT_API_VERSION, kind=DNSENDPOINT_KIND)
        try:
            res.delete(name=name, namespace=namespace, body={"preconditions": {"uid": uid}})
        except client.ApiException as e:
            if e.status not in (404, 409):
                raise

    def pvc_exists(self, namespace: str, name: str) -> bool:
        self._count("get", "persistentvolumeclaims")
        try:
            self.core.read_namespaced_persistent_volume_claim(name, namespace)
            return True
        except client.ApiException as e:
            if e.status == 404:
                return False
            raise

    def _list(
        self, api_version: str, plural_kind: str, namespace: str, selector: str
    ) -> list[dict[str, Any]]:
        return self._list_at(api_version, plural_kind, namespace, selector)[0]

    def _list_at(
        self, api_version: str, plural_kind: str, namespace: str, selector: str
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The items and the list's resourceVersion."""
        kind = {
            "deployments": "Deployment",
            "services": "Service",
            "poddisruptionbudgets": "PodDisruptionBudget",
            "podmonitors": "PodMonitor",
            "prometheusrules": "PrometheusRule",
            "pods": "Pod",
            "serviceaccounts": "ServiceAccount",
            "roles": "Role",
            "rolebindings": "RoleBinding",
        }[plural_kind]
        self._count("list", plural_kind)
        res = self.dyn.resources.get(api_version=api_version, kind=kind)
        listed = res.get(namespace=namespace, label_selector=selector).to_dict()
        items: list[dict[str, Any]] = listed["items"]
        return items, (listed.get("metadata") or {}).get("resourceVersion")

    def _owned(self, ns: str, name: str, selector: str) -> dict[str, list[dict[str, Any]]]:
        """The objects of OWNED_APIS labelled as this resource's (and, from the store, its engine
        pods): from the store, once they were listed in this namespace (watch events keep them
        current after that; the list is repeated every RESEED_SECONDS), else listed for this
        resource now."""
        out: dict[str, list[dict[str, Any]]] = {}
        store = self.store
        if store is not None:
            self._reseed(ns)
            for kind, body in store.owned(ns, name):
                out.setdefault(kind, []).append(body)
            return out
        for kind, api_version, plural in OWNED_APIS:
            out[kind] = self._list(api_version, plural, ns, selector)
        return out

    def _reseed(self, ns: str) -> None:
        """List every operator-labelled owned object of the namespace into the store when it
        was never listed in this process, or not for RESEED_SECONDS. One thread lists; the
        others wait for it."""
        assert self.store is not None
        with self._lock:
            ns_lock = self._seed_locks.setdefault(ns, threading.Lock())
        with ns_lock:
            at = self._seeded_at.get(ns)
            if at is not None and time.monotonic() - at < RESEED_SECONDS:
                return
            selector = f"{L.MANAGED_BY}={L.MANAGED_BY_VALUE}"
            for kind, api_version, plural in OWNED_APIS:
                items, rv = self._list_at(api_version, plural, ns, selector)
                self.store.relist(kind, ns, items, rv)
            items, rv = self._list_at("v1", "pods", ns, ENGINE_SELECTOR)
            self.store.relist("Pod", ns, items, rv)
            self._seeded_at[ns] = time.monotonic()

    def _engine_pods(self, ns: str, name: str) -> list[dict[str, Any]]:
        """The resource's engine pods: from the store (the pod watch) once listed in this
        namespace, else listed now."""
        if self.store is not None:
            self._reseed(ns)
            return [b for kind, b in self.store.owned(ns, name) if kind == "Pod"]
        return self._list("v1", "pods", ns, f"{L.DEPLOYMENT}={name},{ENGINE_SELECTOR}")

    def observe(self, dsd: DeepSeekDeployment) -> tuple[Observed, Owned]:
        """Read everything the reconcile needs about one DeepSeekDeployment."""
        ns, name = dsd.namespace, dsd.name
        selector = f"{L.DEPLOYMENT}={name},{L.MANAGED_BY}={L.MANAGED_BY_VALUE}"
        owned = Owned()
        deployments: dict[Colour, ColourObservation] = {}
        modes: dict[Colour, str] = {}
        listed = self._owned(ns, name, selector)
        router = router_batch = RouterObservation()
        uid = dsd.metadata.uid
        for d in listed.get("Deployment", []):
            if is_router_object(d, name, uid):
                owned.objects[("Deployment", d["metadata"]["name"])] = d
                if d["metadata"]["name"] == router_batch_name(name):
                    router_batch = router_observation(d)
                else:
                    router = router_observation(d)
                continue
            colour = d["metadata"].get("labels", {}).get(L.COLOUR)
            if colour not in ("blue", "green") or d["metadata"]["name"] != deployment_name(
                name, colour
            ):
                continue
            owned.objects[("Deployment", d["metadata"]["name"])] = d
            deployments[Colour(colour)] = _deployment_observation(d)
            if mode := d["metadata"].get("labels", {}).get(L.MODE):
                modes[Colour(colour)] = mode
        monitoring = self.monitoring_crds()
        for kind in ("Service", "PodDisruptionBudget"):
            for o in listed.get(kind, []):
                owned.objects[(kind, o["metadata"]["name"])] = o
        for kind in ("ServiceAccount", "Role", "RoleBinding"):
            for o in listed.get(kind, []):
                if is_router_object(o, name, uid):
                    owned.objects[(kind, o["metadata"]["name"])] = o
        # PodMonitors and PrometheusRules are not watched (their CRDs may come and go while the
        # operator runs): listed while the CRDs exist.
        for kind in ("PodMonitor", "PrometheusRule") if monitoring else ():
            for o in self._list(PRUNABLE[kind][0], PRUNABLE[kind][1], ns, selector):
                owned.objects[(kind, o["metadata"]["name"])] = o

        unschedulable, message = 0, ""
        by_colour: dict[str, int] = {}
        if any(d.ready < d.replicas for d in deployments.values()):
            unschedulable, message, by_colour = unschedulable_pods(self._engine_pods(ns, name))
        for colour, count in by_colour.items():
            if colour in ("blue", "green") and Colour(colour) in deployments:
                key = Colour(colour)
                deployments[key] = replace(deployments[key], unschedulable=count)
        cache = dsd.spec.model.cache
        pvcs: frozenset[str] = frozenset()
        pvc = cache.persistent_volume_claim if cache is not None else None
        if pvc is not None and self.pvc_exists(ns, pvc):
            pvcs = frozenset({pvc})
        ann = dsd.metadata.annotations
        observed = Observed(
            facts=ClusterFacts(
                gpu_nodes=self.gpu_nodes(),
                pvcs=pvcs,
                monitoring_crds=monitoring,
                sleep_action=self.sleep_action,
            ),
            deployments=deployments,
            modes=modes,
            unschedulable_pods=unschedulable,
            unschedulable_message=message,
            promote_requested=ann.get(L.PROMOTE, "").lower() == "true",
            abort_requested=ann.get(L.ABORT, "").lower() == "true",
            router=router,
            router_batch=router_batch,
        )
        return observed, owned

    # ---- writes ------------------------------------------------------------------------

    def apply(self, desired: DesiredState, owned: Owned, force: bool = False) -> list[Change]:
        """Server-side apply every desired object that differs from what is there; delete owned
        objects of prunable kinds that are no longer desired. Returns what changed."""
        changes: list[Change] = []
        wanted: set[tuple[str, str]] = set()
        for obj in desired.objects:
            kind, name = obj["kind"], obj["metadata"]["name"]
            wanted.add((kind, name))
            h = applied_hash(obj)
            current = owned.objects.get((kind, name))
            if current is not None and not force and not self._drifted(current, obj, h):
                continue
            body = json.loads(json.dumps(obj))
            body["metadata"].setdefault("annotations", {})[APPLIED_HASH] = h
            self._count("apply", kind.lower() + "s")
            res = self.dyn.resources.get(api_version=obj["apiVersion"], kind=kind)
            applied = res.server_side_apply(
                body=body,
                name=name,
                namespace=obj["metadata"]["namespace"],
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
            if kind in OWNED_KINDS:
                self._keep(kind, applied.to_dict())
            changes.append(Change(kind, name, "created" if current is None else "updated"))
        for (kind, name), obj in owned.objects.items():
            api = prunable(kind, obj)
            if api is not None and (kind, name) not in wanted:
                self._count("delete", api[1])
                res = self.dyn.resources.get(api_version=api[0], kind=kind)
                res.delete(name=name, namespace=obj["metadata"]["namespace"])
                if self.store is not None:
                    self.store.forget(kind, obj["metadata"]["namespace"], name)
                changes.append(Change(kind, name, "deleted"))
        return changes

    @staticmethod
    def _drifted(current: dict[str, Any], desired: dict[str, Any], h: str) -> bool:
        if current["metadata"].get("annotations", {}).get(APPLIED_HASH) != h:
            return True
        # Hand edits that keep our annotation: catch the ones that matter.
        if desired["kind"] == "Deployment":
            return bool(current["spec"].get("replicas") != desired["spec"]["replicas"])
        if desired["kind"] == "Service":
            return bool(current["spec"].get("selector") != desired["spec"]["selector"])
        return False

    def scale_deployment(
        self, namespace: str, name: str, replicas: int, owned: Owned
    ) -> Change | None:
        """Set only replicas of a Deployment whose template must not change."""
        current = owned.objects.get(("Deployment", name))
        if current is None or current["spec"].get("replicas") == replicas:
            return None
        self._count("patch", "deployments/scale")
        self.apps.patch_namespaced_deployment_scale(
            name, namespace, {"spec": {"replicas": replicas}}
        )
        return Change(
            "Deployment", name, "scaled", f"{current['spec'].get('replicas')} -> {replicas}"
        )

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._count("patch", "deepseekdeployments/status")
        body = self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": patch}
        )
        self._keep(DSD_KIND, body)

    def remove_annotations(self, namespace: str, name: str, keys: list[str]) -> None:
        self._count("patch", "deepseekdeployments")
        body = self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": {"annotations": dict.fromkeys(keys)}},
        )
        self._keep(DSD_KIND, body)

    def set_dsd_replicas(
        self, namespace: str, name: str, replicas: int, *, unset: bool = False
    ) -> None:
        """Write spec.replicas through the scale subresource, as an autoscaler does. The API
        server answers 500 to any scale request while spec.replicas is unset (`unset`): the
        first write then goes to the resource itself."""
        self._count("patch", "deepseekdeployments/scale" if not unset else "deepseekdeployments")
        body = {"spec": {"replicas": replicas}}
        if unset:
            obj = self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, body
            )
            self._keep(DSD_KIND, obj)
            return
        scale = self.custom.patch_namespaced_custom_object_scale(
            GROUP, VERSION, namespace, PLURAL, name, body
        )
        # The answer is a Scale, not the resource: drop the stored body, and refuse bodies older
        # than this write.
        if self.store is not None:
            meta = scale.get("metadata") if isinstance(scale, dict) else None
            rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
            self.store.forget(DSD_KIND, namespace, name, str(rv) if rv else None)
