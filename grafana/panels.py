"""Small builders for Grafana's dashboard JSON model (schemaVersion 39, Grafana 11).

Plain functions returning plain dicts: the dashboards in ``boards.py`` are written with
them so that every panel gets the same datasource, InfluxQL target shape, legend and
layout rules without repeating forty lines of JSON per panel. Nothing here talks to
Grafana or InfluxDB.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

DATASOURCE_UID = "heatstream-influxdb"
DATASOURCE: dict[str, str] = {"type": "influxdb", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39
GRID_COLUMNS = 24

Json = dict[str, Any]


def target(query: str, ref: str = "A", *, table: bool = False, alias: str | None = None) -> Json:
    """One raw InfluxQL query of a panel."""
    out: Json = {
        "refId": ref,
        "datasource": dict(DATASOURCE),
        "rawQuery": True,
        "query": query,
        "resultFormat": "table" if table else "time_series",
    }
    if alias:
        out["alias"] = alias
    return out


def _panel(
    kind: str, title: str, description: str, w: int, h: int, targets: Sequence[Json]
) -> Json:
    refs = [t["refId"] for t in targets]
    if len(set(refs)) != len(refs):
        raise ValueError(f"panel {title!r}: duplicate refIds {refs}")
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": dict(DATASOURCE),
        "gridPos": {"h": h, "w": w, "x": 0, "y": 0},  # placed by dashboard()
        "targets": list(targets),
    }


def _field_defaults(
    unit: str, *, min_: float | None, max_: float | None, decimals: int | None
) -> Json:
    defaults: Json = {"unit": unit}
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    if decimals is not None:
        defaults["decimals"] = decimals
    return defaults


def timeseries(
    title: str,
    description: str,
    targets: Sequence[Json],
    *,
    unit: str,
    w: int = 12,
    h: int = 8,
    min_interval: str | None = None,
    bars: bool = False,
    stacked: bool = False,
    min_: float | None = None,
    max_: float | None = None,
    decimals: int | None = None,
    legend_calcs: Sequence[str] = ("mean", "max"),
    overrides: Sequence[Json] = (),
) -> Json:
    panel = _panel("timeseries", title, description, w, h, targets)
    if min_interval:
        panel["interval"] = min_interval
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 70 if bars else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
    }
    defaults = _field_defaults(unit, min_=min_, max_=max_, decimals=decimals)
    defaults["custom"] = custom
    panel["fieldConfig"] = {"defaults": defaults, "overrides": list(overrides)}
    panel["options"] = {
        "legend": {
            "showLegend": True,
            "displayMode": "table",
            "placement": "bottom",
            "calcs": list(legend_calcs),
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel


def stat(
    title: str,
    description: str,
    targets: Sequence[Json],
    *,
    unit: str,
    w: int = 6,
    h: int = 4,
    calc: str = "lastNotNull",
    min_: float | None = None,
    max_: float | None = None,
    decimals: int | None = None,
    thresholds: Sequence[tuple[float | None, str]] = ((None, "green"),),
    no_value: str | None = None,
) -> Json:
    """A single number; `no_value` is shown when the query finds nothing (e.g. "0" for
    a count: InfluxDB returns no series rather than a zero)."""
    panel = _panel("stat", title, description, w, h, targets)
    defaults = _field_defaults(unit, min_=min_, max_=max_, decimals=decimals)
    if no_value is not None:
        defaults["noValue"] = no_value
    defaults["thresholds"] = {
        "mode": "absolute",
        "steps": [{"value": value, "color": color} for value, color in thresholds],
    }
    panel["fieldConfig"] = {"defaults": defaults, "overrides": []}
    panel["options"] = {
        "reduceOptions": {"calcs": [calc], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "none",
        "textMode": "auto",
        "justifyMode": "auto",
        "orientation": "auto",
    }
    return panel


def table(
    title: str,
    description: str,
    targets: Sequence[Json],
    *,
    w: int = 24,
    h: int = 8,
    units: dict[str, str] | None = None,
    hide: Iterable[str] = ("Time",),
    links: dict[str, tuple[str, str]] | None = None,
) -> Json:
    """A table; `units` sets a unit per column, `links` a data link per column (title, url)."""
    panel = _panel("table", title, description, w, h, targets)
    overrides: list[Json] = []
    for column, unit in (units or {}).items():
        overrides.append(
            {
                "matcher": {"id": "byName", "options": column},
                "properties": [{"id": "unit", "value": unit}],
            }
        )
    for column, (link_title, url) in (links or {}).items():
        overrides.append(
            {
                "matcher": {"id": "byName", "options": column},
                "properties": [{"id": "links", "value": [{"title": link_title, "url": url}]}],
            }
        )
    panel["fieldConfig"] = {"defaults": {"custom": {"filterable": True}}, "overrides": overrides}
    panel["options"] = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    panel["transformations"] = [
        {"id": "organize", "options": {"excludeByName": dict.fromkeys(hide, True)}}
    ]
    return panel


def alert_list(title: str, description: str, *, label_filter: str, w: int = 12, h: int = 8) -> Json:
    """Grafana's own firing/pending alert instances (no InfluxDB query)."""
    return {
        "type": "alertlist",
        "title": title,
        "description": description,
        "gridPos": {"h": h, "w": w, "x": 0, "y": 0},
        "options": {
            "viewMode": "list",
            "groupMode": "default",
            "groupBy": [],
            "maxItems": 50,
            "sortOrder": 1,
            "dashboardAlerts": False,
            "alertName": "",
            "alertInstanceLabelFilter": label_filter,
            "datasource": "grafana",
            "showInstances": True,
            "stateFilter": {
                "firing": True,
                "pending": True,
                "noData": True,
                "normal": False,
                "error": True,
            },
        },
    }


def query_variable(
    name: str,
    label: str,
    query: str,
    *,
    multi: bool = False,
    include_all: bool = False,
) -> Json:
    """A templating variable filled by an InfluxQL `SHOW TAG VALUES` query."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": dict(DATASOURCE),
        "query": query,
        "definition": query,
        "refresh": 1,  # on dashboard load
        "regex": "",
        "sort": 1,
        "multi": multi,
        "includeAll": include_all,
        "current": {},
        "options": [],
        "hide": 0,
    }


def annotation(
    name: str, query: str, *, color: str, text: str, tags: str, enable: bool = True
) -> Json:
    """Events on every time-series panel, read from InfluxDB.

    Both forms are written: Grafana 10+ reads `target`, older versions the top-level
    `query`/`textColumn`/`tagsColumn` (and migrate them into `target`).
    """
    return {
        "name": name,
        "datasource": dict(DATASOURCE),
        "enable": enable,
        "hide": False,
        "iconColor": color,
        "query": query,
        "textColumn": text,
        "tagsColumn": tags,
        "target": {
            "refId": "Anno",
            "rawQuery": True,
            "query": query,
            "resultFormat": "table",
            "fromAnnotations": True,
            "textColumn": text,
            "tagsColumn": tags,
        },
    }


BUILTIN_ANNOTATION: Json = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


def _layout(panels: Sequence[Json]) -> list[Json]:
    """Flow panels left to right, top to bottom, on Grafana's 24-column grid."""
    placed: list[Json] = []
    x = y = row_h = 0
    for number, panel in enumerate(panels, start=1):
        grid = panel["gridPos"]
        if not 1 <= grid["w"] <= GRID_COLUMNS:
            raise ValueError(
                f"panel {panel['title']!r}: width {grid['w']} outside 1..{GRID_COLUMNS}"
            )
        if x + grid["w"] > GRID_COLUMNS:
            x, y, row_h = 0, y + row_h, 0
        placed.append({"id": number, **panel, "gridPos": {**grid, "x": x, "y": y}})
        x += grid["w"]
        row_h = max(row_h, grid["h"])
    return placed


def dashboard(
    *,
    uid: str,
    title: str,
    description: str,
    panels: Sequence[Json],
    variables: Sequence[Json] = (),
    annotations: Sequence[Json] = (),
    time_from: str = "now-24h",
    refresh: str = "1m",
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["heatstream"],
        "editable": False,
        "graphTooltip": 1,
        "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "refresh": refresh,
        "links": [
            {
                "title": "heatstream",
                "type": "dashboards",
                "tags": ["heatstream"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "templating": {"list": list(variables)},
        "annotations": {"list": [BUILTIN_ANNOTATION, *annotations]},
        "panels": _layout(panels),
    }
