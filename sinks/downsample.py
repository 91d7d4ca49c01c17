"""Raw telemetry frames -> `telemetry` points: per-boiler means over event-time buckets.

Full resolution stays in Kafka; InfluxDB gets one point per boiler per bucket
(10 s by default) at the bucket start, holding the mean of every channel over
the samples in it, how many samples that was, and how many readings were left
out for being outside their channel's physical range (the worker quarantines
those; they would wreck a mean).

One `Downsampler` per raw partition; it depends only on the order of messages
in that partition, like the worker's windows:

* Buckets are aligned to multiples of the bucket length since the epoch.
* Each gateway has a watermark: the highest event time it sent, or the
  `watermark_ms` its frame declares if that is higher (the gateway's promise
  that nothing measured before it follows). A bucket is closed, and its point
  emitted once, when its gateway's watermark passed its end plus the lateness.
  Without a declared watermark, the bucket a frame completes closes only when
  the gateway's next frame arrives. Samples for a closed bucket are late: counted, not
  folded in (rewriting the bucket would replace its mean by that of the late
  samples alone). Per gateway, so one gateway's backlog never makes another's
  data late.
* A silent gateway would keep its buckets open forever (and, see below, hold
  the partition's committed offset back): once the partition's event time is
  `idle` ahead of it, its open buckets are closed.
* A frame seen twice (same gateway and seq, e.g. a gateway retry) counts once. A
  retry arriving once its buckets are closed (up to `SEEN_MS` later) counts as a
  duplicate too, not as late samples: a frame that declares a watermark closes its
  own buckets, so any retry of it comes after.

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
from itertools import pairwise
from typing import NamedTuple

import numpy as np

from heatstream.schemas.telemetry import CHANNELS, TelemetryFrame, channel_rows
from heatstream.sinks.lineprotocol import FieldValue, Point

MEASUREMENT = "telemetry"
#: How long, in event time after its buckets closed, a frame's seq is remembered so
#: that a retry of it, all of whose samples are then late, counts as a duplicate.
SEEN_MS = 60_000
_FAR_PAST = -(2**62)
_N = len(CHANNELS)
_NAMES = [c.name for c in CHANNELS]
_LOW = np.array([c.low for c in CHANNELS])[:, np.newaxis]
_HIGH = np.array([c.high for c in CHANNELS])[:, np.newaxis]
# Rows of the integer accumulators: one count per channel, then these two.
_SAMPLES, _QUARANTINED = _N, _N + 1


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


class _Chunk(NamedTuple):
    """One frame's accepted samples of one bucket start, summed per boiler."""

    start: int
    boilers: list[str]
    sums: np.ndarray  # (_N, boilers): sum of the in-range readings, from 0.0 in frame order
    ints: np.ndarray  # (_N + 2, boilers): in-range readings per channel, samples, quarantined


class _Block:
    """The open buckets of one gateway that start at the same time, one column each.

    A frame feeds a hundred buckets at once; as columns of a few matrices they
    are folded in and closed with a handful of array operations. A gateway's
    frames usually list the same boilers in the same order, so a frame whose
    boilers are the block's columns is added as a whole (no per-boiler lookup).
    """

    __slots__ = ("boilers", "column", "first_offset", "ints", "sites", "sums", "tainted")

    def __init__(self) -> None:
        self.boilers: list[str] = []
        self.column: dict[str, int] = {}
        self.sites: list[str] = []
        self.sums = np.zeros((_N, 0))
        self.ints = np.zeros((_N + 2, 0), dtype=np.int64)
        self.first_offset = np.zeros(0, dtype=np.int64)
        self.tainted = np.zeros(0, dtype=bool)

    def __len__(self) -> int:
        return len(self.boilers)

    def fold(self, chunk: _Chunk, site: str, offset: int, shadow: bool) -> None:
        boilers = chunk.boilers
        if not self.boilers:
            self._start(boilers, site, offset)
        if boilers != self.boilers:
            cols = self._columns(boilers, site, offset)
            if len(set(cols)) < len(cols):  # a boiler listed twice: its groups in turn
                np.add.at(self.sums.T, cols, chunk.sums.T)
                np.add.at(self.ints.T, cols, chunk.ints.T)
                self.tainted[cols] |= shadow
                return
            index: slice | np.ndarray = np.array(cols, dtype=np.intp)
        else:
            index = slice(0, len(boilers))
        # The reference order of float additions: a frame's sum added to the running sum.
        self.sums[:, index] += chunk.sums
        self.ints[:, index] += chunk.ints
        if shadow:
            self.tainted[index] = True

    def first_offset_to_emit(self) -> int | None:
        n = len(self.boilers)
        offsets = self.first_offset[:n][~self.tainted[:n]]
        return int(offsets.min()) if offsets.size else None

    def _start(self, boilers: list[str], site: str, offset: int) -> None:
        """A new block's columns: the boilers of the first frame, in its order."""
        column = dict(zip(boilers, range(len(boilers)), strict=True))
        if len(column) < len(boilers):
            return  # a boiler listed twice: left to _columns
        n = len(boilers)
        self.boilers, self.column, self.sites = list(boilers), column, [site] * n
        self.sums = np.zeros((_N, n))
        self.ints = np.zeros((_N + 2, n), dtype=np.int64)
        self.first_offset = np.full(n, offset, dtype=np.int64)
        self.tainted = np.zeros(n, dtype=bool)

    def _columns(self, boilers: list[str], site: str, offset: int) -> list[int]:
        """The column of every boiler, new ones added at the end."""
        column = self.column
        found = [column.get(b, -1) for b in boilers]
        if -1 not in found:
            return found
        new = list(dict.fromkeys(b for b, c in zip(boilers, found, strict=True) if c < 0))
        first, end = len(self.boilers), len(self.boilers) + len(new)
        column.update(zip(new, range(first, end), strict=True))
        self.boilers.extend(new)
        self.sites.extend([site] * len(new))
        if end > self.sums.shape[1]:
            self._grow(max(end, 2 * self.sums.shape[1]))
        self.first_offset[first:end] = offset
        return [column[b] for b in boilers]

    def _grow(self, size: int) -> None:
        extra = size - self.sums.shape[1]
        self.sums = np.concatenate([self.sums, np.zeros((_N, extra))], axis=1)
        self.ints = np.concatenate([self.ints, np.zeros((_N + 2, extra), np.int64)], axis=1)
        self.first_offset = np.concatenate([self.first_offset, np.zeros(extra, np.int64)])
        self.tainted = np.concatenate([self.tainted, np.zeros(extra, bool)])


@dataclass(slots=True)
class _Gateway:
    watermark: int = _FAR_PAST  # its latest sample, or its declared watermark if later
    latest: int = _FAR_PAST  # its latest sample
    closed_before: int = _FAR_PAST  # buckets starting before this are closed
    open: dict[int, _Block] = field(default_factory=dict)  # by bucket start
    seen: dict[int, int] = field(default_factory=dict)  # seq -> last bucket start it touched
    # the same, for frames whose buckets are all closed, for SEEN_MS after
    retired: dict[int, int] = field(default_factory=dict)


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
        gw = self._gateways.get(frame.gateway)
        if gw is None:
            gw = self._gateways[frame.gateway] = _Gateway()
        if frame.seq in gw.seen:
            self.counters.duplicate_frames += 1
            return []
        t = frame.t_ms
        floor = self.params.floor
        t_max = int(t.max())
        first, last = floor(int(t.min())), floor(t_max)
        if last < gw.closed_before and frame.seq in gw.retired:
            # Every sample late, and its seq was seen before the buckets closed: a retry.
            self.counters.duplicate_frames += 1
            return []
        self.counters.frames += 1
        gw.seen[frame.seq] = last
        if first >= gw.closed_before:  # the usual case: no sample is late
            accepted = None
        elif last < gw.closed_before:
            accepted = np.zeros(t.size, dtype=bool)
        else:
            accepted = t - t % self.params.bucket_ms >= gw.closed_before
        if accepted is not None:
            self.counters.late_samples += int(t.size - np.count_nonzero(accepted))
        if accepted is None or accepted.any():
            for chunk in self._chunks(frame, accepted, first if first == last else None):
                block = gw.open.get(chunk.start)
                if block is None:
                    block = gw.open[chunk.start] = _Block()
                block.fold(chunk, frame.site, offset, shadow)
        gw.latest = max(gw.latest, t_max)
        promised = frame.watermark_ms  # nothing measured before it follows (v3 frames)
        gw.watermark = max(gw.watermark, gw.latest, _FAR_PAST if promised is None else promised)
        # Measured time only: a gateway's promise says nothing about the others.
        self._partition_watermark = max(self._partition_watermark, gw.latest)
        flushed = self._close(frame.gateway, gw, floor(gw.watermark - self.params.lateness_ms))
        flushed.extend(self._close_idle())
        return flushed

    def open_first_offset(self) -> int | None:
        """The first offset that fed a bucket still to be emitted (None: there is none)."""
        offsets = [
            block.first_offset_to_emit()
            for gw in self._gateways.values()
            for block in gw.open.values()
        ]
        return min((o for o in offsets if o is not None), default=None)

    def open_buckets(self) -> int:
        return sum(len(block) for gw in self._gateways.values() for block in gw.open.values())

    # -- internals ---------------------------------------------------------

    def _chunks(
        self, frame: TelemetryFrame, accepted: np.ndarray | None, start: int | None
    ) -> list[_Chunk]:
        """The frame's accepted samples summed per (bucket start, boiler).

        `start`: the one bucket every sample is in, if known. Within a group,
        samples are summed in frame order from 0.0, exactly as a bincount per
        channel does, so that means do not change by a bit.
        """
        bucket_ms = self.params.bucket_ms
        boiler_idx = np.asarray(frame.boiler_idx, dtype=np.int64)
        t = frame.t_ms
        if list(frame.channels_present) == _NAMES:
            values = frame.matrix
        else:  # an absent channel adds 0.0 to the sums and nothing to the counts
            values = np.full((_N, t.size), np.nan)
            values[channel_rows(frame.channels_present)] = frame.matrix
        if accepted is not None:
            boiler_idx, t, values = boiler_idx[accepted], t[accepted], values[:, accepted]
        n = t.size
        if start is None:
            starts = t - t % bucket_ms
            base = int(starts.min())
            slot = (starts - base) // bucket_ms
            key = slot * len(frame.boilers) + boiler_idx  # groups ordered by bucket, then boiler
        else:
            base, slot, key = start, None, boiler_idx

        with np.errstate(invalid="ignore"):
            in_range = (values >= _LOW) & (values <= _HIGH)
        weights = np.where(in_range, values, 0.0)
        ints = np.empty((_N + 2, n), dtype=np.int64)
        ints[:_N] = in_range
        ints[_SAMPLES] = 1
        ints[_QUARANTINED] = (~np.isnan(values) & ~in_range).sum(axis=0)
        self.counters.quarantined_readings += int(ints[_QUARANTINED].sum())

        sums: np.ndarray
        if n == 1 or bool((key[1:] > key[:-1]).all()):
            # A sample per group, in group order: its sums are 0.0 + its values.
            sums = weights + 0.0
            group_boiler, group_slot = boiler_idx, slot
        else:
            _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
            g = first.size
            bins = (np.arange(_N + 2)[:, np.newaxis] * g + inverse.reshape(-1)).reshape(-1)
            sums = np.bincount(bins[: _N * n], weights=weights.reshape(-1), minlength=_N * g)
            sums = sums.reshape(_N, g)
            totals = np.bincount(bins, weights=ints.reshape(-1), minlength=(_N + 2) * g)
            ints = totals.astype(np.int64).reshape(_N + 2, g)  # small whole numbers: exact
            group_boiler = boiler_idx[first]
            group_slot = None if slot is None else slot[first]

        boilers = frame.boilers
        if group_slot is None:
            # Groups are in boiler order: all of them is the frame's own list.
            if group_boiler.size == len(boilers) and _is_range(group_boiler):
                return [_Chunk(base, boilers, sums, ints)]
            return [_Chunk(base, [boilers[b] for b in group_boiler.tolist()], sums, ints)]
        cuts = (np.flatnonzero(np.diff(group_slot)) + 1).tolist()
        bounds = [0, *cuts, group_slot.size]
        names = [boilers[b] for b in group_boiler.tolist()]
        slots = group_slot.tolist()
        return [
            _Chunk(base + slots[a] * bucket_ms, names[a:b], sums[:, a:b], ints[:, a:b])
            for a, b in pairwise(bounds)
        ]

    def _close(self, gateway: str, gw: _Gateway, before: int) -> list[Flushed]:
        if before <= gw.closed_before:
            return []
        gw.closed_before = before
        starts = sorted(s for s in gw.open if s < before)
        out = self._points(gateway, [(s, gw.open.pop(s)) for s in starts]) if starts else []
        self.counters.buckets_closed += len(out)
        seen: dict[int, int] = {}
        for seq, last in gw.seen.items():
            if last >= before:
                seen[seq] = last
            else:
                gw.retired[seq] = last
        gw.seen = seen
        keep = before - SEEN_MS
        gw.retired = {seq: last for seq, last in gw.retired.items() if last >= keep}
        return out

    def _close_idle(self) -> list[Flushed]:
        # Checked once per bucket of partition event time: cheap with many gateways.
        now = self.params.floor(self._partition_watermark)
        if now <= self._idle_checked_at:
            return []
        self._idle_checked_at = now
        out: list[Flushed] = []
        for gateway, gw in self._gateways.items():
            if gw.open and self._partition_watermark - gw.latest >= self.params.idle_ms:
                # Up to its latest sample's bucket: a watermark on a bucket boundary
                # promised nothing about the bucket that starts there.
                out.extend(
                    self._close(gateway, gw, self.params.floor(gw.latest) + self.params.bucket_ms)
                )
        return out

    @staticmethod
    def _points(gateway: str, blocks: list[tuple[int, _Block]]) -> list[Flushed]:
        """The points of closed buckets but tainted ones, by boiler then start."""
        if len(blocks) == 1:
            start, block = blocks[0]
            n = len(block)
            boilers, sites, starts = block.boilers, block.sites, [start] * n
            sums, ints = block.sums[:, :n], block.ints[:, :n]
            first_offset, tainted = block.first_offset[:n], block.tainted[:n]
            order = sorted(range(n), key=boilers.__getitem__)
        else:
            boilers = [b for _, block in blocks for b in block.boilers]
            sites = [s for _, block in blocks for s in block.sites]
            starts = [start for start, block in blocks for _ in block.boilers]
            sums = np.concatenate([block.sums[:, : len(block)] for _, block in blocks], axis=1)
            ints = np.concatenate([block.ints[:, : len(block)] for _, block in blocks], axis=1)
            first_offset = np.concatenate([b.first_offset[: len(b)] for _, b in blocks])
            tainted = np.concatenate([block.tainted[: len(block)] for _, block in blocks])
            order = sorted(range(len(boilers)), key=lambda i: (boilers[i], starts[i]))
        emit = np.array(order, dtype=np.intp)
        if tainted.any():
            emit = emit[~tainted[emit]]
            order = emit.tolist()
        if not order:
            return []
        counts = ints[:_N, emit]
        with np.errstate(divide="ignore", invalid="ignore"):
            means = (sums[:, emit] / counts).T.tolist()  # float64, as sum[i] / n
        has = counts > 0
        complete = bool(has.all())
        has_rows = None if complete else has.T.tolist()
        samples = ints[_SAMPLES, emit].tolist()
        quarantined = ints[_QUARANTINED, emit].tolist()
        offsets = first_offset[emit].tolist()
        out: list[Flushed] = []
        append = out.append
        for j, i in enumerate(order):
            fields: dict[str, FieldValue]
            if has_rows is None:
                fields = dict(zip(_NAMES, means[j], strict=False))  # both _N long
            else:
                row = zip(_NAMES, means[j], has_rows[j], strict=True)
                fields = {name: mean for name, mean, ok in row if ok}
            fields["samples"] = samples[j]
            fields["quarantined"] = quarantined[j]
            tags = {"boiler": boilers[i], "site": sites[i]}
            append(Flushed(Point.at_ms(MEASUREMENT, tags, fields, starts[i]), gateway, offsets[j]))
        return out


def _is_range(ascending: np.ndarray) -> bool:
    """Whether strictly ascending integers are 0, 1, ..., size - 1."""
    return bool(ascending[0] == 0 and ascending[-1] == ascending.size - 1)
