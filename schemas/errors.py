"""Errors raised while decoding and validating events.

Every error carries a short machine-readable `reason` (the dead-letter reason
code) and a message that names the field, the index and the value at fault.
"""

from __future__ import annotations

from heatstream.errors import HeatstreamError


class EventError(HeatstreamError, ValueError):
    """An event could not be accepted. `reason` is the dead-letter reason code."""

    reason = "invalid_event"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class DecodeError(EventError):
    """The bytes are not a JSON object (broken JSON, invalid UTF-8, not an object)."""

    reason = "decode_error"


class UnknownSchemaError(EventError):
    """The schema name or version is not one this release knows."""

    reason = "unknown_schema"


class SchemaValidationError(EventError):
    """The JSON decoded but does not satisfy the event's contract."""

    reason = "schema_violation"
