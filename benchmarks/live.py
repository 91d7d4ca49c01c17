"""Live runs: a paced fleet publishing in real time, and what latency that gives.

`Pacer` starts `benchmarks.pace` as a child process (so the sender does not
share this process's event loop or core). `consume_and_process` is the
processor path without Faust: an aiokafka consumer in this process handing
each message to the partition's `Processor`, recording when each message was
done. A reading's latency is the wall time its message was done minus the
reading's event time, so it includes the wait for its frame to be sealed
(a frame's first reading waits its whole span), the broker hop, any queue in
front of a consumer that cannot keep up, and the processing itself.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks.procs import Children
from benchmarks.workload import Recording, Shape
from heatstream.inventory import Inventory
from heatstream.schemas.telemetry import CHANNEL_NAMES
from heatstream.streams.processor import Origin, Processor, ProcessorParams

POINTS_PER_MESSAGE = 8  # a message's readings spread evenly over its span, for percentiles


def save_recording(recording: Recording, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, t_ms=recording.t_ms, values=recording.values)
    return path


@dataclass
class Pacer:
    recording: Path
    bootstrap: str
    topic: str
    boilers: int
    shape: Shape
    seconds: int
    log: Path

    def start(self, children: Children, start_ms: int) -> None:
        import sys

        argv = [
            sys.executable,
            "-m",
            "benchmarks.pace",
            str(self.recording),
            self.bootstrap,
            self.topic,
            str(self.boilers),
            self.shape.key,
            str(self.seconds),
            str(start_ms),
        ]
        self.proc = children.start(argv, _env(), self.log)

    def result(self, timeout_s: float) -> dict[str, float]:
        self.proc.wait(timeout=timeout_s)
        lines = [ln for ln in self.log.read_text().splitlines() if ln.startswith("{")]
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(
                f"pacer failed ({self.proc.returncode}): {self.log.read_text()[-2000:]}"
            )
        result: dict[str, float] = orjson.loads(lines[-1])
        return result


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@dataclass
class Done:
    """When each message was processed, and the event times its readings span."""

    done_ms: np.ndarray
    first_ms: np.ndarray
    last_ms: np.ndarray
    readings: np.ndarray

    def latency_ms(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-reading latencies (sampled) and their weights."""
        k = POINTS_PER_MESSAGE
        share = (np.arange(k) + 0.5) / k
        event = self.first_ms[:, None] + share[None, :] * (self.last_ms - self.first_ms)[:, None]
        lat = self.done_ms[:, None] - event
        weights = np.repeat(self.readings / k, k).reshape(lat.shape)
        return lat.ravel(), weights.ravel()


def percentile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cum = np.cumsum(w)
    return float(v[np.searchsorted(cum, q / 100.0 * cum[-1])])


async def consume_and_process(
    bootstrap: str,
    topic: str,
    partitions: int,
    inventory: Inventory,
    expected: int,
    ready: asyncio.Event,
    *,
    timeout_s: float,
    params: ProcessorParams | None = None,
) -> Done:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=16 << 20,
    )
    await consumer.start()
    params = params or ProcessorParams()
    procs = [Processor(inventory, params) for _ in range(partitions)]
    done: list[float] = []
    first: list[float] = []
    last: list[float] = []
    readings: list[int] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        ready.set()
        deadline = time.monotonic() + timeout_s
        while len(done) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=50, max_records=2000)
            for tp, records in batches.items():
                proc = procs[tp.partition]
                for r in records:
                    raw = r.value or b""
                    proc.process(raw, r.key, Origin(topic, tp.partition, r.offset, r.timestamp))
                    data = orjson.loads(raw)
                    t0 = data["event_time_ms"]
                    done.append(time.time() * 1000)
                    first.append(t0)
                    last.append(t0 + max(data["dt_ms"]))
                    readings.append(len(data["dt_ms"]) * sum(1 for k in CHANNEL_NAMES if k in data))
    finally:
        await consumer.stop()
    return Done(
        np.array(done),
        np.array(first, dtype=float),
        np.array(last, dtype=float),
        np.array(readings, dtype=float),
    )
