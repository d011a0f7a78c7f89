"""A small, typed builder for Grafana dashboard JSON (dashboard schema v1, Grafana 12).

Only what our dashboards use: rows, time series, stat and state-timeline panels, Prometheus
targets, and the `datasource`, query and custom template variables. Every panel and variable
queries through the `${datasource}` variable, so one JSON file works with any Prometheus data
source. The output is plain dicts, serialised by `generate.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# Grafana 12.0-12.x writes schemaVersion 41; Grafana 11.x reads it unchanged.
SCHEMA_VERSION = 41
GRID_WIDTH = 24
DATASOURCE_VAR = "datasource"
DS_REF: dict[str, str] = {"type": "prometheus", "uid": "${" + DATASOURCE_VAR + "}"}

Json = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False

    def to_json(self, ref_id: str) -> Json:
        return {
            "datasource": DS_REF,
            "editorMode": "code",
            "expr": self.expr,
            "instant": self.instant,
            "range": not self.instant,
            "legendFormat": self.legend or "__auto",
            "refId": ref_id,
        }


PanelType = Literal["timeseries", "stat", "state-timeline", "table"]


@dataclass(frozen=True)
class Threshold:
    value: float | None  # None: the base step
    color: str


@dataclass(frozen=True)
class Panel:
    """A panel; its position is assigned by `Dashboard`."""

    title: str
    description: str
    targets: tuple[Target, ...]
    type: PanelType = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    thresholds: tuple[Threshold, ...] = ()
    stacked: bool = False
    # stat: "value" shows numbers, "name" shows the legend (e.g. the active colour's name)
    text_mode: Literal["auto", "value", "name", "value_and_name"] = "auto"
    # series whose legend matches this regex are drawn dashed (SLO lines, limits)
    dashed: str | None = None

    def to_json(self, panel_id: int, x: int, y: int) -> Json:
        defaults: Json = {"unit": self.unit}
        if self.min is not None:
            defaults["min"] = self.min
        if self.max is not None:
            defaults["max"] = self.max
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        steps = self.thresholds or (Threshold(None, "green"),)
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": s.color, "value": s.value} for s in steps],
        }
        defaults["color"] = {"mode": "thresholds" if self.type == "stat" else "palette-classic"}
        overrides: list[Json] = []
        options: Json
        if self.type == "timeseries":
            defaults["custom"] = {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 10 if self.stacked else 0,
                "showPoints": "never",
                "spanNulls": False,
                "stacking": {"mode": "normal" if self.stacked else "none", "group": "A"},
                "axisPlacement": "auto",
            }
            options = {
                "legend": {
                    "displayMode": "table",
                    "placement": "bottom",
                    "showLegend": True,
                    "calcs": ["lastNotNull", "max"],
                },
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
            if self.dashed:
                overrides.append(
                    {
                        "matcher": {"id": "byRegexp", "options": self.dashed},
                        "properties": [
                            {
                                "id": "custom.lineStyle",
                                "value": {"fill": "dash", "dash": [10, 10]},
                            },
                            {"id": "custom.fillOpacity", "value": 0},
                            {"id": "custom.stacking", "value": {"mode": "none", "group": "A"}},
                        ],
                    }
                )
        elif self.type == "stat":
            options = {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "orientation": "auto",
                "textMode": self.text_mode,
                "colorMode": "value" if self.text_mode != "name" else "none",
                "graphMode": "none",
                "justifyMode": "auto",
                "wideLayout": True,
            }
        elif self.type == "state-timeline":
            options = {
                "showValue": "never",
                "mergeValues": True,
                "rowHeight": 0.9,
                "alignValue": "left",
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "single", "sort": "none"},
            }
        else:  # table
            options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
        return {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "description": self.description,
            "datasource": DS_REF,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": overrides},
            "options": options,
            "targets": [t.to_json(chr(ord("A") + i)) for i, t in enumerate(self.targets)],
        }


@dataclass(frozen=True)
class Row:
    """A row header; the panels after it (up to the next row) belong to it."""

    title: str


@dataclass(frozen=True)
class QueryVariable:
    """A template variable filled from `label_values(...)`; multi-select with All."""

    name: str
    label: str
    query: str  # e.g. label_values(vllm:num_requests_running{namespace=~"$namespace"}, dsd)
    include_all: bool = True

    def to_json(self) -> Json:
        return {
            "type": "query",
            "name": self.name,
            "label": self.label,
            "datasource": DS_REF,
            "definition": self.query,
            "query": {"query": self.query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2,  # on time range change
            "regex": "",
            "sort": 1,
            "multi": self.include_all,
            "includeAll": self.include_all,
            "allValue": ".*" if self.include_all else None,
            "current": {},
            "options": [],
            "hide": 0,
        }


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    tags: tuple[str, ...]
    variables: tuple[QueryVariable, ...]
    items: tuple[Panel | Row, ...]
    refresh: str = "30s"
    time_from: str = "now-3h"
    links: tuple[tuple[str, str], ...] = field(default=())  # (title, dashboard uid)

    def panels(self) -> list[Panel]:
        return [p for p in self.items if isinstance(p, Panel)]

    def to_json(self) -> Json:
        panels: list[Json] = []
        x = y = row_height = 0
        next_id = 1
        for item in self.items:
            if isinstance(item, Row):
                if x:
                    y += row_height
                x = row_height = 0
                panels.append(
                    {
                        "id": next_id,
                        "type": "row",
                        "title": item.title,
                        "collapsed": False,
                        "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                        "panels": [],
                    }
                )
                y += 1
            else:
                if x + item.width > GRID_WIDTH:
                    y += row_height
                    x = row_height = 0
                panels.append(item.to_json(next_id, x, y))
                x += item.width
                row_height = max(row_height, item.height)
            next_id += 1
        datasource_var: Json = {
            "type": "datasource",
            "name": DATASOURCE_VAR,
            "label": "Data source",
            "query": "prometheus",
            "regex": "",
            "refresh": 1,
            "current": {},
            "options": [],
            "hide": 0,
        }
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "editable": True,
            "graphTooltip": 1,  # shared crosshair
            "timezone": "browser",
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "refresh": self.refresh,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "weekStart": "",
            "annotations": {
                "list": [
                    {
                        "builtIn": 1,
                        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                        "enable": True,
                        "hide": True,
                        "iconColor": "rgba(0, 211, 255, 1)",
                        "name": "Annotations & Alerts",
                        "type": "dashboard",
                    }
                ]
            },
            "links": [
                {
                    "title": title,
                    "type": "link",
                    "url": f"/d/{uid}?${{__url_time_range}}&${{__all_variables}}",
                    "targetBlank": False,
                    "icon": "dashboard",
                    "tooltip": "",
                    "asDropdown": False,
                    "includeVars": False,
                    "keepTime": False,
                    "tags": [],
                }
                for title, uid in self.links
            ],
            "templating": {"list": [datasource_var, *(v.to_json() for v in self.variables)]},
            "panels": panels,
        }
