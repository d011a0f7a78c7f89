"""The DeepSeekDeployment API (serving.deepseek.dev/v1alpha1): pydantic models, CRD generation."""

from .base import API_VERSION, GROUP, KIND, PLURAL, VERSION, ApiModel
from .resource import DeepSeekDeployment
from .spec import (
    DeepSeekDeploymentSpec,
    KVCacheDtype,
    QuantizationMethod,
    QuantizationRung,
    WeightPrecision,
)
from .status import (
    Colour,
    Condition,
    ConditionType,
    DeepSeekDeploymentStatus,
    Phase,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "ApiModel",
    "Colour",
    "Condition",
    "ConditionType",
    "DeepSeekDeployment",
    "DeepSeekDeploymentSpec",
    "DeepSeekDeploymentStatus",
    "KVCacheDtype",
    "Phase",
    "QuantizationMethod",
    "QuantizationRung",
    "WeightPrecision",
]
