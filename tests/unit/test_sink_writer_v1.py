"""The v1 writer's requests and how it reads InfluxDB's answers (no server)."""

from __future__ import annotations

import gzip

import httpx
import pytest
from pydantic import SecretStr

from heatstream.settings import InfluxSettings
from heatstream.sinks.errors import InfluxConfigError, InfluxRejected, InfluxUnavailable
from heatstream.sinks.writers import build_writer
from heatstream.sinks.writers.v1 import V1Writer
from heatstream.sinks.writers.v2 import V2Writer

SETTINGS = InfluxSettings(url="http://influx.test:8086", database="db1", retention_policy="rp1")


async def writer_answering(
    response: httpx.Response, seen: list[httpx.Request], influx: InfluxSettings = SETTINGS
) -> V1Writer:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return response

    writer = V1Writer(influx, transport=httpx.MockTransport(handle))
    await writer.start()
    return writer


async def test_a_gzipped_write_to_the_database_and_retention_policy() -> None:
    seen: list[httpx.Request] = []
    writer = await writer_answering(httpx.Response(204), seen)
    await writer.write([b"m a=1i 1", b"m a=2i 2"], "ms")
    await writer.close()
    (request,) = seen
    assert request.method == "POST" and request.url.path == "/write"
    assert dict(request.url.params) == {"db": "db1", "rp": "rp1", "precision": "ms"}
    assert request.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(request.content) == b"m a=1i 1\nm a=2i 2"
    assert "Authorization" not in request.headers


async def test_level_0_writes_uncompressed() -> None:
    # For an InfluxDB on the same host: compressing only costs CPU at both ends.
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    writer = V1Writer(SETTINGS, transport=httpx.MockTransport(handle), gzip_level=0)
    await writer.start()
    await writer.write([b"m a=1i 1", b"m a=2i 2"], "ms")
    await writer.close()
    (request,) = seen
    assert "Content-Encoding" not in request.headers
    assert request.content == b"m a=1i 1\nm a=2i 2"


async def test_credentials() -> None:
    seen: list[httpx.Request] = []
    basic = SETTINGS.model_copy(update={"username": "u", "password": SecretStr("p")})
    writer = await writer_answering(httpx.Response(204), seen, basic)
    await writer.write([b"m a=1i 1"], "ms")
    token = SETTINGS.model_copy(update={"token": SecretStr("t0k")})
    writer = await writer_answering(httpx.Response(204), seen, token)
    await writer.write([b"m a=1i 1"], "ms")
    assert seen[0].headers["Authorization"].startswith("Basic ")
    assert seen[1].headers["Authorization"] == "Token t0k"
    assert "t0k" not in writer.describe()


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (httpx.Response(400, json={"error": "partial write: bad dropped=1"}), InfluxRejected),
        (httpx.Response(404, json={"error": 'database not found: "db1"'}), InfluxConfigError),
        (httpx.Response(429, headers={"Retry-After": "4"}), InfluxUnavailable),
        (httpx.Response(503, text="busy"), InfluxUnavailable),
    ],
)
async def test_answers(response: httpx.Response, kind: type) -> None:
    writer = await writer_answering(response, [])
    with pytest.raises(kind) as caught:
        await writer.write([b"m a=1i 1"], "ms")
    if isinstance(caught.value, InfluxRejected):
        assert caught.value.message == "partial write: bad dropped=1"
    if response.status_code == 429:
        assert caught.value.retry_after_s == 4.0  # type: ignore[attr-defined]


async def test_network_errors_are_unavailability() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    writer = V1Writer(SETTINGS, transport=httpx.MockTransport(refuse))
    await writer.start()
    with pytest.raises(InfluxUnavailable):
        await writer.write([b"m a=1i 1"], "ms")


def test_the_api_setting_picks_the_writer() -> None:
    assert isinstance(build_writer(SETTINGS), V1Writer)
    assert isinstance(build_writer(SETTINGS.model_copy(update={"api": "v2"})), V2Writer)
