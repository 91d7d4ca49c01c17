"""The v2 write path (influxdb-client) against a stand-in for InfluxDB 2.x.

InfluxDB 2.x cannot run on these machines (and InfluxDB 1.6 has no
/api/v2/write), so `FakeInflux2` below stands in for it: an aiohttp app that
records every request and answers like InfluxDB 2.x does: 204 when written,
429 with Retry-After when rate limited, 400 `{"code": "invalid", "message":
...}` naming the first line it could not take (keeping the others, as OSS does).
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from pydantic import SecretStr

from heatstream.schemas import topics
from heatstream.schemas.deadletter import DeadLetter
from heatstream.settings import InfluxSettings
from heatstream.sinks.consumer import build_sink
from heatstream.sinks.errors import InfluxConfigError, InfluxRejected, InfluxUnavailable
from heatstream.sinks.options import SinkOptions
from heatstream.sinks.writers.v2 import V2Writer
from heatstream.stack import EmbeddedStack
from tests.integration.test_sink_influx import eventually, isolated, produce, read_all, window

pytestmark = pytest.mark.integration


@dataclass
class Request:
    at: float
    query: dict[str, str]
    headers: dict[str, str]
    lines: list[bytes]
    status: int = 0


@dataclass
class FakeInflux2:
    """Stand-in for InfluxDB 2.x's write endpoint (see the module docstring)."""

    token: str = "secret-token"
    rate_limit_first: int = 0  # answer 429 to this many writes first
    poison: bytes = b"POISON"  # lines starting with this are refused
    requests: list[Request] = field(default_factory=list)
    stored: dict[bytes, int] = field(default_factory=dict)  # line -> times written
    url: str = ""

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"X-Influxdb-Version": "v2.7.stand-in"})

    async def write(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        seen = Request(
            time.monotonic(), dict(request.query), dict(request.headers), body.split(b"\n")
        )
        self.requests.append(seen)
        if request.headers.get("Authorization") != f"Token {self.token}":
            seen.status = 401
            return web.json_response(
                {"code": "unauthorized", "message": "unauthorized access"}, status=401
            )
        if self.rate_limit_first > 0:
            self.rate_limit_first -= 1
            seen.status = 429
            return web.Response(status=429, headers={"Retry-After": "1"})
        bad = [line for line in seen.lines if line.startswith(self.poison)]
        for line in seen.lines:
            if line not in bad:
                self.stored[line] = self.stored.get(line, 0) + 1
        if bad:
            seen.status = 400
            message = (
                f"partial write error ({len(seen.lines) - len(bad)} written): "
                f"unable to parse '{bad[0].decode()}': invalid field format"
            )
            return web.json_response({"code": "invalid", "message": message}, status=400)
        seen.status = 204
        return web.Response(status=204)


@pytest.fixture
async def fake() -> AsyncIterator[FakeInflux2]:
    server = FakeInflux2()
    app = web.Application()
    app.router.add_get("/ping", server.ping)
    app.router.add_post("/api/v2/write", server.write)
    runner = web.AppRunner(app, auto_decompress=False)  # to see that the body is gzipped
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def influx(fake: FakeInflux2, token: str | None = None) -> InfluxSettings:
    return InfluxSettings(
        api="v2", url=fake.url, org="acme", bucket="heat", token=SecretStr(token or fake.token)
    )


async def test_v2_writes_go_to_the_bucket_with_the_token(fake: FakeInflux2) -> None:
    writer = V2Writer(influx(fake))
    await writer.start()
    try:
        await writer.check()
        await writer.write([b"m a=1i 1768435200000", b"m a=2i 1768435200001"], "ms")
    finally:
        await writer.close()
    (request,) = fake.requests
    assert request.query == {"org": "acme", "bucket": "heat", "precision": "ms"}
    assert request.headers["Authorization"] == "Token secret-token"
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.lines == [b"m a=1i 1768435200000", b"m a=2i 1768435200001"]


async def test_v2_answers_map_to_the_sinks_errors(fake: FakeInflux2) -> None:
    fake.rate_limit_first = 1
    writer = V2Writer(influx(fake))
    await writer.start()
    try:
        with pytest.raises(InfluxUnavailable) as limited:
            await writer.write([b"m a=1i 1"], "ms")
        assert limited.value.status == 429 and limited.value.retry_after_s == 1.0
        with pytest.raises(InfluxRejected, match="unable to parse 'POISON"):
            await writer.write([b"POISON", b"m a=1i 1"], "ms")
    finally:
        await writer.close()
    wrong = V2Writer(influx(fake, token="wrong"))
    await wrong.start()
    try:
        with pytest.raises(InfluxConfigError, match="credentials"):
            await wrong.write([b"m a=1i 1"], "ms")
    finally:
        await wrong.close()


async def test_the_sink_through_v2_honours_retry_after_and_isolates_poison(
    stack: EmbeddedStack, fake: FakeInflux2, unique_name: Callable[[str], str]
) -> None:
    fake.rate_limit_first = 1
    fake.poison = b"heat_window,boiler=POISON"
    settings = await isolated(stack, unique_name("v2"))
    settings = settings.model_copy(update={"influxdb": influx(fake)})
    events = [window(f"b{b}", i, 1.0 + i) for b in range(3) for i in range(30)]
    events[44] = window("POISON", 44, 1.0)
    await produce(settings, topics.HEAT_WINDOWS, events)
    options = SinkOptions(
        flush_interval_s=0.3,
        health_interval_s=60,
        session_timeout_s=6,
        downsample_s=0,
        backoff_initial_s=0.05,
    )
    sink = build_sink(settings, options)
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))

    async def dead_lettered() -> bool:
        return sink.counters.rejected_points == 1 and sink.counters.points_written >= 89

    try:
        await eventually(dead_lettered)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    limited = next(i for i, r in enumerate(fake.requests) if r.status == 429)
    retry = fake.requests[limited + 1]
    assert retry.at - fake.requests[limited].at >= 1.0  # Retry-After: 1 was honoured
    windows = [line for line in fake.stored if line.startswith(b"heat_window,")]
    assert len(windows) == 89 and not any(b"POISON" in line for line in windows)
    (dl,) = [r for r in await read_all(settings, topics.DEAD_LETTERS) if isinstance(r, DeadLetter)]
    assert dl.reason == "influx_rejected" and b"boiler=POISON" in dl.original
    assert "unable to parse" in dl.error
