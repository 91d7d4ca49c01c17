"""Raw telemetry frames -> `telemetry` points: per-boiler means over event-time buckets.

Full resolution stays in Kafka; InfluxDB gets one point per boiler per bucket
(10 s by default) at the bucket start, holding the mean of every channel over
the samples in it, how many samples that was, and how many readings were left
out for being outside their channel's physical range (the worker quarantines
those; they would wreck a mean).

One `Downsampler` per raw partition; it depends only on the order of messages
in that partition, like the worker's windows:

* Buckets are aligned to multiples of the bucket length since the epoch.
* Each gateway has a watermark (the highest event time it sent). A bucket is
  closed, and its point emitted once, when its gateway's watermark passed its
  end plus the lateness. Samples for a closed bucket are late: counted, not
  folded in (rewriting the bucket would replace its mean by that of the late
  samples alone). Per gateway, so one gateway's backlog never makes another's
  data late.
* A silent gateway would keep its buckets open forever (and, see below, hold
  the partition's committed offset back): once the partition's event time is
  `idle` ahead of it, its open buckets are closed.
* A frame seen twice (same gateway and seq, e.g. a gateway retry) counts once.

Restarts. The consumer commits a raw partition only up to the first message
that fed a still-open bucket (`open_first_offset`), so after a restart or a
rebalance every open bucket is rebuilt from all its samples. Buckets that
were already closed may also have samples after that offset; to avoid
rewriting them with a partial mean, the consumer re-reads some messages before
the committed offset in *shadow* mode: every bucket they touch is known to be
closed already (it had a sample before the committed offset) and is never
emitted again. That is exact as long as the shadow read covers the bucket in
progress of every gateway (see SinkOptions.warmup_messages); beyond it, a
bucket may be rewritten with the mean of fewer samples than it had.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from heatstream.schemas.telemetry import CHANNELS, TelemetryFrame
from heatstream.sinks.lineprotocol import FieldValue, Point

MEASUREMENT = "telemetry"
_FAR_PAST = -(2**62)
_N = len(CHANNELS)
_INDEX = {c.name: i for i, c in enumerate(CHANNELS)}
_LOW = np.array([c.low for c in CHANNELS])
_HIGH = np.array([c.high for c in CHANNELS])


@dataclass(frozen=True, slots=True)
class DownsampleParams:
    bucket_ms: int
    lateness_ms: int
    idle_ms: int

    def floor(self, t_ms: int) -> int:
        return t_ms - t_ms % self.bucket_ms


class Flushed(NamedTuple):
    """A closed bucket's point and the offset of the first message that fed it."""

    point: Point
    gateway: str
    first_offset: int


@dataclass(slots=True)
class _Bucket:
    site: str
    first_offset: int
    tainted: bool
    samples: int = 0
    quarantined: int = 0
    sums: np.ndarray = field(default_factory=lambda: np.zeros(_N))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(_N, dtype=np.int64))


@dataclass(slots=True)
class _Gateway:
    watermark: int = _FAR_PAST
    closed_before: int = _FAR_PAST  # buckets starting before this are closed
    open: dict[tuple[str, int], _Bucket] = field(default_factory=dict)
    seen: dict[int, int] = field(default_factory=dict)  # seq -> last bucket start it touched


@dataclass(slots=True)
class DownsampleCounters:
    frames: int = 0
    duplicate_frames: int = 0
    late_samples: int = 0
    quarantined_readings: int = 0
    buckets_closed: int = 0


class Downsampler:
    """Bucket accumulators of one raw partition."""

    def __init__(self, params: DownsampleParams) -> None:
        self.params = params
        self.counters = DownsampleCounters()
        self._gateways: dict[str, _Gateway] = {}
        self._partition_watermark = _FAR_PAST
        self._idle_checked_at = _FAR_PAST

    def add(self, frame: TelemetryFrame, offset: int, *, shadow: bool = False) -> list[Flushed]:
        """Fold one frame in; return the buckets this closed (shadow: never emitted)."""
        gw = self._gateways.setdefault(frame.gateway, _Gateway())
        if frame.seq in gw.seen:
            self.counters.duplicate_frames += 1
            return []
        self.counters.frames += 1
        t = frame.t_ms
        starts = t - t % self.params.bucket_ms
        gw.seen[frame.seq] = int(starts.max())
        accepted = starts >= gw.closed_before
        self.counters.late_samples += int(t.size - accepted.sum())
        if accepted.any():
            self._fold(gw, frame, starts, accepted, offset, shadow)
        gw.watermark = max(gw.watermark, int(t.max()))
        self._partition_watermark = max(self._partition_watermark, gw.watermark)
        flushed = self._close(
            frame.gateway, gw, self.params.floor(gw.watermark - self.params.lateness_ms)
        )
        flushed.extend(self._close_idle())
        return flushed

    def open_first_offset(self) -> int | None:
        """The first offset that fed a bucket still to be emitted (None: there is none)."""
        offsets = [
            b.first_offset
            for gw in self._gateways.values()
            for b in gw.open.values()
            if not b.tainted
        ]
        return min(offsets, default=None)

    def open_buckets(self) -> int:
        return sum(len(gw.open) for gw in self._gateways.values())

    # -- internals ---------------------------------------------------------

    def _fold(
        self,
        gw: _Gateway,
        frame: TelemetryFrame,
        starts: np.ndarray,
        accepted: np.ndarray,
        offset: int,
        shadow: bool,
    ) -> None:
        boiler_idx = np.asarray(frame.boiler_idx, dtype=np.int64)[accepted]
        starts = starts[accepted]
        slot = (starts - starts.min()) // self.params.bucket_ms
        key = boiler_idx * (int(slot.max()) + 1) + slot
        groups, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        n_groups = groups.size
        samples = np.bincount(inverse, minlength=n_groups)
        sums = np.zeros((n_groups, _N))
        counts = np.zeros((n_groups, _N), dtype=np.int64)
        quarantined = np.zeros(n_groups, dtype=np.int64)
        for name, column in frame.columns.items():
            i = _INDEX[name]
            values = column[accepted]
            present = ~np.isnan(values)
            with np.errstate(invalid="ignore"):
                in_range = present & (values >= _LOW[i]) & (values <= _HIGH[i])
            sums[:, i] = np.bincount(
                inverse, weights=np.where(in_range, values, 0.0), minlength=n_groups
            )
            counts[:, i] = np.bincount(inverse, weights=in_range, minlength=n_groups).astype(
                np.int64
            )
            quarantined += np.bincount(
                inverse, weights=present & ~in_range, minlength=n_groups
            ).astype(np.int64)
        self.counters.quarantined_readings += int(quarantined.sum())
        for g in range(n_groups):
            boiler = frame.boilers[int(boiler_idx[first[g]])]
            start = int(starts[first[g]])
            bucket = gw.open.get((boiler, start))
            if bucket is None:
                bucket = gw.open[(boiler, start)] = _Bucket(frame.site, offset, shadow)
            bucket.tainted = bucket.tainted or shadow
            bucket.samples += int(samples[g])
            bucket.quarantined += int(quarantined[g])
            bucket.sums += sums[g]
            bucket.counts += counts[g]

    def _close(self, gateway: str, gw: _Gateway, before: int) -> list[Flushed]:
        if before <= gw.closed_before:
            return []
        gw.closed_before = before
        out: list[Flushed] = []
        for key in sorted(k for k in gw.open if k[1] < before):
            bucket = gw.open.pop(key)
            if not bucket.tainted:
                self.counters.buckets_closed += 1
                out.append(Flushed(_point(key[0], key[1], bucket), gateway, bucket.first_offset))
        gw.seen = {seq: last for seq, last in gw.seen.items() if last >= before}
        return out

    def _close_idle(self) -> list[Flushed]:
        # Checked once per bucket of partition event time: cheap with many gateways.
        now = self.params.floor(self._partition_watermark)
        if now <= self._idle_checked_at:
            return []
        self._idle_checked_at = now
        out: list[Flushed] = []
        for gateway, gw in self._gateways.items():
            if gw.open and self._partition_watermark - gw.watermark >= self.params.idle_ms:
                out.extend(
                    self._close(
                        gateway, gw, self.params.floor(gw.watermark) + self.params.bucket_ms
                    )
                )
        return out


def _point(boiler: str, start_ms: int, bucket: _Bucket) -> Point:
    fields: dict[str, FieldValue] = {}
    for i, channel in enumerate(CHANNELS):
        n = int(bucket.counts[i])
        if n:
            fields[channel.name] = float(bucket.sums[i] / n)
    fields["samples"] = bucket.samples
    fields["quarantined"] = bucket.quarantined
    return Point.at_ms(MEASUREMENT, {"boiler": boiler, "site": bucket.site}, fields, start_ms)
