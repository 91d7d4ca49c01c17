"""Faust's table recovery on the embedded broker, whose listed end offsets fall short.

Tansu 0.6 answers ListOffsets with the base offset of a partition's last record
batch + 1. Faust restores a table up to that listed end and stops, so rows
written in the same batch after its first one are not restored
(streams/faust_fixes.py, `fix_recovery_ends`). Each test writes a changelog with
a producer, several rows in one batch, then starts a Faust app of one table
(tests/integration/recovery_child.py, in-memory store: it restores from the
changelog alone, as a worker on an empty data directory does) and reads back
what the table holds once recovery is complete.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import TP

from heatstream.settings import KafkaSettings
from heatstream.streams.faust_fixes import true_end_offsets
from tests.integration.worker_support import tail

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.timeout(120)]


async def create(bootstrap: str, *names: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def write_batches(
    bootstrap: str, topic: str, batches: list[list[tuple[str, str]]], partition: int = 0
) -> list[list[int]]:
    """Each list of (key, value) produced as one record batch; the offsets acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=100, acks="all")
    await producer.start()
    offsets = []
    try:
        for rows in batches:
            futures = [
                await producer.send(topic, v.encode(), key=k.encode(), partition=partition)
                for k, v in rows
            ]
            offsets.append([(await f).offset for f in futures])
    finally:
        await producer.stop()
    return offsets


async def listed_end(bootstrap: str, topic: str, partition: int = 0) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        return (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


def recovered(bootstrap: str, app_id: str, tmp_path: Path, mode: str) -> dict[str, str]:
    """What the one-table app `app_id` holds once it has recovered (mode: fixed|shipped)."""
    out, log = tmp_path / f"{app_id}.json", tmp_path / f"{app_id}.log"
    args = [bootstrap, app_id, str(out), str(tmp_path / app_id), mode]
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.recovery_child", *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not out.exists():
            assert child.poll() is None, tail(log)
            assert time.monotonic() < deadline, f"no recovery in 60 s:\n{tail(log)}"
            time.sleep(0.2)
        return dict(json.loads(out.read_text()))
    finally:
        child.kill()
        child.wait()


ROWS = [(f"boiler-{i}", f"state-{i}") for i in range(5)]


def test_the_broker_lists_the_base_offset_of_the_last_batch_as_the_end(stack, unique_name) -> None:
    """The premise: if this fails, the broker lists true ends and the fix is idle."""
    topic = unique_name("ends")
    asyncio.run(create(stack.bootstrap, topic))
    (offsets,) = asyncio.run(write_batches(stack.bootstrap, topic, [ROWS]))
    assert offsets == [0, 1, 2, 3, 4]
    assert asyncio.run(listed_end(stack.bootstrap, topic)) == 1


def test_faust_as_shipped_restores_only_the_first_row_of_the_last_batch(
    stack, tmp_path: Path, unique_name
) -> None:
    """What the fix is for: without it, four of the five rows are not restored."""
    app_id = unique_name("shipped")
    asyncio.run(create(stack.bootstrap, f"{app_id}-t-changelog", f"{app_id}-source"))
    asyncio.run(write_batches(stack.bootstrap, f"{app_id}-t-changelog", [ROWS]))
    assert recovered(stack.bootstrap, app_id, tmp_path, "shipped") == {"boiler-0": "state-0"}


def test_recovery_restores_every_row_of_the_last_batch(stack, tmp_path: Path, unique_name) -> None:
    app_id = unique_name("fixed")
    changelog = f"{app_id}-t-changelog"
    asyncio.run(create(stack.bootstrap, changelog, f"{app_id}-source"))
    # Two batches: the later rows of a key replace the earlier ones, the last batch
    # holds rows past its base offset, and one key is only in the first batch.
    first = [("boiler-0", "old-0"), ("boiler-1", "old-1"), ("boiler-9", "only-9")]
    offsets = asyncio.run(write_batches(stack.bootstrap, changelog, [first, ROWS]))
    assert offsets == [[0, 1, 2], [3, 4, 5, 6, 7]]
    assert asyncio.run(listed_end(stack.bootstrap, changelog)) == 4  # short of 8

    assert recovered(stack.bootstrap, app_id, tmp_path, "fixed") == {
        **dict(ROWS),
        "boiler-9": "only-9",
    }


def test_true_end_offsets_reads_each_partition_to_its_last_record(stack, unique_name) -> None:
    topic = unique_name("ends")
    asyncio.run(create(stack.bootstrap, topic, partitions=3))
    asyncio.run(write_batches(stack.bootstrap, topic, [ROWS], partition=0))
    asyncio.run(write_batches(stack.bootstrap, topic, [ROWS[:1], ROWS[:2]], partition=1))
    kafka = KafkaSettings(bootstrap=stack.bootstrap)
    listed = {TP(topic, 0): 1, TP(topic, 1): 2, TP(topic, 2): 0}

    ends = asyncio.run(true_end_offsets(kafka, listed))

    assert ends == {TP(topic, 0): 5, TP(topic, 1): 3, TP(topic, 2): 0}
    # A listed end already right (the last batch holds one record) stays as it is.
    assert asyncio.run(true_end_offsets(kafka, {TP(topic, 1): 3})) == {TP(topic, 1): 3}
