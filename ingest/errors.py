"""Errors the gateway SDK raises on purpose.

Each inherits the builtin it resembles, so gateway software that only knows
`ValueError` still catches a bad sample, and each message says what to change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from heatstream.errors import HeatstreamError

if TYPE_CHECKING:
    from heatstream.ingest.columns import EncodedFrame
    from heatstream.schemas.envelope import Envelope


class GatewayError(HeatstreamError):
    """Base class of the gateway SDK's errors."""


class SampleError(GatewayError, ValueError):
    """A reading handed to `add_sample` is not one the contract allows (a gateway bug)."""


class EventRejectedError(GatewayError, ValueError):
    """An event handed to `send` cannot be published (wrong gateway, too large, ...)."""


class GatewayConfigError(GatewayError, ValueError):
    """The gateway or Kafka configuration is unusable; the message says what to set."""


class StateLockedError(GatewayError, RuntimeError):
    """Another process already runs this gateway on this state directory.

    Two writers would hand out the same sequence numbers, so this is refused.
    """


class GatewayClosedError(GatewayError, RuntimeError):
    """The gateway is not started (or already closed)."""


class SpoolFullError(GatewayError):
    """Backpressure: the spool is full and the policy is `reject_new`.

    The refused events are attached (`events`, or `raw` for `send_raw` bytes) so the
    caller may keep them and retry once the broker is back and the spool drains.
    They are counted in `GatewayCounters.dropped` when refused; a later successful
    retry is counted as accepted like any new event.
    """

    def __init__(
        self,
        message: str,
        *,
        events: Sequence[Envelope | EncodedFrame] = (),
        raw: bytes | None = None,
        spool_bytes: int = 0,
        max_bytes: int = 0,
    ) -> None:
        super().__init__(message)
        self.events = tuple(events)
        self.raw = raw
        self.spool_bytes = spool_bytes
        self.max_bytes = max_bytes
