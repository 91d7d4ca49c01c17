"""Batches bounded by size and time, carrying what is needed after the write.

A batch holds the encoded lines, for each line the Kafka message it came from
(to dead-letter it if InfluxDB refuses it), the dead letters decided before the
write, and the offsets that may be committed once InfluxDB acknowledged it.
Lines are encoded when the batch is sealed, with millisecond precision unless a
point needs nanoseconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from heatstream.schemas.deadletter import DeadLetter
from heatstream.sinks.deadletters import Origin, unencodable
from heatstream.sinks.lineprotocol import (
    LineProtocolError,
    Point,
    Precision,
    encode_point,
    precision_for,
)

TopicPartition = tuple[str, int]


@dataclass(slots=True)
class Batch:
    seq: int
    points: int  # points it accounts for in the in-flight budget
    lines: list[bytes]
    origins: list[Origin | None]
    precision: Precision
    offsets: dict[TopicPartition, int]
    dead_letters: list[DeadLetter] = field(default_factory=list)
    skipped_points: int = 0  # no finite field: nothing to write
    # Every point is written once ever (a closed telemetry bucket), so this batch
    # may be written alongside others: no write of it can overtake another write
    # of the same point with other values (a rollup's day point is rewritten as
    # the day goes on; such batches are written alone, in order).
    write_once: bool = False


class Batcher:
    """Collects points until `batch_size` or `flush_interval_s` after the first one."""

    def __init__(
        self, batch_size: int, flush_interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._clock = clock
        self._points: list[Point] = []
        self._origins: list[Origin | None] = []
        self._dead_letters: list[DeadLetter] = []
        self._rewritable = 0  # points collected without write_once
        self._opened_at: float | None = None
        self._seq = 0

    @property
    def pending(self) -> int:
        return len(self._points)

    @property
    def opened(self) -> bool:
        """Whether something was collected (points, dead letters or offsets to commit)."""
        return self._opened_at is not None

    def _open(self) -> None:
        if self._opened_at is None:
            self._opened_at = self._clock()

    def add(self, point: Point, origin: Origin | None, *, write_once: bool = False) -> None:
        """Collect a point; `write_once`: no other write of it ever carries other values."""
        self._open()
        self._points.append(point)
        self._origins.append(origin)
        self._rewritable += not write_once

    def add_dead_letter(self, record: DeadLetter) -> None:
        self._open()
        self._dead_letters.append(record)

    def touch(self) -> None:
        """Something will need committing: make sure a batch is sealed in time."""
        self._open()

    def full(self) -> bool:
        return len(self._points) >= self.batch_size

    def seconds_left(self) -> float | None:
        """Until the open batch is due (0 when due); None when nothing is open."""
        if self._opened_at is None:
            return None
        return max(0.0, self._opened_at + self.flush_interval_s - self._clock())

    def due(self) -> bool:
        left = self.seconds_left()
        return self.full() or left == 0.0

    def seal(self, offsets: dict[TopicPartition, int], now_ms: Callable[[], int]) -> Batch:
        """Encode what was collected into a batch and start a new one."""
        points, origins = self._points, self._origins
        precision = precision_for(points)
        lines: list[bytes] = []
        line_origins: list[Origin | None] = []
        dead_letters = self._dead_letters
        skipped = 0
        for point, origin in zip(points, origins, strict=True):
            try:
                line = encode_point(point, precision)
            except LineProtocolError as exc:
                dead_letters.append(unencodable(point, origin, str(exc), now_ms()))
                continue
            if line is None:
                skipped += 1
                continue
            lines.append(line)
            line_origins.append(origin)
        self._seq += 1
        batch = Batch(
            seq=self._seq,
            points=len(points),
            lines=lines,
            origins=line_origins,
            precision=precision,
            offsets=offsets,
            dead_letters=dead_letters,
            skipped_points=skipped,
            write_once=self._rewritable == 0,
        )
        self._points, self._origins, self._dead_letters = [], [], []
        self._rewritable = 0
        self._opened_at = None
        return batch
