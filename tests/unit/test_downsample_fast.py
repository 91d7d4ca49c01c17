"""The array-based Downsampler against the straightforward one it replaced, bit for bit.

`Reference` is the previous implementation (one accumulator object per bucket,
one point built channel by channel), kept as the specification: on any
sequence of frames the two must flush the same points in the same order, with
the same field order, types and float bits, and agree on counters and on what
is still open after every frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from heatstream.schemas.telemetry import CHANNELS, TelemetryFrame
from heatstream.sinks.downsample import (
    MEASUREMENT,
    SEEN_MS,
    DownsampleCounters,
    DownsampleParams,
    Downsampler,
    Flushed,
)
from heatstream.sinks.lineprotocol import FieldValue, Point

T0 = 1_768_435_200_000  # a bucket boundary

# -- the reference -----------------------------------------------------------

_FAR_PAST = -(2**62)
_N = len(CHANNELS)
_INDEX = {c.name: i for i, c in enumerate(CHANNELS)}
_LOW = np.array([c.low for c in CHANNELS])
_HIGH = np.array([c.high for c in CHANNELS])


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
    latest: int = _FAR_PAST
    closed_before: int = _FAR_PAST
    open: dict[tuple[str, int], _Bucket] = field(default_factory=dict)
    seen: dict[int, int] = field(default_factory=dict)
    retired: dict[int, int] = field(default_factory=dict)


class Reference:
    def __init__(self, params: DownsampleParams) -> None:
        self.params = params
        self.counters = DownsampleCounters()
        self._gateways: dict[str, _Gateway] = {}
        self._partition_watermark = _FAR_PAST
        self._idle_checked_at = _FAR_PAST

    def add(self, frame: TelemetryFrame, offset: int, *, shadow: bool = False) -> list[Flushed]:
        gw = self._gateways.setdefault(frame.gateway, _Gateway())
        t = frame.t_ms
        starts = t - t % self.params.bucket_ms
        accepted = starts >= gw.closed_before
        # a retry (seq seen) of a frame whose buckets are open, or all closed since
        if frame.seq in gw.seen or (frame.seq in gw.retired and not accepted.any()):
            self.counters.duplicate_frames += 1
            return []
        self.counters.frames += 1
        gw.seen[frame.seq] = int(starts.max())
        self.counters.late_samples += int(t.size - accepted.sum())
        if accepted.any():
            self._fold(gw, frame, starts, accepted, offset, shadow)
        gw.latest = max(gw.latest, int(t.max()))
        # the gateway's own buckets close on its promise too; the partition's clock and
        # the idle rule go by measured time only
        gw.watermark = max(gw.watermark, gw.latest, frame.watermark_ms or _FAR_PAST)
        self._partition_watermark = max(self._partition_watermark, gw.latest)
        flushed = self._close(
            frame.gateway, gw, self.params.floor(gw.watermark - self.params.lateness_ms)
        )
        flushed.extend(self._close_idle())
        return flushed

    def open_first_offset(self) -> int | None:
        offsets = [
            b.first_offset
            for gw in self._gateways.values()
            for b in gw.open.values()
            if not b.tainted
        ]
        return min(offsets, default=None)

    def open_buckets(self) -> int:
        return sum(len(gw.open) for gw in self._gateways.values())

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
        gw.retired.update((seq, last) for seq, last in gw.seen.items() if last < before)
        gw.seen = {seq: last for seq, last in gw.seen.items() if last >= before}
        gw.retired = {seq: last for seq, last in gw.retired.items() if last >= before - SEEN_MS}
        return out

    def _close_idle(self) -> list[Flushed]:
        now = self.params.floor(self._partition_watermark)
        if now <= self._idle_checked_at:
            return []
        self._idle_checked_at = now
        out: list[Flushed] = []
        for gateway, gw in self._gateways.items():
            if gw.open and self._partition_watermark - gw.latest >= self.params.idle_ms:
                out.extend(
                    self._close(gateway, gw, self.params.floor(gw.latest) + self.params.bucket_ms)
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


# -- comparison --------------------------------------------------------------


def exact(flushed: list[Flushed]) -> list[tuple[object, ...]]:
    """Everything a flushed point carries, floats by their bits, fields in order."""

    def value(v: FieldValue) -> tuple[str, object]:
        return (type(v).__name__, v.hex() if isinstance(v, float) else v)

    return [
        (
            f.point.measurement,
            list(f.point.tags.items()),
            [(k, value(v)) for k, v in f.point.fields.items()],
            f.point.time_ns,
            f.gateway,
            f.first_offset,
        )
        for f in flushed
    ]


def assert_same(
    params: DownsampleParams, log: list[tuple[TelemetryFrame, int, bool]]
) -> list[Flushed]:
    new, ref = Downsampler(params), Reference(params)
    everything: list[Flushed] = []
    for step, (frame, offset, shadow) in enumerate(log):
        got = new.add(frame, offset, shadow=shadow)
        assert exact(got) == exact(ref.add(frame, offset, shadow=shadow)), f"frame {step}"
        assert new.counters == ref.counters, f"frame {step}"
        assert new.open_first_offset() == ref.open_first_offset(), f"frame {step}"
        assert new.open_buckets() == ref.open_buckets(), f"frame {step}"
        everything += got
    return everything


# -- random logs ---------------------------------------------------------------

GATEWAYS = {"g1": ("s1", 5), "g2": ("s1", 3), "g3": ("s2", 1)}
SPECIAL = [None, 0.0, -0.0, 1e-300, -5.0, 1e6, 0.1, 0.2, 0.3]


@st.composite
def frames(draw: st.DrawFn) -> tuple[TelemetryFrame, int, bool]:
    gateway = draw(st.sampled_from(sorted(GATEWAYS)))
    site, n_boilers = GATEWAYS[gateway]
    every = [f"{gateway}-b{i}" for i in range(n_boilers)]
    # Mostly all boilers in the gateway's order (the common case), sometimes a
    # subset in another order.
    if draw(st.integers(0, 3)):
        boilers = every
    else:
        boilers = draw(st.permutations(every))[: draw(st.integers(1, n_boilers))]
    n = draw(st.integers(1, 8))
    boiler_idx = draw(st.lists(st.integers(0, len(boilers) - 1), min_size=n, max_size=n))
    dt_ms = draw(
        st.lists(
            st.sampled_from([0, 1, 499, 999, 1000, 4321, 9999, 10_000, 25_000]),
            min_size=n,
            max_size=n,
        )
    )
    readings = st.one_of(
        st.sampled_from(SPECIAL), st.floats(-30, 140, allow_nan=False, allow_infinity=False)
    )
    channels = draw(
        st.one_of(
            st.just(CHANNELS),
            st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=4, unique=True),
        )
    )
    columns = {c.name: draw(st.lists(readings, min_size=n, max_size=n)) for c in channels}
    t0 = T0 + draw(st.integers(-2, 40)) * 1_500 + draw(st.sampled_from([0, 1, 370, 999]))
    frame = TelemetryFrame(
        gateway=gateway,
        seq=draw(st.integers(0, 30)),  # repeats: retries, and seqs seen again after a close
        site=site,
        event_time_ms=t0,
        ingest_time_ms=t0,
        boilers=boilers,
        boiler_idx=boiler_idx,
        dt_ms=dt_ms,
        **columns,
        # sometimes a promise: up to the frame's last sample, to a bucket boundary, or past
        watermark_ms=draw(
            st.none() | st.sampled_from([t0 + max(dt_ms), t0 + 10_000 - t0 % 10_000, t0 + 25_000])
        ),
    )
    return frame, draw(st.integers(0, 500)), draw(st.integers(0, 9)) == 0


@settings(max_examples=300, deadline=None)
@given(
    log=st.lists(frames(), min_size=1, max_size=40),
    bucket_ms=st.sampled_from([1_000, 10_000]),
    lateness_ms=st.sampled_from([0, 2_000, 5_000]),
    idle_ms=st.sampled_from([3_000, 30_000]),
)
def test_random_logs_flush_exactly_what_the_reference_flushes(
    log: list[tuple[TelemetryFrame, int, bool]], bucket_ms: int, lateness_ms: int, idle_ms: int
) -> None:
    assert_same(DownsampleParams(bucket_ms, lateness_ms, idle_ms), log)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), bucket_s=st.sampled_from([1, 10]))
def test_fleet_like_logs_flush_exactly_what_the_reference_flushes(seed: int, bucket_s: int) -> None:
    # Long runs of full-gateway frames (the fast path), unaligned with buckets,
    # with retries, a gateway going silent, a late backlog and a shadowed start.
    rng = np.random.default_rng(seed)
    log: list[tuple[TelemetryFrame, int, bool]] = []
    offsets = {"g1": 0, "g2": 370, "g3": 810}
    boilers = {gw: [f"{gw}-{i:03d}" for i in range(12)] for gw in offsets}
    seq = dict.fromkeys(offsets, 0)
    for s in range(80):
        for gw, shift in offsets.items():
            if gw == "g3" and 30 <= s < 60:
                continue  # silent, then a backlog from far behind
            late = -40_000 if gw == "g3" and s == 60 else 0
            n = 24
            t = [T0 + s * 1000 + shift + late + (k // 12) * 500 for k in range(n)]
            values = rng.uniform(30, 70, size=(len(CHANNELS), n)).round(3)
            values[4] *= 0.3  # pressure, sometimes out of range
            values[values > 69] = np.nan
            seq[gw] += 1
            frame = TelemetryFrame(
                gateway=gw,
                seq=seq[gw],
                site="s1",
                event_time_ms=min(t),
                ingest_time_ms=max(t),
                boilers=boilers[gw],
                boiler_idx=[k % 12 for k in range(n)],
                dt_ms=[x - min(t) for x in t],
                **{
                    c.name: [None if np.isnan(v) else float(v) for v in values[i]]
                    for i, c in enumerate(CHANNELS)
                },
            )
            offset = len(log)
            log.append((frame, offset, s < 5))
            if rng.random() < 0.05:
                log.append((frame, offset + 1, False))  # a gateway retry
    params = DownsampleParams(bucket_s * 1000, 2_000 * bucket_s, 20_000 * bucket_s)
    assert assert_same(params, log)


def test_a_boiler_listed_twice_is_one_bucket_fed_in_turn() -> None:
    # Validation refuses such a frame; the accumulators still must not lose a group.
    def unchecked(seq: int, t_ms: list[int], boiler_idx: list[int]) -> TelemetryFrame:
        return TelemetryFrame.model_construct(
            gateway="gw",
            seq=seq,
            site="s1",
            event_time_ms=t_ms[0],
            ingest_time_ms=t_ms[0],
            boilers=["b1", "b2", "b1"],
            boiler_idx=boiler_idx,
            dt_ms=[t - t_ms[0] for t in t_ms],
            supply_temp_c=[0.1 * (k + 1) for k in range(len(t_ms))],
        )

    params = DownsampleParams(10_000, 0, 60_000)
    log = [
        (unchecked(1, [T0, T0, T0 + 1, T0 + 2], [0, 2, 1, 2]), 0, False),
        (unchecked(2, [T0 + 3, T0 + 12_000], [2, 0]), 1, False),
        (unchecked(3, [T0 + 30_000], [1]), 2, False),
    ]
    flushed = assert_same(params, log)
    assert [f.point.fields["samples"] for f in flushed] == [4, 1, 1]
