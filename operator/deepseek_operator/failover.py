"""Region health and traffic weights: (spec, last region states, health probes, time) -> new
region states, the weights to apply, a condition and Events. No I/O, no clock.

Each member region is in one of four states:

    Pending     not passed a check yet (a new region, or the operator's first look at it): out
                of rotation, and in rotation at its first passed check, without failback delay
    Healthy     in rotation; failed checks are counted, and `failureThreshold` in a row make it
                Unhealthy
    Unhealthy   out of rotation (weight 0) while failover is enabled
    Recovering  passes its checks again; one failed check sends it back to Unhealthy, and
                `failbackDelaySeconds` of uninterrupted health put it back in rotation

Weights are relative (as in weighted DNS or a weighted route): a region in rotation gets its
spec weight, a region out of rotation gets 0, so the traffic of a lost region spreads over the
others in proportion to their weights. When every region left in rotation has weight 0 (warm
standbys), they share the traffic equally. When no region is in rotation, the spec weights stay:
there is no better place to send the traffic, and clients see the errors instead of nothing.
With failover disabled the checks still run and are reported, but the weights never move.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from .api.spec import FailoverSpec, RegionSpec
from .api.status import RegionStatus
from .rollout import Event


class RegionState(StrEnum):
    PENDING = "Pending"
    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"
    RECOVERING = "Recovering"


@dataclass(frozen=True)
class Probe:
    """One health check of one region, as the adapter saw it."""

    ok: bool
    ready_replicas: int
    message: str
    desired: int | None = None  # the region's desired replicas (what it runs to carry its load)


@dataclass(frozen=True)
class Observation:
    """What the adapter read of a region for one health check."""

    error: str | None = None  # the region's API (or its kubeconfig Secret) could not be read
    found: bool = True  # the DeepSeekDeployment of the same namespace/name exists there
    ready: int = 0  # ready engine pods of its active colour
    prometheus_url: str | None = None  # the region's Prometheus, when one is known
    polled: bool = False  # that Prometheus has been polled at least once
    prometheus_error: str | None = None  # its last poll failed
    reporting: float | None = None  # engine pods with fresh metrics there
    desired: int | None = None  # its desired replicas (status.desiredReplicas)


def judge(obs: Observation) -> Probe:
    """The health verdict of one observation (see `_verdict`), with its desired replicas."""
    return replace(_verdict(obs), desired=obs.desired)


def _verdict(obs: Observation) -> Probe:
    """A region passes when its API answers, the DeepSeekDeployment exists there with at least
    one ready engine pod, and (where its Prometheus is known and has been polled) at least one
    engine pod reports metrics."""
    if obs.error is not None:
        return Probe(False, 0, obs.error)
    if not obs.found:
        return Probe(False, 0, "no DeepSeekDeployment of this namespace/name in the region")
    if obs.ready < 1:
        return Probe(False, 0, "no ready engine pod")
    said = f"{obs.ready} ready engine pod{'s' if obs.ready != 1 else ''}"
    if obs.prometheus_url is None or not obs.polled:
        return Probe(True, obs.ready, said)
    if obs.prometheus_error is not None:
        return Probe(
            False,
            obs.ready,
            f"{said}, but Prometheus {obs.prometheus_url} did not answer: {obs.prometheus_error}",
        )
    if not obs.reporting:
        return Probe(False, obs.ready, f"{said}, but none reports metrics to {obs.prometheus_url}")
    return Probe(True, obs.ready, f"{said}, {int(obs.reporting)} reporting metrics")


@dataclass(frozen=True)
class RegionsCondition:
    healthy: bool
    reason: str
    message: str


@dataclass(frozen=True)
class FailoverOutcome:
    regions: list[RegionStatus]
    condition: RegionsCondition
    events: list[Event]

    def weights(self) -> dict[str, int]:
        return {r.name: r.weight for r in self.regions}


def check_due(
    regions: list[RegionSpec], fo: FailoverSpec, last: list[RegionStatus], now: float
) -> float | None:
    """Seconds until the next round of health checks (None: no member regions)."""
    if not regions:
        return None
    seen = {r.name: r.last_check_time for r in last}
    times = [seen.get(r.name) for r in regions]
    if any(t is None for t in times):
        return 0.0
    oldest = min(t for t in times if t is not None)
    return max(0.0, oldest + fo.health_check_interval_seconds - now)


def _step(
    prev: RegionStatus, probe: Probe, fo: FailoverSpec, now: float
) -> tuple[RegionStatus, Event | None]:
    """One region's state after one probe, and the Event of a transition."""
    state = RegionState(prev.state)
    failures = 0 if probe.ok else prev.consecutive_failures + 1
    since = prev.since if prev.since is not None else now
    event: Event | None = None
    name = prev.name
    if state is RegionState.PENDING and probe.ok:
        state, since = RegionState.HEALTHY, now
        event = Event(
            "Normal",
            "RegionHealthy",
            f"region {name} passes its first health check ({probe.message}) and is in rotation",
        )
    elif state is RegionState.HEALTHY and failures >= fo.failure_threshold:
        state, since = RegionState.UNHEALTHY, now
        event = Event(
            "Warning",
            "RegionUnhealthy",
            f"region {name} failed {failures} health checks in a row: {probe.message}",
        )
    elif state is RegionState.UNHEALTHY and probe.ok:
        state, since = RegionState.RECOVERING, now
        event = Event(
            "Normal",
            "RegionRecovering",
            f"region {name} passes its health checks again ({probe.message}); it returns to "
            f"rotation after {fo.failback_delay_seconds}s of uninterrupted health",
        )
    elif state is RegionState.RECOVERING and not probe.ok:
        state, since = RegionState.UNHEALTHY, now
        event = Event(
            "Warning",
            "RegionUnhealthy",
            f"region {name} failed a health check while recovering: {probe.message}; "
            "the failback delay starts again at its next passed check",
        )
    elif state is RegionState.RECOVERING and now - since >= fo.failback_delay_seconds:
        state, since = RegionState.HEALTHY, now
        event = Event(
            "Normal",
            "RegionHealthy",
            f"region {name} has been healthy for {fo.failback_delay_seconds}s and is back "
            "in rotation",
        )
    carrying = prev.carrying_replicas
    if state is RegionState.HEALTHY and probe.ok and probe.desired is not None:
        carrying = probe.desired
    new = prev.model_copy(
        update={
            "carrying_replicas": carrying,
            "state": state.value,
            "since": since,
            "healthy": probe.ok,
            "ready_replicas": probe.ready_replicas,
            "consecutive_failures": failures,
            "last_check_time": now,
            "message": probe.message[:1024],
        }
    )
    return new, event


def traffic_weights(
    regions: list[RegionSpec], states: dict[str, RegionState], enabled: bool
) -> dict[str, int]:
    """Relative weight per region (see the module docstring)."""
    spec = {r.name: r.weight for r in regions}
    if not enabled:
        return spec
    in_rotation = [r.name for r in regions if states[r.name] is RegionState.HEALTHY]
    if not in_rotation:
        return spec
    if sum(spec[n] for n in in_rotation) == 0:
        return {r.name: (100 if r.name in in_rotation else 0) for r in regions}
    return {r.name: (spec[r.name] if r.name in in_rotation else 0) for r in regions}


def _fmt(weights: dict[str, int]) -> str:
    return ", ".join(f"{n}={w}" for n, w in weights.items())


def decide(
    regions: list[RegionSpec],
    fo: FailoverSpec,
    last: list[RegionStatus],
    probes: dict[str, Probe],
    now: float,
) -> FailoverOutcome:
    """New region states and weights. Regions without a probe this round keep their state."""
    before = {r.name: r for r in last}
    events: list[Event] = []
    statuses: list[RegionStatus] = []
    for r in regions:
        prev = before.get(r.name) or RegionStatus(name=r.name)
        probe = probes.get(r.name)
        if probe is None:
            statuses.append(prev)
            continue
        new, ev = _step(prev, probe, fo, now)
        statuses.append(new)
        if ev is not None:
            events.append(ev)

    states = {s.name: RegionState(s.state) for s in statuses}
    weights = traffic_weights(regions, states, fo.enabled)
    old_weights = {s.name: s.weight for s in statuses}
    statuses = [s.model_copy(update={"weight": weights[s.name]}) for s in statuses]
    if last and weights != old_weights:
        verb = "TrafficShifted" if fo.enabled else "TrafficWeights"
        events.append(
            Event("Normal", verb, f"traffic weights {_fmt(old_weights)} -> {_fmt(weights)}")
        )
    return FailoverOutcome(statuses, _condition(regions, fo, states, weights), events)


def _condition(
    regions: list[RegionSpec],
    fo: FailoverSpec,
    states: dict[str, RegionState],
    weights: dict[str, int],
) -> RegionsCondition:
    def named(state: RegionState) -> list[str]:
        return [r.name for r in regions if states[r.name] is state]

    down, back, pending = (
        named(RegionState.UNHEALTHY),
        named(RegionState.RECOVERING),
        named(RegionState.PENDING),
    )
    if not down and not back and not pending:
        return RegionsCondition(True, "AllRegionsHealthy", f"weights {_fmt(weights)}")
    parts = [
        f"{label}: {', '.join(names)}"
        for label, names in (("unhealthy", down), ("recovering", back), ("pending", pending))
        if names
    ]
    said = "; ".join(parts)
    if not fo.enabled:
        return RegionsCondition(
            False,
            "FailoverDisabled",
            f"{said}; failover.enabled is false, so the weights stay {_fmt(weights)}",
        )
    if not named(RegionState.HEALTHY):
        return RegionsCondition(
            False,
            "NoHealthyRegion",
            f"no region is in rotation ({said}); the spec weights stay: {_fmt(weights)}",
        )
    if not down and not back:
        return RegionsCondition(
            False, "RegionsPending", f"{said} (no passed health check yet); weights {_fmt(weights)}"
        )
    spec = {r.name: r.weight for r in regions}
    moved = any(spec[n] > 0 for n in down + back + pending)
    return RegionsCondition(
        False,
        "FailedOver" if moved else "RegionUnhealthy",
        f"{said}; traffic weights {_fmt(weights)}",
    )
