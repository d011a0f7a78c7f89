"""One resource, every region, as tables: (home object, region, the copy there) -> what to do."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from deepseek_operator import propagation as P
from deepseek_operator.api.spec import RegionSpec
from deepseek_operator.api.status import RegionStatus
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[2]
UID = "0b6f7a52-home"


def home(**spec: Any) -> dict[str, Any]:
    """The example resource as the API server returns it, with two regions."""
    obj = yaml.safe_load((ROOT / "examples" / "deepseek-r1-distill-7b.yaml").read_text())
    obj["metadata"].update(namespace="llm", uid=UID, generation=3)
    obj["spec"]["replicas"] = 4  # written by the home autoscaler
    obj["spec"]["regions"] = [
        {"name": "us-east", "weight": 100},
        {"name": "eu-west", "role": "standby", "weight": 0, "kubeconfigSecretRef": {"name": "k"}},
    ]
    obj["spec"]["failover"] = {"enabled": True}
    obj["spec"].update(spec)
    return obj


def region(**kw: Any) -> RegionSpec:
    return RegionSpec.model_validate(
        {"name": "eu-west", "kubeconfigSecretRef": {"name": "k"}, **kw}
    )


def copy_of(h: dict[str, Any], r: RegionSpec, **spec: Any) -> dict[str, Any]:
    """The copy as the member region's API server returns it after a create."""
    p = P.plan(h, r, None)
    assert p.body is not None
    obj = copy.deepcopy(p.body)
    obj["metadata"].update(uid="member-uid", resourceVersion="7")
    obj["spec"].update(spec)
    return obj


# --- the copy's spec -------------------------------------------------------------------------

SPEC_CASES = [
    # (case, home spec overrides, region fields, expected scaling subset, expected replicas)
    (
        "primary copy: home bounds, autoscaler sizes it",
        {},
        {},
        {"minReplicas": 1, "maxReplicas": 6},
        None,
    ),
    (
        "region bounds",
        {},
        {"minReplicas": 2, "maxReplicas": 3},
        {"minReplicas": 2, "maxReplicas": 3},
        None,
    ),
    (
        "standby floor is its minReplicas",
        {},
        {"role": "standby", "standbyReplicas": 2},
        {"minReplicas": 2, "maxReplicas": 6},
        None,
    ),
    (
        "standby without autoscaling: replicas = standbyReplicas",
        {"scaling": {"enabled": False, "minReplicas": 1, "maxReplicas": 6}},
        {"role": "standby", "standbyReplicas": 2},
        {"enabled": False, "minReplicas": 2},
        2,
    ),
    (
        "fixed size is kept in sync",
        {"scaling": {"enabled": False, "minReplicas": 1, "maxReplicas": 6}},
        {},
        {"enabled": False},
        4,
    ),
    (
        "standbyReplicas of a primary is ignored",
        {},
        {"role": "primary", "standbyReplicas": 3},
        {"minReplicas": 1},
        None,
    ),
]


@pytest.mark.parametrize(("case", "spec", "fields", "scaling", "replicas"), SPEC_CASES)
def test_member_spec(
    case: str,
    spec: dict[str, Any],
    fields: dict[str, Any],
    scaling: dict[str, Any],
    replicas: int | None,
) -> None:
    h = home(**spec)
    got = P.member_spec(h["spec"], region(**fields))
    assert "regions" not in got and "failover" not in got, case
    assert got["model"] == h["spec"]["model"], case
    for k, v in scaling.items():
        assert got["scaling"][k] == v, (case, k)
    assert got.get("replicas") == replicas, case


def test_member_spec_leaves_the_home_spec_alone() -> None:
    h = home()
    before = copy.deepcopy(h)
    P.member_spec(h["spec"], region(role="standby", standbyReplicas=2, maxReplicas=3))
    assert h == before


# --- what to do with the copy ----------------------------------------------------------------


def _edited(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    node = obj
    for k in path[:-1]:
        node = node.setdefault(k, {})
    node[path[-1]] = value
    return obj


H = home()
R = region()
MINE = copy_of(H, R)
PLAN_CASES = [
    # (case, home, existing copy, action, words in the message)
    ("no copy yet", H, None, P.Action.CREATE, "created"),
    ("copy in sync", H, MINE, P.Action.NONE, "in sync"),
    (
        "the member's autoscaler moved replicas: not a difference",
        H,
        _edited(MINE, ("spec", "replicas"), 5),
        P.Action.NONE,
        "in sync",
    ),
    (
        "the region's API server filled in defaults of the stripped fields",
        H,
        _edited(_edited(MINE, ("spec", "failover"), {"enabled": False}), ("spec", "regions"), []),
        P.Action.NONE,
        "in sync",
    ),
    (
        "home changed (new generation)",
        _edited(_edited(H, ("spec", "model", "maxModelLen"), 8192), ("metadata", "generation"), 4),
        MINE,
        P.Action.UPDATE,
        "home resource changed; fields model",
    ),
    (
        "edited in the region: drift",
        H,
        _edited(MINE, ("spec", "scaling", "maxReplicas"), 1),
        P.Action.UPDATE,
        "(drift); fields scaling",
    ),
    (
        "field added in the region: drift",
        H,
        _edited(MINE, ("spec", "nodeSelector"), {"a": "b"}),
        P.Action.UPDATE,
        "fields nodeSelector",
    ),
    (
        "made by hand: never touched",
        H,
        _edited(MINE, ("metadata", "annotations"), {}),
        P.Action.CONFLICT,
        "did not create",
    ),
    (
        "the kubeconfig reaches this cluster: the object is the home itself",
        H,
        H,
        P.Action.CONFLICT,
        "reaches this cluster",
    ),
    (
        "copy of another home (same name, other UID)",
        H,
        _edited(MINE, ("metadata", "annotations", P.HOME_UID), "other"),
        P.Action.CONFLICT,
        "left as it is",
    ),
]


@pytest.mark.parametrize(("case", "h", "existing", "action", "words"), PLAN_CASES)
def test_plan(
    case: str, h: dict[str, Any], existing: dict[str, Any] | None, action: P.Action, words: str
) -> None:
    p = P.plan(h, R, existing)
    assert p.action is action, (case, p)
    assert words in p.message, (case, p.message)


def test_created_copy_is_marked_and_needs_no_regions() -> None:
    p = P.plan(H, R, None)
    assert p.body is not None
    meta = p.body["metadata"]
    assert (meta["namespace"], meta["name"]) == ("llm", "r1-distill-7b")
    assert meta["annotations"][P.HOME_UID] == UID
    assert meta["annotations"][P.HOME_GENERATION] == "3"
    assert "replicas" not in p.body["spec"]  # the member's autoscaler starts it at minReplicas


def test_update_keeps_the_members_replicas() -> None:
    changed = _edited(H, ("spec", "model", "maxModelLen"), 8192)
    p = P.plan(changed, R, _edited(MINE, ("spec", "replicas"), 5))
    assert p.action is P.Action.UPDATE and p.body is not None
    assert p.body["replicas"] == 5 and p.body["model"]["maxModelLen"] == 8192


def test_fixed_size_change_is_an_update() -> None:
    fixed = home(scaling={"enabled": False, "minReplicas": 1, "maxReplicas": 6})
    mine = copy_of(fixed, R)
    p = P.plan(fixed, R, _edited(mine, ("spec", "replicas"), 1))
    assert p.action is P.Action.UPDATE and "replicas" in p.message


def test_invalid_overrides_name_the_region() -> None:
    # The region allows fewer replicas than the home floor: the copy would be invalid.
    p = P.plan(H, region(maxReplicas=1, standbyReplicas=3, role="standby"), None)
    assert p.action is P.Action.INVALID and p.body is None
    assert "eu-west" in p.message and "scaling" in p.message


def test_an_invalid_copy_message_never_echoes_an_env_value() -> None:
    """The message goes into status.regions[] and an Event: it names the field, never a value
    (pydantic's own error text would quote the input)."""
    token = "hf_rEgIoNcOpYnEvErPrInTeD"
    h = home(engine={"env": [{"name": "HF_TOKEN", "value": token}]})
    p = P.plan(h, region(maxReplicas=1, standbyReplicas=3, role="standby"), None)
    assert p.action is P.Action.INVALID and "scaling" in p.message
    assert token not in p.message


def test_region_bounds_validated() -> None:
    with pytest.raises(ValidationError, match="minReplicas must be less than or equal"):
        region(minReplicas=3, maxReplicas=2)


# --- deletion --------------------------------------------------------------------------------

REMOVAL_CASES = [
    ("ours", MINE, P.Action.DELETE),
    ("none there", None, P.Action.NONE),
    ("made by hand", _edited(MINE, ("metadata", "annotations"), {}), P.Action.CONFLICT),
    ("the home itself (kubeconfig of this cluster)", H, P.Action.NONE),
]


@pytest.mark.parametrize(("case", "existing", "action"), REMOVAL_CASES)
def test_removal(case: str, existing: dict[str, Any] | None, action: P.Action) -> None:
    assert P.removal(UID, "eu-west", existing).action is action, case


SECRET_REF = {"name": "eu-west-kubeconfig"}
HOLDS_CASES = [
    ("no regions", {}, {}, False),
    ("regions without kubeconfigs (this cluster only)", {"regions": [{"name": "a"}]}, {}, False),
    (
        "a member region",
        {"regions": [{"name": "a"}, {"name": "b", "kubeconfigSecretRef": SECRET_REF}]},
        {},
        True,
    ),
    (
        "copies to be kept",
        {"regions": [{"name": "b", "kubeconfigSecretRef": SECRET_REF}]},
        {P.KEEP_COPIES: "true"},
        False,
    ),
    (
        "an invalid spec still names its member regions",
        {"regions": [{"name": "B!", "kubeconfigSecretRef": SECRET_REF}], "replicas": -1},
        {P.KEEP_COPIES: "false"},
        True,
    ),
    ("regions not a list", {"regions": "b"}, {}, False),
]


@pytest.mark.parametrize(("case", "spec", "annotations", "holds"), HOLDS_CASES)
def test_holds_deletion(
    case: str, spec: dict[str, Any], annotations: dict[str, str], holds: bool
) -> None:
    assert P.holds_deletion(spec, annotations) is holds, case


# --- status, Events, condition ---------------------------------------------------------------


def test_record_lag_events_and_condition() -> None:
    prev = RegionStatus(name="eu-west", state="Healthy", weight=0)
    created = P.Plan(P.Action.CREATE, "created the copy in region eu-west")
    s1, ev = P.record(prev, created, 3, now=112.5, seen_at=110.0)
    assert (s1.copy_state, s1.synced_generation, s1.sync_lag_seconds) == ("Created", 3, 2.5)
    assert s1.state == "Healthy"  # health fields untouched
    assert ev is not None and (ev.type, ev.reason) == ("Normal", "CopyCreated")
    # In sync at the same generation: no Event, the lag of the last change stays.
    s2, ev = P.record(s1, P.Plan(P.Action.NONE, "in sync"), 3, now=200.0, seen_at=110.0)
    assert ev is None and s2.sync_lag_seconds == 2.5 and s2.copy_state == "InSync"
    # Unreachable: one Warning when it starts, none while it lasts; the synced generation stays.
    down = P.Plan(P.Action.UNREACHABLE, "region eu-west: region API unreachable: refused")
    s3, ev = P.record(s2, down, 4, now=210.0, seen_at=205.0)
    assert ev is not None and (ev.type, ev.reason) == ("Warning", "CopyUnreachable")
    assert s3.synced_generation == 3
    s4, ev = P.record(s3, down, 4, now=220.0, seen_at=205.0)
    assert ev is None
    assert P.synced_condition([s4]) == (False, "CopyUnreachable", down.message)
    # Back: the change made while it was away is written, the lag counts from when it was seen.
    s5, ev = P.record(s4, P.Plan(P.Action.UPDATE, "updated"), 4, now=230.0, seen_at=205.0)
    assert (s5.synced_generation, s5.sync_lag_seconds) == (4, 25.0)
    ok, reason, _ = P.synced_condition([RegionStatus(name="us-east"), s5])
    assert (ok, reason) == (True, "CopiesInSync")


# --- warm standby that grows on failover ------------------------------------------------------


def _regions(*specs: tuple[str, int]) -> list[RegionSpec]:
    return [
        RegionSpec.model_validate({"name": n, "weight": w, "kubeconfigSecretRef": {"name": n}})
        for n, w in specs
    ]


def _st(name: str, state: str, weight: int, carrying: int | None) -> RegionStatus:
    return RegionStatus(name=name, state=state, weight=weight, carrying_replicas=carrying)


PRIMARY_STANDBY = _regions(("us-east", 100), ("eu-west", 0))
ACTIVE = _regions(("us-east", 60), ("eu-west", 30), ("ap-south", 10))
FLOOR_CASES = [
    # (case, regions, statuses, expected floors)
    (
        "all healthy: no floor",
        PRIMARY_STANDBY,
        [_st("us-east", "Healthy", 100, 4), _st("eu-west", "Healthy", 0, 1)],
        {},
    ),
    (
        "primary lost: the standby takes all it ran",
        PRIMARY_STANDBY,
        [_st("us-east", "Unhealthy", 0, 4), _st("eu-west", "Healthy", 100, 1)],
        {"eu-west": 4},
    ),
    (
        "still recovering (failback delay): the floor stays",
        PRIMARY_STANDBY,
        [_st("us-east", "Recovering", 0, 4), _st("eu-west", "Healthy", 100, 4)],
        {"eu-west": 4},
    ),
    (
        "back in rotation: the floor goes",
        PRIMARY_STANDBY,
        [_st("us-east", "Healthy", 100, 4), _st("eu-west", "Healthy", 0, 4)],
        {},
    ),
    (
        "active regions share the lost replicas by weight, rounded up",
        ACTIVE,
        [
            _st("us-east", "Unhealthy", 0, 5),
            _st("eu-west", "Healthy", 30, 2),
            _st("ap-south", "Healthy", 10, 1),
        ],
        {"eu-west": 4, "ap-south": 2},
    ),
    (
        "a lost standby (weight 0) moves nothing",
        PRIMARY_STANDBY,
        [_st("us-east", "Healthy", 100, 4), _st("eu-west", "Unhealthy", 0, 1)],
        {},
    ),
    (
        "never seen carrying: nothing to raise to",
        PRIMARY_STANDBY,
        [_st("us-east", "Unhealthy", 0, None), _st("eu-west", "Healthy", 100, 1)],
        {},
    ),
    (
        "nowhere to go: no floor",
        PRIMARY_STANDBY,
        [_st("us-east", "Unhealthy", 100, 4), _st("eu-west", "Unhealthy", 0, 1)],
        {},
    ),
]


@pytest.mark.parametrize(("case", "regions", "statuses", "want"), FLOOR_CASES)
def test_floors(
    case: str, regions: list[RegionSpec], statuses: list[RegionStatus], want: dict[str, int]
) -> None:
    got = P.floors(regions, statuses)
    assert {k: f.replicas for k, f in got.items()} == want, case
    for f in got.values():
        assert "us-east" in f.reason, f


def test_floor_raises_and_lifts_the_copy() -> None:
    standby = region(role="standby", standbyReplicas=1, maxReplicas=3)
    mine = copy_of(H, standby)
    assert mine["spec"]["scaling"]["minReplicas"] == 1
    up = P.plan(H, standby, mine, P.Floor(4, "it takes 100% of the traffic of us-east"))
    assert up.action is P.Action.UPDATE and up.event_reason == "StandbyRaised", up
    assert up.body is not None and up.body["scaling"]["minReplicas"] == 3  # within maxReplicas
    assert "failover: at least 4 replicas" in up.message
    raised = _edited(
        _edited(mine, ("spec", "scaling", "minReplicas"), 3),
        ("metadata", "annotations", P.FLOOR),
        "4",
    )
    assert P.plan(H, standby, raised, P.Floor(4, "x")).action is P.Action.NONE
    down = P.plan(H, standby, raised, None)
    assert down.action is P.Action.UPDATE and down.event_reason == "StandbyLowered", down
    assert down.body is not None and down.body["scaling"]["minReplicas"] == 1
    assert "failback" in down.message


def test_floor_without_autoscaling_sets_replicas() -> None:
    fixed = home(
        scaling={"enabled": False, "minReplicas": 0, "maxReplicas": 4, "scaleToZero": True}
    )
    spec = P.member_spec(fixed["spec"], region(role="standby", standbyReplicas=1), 2)
    assert (spec["replicas"], spec["scaling"]["minReplicas"]) == (2, 2)
    assert P.member_spec(fixed["spec"], region(role="standby", standbyReplicas=1))["replicas"] == 1
