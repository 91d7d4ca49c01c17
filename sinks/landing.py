"""Landing one sealed batch: write it, dead-letter what InfluxDB refuses, then commit.

In that order, so an offset is committed only once every point of the messages
before it is in InfluxDB or in the dead-letter topic (at-least-once). Writes
are retried while InfluxDB is unavailable (`retry.py`); lines it refuses are
isolated by bisection (`isolate.py`) and the rest of the batch lands.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from heatstream.sinks.batcher import Batch, TopicPartition
from heatstream.sinks.deadletters import DeadLetterSender, rejected
from heatstream.sinks.errors import InfluxUnavailable
from heatstream.sinks.health import SinkCounters
from heatstream.sinks.isolate import Rejection, write_isolating
from heatstream.sinks.retry import RetryPolicy, retrying
from heatstream.sinks.writers import Writer

log = logging.getLogger("heatstream.sink")

Commit = Callable[[dict[TopicPartition, int]], Awaitable[None]]


class Lander:
    def __init__(
        self,
        writer: Writer,
        policy: RetryPolicy,
        dead_letters: DeadLetterSender,
        commit: Commit,
        counters: SinkCounters,
    ) -> None:
        self._writer = writer
        self._policy = policy
        self._dead_letters = dead_letters
        self._commit = commit
        self._counters = counters

    async def land(self, batch: Batch) -> None:
        await self.settle(batch, await self.write(batch))

    async def write(self, batch: Batch) -> list[Rejection]:
        """Write the batch's lines (retrying while InfluxDB is unavailable); the refused."""
        started = time.perf_counter()

        async def write(chunk: Sequence[bytes]) -> None:
            await retrying(
                lambda: self._writer.write(chunk, batch.precision),
                self._policy,
                on_retry=self._retried,
            )

        refused = await write_isolating(write, batch.lines)
        if batch.lines:
            self._counters.wrote((time.perf_counter() - started) * 1000)
        return refused

    async def settle(self, batch: Batch, refused: list[Rejection]) -> None:
        """Dead-letter what was refused (and the batch's own dead letters), then commit."""
        now_ms = time.time_ns() // 1_000_000
        records = batch.dead_letters + [
            rejected(batch.lines[r.index], batch.origins[r.index], r.message, now_ms)
            for r in refused
        ]
        if records:
            await self._dead_letters.send(records)
        await self._commit(batch.offsets)
        c = self._counters
        c.batches += 1
        c.points_written += len(batch.lines) - len(refused)
        c.rejected_points += len(refused)
        c.dead_letters += len(records)
        c.skipped_points += batch.skipped_points

    def _retried(self, exc: InfluxUnavailable, delay_s: float) -> None:
        self._counters.retries += 1
        log.warning("%s; retrying in %.1f s", exc, delay_s)


class Landings:
    """Lands sealed batches in the background, up to `concurrency` written at once.

    Each batch is settled (dead letters sent, offsets committed) only after every
    batch sealed before it, so an offset is still never committed before the
    points of the messages it covers are in InfluxDB. A batch that may rewrite a
    point with other values (not `write_once`: a rollup's day point is written
    again as the day goes on) is never written beside another such batch, so that
    writes of one point land in the order they were made; batches of telemetry
    buckets alone (each point written once) may go beside it. InfluxDB writes concurrent requests in parallel:
    10,000 telemetry points took 0.24-0.30 s as two concurrent writes of 5,000,
    0.31-0.40 s as two in a row.
    """

    def __init__(self, lander: Lander, concurrency: int, landed: Callable[[Batch], None]) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency = {concurrency} must be at least 1")
        self._lander = lander
        self._concurrency = concurrency
        self._landed = landed
        self._in_flight: list[tuple[Batch, asyncio.Task[None]]] = []  # in seal order
        self._blocked = 0  # batches waiting in `put` for their turn
        self._turn = asyncio.Lock()  # batches start in the order they are put

    @property
    def busy(self) -> bool:
        """Whether a batch sealed now would have to wait for its write to start."""
        return self._blocked > 0 or len(self._in_flight) >= self._concurrency

    @property
    def writing(self) -> int:
        return len(self._in_flight)

    def _must_wait(self, batch: Batch) -> bool:
        if len(self._in_flight) >= self._concurrency:
            return True
        # Two batches that may both hold a point are never written at once.
        return not batch.write_once and any(not b.write_once for b, _ in self._in_flight)

    async def put(self, batch: Batch) -> None:
        """Start landing `batch` as soon as it may be written; raises what a landing
        before it raised (retries exhausted, a refused configuration)."""
        self._blocked += 1
        try:
            async with self._turn:
                while self._must_wait(batch):
                    await self._in_flight[0][1]
                before = self._in_flight[-1][1] if self._in_flight else None
                task = asyncio.create_task(self._land(batch, before))
                self._in_flight.append((batch, task))
        finally:
            self._blocked -= 1

    async def drain(self) -> None:
        """Wait until every batch put has landed; raises what a landing raised."""
        while self._in_flight:
            await self._in_flight[-1][1]  # it waits for those before it

    async def _land(self, batch: Batch, before: asyncio.Task[None] | None) -> None:
        try:
            refused = await self._lander.write(batch)
            if before is not None:
                await before  # settled in seal order; re-raises the failure of one before
            await self._lander.settle(batch, refused)
            self._landed(batch)
        finally:
            # Out of the list once done, before anyone awaiting this task resumes.
            self._in_flight = [e for e in self._in_flight if e[0] is not batch]
