"""The sink's own `pipeline_health` points: what it wrote, how fast, how far behind.

Counts are cumulative since the process started, like Prometheus counters: a
lost health point loses nothing, and `non_negative_difference(max(...))` or
`non_negative_derivative(max(...), 1s)` turn them into per-interval counts or
rates (a restart resets them, which those functions skip). Write latency is the
mean and maximum over the interval since the previous point; gauges (lag,
in-flight points, paused) are the value at the time of the point. Timestamps
are the wall clock: health is about the process, not part of the replayable
projection.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from heatstream.sinks.lineprotocol import FieldValue, Point

MEASUREMENT = "pipeline_health"


@dataclass(slots=True)
class SinkCounters:
    """Monotonic counters since the process started."""

    messages: int = 0
    points_written: int = 0
    batches: int = 0
    retries: int = 0
    rejected_points: int = 0
    dead_letters: int = 0
    decode_errors: int = 0
    skipped_messages: int = 0
    skipped_points: int = 0
    late_samples: int = 0
    duplicates: int = 0
    commit_failures: int = 0
    warmup_messages: int = 0  # raw messages re-read before a committed offset (see downsample.py)
    write_latency_ms_total: float = 0.0
    write_latency_ms_max: float = 0.0
    writes: int = 0

    def wrote(self, latency_ms: float) -> None:
        self.writes += 1
        self.write_latency_ms_total += latency_ms
        self.write_latency_ms_max = max(self.write_latency_ms_max, latency_ms)


_COUNTS = (
    "messages",
    "points_written",
    "batches",
    "retries",
    "rejected_points",
    "dead_letters",
    "decode_errors",
    "skipped_messages",
    "skipped_points",
    "late_samples",
    "duplicates",
    "commit_failures",
    "warmup_messages",
)


class HealthReporter:
    def __init__(self, counters: SinkCounters, process: str) -> None:
        self._counters = counters
        self._process = process
        self._last = dataclasses.replace(counters)
        self._last_at = time.monotonic()

    def point(
        self, *, consumer_lag: int, in_flight_points: int, paused: bool, now_ns: int | None = None
    ) -> Point:
        """The health point: counters now, latency over the interval since the previous call."""
        now = time.monotonic()
        c, last = self._counters, self._last
        fields: dict[str, FieldValue] = {name: getattr(c, name) for name in _COUNTS}
        writes = c.writes - last.writes
        if writes:
            fields["write_latency_ms"] = (
                c.write_latency_ms_total - last.write_latency_ms_total
            ) / writes
            fields["write_latency_max_ms"] = c.write_latency_ms_max
        fields["consumer_lag"] = consumer_lag
        fields["in_flight_points"] = in_flight_points
        fields["paused"] = paused
        fields["interval_s"] = round(now - self._last_at, 3)
        c.write_latency_ms_max = 0.0
        self._last = dataclasses.replace(c)
        self._last_at = now
        at_ns = time.time_ns() if now_ns is None else now_ns
        tags = {"process": self._process, "component": "sink"}
        return Point(MEASUREMENT, tags, fields, at_ns - at_ns % 1_000_000)
