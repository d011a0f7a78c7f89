"""Label, annotation and Prometheus label names shared by the operator, the chart, the
dashboards and the simulated fleet. Change them here only."""

from __future__ import annotations

DOMAIN = "serving.deepseek.dev"

# Labels on every object the operator creates for a DeepSeekDeployment.
DEPLOYMENT = f"{DOMAIN}/deployment"  # the DeepSeekDeployment's name
COLOUR = f"{DOMAIN}/colour"  # blue | green (engine Deployments and their pods)
MODE = f"{DOMAIN}/mode"  # quantization rung of the pods
TEMPLATE_HASH = f"{DOMAIN}/template-hash"  # hash of the engine pod template (rollouts)
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "deepseek-operator"
NAME = "app.kubernetes.io/name"
NAME_VALUE = "vllm"
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
ENGINE_COMPONENT = "engine"
ROUTER_COMPONENT = "router"  # the vllm-router pods and the objects that serve them (spec.router)
# The batch router pool (spec.router.batch): a second vllm-router Deployment with its own
# admission limits. Its own component, so the Service <name>, the main router's Deployment
# and its budget (which select ROUTER_COMPONENT) never take its pods.
ROUTER_BATCH_COMPONENT = "router-batch"

# Annotations a user sets on a DeepSeekDeployment to drive a rollout by hand.
PROMOTE = f"{DOMAIN}/promote"  # "true": promote the waiting preview
ABORT = f"{DOMAIN}/abort"  # "true": abort the rollout, back to the stable colour

# Name of the engine container and its HTTP port.
ENGINE_CONTAINER = "vllm"
ENGINE_PORT_NAME = "http"
# The router's container, its HTTP port (the same name as the engines': the stable Service
# targets `http` whichever it selects) and its Prometheus port.
ROUTER_CONTAINER = "router"
ROUTER_PORT_NAME = "http"
ROUTER_METRICS_PORT_NAME = "metrics"

# Prometheus target labels the scrape configuration (PodMonitor or the local cluster's
# generated config) attaches to every engine series, taken from the pod's labels.
PROM_NAMESPACE = "namespace"
PROM_POD = "pod"
PROM_DSD = "dsd"
PROM_COLOUR = "colour"
# On router series (spec.router): the pool, the router pods' app.kubernetes.io/component
# (ROUTER_COMPONENT for the main pool behind <name>, ROUTER_BATCH_COMPONENT for the batch pool).
PROM_COMPONENT = "component"
PROM_GROUP = (PROM_NAMESPACE, PROM_DSD, PROM_COLOUR)


def engine_selector(dsd_name: str, colour: str | None = None) -> dict[str, str]:
    """Labels that select a DeepSeekDeployment's engine pods (of one colour, if given)."""
    sel = {DEPLOYMENT: dsd_name, COMPONENT: ENGINE_COMPONENT}
    if colour is not None:
        sel[COLOUR] = colour
    return sel


def router_selector(dsd_name: str) -> dict[str, str]:
    """Labels that select a DeepSeekDeployment's router pods."""
    return {DEPLOYMENT: dsd_name, COMPONENT: ROUTER_COMPONENT}


def router_batch_selector(dsd_name: str) -> dict[str, str]:
    """Labels that select a DeepSeekDeployment's batch router pods (spec.router.batch)."""
    return {DEPLOYMENT: dsd_name, COMPONENT: ROUTER_BATCH_COMPONENT}


def selector_string(labels: dict[str, str]) -> str:
    """`k=v,k=v` form of an equality selector, as the scale subresource wants it."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
