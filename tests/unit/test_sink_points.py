"""Derived events -> points: the documented schema, deterministic and bounded."""

from __future__ import annotations

from heatstream.schemas.deadletter import DeadLetter
from heatstream.schemas.derived import (
    DataQualityIssue,
    EfficiencyAnomaly,
    HeatWindow,
    LeakSuspected,
)
from heatstream.schemas.health import HealthSample
from heatstream.sinks.lineprotocol import Point, encode_point
from heatstream.sinks.points import points_of

T = 1_768_435_200_000


def window(**over: object) -> HeatWindow:
    data: dict[str, object] = dict(
        boiler="b1",
        site="s1",
        resolution="1m",
        window_start_ms=T,
        window_end_ms=T + 60_000,
        heat_kwh=1.25,
        it_kwh=1.5,
        aux_kwh=0.1,
        total_kwh=1.6,
        erf=0.78125,
        supply_temp_mean_c=65.0,
        return_temp_mean_c=45.0,
        flow_mean_lpm=None,
        coverage=1.0,
        co2_avoided_kg=0.3,
        samples=60,
        heat_by_workload_kwh={"render": 1.0, "ai_training": 0.25},
    )
    data.update(over)
    return HeatWindow.model_validate(data)


def only(event: object) -> Point:
    (point,) = points_of(event)
    return point


def test_heat_window() -> None:
    p = only(window())
    assert p.measurement == "heat_window"
    assert dict(p.tags) == {"boiler": "b1", "site": "s1", "resolution": "1m"}
    assert p.time_ns == T * 1_000_000
    assert p.fields["heat_kwh"] == 1.25 and p.fields["erf"] == 0.78125
    assert p.fields["supply_temp_c"] == 65.0 and "flow_lpm" not in p.fields
    assert p.fields["samples"] == 60 and p.fields["throttled"] is False
    assert p.fields["heat_kwh_render"] == 1.0 and p.fields["heat_kwh_ai_training"] == 0.25
    assert "erf" not in only(window(erf=None)).fields


def test_same_event_same_line() -> None:
    assert encode_point(only(window())) == encode_point(only(window()))


def test_anomaly_start_and_end() -> None:
    base = dict(boiler="b1", site="s1", kind="pump_failure", severity="critical", reason="flow\n0")
    start = only(EfficiencyAnomaly(phase="start", start_ms=T, evidence={"flow_lpm": 0.2}, **base))
    end = only(EfficiencyAnomaly(phase="end", start_ms=T, end_ms=T + 5000, evidence={}, **base))
    assert start.measurement == end.measurement == "anomaly"
    assert start.tags["phase"] == "start" and start.fields["active"] == 1
    assert start.time_ns == T * 1_000_000 and start.fields["ev_flow_lpm"] == 0.2
    assert start.fields["reason"] == "flow\\n0"  # one line: no raw newline in line protocol
    assert end.fields["active"] == 0 and end.time_ns == (T + 5000) * 1_000_000
    assert end.fields["end_ms"] == T + 5000


def test_leak() -> None:
    leak = LeakSuspected(
        boiler="b1",
        site="s1",
        start_ms=T - 60_000,
        detected_ms=T,
        evidence=["makeup_water", "moisture"],
        confidence=0.9,
        leak_rate_lpm=0.5,
        reason="make-up water flowing",
    )
    p = only(leak)
    assert p.measurement == "leak" and p.time_ns == T * 1_000_000
    assert dict(p.tags) == {"boiler": "b1", "site": "s1", "phase": "start", "severity": "critical"}
    assert p.fields["evidence"] == "makeup_water,moisture"
    assert (p.fields["ev_makeup_water"], p.fields["ev_pressure_decay"]) == (1, 0)


def test_data_quality_uses_dash_for_absent_tags() -> None:
    issue = DataQualityIssue(
        kind="gateway_silent", gateway="gw1", site="s1", start_ms=T, detail="x"
    )
    p = only(issue)
    assert dict(p.tags) == {
        "site": "s1",
        "gateway": "gw1",
        "boiler": "-",
        "kind": "gateway_silent",
        "channel": "-",
    }


def dl(**over: object) -> DeadLetter:
    data: dict[str, object] = dict(
        source_topic="heatstream.raw.events",
        source_partition=3,
        source_offset=123_456,
        original=b"{",
        reason="decode_error",
        error="not valid JSON",
        rejected_at_ms=T,
    )
    data.update(over)
    return DeadLetter.model_validate(data)


def test_dead_letters_and_late_events() -> None:
    p = only(dl())
    assert p.measurement == "dead_letter"
    assert dict(p.tags) == {
        "reason": "decode_error",
        "stage": "intake",
        "source_topic": "heatstream.raw.events",
    }
    assert p.fields["count"] == 1 and p.fields["source_offset"] == 123_456
    # Two rejections in one millisecond stay two points; a redelivery is the same point.
    assert p.time_ns == T * 1_000_000 + 456_000 + 4
    assert only(dl(source_offset=123_457)).time_ns != p.time_ns
    assert only(dl()).time_ns == p.time_ns
    assert only(dl(reason="late_event", stage="windows")).measurement == "late_event"


def test_a_refused_dead_letter_point_is_not_written_again() -> None:
    looping = dl(
        reason="influx_rejected", stage="sink", original=b"dead_letter,reason=x count=1i 0"
    )
    assert points_of(looping) == []
    refused_window = dl(reason="influx_rejected", stage="sink", original=b"heat_window,b=1 x=1 0")
    assert only(refused_window).measurement == "dead_letter"


def test_a_worker_health_sample_is_a_pipeline_health_point() -> None:
    sample = HealthSample(
        component="worker",
        process="worker-1",
        started_ms=T - 60_000,
        time_ms=T,
        interval_s=5.0,
        counters={"messages": 40, "readings": 9_600, "dead_letters": 1, "late_events": 2},
        latencies_ms={"processing_latency_ms": 12.5, "processing_latency_max_ms": 31.0},
        consumer_lag={3: 7, 0: 0},
    )
    p = only(sample)
    assert p.measurement == "pipeline_health" and p.time_ns == T * 1_000_000
    assert dict(p.tags) == {"component": "worker", "process": "worker-1"}
    assert dict(p.fields) == {
        "messages": 40,
        "readings": 9_600,
        "dead_letters": 1,
        "late_events": 2,
        "processing_latency_ms": 12.5,
        "processing_latency_max_ms": 31.0,
        "consumer_lag": 7,
        "consumer_lag_p0": 0,
        "consumer_lag_p3": 7,
        "interval_s": 5.0,
        "started_ms": T - 60_000,
    }
    # Field types the sink's own points use for the same names (InfluxDB refuses a
    # field whose type changes): counters and lag integers, durations floats.
    assert all(type(p.fields[k]) is int for k in ("messages", "consumer_lag", "started_ms"))
    assert type(p.fields["interval_s"]) is float
    assert encode_point(p) == encode_point(only(sample))  # a redelivery overwrites itself
    quiet = only(sample.model_copy(update={"latencies_ms": {}, "consumer_lag": {}}))
    assert "processing_latency_ms" not in quiet.fields and "consumer_lag" not in quiet.fields
