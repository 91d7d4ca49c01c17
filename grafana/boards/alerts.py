"""Alerts and leaks: firing alerts, open and past detections with their evidence."""

from __future__ import annotations

from heatstream.grafana.boards.common import (
    ALERTS_UID,
    BOILER_LINK,
    SITE,
    TIME_COLUMNS,
    active_anomalies,
    active_leaks,
    firing_alerts,
    site_variable,
)
from heatstream.grafana.panels import (
    Json,
    dashboard,
    table,
    target,
    timeseries,
)


def alerts_and_leaks() -> Json:
    panels = [
        firing_alerts(8),
        active_leaks(8),
        active_anomalies(8),
        timeseries(
            "Detections per day",
            "Leaks and anomalies started per day, by kind.",
            [
                target(
                    'SELECT count("active") AS "anomalies" FROM "anomaly" '
                    f"WHERE \"phase\" = 'start' AND {SITE} AND $timeFilter "
                    'GROUP BY time(1d), "kind" fill(none)',
                    "A",
                    alias="$tag_kind",
                ),
                target(
                    'SELECT count("active") AS "leaks" FROM "leak" '
                    f"WHERE \"phase\" = 'start' AND {SITE} AND $timeFilter "
                    "GROUP BY time(1d) fill(none)",
                    "B",
                    alias="leak",
                ),
            ],
            unit="none",
            bars=True,
            stacked=True,
            min_=0,
            legend_calcs=("sum",),
        ),
        timeseries(
            "Data quality issues by kind",
            "Readings or events concerned by each kind of data-quality issue.",
            [
                target(
                    'SELECT sum("count") AS "count" FROM "data_quality" '
                    f'WHERE {SITE} AND $timeFilter GROUP BY time($__interval), "kind" fill(none)',
                    alias="$tag_kind",
                )
            ],
            unit="none",
            min_interval="1m",
            bars=True,
            stacked=True,
            min_=0,
            legend_calcs=("sum",),
        ),
        table(
            "Leak history with evidence",
            "Every leak detection and end in the period: which evidence fired (make-up water, "
            "pressure decay, flow imbalance, moisture), confidence, estimated rate, timings.",
            [
                target(
                    'SELECT "active", "confidence", "leak_rate_lpm", "evidence", '
                    '"ev_makeup_water", '
                    '"ev_pressure_decay", "ev_flow_imbalance", "ev_moisture", "start_ms", '
                    '"detected_ms", "end_ms", "reason" FROM "leak" '
                    f'WHERE {SITE} AND $timeFilter GROUP BY "site", "boiler", "phase", "severity"',
                    table=True,
                )
            ],
            units={"confidence": "percentunit", "leak_rate_lpm": "flowlpm", **TIME_COLUMNS},
            hide=(),
            links={"boiler": BOILER_LINK},
        ),
        table(
            "Anomaly history with evidence",
            "Every anomaly start and end in the period with the numbers that triggered it (ev_*).",
            [
                target(
                    'SELECT "active", "reason", "start_ms", "end_ms", /^ev_/ FROM "anomaly" '
                    f'WHERE {SITE} AND $timeFilter GROUP BY "site", "boiler", "kind", '
                    '"severity", "phase"',
                    table=True,
                )
            ],
            units=TIME_COLUMNS,
            hide=(),
            links={"boiler": BOILER_LINK},
        ),
        table(
            "Data quality issues",
            "Gateways silent or offline, readings out of range, sensors stuck, clock skew, "
            "sequence gaps and late events, per gateway and boiler ('-': none).",
            [
                target(
                    'SELECT "count", "detail", "start_ms", "end_ms" FROM "data_quality" '
                    f'WHERE {SITE} AND $timeFilter GROUP BY "site", "gateway", "boiler", '
                    '"kind", "channel"',
                    table=True,
                )
            ],
            units=TIME_COLUMNS,
            hide=(),
        ),
    ]
    return dashboard(
        uid=ALERTS_UID,
        title="heatstream / Alerts and leaks",
        description=(
            "Firing alerts, open and past leaks and anomalies with their evidence, data quality."
        ),
        panels=panels,
        variables=[site_variable()],
        time_from="now-7d",
        refresh="1m",
    )
