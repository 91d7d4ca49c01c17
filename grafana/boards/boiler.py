"""Boiler detail, templated by site and boiler: telemetry, power, ERF, detections."""

from __future__ import annotations

from heatstream.grafana.boards.common import (
    BOILER,
    BOILER_UID,
    HOURLY,
    MINUTELY,
    SITE,
    TIME_COLUMNS,
)
from heatstream.grafana.panels import (
    Json,
    annotation,
    dashboard,
    query_variable,
    stat,
    table,
    target,
    timeseries,
)


def boiler_detail() -> Json:
    tel = f'FROM "telemetry" WHERE {BOILER} AND $timeFilter GROUP BY time($__interval) fill(null)'
    win = f'FROM "heat_window" WHERE {MINUTELY} AND {BOILER} AND $timeFilter'
    panels = [
        stat(
            "Heat delivered",
            "Heat handed to the heating loop over the period (1-minute windows).",
            [target(f'SELECT sum("heat_kwh") AS "heat_kwh" {win}')],
            unit="kwatth",
            calc="sum",
            decimals=1,
        ),
        stat(
            "Energy Reuse Factor",
            "Heat reused / total energy consumed over the period.",
            [target(f'SELECT sum("heat_kwh") / sum("total_kwh") AS "erf" {win}')],
            unit="percentunit",
            min_=0,
            max_=1,
            decimals=1,
            thresholds=((None, "red"), (0.5, "orange"), (0.7, "green")),
        ),
        stat(
            "CO2 avoided",
            "CO2 the displaced heat source would have emitted for the same heat.",
            [target(f'SELECT sum("co2_avoided_kg") AS "co2_avoided_kg" {win}')],
            unit="masskg",
            calc="sum",
            decimals=1,
        ),
        stat(
            "Data coverage",
            "Mean fraction of each window covered by telemetry; quarantined readings never count.",
            [target(f'SELECT mean("coverage") AS "coverage" {win}')],
            unit="percentunit",
            min_=0,
            max_=1,
            decimals=1,
            thresholds=((None, "red"), (0.8, "orange"), (0.95, "green")),
        ),
        timeseries(
            "Supply and return temperature",
            "Water leaving the boiler to the heating loop and coming back (10 s means).",
            [
                target(
                    'SELECT mean("supply_temp_c") AS "supply", mean("return_temp_c") AS '
                    f'"return" {tel}'
                )
            ],
            unit="celsius",
            min_interval="10s",
        ),
        timeseries(
            "Flow",
            "Loop flow; with a second meter on the supply side, a gap between the two is a "
            "leak sign.",
            [
                target(
                    'SELECT mean("flow_lpm") AS "flow", mean("supply_flow_lpm") AS '
                    f'"supply_flow" {tel}'
                )
            ],
            unit="flowlpm",
            min_interval="10s",
            min_=0,
        ),
        timeseries(
            "Loop pressure",
            "Closed-loop pressure (gauge). A decay not explained by temperature is a leak sign.",
            [target(f'SELECT mean("pressure_bar") AS "pressure" {tel}')],
            unit="pressurebar",
            min_interval="10s",
        ),
        timeseries(
            "IT power against thermal power",
            "Mean electrical power drawn (IT and auxiliaries) and thermal power handed to the "
            "loop, from the same 1-minute windows (kWh per minute x 60).",
            [
                target(
                    'SELECT mean("it_kwh") * 60 AS "it_kw", mean("aux_kwh") * 60 AS "aux_kw", '
                    f'mean("heat_kwh") * 60 AS "thermal_kw" {win} GROUP BY time($__interval) '
                    "fill(null)"
                )
            ],
            unit="kwatt",
            min_interval="1m",
            min_=0,
        ),
        timeseries(
            "Energy Reuse Factor over time",
            "Heat reused / total energy per interval (energy-weighted).",
            [
                target(
                    f'SELECT sum("heat_kwh") / sum("total_kwh") AS "erf" {win} '
                    "GROUP BY time($__interval) fill(null)"
                )
            ],
            unit="percentunit",
            min_interval="1m",
            min_=0,
            max_=1,
        ),
        timeseries(
            "Leak evidence: make-up water and moisture",
            "Make-up water fed into the closed loop (should be ~0) and the moisture sensor.",
            [
                target(
                    'SELECT mean("makeup_flow_lpm") AS "makeup_flow", mean("moisture_pct") '
                    f'AS "moisture" {tel}'
                )
            ],
            unit="flowlpm",
            min_interval="10s",
            min_=0,
            overrides=[
                {
                    "matcher": {"id": "byRegexp", "options": "/moisture/"},
                    "properties": [
                        {"id": "unit", "value": "percent"},
                        {"id": "custom.axisPlacement", "value": "right"},
                    ],
                }
            ],
        ),
        timeseries(
            "Heat by workload",
            "Heat attributed to the workload kinds that ran (AI training, rendering, ...).",
            [
                target(
                    f'SELECT sum(/^heat_kwh_/) FROM "heat_window" WHERE {HOURLY} AND {BOILER} '
                    "AND $timeFilter GROUP BY time($__interval) fill(none)"
                )
            ],
            unit="kwatth",
            min_interval="1h",
            bars=True,
            stacked=True,
            legend_calcs=("sum",),
        ),
        table(
            "Data quality issues",
            "Readings quarantined, sensors stuck, clock skew, sequence gaps on this boiler.",
            [
                target(
                    'SELECT "count", "detail", "start_ms", "end_ms" FROM "data_quality" '
                    f'WHERE {BOILER} AND $timeFilter GROUP BY "kind", "channel"',
                    table=True,
                )
            ],
            w=12,
            units=TIME_COLUMNS,
        ),
        table(
            "Anomalies",
            "Efficiency anomalies and pump failures on this boiler: start and end, reason, "
            "evidence.",
            [
                target(
                    'SELECT "active", "reason", "start_ms", "end_ms", /^ev_/ FROM "anomaly" '
                    f'WHERE {BOILER} AND $timeFilter GROUP BY "kind", "severity", "phase"',
                    table=True,
                )
            ],
            w=12,
            units=TIME_COLUMNS,
        ),
        table(
            "Leaks",
            "Leak detections on this boiler with the evidence that fired and the estimated "
            "leak rate.",
            [
                target(
                    'SELECT "active", "confidence", "leak_rate_lpm", "evidence", "start_ms", '
                    f'"detected_ms", "end_ms", "reason" FROM "leak" WHERE {BOILER} AND $timeFilter '
                    'GROUP BY "severity", "phase"',
                    table=True,
                )
            ],
            w=12,
            units={"confidence": "percentunit", "leak_rate_lpm": "flowlpm", **TIME_COLUMNS},
        ),
    ]
    annotations = [
        annotation(
            "Anomalies",
            'SELECT "reason", "kind", "severity" FROM "anomaly" '
            f"WHERE {BOILER} AND \"phase\" = 'start' AND $timeFilter",
            color="orange",
            text="reason",
            tags="kind,severity",
        ),
        annotation(
            "Leaks",
            'SELECT "reason", "evidence", "severity" FROM "leak" '
            f"WHERE {BOILER} AND \"phase\" = 'start' AND $timeFilter",
            color="red",
            text="reason",
            tags="evidence,severity",
        ),
        annotation(
            "Detections ended",
            'SELECT "reason" FROM "anomaly", "leak" '
            f"WHERE {BOILER} AND \"phase\" = 'end' AND $timeFilter",
            color="green",
            text="reason",
            tags="",
        ),
    ]
    variables = [
        query_variable("site", "Site", 'SHOW TAG VALUES FROM "heat_window" WITH KEY = "site"'),
        query_variable(
            "boiler",
            "Boiler",
            f'SHOW TAG VALUES FROM "heat_window" WITH KEY = "boiler" WHERE {SITE}',
        ),
    ]
    return dashboard(
        uid=BOILER_UID,
        title="heatstream / Boiler detail",
        description="One boiler: temperatures, flow, pressure, IT against thermal power, ERF, "
        "anomalies and leaks (annotations).",
        panels=panels,
        variables=variables,
        annotations=annotations,
        time_from="now-24h",
        refresh="1m",
    )
