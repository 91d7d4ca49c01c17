"""The gateway SDK: what gateway software embeds to publish telemetry and compute events.

Flow inside one `Gateway`:

    add_sample ─► FrameBuilder (open frame) ─seal─► seq ─► encode ─► Spool (SQLite, durable)
    publish_columns (numpy) ─► check ─────────────► seq ─► encode ─►   │
    send_compute / send / send_raw ─────────────────────────────────►   │
                                                     SpoolSender ◄──────┘ ─► Kafka (acks=all)

Every event is committed to the spool before it counts as *accepted*, and
leaves it only when the broker acknowledged it: a crash or an outage loses
nothing accepted, at the cost of duplicates downstream de-duplicates by event
id. The Kafka key is the gateway id (see `heatstream.schemas.topics`). With
`config.hmac_key` set, every event is signed as it is encoded for the spool
(`heatstream.schemas.signing`), so spooled messages keep the key of that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeAlias

import numpy as np
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from heatstream.ingest.backoff import Backoff
from heatstream.ingest.columns import (
    EncodedFrame,
    check_columns,
    check_watermark,
    encode_columns,
)
from heatstream.ingest.config import GatewayConfig
from heatstream.ingest.counters import CounterBook, GatewayCounters
from heatstream.ingest.errors import (
    EventRejectedError,
    GatewayClosedError,
    GatewayConfigError,
    SpoolFullError,
)
from heatstream.ingest.frames import FrameBuilder, check_sample
from heatstream.ingest.producer import build_producer, producer_kwargs
from heatstream.ingest.sender import SpoolSender
from heatstream.ingest.sequence import SequenceAllocator
from heatstream.ingest.spool import Spool, SpoolRow
from heatstream.ingest.spoolworker import AsyncSpool
from heatstream.ingest.statelock import StateLock
from heatstream.schemas import signing
from heatstream.schemas.compute import JobFinished, JobStarted, NodeState, PowerCapSet
from heatstream.schemas.envelope import MAX_TIME_MS, MIN_TIME_MS, Envelope, make_event_id
from heatstream.schemas.serde import encode, format_validation_error
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.schemas.topics import RAW_EVENTS, topic_name
from heatstream.settings import KafkaSettings

__all__ = ["EncodedFrame", "Gateway", "GatewayConfig", "GatewayCounters"]

log = logging.getLogger("heatstream.ingest.gateway")

COMPUTE_EVENTS: dict[str, type[Envelope]] = {
    m.model_fields["schema_name"].default: m
    for m in (JobStarted, JobFinished, NodeState, PowerCapSet)
}
_PUBLISHABLE = (TelemetryFrame, JobStarted, JobFinished, NodeState, PowerCapSet, EncodedFrame)
# Record-batch framing, headers and key around a value (aiokafka counts them too).
_MESSAGE_OVERHEAD = 512
_DROP_LOG_EVERY_S = 30.0

Clock = Callable[[], int]
#: What the gateway publishes: validated models, or frames sealed from columns.
Publishable: TypeAlias = Envelope | EncodedFrame
AcceptedHook = Callable[[Sequence[Publishable]], object]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Gateway:
    """One gateway's publisher. Use as `async with Gateway(config, kafka) as gw: ...`.

    `clock_ms` stamps `ingest_time_ms` (a simulator passes its simulated clock to
    get deterministic bytes); `on_accepted` is called with the events of every
    commit to the spool, i.e. once they are accepted; `producer_factory` replaces
    the aiokafka producer (tests).
    """

    def __init__(
        self,
        config: GatewayConfig,
        kafka: KafkaSettings,
        *,
        clock_ms: Clock = wall_clock_ms,
        on_accepted: AcceptedHook | None = None,
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
    ) -> None:
        self.config = config
        self.kafka = kafka
        self.topic = config.topic or topic_name(RAW_EVENTS, kafka.topic_prefix)
        self._clock_ms = clock_ms
        self._on_accepted = on_accepted
        self._make_producer = producer_factory or (lambda: build_producer(config, kafka))
        self._key = config.gateway.encode()
        self._builder = FrameBuilder(
            config.frame_max_samples, config.frame_max_span_ms, config.frame_max_bytes
        )
        self._book = CounterBook()
        self._started = False
        self._lock: StateLock | None = None
        self._seq: SequenceAllocator | None = None
        self._spool: AsyncSpool | None = None
        self._sender: SpoolSender | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background_error: BaseException | None = None
        self._notifier: asyncio.Future[None] | None = None
        # Linger: when the open frame got its first sample, and which frame that was.
        self._frame_opened = asyncio.Event()
        self._frame_opened_at = 0.0
        self._frame_generation = 0
        self._last_pos = 0  # spool position of the latest accepted message
        self._last_drop_log = -_DROP_LOG_EVERY_S

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Open the spool and start sending; works while the broker is unreachable."""
        if self._started:
            return
        config = self.config
        producer_kwargs(config, self.kafka)  # a misconfiguration stops start-up here
        config.state_dir.mkdir(parents=True, exist_ok=True)
        lock = StateLock(config.lock_path)
        lock.acquire()
        try:
            self._seq = SequenceAllocator(config.db_path, config.gateway, block=config.seq_block)
            spool = Spool(
                config.db_path,
                max_bytes=config.spool_max_bytes,
                policy=config.spool_full_policy,
                synchronous=config.spool_synchronous,
                memory_bytes=config.spool_memory_bytes,
            )
        except BaseException:
            if self._seq is not None:
                self._seq.close()
            lock.release()
            raise
        self._lock = lock
        self._spool = AsyncSpool(spool)
        self._book.recovered = self._book.spooled = spool.count
        self._book.spool_bytes = spool.bytes
        if spool.count:
            log.info(
                "gateway %s: %d messages (%d bytes) left in the spool by an earlier run;"
                " sending them first",
                config.gateway,
                spool.count,
                spool.bytes,
            )
        self._sender = SpoolSender(
            spool=self._spool,
            make_producer=self._make_producer,
            topic=self.topic,
            counters=self._book,
            backoff=Backoff(config.retry_backoff_ms, config.retry_backoff_max_ms),
            batch_max_events=config.batch_max_events,
            stop_timeout_s=config.send_timeout_ms / 1000,
            name=config.gateway,
        )
        self._started = True
        self._spawn(self._sender.run(), "sender")
        if config.linger_ms is not None:
            self._spawn(self._linger(config.linger_ms / 1000), "linger")

    async def close(self) -> None:
        """Seal and spool the open frame, drain for up to close_timeout_ms, stop.

        What could not be sent stays in the spool and goes first at the next start.
        """
        if not self._started:
            return
        try:
            if self._background_error is None:
                with contextlib.suppress(SpoolFullError):  # counted and logged already
                    await self._seal_and_accept()
                await self.wait_drained(self.config.close_timeout_ms / 1000)
        finally:
            await self._shutdown()
        if self._background_error is not None:
            raise GatewayClosedError(
                f"gateway {self.config.gateway} had stopped: {self._background_error!r}"
            ) from self._background_error

    async def _shutdown(self) -> None:
        self._started = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        assert self._sender is not None and self._spool is not None and self._seq is not None
        await self._sender.close_producer()
        if self._spool.count:
            log.info(
                "gateway %s: closed with %d messages in the spool; they are sent at the next start",
                self.config.gateway,
                self._spool.count,
            )
        self._seq.close()
        await self._spool.close()
        if self._lock is not None:
            self._lock.release()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- readings -----------------------------------------------------------------

    async def add_sample(self, boiler: str, t_ms: int, values: Mapping[str, float | None]) -> None:
        """Add one boiler's readings at event time `t_ms` to the open frame.

        Raises SampleError (a ValueError) naming boiler, channel and value for an
        unknown channel or a non-finite value. Seals and spools the frame first if
        this sample would stretch it to frame_max_span_ms, and after it when the
        frame is full.
        """
        self._check_running()
        clean = check_sample(boiler, t_ms, values)
        builder = self._builder
        if not builder.fits(t_ms):
            await self._seal_and_accept()
        opens = builder.empty
        builder.add(boiler, t_ms, clean)
        if opens:
            self._frame_opened_at = time.monotonic()
            self._frame_opened.set()
        if builder.full:
            await self._seal_and_accept()

    def seal(self, *, watermark_ms: int | None = None) -> TelemetryFrame | None:
        """Seal the open frame now (next seq, ingest time = clock) without sending it.

        `watermark_ms`: the gateway's promise that no later frame carries a sample
        measured before it (see `seal_columns`).
        """
        self._check_running()
        if self._builder.empty:
            return None
        assert self._seq is not None
        self._builder.check_watermark(watermark_ms)
        now = self._now_ms()
        seq = self._seq.allocate()
        self._frame_generation += 1
        return self._builder.seal(
            gateway=self.config.gateway,
            site=self.config.site,
            seq=seq,
            ingest_time_ms=now,
            watermark_ms=watermark_ms,
        )

    def seal_columns(
        self,
        boilers: Sequence[str],
        boiler_idx: Sequence[int] | np.ndarray,
        t_ms: Sequence[int] | np.ndarray,
        columns: Mapping[str, Sequence[float | None] | np.ndarray],
        *,
        watermark_ms: int | None = None,
    ) -> EncodedFrame:
        """Seal a whole frame given as columns (next seq, ingest time = clock), unsent.

        Sample `i` is boiler `boilers[boiler_idx[i]]` at event time `t_ms[i]` (int ms
        since the epoch); each channel in `columns` holds one value per sample, NaN
        or None where a reading is missing. The open frame of `add_sample` is left
        alone. Raises SampleError (a ValueError) naming field, index and value when
        the arrays break the contract, EventRejectedError when the frame is above
        max_message_bytes; neither uses up a sequence number.

        `watermark_ms` is a promise: none of this gateway's later frames will carry
        a sample measured before it (typically the end of the span this frame
        completes: a gateway polling every boiler each second, sealing at second
        `k + 1`, promises `k + 1`). The sink then lands the means of the buckets
        the frame completes at once, instead of when the next frame shows that
        time has moved on (a frame span later). A sample that breaks that promise is
        late for the sink: counted, not folded into its bucket's mean. Leave it
        None when samples may arrive out of order.
        """
        self._check_running()
        assert self._seq is not None
        body = check_columns(boilers, boiler_idx, t_ms, columns)
        watermark = check_watermark(watermark_ms, body.event_time_ms)
        now = self._now_ms()
        gateway, site = self.config.gateway, self.config.site
        seq = self._seq.peek  # encoded and measured before the number is taken
        value = encode_columns(
            body, gateway=gateway, site=site, seq=seq, ingest_time_ms=now, watermark_ms=watermark
        )
        event_id = make_event_id(gateway, seq)
        key = self.config.hmac_key
        if key is not None:
            value, _ = signing.sign(value, key)
        self._check_size(SpoolRow(event_id, self._key, value), f"frame {event_id}")
        taken = self._seq.allocate()
        assert taken == seq
        return EncodedFrame(
            event_id=event_id,
            gateway=gateway,
            site=site,
            seq=seq,
            event_time_ms=body.event_time_ms,
            ingest_time_ms=now,
            n_samples=body.n_samples,
            value=value,
        )

    async def publish_columns(
        self,
        boilers: Sequence[str],
        boiler_idx: Sequence[int] | np.ndarray,
        t_ms: Sequence[int] | np.ndarray,
        columns: Mapping[str, Sequence[float | None] | np.ndarray],
        *,
        watermark_ms: int | None = None,
    ) -> EncodedFrame:
        """Seal a frame from columns (see `seal_columns`) and spool it; returns it.

        The open frame of `add_sample`, if any, is sealed and spooled first, so
        readings leave in the order they were handed over.
        """
        self._check_running()
        await self._seal_and_accept()
        frame = self.seal_columns(boilers, boiler_idx, t_ms, columns, watermark_ms=watermark_ms)
        await self._accept([frame])
        return frame

    async def flush(self) -> None:
        """Seal the open frame; return once everything accepted so far is sent, or is
        durably spooled while the broker is unreachable."""
        self._check_running()
        await self._seal_and_accept()
        target = self._last_pos
        assert self._sender is not None
        async with self._sender.progress:
            await self._sender.progress.wait_for(
                lambda: self._drained_past(target) or self._sender_failing() or self._dead()
            )
        self._check_running()

    async def wait_drained(self, timeout_s: float | None = None) -> bool:
        """Wait until the spool is empty (everything sent); False on timeout."""
        self._check_running()
        assert self._sender is not None
        try:
            async with asyncio.timeout(timeout_s):
                async with self._sender.progress:
                    await self._sender.progress.wait_for(
                        lambda: self._spool_empty() or self._dead()
                    )
        except TimeoutError:
            return False
        self._check_running()
        return True

    # -- events -------------------------------------------------------------------

    async def send(self, event: Publishable) -> None:
        """Publish an already-sealed event or EncodedFrame (through the spool). Sending
        the same event twice is allowed: a duplicate delivery, de-duplicated downstream
        by event_id."""
        self._check_running()
        self._check_own(event)
        await self._accept([event])

    async def send_many(self, events: Sequence[Publishable]) -> None:
        """Publish sealed events in this order in one spool transaction: all of them
        are accepted, or none (SpoolFullError carries them all). Cheaper than one
        `send` each when a gateway has several events at hand."""
        self._check_running()
        for event in events:
            self._check_own(event)
        if events:
            await self._accept(events)

    def seal_compute(
        self, schema_name: str, *, boiler: str, event_time_ms: int, **fields: Any
    ) -> Envelope:
        """Build and validate a compute event with the next seq, without sending it.

        Raises EventRejectedError (a ValueError) naming the field when the event
        breaks its contract; then no sequence number is used up.
        """
        self._check_running()
        model = COMPUTE_EVENTS.get(schema_name)
        if model is None:
            raise EventRejectedError(
                f"schema_name = {schema_name!r} is not a compute event; known:"
                f" {', '.join(COMPUTE_EVENTS)}"
            )
        assert self._seq is not None
        data = {
            **fields,
            "gateway": self.config.gateway,
            "site": self.config.site,
            "boiler": boiler,
            "event_time_ms": event_time_ms,
            "ingest_time_ms": self._now_ms(),
            # Validated with the number it will get; taken only once it is valid, so a
            # gateway bug does not burn a number.
            "seq": self._seq.peek,
        }
        try:
            event = model.model_validate(data)
        except ValidationError as exc:
            raise EventRejectedError(
                f"{schema_name} for boiler {boiler!r}: {format_validation_error(exc)}"
            ) from None
        taken = self._seq.allocate()
        assert taken == event.seq
        return event

    async def send_compute(
        self, schema_name: str, *, boiler: str, event_time_ms: int, **fields: Any
    ) -> int:
        """Build a compute event (next seq) from its fields, spool it, return its seq."""
        event = self.seal_compute(schema_name, boiler=boiler, event_time_ms=event_time_ms, **fields)
        await self._accept([event])
        return event.seq

    async def send_raw(self, value: bytes, key: bytes | None = None) -> None:
        """Unvalidated bytes to the topic, in order with the events (through the spool).

        For fault injection and re-publishing dead letters: no sequence number, and
        counted in raw_accepted / raw_sent, not accepted / sent.
        """
        self._check_running()
        row = SpoolRow(event_id=None, key=key, value=bytes(value))
        self._check_size(row, "raw message")
        try:
            await self._append([row])
        except SpoolFullError as exc:
            raise SpoolFullError(
                str(exc), raw=row.value, spool_bytes=exc.spool_bytes, max_bytes=exc.max_bytes
            ) from None
        self._book.raw_accepted += 1

    # -- operator view ------------------------------------------------------------

    @property
    def counters(self) -> GatewayCounters:
        return self._book.snapshot()

    @property
    def next_seq(self) -> int | None:
        """The sequence number the next sealed event gets (None before start)."""
        return None if self._seq is None else self._seq.peek

    # -- internals ----------------------------------------------------------------

    async def _seal_and_accept(self) -> None:
        frame = self.seal()
        if frame is not None:
            await self._accept([frame])

    def _encode(self, event: Publishable) -> tuple[Publishable, bytes]:
        """The event as it goes out (with its hmac when a key is set) and its bytes."""
        if isinstance(event, EncodedFrame):
            return event, event.value  # encoded (and signed) when sealed
        key = self.config.hmac_key
        if key is None:
            return event, encode(event)
        if event.hmac is not None:  # re-sent: sign again, with this gateway's key
            event = event.model_copy(update={"hmac": None})
        value, code = signing.sign(encode(event), key)
        return event.model_copy(update={"hmac": code}), value

    async def _accept(self, events: Sequence[Publishable]) -> None:
        encoded = [self._encode(e) for e in events]
        events = [e for e, _ in encoded]
        rows = [SpoolRow(event_id=e.event_id, key=self._key, value=v) for e, v in encoded]
        for event, row in zip(events, rows, strict=True):
            self._check_size(row, f"event {event.event_id}")
        try:
            await self._append(rows)
        except SpoolFullError as exc:
            raise SpoolFullError(
                str(exc), events=events, spool_bytes=exc.spool_bytes, max_bytes=exc.max_bytes
            ) from None
        self._book.accepted += len(events)
        if self._on_accepted is not None:
            self._on_accepted(events)

    async def _append(self, rows: list[SpoolRow]) -> None:
        assert self._spool is not None and self._sender is not None
        book = self._book
        try:
            result = await self._spool.append(rows)
        except SpoolFullError as exc:
            book.record_drop(len(rows), "reject_new")
            self._log_drop(f"refused {len(rows)} new message(s): {exc}")
            raise
        finally:
            book.spooled, book.spool_bytes = self._spool.count, self._spool.bytes
        self._last_pos = result.last_pos
        if result.dropped:
            book.record_drop(len(result.dropped), "drop_oldest")
            ids = [i for i in result.dropped if i is not None]
            self._log_drop(
                f"discarded the {len(result.dropped)} oldest spooled message(s)"
                f" ({result.dropped_bytes} bytes{', ' + ids[0] + ' .. ' + ids[-1] if ids else ''})"
            )
        self._sender.wake()

    def _log_drop(self, what: str) -> None:
        # Every drop is counted; the log says so at most every 30 s, with the total.
        now = time.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_EVERY_S:
            self._last_drop_log = now
            log.warning(
                "gateway %s: spool full (policy %s): %s; %d dropped so far",
                self.config.gateway,
                self.config.spool_full_policy,
                what,
                self._book.dropped,
            )

    def _now_ms(self) -> int:
        now = self._clock_ms()
        if (
            isinstance(now, bool)
            or not isinstance(now, int)
            or not MIN_TIME_MS <= now <= MAX_TIME_MS
        ):
            raise GatewayConfigError(
                f"clock_ms() returned {now!r}: it must return int milliseconds since the epoch"
                f" within [{MIN_TIME_MS}, {MAX_TIME_MS}]"
            )
        return now

    def _check_own(self, event: Publishable) -> None:
        if not isinstance(event, _PUBLISHABLE):
            raise EventRejectedError(
                f"send() takes a TelemetryFrame, an EncodedFrame or a compute event, not"
                f" {type(event).__name__}; use send_raw() for arbitrary bytes"
            )
        for field in ("gateway", "site"):
            mine, theirs = getattr(self.config, field), getattr(event, field)
            if theirs != mine:
                raise EventRejectedError(
                    f"event {event.event_id}: {field} = {theirs!r}, but this gateway is {mine!r}"
                )

    def _check_size(self, row: SpoolRow, what: str) -> None:
        if row.size + _MESSAGE_OVERHEAD > self.config.max_message_bytes:
            raise EventRejectedError(
                f"{what} is {row.size} bytes, above max_message_bytes ="
                f" {self.config.max_message_bytes} (less {_MESSAGE_OVERHEAD} for framing)"
            )

    async def _linger(self, linger_s: float) -> None:
        """Seal a frame linger_ms of wall time after its first sample."""
        while True:
            await self._frame_opened.wait()
            self._frame_opened.clear()
            generation, opened_at = self._frame_generation, self._frame_opened_at
            await asyncio.sleep(max(0.0, opened_at + linger_s - time.monotonic()))
            if generation == self._frame_generation and not self._builder.empty:
                with contextlib.suppress(SpoolFullError):  # counted and logged already
                    await self._seal_and_accept()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=f"gateway-{self.config.gateway}-{name}")
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self._background_error is None:
            log.error("gateway %s: %s stopped: %r", self.config.gateway, task.get_name(), exc)
            self._background_error = exc
            if self._sender is not None:  # wake flush() waiters so they can raise it
                self._notifier = asyncio.ensure_future(self._notify_waiters())

    async def _notify_waiters(self) -> None:
        assert self._sender is not None
        async with self._sender.progress:
            self._sender.progress.notify_all()

    def _check_running(self) -> None:
        if self._background_error is not None:
            raise GatewayClosedError(
                f"gateway {self.config.gateway} stopped: {self._background_error!r}"
            ) from self._background_error
        if not self._started:
            raise GatewayClosedError(
                f"gateway {self.config.gateway} is not started: use `async with Gateway(...)`"
                " or await start()"
            )

    def _spool_empty(self) -> bool:
        return self._spool is not None and self._spool.count == 0

    def _drained_past(self, pos: int) -> bool:
        head = None if self._spool is None else self._spool.head
        return head is None or head > pos

    def _sender_failing(self) -> bool:
        return self._sender is not None and self._sender.failing

    def _dead(self) -> bool:
        return self._background_error is not None
