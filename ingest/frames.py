"""Building telemetry frames from readings as they come (pure, no I/O).

A `FrameBuilder` holds the open frame of one gateway: samples of any of its
boilers, kept columnar as they arrive. It checks each sample when it is added
(so a gateway bug surfaces at the gateway, naming boiler, channel and value) and
tells its owner when the frame must be sealed: before a sample that would
stretch the frame's event-time span to `max_span_ms` or more, and once it holds
`max_samples` samples or its JSON could exceed `max_bytes`. Sealing turns it
into a validated `TelemetryFrame` (see `heatstream.schemas.telemetry` for the
shape) and empties the builder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real

from heatstream.ingest.columns import check_watermark
from heatstream.ingest.errors import SampleError
from heatstream.schemas.envelope import MAX_TIME_MS, MIN_TIME_MS, is_identifier
from heatstream.schemas.telemetry import CHANNEL_BY_NAME, CHANNEL_NAMES, TelemetryFrame

_NULL_BYTES = 5  # "null,"
# Envelope fields (the 75-byte hmac member included), keys and brackets of an
# empty frame, rounded up generously.
_FRAME_OVERHEAD_BYTES = 1024


def check_sample(
    boiler: str, t_ms: int, values: Mapping[str, float | None]
) -> dict[str, float | None]:
    """The sample's readings as floats, or a SampleError naming what is wrong."""
    if not isinstance(boiler, str) or not is_identifier(boiler):
        raise SampleError(
            f"boiler id {boiler!r} is not a valid id (letters, digits, '.', '_', '-')"
        )
    if isinstance(t_ms, bool) or not isinstance(t_ms, int):
        raise SampleError(f"boiler {boiler!r}: t_ms = {t_ms!r} is not an integer (ms since epoch)")
    if not MIN_TIME_MS <= t_ms <= MAX_TIME_MS:
        raise SampleError(
            f"boiler {boiler!r}: t_ms = {t_ms} is outside [{MIN_TIME_MS}, {MAX_TIME_MS}]"
            " (a broken clock, or seconds instead of milliseconds)"
        )
    if not values:
        raise SampleError(f"boiler {boiler!r} at t_ms={t_ms}: the sample carries no channel")
    clean: dict[str, float | None] = {}
    for channel, value in values.items():
        if channel not in CHANNEL_BY_NAME:
            raise SampleError(
                f"boiler {boiler!r} at t_ms={t_ms}: channel {channel!r} (value {value!r})"
                f" is not a telemetry channel; known: {', '.join(CHANNEL_NAMES)}"
            )
        if value is None:
            clean[channel] = None
            continue
        kind = type(value)
        # float/int first: the common case, without the slow ABC check of Real.
        if kind is bool or not (kind is float or kind is int or isinstance(value, Real)):
            raise SampleError(
                f"boiler {boiler!r} at t_ms={t_ms}: {channel} = {value!r} is not a number"
            )
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise SampleError(
                f"boiler {boiler!r} at t_ms={t_ms}: {channel} = {value!r} is not a finite number"
            )
        clean[channel] = number
    return clean


class FrameBuilder:
    """The open frame: columns that grow sample by sample."""

    def __init__(self, max_samples: int, max_span_ms: int, max_bytes: int) -> None:
        self.max_samples = max_samples
        self.max_span_ms = max_span_ms
        self.max_bytes = max_bytes
        # dt_ms is at most max_span_ms - 1, so its digits bound every dt's length.
        self._dt_bytes = len(str(max_span_ms)) + 1
        self._reset()

    def _reset(self) -> None:
        self._boilers: dict[str, int] = {}
        self._boiler_idx: list[int] = []
        self._t_ms: list[int] = []
        self._columns: dict[str, list[float | None]] = {}
        self._min_t = 0
        self._max_t = 0
        self._bytes = _FRAME_OVERHEAD_BYTES

    @property
    def n_samples(self) -> int:
        return len(self._t_ms)

    @property
    def empty(self) -> bool:
        return not self._t_ms

    @property
    def estimated_bytes(self) -> int:
        """An upper bound of the sealed frame's JSON size."""
        return self._bytes

    @property
    def full(self) -> bool:
        return self.n_samples >= self.max_samples or self._bytes >= self.max_bytes

    def fits(self, t_ms: int) -> bool:
        """Whether a sample at `t_ms` keeps the frame's span below `max_span_ms`."""
        if self.empty:
            return True
        return max(self._max_t, t_ms) - min(self._min_t, t_ms) < self.max_span_ms

    def add(self, boiler: str, t_ms: int, values: Mapping[str, float | None]) -> None:
        """Append one sample already checked by `check_sample` (the caller checks `fits`)."""
        n = self.n_samples
        if n == 0:
            self._min_t = self._max_t = t_ms
        else:
            self._min_t = min(self._min_t, t_ms)
            self._max_t = max(self._max_t, t_ms)
        idx = self._boilers.get(boiler)
        if idx is None:
            idx = self._boilers[boiler] = len(self._boilers)
            self._bytes += len(boiler) + 3
        self._boiler_idx.append(idx)
        self._t_ms.append(t_ms)
        added = len(str(idx)) + 1 + self._dt_bytes
        for channel in values:
            if channel not in self._columns:
                self._columns[channel] = [None] * n
                added += n * _NULL_BYTES + len(channel) + 6
        for channel, column in self._columns.items():
            value = values.get(channel)
            column.append(value)
            added += _NULL_BYTES if value is None else len(repr(value)) + 1
        self._bytes += added

    def check_watermark(self, watermark_ms: int | None) -> None:
        """SampleError if `watermark_ms` cannot go with the open frame."""
        if not self.empty:
            check_watermark(watermark_ms, self._min_t)

    def seal(
        self,
        *,
        gateway: str,
        site: str,
        seq: int,
        ingest_time_ms: int,
        watermark_ms: int | None = None,
    ) -> TelemetryFrame | None:
        """The open frame as a validated TelemetryFrame (None when empty); empties the builder."""
        if self.empty:
            return None
        t0 = self._min_t
        data: dict[str, object] = {
            "gateway": gateway,
            "seq": seq,
            "site": site,
            "event_time_ms": t0,
            "ingest_time_ms": ingest_time_ms,
            "boilers": list(self._boilers),
            "boiler_idx": self._boiler_idx,
            "dt_ms": [t - t0 for t in self._t_ms],
        }
        # Channels in contract order, so equal input gives equal bytes.
        for name in CHANNEL_NAMES:
            if name in self._columns:
                data[name] = self._columns[name]
        if watermark_ms is not None:
            data["watermark_ms"] = watermark_ms
        self._reset()
        return TelemetryFrame.model_validate(data)
