"""Landing batches concurrently: written side by side, committed in the order sealed.

The InfluxDB here is a stand-in (`GatedInflux`): each write waits until the test
opens its gate, which is how the order in which writes finish is chosen. A real
InfluxDB cannot be made to finish a later write first on demand; the sink's
integration tests run the same code against InfluxDB 1.6.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aiokafka import TopicPartition

from heatstream.schemas.deadletter import DeadLetter
from heatstream.sinks.batcher import Batch
from heatstream.sinks.errors import InfluxUnavailable, RetriesExhausted
from heatstream.sinks.health import SinkCounters
from heatstream.sinks.landing import Lander, Landings
from heatstream.sinks.retry import RetryPolicy

TP = TopicPartition("raw", 0)


class GatedInflux:
    """Stand-in writer: a write of a batch's lines waits for that batch's gate."""

    def __init__(self) -> None:
        self.gates: dict[bytes, asyncio.Event] = {}
        self.started: list[bytes] = []
        self.finished: list[bytes] = []
        self.writing = 0
        self.most_at_once = 0
        self.fail: set[bytes] = set()

    def gate(self, name: bytes) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def write(self, lines: Sequence[bytes], precision: str) -> None:
        name = lines[0]
        self.started.append(name)
        self.writing += 1
        self.most_at_once = max(self.most_at_once, self.writing)
        try:
            await self.gate(name).wait()
            if name in self.fail:
                raise InfluxUnavailable(f"stand-in refuses {name!r}")
            self.finished.append(name)
        finally:
            self.writing -= 1


class NoDeadLetters:
    async def send(self, records: list[DeadLetter]) -> None:
        raise AssertionError(f"unexpected dead letters: {records}")


def batch(seq: int, *, write_once: bool = True) -> Batch:
    return Batch(
        seq=seq,
        points=1,
        lines=[f"b{seq}".encode()],
        origins=[None],
        precision="ms",
        offsets={TP: seq * 10},
        write_once=write_once,
    )


def landings(concurrency: int) -> tuple[Landings, GatedInflux, list[int], list[int]]:
    influx = GatedInflux()
    committed: list[int] = []
    landed: list[int] = []

    async def commit(offsets: dict[TopicPartition, int]) -> None:
        committed.append(offsets[TP])

    lander = Lander(
        influx,  # type: ignore[arg-type]
        RetryPolicy(max_retries=0),
        NoDeadLetters(),  # type: ignore[arg-type]
        commit,
        SinkCounters(),
    )
    return Landings(lander, concurrency, lambda b: landed.append(b.seq)), influx, committed, landed


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_writes_overlap_but_commits_follow_the_seal_order() -> None:
    run, influx, committed, landed = landings(2)
    await run.put(batch(1))
    await run.put(batch(2))
    await settle()
    assert influx.started == [b"b1", b"b2"]  # both written at once
    influx.gate(b"b2").set()
    await settle()
    assert influx.finished == [b"b2"]
    assert committed == []  # batch 2 is in InfluxDB, but batch 1 is not yet
    assert run.busy
    influx.gate(b"b1").set()
    await run.drain()
    assert committed == [10, 20]
    assert landed == [1, 2]
    assert influx.most_at_once == 2
    assert not run.busy and run.writing == 0


async def test_at_most_concurrency_batches_are_written_at_once() -> None:
    run, influx, committed, _ = landings(2)
    await run.put(batch(1))
    await run.put(batch(2))
    third = asyncio.create_task(run.put(batch(3)))
    await settle()
    assert influx.started == [b"b1", b"b2"] and not third.done()
    influx.gate(b"b1").set()
    await third
    await settle()
    assert influx.started == [b"b1", b"b2", b"b3"]
    for name in (b"b2", b"b3"):
        influx.gate(name).set()
    await run.drain()
    assert committed == [10, 20, 30]
    assert influx.most_at_once == 2


async def test_batches_that_may_rewrite_a_point_are_never_written_together() -> None:
    run, influx, committed, _ = landings(4)
    kinds = {1: False, 2: True, 3: False, 4: True}  # seq -> write_once
    puts = []
    for seq, once in kinds.items():
        puts.append(asyncio.create_task(run.put(batch(seq, write_once=once))))
        await settle()
    # 1 rewrites: 2 (telemetry only) goes beside it, 3 (rewrites) waits for 1, and
    # 4 waits behind 3: batches start in the order they were put.
    assert influx.started == [b"b1", b"b2"]
    influx.gate(b"b2").set()
    await settle()
    assert influx.started == [b"b1", b"b2"]
    influx.gate(b"b1").set()
    await settle()
    assert influx.started == [b"b1", b"b2", b"b3", b"b4"]
    for seq in (3, 4):
        influx.gate(f"b{seq}".encode()).set()
    await asyncio.gather(*puts)
    await run.drain()
    assert committed == [10, 20, 30, 40]
    assert influx.finished == [b"b2", b"b1", b"b3", b"b4"]


async def test_one_at_a_time_when_concurrency_is_1() -> None:
    run, influx, committed, _ = landings(1)
    for name in (b"b1", b"b2", b"b3"):
        influx.gate(name).set()
    for seq in (1, 2, 3):
        await run.put(batch(seq))
    await run.drain()
    assert committed == [10, 20, 30]
    assert influx.most_at_once == 1


async def test_a_failed_write_commits_nothing_after_it_and_is_raised() -> None:
    run, influx, committed, landed = landings(2)
    influx.fail.add(b"b1")
    await run.put(batch(1))
    await run.put(batch(2))
    influx.gate(b"b2").set()
    await settle()
    influx.gate(b"b1").set()
    with pytest.raises(RetriesExhausted):
        await run.drain()
    assert committed == [] and landed == []
    assert influx.finished == [b"b2"]  # written, but its offsets stay uncommitted


def test_concurrency_must_be_positive() -> None:
    run, *_ = landings(1)
    with pytest.raises(ValueError, match="concurrency = 0"):
        Landings(run._lander, 0, lambda b: None)
