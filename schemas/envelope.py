"""The envelope every raw event carries.

A raw event's identity is `(gateway, seq)`: the gateway numbers its events with
a per-gateway sequence that never goes backwards, even across restarts, so
`event_id = "<gateway>:<seq>"` is stable and duplicates can be dropped
idempotently while gaps in `seq` reveal lost events.

Times are integers in milliseconds since the Unix epoch, UTC: unambiguous in
every language a gateway vendor writes in, and cheap to parse.
`event_time_ms` is when the data was measured (processing runs on it),
`ingest_time_ms` when the gateway handed the event to Kafka.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)

# 2000-01-01 .. 2100-01-01: anything outside is a broken clock, not a measurement.
MIN_TIME_MS = 946_684_800_000
MAX_TIME_MS = 4_102_444_800_000

Identifier = Field(pattern=ID_PATTERN, description="letters, digits, '.', '_', '-'; at most 64")


def is_identifier(value: str) -> bool:
    return bool(_ID_RE.match(value))


def make_event_id(gateway: str, seq: int) -> str:
    return f"{gateway}:{seq}"


class Envelope(BaseModel):
    """Fields common to every raw event (telemetry frames and compute events)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_name: str = Field(description="event type, e.g. 'telemetry.frame'")
    schema_version: int = Field(ge=1, description="version of that event type's contract")
    event_id: str = Field(description="'<gateway>:<seq>', stable across redeliveries")
    gateway: str = Field(pattern=ID_PATTERN, description="id of the publishing gateway")
    seq: int = Field(ge=0, description="per-gateway sequence number, monotonic across restarts")
    site: str = Field(pattern=ID_PATTERN, description="site the gateway serves")
    event_time_ms: int = Field(
        ge=MIN_TIME_MS, le=MAX_TIME_MS, description="when measured, ms since epoch UTC"
    )
    ingest_time_ms: int = Field(
        ge=MIN_TIME_MS, le=MAX_TIME_MS, description="when handed to Kafka, ms since epoch UTC"
    )
    hmac: str | None = Field(
        None,
        description="HMAC-SHA256 of the event's JSON without this member, under the gateway's"
        " key: 64 lowercase hex digits, written as the object's last member (see"
        " heatstream.schemas.signing). Required when the inventory lists a key for the"
        " gateway; ignored otherwise",
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_event_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and "event_id" not in data:
            gateway, seq = data.get("gateway"), data.get("seq")
            if isinstance(gateway, str) and isinstance(seq, int):
                data = {**data, "event_id": make_event_id(gateway, seq)}
        return data

    @model_validator(mode="after")
    def _event_id_matches(self) -> Envelope:
        expected = make_event_id(self.gateway, self.seq)
        if self.event_id != expected:
            raise ValueError(f"event_id={self.event_id!r} does not match gateway:seq={expected!r}")
        return self

    @property
    def boiler_ids(self) -> tuple[str, ...]:
        """The boilers this event concerns (every event type overrides this)."""
        return ()
