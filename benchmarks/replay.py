"""Replay, end to end into InfluxDB: how many times faster than real time?

The log of a fleet over `seconds` is loaded into a fresh raw topic, then it is
replayed two ways, each timed from process spawn (start-up is part of a real
replay) to the end:

* `heatstream replay` (`streams/replay.py`): one process reading the raw topic
  from offset 0 through the processor, publishing the derived events under
  another prefix and writing the points (derived and downsampled telemetry)
  to InfluxDB. Timed to its exit; it stops as soon as it has read the log as
  it stood when it started (no wait for the topic to fall silent).
* the live path re-reading the log: a `heatstream worker` and a `heatstream
  sink` with a fresh app id (default options), started together; the clock runs until
the worker's group has committed the whole raw topic and the sink's group has
committed every heat window the worker wrote and the raw topic up to its last
40 s (the sink's last telemetry buckets never close when the log stops, so it
holds their frames uncommitted by design). Replay speed =
seconds of fleet time / wall seconds. Process start-up is included (it is part
of a real replay); the figure without it is in the note.
"""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path

from benchmarks.broker import Committed, end_offsets, produce, provision
from benchmarks.procs import Children, Deployment, cpu_s
from benchmarks.results import Figure
from benchmarks.worker import crashes
from benchmarks.workload import GATEWAY_1S, Fleet, Message
from heatstream.schemas.topics import HEAT_WINDOWS, RAW_EVENTS, topic_name
from heatstream.stack.provision import create_database

POLL_S = 0.5


def run_replay_command(
    bootstrap: str,
    influx_url: str,
    fleet: Fleet,
    seconds: int,
    partitions: int,
    workdir: Path,
    children: Children,
    run_id: str,
) -> tuple[list[Figure], list[str]]:
    import re
    import sys

    dep = Deployment(
        bootstrap,
        f"brc{run_id}.",
        partitions,
        fleet.inventory,
        workdir / "replay-cmd",
        influx_url=influx_url,
        database=f"bench_{run_id}_replaycmd",
    )
    messages, readings = _load(dep, fleet, seconds)
    log = dep.workdir / "replay.log"
    argv = [sys.executable, "-m", "heatstream", "replay", "--database", dep.database or ""]
    t0 = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = children.start(argv, {**dep.env(), "COLUMNS": "200"}, log)
    proc.wait(timeout=1800)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    text = log.read_text(errors="replace")
    defects: list[str] = []
    how = "`heatstream replay`, spawn to exit"
    if proc.returncode != 0:
        # The figure is the command, end to end: no figure if it fails.
        last = text.strip().splitlines()[-1] if text.strip() else ""
        defects.append(
            f"`heatstream replay` exited with {proc.returncode}: {last[:300]} (log: {log})"
        )
        return [], defects
    m = re.search(
        r"replayed ([\d,]+) messages \(([\d,]+) readings\) in ([\d.]+) s.*?"
        r"([\d,]+) derived events, ([\d,]+) points written",
        text,
        re.S,
    )
    inner = float(m.group(3)) if m else wall
    detail = f"{m.group(4)} derived events, {m.group(5)} points written; " if m else ""
    return [
        *_speed_figures(
            "replay_speed_x",
            "replay_readings_per_s",
            seconds,
            readings,
            wall,
            label=f"replay {fleet.boilers:,} boilers into InfluxDB + topics",
            note=f"{how}: {seconds} s of fleet time ({readings:,} readings, {len(messages):,} "
            f"messages) in {wall:.1f} s; {detail}"
            f"{seconds / inner:.1f}x by its own clock ({inner:.1f} s)",
            rate_label="replay end to end",
        ),
        Figure(
            "replay_speed_per_cpu_x",
            seconds / cpu,
            "x real time",
            "replay per CPU-second of the replaying process",
            note=f"{cpu:.1f} CPU-s for {wall:.1f} s wall: what one dedicated core would do",
        ),
    ], defects


def run_replay(
    bootstrap: str,
    influx_url: str,
    fleet: Fleet,
    seconds: int,
    partitions: int,
    workdir: Path,
    children: Children,
    run_id: str,
    timeout_s: float = 900,
) -> tuple[list[Figure], list[str]]:
    dep = Deployment(
        bootstrap,
        f"brp{run_id}.",
        partitions,
        fleet.inventory,
        workdir / "replay",
        influx_url=influx_url,
        database=f"bench_{run_id}_replay",
    )
    messages, readings = _load(dep, fleet, seconds)
    asyncio.run(create_database(influx_url, dep.database or ""))
    raw = topic_name(RAW_EVENTS, dep.prefix)
    windows = topic_name(HEAT_WINDOWS, dep.prefix)
    per_gateway = fleet.per_gateway
    n = len(messages)
    # The sink commits the raw topic only up to the first frame of a telemetry bucket
    # still open, and the last buckets of a log that stops never close: the messages
    # of the final bucket + lateness (+ margin) stay uncommitted by design.
    held_back = (10 + 20 + 10) * fleet.gateways

    t0 = time.perf_counter()
    log = dep.workdir / "worker.log"
    worker = children.worker(dep, dep.workdir / "state", log)
    sink = children.sink(dep, dep.workdir / "sink.log")

    async def wait() -> tuple[float, float | None, float]:
        first: float | None = None
        async with (
            Committed(bootstrap, dep.app_id, raw, partitions) as w_raw,
            Committed(bootstrap, f"{dep.app_id}-sink", raw, partitions) as s_raw,
            Committed(bootstrap, f"{dep.app_id}-sink", windows, partitions) as s_win,
        ):
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                done_w = await w_raw.total()
                if first is None and done_w > 0:
                    first = time.perf_counter()
                if done_w >= n and await s_raw.total() >= n - held_back:
                    # The worker's output is acknowledged before it commits: final now.
                    ends = sum((await end_offsets(bootstrap, windows)).values())
                    if await s_win.total() >= ends:
                        used = cpu_s(worker.pid) + cpu_s(sink.pid)
                        return time.perf_counter(), first, used
                if worker.poll() is not None or sink.poll() is not None:
                    raise RuntimeError("worker or sink exited during the replay")
                await asyncio.sleep(POLL_S)
        raise TimeoutError(f"replay of {n} messages not done in {timeout_s:.0f} s")

    t_end, t_first, used = asyncio.run(wait())
    children.stop(sink)
    children.stop(worker)
    wall = t_end - t0
    without = t_end - (t_first or t0)
    return _speed_figures(
        "replay_worker_sink_speed_x",
        "replay_worker_sink_readings_per_s",
        seconds,
        readings,
        wall,
        label=f"re-read by worker + sink (fresh group), {fleet.boilers:,} boilers",
        note=f"{seconds} s of fleet time ({readings:,} readings, {per_gateway} boilers per "
        f"gateway frame) in {wall:.1f} s wall "
        f"from spawn; {seconds / without:.1f}x counted from the first commit; "
        f"worker + sink used {used:.1f} CPU-s",
        rate_label="re-read by worker + sink end to end (from spawn)",
    ), crashes(log)


def _load(dep: Deployment, fleet: Fleet, seconds: int) -> tuple[list[Message], int]:
    """Create `dep`'s topics and fill its raw topic with `seconds` of `fleet`'s frames,
    the log a replay re-reads; those messages and the readings they carry."""
    asyncio.run(provision(dep.bootstrap, dep.prefix, dep.partitions))
    messages, readings = fleet.messages(GATEWAY_1S, seconds)
    asyncio.run(produce(dep.bootstrap, topic_name(RAW_EVENTS, dep.prefix), messages))
    return messages, readings


def _speed_figures(
    speed_key: str,
    rate_key: str,
    seconds: int,
    readings: int,
    wall: float,
    *,
    label: str,
    note: str,
    rate_label: str,
) -> list[Figure]:
    """A replay's speed (fleet seconds per wall second) and its readings per second, the
    latter against the raw consume ceiling."""
    return [
        Figure(speed_key, seconds / wall, "x real time", label, note=note),
        Figure(
            rate_key,
            readings / wall,
            "readings/s",
            rate_label,
            "aiokafka_consume_readings_per_s",
        ),
    ]
