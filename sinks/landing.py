"""Landing one sealed batch: write it, dead-letter what InfluxDB refuses, then commit.

In that order, so an offset is committed only once every point of the messages
before it is in InfluxDB or in the dead-letter topic (at-least-once). Writes
are retried while InfluxDB is unavailable (`retry.py`); lines it refuses are
isolated by bisection (`isolate.py`) and the rest of the batch lands.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from heatstream.sinks.batcher import Batch, TopicPartition
from heatstream.sinks.deadletters import DeadLetterSender, rejected
from heatstream.sinks.errors import InfluxUnavailable
from heatstream.sinks.health import SinkCounters
from heatstream.sinks.isolate import write_isolating
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
