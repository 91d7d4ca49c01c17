"""The InfluxDB 2.x write API (`/api/v2/write`) through influxdb-client's async client.

For InfluxDB 2.x, 3.x, Cloud and 1.8+ (the reference deployment). The lines
come from our encoder and are passed as bytes; the client only gzips them (unless
the sink's gzip level is 0) and sends
them (its retrying batch machinery is not used: the sink retries itself, so
both APIs behave alike). On InfluxDB 1.8 use `influxdb.token = "user:password"`
and `influxdb.bucket = "database/retention_policy"`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp

from heatstream.settings import InfluxSettings
from heatstream.sinks.errors import InfluxConfigError, InfluxUnavailable, error_for_status
from heatstream.sinks.lineprotocol import Precision
from heatstream.sinks.retry import parse_retry_after
from heatstream.sinks.writers.base import Writer


class V2Writer(Writer):
    def __init__(
        self, influx: InfluxSettings, *, timeout_s: float = 10.0, gzip: bool = True
    ) -> None:
        self._influx = influx
        self._gzip = gzip
        self._timeout_ms = int(timeout_s * 1000)
        self._client: Any = None
        self._api: Any = None

    def _token(self) -> str | None:
        i = self._influx
        if i.token is not None:
            return i.token.get_secret_value()
        if i.username is not None:  # InfluxDB 1.8's v2 API takes "user:password" as the token
            return f"{i.username}:{i.password.get_secret_value() if i.password else ''}"
        return None

    async def start(self) -> None:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        self._client = InfluxDBClientAsync(
            url=self._influx.url,
            token=self._token() or "",
            org=self._influx.org,
            timeout=self._timeout_ms,
            enable_gzip=self._gzip,
        )
        self._api = self._client.write_api()

    async def check(self) -> None:
        from influxdb_client.rest import ApiException

        try:
            await self._client.ping()
        except ApiException as exc:
            raise self._error(exc) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise InfluxUnavailable(f"InfluxDB at {self._influx.url} unreachable: {exc!r}") from exc

    async def write(self, lines: Sequence[bytes], precision: Precision) -> None:
        from influxdb_client.rest import ApiException

        if not lines:
            return
        try:
            await self._api.write(
                bucket=self._influx.bucket,
                org=self._influx.org,
                record=b"\n".join(lines),
                write_precision=precision,  # WritePrecision values are these strings
            )
        except ApiException as exc:
            raise self._error(exc) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise InfluxUnavailable(f"InfluxDB at {self._influx.url} unreachable: {exc!r}") from exc

    def _error(self, exc: Any) -> Exception:
        if not exc.status:  # the client refused before sending: a bug, not a server answer
            return InfluxConfigError(f"influxdb-client could not send the request: {exc.reason}")
        message = _text(exc.message or exc.body or exc.reason)
        retry_after = parse_retry_after(exc.retry_after) if exc.retry_after else None
        return error_for_status(exc.status, message, retry_after, self._influx.url)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def describe(self) -> str:
        i = self._influx
        return f"InfluxDB v2 API {i.url}/api/v2/write org={i.org} bucket={i.bucket}"


def _text(body: object) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return str(body)
