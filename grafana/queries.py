"""Every InfluxQL query in the provisioning files, and Grafana's expansion of them.

Grafana never runs a dashboard query as written: it replaces ``$timeFilter`` with the
time range, ``$__interval`` with a bucket width and ``$site``-style template variables
with the selected values (regex-escaped and joined as ``(a|b)`` for multi-value
selections). ``expand`` does the same, so a test or ``heatstream grafana check`` can
run exactly what Grafana would send to InfluxDB. Pure functions: no I/O besides
reading the packaged files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from heatstream.grafana.files import Provisioning, load
from heatstream.grafana.panels import DATASOURCE_UID

#: Variables Grafana defines itself (for InfluxQL) rather than the dashboard.
BUILTINS = frozenset({"timeFilter", "__interval", "interval", "__interval_ms"})
#: `$name`, `${name}`, `${name:format}` and `[[name]]`.
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

VariableValue = str | Sequence[str]
TimeBound = datetime | str


class GrafanaQuery(NamedTuple):
    """Where a query lives (human-readable) and its InfluxQL text, unexpanded."""

    where: str
    query: str


@dataclass(frozen=True)
class PanelTarget:
    dashboard_uid: str
    panel_id: int
    panel_title: str
    ref_id: str
    query: str
    result_format: str
    min_interval: str | None = None

    def interval(self, wanted: str) -> str:
        """`$__interval` as Grafana computes it: never below the panel's minimum interval."""
        if self.min_interval and duration_ms(self.min_interval) > duration_ms(wanted):
            return self.min_interval
        return wanted

    @property
    def where(self) -> str:
        return f"{self.dashboard_uid} / panel {self.panel_id} {self.panel_title!r} / {self.ref_id}"


@dataclass(frozen=True)
class RuleQuery:
    rule_uid: str
    title: str
    ref_id: str
    query: str
    lookback_s: int
    until_s: int

    @property
    def where(self) -> str:
        return f"alert rule {self.rule_uid} / {self.ref_id}"


def variables_in(query: str) -> set[str]:
    """Names of the `$variables` a query uses (built-ins included)."""
    return {next(g for g in m.groups() if g) for m in VARIABLE.finditer(query)}


def duration_ms(text: str) -> int:
    """'10s' -> 10000, '1m' -> 60000 (Grafana interval syntax)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r} (want e.g. '10s', '1m', '1h')")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def _time_expr(bound: TimeBound) -> str:
    if isinstance(bound, datetime):
        if bound.tzinfo is None:
            raise ValueError(f"{bound!r}: give an aware datetime (UTC)")
        return f"{round(bound.timestamp() * 1000)}ms"
    return bound.strip()


def time_filter(time_from: TimeBound, time_to: TimeBound = "now()") -> str:
    """What Grafana substitutes for `$timeFilter`.

    Absolute bounds become epoch milliseconds; relative ones are InfluxQL expressions
    such as ``now() - 6h``. As in Grafana, an upper bound of ``now()`` is left out.
    """
    lower = f"time >= {_time_expr(time_from)}"
    upper = _time_expr(time_to)
    return lower if upper == "now()" else f"{lower} and time <= {upper}"


def _format(value: VariableValue) -> str:
    """A template value as Grafana's InfluxDB datasource interpolates it."""
    if isinstance(value, str):
        return value
    escaped = [re.escape(v) for v in value]
    if not escaped:
        raise ValueError("a multi-value variable needs at least one value")
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def expand(
    query: str,
    variables: Mapping[str, VariableValue] | None = None,
    time_from: TimeBound = "now() - 6h",
    time_to: TimeBound = "now()",
    interval: str = "1m",
) -> str:
    """The query as Grafana sends it to InfluxDB.

    `variables` maps template-variable names to a value, or to a list of values for a
    multi-value or "All" selection. Raises ValueError naming any variable left
    undefined, so a typo in a dashboard fails loudly instead of matching nothing.
    """
    values: dict[str, str] = {
        "timeFilter": time_filter(time_from, time_to),
        "__interval": interval,
        "interval": interval,
        "__interval_ms": str(duration_ms(interval)),
    }
    for name, value in (variables or {}).items():
        values[name] = _format(value)
    missing = sorted(variables_in(query) - values.keys())
    if missing:
        raise ValueError(f"undefined template variable(s) {missing} in: {query}")
    return VARIABLE.sub(lambda m: values[next(g for g in m.groups() if g)], query)


# -- collecting the queries -------------------------------------------------------------


def panel_targets(provisioning: Provisioning | None = None) -> list[PanelTarget]:
    prov = provisioning or load()
    out: list[PanelTarget] = []
    for board in prov.dashboards.values():
        for panel in board.get("panels", []):
            for tgt in panel.get("targets", []):
                out.append(
                    PanelTarget(
                        board["uid"],
                        panel["id"],
                        panel["title"],
                        tgt["refId"],
                        tgt["query"],
                        tgt.get("resultFormat", "time_series"),
                        panel.get("interval"),
                    )
                )
    return out


def variable_queries(provisioning: Provisioning | None = None) -> list[tuple[str, Any]]:
    """(dashboard uid, templating variable) for every InfluxQL query variable."""
    prov = provisioning or load()
    return [
        (board["uid"], var)
        for board in prov.dashboards.values()
        for var in board.get("templating", {}).get("list", [])
        if var.get("type") == "query"
    ]


def annotation_queries(provisioning: Provisioning | None = None) -> list[GrafanaQuery]:
    prov = provisioning or load()
    out: list[GrafanaQuery] = []
    for board in prov.dashboards.values():
        for ann in board.get("annotations", {}).get("list", []):
            if ann.get("datasource", {}).get("uid") != DATASOURCE_UID:
                continue
            query = ann.get("target", {}).get("query") or ann.get("query", "")
            out.append(GrafanaQuery(f"{board['uid']} / annotation {ann['name']!r}", query))
    return out


def rule_queries(provisioning: Provisioning | None = None) -> list[RuleQuery]:
    prov = provisioning or load()
    out: list[RuleQuery] = []
    for _group, rule in prov.rules():
        for node in rule["data"]:
            if node.get("datasourceUid") != DATASOURCE_UID:
                continue
            span = node.get("relativeTimeRange", {})
            out.append(
                RuleQuery(
                    rule["uid"],
                    rule["title"],
                    node["refId"],
                    node["model"]["query"],
                    int(span.get("from", 600)),
                    int(span.get("to", 0)),
                )
            )
    return out


def all_queries(provisioning: Provisioning | None = None) -> list[GrafanaQuery]:
    """Every InfluxQL query Grafana would run: panels, variables, annotations, alert rules."""
    prov = provisioning or load()
    out = [GrafanaQuery(t.where, t.query) for t in panel_targets(prov)]
    out += [
        GrafanaQuery(f"{uid} / variable {var['name']}", var["query"])
        for uid, var in variable_queries(prov)
    ]
    out += annotation_queries(prov)
    out += [GrafanaQuery(r.where, r.query) for r in rule_queries(prov)]
    return out


def expand_rule_query(rule: RuleQuery) -> str:
    """A rule's query over its relative time range, as Grafana's evaluator sends it."""
    until = "now()" if rule.until_s == 0 else f"now() - {rule.until_s}s"
    return expand(rule.query, time_from=f"now() - {rule.lookback_s}s", time_to=until)
