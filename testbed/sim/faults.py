"""Fault hooks of the simulated fleet: what a test can do to a replica or a zone.

A fault is plain data (`ReplicaFaults`) that the replica server consults on every request and
that the fleet applies to the replicas a `PodSelector` picks. The HTTP control endpoint of the
fleet (`POST /faults`) and the Python API (`Fleet.set_faults`) both go through
`parse_fault_request`, so a test in another process and one in the same process mean the same.

What each fault does, and what a user of a real cluster would see:
- slow: every engine step takes `slow_factor` times longer (a throttled or degraded GPU).
- erroring: a fraction `error_rate` of the requests the engine receives fail at once (the
  engine model finishes them with reason "error"); the server answers HTTP 500, counted by
  `http_requests_total{status="5xx"}` and `vllm:request_success_total{finished_reason="error"}`.
- crash: the server stops listening and drops every open connection at once (the engine
  process died); the pod is reported not ready until the fault is cleared, then the replica
  cold-starts again (the container restarted).
- zone down: the nodes of a zone are cordoned and tainted, their replicas crash at once (open
  connections reset, no drain), and their pods are deleted with no grace period, as when a
  zone's machines vanish; the Deployment controller recreates the pods in the other zones.

The state of every fault lives in the API server, so that it is level-based and survives a
fleet restart; the control endpoint and the CLI only write it:
- pod annotation `sim.deepseek.dev/fault`: `slow`, `error`, `crash` or `none` (several:
  `slow,error`), with `sim.deepseek.dev/fault-slow-factor` (default 10),
  `sim.deepseek.dev/fault-error-rate` (default 1.0) and `sim.deepseek.dev/fault-xid` (the XID a
  crash reports on DCGM_FI_DEV_XID_ERRORS, default 79 "GPU has fallen off the bus");
- node annotation `sim.deepseek.dev/zone-down: "true"` (plus `spec.unschedulable` and the
  taint `sim.deepseek.dev/zone-down:NoSchedule`) on every node of a zone that is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class ReplicaFaults:
    """Faults in force on one replica. The default is a healthy replica."""

    slow_factor: float = 1.0
    error_rate: float = 0.0
    crashed: bool = False

    @property
    def healthy(self) -> bool:
        return self.slow_factor == 1.0 and self.error_rate == 0.0 and not self.crashed

    def as_dict(self) -> dict[str, Any]:
        return {
            "slowFactor": self.slow_factor,
            "errorRate": self.error_rate,
            "crashed": self.crashed,
        }


HEALTHY = ReplicaFaults()

FAULT_ANNOTATION = "sim.deepseek.dev/fault"
SLOW_FACTOR_ANNOTATION = "sim.deepseek.dev/fault-slow-factor"
ERROR_RATE_ANNOTATION = "sim.deepseek.dev/fault-error-rate"
XID_ANNOTATION = "sim.deepseek.dev/fault-xid"
ZONE_DOWN_ANNOTATION = "sim.deepseek.dev/zone-down"
ZONE_DOWN_TAINT = {"key": ZONE_DOWN_ANNOTATION, "value": "true", "effect": "NoSchedule"}
DEFAULT_SLOW_FACTOR = 10.0
DEFAULT_ERROR_RATE = 1.0
DEFAULT_XID = 79
FAULT_KINDS = ("slow", "error", "crash", "none")


def _num(text: str | None, default: float, lo: float, hi: float) -> float:
    if text is None or text == "":
        return default
    try:
        v = float(text)
    except ValueError:
        return default
    return min(max(v, lo), hi)


def faults_from_annotations(annotations: Mapping[str, str] | None) -> ReplicaFaults:
    """The faults a pod's annotations ask for (unknown words are ignored: a typo must not
    crash a replica)."""
    ann = annotations or {}
    kinds = {k.strip().lower() for k in (ann.get(FAULT_ANNOTATION) or "").split(",")}
    out = HEALTHY
    if "slow" in kinds:
        out = replace(
            out,
            slow_factor=_num(ann.get(SLOW_FACTOR_ANNOTATION), DEFAULT_SLOW_FACTOR, 1.0, 1000.0),
        )
    if "error" in kinds:
        out = replace(
            out, error_rate=_num(ann.get(ERROR_RATE_ANNOTATION), DEFAULT_ERROR_RATE, 0.0, 1.0)
        )
    if "crash" in kinds:
        out = replace(out, crashed=True)
    return out


def crash_xid(annotations: Mapping[str, str] | None) -> int:
    return int(_num((annotations or {}).get(XID_ANNOTATION), DEFAULT_XID, 0, 1_000_000))


def annotations_for(faults: ReplicaFaults) -> dict[str, str | None]:
    """A merge patch of pod annotations that asks for `faults` (None removes a key)."""
    kinds = []
    patch: dict[str, str | None] = {
        SLOW_FACTOR_ANNOTATION: None,
        ERROR_RATE_ANNOTATION: None,
    }
    if faults.slow_factor != 1.0:
        kinds.append("slow")
        patch[SLOW_FACTOR_ANNOTATION] = f"{faults.slow_factor:g}"
    if faults.error_rate > 0.0:
        kinds.append("error")
        patch[ERROR_RATE_ANNOTATION] = f"{faults.error_rate:g}"
    if faults.crashed:
        kinds.append("crash")
    patch[FAULT_ANNOTATION] = ",".join(kinds) if kinds else None
    return patch


def zone_down_node_patch(node: Mapping[str, Any], down: bool) -> dict[str, Any]:
    """The patch that takes a node away with its zone (or gives it back): cordon, a
    NoSchedule taint and the annotation the fleet reads."""
    taints = [
        t
        for t in ((node.get("spec") or {}).get("taints") or [])
        if t.get("key") != ZONE_DOWN_ANNOTATION
    ]
    if down:
        taints.append(dict(ZONE_DOWN_TAINT))
    return {
        "metadata": {"annotations": {ZONE_DOWN_ANNOTATION: "true" if down else None}},
        "spec": {"unschedulable": True if down else None, "taints": taints},
    }


@dataclass(frozen=True)
class PodSelector:
    """Which pods a fault applies to: every given field must match (an empty selector matches
    every engine pod)."""

    namespace: str | None = None
    name: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    node: str | None = None
    zone: str | None = None

    def matches(
        self,
        namespace: str,
        name: str,
        labels: Mapping[str, str],
        node: str = "",
        zone: str = "",
    ) -> bool:
        if self.namespace is not None and self.namespace != namespace:
            return False
        if self.name is not None and self.name != name:
            return False
        if self.node is not None and self.node != node:
            return False
        if self.zone is not None and self.zone != zone:
            return False
        return all(labels.get(k) == v for k, v in self.labels.items())


def parse_label_selector(text: str) -> dict[str, str]:
    """`k=v,k2=v2` -> {k: v, k2: v2} (equality selectors only)."""
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ValueError(f"label selector term {part!r} is not key=value")
        k, v = part.split("=", 1)
        out[k.strip().rstrip("=")] = v.strip().lstrip("=")
    return out


@dataclass(frozen=True)
class FaultRequest:
    """A change of faults on the replicas a selector picks. Fields left None stay as they are;
    `clear` resets the replica to healthy first."""

    selector: PodSelector
    slow_factor: float | None = None
    error_rate: float | None = None
    crash: bool | None = None
    clear: bool = False

    def apply(self, current: ReplicaFaults) -> ReplicaFaults:
        out = HEALTHY if self.clear else current
        if self.slow_factor is not None:
            out = replace(out, slow_factor=self.slow_factor)
        if self.error_rate is not None:
            out = replace(out, error_rate=self.error_rate)
        if self.crash is not None:
            out = replace(out, crashed=self.crash)
        return out


def _opt_float(body: Mapping[str, Any], key: str, lo: float, hi: float) -> float | None:
    if key not in body or body[key] is None:
        return None
    try:
        value = float(body[key])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{key} must be a number") from e
    if not lo <= value <= hi:
        raise ValueError(f"{key} must be within [{lo}, {hi}], got {value}")
    return value


def parse_fault_request(body: Mapping[str, Any]) -> FaultRequest:
    """Read a fault request from JSON:

    {"namespace": "ns", "pod": "name", "selector": "k=v,...", "node": "n", "zone": "z",
     "slowFactor": 4, "errorRate": 0.5, "crash": true, "clear": false}
    """
    labels = body.get("selector") or {}
    if isinstance(labels, str):
        labels = parse_label_selector(labels)
    if not isinstance(labels, Mapping):
        raise ValueError("selector must be a `k=v,...` string or an object")
    selector = PodSelector(
        namespace=body.get("namespace"),
        name=body.get("pod"),
        labels={str(k): str(v) for k, v in labels.items()},
        node=body.get("node"),
        zone=body.get("zone"),
    )
    crash = body.get("crash")
    if crash is not None and not isinstance(crash, bool):
        raise ValueError("crash must be true or false")
    clear = body.get("clear", False)
    if not isinstance(clear, bool):
        raise ValueError("clear must be true or false")
    req = FaultRequest(
        selector=selector,
        slow_factor=_opt_float(body, "slowFactor", 1.0, 1000.0),
        error_rate=_opt_float(body, "errorRate", 0.0, 1.0),
        crash=crash,
        clear=clear,
    )
    if not clear and req.slow_factor is None and req.error_rate is None and crash is None:
        raise ValueError("nothing to do: give slowFactor, errorRate, crash or clear")
    return req


# ---------------------------------------------------------------------------------------------
# Thin adapters: write the fault state into a cluster (kubernetes.client.CoreV1Api)


def pods_matching(core: Any, selector: PodSelector) -> list[Any]:
    """Engine pods (app.kubernetes.io/component=engine) a selector picks."""
    from deepseek_operator import labels as L

    sel = ",".join(
        [f"{L.COMPONENT}={L.ENGINE_COMPONENT}"]
        + [f"{k}={v}" for k, v in sorted(selector.labels.items())]
    )
    if selector.namespace:
        pods = core.list_namespaced_pod(selector.namespace, label_selector=sel).items
    else:
        pods = core.list_pod_for_all_namespaces(label_selector=sel).items
    zones: dict[str, str] = {}
    if selector.zone is not None:
        for n in core.list_node().items:
            zones[n.metadata.name] = (n.metadata.labels or {}).get(
                "topology.kubernetes.io/zone", ""
            )
    return [
        p
        for p in pods
        if selector.matches(
            p.metadata.namespace,
            p.metadata.name,
            p.metadata.labels or {},
            p.spec.node_name or "",
            zones.get(p.spec.node_name or "", ""),
        )
    ]


def apply_fault_request(core: Any, req: FaultRequest) -> list[str]:
    """Annotate the pods a request picks; returns their `namespace/name`."""
    done = []
    for p in pods_matching(core, req.selector):
        current = faults_from_annotations(p.metadata.annotations)
        patch = {"metadata": {"annotations": annotations_for(req.apply(current))}}
        core.patch_namespaced_pod(p.metadata.name, p.metadata.namespace, patch)
        done.append(f"{p.metadata.namespace}/{p.metadata.name}")
    return done


def set_zone_down(core: Any, zone: str, down: bool = True) -> dict[str, list[str]]:
    """Take a zone's nodes away (down=True) or give them back. Taking away cordons and taints
    every node of the zone, marks it for the fleet (whose replicas there crash at once) and
    deletes every pod bound to those nodes with no grace period."""
    nodes = core.list_node(label_selector=f"topology.kubernetes.io/zone={zone}").items
    names = []
    for n in nodes:
        raw = core.api_client.sanitize_for_serialization(n)
        core.patch_node(n.metadata.name, zone_down_node_patch(raw, down))
        names.append(n.metadata.name)
    deleted = []
    if down:
        for name in names:
            pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={name}").items
            for p in pods:
                try:
                    core.delete_namespaced_pod(
                        p.metadata.name, p.metadata.namespace, grace_period_seconds=0
                    )
                except Exception as e:  # already gone
                    if getattr(e, "status", None) != 404:
                        raise
                deleted.append(f"{p.metadata.namespace}/{p.metadata.name}")
    return {"nodes": names, "deletedPods": deleted}
