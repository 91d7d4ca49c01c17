"""Batches bounded by size and time; poison lines isolated by bisection."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from heatstream.sinks.batcher import Batcher
from heatstream.sinks.deadletters import Origin
from heatstream.sinks.errors import InfluxRejected
from heatstream.sinks.isolate import write_isolating
from heatstream.sinks.lineprotocol import Point

T = 1_768_435_200_000
ORIGIN = Origin("topic", 2, 41, b"k", T)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def point(i: int, **fields: object) -> Point:
    return Point.at_ms("m", {"b": "x"}, fields or {"v": float(i)}, T + i)


def test_size_bound() -> None:
    b = Batcher(batch_size=3, flush_interval_s=10, clock=Clock())
    for i in range(2):
        b.add(point(i), ORIGIN)
    assert not b.due()
    b.add(point(2), ORIGIN)
    assert b.full() and b.due()


def test_time_bound_starts_with_the_first_point() -> None:
    clock = Clock()
    b = Batcher(batch_size=100, flush_interval_s=1.0, clock=clock)
    assert b.seconds_left() is None and not b.due()
    clock.now += 5  # nothing open: nothing due
    b.add(point(0), ORIGIN)
    assert b.seconds_left() == 1.0
    clock.now += 1.0
    assert b.due()


def test_an_offset_alone_makes_a_batch_due() -> None:
    clock = Clock()
    b = Batcher(batch_size=100, flush_interval_s=1.0, clock=clock)
    b.touch()
    clock.now += 1
    assert b.due()
    batch = b.seal({("t", 0): 5}, lambda: 0)
    assert batch.lines == [] and batch.offsets == {("t", 0): 5}


def test_seal_encodes_and_dead_letters_what_cannot_be_encoded() -> None:
    b = Batcher(batch_size=100, flush_interval_s=1.0, clock=Clock())
    b.add(point(0), ORIGIN)
    b.add(point(1, **{"bad\\key": 1.0}), ORIGIN)
    b.add(point(2, v=math.nan), None)
    b.add(point(3), None)
    batch = b.seal({}, lambda: 7)
    assert batch.lines == [b"m,b=x v=0.0 1768435200000", b"m,b=x v=3.0 1768435200003"]
    assert batch.origins == [ORIGIN, None]
    assert batch.points == 4 and batch.skipped_points == 1
    (dl,) = batch.dead_letters
    assert (dl.reason, dl.stage, dl.source_topic, dl.source_offset) == (
        "unencodable_point",
        "sink",
        "topic",
        41,
    )
    assert dl.rejected_at_ms == T  # the source message's time: deterministic
    assert b.pending == 0 and b.seconds_left() is None


class FakeInflux:
    """Refuses any request containing a poison line, like a 1.x partial write."""

    def __init__(self, poison: set[bytes]) -> None:
        self.poison = poison
        self.stored: set[bytes] = set()
        self.requests = 0

    async def write(self, lines: Sequence[bytes]) -> None:
        self.requests += 1
        self.stored.update(line for line in lines if line not in self.poison)
        bad = [line for line in lines if line in self.poison]
        if bad:
            raise InfluxRejected(f"partial write: unable to parse '{bad[0].decode()}' dropped=0")


@pytest.mark.parametrize("poison_at", [[], [0], [999], [17], [3, 4, 500, 998]])
async def test_bisection_isolates_exactly_the_poison(poison_at: list[int]) -> None:
    lines = [f"m v={i} {i}".encode() for i in range(1000)]
    influx = FakeInflux({lines[i] for i in poison_at})
    refused = await write_isolating(influx.write, lines)
    assert [r.index for r in refused] == poison_at
    assert all(lines[r.index].decode() in r.message for r in refused)
    assert influx.stored == set(lines) - influx.poison
    assert influx.requests <= 1 + 2 * len(poison_at) * 10


async def test_nothing_to_write_sends_nothing() -> None:
    influx = FakeInflux(set())
    assert await write_isolating(influx.write, []) == []
    assert influx.requests == 0


def test_a_batch_is_write_once_only_if_every_point_is() -> None:
    b = Batcher(batch_size=10, flush_interval_s=1.0, clock=Clock())
    b.add(point(1), None, write_once=True)
    b.add(point(2), None, write_once=True)
    assert b.seal({}, lambda: 0).write_once
    b.add(point(3), None, write_once=True)
    b.add(point(4), None)  # a derived event's point may be written again
    assert not b.seal({}, lambda: 0).write_once
    b.add(point(5), None, write_once=True)
    assert b.seal({}, lambda: 0).write_once  # the count starts again with each batch
