"""The drain loop: spool -> Kafka, in order, deleting rows only once acknowledged.

One task per gateway. It claims the oldest spooled rows, produces them with
acks=all, waits for every acknowledgement, deletes the acknowledged rows and
repeats. A failure (broker down, slow, topic missing, not leader, ...) leaves
the unacknowledged rows in the spool and retries after an exponential backoff
with jitter; nothing is skipped, so a message the broker refuses for good (say
a broker whose message.max.bytes is below the gateway's) holds the queue and
shows up in `GatewayCounters.last_error` until an operator fixes the cause.

The producer is (re)built here as well: a gateway must start, accept and spool
while its broker is unreachable, and aiokafka's `start()` fails in that case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from heatstream.ingest.backoff import Backoff
from heatstream.ingest.counters import CounterBook
from heatstream.ingest.spool import StoredRow
from heatstream.ingest.spoolworker import AsyncSpool

log = logging.getLogger("heatstream.ingest.gateway")

# What a broker that is down, slow or reorganising raises; anything else is a bug
# and ends the task, which the gateway re-raises to its caller.
RETRIABLE = (KafkaError, OSError, asyncio.TimeoutError)

_BATCH_MAX_BYTES = 8 * 2**20  # bounds the memory one round trip holds


class SpoolSender:
    def __init__(
        self,
        *,
        spool: AsyncSpool,
        make_producer: Callable[[], AIOKafkaProducer],
        topic: str,
        counters: CounterBook,
        backoff: Backoff,
        batch_max_events: int,
        stop_timeout_s: float,
        name: str,
    ) -> None:
        self._spool = spool
        self._make_producer = make_producer
        self._topic = topic
        self._counters = counters
        self._backoff = backoff
        self._batch_max_events = batch_max_events
        self._stop_timeout_s = stop_timeout_s
        self._name = name
        self._producer: AIOKafkaProducer | None = None
        self._wake = asyncio.Event()
        self._failing_since: float | None = None
        #: Notified after every round trip and state change (flush waits on it).
        self.progress = asyncio.Condition()
        #: True once an attempt failed and until one succeeds.
        self.failing = False

    def wake(self) -> None:
        """New rows were spooled."""
        self._wake.set()

    async def run(self) -> None:
        rows: list[StoredRow] | None = None  # claimed already, when a send went well
        while True:
            if self._producer is None and not await self._connect():
                continue
            if rows is None:
                self._wake.clear()  # before claiming, so a later append is never missed
                rows = await self._spool.claim(self._batch_max_events, _BATCH_MAX_BYTES)
            if not rows:
                await self._notify()
                await self._wake.wait()
                rows = None
                continue
            rows = await self._send(rows)

    async def _connect(self) -> bool:
        producer = self._make_producer()
        try:
            await producer.start()
        except RETRIABLE as exc:
            with contextlib.suppress(*RETRIABLE):
                await producer.stop()
            await self._failed(exc, "connecting to the broker")
            return False
        self._producer = producer
        self._succeeded()
        return True

    async def _send(self, rows: list[StoredRow]) -> list[StoredRow] | None:
        """Produce `rows`, wait for every ack, delete the acknowledged ones. When all
        went well, the next rows are claimed in the same trip to the spool and
        returned; None after a failure (then the sender backs off first)."""
        assert self._producer is not None
        latencies = self._counters.record_latency
        pending: list[tuple[StoredRow, asyncio.Future[object]]] = []
        error: BaseException | None = None
        try:
            for row in rows:
                started = time.monotonic()
                future = await self._producer.send(self._topic, row.value, key=row.key)
                future.add_done_callback(_timer(started, latencies))
                pending.append((row, future))
        except RETRIABLE as exc:
            error = exc
        results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        acked = [row for (row, _), res in zip(pending, results, strict=True) if not _failed(res)]
        for res in results:
            if _failed(res) and error is None:
                error = res  # type: ignore[assignment]
        if error is not None and not isinstance(error, RETRIABLE):
            await self._spool.release()
            raise error
        following: list[StoredRow] | None = None
        if error is None:
            self._wake.clear()  # as in run(): the claim below sees every earlier append
            following = await self._spool.ack_and_claim(
                (row.pos for row in acked), self._batch_max_events, _BATCH_MAX_BYTES
            )
        else:
            await self._spool.ack(row.pos for row in acked)
        self._counters.sent += sum(1 for r in acked if r.event_id is not None)
        self._counters.raw_sent += sum(1 for r in acked if r.event_id is None)
        self._mirror_gauges()
        if error is not None:
            await self._failed(error, f"sending to {self._topic}")
        else:
            self._succeeded()
            await self._notify()
        return following

    async def _failed(self, exc: BaseException, doing: str) -> None:
        counters = self._counters
        counters.send_errors += 1
        counters.last_error = f"{doing}: {exc!r}"
        counters.broker_reachable = False
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning(
                "gateway %s: %s failed (%r); events stay in the spool and are retried with"
                " backoff (%d spooled)",
                self._name,
                doing,
                exc,
                self._spool.count,
            )
        self.failing = True
        await self._notify()
        await asyncio.sleep(self._backoff.next_delay_s())

    def _succeeded(self) -> None:
        self._backoff.reset()
        self._counters.broker_reachable = True
        self.failing = False
        if self._failing_since is not None:
            log.warning(
                "gateway %s: broker reachable again after %.1f s; draining %d spooled",
                self._name,
                time.monotonic() - self._failing_since,
                self._spool.count,
            )
            self._failing_since = None

    def _mirror_gauges(self) -> None:
        self._counters.spooled = self._spool.count
        self._counters.spool_bytes = self._spool.bytes

    async def _notify(self) -> None:
        async with self.progress:
            self.progress.notify_all()

    async def close_producer(self) -> None:
        """Stop the producer (bounded: a dead broker must not hang close())."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(*RETRIABLE):
                await asyncio.wait_for(producer.stop(), self._stop_timeout_s)


def _failed(result: object) -> bool:
    return isinstance(result, BaseException)


def _timer(
    started: float, record: Callable[[float], None]
) -> Callable[[asyncio.Future[object]], None]:
    def done(future: asyncio.Future[object]) -> None:
        if not future.cancelled() and future.exception() is None:
            record((time.monotonic() - started) * 1000.0)

    return done
