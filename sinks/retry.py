"""Retrying writes: exponential backoff with jitter, honouring Retry-After.

Only `InfluxUnavailable` (429, 5xx, network errors) is retried; what InfluxDB
refuses for good is the caller's business (dead letters, or stopping).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

from heatstream.sinks.errors import InfluxUnavailable, RetriesExhausted

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_s: float = 0.2
    max_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_retries: int | None = None  # None: forever

    def delay(
        self,
        attempt: int,
        retry_after_s: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait before retry number `attempt` (0-based).

        Exponential, capped, reduced by up to `jitter` of itself so that many
        sinks do not retry in lockstep; never shorter than the server's
        Retry-After.
        """
        base = min(self.max_s, self.initial_s * self.multiplier**attempt)
        delay = base * (1.0 - self.jitter * rand())
        return delay if retry_after_s is None else max(delay, retry_after_s)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent/invalid."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


async def retrying(
    op: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[InfluxUnavailable, float], None] = lambda exc, delay: None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """`await op()` until it does not raise InfluxUnavailable (or retries run out)."""
    attempt = 0
    while True:
        try:
            return await op()
        except InfluxUnavailable as exc:
            if policy.max_retries is not None and attempt >= policy.max_retries:
                raise RetriesExhausted(f"gave up after {attempt} retries: {exc}") from exc
            delay = policy.delay(attempt, exc.retry_after_s)
            on_retry(exc, delay)
            await sleep(delay)
            attempt += 1
