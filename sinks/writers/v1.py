"""The InfluxDB 1.x write API: `POST /write?db=&rp=&precision=`, gzip-compressed (unless level 0).

Also answered by InfluxDB 1.8+, 2.x (v1 compatibility, with a token) and 3.x.
Errors come back as `{"error": "..."}`; a 400 carries the server's reason, e.g.
`partial write: field type conflict: ... dropped=1` or `unable to parse '...'`.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence

import httpx

from heatstream.settings import InfluxSettings
from heatstream.sinks.errors import InfluxUnavailable, error_for_status
from heatstream.sinks.lineprotocol import Precision
from heatstream.sinks.retry import parse_retry_after
from heatstream.sinks.writers.base import Writer


class V1Writer(Writer):
    def __init__(
        self,
        influx: InfluxSettings,
        *,
        timeout_s: float = 10.0,
        gzip_level: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._influx = influx
        self._timeout_s = timeout_s
        self._gzip_level = gzip_level
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        influx = self._influx
        auth = None
        if influx.username is not None:
            password = influx.password.get_secret_value() if influx.password else ""
            auth = httpx.BasicAuth(influx.username, password)
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if influx.token is not None:
            headers["Authorization"] = f"Token {influx.token.get_secret_value()}"
        self._client = httpx.AsyncClient(
            base_url=influx.url,
            timeout=self._timeout_s,
            auth=auth,
            headers=headers,
            transport=self._transport,
        )

    async def check(self) -> None:
        # An empty write: InfluxDB 1.x checks the database and the credentials.
        await self.write([], "ms")

    async def write(self, lines: Sequence[bytes], precision: Precision) -> None:
        assert self._client is not None, "start() the writer first"
        body = b"\n".join(lines)
        headers = {}
        if self._gzip_level > 0:
            body = gzip.compress(body, compresslevel=self._gzip_level)
            headers["Content-Encoding"] = "gzip"
        params = {
            "db": self._influx.database,
            "rp": self._influx.retention_policy,
            "precision": precision,
        }
        try:
            response = await self._client.post(
                "/write", params=params, content=body, headers=headers
            )
        except httpx.TransportError as exc:  # connect/read/write errors and timeouts
            raise InfluxUnavailable(f"InfluxDB at {self._influx.url} unreachable: {exc!r}") from exc
        _unbind(response)
        if response.status_code in (200, 204):
            return
        raise error_for_status(
            response.status_code,
            _message(response),
            parse_retry_after(response.headers.get("Retry-After")),
            self._influx.url,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def describe(self) -> str:
        i = self._influx
        return f"InfluxDB v1 API {i.url}/write db={i.database} rp={i.retention_policy}"


def _unbind(response: httpx.Response) -> None:
    """Break the reference cycle httpx leaves between a response and its stream.

    The client wraps every response's stream in a `BoundAsyncStream` that points
    back at the response (to set `elapsed` on close), so a response, its request
    and the request's body (the whole batch, uncompressed at level 0) are freed
    only by the cyclic garbage collector, which the sink runs rarely
    (`heatstream.runtime.GC_THRESHOLDS`): at level 0 every write's body stayed
    in memory until the next collection, ~19 MiB/min in the soak. `post` has
    read and closed the response already (its content stays readable); dropping
    the wrapper lets reference counting free all of it when the write returns.
    """
    response.stream = httpx.ByteStream(b"")


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "message"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return (
        response.headers.get("X-Influxdb-Error")
        or response.text.strip()
        or response.reason_phrase
        or f"HTTP {response.status_code}"
    )
