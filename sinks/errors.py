"""What can go wrong between the sink and InfluxDB, as types the sink acts on.

* `InfluxUnavailable`: 429, 5xx, timeouts, refused connections. Retried with
  backoff (honouring Retry-After); consumption pauses meanwhile.
* `InfluxRejected`: 400 (and 413): the server refused some of the lines. The
  batch is split until the culprits are isolated; they become dead letters.
* `InfluxConfigError`: 401, 403, 404, an unknown retention policy...: retrying
  cannot help, the sink stops and the message says what to change.
"""

from __future__ import annotations

from heatstream.errors import HeatstreamError


class SinkError(HeatstreamError):
    """Base class of the sink's errors."""


class InfluxUnavailable(SinkError, ConnectionError):
    """InfluxDB cannot take the write now; try again later."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class InfluxRejected(SinkError, ValueError):
    """InfluxDB refused (some of) the lines written; `message` is the server's."""

    def __init__(self, message: str, *, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


class InfluxConfigError(SinkError, RuntimeError):
    """The InfluxDB settings are wrong (credentials, database, bucket, retention policy)."""


class RetriesExhausted(SinkError, ConnectionError):
    """A write kept failing for `max_retries` retries; nothing was committed."""


def error_for_status(
    status: int, message: str, retry_after_s: float | None, where: str
) -> SinkError:
    """The error an InfluxDB answer with this status stands for."""
    text = f"InfluxDB at {where} answered {status}: {message}"
    if status in (400, 413):
        return InfluxRejected(message, status=status)
    if status in (401, 403):
        return InfluxConfigError(
            f"{text}; check the credentials (influxdb.username/password or influxdb.token)"
        )
    if status == 404:
        return InfluxConfigError(
            f"{text}; check influxdb.database (v1) or influxdb.org and influxdb.bucket (v2), "
            "and create it if needed"
        )
    if "retention policy not found" in message:
        return InfluxConfigError(f"{text}; check influxdb.retention_policy")
    if status == 429 or status >= 500:
        return InfluxUnavailable(text, status=status, retry_after_s=retry_after_s)
    return InfluxConfigError(f"{text} (unexpected status)")
