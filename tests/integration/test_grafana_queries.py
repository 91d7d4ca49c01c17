"""Every dashboard panel, annotation, variable and alert-rule query runs on a real InfluxDB
and returns the series an operator expects.

Grafana cannot run here, so the test does what Grafana does with a query: expand
`$timeFilter`, `$__interval` and the template variables (heatstream.grafana.queries),
send it to InfluxDB 1.6 (the session `stack`), and for alert rules apply Grafana's
reduce and threshold expressions (heatstream.grafana.evaluate).

The data is a small, realistic fleet written straight to a database of this module,
following docs/measurements.md: two sites, three boilers, the last three hours up to
now. boiler-lyon-01 is leaking (open leak, decaying pressure, make-up water);
boiler-lyon-02 had a leak that ended and has an open efficiency drop;
boiler-nantes-01 has an open pump failure and its gateway went silent 30 minutes ago.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from heatstream.grafana import boards, queries
from heatstream.grafana.check import (
    Checked,
    InfluxQL,
    check_dashboards,
    check_rules,
    discover_variables,
)
from heatstream.grafana.files import load
from heatstream.stack import EmbeddedStack

pytestmark = pytest.mark.integration

MINUTE = 60_000
HOUR = 60 * MINUTE
SITES = {"pool-lyon": ("boiler-lyon-01", "boiler-lyon-02"), "res-nantes": ("boiler-nantes-01",)}
SITE_OF = {b: s for s, boilers in SITES.items() for b in boilers}
GATEWAY = {"pool-lyon": "gw-lyon-1", "res-nantes": "gw-nantes-1"}
IT_KW = {"boiler-lyon-01": 96.0, "boiler-lyon-02": 96.0, "boiler-nantes-01": 48.0}
AUX_KW = 2.5
CO2_PER_KWH = {"pool-lyon": 0.227 / 0.90, "res-nantes": 0.324 / 0.85}
LEAKING = "boiler-lyon-01"
PROCESSES = {"sink-1", "sink-2", "worker-1", "worker-2"}  # reporting pipeline_health
SPAN_MIN = 180


# -- the fleet's data ---------------------------------------------------------------------


def _tags(tags: dict[str, str]) -> str:
    return "".join(f",{k}={v}" for k, v in sorted(tags.items()))


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v)
    return '"' + str(v).replace('"', '\\"') + '"'


def line(measurement: str, tags: dict[str, str], fields: dict[str, Any], ts_ns: int) -> str:
    body = ",".join(f"{k}={_value(v)}" for k, v in fields.items() if v is not None)
    return f"{measurement}{_tags(tags)} {body} {ts_ns}"


@dataclass
class Fleet:
    """The points written, and the facts the assertions compare against."""

    end_ms: int
    lines: list[str] = field(default_factory=list)
    hourly: list[dict[str, Any]] = field(default_factory=list)  # 1h heat_window fields + tags
    minutely: list[dict[str, Any]] = field(default_factory=list)
    last_lag: dict[str, int] = field(default_factory=dict)
    health: list[dict[str, Any]] = field(default_factory=list)

    @property
    def start_ms(self) -> int:
        return self.end_ms - SPAN_MIN * MINUTE

    def add(
        self,
        measurement: str,
        tags: dict[str, str],
        fields: dict[str, Any],
        ts_ms: int,
        extra_ns: int = 0,
    ) -> None:
        self.lines.append(line(measurement, tags, fields, ts_ms * 1_000_000 + extra_ns))


def _state(boiler: str, t: int, end: int) -> dict[str, float]:
    """Physically consistent channel values of a boiler at time t (ms)."""
    wobble = math.sin(t / 600_000 + len(boiler))
    it_kw = IT_KW[boiler] * (1 + 0.05 * wobble)
    recovery = 0.80
    supply, ret, pressure, makeup, moisture = 65.0 + wobble, 45.0 + 0.5 * wobble, 2.0, 0.0, 20.0
    flow = it_kw * recovery / (4.18 * 0.98 * (supply - ret)) * 60  # P = m c dT, L/min
    supply_flow = flow
    if boiler == LEAKING and t >= end - 55 * MINUTE:
        lost = (t - (end - 55 * MINUTE)) / MINUTE
        pressure -= 0.008 * lost
        makeup, moisture, supply_flow = 0.8, min(20.0 + lost, 70.0), flow + 0.8
    if boiler == "boiler-lyon-02" and t >= end - 60 * MINUTE:
        recovery = 0.62  # fouled exchanger
    if boiler == "boiler-nantes-01" and t >= end - 50 * MINUTE:
        recovery, flow, supply_flow, supply = 0.05, 0.4, 0.4, 82.0  # pump failed
    return {
        "supply_temp_c": supply,
        "return_temp_c": ret,
        "flow_lpm": flow,
        "supply_flow_lpm": supply_flow,
        "pressure_bar": pressure,
        "it_power_kw": it_kw,
        "aux_power_kw": AUX_KW,
        "makeup_flow_lpm": makeup,
        "moisture_pct": moisture,
        "recovery": recovery,
    }


def _dead_letter_ns(partition: int, offset: int) -> int:
    """The nanoseconds docs/measurements.md adds to a dead letter's millisecond timestamp."""
    return (offset % 1000) * 1000 + (partition + 1) % 1000


def _silent(boiler: str, t: int, end: int) -> bool:
    return SITE_OF[boiler] == "res-nantes" and t >= end - 30 * MINUTE


def build_fleet(now_ms: int) -> Fleet:
    end = now_ms // MINUTE * MINUTE
    fleet = Fleet(end)
    rng = random.Random(7)
    for boiler, site in SITE_OF.items():
        tags = {"boiler": boiler, "site": site}
        for t in range(fleet.start_ms, end, 10_000):
            if _silent(boiler, t, end):
                break
            channels: dict[str, Any] = _state(boiler, t, end)
            channels.pop("recovery")
            channels |= {"samples": 10, "quarantined": 0}  # 1 Hz sampling, 10 s buckets
            fleet.add("telemetry", tags, channels, t)
        hours: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for t in range(fleet.start_ms, end, MINUTE):
            if _silent(boiler, t, end):
                break
            s = _state(boiler, t, end)
            it_kwh, aux_kwh = s["it_power_kw"] / 60, AUX_KW / 60
            heat = (it_kwh + aux_kwh) * s["recovery"]
            fields = {
                "heat_kwh": heat,
                "it_kwh": it_kwh,
                "aux_kwh": aux_kwh,
                "total_kwh": it_kwh + aux_kwh,
                "erf": heat / (it_kwh + aux_kwh),
                "supply_temp_c": s["supply_temp_c"],
                "return_temp_c": s["return_temp_c"],
                "flow_lpm": s["flow_lpm"],
                "coverage": 1.0,
                "co2_avoided_kg": heat * CO2_PER_KWH[site],
                "samples": 72,
                "quarantined": 3 if (boiler == LEAKING and t == end - 100 * MINUTE) else 0,
                "throttled": False,
                "heat_kwh_ai_training": heat * 0.7,
                "heat_kwh_rendering": heat * 0.3,
            }
            fleet.add("heat_window", {**tags, "resolution": "1m"}, fields, t)
            fleet.minutely.append({**tags, "time": t, **fields})
            hours[t // HOUR * HOUR].append(fields)
        for hour, windows in sorted(hours.items()):
            if hour + HOUR > end:
                continue  # not closed yet: the rollup comes when the next hour starts
            summed = (
                "heat_kwh",
                "it_kwh",
                "aux_kwh",
                "total_kwh",
                "co2_avoided_kg",
                "heat_kwh_ai_training",
                "heat_kwh_rendering",
            )
            total = {k: sum(w[k] for w in windows) for k in summed}
            fields = {
                **total,
                "erf": total["heat_kwh"] / total["total_kwh"],
                "coverage": len(windows) / 60,
                "samples": 72 * len(windows),
                "quarantined": sum(w["quarantined"] for w in windows),
                "throttled": False,
            }
            fleet.add("heat_window", {**tags, "resolution": "1h"}, fields, hour)
            fleet.hourly.append({**tags, "time": hour, **fields})
        day = end // (24 * HOUR) * (24 * HOUR) - 24 * HOUR
        yesterday = IT_KW[boiler] * 24 * 0.8
        fleet.add(
            "heat_window",
            {**tags, "resolution": "1d"},
            {
                "heat_kwh": yesterday,
                "it_kwh": IT_KW[boiler] * 24,
                "aux_kwh": 60.0,
                "total_kwh": IT_KW[boiler] * 24 + 60,
                "erf": yesterday / (IT_KW[boiler] * 24 + 60),
                "coverage": 1.0,
                "co2_avoided_kg": yesterday * CO2_PER_KWH[site],
                "samples": 103_680,
            },
            day,
        )

    def anomaly(
        boiler: str,
        kind: str,
        severity: str,
        start: int,
        end_at: int | None,
        reason: str,
        **ev: float,
    ) -> None:
        tags = {"boiler": boiler, "site": SITE_OF[boiler], "kind": kind, "severity": severity}
        evidence = {f"ev_{k}": v for k, v in ev.items()}
        fleet.add(
            "anomaly",
            {**tags, "phase": "start"},
            {"active": 1, "start_ms": start, "reason": reason, **evidence},
            start,
        )
        if end_at is not None:
            fleet.add(
                "anomaly",
                {**tags, "phase": "end"},
                {"active": 0, "start_ms": start, "end_ms": end_at, "reason": reason, **evidence},
                end_at,
            )

    anomaly(
        "boiler-lyon-02",
        "pump_failure",
        "critical",
        end - 120 * MINUTE,
        end - 110 * MINUTE,
        "flow 0.3 L/min with IT power 96 kW",
        flow_lpm=0.3,
        it_power_kw=96.0,
    )
    anomaly(
        "boiler-lyon-02",
        "efficiency_drop",
        "warning",
        end - 60 * MINUTE,
        None,
        "recovery 0.62 below baseline 0.80 for 15 min",
        recovery=0.62,
        baseline=0.80,
    )
    anomaly(
        "boiler-nantes-01",
        "pump_failure",
        "critical",
        end - 50 * MINUTE,
        None,
        "flow 0.4 L/min with IT power 48 kW",
        flow_lpm=0.4,
        it_power_kw=48.0,
    )

    def leak(
        boiler: str, start: int, detected: int, end_at: int | None, evidence: list[str], rate: float
    ) -> None:
        tags = {"boiler": boiler, "site": SITE_OF[boiler], "severity": "critical"}
        fields = {
            "confidence": 0.92,
            "leak_rate_lpm": rate,
            "start_ms": start,
            "detected_ms": detected,
            "evidence": ",".join(evidence),
            "reason": f"{', '.join(evidence)} since {start}",
            **{
                f"ev_{k}": int(k in evidence)
                for k in ("makeup_water", "pressure_decay", "flow_imbalance", "moisture")
            },
        }
        fleet.add("leak", {**tags, "phase": "start"}, {"active": 1, **fields}, detected)
        if end_at is not None:
            fleet.add(
                "leak", {**tags, "phase": "end"}, {"active": 0, "end_ms": end_at, **fields}, end_at
            )

    leak(
        LEAKING,
        end - 55 * MINUTE,
        end - 40 * MINUTE,
        None,
        ["makeup_water", "pressure_decay", "flow_imbalance"],
        0.8,
    )
    leak(
        "boiler-lyon-02",
        end - 175 * MINUTE,
        end - 170 * MINUTE,
        end - 150 * MINUTE,
        ["moisture"],
        0.1,
    )

    def issue(
        site: str,
        boiler: str,
        kind: str,
        channel: str,
        start: int,
        count: int,
        detail: str,
        end_at: int | None = None,
    ) -> None:
        tags = {
            "site": site,
            "gateway": GATEWAY[site],
            "boiler": boiler,
            "kind": kind,
            "channel": channel,
        }
        fleet.add(
            "data_quality",
            tags,
            {"count": count, "start_ms": start, "end_ms": end_at, "detail": detail},
            start,
        )

    issue("res-nantes", "-", "gateway_silent", "-", end - 25 * MINUTE, 1, "no event for 300 s")
    issue(
        "pool-lyon",
        LEAKING,
        "out_of_range",
        "pressure_bar",
        end - 100 * MINUTE,
        3,
        "pressure_bar 19.2 > 16",
    )
    issue(
        "pool-lyon",
        "boiler-lyon-02",
        "sensor_stuck",
        "moisture_pct",
        end - 80 * MINUTE,
        360,
        "moisture_pct constant for 1 h",
        end - 20 * MINUTE,
    )

    offset = 1000
    for i in range(25):  # the spike: 25 rejections in the last 5 minutes
        reason = "decode_error" if i < 20 else "unauthorised"
        offset += 1
        fleet.add(
            "dead_letter",
            {"reason": reason, "stage": "intake", "source_topic": "heatstream.raw"},
            {
                "count": 1,
                "source_partition": 3,
                "source_offset": offset,
                "error": f"{reason} at offset {offset}",
            },
            end - 5 * MINUTE + i * 10_000,
            extra_ns=_dead_letter_ns(3, offset),
        )
    for i in range(3):
        fleet.add(
            "dead_letter",
            {"reason": "decode_error", "stage": "intake", "source_topic": "heatstream.raw"},
            {
                "count": 1,
                "source_partition": 1,
                "source_offset": 10 + i,
                "error": "truncated frame",
            },
            end - 120 * MINUTE,
            extra_ns=_dead_letter_ns(1, 10 + i),
        )
    for i in range(7):
        fleet.add(
            "late_event",
            {
                "reason": "beyond_allowed_lateness",
                "stage": "windows",
                "source_topic": "heatstream.raw",
            },
            {
                "count": 1,
                "source_partition": 0,
                "source_offset": 500 + i,
                "error": "window closed 95 s earlier",
            },
            end - (150 - 20 * i) * MINUTE,
            extra_ns=_dead_letter_ns(0, 500 + i),
        )

    # The sinks and workers report every 5 s, counts cumulative since the process
    # started (docs/measurements.md); fleet.health keeps each report's increments, and
    # whether it falls in the first minute of its process's life (the dashboards'
    # differences cannot see those). sink-1 restarted 90 minutes ago and missed a minute
    # of reports; worker-2 restarted an hour ago. worker-1 counted the intake dead
    # letters and late events written above when it refused or routed them.
    refused = {end - 5 * MINUTE + i * 10_000 for i in range(25)} | {end - 120 * MINUTE}
    refused_at = {t: 1 for t in refused} | {end - 120 * MINUTE: 3}
    late_at = {end - (150 - 20 * i) * MINUTE: 1 for i in range(7)}
    restarts = {"sink-1": end - 90 * MINUTE, "worker-2": end - 60 * MINUTE}
    for process in ("sink-1", "sink-2", "worker-1", "worker-2"):
        component = process.split("-")[0]
        totals: dict[str, int] = defaultdict(int)
        born = fleet.start_ms
        for t in range(fleet.start_ms, end, 5_000):
            if process == "sink-1" and end - 91 * MINUTE <= t < end - 90 * MINUTE:
                continue
            if t == restarts.get(process):
                totals, born = defaultdict(int), t
            lag = int(50 + 40 * math.sin(t / 900_000) + rng.randint(0, 20))
            latency = 5 + 40 * rng.random()
            if component == "sink":
                counts = {
                    "messages": 250,
                    "points_written": 500,
                    "batches": 5,
                    "retries": int(t % (10 * MINUTE) == 0),
                    "rejected_points": 0,
                    "dead_letters": 0,
                    "decode_errors": 0,
                    "skipped_messages": 0,
                    "skipped_points": 0,
                    "late_samples": int(t % (15 * MINUTE) == 0) * 4,
                    "duplicates": int(t % (30 * MINUTE) == 0),
                    "commit_failures": 0,
                    "warmup_messages": 0,
                }
                gauges = {
                    "write_latency_ms": latency,
                    "write_latency_max_ms": latency * 1.5,
                    "consumer_lag": lag,
                    "in_flight_points": rng.randint(0, 500),
                    "paused": False,
                    "interval_s": 5.0,
                }
            else:
                mine = process == "worker-1"
                counts = {
                    "messages": 120,
                    "frames": 120,
                    "readings": 120 * 240,
                    "dead_letters": refused_at.get(t, 0) if mine else 0,
                    "late_events": late_at.get(t, 0) if mine else 0,
                    "windows": 4 if t % MINUTE == 0 else 0,
                }
                gauges = {
                    "processing_latency_ms": latency,
                    "processing_latency_max_ms": latency * 2,
                    "consumer_lag": lag,
                    "consumer_lag_p0": lag,
                    "interval_s": 5.0,
                    "started_ms": born,
                }
            for name, n in counts.items():
                totals[name] += n
            fleet.add(
                "pipeline_health",
                {"process": process, "component": component},
                {**totals, **gauges},
                t,
            )
            first = t // MINUTE == born // MINUTE
            fleet.health.append(
                {"process": process, "component": component, "time": t, "first": first}
                | counts
                | gauges
            )
            fleet.last_lag[process] = lag
    return fleet


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet_db(stack: EmbeddedStack) -> Iterator[tuple[InfluxQL, Fleet]]:
    database = f"grafana_{uuid.uuid4().hex[:8]}"
    fleet = build_fleet(int(datetime.now(UTC).timestamp() * 1000))
    with httpx.Client(base_url=stack.influx_url, timeout=30) as http:
        created = http.post("/query", data={"q": f'CREATE DATABASE "{database}"'})
        assert created.status_code == 200 and "error" not in created.text, created.text
        for i in range(0, len(fleet.lines), 5000):
            written = http.post(
                "/write",
                params={"db": database, "precision": "ns"},
                content="\n".join(fleet.lines[i : i + 5000]).encode(),
            )
            assert written.status_code == 204, written.text
        with InfluxQL(stack.influx_url, database) as client:
            yield client, fleet
        http.post("/query", data={"q": f'DROP DATABASE "{database}"'})


def _range(fleet: Fleet) -> tuple[datetime, datetime]:
    return (
        datetime.fromtimestamp((fleet.start_ms - 10 * MINUTE) / 1000, UTC),
        datetime.fromtimestamp((fleet.end_ms + MINUTE) / 1000, UTC),
    )


def _in_range(fleet: Fleet, rows: list[dict[str, Any]], **tags: str) -> list[dict[str, Any]]:
    lo, hi = (int(t.timestamp() * 1000) for t in _range(fleet))
    return [r for r in rows if lo <= r["time"] <= hi and all(r[k] == v for k, v in tags.items())]


# -- what each panel must show ------------------------------------------------------------

Expectation = Callable[[Checked, Fleet], None]


def numbers(checked: Checked, column: str) -> list[float]:
    values = [v for v in checked.column(column) if v is not None]
    assert values, f"{checked.where}: no value in column {column!r}: {checked.series}"
    return [float(v) for v in values]


def within(checked: Checked, column: str, lo: float, hi: float) -> list[float]:
    values = numbers(checked, column)
    assert all(lo <= v <= hi for v in values), (
        f"{checked.where}: {column} outside [{lo}, {hi}]: {values}"
    )
    return values


def tag_values(checked: Checked, key: str) -> set[str]:
    found = {s.get("tags", {}).get(key) for s in checked.series}
    found |= {str(v) for v in checked.column(key)}  # table format may also carry tags as columns
    return {v for v in found if v is not None}


def single(checked: Checked, column: str) -> float:
    (value,) = numbers(checked, column)
    return value


def approx(expected: float) -> Any:
    return pytest.approx(expected, rel=1e-6)


def total(fleet: Fleet, rows: list[dict[str, Any]], key: str) -> float:
    return sum(r[key] for r in rows)


FLEET: dict[str, Expectation] = {}
BOILER: dict[str, Expectation] = {}
ALERTS: dict[str, Expectation] = {}
PIPELINE: dict[str, Expectation] = {}


def expect(table: dict[str, Expectation], key: str) -> Callable[[Expectation], Expectation]:
    def register(fn: Expectation) -> Expectation:
        table[key] = fn
        return fn

    return register


@expect(FLEET, "Heat delivered/A")
def _(c: Checked, f: Fleet) -> None:
    assert single(c, "heat_kwh") == approx(total(f, _in_range(f, f.hourly), "heat_kwh"))


@expect(FLEET, "Energy Reuse Factor/A")
def _(c: Checked, f: Fleet) -> None:
    rows = _in_range(f, f.hourly)
    assert single(c, "erf") == approx(total(f, rows, "heat_kwh") / total(f, rows, "total_kwh"))
    within(c, "erf", 0.3, 1.0)


@expect(FLEET, "CO2 avoided/A")
def _(c: Checked, f: Fleet) -> None:
    assert single(c, "co2_avoided_kg") == approx(total(f, _in_range(f, f.hourly), "co2_avoided_kg"))


@expect(FLEET, "Open detections/A")
def _(c: Checked, f: Fleet) -> None:
    assert single(c, "leaks") == 1


@expect(FLEET, "Open detections/B")
def _(c: Checked, f: Fleet) -> None:
    assert single(c, "anomalies") == 2  # lyon-02 efficiency drop, nantes-01 pump failure


@expect(FLEET, "Heat delivered by site and day/A")
def _(c: Checked, f: Fleet) -> None:
    assert tag_values(c, "site") == set(SITES)
    assert sum(within(c, "heat_kwh", 0.01, 10_000)) == approx(
        total(f, _in_range(f, f.hourly), "heat_kwh")
    )


@expect(FLEET, "ERF by site and day/A")
def _(c: Checked, f: Fleet) -> None:
    assert tag_values(c, "site") == set(SITES)
    within(c, "erf", 0.05, 1.1)


@expect(FLEET, "CO2 avoided by site and day/A")
def _(c: Checked, f: Fleet) -> None:
    assert tag_values(c, "site") == set(SITES)
    within(c, "co2_avoided_kg", 0.01, 5_000)


@expect(FLEET, "Sites over the period/A")
def _(c: Checked, f: Fleet) -> None:
    assert tag_values(c, "site") == set(SITES)
    within(c, "erf", 0.05, 1.1)
    within(c, "coverage", 0.0, 1.0)
    lyon = _in_range(f, f.hourly, site="pool-lyon")
    assert max(numbers(c, "heat_kwh")) == approx(total(f, lyon, "heat_kwh"))


def _active_leaks(c: Checked, f: Fleet) -> None:
    assert tag_values(c, "boiler") == {LEAKING}
    assert c.column("evidence") == ["makeup_water,pressure_decay,flow_imbalance"]
    within(c, "confidence", 0.5, 1.0)
    within(c, "leak_rate_lpm", 0.1, 5.0)
    assert numbers(c, "start_ms") == [f.end_ms - 55 * MINUTE]


def _active_anomalies(c: Checked, f: Fleet) -> None:
    pairs = {(s["tags"]["boiler"], s["tags"]["kind"]) for s in c.series}
    assert pairs == {("boiler-lyon-02", "efficiency_drop"), ("boiler-nantes-01", "pump_failure")}
    assert all(isinstance(r, str) and r for r in c.column("reason"))


FLEET["Active leaks/A"] = ALERTS["Active leaks/A"] = _active_leaks
FLEET["Active anomalies/A"] = ALERTS["Active anomalies/A"] = _active_anomalies


# Boiler detail runs for the leaking boiler (LEAKING) and for boiler-lyon-02; the
# expectations get the boiler through the Checked.where prefix set by the test.


def _boiler_of(c: Checked) -> str:
    return c.where.split("|", 1)[0]


@expect(BOILER, "Heat delivered/A")
def _(c: Checked, f: Fleet) -> None:
    rows = _in_range(f, f.minutely, boiler=_boiler_of(c))
    assert single(c, "heat_kwh") == approx(total(f, rows, "heat_kwh"))


@expect(BOILER, "Energy Reuse Factor/A")
def _(c: Checked, f: Fleet) -> None:
    rows = _in_range(f, f.minutely, boiler=_boiler_of(c))
    assert single(c, "erf") == approx(total(f, rows, "heat_kwh") / total(f, rows, "total_kwh"))
    within(c, "erf", 0.5, 0.9)


@expect(BOILER, "Energy Reuse Factor over time/A")
def _(c: Checked, f: Fleet) -> None:
    erf = within(c, "erf", 0.5, 0.9)
    if _boiler_of(c) == "boiler-lyon-02":
        assert min(erf) == pytest.approx(0.62) and max(erf) == pytest.approx(0.80)


@expect(BOILER, "CO2 avoided/A")
def _(c: Checked, f: Fleet) -> None:
    rows = _in_range(f, f.minutely, boiler=_boiler_of(c))
    assert single(c, "co2_avoided_kg") == approx(total(f, rows, "co2_avoided_kg"))


@expect(BOILER, "Data coverage/A")
def _(c: Checked, f: Fleet) -> None:
    assert single(c, "coverage") == approx(1.0)


@expect(BOILER, "Supply and return temperature/A")
def _(c: Checked, f: Fleet) -> None:
    supply, ret = within(c, "supply", 55, 90), within(c, "return", 35, 55)
    assert min(supply) > max(ret)


@expect(BOILER, "Flow/A")
def _(c: Checked, f: Fleet) -> None:
    within(c, "flow", 10, 200)
    supply_flow = within(c, "supply_flow", 10, 200)
    if _boiler_of(c) == LEAKING:
        assert max(s - q for s, q in zip(supply_flow, numbers(c, "flow"), strict=False)) > 0.5


@expect(BOILER, "Loop pressure/A")
def _(c: Checked, f: Fleet) -> None:
    pressure = within(c, "pressure", 1.0, 3.0)
    if _boiler_of(c) == LEAKING:
        assert pressure[0] - pressure[-1] > 0.2, "the leak's pressure decay is visible"


@expect(BOILER, "IT power against thermal power/A")
def _(c: Checked, f: Fleet) -> None:
    it_kw, thermal = within(c, "it_kw", 80, 110), within(c, "thermal_kw", 30, 110)
    within(c, "aux_kw", 2.0, 3.0)
    assert all(h < i + AUX_KW for h, i in zip(thermal, it_kw, strict=True)), (
        "no heat out of nothing"
    )


@expect(BOILER, "Leak evidence: make-up water and moisture/A")
def _(c: Checked, f: Fleet) -> None:
    makeup = within(c, "makeup_flow", 0, 5)
    within(c, "moisture", 0, 100)
    assert (max(makeup) > 0.5) == (_boiler_of(c) == LEAKING)


@expect(BOILER, "Heat by workload/A")
def _(c: Checked, f: Fleet) -> None:
    training = sum(numbers(c, "sum_heat_kwh_ai_training"))
    rendering = sum(numbers(c, "sum_heat_kwh_rendering"))
    assert training == pytest.approx(7 / 3 * rendering, rel=1e-6)
    rows = _in_range(f, f.hourly, boiler=_boiler_of(c))
    assert training + rendering == approx(total(f, rows, "heat_kwh"))


@expect(BOILER, "Data quality issues/A")
def _(c: Checked, f: Fleet) -> None:
    expected = {LEAKING: {"out_of_range"}, "boiler-lyon-02": {"sensor_stuck"}}[_boiler_of(c)]
    assert tag_values(c, "kind") == expected


@expect(BOILER, "Anomalies/A")
def _(c: Checked, f: Fleet) -> None:
    if _boiler_of(c) == LEAKING:
        assert c.rows() == 0
        return
    assert c.rows() == 3  # pump failure start and end, efficiency drop start
    assert tag_values(c, "kind") == {"pump_failure", "efficiency_drop"}
    assert {"ev_recovery", "ev_flow_lpm"} <= {col for s in c.series for col in s["columns"]}


@expect(BOILER, "Leaks/A")
def _(c: Checked, f: Fleet) -> None:
    assert c.rows() == (1 if _boiler_of(c) == LEAKING else 2)
    within(c, "confidence", 0.5, 1.0)
    assert all(e for e in c.column("evidence"))


@expect(BOILER, "annotation 'Anomalies'")
def _(c: Checked, f: Fleet) -> None:
    assert c.rows() == (0 if _boiler_of(c) == LEAKING else 2)
    if c.rows():
        assert set(c.column("kind")) == {"pump_failure", "efficiency_drop"}
        assert all(c.column("reason"))


@expect(BOILER, "annotation 'Leaks'")
def _(c: Checked, f: Fleet) -> None:
    assert c.rows() == 1
    assert all(c.column("reason")) and all(c.column("evidence"))


@expect(BOILER, "annotation 'Detections ended'")
def _(c: Checked, f: Fleet) -> None:
    assert c.rows() == (0 if _boiler_of(c) == LEAKING else 2)  # pump failure and old leak ended


@expect(ALERTS, "Detections per day/A")
def _(c: Checked, f: Fleet) -> None:
    per_kind: dict[str, float] = defaultdict(float)
    for s in c.series:
        index = s["columns"].index("anomalies")
        per_kind[s["tags"]["kind"]] += sum(row[index] or 0 for row in s["values"])
    assert per_kind == {"pump_failure": 2, "efficiency_drop": 1}


@expect(ALERTS, "Detections per day/B")
def _(c: Checked, f: Fleet) -> None:
    assert sum(numbers(c, "leaks")) == 2


@expect(ALERTS, "Data quality issues by kind/A")
def _(c: Checked, f: Fleet) -> None:
    assert tag_values(c, "kind") == {"gateway_silent", "out_of_range", "sensor_stuck"}
    assert sum(numbers(c, "count")) == 1 + 3 + 360


@expect(ALERTS, "Leak history with evidence/A")
def _(c: Checked, f: Fleet) -> None:
    assert c.rows() == 3
    assert tag_values(c, "boiler") == {LEAKING, "boiler-lyon-02"}
    assert sorted(numbers(c, "ev_makeup_water")) == [0, 0, 1]
    within(c, "leak_rate_lpm", 0.0, 5.0)


@expect(ALERTS, "Anomaly history with evidence/A")
def _(c: Checked, f: Fleet) -> None:
    assert c.rows() == 4
    assert sorted(numbers(c, "active")) == [0, 1, 1, 1]
    assert {"ev_recovery", "ev_baseline", "ev_flow_lpm", "ev_it_power_kw"} <= {
        col for s in c.series for col in s["columns"]
    }


@expect(ALERTS, "Data quality issues/A")
def _(c: Checked, f: Fleet) -> None:
    assert c.rows() == 3
    assert tag_values(c, "gateway") == {"gw-lyon-1", "gw-nantes-1"}
    assert all(c.column("detail"))


@expect(PIPELINE, "Consumer lag now/A")
def _(c: Checked, f: Fleet) -> None:
    assert single(c, "consumer_lag") == sum(f.last_lag.values())


@expect(PIPELINE, "Dead letters/A")
def _(c: Checked, f: Fleet) -> None:
    assert single(c, "dead_letters") == 28


@expect(PIPELINE, "Late events/A")
def _(c: Checked, f: Fleet) -> None:
    assert single(c, "late_events") == 7


@expect(PIPELINE, "Sink write latency p95/A")
def _(c: Checked, f: Fleet) -> None:
    within(c, "p95", 5, 45)


@expect(PIPELINE, "Consumer lag/A")
def _(c: Checked, f: Fleet) -> None:
    assert tag_values(c, "process") == PROCESSES
    assert tag_values(c, "component") == {"sink", "worker"}
    within(c, "lag", 0, 200)


def by_tag(c: Checked, key: str, column: str) -> dict[str, list[float]]:
    """Values of a column per value of a tag, nulls left out."""
    out: dict[str, list[float]] = defaultdict(list)
    for s in c.series:
        if column in s["columns"]:
            index = s["columns"].index(column)
            values = [float(row[index]) for row in s["values"] if row[index] is not None]
            if values:
                out[s["tags"][key]].extend(values)
    return dict(out)


@expect(PIPELINE, "Throughput/A")
def _(c: Checked, f: Fleet) -> None:
    assert tag_values(c, "process") == PROCESSES
    messages = by_tag(c, "component", "messages")
    # exact, even across sink-1's gap and the restarts (their minute is left out)
    assert {k: set(v) for k, v in messages.items()} == {"sink": {50.0}, "worker": {24.0}}
    assert {k: set(v) for k, v in by_tag(c, "component", "points_written").items()} == {
        "sink": {100.0}
    }


@expect(PIPELINE, "Worker throughput/A")
def _(c: Checked, f: Fleet) -> None:
    assert tag_values(c, "process") == {"worker-1", "worker-2"}
    assert set(within(c, "readings", 0, 1e6)) == {120 * 240 / 5}


@expect(PIPELINE, "Worker processing latency/A")
def _(c: Checked, f: Fleet) -> None:
    assert tag_values(c, "process") == {"worker-1", "worker-2"}
    means, worst = within(c, "mean", 5, 45), within(c, "max", 5, 90)
    assert max(worst) > max(means)


@expect(PIPELINE, "Dead letters and late events by component/A")
def _(c: Checked, f: Fleet) -> None:
    dead, late = by_tag(c, "component", "dead_letters"), by_tag(c, "component", "late_events")
    assert sum(dead["worker"]) == _health_total(f, "dead_letters", "worker") == 28
    assert sum(dead["sink"]) == 0
    assert sum(late["worker"]) == _health_total(f, "late_events", "worker") == 7
    assert "sink" not in late  # the sink has no late events of its own


@expect(PIPELINE, "Dead letters by reason/A")
def _(c: Checked, f: Fleet) -> None:
    assert tag_values(c, "reason") == {"decode_error", "unauthorised"}
    assert tag_values(c, "stage") == {"intake"}
    assert sum(numbers(c, "dead_letters")) == 28


@expect(PIPELINE, "Late events by reason/A")
def _(c: Checked, f: Fleet) -> None:
    assert tag_values(c, "reason") == {"beyond_allowed_lateness"}
    assert sum(numbers(c, "late_events")) == 7


@expect(PIPELINE, "Sink write latency/A")
def _(c: Checked, f: Fleet) -> None:
    assert tag_values(c, "process") == {"sink-1", "sink-2"}  # the sinks only
    means, worst = within(c, "mean", 5, 45), within(c, "max", 5, 70)
    assert max(worst) > max(means)


def _health_total(f: Fleet, key: str, component: str = "sink") -> int:
    """What a component counted, as the dashboards' differences see it: without the
    first minute of each process's life (nothing before it to difference against)."""
    rows = _in_range(f, f.health)
    return sum(r.get(key, 0) for r in rows if r["component"] == component and not r["first"])


@expect(PIPELINE, "Sink retries and rejected points/A")
def _(c: Checked, f: Fleet) -> None:
    assert sum(numbers(c, "retries")) == _health_total(f, "retries") > 0
    within(c, "rejected_points", 0, 0)
    within(c, "commit_failures", 0, 0)


@expect(PIPELINE, "Points in flight/A")
def _(c: Checked, f: Fleet) -> None:
    within(c, "in_flight", 0, 500)


@expect(PIPELINE, "Late samples, duplicates and skipped messages/A")
def _(c: Checked, f: Fleet) -> None:
    assert sum(numbers(c, "late_samples")) == _health_total(f, "late_samples") > 0
    assert sum(numbers(c, "duplicates")) == _health_total(f, "duplicates") > 0
    within(c, "skipped_messages", 0, 0)


@expect(PIPELINE, "Recent dead letters/A")
def _(c: Checked, f: Fleet) -> None:
    assert tag_values(c, "reason") == {"decode_error", "unauthorised"}
    assert 0 < c.rows() <= 3 * 20
    assert all(c.column("error"))


EXPECTED = {
    boards.FLEET_UID: FLEET,
    boards.BOILER_UID: BOILER,
    boards.ALERTS_UID: ALERTS,
    boards.PIPELINE_UID: PIPELINE,
}


def _key(where: str) -> str:
    # "uid / panel 3 'Title' / A" -> "Title/A"; "uid / annotation 'Name'" -> "annotation 'Name'"
    parts = where.split(" / ")
    if parts[1].startswith("annotation"):
        return parts[1]
    title = parts[1].split(" ", 2)[2].strip("'\"")
    return f"{title}/{parts[2]}"


# -- the tests ----------------------------------------------------------------------------


def test_every_panel_and_annotation_query_returns_plausible_series(
    fleet_db: tuple[InfluxQL, Fleet],
) -> None:
    client, fleet = fleet_db
    time_from, time_to = _range(fleet)
    results = check_dashboards(
        client,
        time_from=time_from,
        time_to=time_to,
        interval="1m",
        variables={boards.BOILER_UID: {"site": "pool-lyon", "boiler": LEAKING}},
    )
    results += [
        Checked("boiler-lyon-02|" + r.where, r.query, r.series, r.error)
        for r in check_dashboards(
            client,
            time_from=time_from,
            time_to=time_to,
            interval="1m",
            variables={boards.BOILER_UID: {"site": "pool-lyon", "boiler": "boiler-lyon-02"}},
        )
        if r.where.startswith(boards.BOILER_UID)
    ]
    errors = [f"{r.where}: {r.error}\n  {r.query}" for r in results if r.error]
    assert not errors, "\n".join(errors)
    checked: set[tuple[str, str]] = set()
    for result in results:
        boiler, _, where = result.where.rpartition("|")
        uid = where.split(" / ")[0]
        key = _key(where)
        expectation = EXPECTED[uid].get(key)
        assert expectation is not None, f"no expectation for {where}: add one to this test"
        if uid == boards.BOILER_UID:
            result = Checked(f"{boiler or LEAKING}|{where}", result.query, result.series)
        expectation(result, fleet)
        checked.add((uid, key))
    missing = {(uid, key) for uid, table in EXPECTED.items() for key in table} - checked
    assert not missing, f"expectations for queries that no longer exist: {missing}"


def test_variables_list_the_fleet(fleet_db: tuple[InfluxQL, Fleet]) -> None:
    client, _ = fleet_db
    prov = load()
    fleet = discover_variables(client, prov.dashboard(boards.FLEET_UID))
    assert fleet == {"site": ["pool-lyon", "res-nantes"]}  # multi-value: "All" is every site
    boiler = discover_variables(client, prov.dashboard(boards.BOILER_UID))
    assert boiler == {"site": "pool-lyon", "boiler": "boiler-lyon-01"}
    nantes = discover_variables(
        client, prov.dashboard(boards.BOILER_UID), given={"site": "res-nantes"}
    )
    assert nantes["boiler"] == "boiler-nantes-01"
    both = client.run(
        queries.expand(
            prov.dashboard(boards.BOILER_UID)["templating"]["list"][1]["query"],
            {"site": ["pool-lyon", "res-nantes"]},
        )
    )
    assert [row[1] for row in both[0]["values"]] == sorted(SITE_OF)
    pipeline = discover_variables(client, prov.dashboard(boards.PIPELINE_UID))
    assert pipeline == {"process": sorted(PROCESSES)}


def test_alert_rules_fire_for_the_faulty_boilers_only(fleet_db: tuple[InfluxQL, Fleet]) -> None:
    client, _ = fleet_db
    results = {r.rule_uid: r for r in check_rules(client)}
    assert set(results) == {
        "heatstream-leak-suspected",
        "heatstream-pump-failure",
        "heatstream-efficiency-drop",
        "heatstream-gateway-silent",
        "heatstream-dead-letter-spike",
    }
    leak = results["heatstream-leak-suspected"]
    assert leak.firing_label("boiler") == {LEAKING}
    # boiler-lyon-02's leak ended: it is evaluated (it has a series) and does not fire;
    # boiler-nantes-01 never leaked: no series, no instance.
    evaluated = {dict(labels)["boiler"] for labels in leak.values}
    assert evaluated == {LEAKING, "boiler-lyon-02"}
    assert all(dict(labels)["boiler"] == LEAKING for labels in leak.firing)

    assert results["heatstream-pump-failure"].firing_label("boiler") == {"boiler-nantes-01"}
    assert results["heatstream-efficiency-drop"].firing_label("boiler") == {"boiler-lyon-02"}
    assert results["heatstream-efficiency-drop"].firing_label("kind") == {"efficiency_drop"}

    silent = results["heatstream-gateway-silent"]
    assert silent.firing_label("site") == {"res-nantes"}
    lyon = next(v for labels, v in silent.values.items() if dict(labels)["site"] == "pool-lyon")
    assert lyon["B"] is not None and lyon["B"] > 5, lyon  # two boilers x 6 readings/min

    spike = results["heatstream-dead-letter-spike"]
    ((labels, values),) = spike.values.items()
    assert values["B"] == 25 and spike.firing == {
        labels
    }  # the 3 older rejections are out of the window


def test_alert_rules_stay_quiet_on_a_healthy_fleet(stack: EmbeddedStack) -> None:
    """The same rules on a database with healthy telemetry only: nothing fires, and the
    detection rules report no data (which their noDataState maps to OK)."""
    database = f"grafana_ok_{uuid.uuid4().hex[:8]}"
    now = int(datetime.now(UTC).timestamp() * 1000) // MINUTE * MINUTE
    lines = [
        line(
            "telemetry",
            {"boiler": b, "site": s},
            {"it_power_kw": IT_KW[b], "samples": 10},
            t * 1_000_000,
        )
        for b, s in SITE_OF.items()
        for t in range(now - 30 * MINUTE, now, 10_000)
    ]
    with httpx.Client(base_url=stack.influx_url, timeout=30) as http:
        http.post("/query", data={"q": f'CREATE DATABASE "{database}"'})
        assert (
            http.post(
                "/write", params={"db": database}, content="\n".join(lines).encode()
            ).status_code
            == 204
        )
        try:
            with InfluxQL(stack.influx_url, database) as client:
                results = {r.rule_uid: r for r in check_rules(client)}
        finally:
            http.post("/query", data={"q": f'DROP DATABASE "{database}"'})
    assert all(not r.firing for r in results.values()), {u: r.firing for u, r in results.items()}
    for uid in (
        "heatstream-leak-suspected",
        "heatstream-pump-failure",
        "heatstream-efficiency-drop",
        "heatstream-dead-letter-spike",
    ):
        assert results[uid].no_data, uid
    assert not results["heatstream-gateway-silent"].no_data


@pytest.mark.slow
def test_cli_check_runs_every_query_on_the_configured_influxdb(
    fleet_db: tuple[InfluxQL, Fleet], stack: EmbeddedStack
) -> None:
    client, _ = fleet_db
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HEATSTREAM_")}
    env = {
        **clean,
        "HEATSTREAM_INFLUXDB__URL": stack.influx_url,
        "HEATSTREAM_INFLUXDB__DATABASE": client.database,
    }
    result = subprocess.run(
        [sys.executable, "-m", "heatstream", "grafana", "check", "--since", "4h"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout
    assert f"FIRING heatstream-leak-suspected: boiler={LEAKING}, site=pool-lyon" in result.stdout
    assert "FIRING heatstream-gateway-silent: site=res-nantes" in result.stdout
