"""The whole DeepSeekDeployment object."""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .spec import DeepSeekDeploymentSpec
from .status import DeepSeekDeploymentStatus


class ObjectMeta(BaseModel):
    """The part of metadata the operator reads; the rest is kept as is."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    name: str
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class DeepSeekDeployment(BaseModel):
    """A DeepSeekDeployment as read from the API server."""

    model_config = ConfigDict(populate_by_name=True)

    api_version: Literal["serving.deepseek.dev/v1alpha1"] = Field(
        "serving.deepseek.dev/v1alpha1", alias="apiVersion"
    )
    kind: Literal["DeepSeekDeployment"] = "DeepSeekDeployment"
    metadata: ObjectMeta
    spec: DeepSeekDeploymentSpec
    status: DeepSeekDeploymentStatus = Field(default_factory=DeepSeekDeploymentStatus)

    @classmethod
    def from_k8s(cls, obj: dict[str, Any]) -> DeepSeekDeployment:
        """Parse an object from the API server (or a manifest). Raises ValidationError.

        Status fields this version does not know (written by a newer operator, before a
        rollback) are dropped, not an error: the status is the operator's own record and is
        rewritten on the next reconcile, while refusing the object would stop reconciling it.
        Unknown or invalid spec fields still raise."""
        try:
            return cls.model_validate(obj)
        except ValidationError as e:
            cleaned = _without_unknown_status_fields(obj, e)
            if cleaned is None:
                raise
            return cls.model_validate(cleaned)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    def served_name(self) -> str:
        """The OpenAI model name clients use."""
        return self.spec.model.served_name or self.metadata.name


def _without_unknown_status_fields(
    obj: dict[str, Any], err: ValidationError
) -> dict[str, Any] | None:
    """A copy of `obj` without the status fields `err` names as unknown; None when `err` says
    anything else."""
    errors = err.errors()
    if not errors or any(
        e["type"] != "extra_forbidden" or tuple(e["loc"][:1]) != ("status",) for e in errors
    ):
        return None
    out = copy.deepcopy(obj)
    for e in errors:
        *parents, leaf = e["loc"]
        cur: Any = out
        for key in parents:
            cur = cur[key]
        if isinstance(cur, dict):
            cur.pop(leaf, None)
    return out


def validation_message(err: ValidationError) -> str:
    """`field.path: what is wrong` for the first error of `err`: the message of an InvalidSpec
    condition, an Event or a log line.

    Never `str(err)` or the errors' `input`: pydantic puts the offending input there (for a rule
    on a whole object, the whole object), so a token in engine.env[].value would be echoed."""
    first = err.errors(include_url=False, include_context=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}"
