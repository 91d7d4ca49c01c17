"""Land a batch even when InfluxDB refuses some of its lines.

On a 400 the batch is split in halves, each written again, recursively, until
every refused line stands alone: those are returned with the server's message
(the caller dead-letters them), everything else has landed. Re-writing lines
InfluxDB had already accepted (a 1.x "partial write" keeps the good ones) is
harmless: a point with the same measurement, tags and timestamp overwrites.
A batch with k poison lines costs about 2·k·log2(n) extra requests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from heatstream.sinks.errors import InfluxRejected


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int  # position of the line in the batch
    message: str  # what InfluxDB said when it refused the line alone


async def write_isolating(
    write: Callable[[Sequence[bytes]], Awaitable[None]], lines: Sequence[bytes]
) -> list[Rejection]:
    """Write `lines`; return the ones InfluxDB refuses (indices into `lines`)."""
    if not lines:
        return []
    rejected: list[Rejection] = []
    pending: list[tuple[int, Sequence[bytes]]] = [(0, lines)]
    while pending:
        start, chunk = pending.pop()
        try:
            await write(chunk)
        except InfluxRejected as exc:
            if len(chunk) == 1:
                rejected.append(Rejection(start, exc.message))
                continue
            mid = len(chunk) // 2
            # Right half pushed first so the left half is written first (log order).
            pending.append((start + mid, chunk[mid:]))
            pending.append((start, chunk[:mid]))
    return sorted(rejected, key=lambda r: r.index)
