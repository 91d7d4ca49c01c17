"""The interface of an InfluxDB write API as the sink sees it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from heatstream.sinks.lineprotocol import Precision


class Writer(ABC):
    """Writes lines of one precision in one request.

    `write` returns when InfluxDB acknowledged every line, and otherwise raises
    `InfluxUnavailable` (try again), `InfluxRejected` (some lines refused) or
    `InfluxConfigError` (stop). It never retries by itself.
    """

    @abstractmethod
    async def start(self) -> None:
        """Open connections (inside the running event loop)."""

    @abstractmethod
    async def check(self) -> None:
        """Raise unless InfluxDB answers and accepts writes to the configured target."""

    @abstractmethod
    async def write(self, lines: Sequence[bytes], precision: Precision) -> None:
        """Write the lines; see the class docstring for the outcomes."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""

    @abstractmethod
    def describe(self) -> str:
        """Where the points go, for the start-up line (no secrets)."""
