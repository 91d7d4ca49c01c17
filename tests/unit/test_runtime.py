"""Process-wide garbage-collector tuning, and the acyclic state it relies on."""

from __future__ import annotations

import ctypes.util
import gc
import subprocess
import sys
from collections.abc import Iterator

import orjson
import pytest

from heatstream.inventory import synthetic_inventory
from heatstream.runtime import GC_THRESHOLDS, tune_gc
from heatstream.schemas.derived import HeatWindow
from heatstream.streams.processor import Processor
from tests.unit.test_processor import T0, Table, _job, gateway_frames, of, run_worker_like


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds, callbacks = gc.get_threshold(), list(gc.callbacks)
    yield
    gc.set_threshold(*thresholds)
    gc.callbacks[:] = callbacks
    gc.unfreeze()


def tracked(obj: object) -> bool:
    """In one of the collector's generations (not frozen)."""
    return any(o is obj for o in gc.get_objects())


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_survivors_of_a_full_collection_are_frozen_and_new_cycles_still_collected(
    restored_gc: None,
) -> None:
    before = len(gc.callbacks)
    tune_gc(freeze_survivors=True)
    tune_gc(freeze_survivors=True)  # registered once
    assert len(gc.callbacks) == before + 1
    survivor = [Cycle() for _ in range(1000)]
    gc.collect()
    frozen = gc.get_freeze_count()
    assert frozen >= len(survivor)
    assert not tracked(survivor[0])  # in no generation
    # Made after the freeze: still found and freed by the next full collection.
    Cycle()
    assert gc.collect() >= 1
    # A young collection freezes nothing; the next full one, what survived.
    young = [Cycle() for _ in range(10)]
    gc.collect(0)
    assert gc.get_freeze_count() == frozen
    gc.collect()
    assert gc.get_freeze_count() >= frozen + len(young)


def test_without_the_option_only_the_thresholds_change(restored_gc: None) -> None:
    gc.unfreeze()
    callbacks = list(gc.callbacks)
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.callbacks == callbacks
    keep = [Cycle() for _ in range(100)]
    gc.collect()
    assert gc.get_freeze_count() == 0
    assert tracked(keep[0])


def test_the_processor_state_forms_no_cycles() -> None:
    """Frozen by the worker's collector tuning, a cycle in the state would never be
    freed: three hours of windows, jobs, rollups and a restart from the table
    leave none. Fails on any cycle: collected objects are counted."""
    inv = synthetic_inventory(boilers=4, sites=2)
    msgs = gateway_frames(inv, seconds=3 * 3600, span_s=60)
    for k in range(8):
        t = T0 + k * 1_200_000 + 30_000
        boiler = inv.boilers[k % 4].id
        msgs.append(_job(200 + 2 * k, t, boiler, inv=inv, job=f"d{k}"))
        msgs.append(_job(201 + 2 * k, t + 600_000, boiler, inv=inv, finished=True, job=f"d{k}"))
    msgs.sort(key=lambda m: orjson.loads(m[1])["event_time_ms"])
    table = Table()
    cut = len(msgs) // 2
    first = Processor(inv)
    out = run_worker_like(first, msgs[:cut], table, batch=5)
    second = Processor(inv)  # a restart: state imported from the rows
    out += run_worker_like(second, msgs, table, start=cut, batch=5)
    windows = of(out, HeatWindow)
    assert sum(w.resolution == "1m" for w in windows) >= 4 * 170
    assert sum(w.resolution == "1h" for w in windows) >= 4 * 2  # rollups closed
    del out
    gc.collect()  # transient garbage of the run, if any
    del first, second, table
    assert gc.collect() == 0


_FAULTS = """
import resource, sys
import numpy as np
from heatstream.runtime import tune_malloc
applied = tune_malloc() if sys.argv[1] == "tuned" else None
def close_like():  # several ~1 MB temporaries alive at once, as in a window close
    arrays = [np.ones(131_072) for _ in range(6)]
    return sum(float(a[-1]) for a in arrays)
close_like()  # the thresholds adapt to the first blocks freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    close_like()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(ctypes.util.find_library("c") is None, reason="no C library found")
def test_tuned_malloc_reuses_freed_memory_instead_of_faulting_it_in_again() -> None:
    # 200 rounds of 6 MB: returned to the kernel and faulted in again each round
    # (6 MB = 1,536 pages) unless malloc keeps it.
    applied, tuned = _faults("tuned")
    _, default = _faults("default")

    assert applied == "True"
    assert default > 200 * 1000
    assert tuned < 1000


_NICE = """
import os, threading
from heatstream.runtime import lower_cpu_priority
def nice_of(tid):
    stat = open(f"/proc/self/task/{tid}/stat").read()
    return int(stat[stat.rindex(")") + 2 :].split()[16])
before = os.getpriority(os.PRIO_PROCESS, 0)
go, started = threading.Event(), []
def run():
    started.append(threading.get_native_id())
    go.wait()
early = threading.Thread(target=run)  # running before the call, as a library's pool
early.start()
while not started:
    pass
raised = lower_cpu_priority(before + 3)
seen = []
late = threading.Thread(target=lambda: seen.append(nice_of(threading.get_native_id())))
late.start(); late.join()
early_nice = nice_of(started[0])
go.set(); early.join()
kept = lower_cpu_priority(before)  # never lowered again
print(before, raised, early_nice, seen[0], kept)
"""


def test_lower_cpu_priority_raises_every_thread_and_later_ones_and_never_lowers_it() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _NICE], capture_output=True, text=True, check=True
    ).stdout.split()
    before, raised, early, late, kept = map(int, out)

    assert before <= 16  # room to raise it by 3
    assert raised == early == late == kept == before + 3
