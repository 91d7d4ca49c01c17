"""GatewayConfig: every knob of one embedded gateway, in one frozen object.

Kafka connectivity (bootstrap, TLS, SASL) is not here: it comes from the
deployment's `KafkaSettings`, so a gateway and the stream processor read the
same configuration the same way. This object holds what is specific to one
gateway: its identity, where its durable state lives, how frames are cut, how
big the store-and-forward spool may grow and what happens when it is full, and
the key it signs its events with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from heatstream.schemas.envelope import ID_PATTERN
from heatstream.schemas.signing import MIN_KEY_LENGTH, check_key
from heatstream.schemas.telemetry import MAX_SAMPLES, MAX_SPAN_MS

Compression = Literal["gzip", "snappy", "lz4", "zstd"]
SpoolFullPolicy = Literal["reject_new", "drop_oldest"]

MIB = 2**20


class GatewayConfig(BaseModel):
    # Errors never echo their input: it may be the key.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    gateway: str = Field(pattern=ID_PATTERN, description="this gateway's id (the Kafka key)")
    site: str = Field(pattern=ID_PATTERN, description="the site it serves")
    state_dir: Path = Field(description="spool database and sequence numbers live here")
    topic: str | None = Field(
        None,
        description="raw-events topic; None: heatstream.raw.events under kafka.topic_prefix",
    )

    # -- frames -------------------------------------------------------------------
    frame_max_samples: int = Field(2000, ge=1, le=MAX_SAMPLES)
    frame_max_span_ms: int = Field(
        1000, ge=1, le=MAX_SPAN_MS, description="event-time span of one frame"
    )
    frame_max_bytes: int = Field(
        512 * 1024, ge=4096, description="seal a frame before its JSON could exceed this"
    )
    linger_ms: int | None = Field(
        200,
        ge=1,
        description="wall time after a frame's first sample at which a background task seals"
        " it; None disables it (frames then seal by size, span or seal() only, which keeps"
        " simulated-clock runs deterministic)",
    )

    # -- spool --------------------------------------------------------------------
    spool_max_bytes: int = Field(256 * MIB, description="bound on spooled message bytes")
    spool_full_policy: SpoolFullPolicy = Field(
        "reject_new",
        description="reject_new: refuse new events (SpoolFullError), nothing accepted is lost;"
        " drop_oldest: discard the oldest spooled events to make room",
    )
    spool_memory_bytes: int = Field(
        16 * MIB,
        ge=0,
        description="the most recently spooled messages are also kept in memory up to this"
        " many bytes, so the sender does not read them back from disk; 0 reads every message"
        " back",
    )
    spool_synchronous: Literal["NORMAL", "FULL"] = Field(
        "FULL",
        description="SQLite synchronous pragma: FULL survives power loss, NORMAL only"
        " process crashes (faster; fine for simulators)",
    )

    # -- sending ------------------------------------------------------------------
    compression: Compression | None = Field("gzip", description="Kafka compression codec")
    send_timeout_ms: int = Field(
        10_000, ge=100, description="how long one send may wait for acks=all before retrying"
    )
    retry_backoff_ms: int = Field(200, ge=1, description="first retry delay (doubles, jittered)")
    retry_backoff_max_ms: int = Field(30_000, ge=1)
    max_message_bytes: int = Field(
        MIB, ge=8192, description="largest message the broker accepts (message.max.bytes)"
    )
    batch_max_events: int = Field(500, ge=1, description="spool rows sent per round trip")
    seq_block: int = Field(
        64,
        ge=1,
        description="sequence numbers reserved per database write; a crash leaves a gap"
        " of at most this many, never a reuse",
    )
    close_timeout_ms: int = Field(
        10_000, ge=0, description="how long close() tries to drain before leaving the rest spooled"
    )

    # -- authentication -----------------------------------------------------------
    hmac_key: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key (at least"
        f" {MIN_KEY_LENGTH} characters) every event is signed with when it is spooled;"
        " the inventory lists the same key for this gateway (docs/security.md)",
    )

    _check_key = field_validator("hmac_key", mode="before")(check_key)

    @field_validator("compression")
    @classmethod
    def _codec_installed(cls, value: Compression | None) -> Compression | None:
        from aiokafka import codec

        available = {
            "gzip": codec.has_gzip,
            "snappy": codec.has_snappy,
            "lz4": codec.has_lz4,
            "zstd": codec.has_zstd,
        }
        if value is not None and not available[value]():
            raise ValueError(
                f"compression={value!r} needs the cramjam package (pip install cramjam);"
                " 'gzip' works without extra packages"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> GatewayConfig:
        if self.frame_max_bytes >= self.max_message_bytes:
            raise ValueError(
                f"frame_max_bytes={self.frame_max_bytes} must be below"
                f" max_message_bytes={self.max_message_bytes}"
            )
        if self.spool_max_bytes < self.max_message_bytes:
            raise ValueError(
                f"spool_max_bytes={self.spool_max_bytes} must hold at least one message"
                f" (max_message_bytes={self.max_message_bytes})"
            )
        if self.retry_backoff_max_ms < self.retry_backoff_ms:
            raise ValueError("retry_backoff_max_ms must be >= retry_backoff_ms")
        return self

    @property
    def db_path(self) -> Path:
        """The SQLite file holding this gateway's spool and sequence numbers."""
        return self.state_dir / f"{self.gateway}.spool.sqlite3"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / f"{self.gateway}.lock"
