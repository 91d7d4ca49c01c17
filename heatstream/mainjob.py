"""`heatstream up`: the whole platform on one machine, with live progress and a summary.

Starts (or reuses) the stack, writes the fleet's inventory, starts a worker and
a sink as child processes, runs the simulated fleet through the gateway SDK in
this process, and shows events/s, consumer lag, windows, alerts and points
landed. When the simulated time has been published, processed and landed (or
on Ctrl-C) it stops the worker and the sink and prints what InfluxDB now holds.
The embedded stack is left running so the results can be queried.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from heatstream.schemas import topics
from heatstream.schemas.topics import TopicSpec, topic_name
from heatstream.settings import Settings

DERIVED = (
    topics.HEAT_WINDOWS,
    topics.ANOMALIES,
    topics.LEAKS,
    topics.DATA_QUALITY,
    topics.DEAD_LETTERS,
    topics.LATE_EVENTS,
)


@dataclass(slots=True)
class Progress:
    """What the live display shows, refreshed about once a second."""

    published: int = 0
    events_per_s: float = 0.0
    sim_time_ms: int = 0
    worker_lag: int | None = None
    sink_lag: int | None = None
    windows: int = 0
    alerts: int = 0
    dead_letters: int = 0
    late_events: int = 0
    publishing_done: bool = False
    ends: dict[str, int] = field(default_factory=dict)


class Children:
    """The worker and sink processes of a run, stopped together."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "heatstream", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop them in order
        )

    def dead(self) -> list[str]:
        return [name for name, p in self.procs.items() if p.poll() is not None]

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 30.0) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def child_env(settings: Settings, inventory: Path) -> dict[str, str]:
    """The children's configuration: ours, passed down as HEATSTREAM_* variables."""
    kafka, influx = settings.kafka, settings.influxdb
    env = dict(os.environ)
    env.update(
        {
            "HEATSTREAM_APP_ID": settings.app_id,
            "HEATSTREAM_INVENTORY": str(inventory),
            "HEATSTREAM_KAFKA__BOOTSTRAP": kafka.bootstrap,
            "HEATSTREAM_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
            "HEATSTREAM_KAFKA__PARTITIONS": str(kafka.partitions),
            "HEATSTREAM_INFLUXDB__URL": influx.url,
            "HEATSTREAM_INFLUXDB__API": influx.api,
            "HEATSTREAM_INFLUXDB__DATABASE": influx.database,
            "HEATSTREAM_STREAMS__SESSION_TIMEOUT_S": str(settings.streams.session_timeout_s),
            # Simulated time runs ahead of or behind the wall clock: judging
            # gateways against the wall clock would flag every one offline.
            "HEATSTREAM_STREAMS__LIVENESS_CHECK_S": "0",
        }
    )
    return env


class Tail:
    """True end offsets of some topics, learnt by reading them to the end.

    Not every Kafka-protocol broker answers ListOffsets with the offset after
    the last record (Tansu 0.6 answers the last batch's base offset), so the
    end is taken from the records themselves: one past the last offset read.
    """

    def __init__(self, bootstrap: str, names: list[str]) -> None:
        self.names = names
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=64 * 2**20,
            max_partition_fetch_bytes=16 * 2**20,
        )
        self.ends: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def refresh(self) -> dict[TopicPartition, int]:
        await self.consumer.topics()
        parts = {
            TopicPartition(name, p)
            for name in self.names
            for p in self.consumer.partitions_for_topic(name) or set()
        }
        if parts != set(self.consumer.assignment()):
            self.consumer.assign(sorted(parts))
        while True:
            batch = await self.consumer.getmany(timeout_ms=200, max_records=50_000)
            if not batch:
                break
            for tp, records in batch.items():
                self.ends[tp] = records[-1].offset + 1
        return {tp: self.ends.get(tp, 0) for tp in parts}


async def _lag(committed_by: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> int | None:
    """Messages between a group's committed offsets and the ends; None before any commit."""
    total, any_commit = 0, False
    for tp, end in ends.items():
        offset = await committed_by.committed(tp)
        any_commit = any_commit or offset is not None
        total += end - (offset or 0)
    return total if any_commit else None


async def monitor(
    settings: Settings,
    progress: Progress,
    stop: asyncio.Event,
    on_tick: Callable[[Progress], None],
) -> None:
    """Poll topic end offsets and consumer-group offsets until `stop` is set."""
    kafka = settings.kafka

    def name(spec: TopicSpec) -> str:
        return topic_name(spec, kafka.topic_prefix)

    raw = [name(topics.RAW_EVENTS)]
    derived = [name(s) for s in DERIVED]
    tail_raw, tail_derived = Tail(kafka.bootstrap, raw), Tail(kafka.bootstrap, derived)
    # Committed offsets are read through consumers of each group that never
    # subscribe (so never join): the admin API's OffsetFetch is not understood
    # by every Kafka-protocol broker.
    worker_view = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap, enable_auto_commit=False, group_id=settings.app_id
    )
    sink_view = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        enable_auto_commit=False,
        group_id=f"{settings.app_id}-sink",
    )
    for c in (tail_raw, tail_derived, worker_view, sink_view):
        await c.start()
    try:
        while not stop.is_set():
            ends_raw = await tail_raw.refresh()
            ends_derived = await tail_derived.refresh()
            per_topic: dict[str, int] = {}
            for tp, end in ends_derived.items():
                per_topic[tp.topic] = per_topic.get(tp.topic, 0) + end
            progress.ends = per_topic
            progress.windows = per_topic.get(name(topics.HEAT_WINDOWS), 0)
            progress.alerts = per_topic.get(name(topics.ANOMALIES), 0) + per_topic.get(
                name(topics.LEAKS), 0
            )
            progress.dead_letters = per_topic.get(name(topics.DEAD_LETTERS), 0)
            progress.late_events = per_topic.get(name(topics.LATE_EVENTS), 0)
            progress.worker_lag = await _lag(worker_view, ends_raw)
            sink_ends = {tp: e for tp, e in ends_derived.items() if e > 0}
            progress.sink_lag = await _lag(sink_view, sink_ends) if sink_ends else 0
            on_tick(progress)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
    finally:
        for c in (tail_raw, tail_derived, worker_view, sink_view):
            await c.stop()


def caught_up(progress: Progress) -> bool:
    return progress.publishing_done and progress.worker_lag == 0 and progress.sink_lag == 0
