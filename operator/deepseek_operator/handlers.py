"""Kopf wiring: watch events and timers -> pure decisions -> adapters.

Each DeepSeekDeployment gets one daemon (its reconcile loop). Kopf event handlers only wake
that loop, so a burst of events costs one reconcile, and all decisions for one resource happen
in one place, in order. Everything the loop needs between iterations is read back from the
cluster (the object's status and the objects it owns): the operator can restart at any moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import kopf
from kubernetes.client import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from pydantic import ValidationError

from . import failover, traffic
from . import labels as L
from . import propagation as P
from . import quantization as Q
from .adapters import metrics
from .adapters.events import EventRecorder, ObjectRef
from .adapters.kube import Kube
from .adapters.prometheus import SignalPoller, Snapshot
from .adapters.regions import (
    HomeApiUnavailable,
    RegionReader,
    RegionUnreachable,
    prometheus_view,
)
from .adapters.store import DSD_KIND
from .api.base import GROUP, PLURAL, VERSION
from .api.resource import DeepSeekDeployment, validation_message
from .api.spec import RegionSpec
from .api.status import (
    Colour,
    Condition,
    ConditionType,
    DeepSeekDeploymentStatus,
    OwnRecordStatus,
    Phase,
    RegionStatus,
    ScalingState,
)
from .desired import (
    MonitoringSettings,
    admission_config_map,
    admission_config_map_name,
    batch_router_pool,
    deployment_name,
    main_router_pool,
    render,
    router_change_event,
    template_hash,
)
from .patches import merge_patch
from .reconcile import Observed, Outcome, reconcile, set_condition, slo_event, with_scaling
from .rollout import TRANSITIONING, Event, RolloutPhase
from .scaling import (
    ScalingDecision,
    ScalingInputs,
    decide,
    learned_admission,
    replica_capacity,
    replicas_to_write,
    scale_event,
    tpot_aim,
)
from .signals import Signal
from .warmup import warm_up_pods

log = logging.getLogger("deepseek_operator")

RESYNC_SECONDS = 60.0  # a full reconcile at least this often, even without events
ROLLOUT_TICK_SECONDS = 5.0  # while a rollout is in flight


@dataclass
class Runtime:
    """Process-wide adapters and settings, set once by operator_main before Kopf starts."""

    kube: Kube
    events: EventRecorder
    poller: SignalPoller
    prometheus_url: str | None
    signal_interval: float = 10.0
    regions: RegionReader | None = None
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)
    wakeups: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    # (namespace, name) -> (generation, unix time this process first saw it): sync lag
    generation_seen: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    loop: asyncio.AbstractEventLoop | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Reconciles run here (they mostly wait for the API server); the signal poll has a thread of
    # its own, so that a thousand queued reconciles do not delay the metrics they decide on.
    reconcile_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(16, thread_name_prefix="reconcile")
    )
    poll_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="signals")
    )


RUNTIME: Runtime | None = None


def runtime() -> Runtime:
    if RUNTIME is None:
        raise RuntimeError("operator runtime not configured")
    return RUNTIME


def wake(namespace: str | None, name: str | None) -> None:
    """Ask a DeepSeekDeployment's loop to reconcile now. Called on the event loop (the event
    handlers are coroutines: asyncio.Event is not thread-safe, and a set() from a worker thread
    would not wake the loop until something else did)."""
    if not namespace or not name:
        return
    rt = runtime()
    ev = rt.wakeups.get((namespace, name))
    if ev is not None:
        ev.set()


# ---------------------------------------------------------------------------------------------
# One reconcile (runs in a worker thread)


def _ref(obj: dict[str, Any]) -> ObjectRef:
    m = obj["metadata"]
    return ObjectRef(m["namespace"], m["name"], m.get("uid"))


def _invalid_by_schema(rt: Runtime, obj: dict[str, Any], err: ValidationError, now: float) -> None:
    """The object passed the API server's schema but not the models (e.g. an older CRD is
    installed): say which field, change nothing."""
    message = validation_message(err)  # spec.x.y (or status.x.y): what is wrong
    try:
        old = DeepSeekDeploymentStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        old = DeepSeekDeploymentStatus()
    conds = set_condition(
        list(old.conditions),
        ConditionType.INVALID_SPEC,
        True,
        "SchemaViolation",
        message,
        obj["metadata"].get("generation"),
        now,
    )
    new = old.model_copy(
        update={
            "conditions": conds,
            "phase": old.phase or Phase.FAILED,
            "observed_generation": obj["metadata"].get("generation"),
        }
    )
    patch = merge_patch(old.to_k8s(), new.to_k8s())
    if patch:
        rt.kube.patch_status(obj["metadata"]["namespace"], obj["metadata"]["name"], patch)
        rt.events.record(_ref(obj), "Warning", "SchemaViolation", message)


def reconcile_once(namespace: str, name: str) -> float | None:
    """Read, decide, apply, report. Returns seconds until the next reconcile is due."""
    rt = runtime()
    t0 = time.monotonic()
    now = time.time()
    obj = rt.kube.get_dsd(namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None
    try:
        dsd = DeepSeekDeployment.from_k8s(obj)
    except ValidationError as e:
        _invalid_by_schema(rt, obj, e, now)
        return RESYNC_SECONDS

    observed, owned = rt.kube.observe(dsd)
    url = dsd.spec.monitoring.prometheus_url or rt.prometheus_url
    snap = rt.poller.latest(url) if url else None
    active = dsd.status.active_colour or Colour.BLUE
    preview_signals = snap.signals(namespace, name, active.other().value) if snap else None

    ref = _ref(obj)
    current = dsd.spec.desired_replicas()
    decided: list[Event] = []  # decisions kept in the status: said after it is written
    admission = dsd.spec.engine.admission
    learned_gate = admission is not None and admission.max_running is None
    decision = None
    if _autoscale_due(dsd, now):
        decision = _autoscale(dsd, observed, snap, url, now)
        if learned_gate:
            gate_state, learned = learned_admission(dsd.spec.scaling, decision.state)
            if learned is not None:
                decision = replace(decision, state=gate_state)
                cm = admission_config_map_name(name)
                decided.append(
                    Event(
                        "Normal", "AdmissionLimitLearned", f"{learned}; published in ConfigMap {cm}"
                    )
                )
        if replicas_to_write(dsd.spec.replicas, decision) is not None:
            rt.kube.set_dsd_replicas(
                namespace, name, decision.replicas, unset=dsd.spec.replicas is None
            )
            dsd = dsd.model_copy(
                update={"spec": dsd.spec.model_copy(update={"replicas": decision.replicas})}
            )
            if (scaled := scale_event(decision, current)) is not None:
                rt.events.record(ref, "Normal", *scaled)
        metrics.SCALING_DECISIONS.labels(namespace, name, decision.direction, decision.reason).inc()
        log.info(
            "scaling_decision namespace=%s name=%s from=%d to=%d reason=%s message=%r",
            namespace,
            name,
            current,
            decision.replicas,
            decision.reason,
            decision.message,
        )

    quant = _quantize(dsd, observed, snap, decision, now)
    if quant is not None and quant.switched and quant.reason == Q.SWITCH_ROLLED_BACK:
        decided.append(Event("Warning", "QuantizationSwitchRolledBack", quant.message))
        log.info(
            "quantization_switch_rolled_back namespace=%s name=%s serving=%s",
            namespace,
            name,
            quant.target,
        )
    elif quant is not None and quant.switched:
        before = dsd.status.quantization.target if dsd.status.quantization else None
        way = Q.direction(dsd.spec.quantization, before or quant.state.served or "", quant.target)
        decided.append(
            Event("Warning" if way == "down" else "Normal", "QuantizationSwitched", quant.message)
        )
        metrics.QUANTIZATION_SWITCHES.labels(namespace, name, way).inc()
        log.info(
            "quantization_switch namespace=%s name=%s to=%s reason=%s message=%r",
            namespace,
            name,
            quant.target,
            quant.reason,
            quant.message,
        )
    q_state = quant.state if quant is not None else dsd.status.quantization
    dsd = _with_mode(dsd, Q.effective_mode(dsd.spec.quantization, q_state))

    outcome = reconcile(dsd, observed, now, preview_signals)
    if decision is not None:
        if (flip := slo_event(dsd.status, decision)) is not None:
            decided.append(flip)
        outcome = replace(
            outcome,
            status=with_scaling(outcome.status, decision, current, now, dsd.metadata.generation),
        )
    if quant is not None:
        outcome = replace(
            outcome, status=outcome.status.model_copy(update={"quantization": q_state})
        )

    next_check = failover.check_due(
        dsd.spec.regions, dsd.spec.failover, list(outcome.status.regions), now
    )
    reads: dict[str, Any] = {}  # member regions' copies, read once in this reconcile
    due_check = next_check is not None and next_check <= 0.25
    if due_check:
        outcome = replace(
            outcome,
            status=_check_regions(rt, dsd, observed, snap, url, outcome, now, reads, decided),
        )
        next_check = float(dsd.spec.failover.health_check_interval_seconds)
    elif not dsd.spec.regions and outcome.status.regions:
        outcome = replace(outcome, status=_without_regions(dsd, outcome.status))
    if _copies_due(dsd, outcome.status, checked=next_check is not None and due_check):
        outcome = replace(outcome, status=_sync_copies(rt, obj, dsd, outcome.status, now, reads))
    if dsd.spec.failover.dns is not None or _has_condition(
        outcome.status, ConditionType.DNS_PUBLISHED
    ):
        outcome = replace(outcome, status=_publish_dns(rt, dsd, outcome.status, now))
    own_check: float | None = None
    if dsd.spec.region_record is not None or outcome.status.own_record is not None:
        own, own_check = _publish_own_record(rt, dsd, observed, snap, url, outcome.status, now)
        outcome = replace(outcome, status=own)

    if learned_gate:
        # the engine pods' gate reads it from a mounted volume (empty: no limit learned yet)
        gate_limit = (outcome.status.scaling or ScalingState()).admission_limit
        try:
            rt.kube.apply_config_map(admission_config_map(dsd, gate_limit))
        except ApiException as e:  # e.g. a chart from before the rule for ConfigMaps
            cm = admission_config_map_name(name)
            log.warning(
                "admission_limit_not_published namespace=%s name=%s: %s", namespace, name, e
            )
            rt.events.record(
                ref,
                "Warning",
                "AdmissionLimitNotPublished",
                f"could not write ConfigMap {cm} ({e.status} {e.reason}): the engine pods' gate "
                "keeps the limit it has; the operator's RBAC needs create and patch on configmaps",
            )
    if outcome.plan is not None:
        changes = rt.kube.apply(render(dsd, outcome.plan, rt.monitoring), owned)
        for t in outcome.targets:
            if not t.render_spec:
                ch = rt.kube.scale_deployment(
                    namespace, deployment_name(name, t.colour), t.replicas, owned
                )
                if ch is not None:
                    changes.append(ch)
        for ch in changes:
            verb = ch.verb.capitalize()
            msg = f"{ch.verb} {ch.kind} {ch.name}" + (f" ({ch.detail})" if ch.detail else "")
            rt.events.record(ref, "Normal", verb, msg)
            if (said := router_change_event(name, ch.kind, ch.name, ch.verb)) is not None:
                rt.events.record(ref, "Normal", *said)

    step = outcome.rollout
    if step is not None:
        if step.warmup_preview and step.state.preview_colour is not None:
            _start_warmup(rt, dsd, step.state.preview_colour, step.warmup_preview)
        consume = [
            k
            for k, flag in ((L.PROMOTE, step.consume_promote), (L.ABORT, step.consume_abort))
            if flag
        ]
        if consume:
            rt.kube.remove_annotations(namespace, name, consume)
        if step.result is not None:
            metrics.ROLLOUTS.labels(namespace, name, step.result).inc()
    _write_status(rt, obj, dsd.status, outcome.status)
    # The decisions kept in the status (mode switches, region states and weights, rollout
    # steps) are said once that status is written: a reconcile that fails before it decides
    # again from the same status and says it then, once.
    for ev in [*decided, *outcome.events]:
        rt.events.record(ref, ev.type, ev.reason, ev.message)
    _export(dsd, outcome)
    metrics.PENDING_PODS.labels(namespace, name, "Unschedulable").set(observed.unschedulable_pods)
    took = time.monotonic() - t0
    metrics.RECONCILE_DURATION.labels("reconcile").observe(took)
    metrics.LAST_RECONCILE.labels(namespace, name).set(now)
    log.info(
        "reconciled namespace=%s name=%s phase=%s active=%s ready=%s/%s rollout=%s changes=%d "
        "seconds=%.4f",
        namespace,
        name,
        outcome.status.phase,
        outcome.status.active_colour,
        outcome.status.ready_replicas,
        outcome.status.desired_replicas,
        outcome.status.rollout.phase if outcome.status.rollout else None,
        len(outcome.events),
        took,
    )
    # From the status just written: after a decision the next one is a whole interval away (the
    # observed status still holds the previous decision's time, which made it due at once and
    # cost a second reconcile right after every decision).
    next_scale = _next_autoscale_in(dsd, now, outcome.status)
    for due_in in (next_check, own_check):
        if due_in is not None:
            next_scale = due_in if next_scale is None else min(next_scale, due_in)
    in_flight = step is not None and (
        step.state.phase in TRANSITIONING or step.state.phase is RolloutPhase.SCALING_DOWN
    )
    if in_flight:
        due = outcome.requeue_after if outcome.requeue_after is not None else ROLLOUT_TICK_SECONDS
        due = max(0.5, min(ROLLOUT_TICK_SECONDS, due))
    elif outcome.status.ready_replicas < outcome.status.desired_replicas:
        due = ROLLOUT_TICK_SECONDS
    else:
        due = RESYNC_SECONDS
    return min(due, next_scale) if next_scale is not None else due


def _autoscale_due(dsd: DeepSeekDeployment, now: float) -> bool:
    nxt = _next_autoscale_in(dsd, now)
    return nxt is not None and nxt <= 0.25


def _next_autoscale_in(
    dsd: DeepSeekDeployment, now: float, status: DeepSeekDeploymentStatus | None = None
) -> float | None:
    """Seconds until the next autoscaling decision is due (None: autoscaling is off), from
    `status` (default: the observed one)."""
    sc = dsd.spec.scaling
    if not sc.enabled:
        return None
    st = dsd.status if status is None else status
    last = st.scaling.last_decision_time if st.scaling else None
    if last is None:
        return 0.0
    return max(0.0, last + sc.interval_seconds - now)


def _autoscale(
    dsd: DeepSeekDeployment, observed: Observed, snap: Snapshot | None, url: str | None, now: float
) -> ScalingDecision:
    active = dsd.status.active_colour or Colour.BLUE
    a_obs = observed.colour(active)
    signals = snap.signals(dsd.namespace, dsd.name, active.value) if snap is not None else None
    rollout = dsd.status.rollout
    inputs = ScalingInputs(
        replicas=dsd.spec.desired_replicas(),
        ready=a_obs.ready if a_obs.exists else 0,
        signals=signals,
        unschedulable=observed.unschedulable_pods,
        signal_age=signals.get(Signal.SAMPLE_AGE) if signals is not None else None,
        rollout_in_flight=rollout is not None and rollout.phase in {p.value for p in TRANSITIONING},
        colour=active.value,
        mode=dsd.status.mode,
        moe=dsd.spec.model.is_moe(),
        keep_replicas=Q.keeps_replicas(
            dsd.spec.quantization, dsd.status.mode, dsd.status.quantization
        ),
    )
    decision = decide(
        dsd.spec.scaling,
        inputs,
        dsd.status.scaling or ScalingState(),
        now,
        float(dsd.spec.scaling.interval_seconds),
    )
    if url is None and decision.reason == "MetricsMissing":
        decision = replace(
            decision,
            reason="NoPrometheus",
            message="no Prometheus to read signals from: start the operator with "
            "--prometheus-url or set spec.monitoring.prometheusUrl",
        )
    return decision


def _with_mode(dsd: DeepSeekDeployment, mode: str) -> DeepSeekDeployment:
    """The resource as rendered: quantization.mode set to the rung to serve."""
    q = dsd.spec.quantization
    if q.mode == mode:
        return dsd
    spec = dsd.spec.model_copy(update={"quantization": q.model_copy(update={"mode": mode})})
    return dsd.model_copy(update={"spec": spec})


def _quantize(
    dsd: DeepSeekDeployment,
    observed: Observed,
    snap: Snapshot | None,
    decision: ScalingDecision | None,
    now: float,
) -> Q.QuantizationDecision | None:
    """The quantization policy's decision, at the autoscaler's cadence (every reconcile when
    autoscaling is off), from the active colour's signals and the autoscaler's view. Free GPUs
    outside this resource are not observed (0): the policy counts only the GPUs its own pods
    hold, so it never steps up into a rung that does not fit."""
    spec = dsd.spec
    q = spec.quantization
    if decision is None and spec.scaling.enabled:
        return None
    active = dsd.status.active_colour or Colour.BLUE
    a_obs = observed.colour(active)
    served = observed.modes.get(active) or dsd.status.mode or q.current().name
    signals = snap.signals(dsd.namespace, dsd.name, active.value) if snap is not None else None
    vals = signals.values if signals is not None else {}
    state = dsd.status.quantization
    aim = tpot_aim(spec.scaling)
    model = dsd.status.scaling.capacity if dsd.status.scaling else None
    kv_target = spec.scaling.targets.kv_cache_usage
    learned = replica_capacity(
        model, active.value, dsd.status.mode, aim, kv_target, spec.model.is_moe()
    )
    if learned is not None:  # the autoscaler's learned capacity is the served rung's
        state = Q.learn_rung_capacity(state, served, learned.per_replica)
    rung = q.rung(served) or q.current()
    gpus = rung.gpus_per_replica or spec.resources.gpus_per_replica
    ready = a_obs.ready if a_obs.exists else 0
    rollout = dsd.status.rollout
    moving = rollout is not None and rollout.phase in {p.value for p in TRANSITIONING}
    target = Q.effective_mode(q, state)
    load = Q.load_view(decision, vals, ready, now)
    rolled_back = (
        not moving
        and rollout is not None
        and rollout.phase in (RolloutPhase.ROLLED_BACK.value, RolloutPhase.ABORTED.value)
        and rollout.failed_template_hash is not None
        and rollout.failed_template_hash
        == template_hash(dsd.name, _with_mode(dsd, target).spec, observed.facts.sleep_action)
    )
    inputs = Q.ModeInputs(
        served=served,
        replicas=spec.desired_replicas(),
        ready=ready,
        max_replicas=spec.scaling.max_replicas,
        wanted_replicas=decision.replicas if decision is not None else spec.desired_replicas(),
        scaling_limited=decision is not None and decision.limited is not None,
        free_gpus=0,
        held_gpus=ready * gpus,
        arrival_rate=load.arrival_rate,
        drain_s=load.drain_s,
        drain_idle_s=load.drain_idle_s,
        outlook=load.outlook,
        ttft_p99=vals.get(Signal.TTFT_P99),
        tpot_p99=vals.get(Signal.TPOT_P99),
        kv_cache_usage=vals.get(Signal.KV_CACHE_USAGE),
        cold_start_s=dsd.status.scaling.start_seconds if dsd.status.scaling else None,
        metrics_ok=signals is not None and (decision is None or decision.metrics_ok),
        transition_in_flight=moving or served != target,
        default_gpus_per_replica=spec.resources.gpus_per_replica,
        switch_rolled_back=rolled_back,
        kv_binds=learned.kv_binds if learned is not None else None,
    )
    return Q.decide_mode(q, spec.scaling.slo, inputs, state, now)


def _check_regions(
    rt: Runtime,
    dsd: DeepSeekDeployment,
    observed: Observed,
    snap: Snapshot | None,
    url: str | None,
    outcome: Outcome,
    now: float,
    reads: dict[str, Any],
    said: list[Event],
) -> DeepSeekDeploymentStatus:
    """One round of region health checks: observe (I/O), decide (pure), report. `reads`
    keeps this reconcile's reads of the member regions' copies (`_copy`); the decision's Events
    go to `said`."""
    ns, name = dsd.namespace, dsd.name
    status = outcome.status
    active = status.active_colour or Colour.BLUE
    probes: dict[str, failover.Probe] = {}
    for region in dsd.spec.regions:
        if region.kubeconfig_secret_ref is None:
            a_obs = observed.colour(active)
            purl = region.prometheus_url or url
            psnap = snap if purl == url else rt.poller.latest(purl) if purl else None
            obs = failover.Observation(
                ready=a_obs.ready if a_obs.exists else 0,
                desired=status.desired_replicas,
                **prometheus_view(purl, psnap, ns, name, active.value),
            )
        elif rt.regions is not None:
            try:
                obs = rt.regions.observation(ns, name, region, _copy(rt, ns, name, region, reads))
            except HomeApiUnavailable as e:
                # Not the region's failure: no verdict, it keeps its state (counted as a failed
                # check, a blip of this API server could fail over a region that serves).
                log.warning(
                    "region_not_checked namespace=%s name=%s region=%s reason=%r",
                    ns,
                    name,
                    region.name,
                    str(e),
                )
                continue
            except RegionUnreachable as e:
                obs = failover.Observation(error=str(e))
        else:  # pragma: no cover - always configured by operator_main
            continue
        probes[region.name] = failover.judge(obs)
    fo = failover.decide(dsd.spec.regions, dsd.spec.failover, list(status.regions), probes, now)
    ref = ObjectRef(ns, name, dsd.metadata.uid)
    # Said once the status that holds the decision is written (reconcile_once): a reconcile that
    # fails before that decides it again from the same status, and says it then.
    said.extend(fo.events)
    for r in fo.regions:
        healthy = failover.RegionState(r.state) is failover.RegionState.HEALTHY
        metrics.REGION_HEALTHY.labels(ns, name, r.name).set(1 if healthy else 0)
        metrics.REGION_WEIGHT.labels(ns, name, r.name).set(r.weight)
    for gone in {r.name for r in status.regions} - {r.name for r in fo.regions}:
        _forget_region(ns, name, gone)
        if any(r.name == gone and r.copy_state for r in status.regions):
            rt.events.record(
                ref,
                "Normal",
                "CopyKept",
                f"region {gone} left spec.regions: its copy there is kept and no longer synced "
                "(delete it there if it should stop serving)",
            )
    log.info(
        "regions_checked namespace=%s name=%s weights=%s states=%s",
        ns,
        name,
        fo.weights(),
        {r.name: r.state for r in fo.regions},
    )
    c = fo.condition
    conds = set_condition(
        list(status.conditions),
        ConditionType.REGIONS_HEALTHY,
        c.healthy,
        c.reason,
        c.message,
        dsd.metadata.generation,
        now,
    )
    return status.model_copy(update={"regions": fo.regions, "conditions": conds})


def _copy(
    rt: Runtime, ns: str, name: str, region: RegionSpec, reads: dict[str, Any]
) -> dict[str, Any] | None:
    """The region's copy, read once per reconcile (the health check and the sync both need
    it). Raises RegionUnreachable, also when the one read did."""
    assert rt.regions is not None
    if region.name not in reads:
        try:
            reads[region.name] = rt.regions.get_copy(ns, name, region)
        except RegionUnreachable as e:
            reads[region.name] = e
    got = reads[region.name]
    if isinstance(got, RegionUnreachable):
        raise got
    return got  # type: ignore[no-any-return]


def _copies_due(dsd: DeepSeekDeployment, status: DeepSeekDeploymentStatus, checked: bool) -> bool:
    """Sync the member regions' copies with each health check, and at once after a change."""
    remote = {r.name for r in dsd.spec.regions if r.kubeconfig_secret_ref is not None}
    if not remote:
        return False
    synced = {r.name: r.synced_generation for r in status.regions}
    return checked or any(synced.get(n) != dsd.metadata.generation for n in remote)


def _sync_copies(
    rt: Runtime,
    obj: dict[str, Any],
    dsd: DeepSeekDeployment,
    status: DeepSeekDeploymentStatus,
    now: float,
    reads: dict[str, Any],
) -> DeepSeekDeploymentStatus:
    """Create or update this resource's copy in each member region (decided by
    `propagation.plan`), and report it in status.regions[], RegionsSynced and Events."""
    if rt.regions is None:  # pragma: no cover - always configured by operator_main
        return status
    ns, name = dsd.namespace, dsd.name
    generation = int(dsd.metadata.generation or 0)
    key = (ns, name)
    seen = rt.generation_seen.get(key)
    if seen is None or seen[0] != generation:
        seen = rt.generation_seen[key] = (generation, now)
    ref = ObjectRef(ns, name, dsd.metadata.uid)
    by_name = {r.name: r for r in status.regions}
    raised = P.floors(list(dsd.spec.regions), list(status.regions))
    for region in dsd.spec.regions:
        if region.kubeconfig_secret_ref is None:
            continue
        floor = raised.get(region.name)
        try:
            existing = _copy(rt, ns, name, region, reads)
            weight = P.record_weight(region.name, list(status.regions), dsd.spec.failover.enabled)
            p = P.plan(obj, region, existing, floor, weight)
            if p.action is P.Action.CREATE:
                assert p.body is not None
                rt.regions.create_copy(region, p.body)
            elif p.action is P.Action.UPDATE:
                assert p.body is not None and existing is not None
                rt.regions.update_copy(
                    region,
                    existing,
                    p.body,
                    {
                        P.HOME_GENERATION: str(generation),
                        P.FLOOR: str(floor.replicas if floor is not None else 0),
                    },
                )
        except RegionUnreachable as e:
            p = P.Plan(P.Action.UNREACHABLE, f"region {region.name}: {e}")
        prev = by_name.get(region.name) or RegionStatus(name=region.name)
        if p.action in P.SYNCED:
            prev = prev.model_copy(
                update={"min_replicas_floor": floor.replicas if floor is not None else None}
            )
        by_name[region.name], ev = P.record(prev, p, generation, time.time(), seen[1])
        if ev is not None:
            rt.events.record(ref, ev.type, ev.reason, ev.message)
        if p.action is not P.Action.NONE:
            log.info(
                "region_copy namespace=%s name=%s region=%s action=%s message=%r",
                ns,
                name,
                region.name,
                p.action,
                p.message,
            )
    order = [r.name for r in dsd.spec.regions]
    regions = sorted(by_name.values(), key=lambda r: order.index(r.name) if r.name in order else 99)
    ok, reason, message = P.synced_condition(regions)
    conds = set_condition(
        list(status.conditions),
        ConditionType.REGIONS_SYNCED,
        ok,
        reason,
        message,
        dsd.metadata.generation,
        now,
    )
    return status.model_copy(update={"regions": regions, "conditions": conds})


def _has_condition(status: DeepSeekDeploymentStatus, type_: str) -> bool:
    return any(c.type == type_ for c in status.conditions)


def _publish_dns(
    rt: Runtime, dsd: DeepSeekDeployment, status: DeepSeekDeploymentStatus, now: float
) -> DeepSeekDeploymentStatus:
    """Keep the external-dns DNSEndpoint of spec.failover.dns in line with the region weights
    (decided by `traffic.decide`); written only when its records change. Reported in the
    DNSPublished condition and DNSRecordsUpdated Events. Without failover.dns any longer: the
    DNSEndpoint the operator made is deleted and the condition dropped."""
    ns, name, uid = dsd.namespace, dsd.name, dsd.metadata.uid
    ref = ObjectRef(ns, name, uid)
    before = next((c for c in status.conditions if c.type == ConditionType.DNS_PUBLISHED), None)

    def report(ok: bool, reason: str, message: str) -> DeepSeekDeploymentStatus:
        # A problem to act on is said once, when it starts (NoRegionInRotation has its
        # RegionUnhealthy Events already).
        if reason in traffic.NEEDS_ACTION and (before is None or before.reason != reason):
            rt.events.record(ref, "Warning", reason, message)
        conds = set_condition(
            list(status.conditions),
            ConditionType.DNS_PUBLISHED,
            ok,
            reason,
            message,
            dsd.metadata.generation,
            now,
        )
        return status.model_copy(update={"conditions": conds})

    try:
        if dsd.spec.failover.dns is None:
            current = rt.kube.get_dns_endpoint(ns, name) if rt.kube.dns_crd() else None
            if current is not None and traffic.owned(current, uid):
                rt.kube.delete_dns_endpoint(ns, name, current["metadata"]["uid"])
                rt.events.record(
                    ref,
                    "Normal",
                    traffic.UPDATED_EVENT,
                    f"failover.dns was removed: DNSEndpoint {name} deleted, its records withdrawn",
                )
            conds = [c for c in status.conditions if c.type != ConditionType.DNS_PUBLISHED]
            return status.model_copy(update={"conditions": conds})
        if not rt.kube.dns_crd():
            return report(False, traffic.CRD_MISSING, traffic.crd_missing_message())
        current = rt.kube.get_dns_endpoint(ns, name)
        if current is not None and not traffic.owned(current, uid):
            return report(False, traffic.NOT_OWNED, traffic.not_owned_message(name))
        d = traffic.decide(dsd.spec, list(status.regions), traffic.published_endpoints(current))
        if d.write and d.endpoints is not None:
            rt.kube.apply_dns_endpoint(traffic.dns_endpoint(name, ns, uid, d.endpoints))
            verb = "created" if current is None else "updated"
            rt.events.record(
                ref, "Normal", traffic.UPDATED_EVENT, f"DNSEndpoint {name} {verb}: {d.message}"
            )
            log.info("dns_published namespace=%s name=%s records=%r", ns, name, d.message)
        return report(d.published, d.reason, d.message)
    except (ApiException, ResourceNotFoundError) as e:
        why = f"{e.status} {e.reason}" if isinstance(e, ApiException) else str(e)
        log.warning("dns_failed namespace=%s name=%s error=%s", ns, name, why)
        return report(
            False,
            traffic.WRITE_FAILED,
            f"DNSEndpoint {name} could not be read or written: {why}",
        )


def _publish_own_record(
    rt: Runtime,
    dsd: DeepSeekDeployment,
    observed: Observed,
    snap: Snapshot | None,
    url: str | None,
    status: DeepSeekDeploymentStatus,
    now: float,
) -> tuple[DeepSeekDeploymentStatus, float | None]:
    """Self-fencing, in a member region (spec.regionRecord, written by the home): check this
    region's own engines every interval, and keep its own record in a DNSEndpoint in this
    cluster as `traffic.own_record` decides (written only when it changes; Event
    DNSRecordsUpdated). Without spec.regionRecord any longer: that DNSEndpoint is deleted.
    Returns the status and the seconds until the next own check."""
    ns, name, uid = dsd.namespace, dsd.name, dsd.metadata.uid
    ref = ObjectRef(ns, name, uid)
    rec = dsd.spec.region_record
    before = status.own_record
    try:
        if rec is None:
            current = rt.kube.get_dns_endpoint(ns, name) if rt.kube.dns_crd() else None
            if current is not None and traffic.owned(current, uid):
                rt.kube.delete_dns_endpoint(ns, name, current["metadata"]["uid"])
            return status.model_copy(update={"own_record": None}), None
        check = None
        if traffic.own_check_due(rec, before, now):
            # The check the home runs on its own region (_check_regions).
            colour = status.active_colour or Colour.BLUE
            a_obs = observed.colour(colour)
            check = failover.judge(
                failover.Observation(
                    ready=a_obs.ready if a_obs.exists else 0,
                    desired=status.desired_replicas,
                    **prometheus_view(url, snap, ns, name, colour.value),
                )
            )
        endpoints, own = traffic.own_record(rec, before, check, now)
        if rt.kube.dns_crd():
            current = rt.kube.get_dns_endpoint(ns, name)
            if current is not None and not traffic.owned(current, uid):
                own = own.model_copy(update={"message": traffic.not_owned_message(name)})
            elif traffic.published_endpoints(current) != endpoints:
                rt.kube.apply_dns_endpoint(traffic.dns_endpoint(name, ns, uid, endpoints))
                rt.events.record(
                    ref,
                    "Warning" if own.reason == traffic.SELF_FENCED else "Normal",
                    traffic.UPDATED_EVENT,
                    f"DNSEndpoint {name} {'created' if current is None else 'updated'}: "
                    f"{own.message}",
                )
                log.info("own_record namespace=%s name=%s record=%r", ns, name, own.message)
        else:
            own = own.model_copy(update={"message": traffic.crd_missing_message()[:1024]})
    except (ApiException, ResourceNotFoundError) as e:
        why = f"{e.status} {e.reason}" if isinstance(e, ApiException) else str(e)
        log.warning("own_record_failed namespace=%s name=%s error=%s", ns, name, why)
        own = (before or OwnRecordStatus()).model_copy(
            update={"message": f"DNSEndpoint {name} could not be read or written: {why}"}
        )
    assert rec is not None  # returned above without one
    last, every = own.last_check_time, rec.health_check_interval_seconds
    due = every - (now - last) if last is not None else 0.0
    return status.model_copy(update={"own_record": own}), max(0.5, due)


def _without_regions(
    dsd: DeepSeekDeployment, status: DeepSeekDeploymentStatus
) -> DeepSeekDeploymentStatus:
    """spec.regions was emptied: forget the regions and their condition."""
    for r in status.regions:
        _forget_region(dsd.namespace, dsd.name, r.name)
    gone = (ConditionType.REGIONS_HEALTHY, ConditionType.REGIONS_SYNCED)
    conds = [c for c in status.conditions if c.type not in gone]
    return status.model_copy(update={"regions": [], "conditions": conds})


def _forget_region(ns: str, name: str, region: str) -> None:
    for g in (metrics.REGION_HEALTHY, metrics.REGION_WEIGHT):
        with contextlib.suppress(KeyError):
            g.remove(ns, name, region)


def _write_status(
    rt: Runtime, obj: dict[str, Any], old: DeepSeekDeploymentStatus, new: DeepSeekDeploymentStatus
) -> None:
    patch = merge_patch(obj.get("status") or {}, _status_with_unknown(obj, new))
    if patch:
        rt.kube.patch_status(obj["metadata"]["namespace"], obj["metadata"]["name"], patch)


def _status_with_unknown(obj: dict[str, Any], new: DeepSeekDeploymentStatus) -> dict[str, Any]:
    """New status, keeping fields others own (e.g. Kopf's progress records) untouched."""
    out = dict(obj.get("status") or {})
    ours = DeepSeekDeploymentStatus.model_fields
    aliases = {f.alias or n for n, f in ours.items()}
    for k in list(out):
        if k in aliases:
            del out[k]
    out.update(new.to_k8s())
    return out


def _export(dsd: DeepSeekDeployment, outcome: Outcome) -> None:
    ns, name = dsd.namespace, dsd.name
    s = outcome.status
    metrics.DESIRED_REPLICAS.labels(ns, name).set(s.desired_replicas)
    metrics.READY_REPLICAS.labels(ns, name).set(s.ready_replicas)
    metrics.MAX_REPLICAS.labels(ns, name).set(dsd.spec.scaling.max_replicas)
    slo = dsd.spec.scaling.slo
    metrics.SLO_TARGET.labels(ns, name, "ttft_p99_seconds").set(slo.ttft_p99_seconds)
    metrics.SLO_TARGET.labels(ns, name, "tpot_p99_seconds").set(slo.tpot_p99_seconds)
    metrics.SLO_TARGET.labels(ns, name, "error_rate").set(slo.max_error_rate)
    metrics.SLO_TARGET.labels(ns, name, "attainment").set(slo.attainment)
    _export_attainment(ns, name, outcome.status)
    _export_router_limits(dsd)
    for c in Colour:
        metrics.ACTIVE_COLOUR.labels(ns, name, c.value).set(1 if s.active_colour is c else 0)
    ladder = [rung.name for rung in dsd.spec.quantization.ladder]
    for rung_name in ladder:
        metrics.QUANTIZATION_MODE.labels(ns, name, rung_name).set(1 if s.mode == rung_name else 0)
    if s.mode in ladder:
        metrics.QUANTIZATION_RUNG.labels(ns, name).set(ladder.index(s.mode))
    phase = s.rollout.phase if s.rollout else RolloutPhase.IDLE.value
    for p in RolloutPhase:
        metrics.ROLLOUT_PHASE.labels(ns, name, p.value).set(1 if p.value == phase else 0)
    for result in metrics.ROLLOUT_RESULTS:
        metrics.ROLLOUTS.labels(ns, name, result)  # 0 until the first one
    for way in ("down", "up"):
        metrics.QUANTIZATION_SWITCHES.labels(ns, name, way)  # 0 until the first one
    for cond in s.conditions:
        _export_condition(ns, name, cond)


def _export_attainment(ns: str, name: str, s: DeepSeekDeploymentStatus) -> None:
    """deepseek_operator_slo_attainment while status.scaling.sloBudget.attainment exists; the
    series is removed when it does not (autoscaling off, no request measured yet)."""
    budget = s.scaling.slo_budget if s.scaling is not None else None
    if budget is not None and budget.attainment is not None:
        metrics.SLO_ATTAINMENT.labels(ns, name).set(budget.attainment)
    else:
        with contextlib.suppress(KeyError):
            metrics.SLO_ATTAINMENT.remove(ns, name)


def _export_router_limits(dsd: DeepSeekDeployment) -> None:
    """deepseek_operator_router_limit of each router pool the resource runs; the series of a
    pool that is gone (router off, batch unset) are removed."""
    ns, name = dsd.namespace, dsd.name
    keep: set[tuple[str, ...]] = set()
    if dsd.spec.router.enabled:
        pools = (main_router_pool(dsd), batch_router_pool(dsd))
        for pool in (p for p in pools if p is not None):
            rate = pool.rate_limit_tokens_per_second or pool.max_concurrent_requests
            values = (pool.max_concurrent_requests, pool.queue_size, rate)
            for limit, value in zip(metrics.ROUTER_LIMITS, values, strict=True):
                metrics.ROUTER_LIMIT.labels(ns, name, pool.component, limit).set(value)
                keep.add((ns, name, pool.component, limit))
    _remove_series(metrics.ROUTER_LIMIT, ns, name, frozenset(keep))


def _remove_series(
    g: Any, namespace: str, name: str, keep: frozenset[tuple[str, ...]] = frozenset()
) -> None:
    """Remove the series of a gauge labelled (namespace, name, ...) but those in `keep`."""
    # prometheus_client lists a metric's label sets only through _metrics
    for labels in list(g._metrics):
        if labels[:2] == (namespace, name) and labels not in keep:
            with contextlib.suppress(KeyError):
                g.remove(*labels)


def _export_condition(ns: str, name: str, cond: Condition) -> None:
    for st in ("True", "False", "Unknown"):
        metrics.CONDITION.labels(ns, name, cond.type, st).set(1 if cond.status == st else 0)


def _start_warmup(rt: Runtime, dsd: DeepSeekDeployment, colour: Colour, per_pod: int) -> None:
    threading.Thread(
        target=warm_up_pods,
        args=(rt.kube, dsd, colour, per_pod),
        name=f"warmup-{dsd.namespace}-{dsd.name}",
        daemon=True,
    ).start()


def forget(namespace: str, name: str) -> None:
    """Drop the per-resource metric series of a deleted DeepSeekDeployment, and what the
    process remembers writing for it."""
    if RUNTIME is not None:
        RUNTIME.kube.forget_config_map(namespace, admission_config_map_name(name))
    for g in (
        metrics.DESIRED_REPLICAS,
        metrics.READY_REPLICAS,
        metrics.MAX_REPLICAS,
        metrics.LAST_RECONCILE,
        metrics.SLO_ATTAINMENT,
    ):
        with contextlib.suppress(KeyError):
            g.remove(namespace, name)
    with contextlib.suppress(KeyError):
        metrics.PENDING_PODS.remove(namespace, name, "Unschedulable")
    for g in (metrics.REGION_HEALTHY, metrics.REGION_WEIGHT, metrics.ROUTER_LIMIT):
        _remove_series(g, namespace, name)


# ---------------------------------------------------------------------------------------------
# Kopf handlers


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    rt = runtime()
    rt.loop = asyncio.get_running_loop()
    settings.persistence.finalizer = f"{L.DOMAIN}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=L.DOMAIN)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=L.DOMAIN, key="last-handled-configuration"
    )
    # Our own Events say what the operator did; Kopf's log-to-Event posting would only add noise.
    settings.posting.level = logging.WARNING
    # The watched namespaces are named (or all): no cluster-wide namespace/CRD scanning, which
    # the chart's least-privilege RBAC does not grant.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    _background.add(asyncio.create_task(_signal_loop(rt), name="signal-poller"))


async def _signal_loop(rt: Runtime) -> None:
    """Poll every Prometheus the DeepSeekDeployments use: one query per signal per URL."""
    while True:
        urls = set()
        if rt.prometheus_url:
            urls.add(rt.prometheus_url)
        urls |= _override_urls
        if urls:
            try:
                await asyncio.get_running_loop().run_in_executor(rt.poll_pool, rt.poller.poll, urls)
            except Exception:  # keep polling; missing signals make every policy hold
                log.exception("signal_poll_failed")
        await asyncio.sleep(rt.signal_interval)


_override_urls: set[str] = set()
_background: set[asyncio.Task[None]] = set()


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
async def _changed(*, namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> None:
    url = (spec.get("monitoring") or {}).get("prometheusUrl")
    if url:
        _override_urls.add(url)
    for region in spec.get("regions") or []:
        if region.get("prometheusUrl"):
            _override_urls.add(region["prometheusUrl"])
    wake(namespace, name)


def _remember(kind: str, event: Mapping[str, Any]) -> None:
    """Keep the event's body in the store the reconcile reads (adapters/store.py), before the
    loop it concerns is woken."""
    store = runtime().kube.store
    body = event.get("object")
    if store is None or not isinstance(body, dict) or not body.get("metadata"):
        return
    if event.get("type") == "DELETED":
        store.delete(kind, body)
    else:
        store.put(kind, body)


@kopf.on.event("apps", "v1", "deployments", labels={L.MANAGED_BY: L.MANAGED_BY_VALUE})
async def _owned_deployment(
    *, event: Mapping[str, Any], namespace: str | None, labels: Mapping[str, str], **_: Any
) -> None:
    _remember("Deployment", event)
    wake(namespace, labels.get(L.DEPLOYMENT))


# Services and budgets: watched so that a steady-state reconcile need not list them, and so that
# deleting or editing one is corrected at once (not only at the next resync).
@kopf.on.event("", "v1", "services", labels={L.MANAGED_BY: L.MANAGED_BY_VALUE})
async def _owned_service(
    *, event: Mapping[str, Any], namespace: str | None, labels: Mapping[str, str], **_: Any
) -> None:
    _remember("Service", event)
    wake(namespace, labels.get(L.DEPLOYMENT))


@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels={L.MANAGED_BY: L.MANAGED_BY_VALUE})
async def _owned_budget(
    *, event: Mapping[str, Any], namespace: str | None, labels: Mapping[str, str], **_: Any
) -> None:
    _remember("PodDisruptionBudget", event)
    wake(namespace, labels.get(L.DEPLOYMENT))


# The router's ServiceAccount, Role and RoleBinding (spec.router): watched like the Services, so
# a steady reconcile reads them from memory and a deleted one is recreated at once.
@kopf.on.event("", "v1", "serviceaccounts", labels={L.MANAGED_BY: L.MANAGED_BY_VALUE})
async def _owned_account(
    *, event: Mapping[str, Any], namespace: str | None, labels: Mapping[str, str], **_: Any
) -> None:
    _remember("ServiceAccount", event)
    wake(namespace, labels.get(L.DEPLOYMENT))


@kopf.on.event(
    "rbac.authorization.k8s.io", "v1", "roles", labels={L.MANAGED_BY: L.MANAGED_BY_VALUE}
)
async def _owned_role(
    *, event: Mapping[str, Any], namespace: str | None, labels: Mapping[str, str], **_: Any
) -> None:
    _remember("Role", event)
    wake(namespace, labels.get(L.DEPLOYMENT))


@kopf.on.event(
    "rbac.authorization.k8s.io", "v1", "rolebindings", labels={L.MANAGED_BY: L.MANAGED_BY_VALUE}
)
async def _owned_role_binding(
    *, event: Mapping[str, Any], namespace: str | None, labels: Mapping[str, str], **_: Any
) -> None:
    _remember("RoleBinding", event)
    wake(namespace, labels.get(L.DEPLOYMENT))


@kopf.on.event(
    "", "v1", "pods", labels={L.COMPONENT: L.ENGINE_COMPONENT, L.MANAGED_BY: L.MANAGED_BY_VALUE}
)
async def _engine_pod(
    *, event: Mapping[str, Any], namespace: str | None, labels: Mapping[str, str], **_: Any
) -> None:
    _remember("Pod", event)
    wake(namespace, labels.get(L.DEPLOYMENT))


def _holds_deletion(*, spec: kopf.Spec, annotations: kopf.Annotations, **_: Any) -> bool:
    return P.holds_deletion(spec, annotations)


@kopf.on.delete(GROUP, VERSION, PLURAL, when=_holds_deletion)
def _deleted(*, namespace: str | None, name: str, body: kopf.Body, **_: Any) -> None:
    """Owned objects go with the resource (owner references, garbage collection). User-made
    PersistentVolumeClaims and Secrets are not owned and stay. The copies this resource made in
    member regions are deleted first; while a region cannot be reached the deletion waits
    (Kopf's finalizer) and retries, unless the keep-member-copies annotation says not to.
    Only a resource with member-region copies carries the finalizer (propagation.holds_deletion):
    any other goes at once, even while the operator is down."""
    rt = runtime()
    if namespace is None:
        return
    ref = ObjectRef(namespace, name, body.metadata.uid)
    _delete_copies(rt, ref, body)
    rt.events.record(
        ref,
        "Normal",
        "Deleting",
        "owned Deployments, Services and budgets are removed by garbage collection; "
        "PersistentVolumeClaims and Secrets are kept",
    )
    forget(namespace, name)
    rt.generation_seen.pop((namespace, name), None)


def _delete_copies(rt: Runtime, ref: ObjectRef, body: Mapping[str, Any]) -> None:
    try:
        dsd = DeepSeekDeployment.from_k8s(dict(body))
    except ValidationError:
        return  # an invalid spec never got copies written
    remote = [r for r in dsd.spec.regions if r.kubeconfig_secret_ref is not None]
    if not remote or rt.regions is None:
        return
    if (dsd.metadata.annotations or {}).get(P.KEEP_COPIES) == "true":
        rt.events.record(
            ref,
            "Normal",
            "CopiesKept",
            f"{P.KEEP_COPIES}=true: copies in {', '.join(r.name for r in remote)} are kept",
        )
        return
    unreachable = []
    for region in remote:
        try:
            existing = rt.regions.get_copy(ref.namespace, ref.name, region)
            p = P.removal(str(ref.uid), region.name, existing)
            if p.action is P.Action.DELETE:
                assert existing is not None
                rt.regions.delete_copy(region, existing)
                rt.events.record(ref, "Normal", "CopyDeleted", p.message)
            elif p.action is P.Action.CONFLICT:
                rt.events.record(ref, "Warning", "CopyConflict", p.message)
        except RegionUnreachable as e:
            unreachable.append(f"region {region.name}: {e}")
    if unreachable:
        msg = (
            "cannot delete the copies in member regions ("
            + "; ".join(unreachable)
            + f"); retrying. Annotate {P.KEEP_COPIES}=true to delete this resource without them"
        )
        rt.events.record(ref, "Warning", "CopyDeleteFailed", msg)
        raise kopf.TemporaryError(msg, delay=10)


@kopf.daemon(GROUP, VERSION, PLURAL, initial_delay=0.0, cancellation_timeout=10.0)
async def _loop(*, stopped: kopf.DaemonStopped, namespace: str | None, name: str, **_: Any) -> None:
    """The reconcile loop of one DeepSeekDeployment."""
    rt = runtime()
    if namespace is None:
        return
    key = (namespace, name)
    ev = rt.wakeups.setdefault(key, asyncio.Event())
    try:
        while not stopped:
            ev.clear()
            try:
                due = await asyncio.get_running_loop().run_in_executor(
                    rt.reconcile_pool, reconcile_once, namespace, name
                )
            except kopf.PermanentError:
                raise
            except Exception as e:  # a failed reconcile is retried; the error is reported
                metrics.RECONCILE_ERRORS.labels("reconcile", type(e).__name__).inc()
                log.exception("reconcile_failed namespace=%s name=%s", namespace, name)
                due = 5.0
            if due is None:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_wait_any(ev, stopped), timeout=due)
    finally:
        if rt.wakeups.get(key) is ev:
            del rt.wakeups[key]


# Kopf gives every daemon a finalizer, so that it can stop it before the object goes. This loop
# needs none: it ends by itself when it finds the resource gone or deleting (reconcile_once
# returns None), and `_gone` wakes it for that. Without this, deleting a DeepSeekDeployment (or
# its namespace) would hang while the operator is down. The deletion handler above keeps the
# finalizer where there is real cleanup to do.
def _without_finalizer(fn: Any) -> None:
    spawning = kopf.get_default_registry()._spawning
    found = [i for i, h in enumerate(spawning._handlers) if h.fn is fn]
    assert len(found) == 1, "the reconcile loop's daemon handler is registered once"
    i = found[0]
    spawning._handlers[i] = replace(spawning._handlers[i], requires_finalizer=False)


_without_finalizer(_loop)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def _gone(
    *, type: str, event: Mapping[str, Any], namespace: str | None, name: str, **_: Any
) -> None:
    """Every change of a DeepSeekDeployment is kept for its next reconcile (no GET). One that
    was removed: its loop wakes, finds it gone and ends; its metric series go."""
    _remember(DSD_KIND, event)
    if type != "DELETED" or namespace is None:
        return
    wake(namespace, name)
    forget(namespace, name)
    runtime().generation_seen.pop((namespace, name), None)


async def _wait_any(ev: asyncio.Event, stopped: kopf.DaemonStopped) -> None:
    stop_task = asyncio.ensure_future(stopped.wait())
    ev_task = asyncio.ensure_future(ev.wait())
    try:
        await asyncio.wait({stop_task, ev_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_task.cancel()
        ev_task.cancel()
