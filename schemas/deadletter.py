"""The dead-letter record: a message heatstream could not accept, kept whole.

Nothing is dropped silently: the original bytes (base64 in JSON), where they
came from and why they were refused are enough to inspect, fix and re-publish.
"""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_name: Literal["dead_letter"] = "dead_letter"
    schema_version: Literal[1] = 1
    source_topic: str
    source_partition: int = Field(ge=-1, description="-1 when not read from Kafka")
    source_offset: int = Field(ge=-1, description="-1 when not read from Kafka")
    key: bytes | None = Field(None, description="original Kafka key, base64 in JSON")
    original: bytes = Field(description="original message value, base64 in JSON")
    reason: str = Field(
        max_length=64,
        description="machine-readable code: decode_error, unknown_schema, schema_violation,"
        " unauthorised, late_event, influx_rejected, ...",
    )
    error: str = Field(max_length=4000, description="human-readable explanation")
    stage: str = Field("intake", description="which component refused it")
    rejected_at_ms: int = Field(description="wall-clock time of the rejection")

    @property
    def id(self) -> str:
        """Deterministic: the same message refused by the same stage is the same record."""
        return f"{self.stage}:{self.source_topic}:{self.source_partition}:{self.source_offset}"

    @field_serializer("key", "original", when_used="json")
    def _b64(self, value: bytes | None) -> str | None:
        return None if value is None else base64.b64encode(value).decode("ascii")

    @field_validator("key", "original", mode="before")
    @classmethod
    def _unb64(cls, value: object) -> object:
        if isinstance(value, str):
            return base64.b64decode(value, validate=True)
        return value

    @field_validator("error", mode="before")
    @classmethod
    def _clip(cls, value: object) -> object:
        if isinstance(value, str) and len(value) > 4000:
            return value[:3990] + " [...]"
        return value
