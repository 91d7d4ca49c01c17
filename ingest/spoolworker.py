"""The spool, reachable from asyncio without blocking the event loop.

A commit with `synchronous=FULL` waits for an fsync, and draining a backlog
reads megabytes; neither should stall the loop that also receives readings.
Every spool operation therefore runs on one dedicated thread, in the order it
was submitted (a single-worker executor is a FIFO), which is what keeps spool
order equal to sealing order. After each operation the gauges the gateway
reads (`count`, `bytes`, `head`) are refreshed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from heatstream.ingest.spool import AppendResult, Spool, SpoolRow, StoredRow

T = TypeVar("T")


class AsyncSpool:
    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heatstream-spool")
        self.count = spool.count
        self.bytes = spool.bytes
        self.head: int | None = spool.head()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        def job() -> tuple[T, int, int, int | None]:
            result = fn(*args)
            return result, self._spool.count, self._spool.bytes, self._spool.head()

        # run_in_executor submits now, before the first await: callers that call
        # in a given order get their operations applied in that order.
        future = asyncio.get_running_loop().run_in_executor(self._pool, job)
        result, self.count, self.bytes, self.head = await future
        return result

    async def append(self, rows: Sequence[SpoolRow]) -> AppendResult:
        return await self._run(self._spool.append, rows)

    async def claim(self, max_rows: int, max_bytes: int) -> list[StoredRow]:
        return await self._run(self._spool.claim, max_rows, max_bytes)

    async def ack(self, positions: Iterable[int]) -> int:
        return await self._run(self._spool.ack, list(positions))

    async def ack_and_claim(
        self, positions: Iterable[int], max_rows: int, max_bytes: int
    ) -> list[StoredRow]:
        """`ack`, then `claim` the next rows, in one trip to the spool's thread."""

        def both(done: list[int]) -> list[StoredRow]:
            self._spool.ack(done)
            return self._spool.claim(max_rows, max_bytes)

        return await self._run(both, list(positions))

    async def release(self) -> None:
        await self._run(self._spool.release)

    async def close(self) -> None:
        # Let queued operations (an ack racing a cancellation) finish before closing.
        await asyncio.get_running_loop().run_in_executor(self._pool, self._spool.close)
        self._pool.shutdown(wait=True)
