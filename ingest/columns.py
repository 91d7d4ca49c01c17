"""Telemetry frames sealed from columns: numpy arrays in, wire bytes out (pure, no I/O).

For gateway software that already holds its readings as arrays (a data logger's
buffer, the fleet simulator): `Gateway.seal_columns` / `publish_columns` take a
whole frame at once instead of one `add_sample` call per sample. The arrays are
checked here with vectorised tests that enforce what `TelemetryFrame` enforces
(equal lengths, indices in range, finite numbers, valid unique boiler ids,
bounded span and size), each failure a `SampleError` naming field, index and
value; then the frame is written straight to JSON by orjson, without building
a pydantic model and a list of Python floats first.

The bytes are exactly those `serde.encode(TelemetryFrame(...))` writes for the
same readings (same member order, NaN written as null, channels in contract
order), which the unit tests check; a frame sealed from columns is therefore
indistinguishable downstream from one built sample by sample.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import orjson

from heatstream.ingest.errors import SampleError
from heatstream.schemas.envelope import MAX_TIME_MS, MIN_TIME_MS, is_identifier, make_event_id
from heatstream.schemas.serde import decode_raw
from heatstream.schemas.telemetry import (
    CHANNEL_BY_NAME,
    CHANNEL_NAMES,
    MAX_BOILERS,
    MAX_SAMPLES,
    MAX_SPAN_MS,
    TelemetryFrame,
)

_SCHEMA_NAME = "telemetry.frame"
_SCHEMA_VERSION = 3


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """A telemetry frame sealed by a gateway: its identity and the bytes that go out.

    `value` is the message exactly as it is spooled and sent (signed when the
    gateway has an hmac key). Hand it back to `Gateway.send` to publish it (again).
    """

    event_id: str
    gateway: str
    site: str
    seq: int
    event_time_ms: int
    ingest_time_ms: int
    n_samples: int
    value: bytes

    def decode(self) -> TelemetryFrame:
        """The frame as the pipeline will read it (decoded and validated)."""
        frame = decode_raw(self.value)
        assert isinstance(frame, TelemetryFrame)
        return frame


@dataclass(frozen=True, slots=True)
class CheckedColumns:
    """A frame body that passed `check_columns`: normalised dtypes, contract order."""

    boilers: list[str]
    boiler_idx: np.ndarray  # int64, contiguous
    event_time_ms: int
    dt_ms: np.ndarray  # int64, contiguous, >= 0
    columns: dict[str, np.ndarray]  # float64, contiguous, NaN = missing

    @property
    def n_samples(self) -> int:
        return int(self.dt_ms.size)


def check_columns(
    boilers: Sequence[str],
    boiler_idx: Sequence[int] | np.ndarray,
    t_ms: Sequence[int] | np.ndarray,
    columns: Mapping[str, Sequence[float | None] | np.ndarray],
) -> CheckedColumns:
    """The frame body, or a SampleError naming the field, index and value at fault.

    `boiler_idx[i]` and `t_ms[i]` (absolute event time, int ms since the epoch) say
    whose and when sample `i` is; every column holds one value per sample, NaN (or
    None) for a missing reading.
    """
    try:
        ids = list(_checked_boilers(tuple(boilers)))
    except TypeError:  # an unhashable entry: certainly not an id
        bad = next(b for b in boilers if not isinstance(b, str))
        raise SampleError(f"boilers holds {bad!r}, which is not a valid id") from None

    idx = _integers("boiler_idx", boiler_idx)
    n = idx.size
    if not 1 <= n <= MAX_SAMPLES:
        raise SampleError(f"the frame has {n} samples: it needs 1 to {MAX_SAMPLES}")
    # Reductions first (cheap); the offending index is looked for only on failure.
    if int(idx.min()) < 0 or int(idx.max()) >= len(ids):
        i = int(np.flatnonzero((idx < 0) | (idx >= len(ids)))[0])
        raise SampleError(f"boiler_idx[{i}] = {int(idx[i])} outside [0, {len(ids) - 1}]")
    times = _integers("t_ms", t_ms)
    if times.size != n:
        raise SampleError(f"t_ms has {times.size} values, boiler_idx has {n}")
    t0, t1 = int(times.min()), int(times.max())
    if t0 < MIN_TIME_MS or t1 > MAX_TIME_MS:
        i = int(np.flatnonzero((times < MIN_TIME_MS) | (times > MAX_TIME_MS))[0])
        raise SampleError(
            f"t_ms[{i}] = {int(times[i])} (boiler {ids[int(idx[i])]!r}) is outside"
            f" [{MIN_TIME_MS}, {MAX_TIME_MS}] (a broken clock, or seconds instead of milliseconds)"
        )
    span = t1 - t0
    if span > MAX_SPAN_MS:
        raise SampleError(f"the frame spans {span} ms of event time, above {MAX_SPAN_MS}")

    if not columns:
        raise SampleError("the frame carries no channel")
    unknown = [name for name in columns if name not in CHANNEL_BY_NAME]
    if unknown:
        raise SampleError(
            f"channel {unknown[0]!r} is not a telemetry channel; known: {', '.join(CHANNEL_NAMES)}"
        )
    out: dict[str, np.ndarray] = {}
    for name in CHANNEL_NAMES:  # contract order: equal input gives equal bytes
        if name in columns:
            out[name] = _floats(name, columns[name], n, ids, idx)
    return CheckedColumns(
        boilers=ids,
        boiler_idx=np.ascontiguousarray(idx, dtype=np.int64),
        event_time_ms=t0,
        dt_ms=np.ascontiguousarray(times - t0, dtype=np.int64),
        columns=out,
    )


def check_watermark(watermark_ms: int | None, event_time_ms: int) -> int | None:
    """The frame's watermark (see `TelemetryFrame.watermark_ms`), or a SampleError."""
    if watermark_ms is None:
        return None
    if isinstance(watermark_ms, bool) or not isinstance(watermark_ms, int | np.integer):
        raise SampleError(f"watermark_ms = {watermark_ms!r} is not an integer (ms since epoch)")
    w = int(watermark_ms)
    if not 0 <= w - event_time_ms <= MAX_SPAN_MS:
        raise SampleError(
            f"watermark_ms = {w} is outside [{event_time_ms}, {event_time_ms + MAX_SPAN_MS}]:"
            " it must not be before the frame's first sample, nor more than"
            f" {MAX_SPAN_MS} ms after it"
        )
    return w


def encode_columns(
    body: CheckedColumns,
    *,
    gateway: str,
    site: str,
    seq: int,
    ingest_time_ms: int,
    watermark_ms: int | None = None,
) -> bytes:
    """The frame's JSON, member for member what `serde.encode` writes for the model.

    `watermark_ms` must have passed `check_watermark`."""
    data: dict[str, object] = {
        "schema_name": _SCHEMA_NAME,
        "schema_version": _SCHEMA_VERSION,
        "event_id": make_event_id(gateway, seq),
        "gateway": gateway,
        "seq": seq,
        "site": site,
        "event_time_ms": body.event_time_ms,
        "ingest_time_ms": ingest_time_ms,
        "boilers": body.boilers,
        "boiler_idx": body.boiler_idx,
        "dt_ms": body.dt_ms,
        **body.columns,
    }
    if watermark_ms is not None:
        data["watermark_ms"] = watermark_ms
    # OPT_SERIALIZE_NUMPY writes float64 like Python floats and NaN as null.
    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)


@functools.lru_cache(maxsize=256)
def _checked_boilers(ids: tuple[str, ...]) -> tuple[str, ...]:
    """The boiler ids, checked once per distinct list (a gateway repeats its own)."""
    if not 1 <= len(ids) <= MAX_BOILERS:
        raise SampleError(f"boilers lists {len(ids)} ids: a frame needs 1 to {MAX_BOILERS}")
    for i, boiler in enumerate(ids):
        if not isinstance(boiler, str) or not is_identifier(boiler):
            raise SampleError(
                f"boilers[{i}] = {boiler!r} is not a valid id (letters, digits, '.', '_', '-')"
            )
    if len(set(ids)) != len(ids):
        dupe = next(b for i, b in enumerate(ids) if b in ids[:i])
        raise SampleError(f"boilers lists {dupe!r} more than once")
    return ids


def _integers(field: str, values: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise SampleError(f"{field} must be one-dimensional, not of shape {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise SampleError(f"{field} must hold integers, not {array.dtype}")
    return array.astype(np.int64, copy=False)


def _floats(
    name: str,
    values: Sequence[float | None] | np.ndarray,
    n: int,
    boilers: list[str],
    idx: np.ndarray,
) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind != "O":
        array = values
        if array.dtype.kind not in "fiu":  # bool, strings, datetimes: not readings
            raise SampleError(f"{name} must hold numbers, not {array.dtype}")
    else:
        items = values.tolist() if isinstance(values, np.ndarray) else list(values)
        for i, v in enumerate(items):
            if v is not None and (
                isinstance(v, bool | np.bool_) or not isinstance(v, int | float | np.number)
            ):
                raise SampleError(f"{name}[{i}] = {v!r} is not a number")
        try:
            array = np.array([np.nan if v is None else v for v in items], dtype=np.float64)
        except OverflowError:
            raise SampleError(f"{name} holds an integer too large for a reading") from None
    if array.ndim != 1 or array.size != n:
        raise SampleError(f"{name} has shape {array.shape}, the frame has {n} samples")
    array = np.ascontiguousarray(array, dtype=np.float64)
    if np.isinf(array).any():  # NaN is a missing reading; infinity is no reading
        i = int(np.flatnonzero(np.isinf(array))[0])
        raise SampleError(
            f"{name}[{i}] = {float(array[i])!r} (boiler {boilers[int(idx[i])]!r}) is not a"
            " finite number"
        )
    return array
