"""Helpers of the soak test: memory samples and their trend, the worker's lag,
and what landed in InfluxDB.

Memory is read from /proc/<pid>/status (VmRSS), as the benchmark harness does
(`benchmarks.procs.rss_mb`); the trend is the least-squares slope of RSS over
time. Lag is read without joining the worker's group: a consumer carrying the
group id asks `committed()` (Tansu 0.6 answers the admin client's offset fetch
in a form aiokafka cannot decode). Tansu's ListOffsets answers the base offset
of a partition's last record batch + 1, not its end, so the real end of a
partition is read from its records.
"""

from __future__ import annotations

import asyncio
import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition


@dataclass(frozen=True, slots=True)
class Sample:
    t_s: float  # seconds after the fleet's first event (negative before it)
    worker_mib: float
    sink_mib: float
    broker_mib: float  # Tansu: keeps every log in memory, so it grows by design
    influxd_mib: float
    worker_cpu_s: float
    lag_messages: int | None  # raw messages not committed by the worker (against
    # Tansu's reported ends, i.e. short by at most one record batch per partition)
    load_1m: float  # the machine's 1-minute load average (2 cores, shared)


def slope_mib_per_min(samples: list[Sample], attr: str, since_s: float, until_s: float) -> float:
    """Least-squares slope of `attr` (MiB) over time within [since_s, until_s], MiB/min."""
    kept = [s for s in samples if since_s <= s.t_s <= until_s]
    if len(kept) < 3:
        raise ValueError(f"{len(kept)} samples between {since_s} s and {until_s} s: too few")
    t = np.array([s.t_s / 60 for s in kept])
    y = np.array([getattr(s, attr) for s in kept])
    return float(np.polyfit(t, y, 1)[0])


def summary(samples: list[Sample], attr: str, since_s: float, until_s: float) -> dict[str, float]:
    """Start, steady (first minute after the warm-up), end, max and slope of one series."""
    kept = [getattr(s, attr) for s in samples if since_s <= s.t_s <= until_s]
    steady = [getattr(s, attr) for s in samples if since_s <= s.t_s <= since_s + 60]
    return {
        "start_mib": getattr(samples[0], attr),
        "steady_mib": float(np.median(steady)),
        "end_mib": kept[-1],
        "max_mib": max(kept),
        "slope_mib_per_min": slope_mib_per_min(samples, attr, since_s, until_s),
    }


def write_artefacts(samples: list[Sample], meta: dict[str, object], folder: Path) -> Path:
    """soak.json (meta and every sample) and soak.csv (the samples) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [asdict(s) for s in samples]
    path = folder / "soak.json"
    path.write_text(json.dumps({"meta": meta, "samples": rows}, indent=1))
    with (folder / "soak.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["t_s"])
        writer.writeheader()
        writer.writerows(rows)
    return path


class Offsets:
    """The worker group's committed offsets and the raw topic's ends, on one
    long-lived pair of consumers (neither joins a group)."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._group = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        self._reader = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )

    async def __aenter__(self) -> Offsets:
        await self._group.start()
        await self._reader.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._group.stop()
        await self._reader.stop()

    async def committed(self) -> int:
        """Raw messages the worker has committed, summed over partitions."""
        offsets = await asyncio.gather(*(self._group.committed(tp) for tp in self.tps))
        return sum(o for o in offsets if o is not None and o > 0)

    async def reported_ends(self) -> int:
        """Tansu's ends, summed: short of the real ones by the last batch of each partition."""
        ends = await self._reader.end_offsets(self.tps)
        return sum(ends.values())

    async def real_ends(self, idle_polls: int = 3) -> int:
        """The real ends, summed: the offset after each partition's last record."""
        reported = await self._reader.end_offsets(self.tps)
        self._reader.assign(self.tps)
        ends = {}
        for tp in self.tps:
            ends[tp] = reported[tp]
            self._reader.seek(tp, max(0, reported[tp] - 1))  # the last batch's base offset
        idle = 0
        while idle < idle_polls:
            batch = await self._reader.getmany(timeout_ms=300, max_records=10_000)
            idle = 0 if batch else idle + 1
            for tp, records in batch.items():
                ends[tp] = max(ends[tp], *(r.offset + 1 for r in records))
        return sum(ends.values())


def influx_query(client: httpx.Client, database: str, q: str) -> list[dict[str, object]]:
    """The series of a single InfluxQL statement (v1 /query), [] when none."""
    r = client.get("/query", params={"db": database, "q": q, "epoch": "ms"})
    r.raise_for_status()
    result = r.json()["results"][0]
    if "error" in result:
        raise AssertionError(f"InfluxDB refused {q!r}: {result['error']}")
    series: list[dict[str, object]] = result.get("series", []) or []
    return series


def heat_windows_per_boiler(
    client: httpx.Client, database: str, first_ms: int, last_ms: int
) -> dict[str, int]:
    """Boiler -> 1-minute heat_window points with a start in [first_ms, last_ms]."""
    series = influx_query(
        client,
        database,
        'SELECT count("heat_kwh") FROM "heat_window" WHERE "resolution" = \'1m\' '
        f'AND time >= {first_ms}ms AND time <= {last_ms}ms GROUP BY "boiler"',
    )
    return {s["tags"]["boiler"]: int(s["values"][0][1]) for s in series}  # type: ignore[index]


def telemetry_points(client: httpx.Client, database: str, first_ms: int, last_ms: int) -> int:
    """Downsampled telemetry points (all boilers) with a time in [first_ms, last_ms]."""
    series = influx_query(
        client,
        database,
        f'SELECT count("samples") FROM "telemetry" WHERE time >= {first_ms}ms '
        f"AND time <= {last_ms}ms",
    )
    return int(series[0]["values"][0][1]) if series else 0  # type: ignore[index]
