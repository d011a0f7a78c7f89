"""Validate an object offline the way the API server does with our CRD: apply structural
defaults, check the OpenAPI schema, then evaluate every `x-kubernetes-validations` CEL rule.

Used by the unit tests so the schema's own rules are exercised without a cluster; the e2e
tests check the same cases against the real kube-apiserver.
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
import jsonschema
from deepseek_operator.api.crd import crd


def root_schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """Structural defaulting: fill `default`s of absent properties, recursively."""
    obj = copy.deepcopy(obj)
    if schema.get("type") == "object" and isinstance(obj, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in obj and "default" in sub:
                obj[name] = copy.deepcopy(sub["default"])
            if name in obj:
                obj[name] = apply_defaults(sub, obj[name])
        ap = schema.get("additionalProperties")
        if isinstance(ap, dict):
            for k in obj:
                obj[k] = apply_defaults(ap, obj[k])
    elif schema.get("type") == "array" and isinstance(obj, list):
        obj = [apply_defaults(schema["items"], v) for v in obj]
    return obj


def _strip_x(node: Any) -> Any:
    """The schema as JSON Schema draft 4: no x-kubernetes keys, OpenAPI's `nullable` as a type."""
    if isinstance(node, dict):
        out = {k: _strip_x(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
        if out.pop("nullable", False) and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [_strip_x(v) for v in node]
    return node


def _cel_errors(schema: dict[str, Any], obj: Any, path: str, env: celpy.Environment) -> list[str]:
    errors: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        program = env.program(env.compile(rule["rule"]))
        verdict = program.evaluate({"self": celpy.json_to_cel(obj)})
        if verdict is not True and not (hasattr(verdict, "__bool__") and bool(verdict) is True):
            errors.append(f"{path}{rule.get('fieldPath', '')}: {rule['message']}")
    if schema.get("type") == "object" and isinstance(obj, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in obj:
                errors += _cel_errors(sub, obj[name], f"{path}.{name}", env)
    elif schema.get("type") == "array" and isinstance(obj, list):
        for i, v in enumerate(obj):
            errors += _cel_errors(schema["items"], v, f"{path}[{i}]", env)
    return errors


def validate(obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(defaulted object, errors). Errors name the field like the API server does."""
    schema = root_schema()
    defaulted = apply_defaults(schema, obj)
    validator = jsonschema.Draft4Validator(_strip_x(schema))
    errors = [
        ".".join(str(p) for p in e.absolute_path) + f": {e.message}"
        for e in validator.iter_errors(defaulted)
    ]
    if errors:  # the API server stops before CEL when the schema fails
        return defaulted, errors
    spec_schema = schema["properties"]["spec"]
    return defaulted, _cel_errors(
        spec_schema, defaulted.get("spec", {}), "spec", celpy.Environment()
    )
