"""The fleet overview: heat delivered, ERF and CO2 avoided by site and day; open alerts."""

from __future__ import annotations

from heatstream.grafana.boards.common import (
    FLEET_UID,
    HOURLY,
    RECENT,
    SITE,
    active_anomalies,
    active_leaks,
    firing_alerts,
    heat_by_day,
    site_variable,
)
from heatstream.grafana.panels import (
    Json,
    dashboard,
    stat,
    table,
    target,
)


def fleet_overview() -> Json:
    where = f"{HOURLY} AND {SITE} AND $timeFilter"
    panels = [
        stat(
            "Heat delivered",
            "Heat handed to the heating loops of the selected sites over the period (hourly "
            "rollups).",
            [target(f'SELECT sum("heat_kwh") AS "heat_kwh" FROM "heat_window" WHERE {where}')],
            unit="kwatth",
            calc="sum",
            decimals=0,
        ),
        stat(
            "Energy Reuse Factor",
            "ERF (ISO/IEC 30134-6) over the period: heat reused / total energy consumed.",
            [
                target(
                    'SELECT sum("heat_kwh") / sum("total_kwh") AS "erf" '
                    f'FROM "heat_window" WHERE {where}'
                )
            ],
            unit="percentunit",
            min_=0,
            max_=1,
            decimals=1,
            thresholds=((None, "red"), (0.5, "orange"), (0.7, "green")),
        ),
        stat(
            "CO2 avoided",
            "CO2 the displaced heat sources (gas, oil, district heating...) would have emitted.",
            [
                target(
                    'SELECT sum("co2_avoided_kg") AS "co2_avoided_kg" FROM "heat_window" '
                    f"WHERE {where}"
                )
            ],
            unit="masskg",
            calc="sum",
            decimals=0,
        ),
        stat(
            "Open detections",
            "Leaks and anomalies detected in the last 30 days that have not ended.",
            [
                target(
                    'SELECT count("active") AS "leaks" FROM (SELECT last("active") AS "active" '
                    f'FROM "leak" WHERE {SITE} AND {RECENT} GROUP BY "boiler") WHERE "active" = 1',
                    "A",
                ),
                target(
                    'SELECT count("active") AS "anomalies" FROM (SELECT last("active") AS "active" '
                    f'FROM "anomaly" WHERE {SITE} AND {RECENT} GROUP BY "boiler", "kind") '
                    'WHERE "active" = 1',
                    "B",
                ),
            ],
            no_value="0",
            unit="none",
            thresholds=((None, "green"), (1, "red")),
        ),
        heat_by_day(
            "Heat delivered by site and day",
            "Heat handed to the heating loop per site and day.",
            'sum("heat_kwh") AS "heat_kwh"',
            "kwatth",
            bars=True,
        ),
        heat_by_day(
            "ERF by site and day",
            "Energy Reuse Factor per site and day (heat / total energy, energy-weighted).",
            'sum("heat_kwh") / sum("total_kwh") AS "erf"',
            "percentunit",
            bars=False,
        ),
        heat_by_day(
            "CO2 avoided by site and day",
            "CO2 avoided per site and day.",
            'sum("co2_avoided_kg") AS "co2_avoided_kg"',
            "masskg",
            bars=True,
        ),
        table(
            "Sites over the period",
            "Per site: heat delivered, energy consumed, ERF, CO2 avoided and the mean data "
            "coverage of the hourly windows (below 1: gaps in telemetry).",
            [
                target(
                    'SELECT sum("heat_kwh") AS "heat_kwh", sum("total_kwh") AS "total_kwh", '
                    'sum("heat_kwh") / sum("total_kwh") AS "erf", '
                    'sum("co2_avoided_kg") AS "co2_avoided_kg", mean("coverage") AS "coverage" '
                    f'FROM "heat_window" WHERE {where} GROUP BY "site"',
                    table=True,
                )
            ],
            w=12,
            units={
                "heat_kwh": "kwatth",
                "total_kwh": "kwatth",
                "erf": "percentunit",
                "co2_avoided_kg": "masskg",
                "coverage": "percentunit",
            },
        ),
        firing_alerts(8),
        active_leaks(8),
        active_anomalies(8),
    ]
    return dashboard(
        uid=FLEET_UID,
        title="heatstream / Fleet overview",
        description=(
            "Heat delivered, Energy Reuse Factor and CO2 avoided by site and day; open alerts."
        ),
        panels=panels,
        variables=[site_variable()],
        time_from="now-7d/d",
        refresh="5m",
    )
