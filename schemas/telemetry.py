"""The telemetry frame: many readings of many boilers in one Kafka message.

Frame shape (the trade-off DESIGN.md asks to decide deliberately)
-----------------------------------------------------------------
Faust costs about 60 µs per message on our machines, so a message must carry
hundreds of readings, but a frame also delays its first reading by its own
span. The two obvious shapes pull in opposite directions:

* many seconds of one boiler: good amortisation, but a 60 s frame is 60 s late;
* one instant of every boiler behind a gateway: low latency, and a site gateway
  typically serves 10-200 boilers x 12 channels, i.e. 100-2,400 readings.

heatstream uses the second shape, generalised: a frame is **one gateway, a short
span (by default at most 1 s, bounded by size and time in the SDK), all the
boilers that reported in it**, stored columnar in *long* form: sample `i` is
boiler `boilers[boiler_idx[i]]` at `event_time_ms + dt_ms[i]`, and every channel
is an array of the same length. Long form survives jitter, boilers reporting at
different rates and the backlog burst of a gateway coming back online (one frame
may then span up to `MAX_SPAN_MS` of history). The Kafka key is the gateway id
(see `topics.py`), so a boiler's samples, and its compute events, stay ordered on
one partition.

Channels are optional (a site meters what it meters) and a `null` inside a
channel is a missing reading. Units are part of every channel's name.

Validation happens in two layers: the *structure* (types, equal array lengths,
indices in range, finite numbers) rejects the frame, naming field, index and
value; the *physical ranges* (`range_violations`) do not reject it: the stream
processor quarantines the offending readings with a data-quality event and
keeps them out of heat totals, while the rest of the frame is used.
"""

from __future__ import annotations

import functools
import math
import re
import reprlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from heatstream.schemas.envelope import ID_PATTERN, Envelope
from heatstream.schemas.errors import SchemaValidationError

MAX_SAMPLES = 200_000  # per frame; bounds memory of a hostile or buggy message
MAX_BOILERS = 4_096
MAX_SPAN_MS = 6 * 3600 * 1000  # a backlog frame may hold up to 6 h of history


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    unit: str
    low: float
    high: float
    doc: str


#: Every channel a frame may carry, with its unit and its physically possible range.
CHANNELS: tuple[Channel, ...] = (
    Channel("supply_temp_c", "°C", -20.0, 130.0, "water leaving the boiler to the heating loop"),
    Channel("return_temp_c", "°C", -20.0, 130.0, "water coming back from the heating loop"),
    Channel(
        "flow_lpm",
        "L/min",
        0.0,
        5_000.0,
        "loop volumetric flow at the heat meter (return side unless the inventory says supply)",
    ),
    Channel("supply_flow_lpm", "L/min", 0.0, 5_000.0, "second flow meter on the supply side"),
    Channel("pressure_bar", "bar", 0.0, 16.0, "loop pressure (gauge)"),
    Channel("it_power_kw", "kW", 0.0, 5_000.0, "electrical power drawn by the IT load"),
    Channel("aux_power_kw", "kW", 0.0, 1_000.0, "auxiliaries: pumps, fans, controls"),
    Channel("makeup_flow_lpm", "L/min", 0.0, 500.0, "make-up water fed into the closed loop"),
    Channel("moisture_pct", "%", 0.0, 100.0, "floor/caisson moisture sensor"),
    Channel("outdoor_temp_c", "°C", -60.0, 60.0, "outdoor air temperature at the site"),
    Channel("pump_speed_pct", "%", 0.0, 100.0, "circulation pump speed command"),
    Channel("it_utilisation_pct", "%", 0.0, 100.0, "compute utilisation of the boiler's nodes"),
)
CHANNEL_NAMES: tuple[str, ...] = tuple(c.name for c in CHANNELS)
CHANNEL_BY_NAME: dict[str, Channel] = {c.name: c for c in CHANNELS}

ChannelValues = list[float | None]


@dataclass(frozen=True, slots=True)
class RangeViolation:
    """One reading outside its channel's physical range."""

    field: str
    index: int
    value: float
    low: float
    high: float
    boiler: str
    t_ms: int

    def __str__(self) -> str:
        unit = CHANNEL_BY_NAME[self.field].unit
        return (
            f"{self.field}[{self.index}] = {self.value!r} {unit} outside [{self.low}, {self.high}]"
            f" (boiler {self.boiler}, t={self.t_ms})"
        )


def _channel_field(channel: Channel) -> Any:
    # fail_fast: a hostile frame of 200,000 x 12 wrong values would otherwise build
    # 2.4 million error records (tens of seconds, gigabytes); the first one is enough.
    return Field(
        None,
        fail_fast=True,
        description=f"{channel.doc}, {channel.unit}; physical range [{channel.low}, {channel.high}];"
        " one value per sample, null = missing",
    )


class _FrameBody(Envelope):
    """What versions 2 and 3 of the frame share: everything but the watermark."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_name: Literal["telemetry.frame"] = "telemetry.frame"
    boilers: list[str] = Field(
        min_length=1,
        max_length=MAX_BOILERS,
        fail_fast=True,
        description="boiler ids referenced by boiler_idx",
    )
    boiler_idx: list[int] = Field(
        min_length=1,
        max_length=MAX_SAMPLES,
        fail_fast=True,
        description="per sample: index into boilers",
    )
    dt_ms: list[int] = Field(
        min_length=1,
        max_length=MAX_SAMPLES,
        fail_fast=True,
        description="per sample: ms after event_time_ms at which it was measured (>= 0)",
    )
    supply_temp_c: ChannelValues | None = _channel_field(CHANNELS[0])
    return_temp_c: ChannelValues | None = _channel_field(CHANNELS[1])
    flow_lpm: ChannelValues | None = _channel_field(CHANNELS[2])
    supply_flow_lpm: ChannelValues | None = _channel_field(CHANNELS[3])
    pressure_bar: ChannelValues | None = _channel_field(CHANNELS[4])
    it_power_kw: ChannelValues | None = _channel_field(CHANNELS[5])
    aux_power_kw: ChannelValues | None = _channel_field(CHANNELS[6])
    makeup_flow_lpm: ChannelValues | None = _channel_field(CHANNELS[7])
    moisture_pct: ChannelValues | None = _channel_field(CHANNELS[8])
    outdoor_temp_c: ChannelValues | None = _channel_field(CHANNELS[9])
    pump_speed_pct: ChannelValues | None = _channel_field(CHANNELS[10])
    it_utilisation_pct: ChannelValues | None = _channel_field(CHANNELS[11])

    @model_validator(mode="after")
    def _check_structure(self) -> _FrameBody:
        # Whole-list checks in C first: walking every value in Python was ~9% of
        # the stream processor. Only a frame they reject is walked, so that the
        # message still names the first offender exactly as it always did.
        if not _structure_looks_valid(self):
            _check_structure_value_by_value(self)
        return self

    def __eq__(self, other: object) -> bool:
        # The fields only: pydantic's own comparison of `__dict__` would also meet
        # the arrays cached from them (`matrix`, `t_ms`), which have no truth value.
        if not isinstance(other, _FrameBody):
            return NotImplemented
        return type(self) is type(other) and all(
            getattr(self, name) == getattr(other, name) for name in type(self).model_fields
        )

    __hash__ = None  # type: ignore[assignment]  # lists inside: never hashable

    @property
    def boiler_ids(self) -> tuple[str, ...]:
        return tuple(self.boilers)

    @property
    def n_samples(self) -> int:
        return len(self.dt_ms)

    @functools.cached_property
    def channels_present(self) -> tuple[str, ...]:
        return tuple(name for name in CHANNEL_NAMES if getattr(self, name) is not None)

    @property
    def n_readings(self) -> int:
        """Channel values carried (a reading is one channel value of one sample)."""
        return self.n_samples * len(self.channels_present)

    @functools.cached_property
    def t_ms(self) -> np.ndarray:
        """Absolute sample times (int64 ms since epoch)."""
        return np.asarray(self.dt_ms, dtype=np.int64) + self.event_time_ms

    @functools.cached_property
    def matrix(self) -> np.ndarray:
        """The present channels, in `channels_present` order, as one read-only float64
        array of shape (channels, samples), NaN where a reading is missing."""
        # One conversion of every list at once; numpy turns None into NaN itself
        # when asked for float64. Only for a frame whose channels are equally long.
        values = np.array(
            [getattr(self, name) for name in self.channels_present], dtype=np.float64
        ).reshape(len(self.channels_present), len(self.dt_ms))
        values.flags.writeable = False
        return values

    @functools.cached_property
    def columns(self) -> dict[str, np.ndarray]:
        """Present channels as read-only float64 arrays (rows of `matrix`), NaN where
        a reading is missing."""
        return dict(zip(self.channels_present, self.matrix, strict=True))

    def range_violations(self) -> list[RangeViolation]:
        """Readings outside their channel's physical range (missing readings pass)."""
        present = self.channels_present
        if not present:
            return []
        specs = [CHANNEL_BY_NAME[name] for name in present]
        values = self.matrix
        low, high = _bounds(present)
        with np.errstate(invalid="ignore"):
            bad = (values < low) | (values > high)
        if not bad.any():
            return []
        # Row-major order: channel by channel, then by sample index.
        rows, samples = np.nonzero(bad)
        t_ms = self.t_ms
        found: list[RangeViolation] = []
        for row, i in zip(rows.tolist(), samples.tolist(), strict=True):
            spec = specs[row]
            found.append(
                RangeViolation(
                    field=spec.name,
                    index=i,
                    value=float(values[row, i]),
                    low=spec.low,
                    high=spec.high,
                    boiler=self.boilers[self.boiler_idx[i]],
                    t_ms=int(t_ms[i]),
                )
            )
        return found


class TelemetryFrameV2(_FrameBody):
    """Version 2 of the frame: version 3 without `watermark_ms`. Kept so old logs replay."""

    schema_version: Literal[2] = 2


class TelemetryFrame(_FrameBody):
    """Columnar readings of the boilers behind one gateway (schema version 3).

    Version 3 adds `watermark_ms`, the gateway's promise about what follows.
    """

    schema_version: Literal[3] = 3
    watermark_ms: int | None = Field(
        None,
        description="the gateway's promise that none of its later frames carries a sample"
        " measured before this time (ms since epoch UTC; at least event_time_ms and at most"
        f" {MAX_SPAN_MS} ms after it). The sink then closes the means of the buckets it"
        " completes without waiting for the next frame. Absent: no promise",
    )

    @model_validator(mode="after")
    def _check_watermark(self) -> TelemetryFrame:
        w = self.watermark_ms
        if w is not None and not 0 <= w - self.event_time_ms <= MAX_SPAN_MS:
            raise ValueError(
                f"watermark_ms = {w} is outside [event_time_ms, event_time_ms + {MAX_SPAN_MS}]"
                f" = [{self.event_time_ms}, {self.event_time_ms + MAX_SPAN_MS}]"
            )
        return self


def upcast_frame_v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """A v2 frame as v3: the same fields, and no watermark (the gateway promised nothing).

    Only the version changes, so the v3 model validates it once (a second full
    validation as v2 would double the cost of replaying an old log); a v2 frame
    that names a watermark is refused here, as v2 refuses any unknown field.
    """
    if "watermark_ms" in data:
        raise SchemaValidationError(
            f"telemetry.frame v2: watermark_ms = {reprlib.repr(data['watermark_ms'])}: not a field of"
            " version 2 (it came with version 3)"
        )
    return {**data, "schema_version": 3}


# `$` also matches before a final newline, so `is_identifier` accepts "b-1\n";
# the "\n?" keeps that. Ids cannot hold ",", so the list matches as a whole
# iff it splits into that many valid ids.
_ID_BODY = ID_PATTERN.removeprefix("^").removesuffix("$")
_ID_LIST_RE = re.compile(rf"{_ID_BODY}\n?(?:,{_ID_BODY}\n?)*")


_IDS_CACHED_CHARS = 16_384  # the cache below then holds at most 16 MiB


@functools.lru_cache(maxsize=1024)
def _ids_match(joined: str) -> bool:
    """Whether `joined` is valid ids separated by ","; remembered, since a gateway
    names the same boilers in frame after frame (the match was 1.3 % of the worker)."""
    return _ID_LIST_RE.fullmatch(joined) is not None


def _structure_looks_valid(frame: _FrameBody) -> bool:
    """True only if `_check_structure_value_by_value` would pass; may say False for a
    frame it passes (a sum of finite values overflowing), which then costs a walk."""
    n = len(frame.dt_ms)
    boilers = frame.boilers
    n_boilers = len(boilers)
    if len(frame.boiler_idx) != n or len(set(boilers)) != n_boilers:
        return False
    joined = ",".join(boilers)
    if joined.count(",") != n_boilers - 1:
        return False
    if not (
        _ids_match(joined) if len(joined) <= _IDS_CACHED_CHARS else _ID_LIST_RE.fullmatch(joined)
    ):
        return False
    used = set(frame.boiler_idx)  # at most n_boilers values in a valid frame
    if min(used) < 0 or max(used) >= n_boilers:
        return False
    if min(frame.dt_ms) < 0 or max(frame.dt_ms) > MAX_SPAN_MS:
        return False
    channels = [getattr(frame, name) for name in frame.channels_present]
    if not channels or any(len(values) != n for values in channels):
        return False
    # Every value finite (then none is missing either) in one pass in C; the
    # arrays are those the processor goes on with.
    if np.isfinite(frame.matrix).all():
        return True
    # A NaN stands for a missing reading as well: without the Nones, a sum is
    # finite only if every term is (an inf or a NaN never cancels out).
    return all(math.isfinite(sum([v for v in values if v is not None])) for values in channels)


@functools.cache
def channel_rows(channels: tuple[str, ...]) -> np.ndarray:
    """Where each of `channels` sits in `CHANNEL_NAMES`: the rows of an array with one
    row per channel that a frame's `matrix` (its `channels_present`) goes into."""
    return np.array([CHANNEL_NAMES.index(name) for name in channels], dtype=np.intp)


@functools.cache
def _bounds(channels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Physical low and high of `channels`, as columns to compare a `matrix` with."""
    specs = [CHANNEL_BY_NAME[name] for name in channels]
    low = np.array([spec.low for spec in specs])[:, np.newaxis]
    high = np.array([spec.high for spec in specs])[:, np.newaxis]
    return low, high


def _check_structure_value_by_value(frame: _FrameBody) -> None:
    """Raise ValueError naming the first defect of the frame's structure, if any."""
    n = len(frame.dt_ms)
    if len(frame.boiler_idx) != n:
        raise ValueError(f"boiler_idx has {len(frame.boiler_idx)} values, dt_ms has {n}")
    if len(set(frame.boilers)) != len(frame.boilers):
        dupes = sorted({b for b in frame.boilers if frame.boilers.count(b) > 1})
        raise ValueError(f"boilers lists {reprlib.repr(dupes[0])} more than once")
    for i, boiler in enumerate(frame.boilers):
        if not _is_id(boiler):
            # reprlib: a 10 MB id would push the explanation past the dead letter's clip.
            raise ValueError(
                f"boilers[{i}] = {reprlib.repr(boiler)} is not a valid id ({ID_PATTERN})"
            )
    n_boilers = len(frame.boilers)
    for i, b in enumerate(frame.boiler_idx):
        if not 0 <= b < n_boilers:
            raise ValueError(f"boiler_idx[{i}] = {b} outside [0, {n_boilers - 1}]")
    for i, dt in enumerate(frame.dt_ms):
        if not 0 <= dt <= MAX_SPAN_MS:
            raise ValueError(f"dt_ms[{i}] = {dt} outside [0, {MAX_SPAN_MS}]")
    present = 0
    for name in CHANNEL_NAMES:
        values = getattr(frame, name)
        if values is None:
            continue
        present += 1
        if len(values) != n:
            raise ValueError(f"{name} has {len(values)} values, dt_ms has {n}")
        for i, v in enumerate(values):
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{name}[{i}] = {v!r} is not a finite number")
    if present == 0:
        raise ValueError("frame carries no channel")


def _is_id(value: str) -> bool:
    from heatstream.schemas.envelope import is_identifier

    return is_identifier(value)


class TelemetryFrameV1(Envelope):
    """Version 1 of the frame, as the first gateways published it.

    One boiler per frame, absolute timestamps, and flow in m³/h. Version 2 moved
    to multi-boiler long-form frames (see the module docstring) and to L/min,
    the unit gateway flow meters report natively. Kept so old logs replay.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_name: Literal["telemetry.frame"] = "telemetry.frame"
    schema_version: Literal[1] = 1
    boiler: str = Field(pattern=ID_PATTERN)
    t_ms: list[int] = Field(
        min_length=1, max_length=MAX_SAMPLES, fail_fast=True, description="absolute sample times"
    )
    supply_temp_c: ChannelValues | None = Field(None, fail_fast=True)
    return_temp_c: ChannelValues | None = Field(None, fail_fast=True)
    flow_m3h: ChannelValues | None = Field(None, fail_fast=True, description="supply flow, m³/h")
    pressure_bar: ChannelValues | None = Field(None, fail_fast=True)
    it_power_kw: ChannelValues | None = Field(None, fail_fast=True)

    @property
    def boiler_ids(self) -> tuple[str, ...]:
        return (self.boiler,)


M3H_TO_LPM = 1000.0 / 60.0


def upcast_frame_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a decoded v1 frame as a v2 frame (a pure dict-to-dict function).

    Validated first as v1, so a malformed old event is reported against the
    contract it was written to (strictly, like `decode_raw`: JSON true is not 1).
    """
    v1 = TelemetryFrameV1.model_validate(data, strict=True)
    t0 = min(v1.t_ms)
    out: dict[str, Any] = {
        "schema_name": "telemetry.frame",
        "schema_version": 2,
        "event_id": v1.event_id,
        "gateway": v1.gateway,
        "seq": v1.seq,
        "site": v1.site,
        "event_time_ms": t0,
        "ingest_time_ms": v1.ingest_time_ms,
        "hmac": v1.hmac,
        "boilers": [v1.boiler],
        "boiler_idx": [0] * len(v1.t_ms),
        "dt_ms": [t - t0 for t in v1.t_ms],
    }
    for name in ("supply_temp_c", "return_temp_c", "pressure_bar", "it_power_kw"):
        values = getattr(v1, name)
        if values is not None:
            out[name] = values
    if v1.flow_m3h is not None:
        out["flow_lpm"] = [None if v is None else v * M3H_TO_LPM for v in v1.flow_m3h]
    return out
