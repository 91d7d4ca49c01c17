"""A fix to Faust (faust-streaming 0.15) that the worker applies when it builds its app.

Committing past a false gap, one offset per commit
--------------------------------------------------
Faust commits a partition up to the first hole in the offsets its agents have
acknowledged, and records a *gap* when a message's offset is more than one past
the last one it read (a compacted topic, a transaction marker), so that the
missing offsets do not hold the commit back. After recovering its tables, a
worker resumes its stream partitions before it seeks them to their committed
offsets: the records fetched during recovery are delivered in between, the seek
then rewinds the read position, and the next record looks like a jump. The gap
recorded then covers offsets that were delivered and are acknowledged too.

`Consumer._new_offset` merges a gap into the acknowledged offsets without
removing repeats, and takes the first run of *consecutive* offsets as what can
be committed. With every offset there twice the runs are one or two long, so
the committed offset moved by one or two per commit (one a second): after a
restart, a worker that had caught up in seconds reported a lag for as many
seconds as the gap had records (34-88 s measured; robinhood/faust#625 reports
the same repeats). `fix_gap_commits` merges the gap itself, without repeats,
before Faust's method runs, which then finds nothing left to merge.
"""

from __future__ import annotations

from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP

_FIXED = "_heatstream_gap_commits_fixed"
#: Faust's method as shipped (this module is what replaces it).
UNFIXED_NEW_OFFSET = Consumer._new_offset


def fix_gap_commits() -> None:
    """Make `Consumer._new_offset` merge gaps without repeated offsets (idempotent)."""
    if getattr(Consumer, _FIXED, False):
        return

    def _new_offset(self: Any, tp: TP) -> int | None:
        merge_gap(self._acked[tp], self._gap[tp])
        return UNFIXED_NEW_OFFSET(self, tp)

    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    setattr(Consumer, _FIXED, True)


def merge_gap(acked: list[int], gap: Any) -> None:
    """Move the gap's intervals below the highest acknowledged offset into `acked`,
    each offset once, sorted (`gap` is Faust's IntervalTree, end excluded)."""
    if not acked or not gap:
        return
    top = max(acked)
    spans = gap.overlap(0, top)
    if not spans:
        return
    merged = set(acked)
    for span in spans:
        merged.update(range(span.begin, span.end))
    acked[:] = sorted(merged)
    gap.chop(0, max(top + 1, max(span.end for span in spans)))
