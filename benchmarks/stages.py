"""Each stage of the pipeline alone, in this process, on pre-generated messages.

No broker here: messages are handed over as bytes, one `Processor` per Kafka
partition (the gateway key hashed as the Kafka client does), so every stage
sees the state sizes the worker would. Stateful stages are measured in steady
state: the first `warm` messages (more than allowed lateness + window + max
gap of event time) go through untimed, so that buffers are full and every
boiler closes a window a minute in the timed part, as in a long run. Stages:

* decode + validate: `decode_and_authorise` (orjson, pydantic, inventory checks);
* heat windows: the processor's own frame intake and window closing
  (`Processor._frame`, `WindowEngine.close_ready`, `summarise`) on decoded frames;
* detectors: `Processor._closed` (heat window, rollups, efficiency, leaks,
  data quality) on the window statistics the previous stage produced;
* the whole `Processor.process` (all of the above plus sequences, clocks, liveness);
* state export: `Processor.dirty_rows`, which the worker runs to write the
  state rows a batch of messages changed (a gateway's, its boilers') to its
  Faust table;
* the worker's core loop without Faust: process, encode what it emits, export,
  for a backlog (full batches) and live (one export per message);
* line-protocol encoding: derived events to InfluxDB lines (`sinks.points`,
  `sinks.lineprotocol`);
* the sink's raw landing: frames decoded again and downsampled to
  `telemetry` points (`sinks.downsample`).
"""

from __future__ import annotations

import contextlib
import cProfile
import gc
import io
import pstats
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.partitioner import murmur2

from benchmarks.results import Figure
from benchmarks.workload import GATEWAY_1S, N_CHANNELS, Fleet, Message, Recording
from heatstream.inventory import Inventory
from heatstream.schemas.serde import decode_raw, encode
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.sinks.downsample import DownsampleParams, Downsampler
from heatstream.sinks.lineprotocol import encode_points
from heatstream.sinks.points import points_of
from heatstream.streams import app as app_module
from heatstream.streams.intake import decode_and_authorise
from heatstream.streams.processor import Emit, Origin, Processor, ProcessorParams
from heatstream.streams.stats import WindowStats

TOPIC = "bench.raw"
BATCH_MAX = getattr(app_module, "BATCH_MAX", 1)  # messages per agent batch in the worker
WALL: dict[str, float] = {}  # stage -> wall seconds of its last run
_untimed = contextlib.nullcontext()


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the Kafka client's default partitioner picks for a key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass
class StageRun:
    figures: list[Figure]
    emits: list[Emit]
    profile: str


class CpuClock:
    """Accumulates this thread's CPU time over the `with` blocks it is used in."""

    def __init__(self) -> None:
        self.total = 0.0

    def __enter__(self) -> CpuClock:
        self._t = time.thread_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.total += time.thread_time() - self._t


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Least CPU time of `repeat` runs, and the last result.

    CPU time of this thread rather than wall time: these stages are single
    threaded, and on a shared 2-core machine the wall clock also counts the
    time other processes held the core. The figure is what one dedicated core
    does; `WALL` keeps the wall-clock times for the record.
    """
    best, result = float("inf"), None
    for _ in range(repeat):
        w, t = time.perf_counter(), time.thread_time()
        result = fn()
        cpu = time.thread_time() - t
        WALL[getattr(fn, "__name__", "?")] = time.perf_counter() - w
        best = min(best, cpu)
    return best, result


#: The speed gauge's workload: one gateway's frames of 100 boilers, 1 s each.
GAUGE_SECONDS = 20
GAUGE_PASSES = 10  # per sample: ~25 ms of CPU here
GAUGE_SAMPLES = 15


def gauge_workload(recording: Recording) -> tuple[list[Message], int, Inventory]:
    """The speed gauge's messages (one gateway of 100 boilers, `GAUGE_SECONDS` frames
    of 1 s), their readings, and the inventory that accepts them."""
    fleet = Fleet(recording, 100)
    messages, readings = fleet.messages(GATEWAY_1S, GAUGE_SECONDS)
    return messages, readings, fleet.inventory


def speed_gauge(messages: list[Message], readings: int, inventory: Inventory) -> float:
    """How fast this machine runs the worker's kind of work right now, in readings per
    CPU-second: decode and validation (`decode_and_authorise`, pure CPU in this
    process) of the same messages, `GAUGE_PASSES` times a sample, the median of
    `GAUGE_SAMPLES` samples (this machine's speed moves by +-15 % from one second to
    the next, and by 50 % from one hour to another: BENCHMARKS.md). Runs made at
    different times are compared through it. The cyclic garbage collector is off
    meanwhile, so that what the harness holds at the time cannot weigh on it (with
    1.5 M objects held it did not: 10.4-12.0 M readings/s either way)."""

    def sample() -> float:
        t = time.thread_time()
        for _ in range(GAUGE_PASSES):
            for key, value in messages:
                decode_and_authorise(value, key, inventory)
        return time.thread_time() - t

    enabled = gc.isenabled()
    gc.disable()
    try:
        times = sorted(sample() for _ in range(GAUGE_SAMPLES))
    finally:
        if enabled:
            gc.enable()
    return readings * GAUGE_PASSES / times[GAUGE_SAMPLES // 2]


def run_stages(
    messages: list[Message],
    readings: int,
    inventory: Inventory,
    partitions: int,
    params: ProcessorParams | None = None,
    *,
    warm: int = 0,
    profile: bool = True,
) -> StageRun:
    """Every stage over `messages` (all of `readings` readings, equal per message);
    stateful stages time only the messages after the first `warm`."""
    params = params or ProcessorParams()
    parts = [partition_of(k, partitions) for k, _ in messages]
    origins = [Origin(TOPIC, p, i, 0) for i, p in enumerate(parts)]
    timed_readings = readings * (len(messages) - warm) / len(messages)
    figures: list[Figure] = []
    ceiling = "aiokafka_consume_readings_per_s"
    steady = f"steady state: messages {warm}..{len(messages)} of {len(messages)} timed"

    # decode + validate: no state, every message. Each event is dropped once decoded,
    # as in the worker: keeping all 2,200 (their ~3 M floats) for the next stage made
    # the garbage collector's passes part of this figure, about halving it.
    def decode() -> None:
        for k, v in messages:
            decode_and_authorise(v, k, inventory)

    t_decode, _ = timed(decode)
    frames = [decode_and_authorise(v, k, inventory) for k, v in messages]
    figures.append(
        Figure(
            "decode_readings_per_s",
            readings / t_decode,
            "readings/s",
            "decode + validate (decode_and_authorise)",
            ceiling,
        )
    )

    # heat windows alone, on decoded frames
    procs = [Processor(inventory, params) for _ in range(partitions)]
    closed: list[tuple[bool, int, WindowStats]] = []  # (timed?, partition, stats)
    clock = CpuClock()
    for i, ((key, raw), frame, p, origin) in enumerate(
        zip(messages, frames, parts, origins, strict=True)
    ):
        proc, counted = procs[p], i >= warm
        with clock if counted else _untimed:
            proc._frame(frame, raw, key, origin)
            stats = list(proc.engine.close_ready())
        closed.extend((counted, p, s) for s in stats)
    figures.append(
        Figure(
            "windows_readings_per_s",
            timed_readings / clock.total,
            "readings/s",
            "heat windows (intake arrays, buffers, close, summarise)",
            ceiling,
            note=steady,
        )
    )

    # detectors alone, on the window statistics (warm ones untimed: baselines learn)
    procs = [Processor(inventory, params) for _ in range(partitions)]
    clock = CpuClock()
    window_readings = 0
    for counted, p, stats in closed:
        with clock if counted else _untimed:
            procs[p]._closed(stats)
        if counted:
            window_readings += stats.samples * N_CHANNELS
    if window_readings:
        figures.append(
            Figure(
                "detectors_readings_per_s",
                window_readings / clock.total,
                "readings/s",
                "detectors + heat window events (Processor._closed)",
                ceiling,
                note=f"{sum(c for c, _, _ in closed)} closed boiler-windows timed, holding "
                f"{window_readings:,} readings",
            )
        )

    # The whole processor, and what the worker adds: encoding what it emits and
    # writing back the state rows a batch changed (`streams/app.py`, once per
    # batch of up to BATCH_MAX messages). Two cases: live (a batch gathers 0.2 s
    # of traffic, one frame per gateway at most: one export per message), then a
    # backlog (replay, catching up: full batches) in a second pass, since an
    # export takes the rows it writes.
    procs = [Processor(inventory, params) for _ in range(partitions)]
    emits: list[Emit] = []
    c_proc, c_encode, c_live, c_batch = CpuClock(), CpuClock(), CpuClock(), CpuClock()
    sizes: list[int] = []  # bytes written back per message (live)
    rows: list[int] = []  # bytes of each row written (live)
    for i, ((key, raw), p, origin) in enumerate(zip(messages, parts, origins, strict=True)):
        proc, counted = procs[p], i >= warm
        with c_proc if counted else _untimed:
            out = proc.process(raw, key, origin)
        with c_encode if counted else _untimed:
            for emit in out:
                encode(emit.event)
        with c_live if counted else _untimed:
            written = [len(v) for _, v in proc.dirty_rows()]
        if counted:
            sizes.append(sum(written))
            rows.extend(written)
            emits.extend(out)
    procs = [Processor(inventory, params) for _ in range(partitions)]
    for i, ((key, raw), p, origin) in enumerate(zip(messages, parts, origins, strict=True)):
        procs[p].process(raw, key, origin)
        if (i + 1) % BATCH_MAX == 0 or i + 1 == len(messages):
            with c_batch if i >= warm else _untimed:
                for pr in procs:
                    pr.dirty_rows()
    t_proc, t_encode, t_live, t_batch = c_proc.total, c_encode.total, c_live.total, c_batch.total
    figures += [
        Figure(
            "processor_readings_per_s",
            timed_readings / t_proc,
            "readings/s",
            "processor: decode..detectors (Processor.process)",
            ceiling,
            note=f"{steady}; {len(emits)} derived events; {partitions} partitions",
        ),
        Figure(
            "worker_core_readings_per_s",
            timed_readings / (t_proc + t_encode + t_batch),
            "readings/s",
            f"worker loop w/o Faust, backlog (changed rows exported per {BATCH_MAX} msgs)",
            ceiling,
            note=f"CPU: process {t_proc:.2f} s, encode {t_encode:.2f} s, "
            f"export {t_batch:.2f} s (backlog) / {t_live:.2f} s (live)",
        ),
        Figure(
            "worker_core_live_readings_per_s",
            timed_readings / (t_proc + t_encode + t_live),
            "readings/s",
            "worker loop w/o Faust, live (export per message)",
            ceiling,
        ),
        Figure(
            "state_export_readings_per_s",
            timed_readings / t_live,
            "readings/s",
            "state export, once per message (dirty_rows, pickle)",
            ceiling,
        ),
        Figure(
            "state_bytes_per_message",
            sum(sizes) / len(sizes),
            "bytes",
            "table rows written back per message, live (mean bytes)",
            note=f"{len(rows) / len(sizes):.1f} rows (changelog records) per message",
        ),
        Figure(
            "state_bytes_max",
            max(rows),
            "bytes",
            "table row (largest)",
            note="a changelog record: above 1,048,576 B (aiokafka max_request_size) the "
            "worker's producer fails",
        ),
    ]

    # line protocol of the derived events (repeated to get a stable figure)
    events = [e.event for e in emits]
    if events:
        reps = max(1, 20_000 // len(events))

        def lines() -> int:
            n = 0
            for _ in range(reps):
                for event in events:
                    n += len(encode_points(points_of(event)))
            return n

        t_lines, n_lines = timed(lines)
        figures.append(
            Figure(
                "lineprotocol_points_per_s",
                n_lines / t_lines,
                "points/s",
                "line-protocol encoding of derived events",
                "influx_write_ceiling_points_per_s",
            )
        )

    # the sink's raw landing: decode again and downsample to 10 s means
    def downsample() -> int:
        samplers = [
            Downsampler(DownsampleParams(10_000, 20_000, 120_000)) for _ in range(partitions)
        ]
        n = 0
        for (_key, raw), p, origin in zip(messages, parts, origins, strict=True):
            frame = decode_raw(raw)
            assert isinstance(frame, TelemetryFrame)
            n += len(samplers[p].add(frame, origin.offset))
        return n

    t_down, _ = timed(downsample)
    figures.append(
        Figure(
            "sink_downsample_readings_per_s",
            readings / t_down,
            "readings/s",
            "sink raw landing (decode + downsample)",
            ceiling,
        )
    )

    text = (
        profile_processor(messages, parts, origins, inventory, params, partitions, warm=warm)
        if profile
        else ""
    )
    return StageRun(figures, emits, text)


def profile_processor(
    messages: list[Message],
    parts: list[int],
    origins: list[Origin],
    inventory: Inventory,
    params: ProcessorParams,
    partitions: int,
    top: int = 30,
    *,
    warm: int = 0,
) -> str:
    """cProfile of the worker's core loop, live case (process + encode + one export
    per message), by cumulative and own time, over the messages after `warm`."""
    procs = [Processor(inventory, params) for _ in range(partitions)]
    prof = cProfile.Profile()
    start = warm
    if start == 0:
        prof.enable()
    for i, ((key, raw), p, origin) in enumerate(zip(messages, parts, origins, strict=True)):
        if i == start and start:
            prof.enable()
        for emit in procs[p].process(raw, key, origin):
            encode(emit.event)
        procs[p].dirty_rows()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.strip_dirs()
    out.write(f"profiled: messages {start}..{len(messages)} of {len(messages)}\n")
    out.write("== by cumulative time ==\n")
    stats.sort_stats("cumulative").print_stats(top)
    out.write("== by own time ==\n")
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()
