"""Helpers of the worker tests (SIGKILL recovery, rebalance, broker pause): set up
an app's topics, run workers, read what they produced, and compute what an
uninterrupted processing of the same raw log produces.

Derived events are compared by `event_key`: their deterministic id, except
that a data-quality issue's id names the issue, not the record: a silence (or
a skewed clock, a stuck sensor) is reported when it starts (`end_ms` null)
and again, under the same id, when it ends. The two records of one issue are
versions, not duplicates, so the key adds the phase; within a phase, one key
must carry one content.

The reference is the pure `Processor`, one per raw partition fed that
partition's records in offset order with fresh state, exactly as
`heatstream replay` does. The worker's derived topics are judged against it by
behaviour only (what is on the topics), never by how the worker stores its
state, so the tests hold whatever the table's layout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel

from heatstream.inventory import Inventory, inventory_toml
from heatstream.schemas import topics
from heatstream.schemas.derived import DataQualityIssue, HeatWindow
from heatstream.schemas.serde import decode_derived, encode
from heatstream.schemas.topics import TopicSpec, topic_name
from heatstream.settings import KafkaSettings
from heatstream.stack.provision import create_topics
from heatstream.streams.processor import Origin, Processor, ProcessorParams

DERIVED = (
    topics.HEAT_WINDOWS,
    topics.ANOMALIES,
    topics.LEAKS,
    topics.DATA_QUALITY,
    topics.DEAD_LETTERS,
    topics.LATE_EVENTS,
)


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes


def worker_env(
    bootstrap: str, prefix: str, partitions: int, inventory: Path, **streams: str
) -> dict[str, str]:
    """The environment of a `heatstream worker` on this prefix, nothing inherited.

    The wall-clock liveness check is off: its issues depend on the wall clock,
    so they are outside the replayable projection the tests compare.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATSTREAM_")}
    env.update(
        {
            "HEATSTREAM_KAFKA__BOOTSTRAP": bootstrap,
            "HEATSTREAM_KAFKA__TOPIC_PREFIX": prefix,
            "HEATSTREAM_KAFKA__PARTITIONS": str(partitions),
            "HEATSTREAM_APP_ID": prefix.rstrip("."),
            "HEATSTREAM_INVENTORY": str(inventory),
            "HEATSTREAM_STREAMS__SESSION_TIMEOUT_S": "6",
            "HEATSTREAM_STREAMS__LIVENESS_CHECK_S": "0",
        }
    )
    env.update({f"HEATSTREAM_STREAMS__{k.upper()}": v for k, v in streams.items()})
    return env


@dataclass(frozen=True, slots=True)
class WorkerApp:
    """An app whose topics exist under `kafka.topic_prefix`, and its workers' environment."""

    kafka: KafkaSettings
    env: dict[str, str]

    def topic(self, spec: TopicSpec) -> str:
        return topic_name(spec, self.kafka.topic_prefix)

    @property
    def raw(self) -> str:
        return self.topic(topics.RAW_EVENTS)

    @property
    def derived(self) -> list[str]:
        return [self.topic(spec) for spec in DERIVED]


def worker_app(
    bootstrap: str,
    prefix: str,
    partitions: int,
    inventory: Inventory,
    directory: Path,
    **streams: str,
) -> WorkerApp:
    """Create the app's topics on `prefix`, write `inventory` to `directory` for its
    workers, and give their environment (`worker_env`; `streams` as there)."""
    kafka = KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix, partitions=partitions)
    asyncio.run(create_topics(bootstrap, kafka))
    path = directory / "inventory.toml"
    path.write_text(inventory_toml(inventory))
    return WorkerApp(kafka, worker_env(bootstrap, prefix, partitions, path, **streams))


def start_worker(env: dict[str, str], datadir: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "heatstream",
            "worker",
            "--datadir",
            str(datadir),
            "--loglevel",
            "info",
        ],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def stop_worker(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int | None:
    """SIGTERM (a clean leave of the group), SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"(no {path})"


async def read_topics(bootstrap: str, names: list[str], idle_polls: int = 3) -> list[Record]:
    """Every record of these topics, from the start, without a consumer group
    (so no group membership can slow the read), until `idle_polls` empty polls."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_bytes=64 * 2**20,
        max_partition_fetch_bytes=16 * 2**20,
    )
    await consumer.start()
    out: list[Record] = []
    try:
        await consumer.topics()
        parts = [
            TopicPartition(n, p) for n in names for p in consumer.partitions_for_topic(n) or []
        ]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        idle = 0
        while idle < idle_polls:
            batch = await consumer.getmany(timeout_ms=400, max_records=50_000)
            idle = 0 if batch else idle + 1
            for tp, records in batch.items():
                out.extend(
                    Record(tp.topic, tp.partition, r.offset, r.timestamp, r.key, r.value)
                    for r in records
                )
    finally:
        await consumer.stop()
    return sorted(out, key=lambda r: (r.topic, r.partition, r.offset))


def event_key(event: BaseModel) -> str:
    """The de-duplication key of a derived event (see the module docstring)."""
    key: str = event.id  # type: ignore[attr-defined]
    if isinstance(event, DataQualityIssue):
        return f"{key}:{'start' if event.end_ms is None else 'end'}"
    return key


def reference(
    raw: list[Record], inventory: Inventory, params: ProcessorParams
) -> dict[str, set[bytes]]:
    """Derived event key -> encodings, from fresh processors over the raw log in
    partition order: what an uninterrupted worker (or a replay) produces."""
    processors: dict[int, Processor] = {}
    out: dict[str, set[bytes]] = defaultdict(set)
    for r in raw:
        proc = processors.setdefault(r.partition, Processor(inventory, params))
        origin = Origin(r.topic, r.partition, r.offset, r.timestamp_ms)
        for emit in proc.process(r.value, r.key, origin):
            out[event_key(emit.event)].add(encode(emit.event))
    return dict(out)


def by_id(records: list[Record]) -> dict[str, set[bytes]]:
    """Derived event key -> every distinct encoding seen on the topics."""
    out: dict[str, set[bytes]] = defaultdict(set)
    for r in records:
        out[event_key(decode_derived(r.value))].add(r.value)
    return dict(out)


def conflicts(events: dict[str, set[bytes]]) -> dict[str, set[bytes]]:
    """Keys that carry more than one content: duplicates that are not redeliveries."""
    return {i: v for i, v in events.items() if len(v) > 1}


def differences(
    expected: dict[str, set[bytes]], got: dict[str, set[bytes]], limit: int = 3
) -> list[tuple[str, set[bytes], set[bytes]]]:
    """(key, expected, got) of the keys whose contents differ, for failure messages."""
    keys = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
    return [(k, expected.get(k, set()), got.get(k, set())) for k in keys[:limit]]


def heat_totals(events: dict[str, set[bytes]]) -> dict[tuple[str, str, int], float]:
    """(boiler, resolution, window start) -> heat kWh, from single-content ids."""
    out = {}
    for values in events.values():
        for value in values:
            event = decode_derived(value)
            if isinstance(event, HeatWindow):
                out[(event.boiler, event.resolution, event.window_start_ms)] = event.heat_kwh
    return out


def assert_running(*workers: tuple[subprocess.Popen[bytes], Path]) -> None:
    """Fail at once (with its log) when a worker has exited."""
    for proc, log in workers:
        assert proc.poll() is None, f"worker exited with {proc.returncode}:\n{tail(log)}"


async def wait_for_ids(
    bootstrap: str,
    names: list[str],
    want: set[str],
    timeout_s: float,
    settle_s: float = 3.0,
    workers: tuple[tuple[subprocess.Popen[bytes], Path], ...] = (),
) -> dict[str, set[bytes]]:
    """Read the derived topics until every wanted key is there (or time is up),
    then once more after `settle_s` to catch late redeliveries. Fails as soon
    as one of `workers` (process, log) exits."""
    deadline = time.monotonic() + timeout_s
    got: dict[str, set[bytes]] = {}
    while time.monotonic() < deadline:
        assert_running(*workers)
        got = by_id(await read_topics(bootstrap, names))
        if want <= set(got):
            await asyncio.sleep(settle_s)
            return by_id(await read_topics(bootstrap, names))
        await asyncio.sleep(2.0)
    return got
