"""Replay: rebuild every derived event and InfluxDB measurement from the raw log.

Reads the raw topic from offset 0 up to its end at the time of the call, and
returns once it has read that far (messages published meanwhile are not waited
for). Each partition's messages go in order to a fresh `Processor` (the same
code the worker runs); what comes out goes to the derived topics (optionally
under another prefix, to compare with the live ones) and/or straight to
InfluxDB through the sink's point mapping and writer. Because the processor
depends only on the order of the log, the result equals what the live worker
produced, and because points are idempotent, writing them again overwrites
rather than adds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from heatstream.errors import HeatstreamError
from heatstream.inventory import Inventory
from heatstream.kafka_security import client_kwargs, start_client
from heatstream.schemas.errors import EventError
from heatstream.schemas.serde import RawEvent, decode_raw, encode
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.schemas.topics import RAW_EVENTS, topic_name
from heatstream.settings import Settings
from heatstream.sinks.downsample import DownsampleParams, Downsampler
from heatstream.sinks.isolate import write_isolating
from heatstream.sinks.lineprotocol import Point, encode_points, precision_for
from heatstream.sinks.options import SinkOptions
from heatstream.sinks.points import points_of
from heatstream.sinks.writers import build_writer
from heatstream.streams.params import processor_params
from heatstream.streams.processor import Origin, Processor

WRITE_BATCH = 5000
#: Records taken from the consumer at a time: bounds the work between two
#: progress reports and flushes.
FETCH_MAX_RECORDS = 20_000
#: Seconds in which no partition short of its end moves forward before the
#: replay gives up: a broker that stops serving fetches must not hang it.
STALL_S = 30.0


class ReplayStalled(HeatstreamError, RuntimeError):
    """The raw log stopped coming before the replay reached the end it started with."""

    def __init__(self, topic: str, behind: dict[int, tuple[int, int]]) -> None:
        self.topic = topic
        self.behind = behind  # partition -> (position, end offset at the start)
        where = ", ".join(
            f"partition {p} at offset {pos} of {end}" for p, (pos, end) in sorted(behind.items())
        )
        super().__init__(
            f"no record from {topic} for {STALL_S:.0f} s, short of its end at the start: {where}; "
            "check that the broker is up and serves these partitions"
        )


@dataclass(slots=True)
class ReplayStats:
    messages: int = 0
    readings: int = 0
    derived: int = 0
    points: int = 0
    rejected_points: int = 0
    wall_s: float = 0.0
    by_topic: dict[str, int] = field(default_factory=dict)

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.wall_s if self.wall_s else 0.0


async def replay(
    settings: Settings,
    inventory: Inventory,
    *,
    to_topics: bool = True,
    output_prefix: str | None = None,
    to_influx: bool = True,
    options: SinkOptions | None = None,
    on_progress: Callable[[ReplayStats, int, int], None] | None = None,
) -> ReplayStats:
    """Replay the whole raw log once; returns what was done."""
    kafka = settings.kafka
    raw_topic = topic_name(RAW_EVENTS, kafka.topic_prefix)
    out_prefix = kafka.topic_prefix if output_prefix is None else output_prefix
    options = options or SinkOptions()
    sample_params = DownsampleParams(
        bucket_ms=options.downsample_s * 1000,
        lateness_ms=options.lateness_s * 1000,
        idle_ms=options.idle_close_s * 1000,
    )
    stats = ReplayStats()
    started = time.monotonic()
    params = processor_params(settings)
    processors: dict[int, Processor] = {}
    samplers: dict[int, Downsampler] = {}
    connection = client_kwargs(kafka)  # bootstrap, TLS and SASL, as every client
    consumer = AIOKafkaConsumer(
        **connection,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 2**20,
        max_partition_fetch_bytes=16 * 2**20,
    )
    producer = AIOKafkaProducer(**connection, acks="all", linger_ms=20) if to_topics else None
    writer = build_writer(settings.influxdb) if to_influx else None
    points: list[Point] = []
    # One write to InfluxDB in flight while the next points are computed: the
    # database works on the other core meanwhile. Writes stay in order.
    writing: asyncio.Task[None] | None = None

    async def write_points(batch: list[Point]) -> None:
        assert writer is not None
        precision = precision_for(batch)
        lines = encode_points(batch, precision)

        async def write(chunk: list[bytes] | tuple[bytes, ...]) -> None:
            await writer.write(chunk, precision)

        rejected = await write_isolating(write, lines)
        stats.points += len(lines) - len(rejected)
        stats.rejected_points += len(rejected)

    async def flush_points(last: bool = False) -> None:
        nonlocal points, writing
        batch, points = points, []
        if writing is not None:
            await writing  # its error, if any, ends the replay here
            writing = None
        if writer is not None and batch:
            writing = asyncio.create_task(write_points(batch))
        if last and writing is not None:
            await writing
            writing = None

    await start_client(consumer.start, kafka)
    if producer is not None:
        try:
            await start_client(producer.start, kafka)
        except BaseException:
            await consumer.stop()
            raise
    if writer is not None:
        await writer.start()
    try:
        parts = [
            TopicPartition(raw_topic, p)
            for p in sorted(consumer.partitions_for_topic(raw_topic) or [])
        ]
        if not parts:
            await consumer.topics()
            parts = [
                TopicPartition(raw_topic, p)
                for p in sorted(consumer.partitions_for_topic(raw_topic) or [])
            ]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        # The log as it stands now is what is replayed: records produced meanwhile
        # may come in the same fetches and be processed too, but are never waited for.
        ends = await consumer.end_offsets(parts)
        total = sum(ends.values())
        positions = {tp: await consumer.position(tp) for tp in parts}
        todo = {tp for tp in parts if positions[tp] < ends[tp]}
        pending: list[asyncio.Future] = []

        async def handle(batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
            if not batch:
                return
            for tp, records in sorted(batch.items(), key=lambda kv: kv[0].partition):
                proc = processors.setdefault(tp.partition, Processor(inventory, params))
                sampler = samplers.setdefault(tp.partition, Downsampler(sample_params))
                for record in records:
                    stats.messages += 1
                    raw = record.value or b""
                    origin = Origin(raw_topic, tp.partition, record.offset, record.timestamp)
                    for emit in proc.process(raw, record.key, origin):
                        stats.derived += 1
                        name = out_prefix + emit.topic.name
                        stats.by_topic[name] = stats.by_topic.get(name, 0) + 1
                        if producer is not None:
                            pending.append(
                                await producer.send(name, encode(emit.event), key=emit.key.encode())
                            )
                        if writer is not None:
                            points.extend(points_of(emit.event))
                    if writer is not None and options.downsample_s > 0:
                        points.extend(
                            _downsampled(sampler, proc.last_event, raw, record.offset, inventory)
                        )
            if len(points) >= WRITE_BATCH:
                await flush_points()
            if len(pending) > 10_000:
                await asyncio.gather(*pending)
                pending.clear()
            stats.readings = sum(p.counters.readings for p in processors.values())
            if on_progress is not None:
                stats.wall_s = time.monotonic() - started
                on_progress(stats, total, stats.messages)

        moved = time.monotonic()
        while todo:
            batch = await consumer.getmany(timeout_ms=500, max_records=FETCH_MAX_RECORDS)
            await handle(batch)
            now = {tp: await consumer.position(tp) for tp in todo}
            if any(now[tp] != positions[tp] for tp in todo):  # only partitions short of their end
                moved = time.monotonic()
            positions.update(now)
            todo = {tp for tp in todo if positions[tp] < ends[tp]}
            if todo and time.monotonic() - moved > STALL_S:
                raise ReplayStalled(
                    raw_topic, {tp.partition: (positions[tp], ends[tp]) for tp in todo}
                )
        # Some brokers (Tansu 0.6, the embedded one) report as a partition's end the
        # base offset of its last record batch + 1, short of the real end. A fetch
        # returns whole batches, so once the position has passed that end the rest of
        # the last batch is already in the consumer's buffer, but `max_records` may
        # have split it: take everything buffered (no limit, no wait). With true end
        # offsets this finds nothing, or only records produced since the start.
        await handle(await consumer.getmany(timeout_ms=0))
        await flush_points(last=True)
        if pending:
            await asyncio.gather(*pending)
    finally:
        if writing is not None:  # the replay failed elsewhere: do not leave it running
            writing.cancel()
            await asyncio.gather(writing, return_exceptions=True)
        await consumer.stop()
        if producer is not None:
            await producer.stop()
        if writer is not None:
            await writer.close()
    stats.readings = sum(p.counters.readings for p in processors.values())
    stats.wall_s = time.monotonic() - started
    return stats


def _downsampled(
    sampler: Downsampler, accepted: RawEvent | None, raw: bytes, offset: int, inventory: Inventory
) -> list[Point]:
    """The raw-telemetry points the sink would land for this message (same rules).

    `accepted` is the event the processor decoded from it (None: refused). The
    sink checks less than the processor (no signature, no key), so a refused
    message is decoded again and judged by the sink's rules."""
    if accepted is not None:
        frame = accepted
    else:
        try:
            frame = decode_raw(raw)
        except EventError:
            return []
    if not isinstance(frame, TelemetryFrame):
        return []
    if accepted is None and not all(inventory.owns(frame.gateway, b) for b in frame.boiler_ids):
        return []
    return [flushed.point for flushed in sampler.add(frame, offset)]
