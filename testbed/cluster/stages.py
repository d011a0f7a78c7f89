"""kwok Stage configuration of the local cluster: how simulated kubelets move pods and nodes.

Pure functions that return the Stage objects kwok loads from its --config file. kwok picks, for
every change of a pod, one stage whose selector matches (at random if several do), so the
selectors below partition the pod states: exactly one stage matches a pod that needs to move,
none or the no-op `steady` stage matches one that does not. The partition is written as
conditions in disjunctive normal form; one kwok Stage is emitted per conjunction.

Pod classes:
  engine   labels app.kubernetes.io/component=engine (or =router, =router-batch) and
           serving.deepseek.dev/deployment set, in a cluster with the simulated fleet, and no
           `sim.deepseek.dev/fleet: "false"` pod annotation (set it in a pod template to opt
           out). The fleet plays their container runtime: a simulated vLLM for engines, the real
           vllm-router binary for routers (the class is named after engines; both move alike).
  test     a Helm test hook (helm.sh/hook: test or test-success), in a cluster with the
           simulated fleet: the fleet's hook runner runs its command (testbed/sim/hooks.py).
  job      owned by a Job, or another Helm hook: runs to completion after the start delay.
  ordinary everything else.

Lifecycle:
  every pod      scheduled -> Running at once with a pod IP from its node's pod CIDR, not Ready
  ordinary       -> Ready at startTime + start delay (the annotation
                    sim.deepseek.dev/start-delay-seconds overrides the cluster's default);
                    deleted -> removed at once
  job            -> Succeeded at startTime + start delay
  test           -> Succeeded once annotation sim.deepseek.dev/exit-code="0", Failed on any
                    other code (the hook runner sets it when the command exits; its output's
                    tail, sim.deepseek.dev/output, becomes the termination message)
  engine         -> Ready once annotation sim.deepseek.dev/engine-ready="true" (the fleet sets it
                    when its simulated engine listens, or its router passes the readiness
                    probe), back to not Ready if it is removed;
                    deleted -> not Ready, removed once sim.deepseek.dev/drained="true" or when
                    the grace period ends (deletionTimestamp), whichever comes first
  `steady`       a no-op for pods that need nothing: it makes a restarted kwok re-reserve the
                 pod IPs in use, so new pods never get a running pod's IP.
Readiness gates are not modelled. Nodes: Ready at once, then heartbeats (kwok also renews the
node leases the node lifecycle controller watches).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from deepseek_operator import labels

from ..labels import (
    ROUTER_COMPONENTS,
    SIM_DRAINED,
    SIM_ENGINE_READY,
    SIM_EXIT_CODE,
    SIM_OUTPUT,
    TEST_HOOKS,
)

FLEET_ANNOTATION = "sim.deepseek.dev/fleet"  # "false": no simulated fleet for this pod
START_DELAY_ANNOTATION = "sim.deepseek.dev/start-delay-seconds"


@dataclass(frozen=True)
class Cond:
    """One kwok selector expression: a jq `key` on the object, an operator, values."""

    key: str
    op: str  # In | NotIn | Exists | DoesNotExist
    values: tuple[str, ...] = ()

    def to_kwok(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "operator": self.op}
        if self.values:
            out["values"] = list(self.values)
        return out


Term = tuple[Cond, ...]  # conjunction
DNF = tuple[Term, ...]  # disjunction of conjunctions

TRUE: DNF = ((),)
FALSE: DNF = ()


def _c(key: str, op: str, *values: str) -> DNF:
    return ((Cond(key, op, tuple(values)),),)


def all_of(*parts: DNF) -> DNF:
    """Conjunction of DNFs (distributes over the disjunctions)."""
    out: list[Term] = []
    for combo in itertools.product(*parts):
        out.append(tuple(c for term in combo for c in term))
    return tuple(out)


def any_of(*parts: DNF) -> DNF:
    """Disjunction of DNFs; callers keep the parts mutually exclusive."""
    return tuple(t for p in parts for t in p)


def _label(name: str) -> str:
    return f'.metadata.labels["{name}"]'


def _annotation(name: str) -> str:
    return f'.metadata.annotations["{name}"]'


_READY = '.status.conditions.[] | select( .type == "Ready" ) | .status'

DELETING = _c(".metadata.deletionTimestamp", "Exists")
NOT_DELETING = _c(".metadata.deletionTimestamp", "DoesNotExist")
NO_FINALIZERS = _c(".metadata.finalizers", "DoesNotExist")
HAS_IP = _c(".status.podIP", "Exists")
NO_IP = _c(".status.podIP", "DoesNotExist")
RUNNING = _c(".status.phase", "In", "Running")
READY = _c(_READY, "In", "True")
NOT_READY = _c(_READY, "NotIn", "True")
ENGINE_READY = _c(_annotation(SIM_ENGINE_READY), "In", "true")
ENGINE_NOT_READY = _c(_annotation(SIM_ENGINE_READY), "NotIn", "true")
DRAINED = _c(_annotation(SIM_DRAINED), "In", "true")
NOT_DRAINED = _c(_annotation(SIM_DRAINED), "NotIn", "true")

# The components whose pods the fleet plays.
PLAYED_COMPONENTS = (labels.ENGINE_COMPONENT, *ROUTER_COMPONENTS)
_COMPONENT_ENGINE = _c(_label(labels.COMPONENT), "In", *PLAYED_COMPONENTS)
_COMPONENT_OTHER = _c(_label(labels.COMPONENT), "NotIn", *PLAYED_COMPONENTS)
_HAS_DSD = _c(_label(labels.DEPLOYMENT), "Exists")
_NO_DSD = _c(_label(labels.DEPLOYMENT), "DoesNotExist")
_FLEET_ON = _c(_annotation(FLEET_ANNOTATION), "NotIn", "false")
_FLEET_OFF = _c(_annotation(FLEET_ANNOTATION), "In", "false")
_JOB_OWNED = _c(".metadata.ownerReferences.[].kind", "In", "Job")
_NOT_JOB_OWNED = _c(".metadata.ownerReferences.[].kind", "NotIn", "Job")
_HOOK = _c(_annotation("helm.sh/hook"), "Exists")
_NO_HOOK = _c(_annotation("helm.sh/hook"), "DoesNotExist")
_TEST_HOOK = _c(_annotation("helm.sh/hook"), "In", *TEST_HOOKS)
_NOT_TEST_HOOK = _c(_annotation("helm.sh/hook"), "NotIn", *TEST_HOOKS)
EXITED = _c(_annotation(SIM_EXIT_CODE), "Exists")


@dataclass(frozen=True)
class PodClasses:
    """The pod classes as mutually exclusive DNFs covering every pod."""

    engine: DNF
    job: DNF
    ordinary: DNF
    test: DNF = FALSE


def pod_classes(fleet: bool) -> PodClasses:
    if fleet:
        engine = all_of(_COMPONENT_ENGINE, _HAS_DSD, _FLEET_ON)
        not_engine = any_of(
            _COMPONENT_OTHER,
            all_of(_COMPONENT_ENGINE, _NO_DSD),
            all_of(_COMPONENT_ENGINE, _HAS_DSD, _FLEET_OFF),
        )
    else:
        engine, not_engine = FALSE, TRUE
    if fleet:  # the fleet's hook runner runs Helm test pods; other hooks are jobs
        test = all_of(not_engine, _TEST_HOOK)
        job_like = all_of(_NOT_TEST_HOOK, any_of(_JOB_OWNED, all_of(_NOT_JOB_OWNED, _HOOK)))
    else:
        test, job_like = FALSE, any_of(_JOB_OWNED, all_of(_NOT_JOB_OWNED, _HOOK))
    return PodClasses(
        engine=engine,
        job=all_of(not_engine, job_like),
        ordinary=all_of(not_engine, _NOT_JOB_OWNED, _NO_HOOK),
        test=test,
    )


# --- status templates (Go text/template rendered by kwok; funcs: Now, Quote, PodIPWith, ...) ---

_START = """\
{{ $now := Now }}
{{ $host := NodeIPWith .spec.nodeName }}
{{ $ip := PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) \
( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
phase: Running
startTime: {{ $now | Quote }}
hostIP: {{ $host | Quote }}
hostIPs:
- ip: {{ $host | Quote }}
podIP: {{ $ip | Quote }}
podIPs:
- ip: {{ $ip | Quote }}
conditions:
- type: PodReadyToStartContainers
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: Initialized
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: ContainersReady
  status: "False"
  reason: ContainersNotReady
  message: containers are starting
  lastTransitionTime: {{ $now | Quote }}
- type: Ready
  status: "False"
  reason: ContainersNotReady
  message: containers are starting
  lastTransitionTime: {{ $now | Quote }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: false
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
{{ with .spec.initContainers }}
initContainerStatuses:
{{ range . }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: true
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
{{ end }}
"""


# containerStatuses has no merge key, so a patch replaces the whole list: every template that
# touches it writes complete entries (the containers started at the pod's startTime).
def _container_statuses(ready: bool) -> str:
    flag = "true" if ready else "false"
    return f"""\
containerStatuses:
{{{{ range .spec.containers }}}}
- name: {{{{ .name | Quote }}}}
  image: {{{{ .image | Quote }}}}
  imageID: ""
  ready: {flag}
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{{{ $.status.startTime | Quote }}}}
{{{{ end }}}}
"""


def _readiness(ready: bool, reason: str, message: str) -> str:
    status = "True" if ready else "False"
    return f"""\
{{{{ $now := Now }}}}
conditions:
- type: ContainersReady
  status: "{status}"
  reason: "{reason}"
  message: "{message}"
  lastTransitionTime: {{{{ $now | Quote }}}}
- type: Ready
  status: "{status}"
  reason: "{reason}"
  message: "{message}"
  lastTransitionTime: {{{{ $now | Quote }}}}
""" + _container_statuses(ready)


_COMPLETE = """\
{{ $now := Now }}
phase: Succeeded
conditions:
- type: ContainersReady
  status: "False"
  reason: PodCompleted
  lastTransitionTime: {{ $now | Quote }}
- type: Ready
  status: "False"
  reason: PodCompleted
  lastTransitionTime: {{ $now | Quote }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: false
  started: false
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $.status.startTime | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
"""

# The hook runner's exit code decides the phase; its output's tail is the termination message.
_EXITED = f"""\
{{{{ $now := Now }}}}
{{{{ $code := index .metadata.annotations "{SIM_EXIT_CODE}" }}}}
{{{{ $out := or ( index .metadata.annotations "{SIM_OUTPUT}" ) "" }}}}
phase: {{{{ if eq $code "0" }}}}Succeeded{{{{ else }}}}Failed{{{{ end }}}}
conditions:
- type: ContainersReady
  status: "False"
  reason: PodCompleted
  lastTransitionTime: {{{{ $now | Quote }}}}
- type: Ready
  status: "False"
  reason: PodCompleted
  lastTransitionTime: {{{{ $now | Quote }}}}
containerStatuses:
{{{{ range .spec.containers }}}}
- name: {{{{ .name | Quote }}}}
  image: {{{{ .image | Quote }}}}
  imageID: ""
  ready: false
  started: false
  restartCount: 0
  state:
    terminated:
      exitCode: {{{{ $code }}}}
      reason: {{{{ if eq $code "0" }}}}Completed{{{{ else }}}}Error{{{{ end }}}}
      message: {{{{ $out | Quote }}}}
      startedAt: {{{{ $.status.startTime | Quote }}}}
      finishedAt: {{{{ $now | Quote }}}}
{{{{ end }}}}
"""

# A status the pod already has: kwok compares before patching, so this writes nothing, but
# playing it re-reserves the pod's IP in a restarted kwok's pool.
_NOOP = "phase: Running\n"

_NODE_CONDITIONS = """\
{{ $now := Now }}
{{ $since := or .metadata.creationTimestamp $now }}
phase: Running
conditions:
{{ range NodeConditions }}
- type: {{ .type | Quote }}
  status: {{ .status | Quote }}
  reason: {{ .reason | Quote }}
  message: {{ .message | Quote }}
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $since | Quote }}
{{ end }}
"""


def _start_delay_from(default_s: float) -> dict[str, Any]:
    """Delay until startTime + start delay, so that updates of the pod during the delay (which
    make kwok re-plan) do not restart it. kwok turns an RFC 3339 time into `time - now`."""
    expr = (
        f'((.metadata.annotations["{START_DELAY_ANNOTATION}"] // "{default_s:g}") | tonumber) '
        "as $d | .status.startTime | fromdateiso8601 + $d | todateiso8601"
    )
    return {
        "durationMilliseconds": int(default_s * 1000),
        "durationFrom": {"expressionFrom": expr},
    }


def _stage(
    name: str, kind: str, dnf: DNF, next_: dict[str, Any], delay: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    out = []
    for i, term in enumerate(dnf):
        spec: dict[str, Any] = {
            "resourceRef": {"apiGroup": "v1", "kind": kind},
            "selector": {"matchExpressions": [c.to_kwok() for c in term]},
            "next": next_,
        }
        if delay is not None:
            spec["delay"] = delay
        out.append(
            {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "Stage",
                "metadata": {"name": name if len(dnf) == 1 else f"{name}-{i + 1}"},
                "spec": spec,
            }
        )
    return out


@dataclass(frozen=True)
class PodStage:
    """A pod stage before it is split into kwok Stages: name, selector, what it does."""

    name: str
    when: DNF
    next: dict[str, Any]
    delay: dict[str, Any] | None = None


def pod_stages(*, start_delay_s: float, fleet: bool) -> list[PodStage]:
    """The pod lifecycle above, as named stages with mutually exclusive selectors."""
    if start_delay_s < 0:
        raise ValueError("start delay must be >= 0")
    cls = pod_classes(fleet)
    live_started = all_of(NOT_DELETING, HAS_IP, RUNNING)
    ready = {"statusTemplate": _readiness(True, "", "")}
    unready = {
        "statusTemplate": _readiness(False, "ContainersNotReady", "containers with unready status")
    }
    delay = _start_delay_from(start_delay_s)
    stages = [
        PodStage(
            "pod-start",
            all_of(NOT_DELETING, NO_IP),
            {
                "statusTemplate": _START,
                "event": {"type": "Normal", "reason": "Started", "message": "Started containers"},
            },
        ),
        PodStage("pod-ready", all_of(cls.ordinary, live_started, NOT_READY), ready, delay),
        PodStage(
            "pod-steady",
            any_of(
                all_of(cls.ordinary, live_started, READY),
                all_of(cls.engine, live_started, ENGINE_READY, READY),
                all_of(cls.engine, live_started, ENGINE_NOT_READY, NOT_READY),
            ),
            {"statusTemplate": _NOOP},
        ),
        PodStage(
            "job-complete", all_of(cls.job, live_started), {"statusTemplate": _COMPLETE}, delay
        ),
        PodStage(
            "pod-delete",
            all_of(
                DELETING,
                NO_FINALIZERS,
                any_of(cls.ordinary, cls.job, cls.test, all_of(cls.engine, NO_IP)),
            ),
            {"delete": True},
        ),
    ]
    if fleet:
        stages.append(
            PodStage(
                "test-exited", all_of(cls.test, live_started, EXITED), {"statusTemplate": _EXITED}
            )
        )
    if fleet:
        engine_deleting = all_of(cls.engine, DELETING, HAS_IP)
        stages += [
            PodStage(
                "engine-ready", all_of(cls.engine, live_started, ENGINE_READY, NOT_READY), ready
            ),
            PodStage(
                "engine-unready", all_of(cls.engine, live_started, ENGINE_NOT_READY, READY), unready
            ),
            PodStage(
                "engine-terminating",
                all_of(engine_deleting, READY),
                {
                    "statusTemplate": _readiness(False, "Terminating", "pod is terminating"),
                },
            ),
            PodStage(
                "engine-drained",
                all_of(engine_deleting, NOT_READY, NO_FINALIZERS, DRAINED),
                {"delete": True},
            ),
            PodStage(
                "engine-grace-expired",
                all_of(engine_deleting, NOT_READY, NO_FINALIZERS, NOT_DRAINED),
                {"delete": True},
                # deletionTimestamp = time of the delete request + grace period
                {
                    "durationMilliseconds": 0,
                    "durationFrom": {"expressionFrom": ".metadata.deletionTimestamp"},
                },
            ),
        ]
    return stages


def node_stages() -> list[dict[str, Any]]:
    not_ready = _c(_READY, "NotIn", "True")
    ready = _c(_READY, "In", "True")
    return [
        *_stage("node-initialize", "Node", not_ready, {"statusTemplate": _NODE_CONDITIONS}),
        # A kubelet reports its status every 5 minutes when nothing changes (leases carry the
        # liveness in between).
        *_stage(
            "node-heartbeat",
            "Node",
            ready,
            {"statusTemplate": _NODE_CONDITIONS},
            {"durationMilliseconds": 300_000, "jitterDurationMilliseconds": 330_000},
        ),
    ]


def kwok_stages(*, start_delay_s: float, fleet: bool) -> list[dict[str, Any]]:
    """Every Stage object of the cluster's kwok --config."""
    pods = [
        s
        for st in pod_stages(start_delay_s=start_delay_s, fleet=fleet)
        for s in _stage(st.name, "Pod", st.when, st.next, st.delay)
    ]
    return [*node_stages(), *pods]


# --- evaluation of the selectors on a plain pod dict (for the tests of the partition) -------


def _query(key: str, obj: dict[str, Any]) -> list[Any]:
    """The few jq paths used above, evaluated on a dict (None values dropped)."""
    if key == _READY:
        conds = obj.get("status", {}).get("conditions") or []
        return [c.get("status") for c in conds if c.get("type") == "Ready"]
    if key == ".metadata.ownerReferences.[].kind":
        return [r.get("kind") for r in obj.get("metadata", {}).get("ownerReferences") or []]
    for prefix, section in (
        (".metadata.labels[", "labels"),
        (".metadata.annotations[", "annotations"),
    ):
        if key.startswith(prefix):
            name = key[len(prefix) + 1 : -2]
            value = (obj.get("metadata", {}).get(section) or {}).get(name)
            return [] if value is None else [value]
    cur: Any = obj
    for part in key.strip(".").split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return [] if cur in (None, [], {}) else [cur]


def matches(term: Term, obj: dict[str, Any]) -> bool:
    """Whether a conjunction matches, with kwok's semantics for missing values."""
    for c in term:
        got = [str(v).lower() if isinstance(v, bool) else v for v in _query(c.key, obj)]
        ok = {
            "In": any(v in c.values for v in got),
            "NotIn": not any(v in c.values for v in got),
            "Exists": bool(got),
            "DoesNotExist": not got,
        }[c.op]
        if not ok:
            return False
    return True


def matching_stages(stages: list[PodStage], pod: dict[str, Any]) -> list[str]:
    """Names of the stages (one per matching conjunction) a pod matches."""
    return [s.name for s in stages for term in s.when if matches(term, pod)]
