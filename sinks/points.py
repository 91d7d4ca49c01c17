"""Derived events -> InfluxDB points: the measurement schema in code.

Pure and deterministic: the same event always gives the same measurement, tag
set and timestamp, so a redelivery or a replay overwrites instead of adding.
Tags are bounded-cardinality identifiers only (boiler, site, kind, ...); ids,
reasons and details are fields. docs/measurements.md documents the result for
analysts and must be kept in step with this module.
"""

from __future__ import annotations

from pydantic import BaseModel

from heatstream.schemas.deadletter import DeadLetter
from heatstream.schemas.derived import (
    DataQualityIssue,
    EfficiencyAnomaly,
    HeatWindow,
    LeakSuspected,
)
from heatstream.schemas.health import LAG_FIELD_PREFIX, HealthSample
from heatstream.sinks.health import MEASUREMENT as HEALTH_MEASUREMENT
from heatstream.sinks.lineprotocol import FieldValue, Point

NONE_TAG = "-"  # tag value standing for "not applicable" (InfluxDB refuses empty tag values)
LEAK_EVIDENCE = ("makeup_water", "pressure_decay", "flow_imbalance", "moisture")
_REJECTED_OWN_POINT = (b"dead_letter,", b"late_event,")


def one_line(text: str) -> str:
    """Free text as one line: line breaks become the two characters `\\n`."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")


def heat_window(w: HeatWindow) -> Point:
    fields: dict[str, FieldValue] = {
        "heat_kwh": w.heat_kwh,
        "it_kwh": w.it_kwh,
        "aux_kwh": w.aux_kwh,
        "total_kwh": w.total_kwh,
        "coverage": w.coverage,
        "co2_avoided_kg": w.co2_avoided_kg,
        "samples": w.samples,
        "quarantined": w.quarantined,
        "throttled": w.throttled,
    }
    optional = {
        "erf": w.erf,
        "supply_temp_c": w.supply_temp_mean_c,
        "return_temp_c": w.return_temp_mean_c,
        "flow_lpm": w.flow_mean_lpm,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    for workload, kwh in sorted(w.heat_by_workload_kwh.items()):
        fields[f"heat_kwh_{workload}"] = kwh
    tags = {"boiler": w.boiler, "site": w.site, "resolution": w.resolution}
    return Point.at_ms("heat_window", tags, fields, w.window_start_ms)


def anomaly(a: EfficiencyAnomaly) -> Point:
    fields: dict[str, FieldValue] = {
        "active": 1 if a.phase == "start" else 0,
        "start_ms": a.start_ms,
        "reason": one_line(a.reason),
    }
    if a.end_ms is not None:
        fields["end_ms"] = a.end_ms
    for name, value in sorted(a.evidence.items()):
        fields[f"ev_{name}"] = float(value)
    tags = {
        "boiler": a.boiler,
        "site": a.site,
        "kind": a.kind,
        "severity": a.severity,
        "phase": a.phase,
    }
    at = a.start_ms if a.phase == "start" or a.end_ms is None else a.end_ms
    return Point.at_ms("anomaly", tags, fields, at)


def leak(leak: LeakSuspected) -> Point:
    fields: dict[str, FieldValue] = {
        "active": 1 if leak.phase == "start" else 0,
        "confidence": leak.confidence,
        "leak_rate_lpm": leak.leak_rate_lpm,
        "start_ms": leak.start_ms,
        "detected_ms": leak.detected_ms,
        "evidence": ",".join(leak.evidence),
        "reason": one_line(leak.reason),
    }
    if leak.end_ms is not None:
        fields["end_ms"] = leak.end_ms
    for name in LEAK_EVIDENCE:
        fields[f"ev_{name}"] = int(name in leak.evidence)
    tags = {
        "boiler": leak.boiler,
        "site": leak.site,
        "phase": leak.phase,
        "severity": leak.severity,
    }
    at = leak.detected_ms if leak.phase == "start" or leak.end_ms is None else leak.end_ms
    return Point.at_ms("leak", tags, fields, at)


def data_quality(issue: DataQualityIssue) -> Point:
    fields: dict[str, FieldValue] = {
        "count": issue.count,
        "start_ms": issue.start_ms,
        "detail": one_line(issue.detail),
    }
    if issue.end_ms is not None:
        fields["end_ms"] = issue.end_ms
    tags = {
        "site": issue.site,
        "gateway": issue.gateway,
        "boiler": issue.boiler or NONE_TAG,
        "kind": issue.kind,
        "channel": issue.channel or NONE_TAG,
    }
    return Point.at_ms("data_quality", tags, fields, issue.start_ms)


def dead_letter_time_ns(record: DeadLetter) -> int:
    """Rejection time, plus a sub-millisecond offset from the record's source position.

    Two rejections in one millisecond must stay two points, and a redelivered
    record must land on the same point: the source offset and partition are
    both deterministic, so they pick the nanoseconds.
    """
    extra = (record.source_offset % 1000) * 1000 + (record.source_partition + 1) % 1000
    return record.rejected_at_ms * 1_000_000 + extra


def dead_letter(record: DeadLetter) -> Point | None:
    """`late_event` for reason late_event, `dead_letter` otherwise.

    A record about one of these very points rejected by InfluxDB gets no point:
    it would most likely be rejected again, and each rejection would produce a
    new record (it stays in the dead-letter topic).
    """
    if record.reason == "influx_rejected" and record.original.startswith(_REJECTED_OWN_POINT):
        return None
    measurement = "late_event" if record.reason == "late_event" else "dead_letter"
    tags = {
        "reason": record.reason,
        "stage": record.stage,
        "source_topic": record.source_topic or NONE_TAG,
    }
    fields: dict[str, FieldValue] = {
        "count": 1,
        "source_partition": record.source_partition,
        "source_offset": record.source_offset,
        "error": one_line(record.error),
    }
    return Point(measurement, tags, fields, dead_letter_time_ns(record))


def health(sample: HealthSample) -> Point:
    """A process's health sample as a `pipeline_health` point, like the sink's own
    (sinks/health.py): counters as integers, latencies as floats, the lag summed over
    partitions and per partition, all at the sample's wall-clock time."""
    fields: dict[str, FieldValue] = dict(sample.counters)
    fields.update(sample.latencies_ms)
    if sample.consumer_lag:
        fields["consumer_lag"] = sum(sample.consumer_lag.values())
        for partition, lag in sorted(sample.consumer_lag.items()):
            fields[f"{LAG_FIELD_PREFIX}{partition}"] = lag
    fields["interval_s"] = float(sample.interval_s)
    fields["started_ms"] = sample.started_ms
    tags = {"component": sample.component, "process": sample.process}
    return Point.at_ms(HEALTH_MEASUREMENT, tags, fields, sample.time_ms)


def points_of(event: BaseModel) -> list[Point]:
    """The points of one decoded derived event, dead-letter record or health sample."""
    if isinstance(event, HeatWindow):
        return [heat_window(event)]
    if isinstance(event, EfficiencyAnomaly):
        return [anomaly(event)]
    if isinstance(event, LeakSuspected):
        return [leak(event)]
    if isinstance(event, DataQualityIssue):
        return [data_quality(event)]
    if isinstance(event, DeadLetter):
        point = dead_letter(event)
        return [] if point is None else [point]
    if isinstance(event, HealthSample):
        return [health(event)]
    raise TypeError(f"no measurement for {type(event).__name__}")
