"""Raw telemetry into the sink: frames decoded, downsampled per partition, rebuilt after moves.

The consumer hands it the raw topic's messages; it keeps one `Downsampler` per
assigned partition, says how far that partition may be committed (not past the
first message of a bucket still open), and after a (re)assignment re-reads some
messages before the committed offset in shadow mode (see downsample.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

from heatstream.inventory import Inventory
from heatstream.schemas.errors import EventError
from heatstream.schemas.serde import decode_raw
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.sinks.deadletters import Origin
from heatstream.sinks.downsample import DownsampleParams, Downsampler
from heatstream.sinks.health import SinkCounters
from heatstream.sinks.lineprotocol import Point


class RawLanding:
    def __init__(
        self,
        params: DownsampleParams,
        warmup_messages: int,
        counters: SinkCounters,
        inventory: Inventory | None = None,
    ) -> None:
        self.params = params
        self.warmup_messages = warmup_messages
        self.counters = counters
        self.inventory = inventory
        self._samplers: dict[int, Downsampler] = {}
        self._shadow_until: dict[int, int] = {}

    def assigned(self, partition: int, committed: int | None, log_start: int) -> int | None:
        """Fresh state for a partition; the offset to seek to for the warm-up, if any."""
        self._samplers[partition] = Downsampler(self.params)
        self._shadow_until.pop(partition, None)
        if not committed or not self.warmup_messages:
            return None
        start = max(log_start, committed - self.warmup_messages)
        if start >= committed:
            return None
        self._shadow_until[partition] = committed
        return start

    def revoked(self, partition: int) -> None:
        self._samplers.pop(partition, None)
        self._shadow_until.pop(partition, None)

    def take(
        self, tp: TopicPartition, messages: list[Any], add: Callable[[Point, Origin], None]
    ) -> int | None:
        """Fold messages in, `add` the points of closed buckets; the next position, if it moved."""
        sampler = self._samplers.setdefault(tp.partition, Downsampler(self.params))
        shadow_until = self._shadow_until.get(tp.partition, -1)
        late, duplicates = sampler.counters.late_samples, sampler.counters.duplicate_frames
        position = None
        for m in messages:
            self.counters.messages += 1
            shadow = m.offset < shadow_until
            self.counters.warmup_messages += shadow
            frame = self._frame(m.value)
            if frame is not None:
                for closed in sampler.add(frame, m.offset, shadow=shadow):
                    key = closed.gateway.encode()
                    time_ms = closed.point.time_ns // 1_000_000
                    add(
                        closed.point,
                        Origin(tp.topic, tp.partition, closed.first_offset, key, time_ms),
                    )
            if not shadow:
                position = m.offset + 1
        self.counters.late_samples += sampler.counters.late_samples - late
        self.counters.duplicates += sampler.counters.duplicate_frames - duplicates
        return position

    def committable(self, partition: int, position: int) -> int:
        """How far the partition may be committed when `position` is processed."""
        first_open = self._samplers[partition].open_first_offset()
        return position if first_open is None else min(position, first_open)

    def _frame(self, value: bytes | None) -> TelemetryFrame | None:
        """The telemetry frame in a raw message, or None to skip it.

        Undecodable or unauthorised events are the worker's to dead-letter;
        compute events carry no telemetry.
        """
        try:
            event = decode_raw(value if value is not None else b"")
        except EventError:
            self.counters.skipped_messages += 1
            return None
        if not isinstance(event, TelemetryFrame):
            return None
        inv = self.inventory
        if inv is not None and not inv.owns_all(event.gateway, event.boiler_ids):
            self.counters.skipped_messages += 1
            return None
        return event
