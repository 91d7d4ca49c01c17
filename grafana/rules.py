"""The heatstream unified-alerting rules, as code.

Each rule is one InfluxQL query (refId A) reduced per series to one number (B) and
compared with a threshold (C, the condition): Grafana's standard three-step rule. The
query groups by tags, so a rule is multi-dimensional: one alert instance per boiler
(or site), labelled with the tags.

The detection rules read the detectors' own start/end points (``leak``, ``anomaly``):
the detectors already apply hysteresis, so the rule only asks "is the latest phase of
this boiler a start?" (``last(active)``) over a long look-back, and fires at once.
Gateway silence is measured on the wall clock from ``telemetry`` arrivals, because an
event-time detector cannot notice a gateway that is alone on its partition and stops.

``python -m heatstream.grafana.generate`` writes them to
``provisioning/alerting/rules.yaml``; docs/ops.md has one runbook section per rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from heatstream.grafana import boards
from heatstream.grafana.panels import DATASOURCE, DATASOURCE_UID, Json

FOLDER = "heatstream"
EXPRESSION_UID = "__expr__"
RUNBOOK_DOC = "docs/ops.md"
DAY_S = 86_400
LABELS: dict[str, str] = {"app": "heatstream"}


@dataclass(frozen=True)
class RuleSpec:
    uid: str
    title: str
    group: str
    query: str
    lookback_s: int
    reducer: Literal["last", "mean", "max", "min", "sum", "count"]
    evaluator: Literal["gt", "lt"]
    threshold: float
    for_: str
    severity: Literal["critical", "warning"]
    category: Literal["detection", "data", "pipeline"]
    summary: str
    description: str
    runbook_anchor: str
    dashboard_uid: str
    panel_title: str
    no_data_state: Literal["OK", "NoData", "Alerting", "KeepLast"] = "OK"


RULES: tuple[RuleSpec, ...] = (
    RuleSpec(
        uid="heatstream-leak-suspected",
        title="Leak suspected",
        group="detections",
        query=(
            'SELECT last("active") AS "active" FROM "leak" WHERE $timeFilter GROUP BY '
            '"site", "boiler"'
        ),
        lookback_s=30 * DAY_S,
        reducer="last",
        evaluator="gt",
        threshold=0.5,
        for_="0s",
        severity="critical",
        category="detection",
        summary="Leak suspected on {{ $labels.boiler }} ({{ $labels.site }})",
        description=(
            "The leak detector's latest detection on {{ $labels.boiler }} has not ended: "
            "water is probably escaping the closed loop. Evidence, confidence and estimated "
            "leak rate are in the 'Active leaks' panel."
        ),
        runbook_anchor="leak-suspected",
        dashboard_uid=boards.ALERTS_UID,
        panel_title="Active leaks",
    ),
    RuleSpec(
        uid="heatstream-pump-failure",
        title="Pump failure",
        group="detections",
        query=(
            'SELECT last("active") AS "active" FROM "anomaly" '
            'WHERE "kind" = \'pump_failure\' AND $timeFilter GROUP BY "site", "boiler"'
        ),
        lookback_s=30 * DAY_S,
        reducer="last",
        evaluator="gt",
        threshold=0.5,
        for_="0s",
        severity="critical",
        category="detection",
        summary="Pump failure on {{ $labels.boiler }} ({{ $labels.site }})",
        description=(
            "IT power is on but loop flow is near zero on {{ $labels.boiler }}: the heat is "
            "not leaving the caisson. The servers will throttle or trip on temperature."
        ),
        runbook_anchor="pump-failure",
        dashboard_uid=boards.ALERTS_UID,
        panel_title="Active anomalies",
    ),
    RuleSpec(
        uid="heatstream-efficiency-drop",
        title="Efficiency drop",
        group="detections",
        query=(
            'SELECT last("active") AS "active" FROM "anomaly" '
            "WHERE \"kind\" != 'pump_failure' AND $timeFilter "
            'GROUP BY "site", "boiler", "kind"'
        ),
        lookback_s=30 * DAY_S,
        reducer="last",
        evaluator="gt",
        threshold=0.5,
        for_="5m",
        severity="warning",
        category="detection",
        summary="{{ $labels.kind }} on {{ $labels.boiler }} ({{ $labels.site }})",
        description=(
            "Heat recovery on {{ $labels.boiler }} has fallen away from its learned baseline "
            "({{ $labels.kind }}: fouled exchanger, bypass valve open or sensor drift)."
        ),
        runbook_anchor="efficiency-drop",
        dashboard_uid=boards.ALERTS_UID,
        panel_title="Active anomalies",
    ),
    RuleSpec(
        uid="heatstream-gateway-silent",
        title="Gateway silent",
        group="data",
        query=(
            'SELECT moving_average(sum("samples"), 5) AS "samples_per_min" '
            'FROM "telemetry" WHERE $timeFilter GROUP BY time(1m), "site" fill(0)'
        ),
        lookback_s=DAY_S,
        reducer="last",
        evaluator="lt",
        threshold=1,
        for_="2m",
        severity="warning",
        category="data",
        summary="No telemetry from site {{ $labels.site }} for 5 minutes",
        description=(
            "Fewer than one telemetry sample per minute landed from site {{ $labels.site }} "
            "over the last 5 minutes (wall clock). Its gateway is silent, or the pipeline "
            "stopped landing its data. Heat totals and leak detection are blind meanwhile. "
            "With no telemetry at all in 24 h the rule fires without a site label."
        ),
        runbook_anchor="gateway-silent",
        dashboard_uid=boards.ALERTS_UID,
        panel_title="Data quality issues",
        no_data_state="Alerting",
    ),
    RuleSpec(
        uid="heatstream-dead-letter-spike",
        title="Dead-letter spike",
        group="pipeline",
        query='SELECT sum("count") AS "dead_letters" FROM "dead_letter" WHERE $timeFilter',
        lookback_s=600,
        reducer="last",
        evaluator="gt",
        threshold=20,
        for_="0s",
        severity="warning",
        category="pipeline",
        summary="{{ $values.B.Value }} messages dead-lettered in 10 minutes",
        description=(
            "More than 20 messages were rejected into the dead-letter topic in the last 10 "
            "minutes: a gateway sends malformed or unauthorised events, or a schema change "
            "broke decoding. Nothing is lost; the messages wait in the dead-letter topic."
        ),
        runbook_anchor="dead-letter-spike",
        dashboard_uid=boards.PIPELINE_UID,
        panel_title="Dead letters by reason",
    ),
)

GROUP_INTERVAL = "1m"


def _query_node(spec: RuleSpec) -> Json:
    return {
        "refId": "A",
        "relativeTimeRange": {"from": spec.lookback_s, "to": 0},
        "datasourceUid": DATASOURCE_UID,
        "model": {
            "refId": "A",
            "datasource": dict(DATASOURCE),
            "rawQuery": True,
            "query": spec.query,
            "resultFormat": "time_series",
            "intervalMs": 60_000,
            "maxDataPoints": 43_200,
        },
    }


def _expression(ref: str, model: dict[str, Any]) -> Json:
    return {
        "refId": ref,
        "relativeTimeRange": {"from": 0, "to": 0},
        "datasourceUid": EXPRESSION_UID,
        "model": {
            "refId": ref,
            "datasource": {"type": EXPRESSION_UID, "uid": EXPRESSION_UID},
            **model,
        },
    }


def render_rule(spec: RuleSpec, dashboards: dict[str, Json]) -> Json:
    """One rule in Grafana's alerting file-provisioning format (apiVersion 1)."""
    board = next(b for b in dashboards.values() if b["uid"] == spec.dashboard_uid)
    return {
        "uid": spec.uid,
        "title": spec.title,
        "condition": "C",
        "data": [
            _query_node(spec),
            _expression(
                "B",
                {
                    "type": "reduce",
                    "expression": "A",
                    "reducer": spec.reducer,
                    "settings": {"mode": "dropNN"},
                },
            ),
            _expression(
                "C",
                {
                    "type": "threshold",
                    "expression": "B",
                    "conditions": [
                        {"evaluator": {"type": spec.evaluator, "params": [spec.threshold]}}
                    ],
                },
            ),
        ],
        "dashboardUid": spec.dashboard_uid,
        "panelId": boards.panel_id(board, spec.panel_title),
        "noDataState": spec.no_data_state,
        "execErrState": "Error",
        "for": spec.for_,
        "labels": {**LABELS, "severity": spec.severity, "category": spec.category},
        "annotations": {
            "summary": spec.summary,
            "description": spec.description,
            "runbook": f"{RUNBOOK_DOC}#{spec.runbook_anchor}",
        },
        "isPaused": False,
    }


def rule_groups(dashboards: dict[str, Json]) -> list[Json]:
    groups: dict[str, list[Json]] = {}
    for spec in RULES:
        groups.setdefault(spec.group, []).append(render_rule(spec, dashboards))
    return [
        {"orgId": 1, "name": name, "folder": FOLDER, "interval": GROUP_INTERVAL, "rules": rules}
        for name, rules in groups.items()
    ]


def rules_file(dashboards: dict[str, Json]) -> Json:
    return {"apiVersion": 1, "groups": rule_groups(dashboards)}
