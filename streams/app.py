"""The Faust application: topics, one state table and one agent, wiring only.

The agent reads raw messages as bytes (decoding is the core's job, so that a
malformed message becomes a dead letter instead of a crashed stream), hands
them to the partition's `Processor` and sends what it returns. State lives in
one RocksDB-backed table, co-partitioned with the raw topic (whose key is the
gateway id), in small rows: one per gateway, one per group of a few of its
boilers, and delta rows of the samples taken since those were written (see
`Processor.dirty_rows`), so that no changelog record grows with the fleet
behind a gateway and a live frame costs about two records. After each batch of messages, once what they
emitted is acknowledged, the rows the batch changed are written back, so a
worker killed at any point recovers a state no newer than its acknowledged
outputs. Adding worker
processes spreads the partitions, i.e. the gateways.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import weakref
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import TP

from heatstream.inventory import Inventory
from heatstream.schemas.serde import encode
from heatstream.schemas.topics import (
    DATA_QUALITY,
    HEALTH,
    RAW_EVENTS,
    TOPICS,
    TopicSpec,
    topic_name,
)
from heatstream.settings import Settings
from heatstream.streams.faust_fixes import (
    fix_buffer_flush,
    fix_flow_resume,
    fix_gap_commits,
    fix_recovery_ends,
)
from heatstream.streams.health import WorkerHealth
from heatstream.streams.params import processor_params  # still importable from here
from heatstream.streams.probes import LatencySensor, consumer_lag
from heatstream.streams.processor import Origin, Processor
from heatstream.streams.store import store_url

log = logging.getLogger(__name__)

STATE_TABLE = "processor-state"  # its changelog topic: "<app id>-processor-state-changelog"
BATCH_MAX = 1000
BATCH_WITHIN_S = 0.2
#: RocksDB keeps one database per partition, each with up to
#: max_write_buffer_number memtables of write_buffer_size (Faust's defaults:
#: 3 x 64 MiB). Live writes are small (a delta row per frame, ~30 KB/s per
#: partition at 1,000 boilers), so a 64 MiB memtable took half an hour to fill
#: and the worker's memory grew all that time; 2 MiB ones fill in about a minute
#: and bound the memtables at 4 MiB a partition.
ROCKSDB_OPTIONS = {"write_buffer_size": 2 * 2**20, "max_write_buffer_number": 2}


def broker_url(settings: Settings) -> str:
    return ";".join(f"kafka://{host}" for host in settings.kafka.bootstrap.split(","))


def build_app(
    settings: Settings, inventory: Inventory, *, datadir: Path | None = None
) -> faust.App:
    """A Faust app for these settings; nothing connects until it is started."""
    fix_gap_commits()  # see streams/faust_fixes.py: restarts stalled 34-88 s without it
    fix_buffer_flush()  # see streams/faust_fixes.py: offsets committed ahead of table rows
    kafka = settings.kafka
    app = faust.App(
        settings.app_id,
        broker=broker_url(settings),
        store="rocksdb://",
        datadir=str(datadir or settings.stack.data_dir / "worker"),
        web_enabled=False,
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.streams.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.streams.session_timeout_s / 5),
        broker_commit_interval=1.0,
        # The changelog rows of a batch are awaited (see `intake`): 16 KiB record
        # batches made that wait a fifth of the worker's time at 10,000 boilers.
        producer_max_batch_size=settings.streams.producer_batch_kib * 1024,
        stream_wait_empty=False,
        key_serializer="raw",
        value_serializer="raw",
        **_security(settings),
    )
    fix_recovery_ends(app, kafka)  # see streams/faust_fixes.py: rows lost on the embedded broker
    fix_flow_resume(app)  # see streams/faust_fixes.py: records dropped as the streams start
    topics: dict[str, Any] = {
        spec.name: app.topic(
            topic_name(spec, kafka.topic_prefix),
            key_type=bytes,
            value_type=bytes,
            partitions=spec.partitions or kafka.partitions,
            internal=False,
        )
        for spec in TOPICS
    }
    state = app.Table(
        STATE_TABLE,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=kafka.partitions,
        store=store_url(STATE_TABLE),  # RocksDB without its write-ahead log: see streams/store.py
        options=dict(ROCKSDB_OPTIONS),  # Faust pops keys from the dict it gets
    )
    params = processor_params(settings)
    processors: dict[int, Processor] = {}

    # Faust's stub wants a receiver taking `signal=`; it passes the sender and the
    # revoked set, as this one takes them.
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _forget(app: faust.App, revoked: set[TP], **_: Any) -> None:
        # Another worker may process these partitions now; our copies go stale.
        for tp in revoked:
            processors.pop(tp.partition, None)

    def processor_for(partition: int) -> Processor:
        proc = processors.get(partition)
        if proc is None:
            proc = processors[partition] = Processor(inventory, params)
        return proc

    names = {name: topic.get_topic_name() for name, topic in topics.items()}

    async def send(spec: TopicSpec, key: str, payload: bytes) -> Awaitable[Any]:
        # Straight to the app's producer, where Faust's Topic.send ends up: the
        # bytes are already encoded, and its per-event wrapping (a future message,
        # codec lookups, sensor calls, a completion callback) is left out.
        producer = app.producer
        if not producer.started:  # the app starts it before its agents and timers
            producer = await app.maybe_start_producer()
        return await producer.send(
            names[spec.name], key.encode(), payload, partition=None, timestamp=None, headers=None
        )

    def put_rows(rows: list[tuple[bytes, bytes]], last_event: Any) -> None:
        # Faust picks a table key's changelog partition from the event being
        # processed; after a batch, name the partition's last one. Every row of
        # a processor (a boiler's too: it goes with the gateway that owns it)
        # belongs to that partition.
        token = _current_event.set(weakref.ref(last_event))
        try:
            for row_key, value in rows:
                state[row_key] = value
        finally:
            _current_event.reset(token)

    @app.agent(topics[RAW_EVENTS.name], name="intake")
    async def intake(stream: faust.StreamT[bytes]) -> None:
        # Batches amortise the two per-message costs that dominate: waiting for
        # the broker to acknowledge what we emitted, and the changelog records of
        # the state. Both happen once per batch (state: once per changed row).
        # `take_events` is Stream's; Faust's StreamT protocol does not declare it.
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):  # type: ignore[attr-defined]
            pending: list[Awaitable[Any]] = []
            # partition -> (its processor, its last event in the batch)
            touched: dict[int, tuple[Processor, Any]] = {}
            for event in events:
                message = event.message
                raw: bytes = message.value if message.value is not None else b""
                key: bytes | None = message.key
                proc = processor_for(message.partition)
                gateway = proc.gateway_of(key, raw)
                if gateway is not None and proc.needs_import(gateway):
                    # First message of this gateway here (start, rebalance):
                    # its row and those of the boilers it owns. The store reads
                    # a key from the partition of the current event, which in a
                    # batch is the last one taken: name this one.
                    token = _current_event.set(weakref.ref(event))
                    try:
                        proc.import_rows(gateway, state.get)
                    finally:
                        _current_event.reset(token)
                origin = Origin(
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    timestamp_ms=int(message.timestamp * 1000),
                )
                for emit in proc.process(raw, key, origin):
                    pending.append(await send(emit.topic, emit.key, encode(emit.event)))
                touched[message.partition] = (proc, event)
            # State is written only once what it emitted is acknowledged: after
            # a crash the state may lag (outputs re-emitted with identical bytes,
            # de-duplicated by key downstream) but never lead (an output lost).
            if pending:
                await asyncio.gather(*pending)
            changed = [(proc.dirty_rows(), last_event) for proc, last_event in touched.values()]
            # A batch's rows go to the changelog together; a restart restores them
            # up to the partition's real end (fix_recovery_ends), whatever the
            # broker lists as its end.
            for rows, last_event in changed:
                put_rows(rows, last_event)

    async def wall_clock_liveness() -> None:
        # The live-only check of DESIGN.md: a gateway alone on its partition
        # cannot be seen silent in event time. Not part of the replayable
        # projection: its issues depend on the wall clock.
        now_ms = int(time.time() * 1000)
        for proc in list(processors.values()):
            for issue in proc.liveness.check_wall(now_ms):
                await send(DATA_QUALITY, issue.key, encode(issue))

    if settings.streams.liveness_check_s > 0:
        app.timer(interval=settings.streams.liveness_check_s)(wall_clock_liveness)

    # The worker's own pipeline health (streams/health.py), to the health topic:
    # cumulative counters and lag of this process, by the wall clock, so not
    # part of the replayable projection either.
    raw_topic = topic_name(RAW_EVENTS, kafka.topic_prefix)
    health = WorkerHealth(
        settings.streams.process_name or socket.gethostname(),
        started_ms=time.time_ns() // 1_000_000,
        started_s=time.monotonic(),
    )

    async def publish_health() -> None:
        sample = health.sample(
            [proc.counters for proc in list(processors.values())],
            consumer_lag(app, raw_topic),
            time_ms=time.time_ns() // 1_000_000,
            now_s=time.monotonic(),
        )
        await send(HEALTH, sample.key, encode(sample))

    if settings.streams.health_interval_s > 0:
        app.sensors.add(LatencySensor(health.latency, raw_topic))
        app.timer(interval=settings.streams.health_interval_s)(publish_health)

    app.heatstream_processors = processors  # type: ignore[attr-defined]
    return app


def _security(settings: Settings) -> dict[str, Any]:
    # The same checks and TLS context as every other client (heatstream.kafka_security).
    from heatstream.kafka_security import faust_credentials

    return faust_credentials(settings.kafka)
