"""InfluxDB -> `ReportData`: every figure of a site's monthly heat-reuse report.

Reads only the landed measurements (docs/measurements.md): `heat_window` at
resolution '1m', `anomaly`, `leak` and `data_quality`. Each statement run is
kept in `ReportData.queries` so the report can print the exact InfluxQL
behind its figures. Months are UTC calendar months and days UTC days.

Why the 1-minute windows rather than the '1d' rollups: a rollup is emitted
only when the first window of the next bucket arrives, so the last day a
boiler reported (and the last day of a month until the next month's data
comes in) has no '1d' point yet; the 1-minute windows are exact as soon as
each window closes, and InfluxDB sums them server-side.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from heatstream.errors import HeatstreamError
from heatstream.influxql import Series, query
from heatstream.inventory import Inventory
from heatstream.report.model import (
    Alert,
    BoilerFigures,
    Day,
    QualityCount,
    Query,
    ReportData,
    SiteInfo,
)
from heatstream.settings import InfluxSettings

DAY_MS = 86_400_000
MINUTE_MS = 60_000
#: A boiler-minute whose window covers less than this (or has no window) is downtime.
DOWNTIME_BELOW = 0.5
#: Relative tolerance between the stored and the re-derived CO2 (float sums only differ
#: by rounding; anything larger means the pipeline used another factor or efficiency).
CO2_TOLERANCE = 1e-6

QueryFn = Callable[[str], list[Series]]


class ReportError(HeatstreamError, LookupError):
    """The report cannot be built for this site and month."""


class NoDataError(ReportError):
    """No heat window of the site in the month."""

    def __init__(self, site: str, month: str, sites_with_data: list[str]) -> None:
        self.site, self.month, self.sites_with_data = site, month, sites_with_data
        others = (
            f"sites with data in {month}: {', '.join(sites_with_data)}"
            if sites_with_data
            else f"no site has data in {month}"
        )
        super().__init__(
            f"no heat_window data for site {site!r} in {month} (UTC calendar month); {others}"
        )


def month_bounds(month: str) -> tuple[int, int]:
    """'2026-01' -> (start, end) of that UTC calendar month, epoch ms."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if not match or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"month {month!r}: expected YYYY-MM, e.g. 2026-01")
    year, mon = int(match[1]), int(match[2])
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def site_info(inventory: Inventory, site_id: str, inventory_label: str) -> SiteInfo:
    site = inventory.site_by_id.get(site_id)
    if site is None:
        known = ", ".join(sorted(inventory.site_by_id)) or "none"
        raise ReportError(
            f"site {site_id!r} is not in the inventory {inventory_label} (its sites: {known}); "
            "pass the inventory the pipeline ran with (--inventory FILE or HEATSTREAM_INVENTORY)"
        )
    d = site.displaced_heat
    return SiteInfo(
        id=site.id,
        name=site.name or site.id,
        kind=site.kind,
        timezone=site.timezone,
        heat_source=d.source,
        efficiency=d.efficiency,
        emission_factor_kg_per_kwh=d.emission_factor_kg_per_kwh,
        factor_source=d.factor_source,
    )


def _num(row: dict[str, Any], key: str) -> float:
    value = row.get(key)
    return float(value) if value is not None else 0.0


def _one_row(series: list[Series]) -> dict[str, Any]:
    return series[0].rows()[0] if series and series[0].values else {}


def build_report(
    influx: InfluxSettings,
    site_id: str,
    month: str,
    inventory: Inventory,
    inventory_label: str,
    *,
    now_ms: int | None = None,
    run: QueryFn | None = None,
) -> ReportData:
    """Query InfluxDB and assemble the report of `site_id` for the UTC month `month`.

    Raises `NoDataError` when the site has no 1-minute heat window that month and
    `ReportError` when the inventory does not know the site.
    """
    start_ms, end_ms = month_bounds(month)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    queries: list[Query] = []

    def ask(purpose: str, text: str) -> list[Series]:
        queries.append(Query(purpose=purpose, text=text))
        return run(text) if run is not None else query(influx, text)

    span = f"time >= {_literal(_rfc3339(start_ms))} AND time < {_literal(_rfc3339(end_ms))}"
    windows = f'FROM "heat_window" WHERE "resolution" = \'1m\' AND "site" = {_literal(site_id)}'

    present = ask(
        "Sites with 1-minute heat windows in the month",
        f'SELECT count("heat_kwh") AS "windows" FROM "heat_window" '
        f'WHERE "resolution" = \'1m\' AND {span} GROUP BY "site"',
    )
    sites_with_data = sorted(s.tags.get("site", "") for s in present)
    if site_id not in sites_with_data:
        raise NoDataError(site_id, month, sites_with_data)
    site = site_info(inventory, site_id, inventory_label)

    totals = _one_row(
        ask(
            "Month totals (sum of the 1-minute windows)",
            'SELECT sum("heat_kwh") AS "heat_kwh", sum("it_kwh") AS "it_kwh", '
            'sum("aux_kwh") AS "aux_kwh", sum("total_kwh") AS "total_kwh", '
            'sum("co2_avoided_kg") AS "co2_avoided_kg", count("heat_kwh") AS "windows" '
            f"{windows} AND {span}",
        )
    )
    positive = _one_row(
        ask(
            "Heat of the windows that delivered heat (CO2 is counted on these)",
            f'SELECT sum("heat_kwh") AS "heat_kwh" {windows} AND "heat_kwh" > 0 AND {span}',
        )
    )
    per_boiler = ask(
        "Per boiler: windows, heat, energy and summed coverage",
        'SELECT count("coverage") AS "windows", sum("coverage") AS "coverage", '
        'sum("heat_kwh") AS "heat_kwh", sum("total_kwh") AS "total_kwh" '
        f'{windows} AND {span} GROUP BY "boiler"',
    )
    good = ask(
        f"Per boiler: minutes with coverage >= {DOWNTIME_BELOW}",
        f'SELECT count("coverage") AS "minutes" {windows} '
        f'AND "coverage" >= {DOWNTIME_BELOW} AND {span} GROUP BY "boiler"',
    )
    daily = ask(
        "Per UTC day: heat, energy, CO2, windows and summed coverage",
        'SELECT sum("heat_kwh") AS "heat_kwh", sum("total_kwh") AS "total_kwh", '
        'sum("co2_avoided_kg") AS "co2_avoided_kg", sum("coverage") AS "coverage", '
        f'count("heat_kwh") AS "windows" {windows} AND {span} GROUP BY time(1d) fill(0)',
    )
    # InfluxQL has no sum(a * b): the products are formed per window in a subquery.
    # `coverage + 0 * supply` is null where the window has no supply temperature, so
    # the weight only counts windows that have one.
    temps = ask(
        "Per UTC day: coverage-weighted sums of supply and return temperatures",
        'SELECT sum("sw") AS "supply_weighted", sum("sc") AS "supply_weight", '
        'sum("rw") AS "return_weighted", sum("rc") AS "return_weight" FROM ('
        'SELECT "supply_temp_c" * "coverage" AS "sw", '
        '"coverage" + 0 * "supply_temp_c" AS "sc", '
        '"return_temp_c" * "coverage" AS "rw", '
        '"coverage" + 0 * "return_temp_c" AS "rc" '
        f"{windows} AND {span}) WHERE {span} GROUP BY time(1d) fill(0)",
    )
    site_filter = f'"site" = {_literal(site_id)}'
    before_end = f"time < {_literal(_rfc3339(end_ms))}"
    anomaly_rows = ask(
        "Anomalies of the site up to the end of the month (kept if they overlap it)",
        'SELECT "start_ms", "end_ms", "reason", "boiler", "kind", "severity", '
        f'"phase" FROM "anomaly" WHERE {site_filter} AND {before_end}',
    )
    leak_rows = ask(
        "Leak suspicions of the site up to the end of the month (kept if they overlap it)",
        'SELECT "start_ms", "detected_ms", "end_ms", "reason", "evidence", '
        '"leak_rate_lpm", "confidence", "boiler", "severity", "phase" '
        f'FROM "leak" WHERE {site_filter} AND {before_end}',
    )
    dq = ask(
        "Data-quality issues by kind",
        'SELECT count("count") AS "issues", sum("count") AS "count" '
        f'FROM "data_quality" WHERE {site_filter} AND {span} GROUP BY "kind"',
    )

    # -- coverage and downtime over boiler-minutes --------------------------------
    boiler_rows = {s.tags["boiler"]: s.rows()[0] for s in per_boiler if s.values}
    good_minutes = {s.tags["boiler"]: int(_num(s.rows()[0], "minutes")) for s in good if s.values}
    # A month still running counts its minutes up to now, or up to its newest window
    # when the data runs ahead of this machine's clock (a simulated fleet).
    period_end = end_ms
    if now_ms < end_ms:
        newest = _one_row(
            ask(
                "Newest 1-minute window of the site (the month is not over)",
                f'SELECT last("heat_kwh") AS "heat_kwh" {windows} AND {span}',
            )
        )
        newest_end = int(newest.get("time", start_ms)) + MINUTE_MS
        period_end = min(end_ms, max(now_ms // MINUTE_MS * MINUTE_MS, newest_end, start_ms))
    minutes = (period_end - start_ms) // MINUTE_MS
    boilers = []
    for name, row in sorted(boiler_rows.items()):
        down = minutes - good_minutes.get(name, 0)
        boilers.append(
            BoilerFigures(
                boiler=name,
                windows=int(_num(row, "windows")),
                heat_kwh=_num(row, "heat_kwh"),
                total_kwh=_num(row, "total_kwh"),
                coverage=_num(row, "coverage") / minutes if minutes else 0.0,
                downtime_h=max(down, 0) / 60,
            )
        )
    boiler_minutes = minutes * len(boilers)
    coverage_sum = sum(_num(r, "coverage") for r in boiler_rows.values())
    downtime_min = sum(max(minutes - good_minutes.get(b.boiler, 0), 0) for b in boilers)
    listed = sorted(b.id for b in inventory.boilers if b.site == site_id)

    days, weighted = _days(daily, temps, len(boilers), period_end)

    # -- CO2: stored sum, and re-derived from the inventory ------------------------
    heat, total = _num(totals, "heat_kwh"), _num(totals, "total_kwh")
    heat_positive = _num(positive, "heat_kwh")
    co2 = _num(totals, "co2_avoided_kg")
    derived = heat_positive / site.efficiency * site.emission_factor_kg_per_kwh
    agrees = abs(co2 - derived) <= CO2_TOLERANCE * max(abs(co2), abs(derived), 1e-9)
    implied = co2 * site.efficiency / heat_positive if heat_positive > 0 else None

    return ReportData(
        site=site,
        month=month,
        start_ms=start_ms,
        end_ms=end_ms,
        period_end_ms=period_end,
        generated_ms=now_ms,
        source=f"InfluxDB {influx.url}, database {influx.database!r}",
        inventory=inventory_label,
        boilers=tuple(boilers),
        boilers_without_data=tuple(b for b in listed if b not in boiler_rows),
        days=days,
        windows=int(_num(totals, "windows")),
        heat_kwh=heat,
        it_kwh=_num(totals, "it_kwh"),
        aux_kwh=_num(totals, "aux_kwh"),
        total_kwh=total,
        erf=heat / total if total > 0 else None,
        heat_positive_kwh=heat_positive,
        supply_temp_c=weighted["sw"] / weighted["sc"] if weighted["sc"] > 0 else None,
        return_temp_c=weighted["rw"] / weighted["rc"] if weighted["rc"] > 0 else None,
        temp_covered_minutes=weighted["sc"],
        co2_avoided_kg=co2,
        co2_derived_kg=derived,
        co2_agrees=agrees,
        co2_implied_factor=implied,
        boiler_minutes=boiler_minutes,
        coverage=coverage_sum / boiler_minutes if boiler_minutes else 0.0,
        downtime_h=downtime_min / 60,
        alerts=tuple(_alerts(anomaly_rows, leak_rows, start_ms)),
        quality=tuple(
            sorted(
                (
                    QualityCount(
                        kind=s.tags.get("kind", "?"),
                        issues=int(_num(s.rows()[0], "issues")),
                        count=int(_num(s.rows()[0], "count")),
                    )
                    for s in dq
                    if s.values
                ),
                key=lambda q: q.kind,
            )
        ),
        queries=tuple(queries),
    )


def _days(
    daily: list[Series], temps: list[Series], boilers: int, period_end_ms: int
) -> tuple[tuple[Day, ...], dict[str, float]]:
    """The UTC days, and the month's weighted temperature sums (`sw`/`sc` supply
    weighted sum/weight, `rw`/`rc` return), added up from the days' sums."""
    temp_by_day = {int(r["time"]): r for s in temps for r in s.rows()}
    days = []
    sums = {"sw": 0.0, "sc": 0.0, "rw": 0.0, "rc": 0.0}
    for row in (r for s in daily for r in s.rows()):
        t = int(row["time"])
        tr = temp_by_day.get(t, {})
        sw, sc = _num(tr, "supply_weighted"), _num(tr, "supply_weight")
        rw, rc = _num(tr, "return_weighted"), _num(tr, "return_weight")
        for key, value in (("sw", sw), ("sc", sc), ("rw", rw), ("rc", rc)):
            sums[key] += value
        # boiler-minutes of the day (fewer for the current day of a month still running)
        minutes = boilers * max(0, min(t + DAY_MS, period_end_ms) - t) // MINUTE_MS
        days.append(
            Day(
                date=datetime.fromtimestamp(t / 1000, tz=UTC).strftime("%Y-%m-%d"),
                windows=int(_num(row, "windows")),
                heat_kwh=_num(row, "heat_kwh"),
                total_kwh=_num(row, "total_kwh"),
                co2_avoided_kg=_num(row, "co2_avoided_kg"),
                coverage=_num(row, "coverage") / minutes if minutes else 0.0,
                supply_temp_c=sw / sc if sc > 0 else None,
                return_temp_c=rw / rc if rc > 0 else None,
            )
        )
    return tuple(days), sums


_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


def _alerts(anomalies: list[Series], leaks: list[Series], month_start_ms: int) -> list[Alert]:
    """One alert per (boiler, kind, start): its start point and, if any, its end point.

    Kept when it overlaps the month: it started before the month's end (the
    queries stop there) and ended in the month, or had not ended by its end.
    """
    found: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for measurement, series in (("anomaly", anomalies), ("leak", leaks)):
        for s in series:
            for row in s.rows():
                if row.get("start_ms") is None:
                    continue
                kind = row.get("kind") or "leak"
                key = (measurement, kind, str(row.get("boiler", "-")), int(row["start_ms"]))
                alert = found.setdefault(key, {"severity": "info", "reason": "", "detail": ""})
                severity = str(row.get("severity") or "info")
                if _SEVERITY_RANK.get(severity, 0) >= _SEVERITY_RANK.get(alert["severity"], 0):
                    alert["severity"] = severity
                if row.get("phase") == "end" and row.get("end_ms") is not None:
                    alert["end_ms"] = int(row["end_ms"])
                if row.get("reason") and (row.get("phase") == "start" or not alert["reason"]):
                    alert["reason"] = str(row["reason"])
                if measurement == "leak" and row.get("phase") == "start":
                    alert["detail"] = _leak_detail(row)
    out = []
    for (measurement, kind, boiler, start), a in found.items():
        end = a.get("end_ms")
        if end is not None and end < month_start_ms:
            continue
        out.append(
            Alert(
                measurement=measurement,
                kind=kind,
                boiler=boiler,
                severity=a["severity"],
                start_ms=start,
                end_ms=end,
                reason=a["reason"],
                detail=a["detail"],
            )
        )
    return sorted(out, key=lambda a: (a.start_ms, a.boiler, a.kind))


def _leak_detail(row: dict[str, Any]) -> str:
    parts = []
    if row.get("evidence"):
        parts.append(f"evidence: {row['evidence']}")
    if row.get("leak_rate_lpm") is not None:
        parts.append(f"est. {float(row['leak_rate_lpm']):.2f} L/min")
    if row.get("confidence") is not None:
        parts.append(f"confidence {float(row['confidence']):.2f}")
    if row.get("detected_ms") is not None:
        detected = datetime.fromtimestamp(int(row["detected_ms"]) / 1000, tz=UTC)
        parts.append(f"detected {detected:%Y-%m-%d %H:%M} UTC")
    return "; ".join(parts)
