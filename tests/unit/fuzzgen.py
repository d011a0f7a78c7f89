"""Generated DeepSeekDeployment manifests for property-based tests (hypothesis), driven by the
CRD's own schema: a manifest is one of examples/ with a few fields set to values the schema
allows and, for an invalid one, exactly one field set to a value it forbids (above a maximum,
below a minimum, outside an enum, the wrong type, or a field the schema does not know).

`tests/unit/test_fuzz.py` checks them offline (crdcheck: schema + CEL, then the operator's
models and rendering); `tests/e2e/test_fuzz.py` applies them to the real kube-apiserver.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from .crdcheck import root_schema

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
Path_ = tuple[str, ...]
BIG = 10**6


@dataclass(frozen=True)
class Leaf:
    path: Path_  # under the object: ("spec", "scaling", "maxReplicas")
    schema: dict[str, Any]

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Case:
    manifest: dict[str, Any]
    edits: tuple[Path_, ...]  # fields set to allowed values
    broken: Leaf | None  # the one field set to a forbidden value (None: none)
    how: str  # how it was broken, for messages


def _leaves(schema: dict[str, Any], path: Path_) -> list[Leaf]:
    """Scalar fields reachable through objects only (fields inside lists are left alone: an
    edit there would need the list's items to exist)."""
    out: list[Leaf] = []
    for name, sub in (schema.get("properties") or {}).items():
        p = (*path, name)
        t = sub.get("type")
        if t == "object" and sub.get("properties"):
            out += _leaves(sub, p)
        elif (
            t in ("integer", "number", "boolean") or (t == "string" and "pattern" not in sub)
        ) and ("x-kubernetes-int-or-string" not in sub and "format" not in sub):
            out.append(Leaf(p, sub))
    return out


def leaves() -> list[Leaf]:
    return _leaves(root_schema()["properties"]["spec"], ("spec",))


def _objects(schema: dict[str, Any], path: Path_) -> list[Path_]:
    """Objects that refuse unknown fields (structural schemas prune or, with strict field
    validation, reject them)."""
    out: list[Path_] = []
    if schema.get("type") == "object" and schema.get("properties"):
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            out.append(path)
        for name, sub in schema["properties"].items():
            out += _objects(sub, (*path, name))
    return out


def objects() -> list[Path_]:
    return _objects(root_schema()["properties"]["spec"], ("spec",))


def allowed(leaf: Leaf) -> st.SearchStrategy[Any]:
    s = leaf.schema
    t = s["type"]
    if "enum" in s:
        return st.sampled_from(s["enum"])
    if t == "boolean":
        return st.booleans()
    if t == "integer":
        lo = s.get("minimum", 0)
        lo = lo + 1 if s.get("exclusiveMinimum") else lo
        hi = s.get("maximum", max(lo, 0) + 1000)
        hi = hi - 1 if s.get("exclusiveMaximum") else hi
        return st.integers(int(lo), int(hi))
    if t == "number":
        lo = float(s.get("minimum", 0.0))
        hi = float(s.get("maximum", lo + 1000.0))
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False).filter(
            lambda v: (
                not (s.get("exclusiveMinimum") and v == lo)
                and not (s.get("exclusiveMaximum") and v == hi)
            )
        )
    n = min(int(s.get("maxLength", 32)), 32)
    lo = int(s.get("minLength", 1))
    return st.text(
        alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=lo, max_size=max(lo, n)
    )


def forbidden(leaf: Leaf) -> list[st.SearchStrategy[tuple[Any, str]]]:
    """Ways to break this field, each with a label."""
    s = leaf.schema
    t = s["type"]
    ways: list[st.SearchStrategy[tuple[Any, str]]] = []
    if t == "integer":
        if "maximum" in s:
            m = int(s["maximum"])
            ways.append(st.integers(m + 1, m + BIG).map(lambda v: (v, "above maximum")))
        if "minimum" in s:
            m = int(s["minimum"])
            ways.append(st.integers(m - BIG, m - 1).map(lambda v: (v, "below minimum")))
        ways.append(st.just(("many", "a string for an integer")))
    elif t == "number":
        if "maximum" in s:
            m = float(s["maximum"])
            ways.append(st.floats(m + 1.0, m + BIG).map(lambda v: (v, "above maximum")))
        if "minimum" in s:
            m = float(s["minimum"])
            ways.append(st.floats(m - BIG, m - 1.0).map(lambda v: (v, "below minimum")))
        ways.append(st.just(("lots", "a string for a number")))
    elif t == "boolean":
        ways.append(st.just(("yes", "a string for a boolean")))
    elif "enum" in s:
        ways.append(st.just(("NotAMember", "outside the enum")))
        ways.append(st.just((7, "an integer for a string")))
    else:
        if "maxLength" in s:
            ways.append(st.just(("x" * (int(s["maxLength"]) + 1), "longer than maxLength")))
        ways.append(st.just(({"a": 1}, "an object for a string")))
    return ways


def _set(obj: dict[str, Any], path: Path_, value: Any) -> None:
    node = obj
    for key in path[:-1]:
        nxt = node.get(key)
        if not isinstance(nxt, dict):
            nxt = node[key] = {}
        node = nxt
    node[path[-1]] = value


def _base(i: int, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLES[i].read_text())
    doc["metadata"] = {"name": name}
    return doc


@st.composite
def cases(draw: st.DrawFn, *, invalid: bool | None = None, name: str = "fuzz") -> Case:
    """One manifest: an example with 0-4 allowed edits and (when `invalid`, or on a coin flip
    when None) one forbidden value or unknown field."""
    all_leaves = leaves()
    doc = copy.deepcopy(_base(draw(st.integers(0, len(EXAMPLES) - 1)), name))
    picked = draw(st.lists(st.sampled_from(all_leaves), max_size=4, unique_by=lambda x: x.path))
    for leaf in picked:
        _set(doc, leaf.path, draw(allowed(leaf)))
    broken_ = draw(st.booleans()) if invalid is None else invalid
    if not broken_:
        return Case(doc, tuple(x.path for x in picked), None, "")
    if draw(st.integers(0, 9)) == 0:  # an unknown field in some object
        where = draw(st.sampled_from(objects()))
        leaf = Leaf((*where, "notAField"), {"type": "string"})
        _set(doc, leaf.path, "x")
        return Case(doc, tuple(x.path for x in picked), leaf, "an unknown field")
    target = draw(st.sampled_from([x for x in all_leaves if forbidden(x)]))
    value, how = draw(st.one_of(*forbidden(target)))
    _set(doc, target.path, value)
    # an edit on the broken field itself (or below it) is overwritten
    edits = tuple(x.path for x in picked if x.path[: len(target.path)] != target.path)
    return Case(doc, edits, target, how)
