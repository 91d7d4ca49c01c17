"""Ceilings on the real embedded broker and InfluxDB, and the clients the harness needs.

* produce: the harness's own aiokafka producer loading a topic (not a pipeline
  stage, but it bounds how fast a benchmark can be fed);
* raw consume: a bare aiokafka consumer reading the same messages with no
  processing: the ceiling of every Kafka-fed stage;
* InfluxDB write ceiling: pre-encoded lines POSTed to `/write` in batches of
  5,000, uncompressed, one request at a time (as the sink writes);
* InfluxDB write through heatstream's `V1Writer` (gzip), the sink's write stage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.results import Figure
from benchmarks.workload import Message
from heatstream.schemas.derived import HeatWindow
from heatstream.settings import InfluxSettings, KafkaSettings
from heatstream.sinks.lineprotocol import encode_points
from heatstream.sinks.points import points_of
from heatstream.sinks.writers.v1 import V1Writer
from heatstream.stack.provision import create_database, create_topics

BATCH_POINTS = 5000


async def provision(bootstrap: str, prefix: str, partitions: int) -> None:
    await create_topics(
        bootstrap, KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix, partitions=partitions)
    )


async def produce(bootstrap: str, topic: str, messages: Sequence[Message]) -> float:
    """Send every message (acks=all); seconds taken."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
    )
    await producer.start()
    try:
        t = time.perf_counter()
        pending = []
        for key, value in messages:
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return time.perf_counter() - t
    finally:
        await producer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if parts is None:
            await consumer._client.force_metadata_update()  # aiokafka has no public call
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def last_record_ms(bootstrap: str, topic: str, timeout_s: float = 10.0) -> int | None:
    """The latest timestamp (producer's clock, ms) among the last records of `topic`'s
    partitions; None if it has none.

    Tansu 0.6 reports a partition's end as the base offset of its last record
    batch + 1: reading from there - 1 returns that whole batch, whose records are
    all looked at.
    """
    ends = {p: end for p, end in (await end_offsets(bootstrap, topic)).items() if end > 0}
    if not ends:
        return None
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, ends[tp.partition] - 1)
        latest: int | None = None
        pending = set(tps)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                newest = max(r.timestamp for r in records)
                latest = newest if latest is None else max(latest, newest)
                pending.discard(tp)
        return latest
    finally:
        await consumer.stop()


class Committed:
    """Reads a consumer group's committed offsets without joining the group.

    (`AIOKafkaAdminClient.list_consumer_group_offsets` fails against Tansu 0.6:
    aiokafka cannot decode its OffsetFetch answer; a group-less fetch through a
    consumer carrying the group id works.)
    """

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]

    async def __aenter__(self) -> Committed:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def total(self) -> int:
        offsets = await asyncio.gather(*(self._consumer.committed(tp) for tp in self._tps))
        return sum(o for o in offsets if o is not None and o > 0)


async def consume_all(bootstrap: str, topic: str, expected: int) -> tuple[float, int]:
    """Read `expected` messages from the start of `topic` with no processing: (seconds, bytes)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=16 << 20,
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = size = 0
        t = time.perf_counter()
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                seen += len(records)
                size += sum(len(r.value or b"") for r in records)
            if time.perf_counter() - t > 600:
                raise TimeoutError(f"read {seen} of {expected} messages from {topic}")
        return time.perf_counter() - t, size
    finally:
        await consumer.stop()


async def kafka_ceilings(
    bootstrap: str, prefix: str, partitions: int, messages: Sequence[Message], readings: int
) -> list[Figure]:
    from heatstream.schemas.topics import RAW_EVENTS, topic_name

    await provision(bootstrap, prefix, partitions)
    topic = topic_name(RAW_EVENTS, prefix)
    t_produce = await produce(bootstrap, topic, messages)
    # Best of three: a wall-clock figure on a machine other processes share.
    t_consume, size = min([await consume_all(bootstrap, topic, len(messages)) for _ in range(3)])
    n = len(messages)
    return [
        Figure(
            "produce_readings_per_s",
            readings / t_produce,
            "readings/s",
            "harness producer into the broker (aiokafka, acks=all)",
            note=f"{n / t_produce:,.0f} messages/s",
        ),
        Figure(
            "aiokafka_consume_readings_per_s",
            readings / t_consume,
            "readings/s",
            "CEILING raw aiokafka consume, same messages",
            note=f"{n / t_consume:,.0f} messages/s, {size / t_consume / 2**20:,.0f} MiB/s, "
            "best of 3 reads",
        ),
        Figure(
            "aiokafka_consume_messages_per_s",
            n / t_consume,
            "messages/s",
            "CEILING raw aiokafka consume (messages)",
        ),
    ]


# -- InfluxDB -------------------------------------------------------------------


def heat_window_lines(template: HeatWindow, boilers: int, points: int) -> list[bytes]:
    """`points` distinct heat_window lines (boilers x minutes), encoded by heatstream."""
    out: list[bytes] = []
    minutes = -(-points // boilers)
    for m in range(minutes):
        for b in range(boilers):
            if len(out) >= points:
                return out
            w = template.model_copy(
                update={
                    "boiler": f"boiler-{b + 1:05d}",
                    "window_start_ms": template.window_start_ms + m * 60_000,
                    "window_end_ms": template.window_end_ms + m * 60_000,
                }
            )
            out.extend(encode_points(points_of(w), "ms"))
    return out


async def _post_all(url: str, database: str, lines: list[bytes]) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
        bodies = [
            b"\n".join(lines[i : i + BATCH_POINTS]) for i in range(0, len(lines), BATCH_POINTS)
        ]
        t = time.perf_counter()
        for body in bodies:
            r = await client.post(
                "/write", params={"db": database, "precision": "ms"}, content=body
            )
            r.raise_for_status()
        return time.perf_counter() - t


async def _writer_all(url: str, database: str, lines: list[bytes]) -> float:
    writer = V1Writer(InfluxSettings(url=url, database=database))
    await writer.start()
    try:
        t = time.perf_counter()
        for i in range(0, len(lines), BATCH_POINTS):
            await writer.write(lines[i : i + BATCH_POINTS], "ms")
        return time.perf_counter() - t
    finally:
        await writer.close()


async def influx_figures(url: str, run_id: str, template: HeatWindow, points: int) -> list[Figure]:
    """Both writers write the same points, each into its own database, after the same
    untimed warm-up (one point per series): InfluxDB creates a series once, the sink's
    steady state is new timestamps on existing series."""
    db_raw, db_writer = f"bench_{run_id}_ceiling", f"bench_{run_id}_writer"
    await create_database(url, db_raw)
    await create_database(url, db_writer)
    boilers = min(10_000, points)
    lines = heat_window_lines(template, boilers=boilers, points=points + boilers)
    warm, lines = lines[:boilers], lines[boilers:]
    await _post_all(url, db_raw, warm)
    await _post_all(url, db_writer, warm)
    t_raw = await _post_all(url, db_raw, lines)
    t_writer = await _writer_all(url, db_writer, lines)
    return [
        Figure(
            "influx_write_ceiling_points_per_s",
            len(lines) / t_raw,
            "points/s",
            "CEILING InfluxDB /write, pre-encoded lines, 5k/batch",
            note=f"{len(lines):,} heat_window points on {boilers:,} series, "
            f"{sum(map(len, lines)) / len(lines):.0f} B/line, uncompressed, one request at a time",
        ),
        Figure(
            "influx_write_points_per_s",
            len(lines) / t_writer,
            "points/s",
            "InfluxDB write via heatstream V1Writer (gzip 5)",
            "influx_write_ceiling_points_per_s",
        ),
    ]
