"""Benchmark input: realistic readings, cut into Kafka messages of a chosen frame shape.

The fleet simulator (`heatstream.ingest.simulator`) is the source of the
values, but simulating 10,000 boilers costs minutes (its set-up is per
boiler), so a *base* fleet of a hundred boilers is simulated once and tiled:
boiler `i` of a large fleet replays base boiler `i % base`, with its own id,
gateway and site. Values, jitter and channel mix stay those of the physics
model; only their variety is bounded.

A message is what a gateway would publish: a v3 `TelemetryFrame` encoded
exactly as `heatstream.schemas.serde.encode` does (checked by `check_encoding`),
keyed by gateway id, with per-gateway sequence numbers. The frame *shape*
decides how readings are grouped into messages (see `Shape`). The last message
of a gateway's span declares the span's end as its watermark (`watermark_ms`):
the base fleet samples second `k` within [k s, k + 1 s), so nothing measured
before that end follows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import orjson

from heatstream.ingest.simulator.config import DEFAULT_START_MS, SimConfig
from heatstream.ingest.simulator.engine import Simulation
from heatstream.inventory import Inventory, synthetic_inventory
from heatstream.schemas.telemetry import CHANNEL_NAMES

N_CHANNELS = len(CHANNEL_NAMES)
INGEST_DELAY_MS = 50  # gateway stamps ingest time this long after the frame's last sample

Message = tuple[bytes, bytes]  # (key, value)


@dataclass(frozen=True)
class Recording:
    """Base-fleet readings at 1 Hz: `t_ms` (T, B) ms after the start, `values` (C, T, B)."""

    t_ms: np.ndarray
    values: np.ndarray

    @property
    def seconds(self) -> int:
        return int(self.t_ms.shape[0])

    @property
    def boilers(self) -> int:
        return int(self.t_ms.shape[1])


def simulate(boilers: int, seconds: int, seed: int = 7) -> Recording:
    """Run the fleet simulator (one site, 1 s frames) and keep its readings as arrays."""
    # The simulator steps its physics every 10 s and fails on a partial last step.
    seconds = -(-seconds // 10) * 10
    config = SimConfig(boilers=boilers, sites=1, duration_ms=seconds * 1000, seed=seed)
    sim = Simulation(config)
    t_ms = np.zeros((seconds, boilers), dtype=np.int64)
    values = np.full((N_CHANNELS, seconds, boilers), np.nan)
    for k, period in enumerate(sim.periods()):
        (frame,) = period.frames
        idx = np.asarray(frame.boiler_idx)
        t_ms[k, idx] = np.asarray(frame.dt_ms) + frame.event_time_ms - config.start_ms
        for c, name in enumerate(CHANNEL_NAMES):
            column = frame.columns.get(name)
            if column is not None:
                values[c, k, idx] = [math.nan if v is None else v for v in column]
    second = t_ms // 1000 - np.arange(seconds)[:, np.newaxis]
    if second.any():  # the spans' watermarks (see the module docstring) rely on it
        raise AssertionError("the simulator sampled second k outside [k s, k + 1 s)")
    return Recording(t_ms=t_ms, values=values)


@dataclass(frozen=True)
class Shape:
    """How readings are grouped into one message.

    `boilers=None`: every boiler of the gateway; `span_s`: seconds of samples;
    `one_channel`: a single channel value per message (the naive baseline).
    """

    key: str
    label: str
    boilers: int | None
    span_s: int
    one_channel: bool = False

    def readings_per_message(self, per_gateway: int) -> int:
        boilers = per_gateway if self.boilers is None else self.boilers
        return boilers * self.span_s * (1 if self.one_channel else N_CHANNELS)


NAIVE = Shape("reading", "1 reading (naive)", boilers=1, span_s=1, one_channel=True)
BOILER_1S = Shape("boiler_1s", "1 boiler x 1 s", boilers=1, span_s=1)
BOILER_60S = Shape("boiler_60s", "1 boiler x 60 s", boilers=1, span_s=60)
GATEWAY_1S = Shape("gateway_1s", "gateway x 1 s", boilers=None, span_s=1)
GATEWAY_10S = Shape("gateway_10s", "gateway x 10 s", boilers=None, span_s=10)
SHAPES = (NAIVE, BOILER_1S, GATEWAY_1S, GATEWAY_10S, BOILER_60S)


class Fleet:
    """`boilers` boilers behind gateways of `per_gateway` each, replaying a Recording."""

    def __init__(self, recording: Recording, boilers: int, per_gateway: int = 100) -> None:
        if boilers % per_gateway:
            raise ValueError(f"{boilers} boilers do not split into gateways of {per_gateway}")
        self.recording = recording
        self.per_gateway = per_gateway
        self.inventory: Inventory = synthetic_inventory(boilers, boilers // per_gateway)
        index = {b.id: i for i, b in enumerate(self.inventory.boilers)}
        # Base column of every gateway's boilers, in the gateway's own order.
        self.columns = [
            np.array([index[b] % recording.boilers for b in g.boilers])
            for g in self.inventory.gateways
        ]

    @property
    def boilers(self) -> int:
        return len(self.inventory.boilers)

    @property
    def gateways(self) -> int:
        return len(self.inventory.gateways)

    @cached_property
    def readings_per_second(self) -> int:
        return self.boilers * N_CHANNELS

    def messages(
        self,
        shape: Shape,
        seconds: int,
        *,
        start_ms: int = DEFAULT_START_MS,
        limit: int | None = None,
    ) -> tuple[list[Message], int]:
        """Messages covering `seconds` of the fleet (at most `limit`), and their readings."""
        out: list[Message] = []
        readings = 0
        for key, value, n in self.iter_messages(shape, seconds, start_ms=start_ms):
            out.append((key, value))
            readings += n
            if limit is not None and len(out) >= limit:
                break
        return out, readings

    def iter_messages(
        self, shape: Shape, seconds: int, *, start_ms: int = DEFAULT_START_MS
    ) -> Iterator[tuple[bytes, bytes, int]]:
        """(key, value, readings) in publishing order: span by span, gateway by gateway."""
        if seconds > self.recording.seconds:
            raise ValueError(f"the recording holds {self.recording.seconds} s, {seconds} asked")
        seqs = [0] * self.gateways
        for first in range(0, seconds - shape.span_s + 1, shape.span_s):
            span_end_ms = start_ms + (first + shape.span_s) * 1000
            for g, gateway in enumerate(self.inventory.gateways):
                frames = list(self._frames(g, shape, first))
                for i, frame in enumerate(frames):
                    seq = seqs[g]
                    seqs[g] += 1
                    # Only the gateway's last message of the span completes it.
                    watermark = span_end_ms if i == len(frames) - 1 else None
                    yield (
                        gateway.id.encode(),
                        self._encode(g, seq, frame, start_ms, watermark),
                        frame[3],
                    )

    def spans(self, shape: Shape, seconds: int) -> int:
        return seconds // shape.span_s

    def last_sample_ms(self, shape: Shape, span: int, *, start_ms: int = DEFAULT_START_MS) -> int:
        """When the fleet takes the last sample of span `span`: the earliest a gateway can
        seal the span's frames. Its next poll comes at or after the span's end, which is
        why the frames can promise that end as their watermark already then."""
        last_row = (span + 1) * shape.span_s - 1
        return start_ms + int(self.recording.t_ms[last_row, self._base_used].max())

    @cached_property
    def _base_used(self) -> np.ndarray:
        """The base boilers this fleet replays (`last_sample_ms` runs every span)."""
        return np.unique(np.concatenate(self.columns))

    # -- internals ---------------------------------------------------------------

    def _frames(
        self, g: int, shape: Shape, first: int
    ) -> Iterator[tuple[list[int], np.ndarray, dict[str, np.ndarray], int]]:
        """(boiler positions in the gateway, t_ms, channel columns, readings) per message."""
        rec = self.recording
        cols = self.columns[g]
        rows = slice(first, first + shape.span_s)
        t = rec.t_ms[rows][:, cols]  # (span, m)
        v = rec.values[:, rows][:, :, cols]  # (C, span, m)
        m = cols.size
        groups = (
            [list(range(m))]
            if shape.boilers is None
            else [list(range(i, min(i + shape.boilers, m))) for i in range(0, m, shape.boilers)]
        )
        for members in groups:
            tt = t[:, members].reshape(-1)  # time-major: sample k of every member, then k+1
            vv = v[:, :, members].reshape(N_CHANNELS, -1)
            if shape.one_channel:
                for c, name in enumerate(CHANNEL_NAMES):
                    yield members, tt, {name: vv[c]}, tt.size
            else:
                yield members, tt, dict(zip(CHANNEL_NAMES, vv, strict=True)), tt.size * N_CHANNELS

    def _encode(
        self,
        g: int,
        seq: int,
        frame: tuple[list[int], np.ndarray, dict[str, np.ndarray], int],
        start_ms: int,
        watermark_ms: int | None,
    ) -> bytes:
        members, t_rel, channels, _ = frame
        gateway = self.inventory.gateways[g]
        t = t_rel + start_ms
        t0 = int(t.min())
        n_members = len(members)
        data: dict[str, object] = {
            "schema_name": "telemetry.frame",
            "schema_version": 3,
            "event_id": f"{gateway.id}:{seq}",
            "gateway": gateway.id,
            "seq": seq,
            "site": gateway.site,
            "event_time_ms": t0,
            "ingest_time_ms": int(t.max()) + INGEST_DELAY_MS,
            "boilers": [gateway.boilers[i] for i in members],
            "boiler_idx": list(range(n_members)) * (t.size // n_members),
            "dt_ms": (t - t0).tolist(),
        }
        for name, column in channels.items():
            data[name] = _nullable(column)
        if watermark_ms is not None:
            data["watermark_ms"] = watermark_ms
        return orjson.dumps(data)


def _nullable(column: np.ndarray) -> list[float | None]:
    if np.isnan(column).any():
        return [None if math.isnan(x) else x for x in column.tolist()]
    values: list[float | None] = column.tolist()
    return values


def check_encoding(messages: list[Message]) -> None:
    """The harness's messages are byte for byte what the project's encoder writes."""
    from heatstream.schemas.serde import decode_raw, encode

    for _, value in messages[:3]:
        if encode(decode_raw(value)) != value:
            raise AssertionError("benchmark frames differ from heatstream.schemas.serde.encode")


def readings_of(messages: list[Message]) -> int:
    """Readings carried by messages (decoding them: for small lists only)."""
    from heatstream.schemas.serde import decode_raw
    from heatstream.schemas.telemetry import TelemetryFrame

    total = 0
    for _, value in messages:
        frame = decode_raw(value)
        if isinstance(frame, TelemetryFrame):
            total += frame.n_readings
    return total
