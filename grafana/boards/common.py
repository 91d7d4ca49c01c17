"""What the dashboards share: uids, InfluxQL filter fragments, and panels shown on more
than one dashboard (active leaks and anomalies, firing alerts, per-day bars)."""

from __future__ import annotations

from heatstream.grafana.panels import (
    Json,
    alert_list,
    query_variable,
    table,
    target,
    timeseries,
)

FLEET_UID = "heatstream-fleet"
BOILER_UID = "heatstream-boiler"
ALERTS_UID = "heatstream-alerts"
PIPELINE_UID = "heatstream-pipeline"

#: Label every heatstream alert rule carries; the alert-list panels filter on it.
ALERT_LABEL_FILTER = '{app="heatstream"}'
#: How far back "current state" queries look for an open detection.
CURRENT_STATE_LOOKBACK = "30d"

SITE = '"site" =~ /^$site$/'
BOILER = '"boiler" =~ /^$boiler$/'
PROCESS = '"process" =~ /^$process$/'
HOURLY = "\"resolution\" = '1h'"
MINUTELY = "\"resolution\" = '1m'"
RECENT = f"time > now() - {CURRENT_STATE_LOOKBACK}"

BOILER_LINK = (
    "Boiler detail",
    f"/d/{BOILER_UID}/boiler-detail?var-site=${{__data.fields.site}}"
    "&var-boiler=${__data.fields.boiler}&${__url_time_range}",
)
TIME_COLUMNS = {
    "start_ms": "dateTimeAsIso",
    "detected_ms": "dateTimeAsIso",
    "end_ms": "dateTimeAsIso",
}


def site_variable() -> Json:
    return query_variable(
        "site",
        "Site",
        'SHOW TAG VALUES FROM "heat_window" WITH KEY = "site"',
        multi=True,
        include_all=True,
    )


# -- panels shared by several dashboards ----------------------------------------------


def active_leaks(w: int) -> Json:
    query = (
        'SELECT "active", "confidence", "leak_rate_lpm", "evidence", "start_ms" FROM ('
        'SELECT last("active") AS "active", last("confidence") AS "confidence", '
        'last("leak_rate_lpm") AS "leak_rate_lpm", last("evidence") AS "evidence", '
        f'last("start_ms") AS "start_ms" FROM "leak" WHERE {SITE} AND {RECENT} '
        'GROUP BY "site", "boiler") WHERE "active" = 1 GROUP BY "site", "boiler"'
    )
    return table(
        "Active leaks",
        "Boilers whose latest leak detection (last 30 days) has not ended: confidence, "
        "estimated loss of loop water, the evidence that fired and when the leak started.",
        [target(query, table=True)],
        w=w,
        units={"confidence": "percentunit", "leak_rate_lpm": "flowlpm", **TIME_COLUMNS},
        hide=("Time", "active"),
        links={"boiler": BOILER_LINK},
    )


def active_anomalies(w: int) -> Json:
    query = (
        'SELECT "active", "reason", "start_ms" FROM ('
        'SELECT last("active") AS "active", last("reason") AS "reason", '
        f'last("start_ms") AS "start_ms" FROM "anomaly" WHERE {SITE} AND {RECENT} '
        'GROUP BY "site", "boiler", "kind") WHERE "active" = 1 GROUP BY "site", "boiler", "kind"'
    )
    return table(
        "Active anomalies",
        "Efficiency anomalies and pump failures (last 30 days) that have not ended, with "
        "the detector's reason and start time.",
        [target(query, table=True)],
        w=w,
        units=TIME_COLUMNS,
        hide=("Time", "active"),
        links={"boiler": BOILER_LINK},
    )


def firing_alerts(w: int) -> Json:
    return alert_list(
        "Firing alerts",
        "Grafana alert instances of the heatstream rules that are firing or pending "
        "(see docs/ops.md for each rule's runbook).",
        label_filter=ALERT_LABEL_FILTER,
        w=w,
    )


def heat_by_day(title: str, description: str, select: str, unit: str, *, bars: bool) -> Json:
    query = (
        f'SELECT {select} FROM "heat_window" WHERE {HOURLY} AND {SITE} AND $timeFilter '
        'GROUP BY time(1d), "site" fill(none)'
    )
    return timeseries(
        title,
        description + " Days are UTC days, summed from the hourly rollups.",
        [target(query, alias="$tag_site")],
        unit=unit,
        bars=bars,
        stacked=bars,
        min_=0,
        legend_calcs=("sum",) if bars else ("mean", "min"),
    )
