"""The worker's own health sample: what it processed since it started, how far behind it is.

Pure (no Faust, no clock of its own): the worker's health timer (streams/app.py)
hands `WorkerHealth.sample` the `Counters` of its partitions' processors, the
consumer lag it read from Faust and the wall-clock and monotonic times; a Faust
sensor (streams/probes.py) feeds `WorkerHealth.latency`. The sample goes to the
health topic, and the sink lands it as a `pipeline_health` point with
component `worker` (docs/measurements.md).

Counters are cumulative since the process started, like the sink's
(sinks/health.py): the sum over every processor this process ran, including
those of partitions since revoked (their `Counters` objects are kept, so a
rebalance never makes a counter go down). A partition that comes back re-reads
from its committed offset, and those messages count again: the counters are the
work this process did, not a count of distinct messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from heatstream.schemas.health import HealthSample
from heatstream.streams.processor import Counters

#: The `Counters` fields a sample carries, under the same names; docs/measurements.md
#: documents each. (The per-reason breakdown of dead letters is not here: the
#: `dead_letter` measurement has it, by reason and stage.)
COUNTERS: tuple[str, ...] = (
    "messages",
    "frames",
    "compute_events",
    "readings",
    "duplicates",
    "dead_letters",
    "late_events",
    "late_samples",
    "quarantined",
    "windows",
    "anomalies",
    "leaks",
    "dq_issues",
)


def total_counts(counters: Iterable[Counters]) -> dict[str, int]:
    """The counters of several processors, summed field by field."""
    out = dict.fromkeys(COUNTERS, 0)
    for c in counters:
        for name in COUNTERS:
            out[name] += getattr(c, name)
    return out


def partition_lag(
    end_offsets: Mapping[int, int | None], committed: Mapping[int, int | None]
) -> dict[int, int]:
    """Messages behind, per partition: end offset minus committed offset.

    Both are "next offset" positions, so a consumer that has committed everything
    is 0 behind. A partition with either offset unknown is left out (unknown is not
    zero). Never negative: some brokers answer an end offset short of the real end
    (the embedded Tansu reports the last batch's base offset, i.e. short by that
    batch's size), so a consumer that is done can look ahead of the end; on such a
    broker the lag is under-reported by at most one batch per partition.
    """
    out: dict[int, int] = {}
    for partition, end in end_offsets.items():
        position = committed.get(partition)
        if end is not None and position is not None:
            out[partition] = max(0, end - position)
    return out


@dataclass(slots=True)
class Latency:
    """Mean and maximum of durations observed since the last `take`."""

    count: int = 0
    total_s: float = 0.0
    max_s: float = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total_s += seconds
        if seconds > self.max_s:
            self.max_s = seconds

    def take(self, name: str) -> dict[str, float]:
        """`{name}_ms` (mean) and `{name}_max_ms`, then start over; empty when nothing was
        observed (no value rather than a made-up zero)."""
        if not self.count:
            return {}
        out = {
            f"{name}_ms": round(self.total_s / self.count * 1000, 3),
            f"{name}_max_ms": round(self.max_s * 1000, 3),
        }
        self.count, self.total_s, self.max_s = 0, 0.0, 0.0
        return out


class WorkerHealth:
    """One worker process's health accounting, sampled by its timer."""

    def __init__(self, process: str, *, started_ms: int, started_s: float) -> None:
        """`started_ms`: wall clock at start (the sample's reference for analysts);
        `started_s`: a monotonic clock at start (for the intervals)."""
        self.process = process
        self.started_ms = started_ms
        self.latency = Latency()
        self._last_s = started_s
        # Every processor's counters ever seen, by identity: kept after the
        # partition is revoked, so its counts stay in the totals.
        self._seen: dict[int, Counters] = {}

    def sample(
        self,
        processors: Iterable[Counters],
        lag: Mapping[int, int],
        *,
        time_ms: int,
        now_s: float,
    ) -> HealthSample:
        """The sample at wall-clock `time_ms` (monotonic `now_s`)."""
        for counters in processors:
            self._seen.setdefault(id(counters), counters)
        interval_s = round(max(0.0, now_s - self._last_s), 3)
        self._last_s = now_s
        return HealthSample(
            component="worker",
            process=self.process,
            started_ms=self.started_ms,
            time_ms=time_ms,
            interval_s=interval_s,
            counters=total_counts(self._seen.values()),
            latencies_ms=self.latency.take("processing_latency"),
            consumer_lag=dict(lag),
        )
