"""The figures of a run, read back from InfluxDB: heat, ERF and CO2 per site, alerts.

Used by `heatstream up` for its final summary and `--summary-json`. Every
number is computed from the landed measurements (docs/measurements.md), so it
shows what an analyst would see.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from heatstream.influxql import query
from heatstream.settings import InfluxSettings


def _iso(ms: int | float | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def run_summary(influx: InfluxSettings, start_ms: int, end_ms: int) -> dict[str, Any]:
    """Sites, alerts, dead letters and late events between start and end (event time)."""
    where = f"time >= {start_ms}ms AND time < {end_ms}ms"
    sites: dict[str, dict[str, Any]] = {}
    for s in query(
        influx,
        "SELECT sum(heat_kwh) AS heat, sum(total_kwh) AS total, sum(it_kwh) AS it, "
        "sum(co2_avoided_kg) AS co2, mean(coverage) AS coverage, count(heat_kwh) AS windows "
        f"FROM heat_window WHERE resolution = '1m' AND {where} GROUP BY site",
    ):
        row = s.rows()[0]
        heat, total = row["heat"] or 0.0, row["total"] or 0.0
        sites[s.tags["site"]] = {
            "heat_kwh": round(heat, 3),
            "it_kwh": round(row["it"] or 0.0, 3),
            "total_kwh": round(total, 3),
            "erf": round(heat / total, 4) if total > 0 else None,
            "co2_avoided_kg": round(row["co2"] or 0.0, 3),
            "coverage": round(row["coverage"] or 0.0, 4),
            "windows": int(row["windows"] or 0),
        }
    alerts: dict[tuple[str, str, int], dict[str, Any]] = {}
    for measurement in ("anomaly", "leak"):
        for s in query(
            influx,
            f"SELECT start_ms, end_ms, phase, kind, boiler, site, severity, reason FROM {measurement} "
            f"WHERE {where}"
            if measurement == "anomaly"
            else f"SELECT start_ms, end_ms, phase, boiler, site, severity, reason, evidence FROM {measurement} "
            f"WHERE {where}",
        ):
            for row in s.rows():
                kind = row.get("kind") or "leak"
                key = (kind, row["boiler"], int(row["start_ms"]))
                alert = alerts.setdefault(
                    key,
                    {
                        "kind": kind,
                        "boiler": row["boiler"],
                        "site": row["site"],
                        "severity": row.get("severity"),
                        "start": _iso(row["start_ms"]),
                        "end": None,
                        "reason": row.get("reason"),
                    },
                )
                if row.get("evidence"):
                    alert["evidence"] = row["evidence"]
                if row.get("phase") == "end" and row.get("end_ms") is not None:
                    alert["end"] = _iso(row["end_ms"])

    def count(measurement: str) -> int:
        series = query(influx, f'SELECT count("count") FROM {measurement}')
        return int(series[0].values[0][1]) if series and series[0].values else 0

    return {
        "month": datetime.fromtimestamp(start_ms / 1000, tz=UTC).strftime("%Y-%m"),
        "from": _iso(start_ms),
        "to": _iso(end_ms),
        "sites": dict(sorted(sites.items())),
        "alerts": sorted(alerts.values(), key=lambda a: (a["start"], a["boiler"], a["kind"])),
        "dead_letters": count("dead_letter"),
        "late_events": count("late_event"),
    }
