"""The sink's pipeline_health points: cumulative counters, per-interval latency."""

from __future__ import annotations

from heatstream.sinks.health import HealthReporter, SinkCounters


def test_counters_are_cumulative_and_latency_is_per_interval() -> None:
    counters = SinkCounters()
    health = HealthReporter(counters, "host-1")
    counters.points_written += 10
    counters.wrote(100.0)
    counters.wrote(300.0)
    first = health.point(consumer_lag=5, in_flight_points=7, paused=False, now_ns=1_000_000_123)
    counters.points_written += 4
    counters.wrote(50.0)
    second = health.point(consumer_lag=0, in_flight_points=0, paused=True)
    third = health.point(consumer_lag=0, in_flight_points=0, paused=True)

    assert first.measurement == "pipeline_health"
    assert dict(first.tags) == {"process": "host-1", "component": "sink"}
    assert first.time_ns == 1_000_000_000  # whole milliseconds
    assert first.fields["points_written"] == 10 and second.fields["points_written"] == 14
    assert (
        first.fields["write_latency_ms"] == 200.0 and first.fields["write_latency_max_ms"] == 300.0
    )
    assert (
        second.fields["write_latency_ms"] == 50.0 and second.fields["write_latency_max_ms"] == 50.0
    )
    assert "write_latency_ms" not in third.fields  # no write in that interval
    assert (first.fields["consumer_lag"], first.fields["paused"]) == (5, False)
