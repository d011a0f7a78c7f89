"""Stepped transitions: a rollout on a cluster with no GPUs to spare moves capacity in steps.

Two kinds of tests: tables of the stepped steps on their own, and whole transitions driven
through rollout.step against a small world whose GPUs hold exactly `slots` replicas (a
Deployment's pods beyond the free slots stay Pending, Unschedulable; a scheduled pod is Ready
on the next reconcile; a pod that goes frees its slot at once). Each transition is checked at
every reconcile: the Ready pods the stable Service selects never drop below n - maxUnavailable
once the transition started, the cluster never holds more pods than slots, and it ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from deepseek_operator import rollout as R
from deepseek_operator.api.spec import RolloutSpec
from deepseek_operator.api.status import Colour
from deepseek_operator.rollout import (
    ColourObservation,
    RolloutInputs,
    RolloutPhase,
    RolloutState,
    RolloutStep,
)
from deepseek_operator.signals import Signal, Signals

B, G = Colour.BLUE, Colour.GREEN
OLD, NEW = "h-old", "h-new"


def settings(**kw: object) -> RolloutSpec:
    base: dict[str, object] = {
        "readyTimeoutSeconds": 600,
        "scaleDownDelaySeconds": 300,
        "unschedulableSeconds": 30,
        "analysis": {"durationSeconds": 60, "maxErrorRate": 0.05, "minRequests": 0},
    }
    base.update(kw)
    return RolloutSpec.model_validate(base)


@dataclass
class Colourway:
    """One colour's Deployment in the world."""

    template: str | None = None
    want: int = 0
    scheduled: int = 0  # pods holding GPUs
    ready: int = 0

    def obs(self) -> ColourObservation:
        if self.template is None:
            return ColourObservation()
        return ColourObservation(
            exists=True,
            replicas=self.want,
            ready=self.ready,
            updated=self.want,
            template_hash=self.template,
            unschedulable=max(0, self.want - self.scheduled),
        )


@dataclass
class World:
    """GPUs for `slots` replicas; pods scheduled in arrival order as slots free up."""

    slots: int
    colours: dict[Colour, Colourway] = field(default_factory=dict)

    def apply(self, out: RolloutStep) -> None:
        for t in (out.active, out.other):
            if t is None:
                continue
            c = self.colours.setdefault(t.colour, Colourway())
            if t.render_spec or c.template is None:
                c.template = NEW if t.render_spec else c.template
            c.want = t.replicas
            # scale down: starting pods go first, as a ReplicaSet does
            c.scheduled = min(c.scheduled, c.want)
            c.ready = min(c.ready, c.scheduled)

    def tick(self) -> None:
        """Scheduled pods become Ready; Pending pods take free slots."""
        for c in self.colours.values():
            c.ready = c.scheduled
        for c in self.colours.values():
            free = self.slots - sum(x.scheduled for x in self.colours.values())
            c.scheduled += max(0, min(free, c.want - c.scheduled))

    def served(self, out: RolloutStep) -> int:
        """Ready pods behind the stable Service: the active colour's, both when mixed."""
        active = self.colours[out.active.colour].ready
        if out.mixed and out.other is not None:
            return active + self.colours[out.other.colour].ready
        return active


def inputs(
    world: World, st: RolloutState, s: RolloutSpec, n: int, signals: dict[Signal, float]
) -> RolloutInputs:
    active = world.colours.get(st.active_colour, Colourway())
    other = world.colours.get(st.active_colour.other(), Colourway())
    return RolloutInputs(
        desired_hash=NEW,
        desired_replicas=n,
        settings=s,
        default_max_ttft=2.0,
        active=active.obs(),
        other=other.obs(),
        preview_signals=Signals(signals),
    )


HEALTHY = {Signal.REQUESTS_TOTAL: 100.0, Signal.ERRORS_TOTAL: 0.0, Signal.TTFT_P99: 0.4}


def run(
    n: int,
    slots: int,
    s: RolloutSpec,
    signals: dict[Signal, float] | None = None,
    fail_after: float | None = None,
    limit: int = 400,
    slow: bool = False,
    placed: int | None = None,
) -> tuple[RolloutState, list[RolloutStep], list[int], World]:
    """Drive a rollout OLD -> NEW from a Completed blue running n replicas; 5 s per reconcile.
    `fail_after` seconds: from then on the preview's error counter climbs (or, `slow`, its TTFT
    p99 is over the limit), so the analysis fails."""
    up = n if placed is None else placed  # old pods holding GPUs (the rest Pending)
    world = World(slots, {B: Colourway(OLD, n, up, up)})
    st = RolloutState(RolloutPhase.COMPLETED, B, OLD)
    steps: list[RolloutStep] = []
    served: list[int] = []
    now = 1000.0
    errors = 0.0
    for _ in range(limit):
        sig = dict(signals or HEALTHY)
        if fail_after is not None and now >= 1000.0 + fail_after and slow:
            sig[Signal.TTFT_P99] = 5.0
        elif fail_after is not None and now >= 1000.0 + fail_after:
            errors += 10.0
            sig[Signal.ERRORS_TOTAL] = errors
            sig[Signal.REQUESTS_TOTAL] = 100.0 + errors
        out = R.step(st, inputs(world, st, s, n, sig), now)
        world.apply(out)
        steps.append(out)
        served.append(world.served(out))
        st = out.state
        held = sum(c.scheduled for c in world.colours.values())
        assert held <= slots
        if st.phase in (RolloutPhase.COMPLETED, RolloutPhase.ROLLED_BACK) and now > 1000.0:
            return st, steps, served, world
        world.tick()
        now += 5.0
    raise AssertionError(f"no end after {limit} reconciles: {st.phase} {st.message}")


def reasons(steps: list[RolloutStep]) -> list[str]:
    return [e.reason for out in steps for e in out.events]


@pytest.mark.parametrize(
    ("n", "slots", "u", "surge"),
    [
        (4, 4, 1, None),  # a full cluster: the classic copy cannot start
        (4, 5, 1, None),  # room for one preview pod only
        (3, 3, 2, None),  # bigger steps
        (4, 8, 1, 1),  # GPUs to spare, but maxSurge 1 asks for steps
        (4, 8, 0, 1),  # maxUnavailable 0: a rolling update that only adds before removing
        (1, 1, 1, None),  # one replica on a full cluster: it has to go out of service
    ],
)
def test_a_transition_moves_every_replica_without_spare_gpus(
    n: int, slots: int, u: int, surge: int | None
) -> None:
    s = settings(maxUnavailable=u, maxSurge=surge)
    st, steps, served, world = run(n, slots, s)

    assert st.phase is RolloutPhase.COMPLETED
    assert st.active_colour is G and st.active_hash == NEW
    assert world.colours[G].ready == n and world.colours[B].want == 0
    assert not steps[-1].mixed  # the new colour serves alone
    # capacity never dropped by more than maxUnavailable (classic start: all old pods serve)
    assert min(served[1:]) >= n - max(u, 0 if surge is not None and surge < n else u)
    got = reasons(steps)
    assert "RolloutPromoted" in got and "FirstPodsPassed" in got
    assert got.count("TransitionStep") >= 1 or n == 1
    if surge is None:
        assert "SteppedTransition" in got  # it waited unschedulableSeconds, then stepped


def test_replicas_the_old_colour_never_placed_do_not_block_the_transition() -> None:
    """Under GPU pressure the autoscaler asked for 3 replicas where 2 fit: the third is
    Pending. The GPUs of the 2 that run move; the new colour then serves with 2 Ready and the
    third stays Pending, as it was (no step waits for GPUs that never existed)."""
    s = settings(maxUnavailable=1)
    st, _steps, served, world = run(3, 2, s, placed=2)

    assert st.phase is RolloutPhase.COMPLETED and st.active_colour is G
    assert world.colours[G].ready == 2 and world.colours[G].want == 3
    assert world.colours[B].want == 0
    assert min(served[1:]) >= 1  # 2 served before, never fewer than 2 - maxUnavailable


@pytest.mark.parametrize(
    ("n", "slots", "fail_after"),
    [
        (3, 2, 0.0),  # the first new pod fails its analysis
        (4, 3, 0.0),
        (5, 3, 0.0),
        (4, 3, 115.0),  # errors once the first pods passed and more moved
    ],
)
def test_replicas_the_old_colour_never_placed_do_not_block_a_rollback(
    n: int, slots: int, fail_after: float
) -> None:
    """The same GPU pressure, and the new version fails: RollingBack gives the preview's GPUs
    back to the old colour's pods that ran, and ends; it does not wait for the ones that
    never had GPUs (before, it kept the failing preview pod, and RollingBack, for good)."""
    s = settings(maxUnavailable=1)
    st, steps, served, world = run(n, slots, s, fail_after=fail_after, placed=slots)

    assert st.phase is RolloutPhase.ROLLED_BACK and st.active_colour is B
    assert world.colours[G].want == 0 and world.colours[B].want == n
    assert world.colours[B].scheduled == slots  # every GPU back with the old colour
    if fail_after == 0.0:  # (after errors in mixed serving the old colour serves alone)
        assert min(served[1:]) >= slots - 1  # never fewer than base - maxUnavailable
    assert "RolledBackInSteps" in reasons(steps)


def test_the_first_pods_are_analysed_before_the_rest_follow() -> None:
    s = settings(maxUnavailable=1)
    _, steps, _, _ = run(4, 4, s)
    analysing = [o for o in steps if o.state.phase is RolloutPhase.ANALYZING]
    assert analysing, "no analysis"
    # while the first pods are analysed, the old colour gives up one step only
    assert {o.active.replicas for o in analysing} == {3}
    # no user request meets the unjudged pods: they get the preview Service's traffic only
    assert not any(o.mixed for o in analysing)
    assert any(o.mixed for o in steps)  # once passed, they serve beside the old ones
    first_passed = next(i for i, o in enumerate(steps) if o.state.first_pods_passed)
    assert all(o.active.replicas >= 3 for o in steps[:first_passed])


def test_a_failed_analysis_rolls_back_in_steps_and_keeps_errors_away() -> None:
    s = settings(maxUnavailable=1)
    # errors start after the first pods passed (t=105 s) and one more moved
    st, steps, _served, world = run(4, 4, s, fail_after=115.0)

    assert st.phase is RolloutPhase.ROLLED_BACK
    assert st.active_colour is B and st.failed_hash == NEW
    assert world.colours[B].want == world.colours[B].scheduled == 4  # Ready next tick
    assert world.colours[G].want == 0
    rolling = [o for o in steps if o.state.phase is RolloutPhase.ROLLING_BACK]
    assert len(rolling) > 1  # in steps, not at once
    # error-rate failure: the old colour serves alone from the first rollback step on
    assert not any(o.mixed for o in rolling)
    # the preview shrinks as the old colour comes back, never grows
    sizes = [o.other.replicas for o in rolling if o.other is not None]
    assert sizes == sorted(sizes, reverse=True)
    assert "RolledBackInSteps" in reasons(steps) and "AnalysisFailed" in reasons(steps)


def test_a_slow_preview_is_judged_on_its_first_pods_only() -> None:
    """Latency is judged while the first new pods are analysed on the preview Service's
    traffic: a slow version rolls back there. Once they passed, the rest moves under the load
    with maxUnavailable replicas out of service: latency then measures that squeeze, not the
    version, so only errors roll back."""
    s = settings(maxUnavailable=1)
    st, steps, served, _ = run(4, 4, s, fail_after=0.0, slow=True)
    assert st.phase is RolloutPhase.ROLLED_BACK and st.active_colour is B
    assert not any(o.state.first_pods_passed for o in steps)
    assert min(served[1:]) >= 3 and "AnalysisFailed" in reasons(steps)

    later, steps, _, _ = run(4, 4, s, fail_after=115.0, slow=True)
    assert later.phase is RolloutPhase.COMPLETED and later.active_colour is G
    assert "AnalysisFailed" not in reasons(steps)


def test_an_abort_moves_back_in_steps_and_ends_aborted() -> None:
    s = settings(maxUnavailable=1)
    world = World(4, {B: Colourway(OLD, 4, 4, 4)})
    st = RolloutState(RolloutPhase.COMPLETED, B, OLD)
    now, outs = 1000.0, []
    for i in range(200):
        inp = inputs(world, st, s, 4, HEALTHY)
        if st.first_pods_passed and st.phase is RolloutPhase.PROGRESSING:
            inp = replace(inp, abort_requested=True)
        out = R.step(st, inp, now)
        world.apply(out)
        outs.append(out)
        st = out.state
        if st.phase is RolloutPhase.ABORTED:
            break
        world.tick()
        now += 5.0
        assert i < 199
    assert st.active_colour is B and world.colours[B].want == 4
    assert any(o.consume_abort for o in outs)
    assert "RolloutAborted" in reasons(outs)


def test_with_max_unavailable_zero_a_full_cluster_waits_and_says_so() -> None:
    s = settings(maxUnavailable=0, readyTimeoutSeconds=120)
    world = World(4, {B: Colourway(OLD, 4, 4, 4)})
    st = RolloutState(RolloutPhase.COMPLETED, B, OLD)
    now, outs = 1000.0, []
    for _ in range(60):
        out = R.step(st, inputs(world, st, s, 4, HEALTHY), now)
        world.apply(out)
        outs.append(out)
        st = out.state
        if st.phase is RolloutPhase.ROLLED_BACK:
            break
        world.tick()
        now += 5.0
    got = reasons(outs)
    assert got.count("PreviewShortOfGPUs") == 1  # said once, not every reconcile
    assert "SteppedTransition" not in got
    assert st.phase is RolloutPhase.ROLLED_BACK and "PreviewNotReady" in got
    assert world.colours[B].ready == 4  # nothing was given up


def test_a_preview_that_gets_its_gpus_within_the_grace_stays_classic() -> None:
    """Unschedulable for less than unschedulableSeconds (e.g. an autoscaler adding a node):
    the classic blue-green goes on."""
    s = settings(unschedulableSeconds=30)
    st = RolloutState(
        RolloutPhase.PROGRESSING, B, OLD, G, NEW, started_at=1000.0, phase_since=1000.0
    )
    waiting = ColourObservation(True, 4, 0, 4, NEW, unschedulable=4)
    inp = RolloutInputs(NEW, 4, s, 2.0, ColourObservation(True, 4, 4, 4, OLD), waiting)
    first = R.step(st, inp, 1005.0)
    assert first.state.short_since == 1005.0 and not first.state.stepped
    assert first.recheck_after == 30.0
    placed = replace(inp, other=replace(waiting, unschedulable=0, ready=2))
    later = R.step(first.state, placed, 1020.0)
    assert not later.state.stepped and later.state.short_since is None
    assert later.active.replicas == 4 and later.other is not None and later.other.replicas == 4


@pytest.mark.parametrize(
    ("n", "u", "surge", "passed", "ready", "stable_before", "want"),
    [
        (4, 1, None, False, 0, 4, (3, 4)),  # first step: one old pod goes
        (4, 1, None, False, 1, 3, (3, 4)),  # first pods under analysis: no further
        (4, 1, None, True, 1, 3, (2, 4)),  # passed: one more goes per Ready new pod
        (4, 1, None, True, 3, 1, (0, 4)),
        (4, 2, None, True, 1, 2, (1, 4)),
        (4, 0, 1, False, 0, 4, (4, 1)),  # surge only: add one, then swap as they get Ready
        (4, 0, 1, True, 2, 3, (2, 3)),
        (4, 1, 0, True, 1, 3, (2, 2)),  # no surge at all: a pure replace
        (4, 1, None, False, 0, 1, (1, 4)),  # superseded late: the old colour does not grow back
    ],
)
def test_stepped_targets(
    n: int,
    u: int,
    surge: int | None,
    passed: bool,
    ready: int,
    stable_before: int,
    want: tuple[int, int],
) -> None:
    s = settings(maxUnavailable=u, maxSurge=surge)
    st = RolloutState(
        RolloutPhase.PROGRESSING,
        B,
        OLD,
        G,
        NEW,
        started_at=1000.0,
        stepped=True,
        first_pods_passed=passed,
        stable_replicas=stable_before,
    )
    inp = RolloutInputs(
        NEW,
        n,
        s,
        2.0,
        ColourObservation(True, stable_before, stable_before, stable_before, OLD),
        ColourObservation(True, n, ready, n, NEW),
    )
    ctx = R.RolloutContext.observe(st, inp, 1010.0)
    assert R._stepped_targets(ctx, st) == want


def test_a_stepped_transition_round_trips_through_status() -> None:
    from deepseek_operator.api.status import DeepSeekDeploymentStatus
    from deepseek_operator.reconcile import rollout_state_from_status, rollout_status

    st = RolloutState(
        RolloutPhase.ROLLING_BACK,
        B,
        OLD,
        G,
        NEW,
        started_at=1000.0,
        phase_since=1100.0,
        stepped=True,
        stable_replicas=4,
        stable_base=3,
        first_pods_passed=True,
        short_since=1010.0,
        step_since=1050.0,
        preview_ready=2,
        rollback_unmixed=True,
        end_phase=RolloutPhase.ABORTED,
    )
    status = DeepSeekDeploymentStatus(
        active_colour=B, template_hash=OLD, rollout=rollout_status(st)
    )
    back = DeepSeekDeploymentStatus.model_validate(status.model_dump(by_alias=True))
    assert rollout_state_from_status(back) == st
