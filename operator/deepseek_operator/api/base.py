"""Shared pieces of the API models: camelCase field names, CEL rules, Kubernetes conditions."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

GROUP = "serving.deepseek.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "DeepSeekDeployment"
PLURAL = "deepseekdeployments"
SINGULAR = "deepseekdeployment"
SHORT_NAMES = ["dsd"]


class ApiModel(BaseModel):
    """Base of every spec/status model.

    Field names are snake_case in Python and camelCase on the wire, like every Kubernetes API.
    Unknown fields are rejected so that a typo in a manifest is an error rather than a silently
    ignored setting (the API server prunes them too, since the CRD schema is structural).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    def to_k8s(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry, enforced by the API server itself.

    Every rule here is mirrored by a pydantic validator on the same model, so the operator and
    the unit tests reach the same verdict as the API server.
    """
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


def k8s_extra(*rules: dict[str, str], **extra: Any) -> dict[str, Any]:
    """json_schema_extra for a model: its CEL rules and any other `x-kubernetes-*` keys."""
    out: dict[str, Any] = dict(extra)
    if rules:
        out["x-kubernetes-validations"] = list(rules)
    return out
