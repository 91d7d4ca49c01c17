"""Backoff with jitter, Retry-After, and which answers are retried."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from heatstream.sinks.errors import (
    InfluxConfigError,
    InfluxRejected,
    InfluxUnavailable,
    RetriesExhausted,
    error_for_status,
)
from heatstream.sinks.retry import RetryPolicy, parse_retry_after, retrying


def test_backoff_grows_is_capped_and_jittered_down() -> None:
    policy = RetryPolicy(initial_s=0.5, max_s=4.0, multiplier=2.0, jitter=0.5)
    assert [policy.delay(a, rand=lambda: 0.0) for a in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.delay(2, rand=lambda: 1.0) == 1.0  # at most half taken off
    assert policy.delay(0, retry_after_s=7.0, rand=lambda: 0.0) == 7.0  # never before Retry-After


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = 1_768_435_200.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (400, "partial write: field type conflict", InfluxRejected),
        (413, "request too large", InfluxRejected),
        (401, "authorization failed", InfluxConfigError),
        (404, 'database not found: "x"', InfluxConfigError),
        (500, "retention policy not found: rp", InfluxConfigError),
        (429, "too many requests", InfluxUnavailable),
        (503, "unavailable", InfluxUnavailable),
        (500, "timeout", InfluxUnavailable),
    ],
)
def test_statuses(status: int, message: str, kind: type) -> None:
    assert isinstance(error_for_status(status, message, None, "http://x"), kind)


async def test_retrying_honours_retry_after_and_counts() -> None:
    answers: list[Exception | None] = [
        InfluxUnavailable("429", status=429, retry_after_s=2.0),
        InfluxUnavailable("refused"),
        None,
    ]
    slept: list[float] = []
    seen: list[float] = []

    async def op() -> str:
        answer = answers.pop(0)
        if answer is not None:
            raise answer
        return "ok"

    async def sleep(s: float) -> None:
        slept.append(s)

    policy = RetryPolicy(initial_s=0.1, max_s=1.0, jitter=0.0)
    result = await retrying(op, policy, on_retry=lambda e, d: seen.append(d), sleep=sleep)
    assert result == "ok" and slept == seen == [2.0, 0.2]


async def test_retries_run_out_when_bounded() -> None:
    async def op() -> None:
        raise InfluxUnavailable("down")

    async def sleep(s: float) -> None:
        pass

    with pytest.raises(RetriesExhausted):
        await retrying(op, RetryPolicy(max_retries=3), sleep=sleep)


async def test_refusals_are_not_retried() -> None:
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise InfluxRejected("bad line")

    with pytest.raises(InfluxRejected):
        await retrying(op, RetryPolicy())
    assert calls == 1
