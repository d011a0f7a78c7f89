"""Grafana dashboards and Prometheus rules for deepseek-operator, as code.

`python -m dashboards` regenerates dashboards/generated/ (and the Helm chart's copies);
`python -m dashboards --check` fails when a checked-in file differs from what the code makes.
`panel_queries()` lists every panel's PromQL, with the template variables substituted, so a test
can run each against a real Prometheus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .dash_fleet import FLEET
from .dash_gpus import GPUS
from .dash_operator import OPERATOR
from .grafana import Dashboard

DASHBOARDS: tuple[Dashboard, ...] = (FLEET, GPUS, OPERATOR)

# What a test substitutes for the template variables: every namespace, deployment and node
# (Grafana's "All" is `.*`), and the engine signals' 1m rate window.
DEFAULT_VARIABLES = {
    "namespace": ".*",
    "deployment": ".*",
    "node": ".*",
    "__rate_interval": "1m",
}

_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # uid
    panel: str  # title
    ref_id: str
    expr: str
    instant: bool


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace `$var` and `${var}` the way Grafana interpolates a single value."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in variables:
            raise KeyError(f"no value for template variable ${name} in {expr!r}")
        return variables[name]

    return _VAR.sub(repl, expr)


def panel_queries(variables: dict[str, str] | None = None) -> list[PanelQuery]:
    """Every panel's PromQL in every dashboard, variables substituted."""
    values = {**DEFAULT_VARIABLES, **(variables or {})}
    out = []
    for d in DASHBOARDS:
        for p in d.panels():
            for i, t in enumerate(p.targets):
                out.append(
                    PanelQuery(
                        d.uid, p.title, chr(ord("A") + i), substitute(t.expr, values), t.instant
                    )
                )
    return out


def variable_queries(variables: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(dashboard uid, variable name, `label_values(...)` query) for every query variable."""
    values = {**DEFAULT_VARIABLES, **(variables or {})}
    return [(d.uid, v.name, substitute(v.query, values)) for d in DASHBOARDS for v in d.variables]
