"""The whole DeepSeekDeployment object."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
        """Parse an object from the API server (or a manifest). Raises ValidationError."""
        return cls.model_validate(obj)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    def served_name(self) -> str:
        """The OpenAI model name clients use."""
        return self.spec.model.served_name or self.metadata.name
