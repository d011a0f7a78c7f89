"""Generate the DeepSeekDeployment CRD from the pydantic models.

Pydantic emits JSON Schema 2020-12 with `$defs`/`$ref`; the API server wants a *structural*
OpenAPI v3 schema: no references, a `type` on every node, `exclusiveMinimum` as a boolean,
nullable handled by leaving a field out (items of a list keep `nullable`). This module does
that conversion and adds what only a CRD has: printer columns, the status and scale
subresources, and API-server defaults for nested objects so `kubectl get -o yaml` shows every
effective setting.
"""

from __future__ import annotations

import copy
import typing
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter

from .base import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION
from .spec import DeepSeekDeploymentSpec
from .status import DeepSeekDeploymentStatus

_DROP = {"title", "discriminator", "examples"}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.checkpoint"},
    {"name": "Mode", "type": "string", "jsonPath": ".status.mode"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"},
    {"name": "Active", "type": "string", "jsonPath": ".status.activeColour"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _deref(node: Any, defs: dict[str, Any]) -> Any:
    """Inline every $ref, recursively (the models have no recursive types)."""
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].split("/")[-1]
            merged = copy.deepcopy(defs[name])
            for k, v in node.items():  # siblings of $ref (description, default) win
                if k != "$ref":
                    merged[k] = v
            return _deref(merged, defs)
        return {k: _deref(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_deref(v, defs) for v in node]
    return node


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    """Turn one (dereferenced) JSON Schema node into a structural OpenAPI v3 node."""
    node = {k: v for k, v in node.items() if k not in _DROP}

    # Optional[X]: anyOf [X, null] -> X (a missing field is the CRD's "null").
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"unsupported union in schema: {branches}")
        inner = _structural(branches[0])
        for k, v in node.items():
            inner[k] = v
        node = inner
        if node.get("default", 0) is None:
            del node["default"]

    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "enum" in node and "type" not in node:
        node["type"] = "string"

    for bound in ("Minimum", "Maximum"):
        ex = node.get(f"exclusive{bound}")
        if isinstance(ex, (int, float)) and not isinstance(ex, bool):
            node[bound.lower()] = ex
            node[f"exclusive{bound}"] = True

    t = node.get("type")
    if t == "object":
        props = node.get("properties")
        if props is not None:
            node["properties"] = {k: _structural(v) for k, v in props.items()}
        ap = node.get("additionalProperties")
        if isinstance(ap, dict):
            node["additionalProperties"] = _structural(ap)
        elif ap is False:
            del node["additionalProperties"]
    elif t == "array":
        # list[X | None]: the items keep their null (a missing item would shift the others).
        items = node["items"]
        nullable = any(b.get("type") == "null" for b in items.get("anyOf", []))
        node["items"] = _structural(items)
        if nullable:
            node["items"]["nullable"] = True
    elif t is None:
        raise ValueError(f"schema node without a type: {node}")
    if "format" in node and node["format"] not in {"date-time", "int32", "int64", "double"}:
        del node["format"]
    return node


def _unwrap(annotation: Any) -> Any:
    """The model class inside X, X | None or list[X], else None."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for a in args:
        found = _unwrap(a)
        if found is not None:
            return found
    return None


def _apply_factory_defaults(model: type[BaseModel], node: dict[str, Any]) -> None:
    """Give fields built by `default_factory` an API-server default.

    Pydantic leaves them out of the JSON Schema. Sub-objects get their whole defaulted value (the
    API server only defaults inside objects that exist, and it checks a default against the
    object's CEL rules, so `default: {}` would fail rules that read `self.minReplicas`); lists
    and maps get their factory's value. Without this, a manifest that omits `scaling:` would store
    no scaling settings, and CEL rules reading `self.regions` would fail on a missing key.
    """
    props = node.get("properties", {})
    for name, field in model.model_fields.items():
        prop = props.get(field.alias or name)
        if prop is None:
            continue
        sub = _unwrap(field.annotation)
        if sub is not None:
            _apply_factory_defaults(sub, prop["items"] if prop.get("type") == "array" else prop)
        if field.default_factory is not None and "default" not in prop:
            value = field.default_factory()  # type: ignore[call-arg]
            if isinstance(value, BaseModel):
                prop["default"] = value.model_dump(mode="json", by_alias=True, exclude_none=True)
            else:
                prop["default"] = TypeAdapter(typing.cast(Any, field.annotation)).dump_python(
                    value, mode="json", by_alias=True, exclude_none=True
                )


_KEY_ORDER = [
    "type",
    "description",
    "default",
    "enum",
    "format",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "required",
    "x-kubernetes-validations",
    "items",
    "additionalProperties",
    "properties",
]


def _ordered(node: Any) -> Any:
    """Stable, readable key order (type and description first, children last)."""
    if isinstance(node, list):
        return [_ordered(v) for v in node]
    if not isinstance(node, dict) or "type" not in node:
        return node
    rank = {k: i for i, k in enumerate(_KEY_ORDER)}
    out: dict[str, Any] = {}
    for k in sorted(node, key=lambda k: rank.get(k, len(rank))):
        v = node[k]
        if k == "properties":
            v = {name: _ordered(child) for name, child in v.items()}
        elif k in ("items", "additionalProperties"):
            v = _ordered(v)
        out[k] = v
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Structural OpenAPI v3 schema of a pydantic model, with wire (camelCase) names."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema = _structural(_deref(raw, defs))
    _apply_factory_defaults(model, schema)
    return typing.cast(dict[str, Any], _ordered(schema))


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    spec_schema = openapi_schema(DeepSeekDeploymentSpec)
    status_schema = openapi_schema(DeepSeekDeploymentStatus)
    root = {
        "type": "object",
        "description": "DeepSeekDeployment serves a DeepSeek model on vLLM GPU pods spread "
        "over zones, autoscaled on engine metrics and updated blue-green.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {
                "app.kubernetes.io/name": "deepseek-operator",
                "app.kubernetes.io/part-of": "deepseek-operator",
            },
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["all", "deepseek"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML checked in under crds/."""
    header = (
        "# Generated by `deepseek-operator crd` from operator/deepseek_operator/api/.\n"
        "# Do not edit: change the pydantic models and run `make crd`.\n"
    )
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)
