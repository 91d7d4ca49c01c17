"""The sink's runtime: Kafka in, InfluxDB out, offsets committed only after the write.

Three tasks share one `Sink`:

* **consume**: `getmany` from the derived topics, the dead-letter and
  late-event topics, the health topic (the workers' samples) and
  (downsampled, `rawlanding.py`) the raw topic; each
  message becomes points (`points.py`) in the open batch, which is sealed when
  full or `flush_interval_s` old, together with the offsets it makes
  committable.
* **write**: lands sealed batches one after the other (`landing.py`): retries
  while InfluxDB is unavailable, dead-letters the lines it refuses, then
  commits the batch's offsets. At-least-once, and idempotent because points
  are deterministic: a redelivery overwrites the same points.
* **health**: adds the sink's own `pipeline_health` point every
  `health_interval_s` (the workers' arrive through the health topic).

Backpressure: when the points buffered or being written reach
`max_in_flight_points`, every assigned partition is paused until half of them
are acknowledged, so a slow or stopped InfluxDB bounds memory instead of
growing it (at most the limit plus one poll's worth).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from heatstream.inventory import Inventory
from heatstream.kafka_security import start_client
from heatstream.schemas import topics
from heatstream.schemas.errors import EventError
from heatstream.schemas.serde import decode_derived
from heatstream.settings import Settings
from heatstream.sinks.batcher import Batch, Batcher
from heatstream.sinks.deadletters import DeadLetterSender, Origin, dead_letter
from heatstream.sinks.downsample import DownsampleParams
from heatstream.sinks.errors import InfluxUnavailable
from heatstream.sinks.health import HealthReporter, SinkCounters
from heatstream.sinks.kafka import client_kwargs
from heatstream.sinks.landing import Lander, Landings
from heatstream.sinks.lineprotocol import Point
from heatstream.sinks.options import SinkOptions
from heatstream.sinks.points import points_of
from heatstream.sinks.rawlanding import RawLanding
from heatstream.sinks.retry import RetryPolicy, retrying
from heatstream.sinks.writers import Writer, build_writer

log = logging.getLogger("heatstream.sink")

#: Topics landed point by point (the raw topic is landed downsampled).
DERIVED_TOPICS = (
    topics.HEAT_WINDOWS,
    topics.ANOMALIES,
    topics.LEAKS,
    topics.DATA_QUALITY,
    topics.DEAD_LETTERS,
    topics.LATE_EVENTS,
    topics.HEALTH,
)
_POLL_S = 0.5
_WRITER_CHECK_S = 0.02  # caught up with a batch open: how often to look if the writer is idle


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Sink:
    """Consumes heatstream's topics into InfluxDB; build it with `build_sink`, run it once."""

    def __init__(
        self,
        settings: Settings,
        options: SinkOptions,
        *,
        writer: Writer | None = None,
        inventory: Inventory | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        prefix = settings.kafka.topic_prefix
        self.derived_topics = tuple(topics.topic_name(t, prefix) for t in DERIVED_TOPICS)
        self.raw_topic = (
            topics.topic_name(topics.RAW_EVENTS, prefix) if options.downsampling else None
        )
        self.dead_letter_topic = topics.topic_name(topics.DEAD_LETTERS, prefix)
        self.group_id = f"{settings.app_id}-sink"
        self.writer = writer or build_writer(
            settings.influxdb, timeout_s=options.request_timeout_s, gzip_level=options.gzip_level
        )
        self.policy = RetryPolicy(
            initial_s=options.backoff_initial_s,
            max_s=options.backoff_max_s,
            multiplier=options.backoff_multiplier,
            jitter=options.backoff_jitter,
            max_retries=options.max_retries,
        )
        self.counters = SinkCounters()
        self.raw = RawLanding(
            DownsampleParams(
                bucket_ms=options.downsample_s * 1000,
                lateness_ms=options.lateness_s * 1000,
                idle_ms=options.idle_close_s * 1000,
            ),
            options.warmup_messages,
            self.counters,
            inventory,
        )
        self.batcher = Batcher(options.batch_size, options.flush_interval_s)
        self._health = HealthReporter(self.counters, options.process_name or socket.gethostname())
        self.paused = False
        self._in_flight = 0  # points in sealed batches not yet acknowledged
        self._queue: asyncio.Queue[Batch | None] = asyncio.Queue()
        self._positions: dict[TopicPartition, int] = {}  # next offset after what was processed
        self._floor: dict[TopicPartition, int] = {}  # never commit below the start position
        self._committed: dict[TopicPartition, int] = {}
        self._read_to: dict[TopicPartition, int] = {}  # offset after the last message read
        self._caught_up = False  # read to the end since the last seal
        self._dirty: set[TopicPartition] = set()
        self._stop_consuming = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._lander: Lander | None = None
        self._landings: Landings | None = None

    # -- what and where ----------------------------------------------------

    @property
    def topics(self) -> tuple[str, ...]:
        return (*self.derived_topics, *((self.raw_topic,) if self.raw_topic else ()))

    @property
    def in_flight_points(self) -> int:
        """Points collected or being written, not yet acknowledged by InfluxDB."""
        return self._in_flight + self.batcher.pending

    def describe(self) -> str:
        raw = (
            f"; raw telemetry from {self.raw_topic} as {self.options.downsample_s} s means"
            if self.raw_topic
            else "; raw telemetry not landed (downsampling off)"
        )
        return (
            f"reading {', '.join(self.derived_topics)}{raw} at {self.settings.kafka.bootstrap} "
            f"(consumer group {self.group_id}); writing to {self.writer.describe()}"
        )

    # -- lifecycle ---------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` is set (then flush and commit what it can) or a fatal error."""
        stop = stop or asyncio.Event()
        await self.writer.start()
        tasks: list[asyncio.Task[Any]] = []
        try:
            if not await self._influx_ready(stop):
                return
            await self._start_kafka()
            tasks = [
                asyncio.create_task(self._consume(), name="sink-consume"),
                asyncio.create_task(self._write_loop(), name="sink-write"),
                asyncio.create_task(self._health_loop(), name="sink-health"),
            ]
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            for task in done - {stopper}:
                failure = task.exception()
                if failure is not None:  # InfluxConfigError, RetriesExhausted, a bug...
                    raise failure
            await self._shutdown(tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._stop_clients()

    async def _influx_ready(self, stop: asyncio.Event) -> bool:
        """Wait until InfluxDB takes writes (False: stopped first); config errors raise."""
        check = asyncio.create_task(
            retrying(self.writer.check, self.policy, on_retry=self._waiting_for_influx)
        )
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([check, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not check.done():
            check.cancel()
            await asyncio.gather(check, return_exceptions=True)
            return False
        check.result()
        return True

    async def _start_kafka(self) -> None:
        kwargs = client_kwargs(self.settings.kafka)
        session_ms = int(self.options.session_timeout_s * 1000)
        self._consumer = AIOKafkaConsumer(
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, session_ms // 5),
            fetch_max_wait_ms=self.options.fetch_max_wait_ms,
            **kwargs,
        )
        self._consumer.subscribe(list(self.topics), listener=_Listener(self))
        self._producer = AIOKafkaProducer(acks="all", enable_idempotence=False, **kwargs)
        # A refused certificate or password stops the sink (KafkaAuthError), saying why.
        await start_client(self._consumer.start, self.settings.kafka)
        await start_client(self._producer.start, self.settings.kafka)
        dead_letters = DeadLetterSender(self._producer, self.dead_letter_topic, self.policy)
        self._lander = Lander(self.writer, self.policy, dead_letters, self._commit, self.counters)

    async def _shutdown(self, tasks: list[asyncio.Task[Any]]) -> None:
        consume, write, health = tasks
        self._stop_consuming.set()
        health.cancel()
        await consume
        self.batcher.add(self._health_point(), None)  # the last interval's counts
        self._seal()
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(write, self.options.close_timeout_s)
        except TimeoutError:
            log.warning(
                "InfluxDB did not take the last %d points within %.0f s; their offsets stay "
                "uncommitted and they will be written after the next start",
                self._in_flight,
                self.options.close_timeout_s,
            )

    async def _stop_clients(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        await self.writer.close()

    # -- consume -----------------------------------------------------------

    async def _consume(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stop_consuming.is_set():
            left = self.batcher.seconds_left()
            wait_s = _POLL_S if left is None else min(_POLL_S, left)
            if self._caught_up and self.batcher.opened:
                wait_s = min(wait_s, _WRITER_CHECK_S)  # to seal once the writer is idle
            records = await consumer.getmany(
                timeout_ms=int(wait_s * 1000), max_records=self.options.max_records
            )
            for tp, messages in records.items():
                self._read_to[tp] = messages[-1].offset + 1
                if tp.topic == self.raw_topic:
                    position = self.raw.take(tp, messages, self._add_bucket)
                    if position is not None:
                        self._positions[tp] = position
                        self._dirty.add(tp)
                        self.batcher.touch()
                else:
                    self._take_derived(tp, messages)
            if records:
                self._caught_up = self._at_end(consumer)
            # Everything there is to read has been read: waiting longer would only add
            # latency (live, a gateway's next frame is a frame span away). Sealed when
            # the writer is idle, so that while a write is in flight the next batch
            # grows; behind the log's end (a replay, a backlog) batches fill up.
            if self.batcher.due() or (
                self._caught_up and self.batcher.opened and self._writer_idle()
            ):
                self._seal()
                self._caught_up = False
            self._apply_backpressure()

    def _at_end(self, consumer: AIOKafkaConsumer) -> bool:
        """Whether every assigned partition has been read up to its high watermark."""
        paused = consumer.paused()
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            read_to = self._read_to.get(tp, self._floor.get(tp, 0))
            if tp in paused or highwater is None or read_to < highwater:
                return False
        return True

    def _add_bucket(self, point: Point, origin: Origin) -> None:
        # A closed telemetry bucket is written once: its batches may be written
        # alongside others (see Landings).
        self.batcher.add(point, origin, write_once=True)

    def _writer_idle(self) -> bool:
        """Whether a batch sealed now would be written at once."""
        landings = self._landings
        return self._queue.empty() and (landings is None or not landings.busy)

    def _take_derived(self, tp: TopicPartition, messages: list[ConsumerRecord[Any, Any]]) -> None:
        for m in messages:
            self.counters.messages += 1
            origin = Origin(tp.topic, tp.partition, m.offset, m.key, m.timestamp)
            value: bytes = m.value if m.value is not None else b""
            try:
                event = decode_derived(value)
            except EventError as exc:
                # Our own worker wrote it, so this is a version skew or a bug: keep it whole.
                self.counters.decode_errors += 1
                self.batcher.add_dead_letter(
                    dead_letter(origin, value, exc.reason, str(exc), _now_ms())
                )
            else:
                for point in points_of(event):
                    self.batcher.add(point, origin)
            self._positions[tp] = m.offset + 1
            self._dirty.add(tp)
            self.batcher.touch()

    def _seal(self) -> None:
        offsets: dict[TopicPartition, int] = {}
        for tp in self._dirty:
            position = self._positions[tp]
            if tp.topic == self.raw_topic:
                position = self.raw.committable(tp.partition, position)
            offsets[tp] = max(position, self._floor.get(tp, 0))
        self._dirty.clear()
        batch = self.batcher.seal(offsets, _now_ms)
        if batch.points or batch.dead_letters or batch.offsets:
            self._in_flight += batch.points
            self._queue.put_nowait(batch)

    def _apply_backpressure(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        load, limit = self.in_flight_points, self.options.max_in_flight_points
        if not self.paused and load >= limit:
            consumer.pause(*consumer.assignment())
            self.paused = True
            log.info("backpressure: %d points in flight, consumption paused", load)
        elif self.paused and load <= limit // 2:
            consumer.resume(*consumer.assignment())
            self.paused = False
            log.info("backpressure released: %d points in flight, consumption resumed", load)

    # -- write -------------------------------------------------------------

    async def _write_loop(self) -> None:
        assert self._lander is not None
        landings = self._landings = Landings(
            self._lander, self.options.write_concurrency, self._landed
        )
        while True:
            batch = await self._queue.get()
            if batch is None:
                await landings.drain()
                return
            await landings.put(batch)

    def _landed(self, batch: Batch) -> None:
        self._in_flight -= batch.points
        self._apply_backpressure()

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        consumer = self._consumer
        assert consumer is not None
        assigned = consumer.assignment()
        todo = {
            tp: offset
            for tp, offset in offsets.items()
            if tp in assigned and offset > self._committed.get(tp, -1)
        }
        if not todo:
            return
        try:
            await consumer.commit(todo)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # Not fatal by design: the points are in InfluxDB, and whoever owns the
            # partition next re-reads from the last commit and overwrites them with
            # identical points. Counted in pipeline_health.commit_failures.
            self.counters.commit_failures += 1
            log.warning("offset commit failed (%r); those messages will be re-read", exc)
            return
        self._committed.update(todo)

    def _waiting_for_influx(self, exc: InfluxUnavailable, delay_s: float) -> None:
        log.warning("waiting for InfluxDB: %s; next try in %.1f s", exc, delay_s)

    # -- health ------------------------------------------------------------

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.health_interval_s)
            self.batcher.add(self._health_point(), None)

    def _health_point(self) -> Point:
        return self._health.point(
            consumer_lag=self._lag(), in_flight_points=self.in_flight_points, paused=self.paused
        )

    def _lag(self) -> int:
        consumer = self._consumer
        if consumer is None:
            return 0
        lag = 0
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            position = self._positions.get(tp, self._floor.get(tp))
            if high is not None and position is not None:
                lag += max(0, high - position)
        return lag

    # -- rebalancing -------------------------------------------------------

    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        consumer = self._consumer
        assert consumer is not None
        for tp in assigned:
            committed = await consumer.committed(tp)
            self._floor[tp] = committed or 0
            self._committed[tp] = committed if committed is not None else -1
            if tp.topic != self.raw_topic:
                continue
            log_start = (await consumer.beginning_offsets([tp]))[tp] if committed else 0
            warmup_from = self.raw.assigned(tp.partition, committed, log_start)
            if warmup_from is not None:
                consumer.seek(tp, warmup_from)
        if self.paused:
            consumer.pause(*assigned)

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        # Land and commit what we have for these partitions if InfluxDB allows it
        # quickly; otherwise the next owner re-reads it (idempotent writes).
        self._seal()
        deadline = time.monotonic() + min(
            self.options.close_timeout_s, self.options.session_timeout_s / 2
        )
        while (self._in_flight or not self._queue.empty()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for tp in revoked:
            for table in (self._positions, self._floor, self._committed, self._read_to):
                table.pop(tp, None)
            self._dirty.discard(tp)
            if tp.topic == self.raw_topic:
                self.raw.revoked(tp.partition)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._sink._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._sink._assigned(set(assigned))


def build_sink(
    settings: Settings,
    options: SinkOptions | None = None,
    *,
    inventory: Inventory | None = None,
    writer: Writer | None = None,
) -> Sink:
    """A sink for these settings; nothing connects until `await sink.run()`."""
    return Sink(settings, options or SinkOptions(), writer=writer, inventory=inventory)
