"""Process-wide tuning of the long-running commands (worker, sink, replay)."""

from __future__ import annotations

import gc

#: CPython collects cyclic garbage every 700 net allocations by default. A
#: worker holds millions of small, long-lived objects (windows, detector state)
#: that reference counting frees and that form no cycles, so each collection
#: mostly re-walks survivors: with 10,000 boilers the default cost the worker
#: 13-29 % of its readings per CPU-second (benchmarks/worker.py, A/B on the same
#: machine). Young objects are still collected every 100,000 allocations and
#: the oldest generation as often as CPython's own rules allow, so cycles
#: (asyncio's exceptions and tracebacks) are reclaimed: the 10-minute soak test
#: holds the worker's memory flat.
GC_THRESHOLDS = (100_000, 20, 10)


def tune_gc() -> None:
    """Collect cyclic garbage less often (see GC_THRESHOLDS)."""
    gc.set_threshold(*GC_THRESHOLDS)
