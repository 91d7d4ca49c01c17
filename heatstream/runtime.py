"""Process-wide tuning of the long-running commands (worker, sink, replay)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
from pathlib import Path
from typing import Any

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


def tune_gc(*, freeze_survivors: bool = False) -> None:
    """Collect cyclic garbage less often (see GC_THRESHOLDS).

    `freeze_survivors`: after every full collection, move the objects that
    survived it to the permanent generation (`gc.freeze`), so that the next
    full collection walks only the objects made since. For the stream worker:
    its state, ~64 tracked objects a boiler, is walked whole by every full
    collection otherwise, 350 ms at 10,000 boilers, and a minute's window
    closes allocate enough to trigger two in a row (BENCHMARKS.md). Reference
    counting still frees frozen objects; only a cycle among them would never
    be reclaimed, and the processor's state holds none
    (tests/unit/test_runtime.py).
    """
    gc.set_threshold(*GC_THRESHOLDS)
    if freeze_survivors and _freeze_after_full_collection not in gc.callbacks:
        gc.callbacks.append(_freeze_after_full_collection)


def _freeze_after_full_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


#: glibc's malloc serves a block above its mmap threshold with fresh pages from
#: the kernel, and gives the free memory at the top of its heap back as soon as
#: it exceeds the trim threshold. Both thresholds start at 128 KiB and then follow
#: the largest block freed (trim: twice that). The window closes make numpy
#: temporaries of 0.3-1 MB several at a time (a gateway's 100 boilers x 13 rows x
#: ~80 samples), so each close gave their pages back and faulted them in again,
#: zeroed: `trapezoids` on such arrays ran 9x slower than on reused memory, and
#: the closes took twice the page faults (BENCHMARKS.md). Fixed thresholds keep up to
#: MALLOC_TRIM_THRESHOLD of freed memory for reuse, in a process of hundreds of MiB.
MALLOC_MMAP_THRESHOLD = 32 * 1024 * 1024
MALLOC_TRIM_THRESHOLD = 128 * 1024 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>


def tune_malloc() -> bool:
    """Keep freed memory for reuse instead of returning it to the kernel at once
    (see MALLOC_MMAP_THRESHOLD). True when applied: glibc only; elsewhere
    (another C library, no `mallopt`) nothing changes and this returns False."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Both or neither: a fixed mmap threshold alone disables the dynamic trim
    # threshold too, leaving it at 128 KiB, worse than the default.
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)
        and mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)
    )


def lower_cpu_priority(nice: int) -> int:
    """Raise the nice value of this process to `nice` where it is lower (lowering it
    needs privileges); the nice value of the calling thread is returned. On Linux a
    nice value is per thread: every thread running now is raised (a library may
    have started some at import, as OpenBLAS does), and threads started after
    inherit it from the one that starts them."""
    tasks = Path("/proc/self/task")
    threads = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]
    for tid in threads:
        with contextlib.suppress(ProcessLookupError):  # a thread that has just ended
            if nice > os.getpriority(os.PRIO_PROCESS, tid):
                os.setpriority(os.PRIO_PROCESS, tid, nice)
    return os.getpriority(os.PRIO_PROCESS, 0)
