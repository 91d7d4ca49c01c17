"""streams/faust_fixes.py: Faust's own `_new_offset`, on the state a worker restart
leaves behind, commits past a gap that overlaps acknowledged offsets in one step;
recovery highwaters move up to the real ends (against the broker:
tests/integration/test_faust_recovery.py); the producer buffer's flush, which a
commit waits for, returns only once every buffered message is handed over; flow
control resumed while already running keeps what the agents' queues hold."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import faust
import faust.transport.consumer as faust_consumer
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st
from intervaltree import IntervalTree

from heatstream.streams.faust_fixes import (
    UNFIXED_BUFFER_FLUSH,
    UNFIXED_NEW_OFFSET,
    fix_buffer_flush,
    fix_flow_resume,
    fix_gap_commits,
    merge_gap,
    raise_highwaters,
)

TP6 = TP("heatstream.raw.events", 6)


class ConsumerState:
    """The attributes `Consumer._new_offset` reads and writes, nothing else."""

    def __init__(self, committed: int, acked: range, gap: tuple[int, int]) -> None:
        self._committed_offset: dict[TP, int | None] = {TP6: committed}
        self._acked: dict[TP, list[int]] = defaultdict(list, {TP6: list(acked)})
        self._acked_index: dict[TP, set[int]] = defaultdict(set, {TP6: set(acked)})
        self._gap: dict[TP, IntervalTree] = defaultdict(IntervalTree)
        self._gap[TP6].addi(*gap)


def commits(new_offset: Any, state: ConsumerState) -> list[int]:
    """The offsets successive commits reach (one commit a second in the worker)."""
    out: list[int] = []
    while state._acked[TP6]:
        offset = new_offset(state, TP6)
        if offset is None:
            break
        out.append(offset)
        state._committed_offset[TP6] = offset
    return out


def test_a_gap_over_acknowledged_offsets_is_committed_past_at_once() -> None:
    # As measured after a SIGKILL: 2030..2099 processed and acknowledged, and a
    # false gap over 2031..2088 recorded when the seek rewound the read position.
    assert (
        len(commits(UNFIXED_NEW_OFFSET, ConsumerState(2030, range(2030, 2100), (2031, 2089)))) > 30
    ), "Faust no longer crawls past this gap: streams/faust_fixes.py may be obsolete"
    fix_gap_commits()
    fixed = faust_consumer.Consumer._new_offset
    assert commits(fixed, ConsumerState(2030, range(2030, 2100), (2031, 2089))) == [2100]
    fix_gap_commits()  # idempotent: not wrapped twice
    assert faust_consumer.Consumer._new_offset is fixed


def test_a_real_gap_still_holds_nothing_back() -> None:
    # Offsets 2040..2049 never delivered (a compacted range): committed past, once.
    fix_gap_commits()
    acked = [*range(2030, 2040), *range(2050, 2060)]
    state = ConsumerState(2029, range(0), (2040, 2050))
    state._acked[TP6] = list(acked)
    assert commits(faust_consumer.Consumer._new_offset, state) == [2060]


@settings(max_examples=200, deadline=None)
@given(
    acked=st.lists(st.integers(0, 200), min_size=1, max_size=60, unique=True),
    gaps=st.lists(st.tuples(st.integers(0, 220), st.integers(1, 30)), max_size=4),
)
def test_merge_gap_keeps_each_offset_once_and_empties_the_gap_below_the_top(
    acked: list[int], gaps: list[tuple[int, int]]
) -> None:
    tree = IntervalTree()
    for begin, length in gaps:
        tree.addi(begin, begin + length)
    tree.merge_overlaps()

    def offsets(intervals: Any) -> set[int]:
        return {o for span in intervals for o in range(span.begin, span.end)}

    top = max(acked)
    gap_before, moved = offsets(tree), offsets(tree.overlap(0, top))
    merged = list(acked)
    merge_gap(merged, tree)
    if not moved:
        assert merged == acked  # nothing to merge: left as it was (Faust sorts it)
    assert len(merged) == len(set(merged))
    assert set(merged) == set(acked) | moved
    # What stays in the gap is what was not merged (the top offset is acked anyway).
    assert offsets(tree) == gap_before - moved - ({top} if moved else set())


def test_highwaters_move_up_to_the_real_ends_never_down() -> None:
    """Faust's highwaters are last offsets (end - 1; -1 for an empty partition)."""
    short, empty, ahead, right = (TP("changelog", p) for p in range(4))
    highwaters: Counter[TP] = Counter({short: 0, empty: -1, ahead: 9, right: 3})
    asked: list[dict[TP, int]] = []

    async def finder(listed: Mapping[TP, int]) -> dict[TP, int]:
        asked.append(dict(listed))
        return {short: 5, ahead: 7, right: 4}

    asyncio.run(raise_highwaters(highwaters, finder, "active"))

    assert asked == [{short: 1, ahead: 10, right: 4}]  # listed ends, empty partitions not asked
    assert highwaters == Counter({short: 4, empty: -1, ahead: 9, right: 3})


def test_no_partition_to_recover_asks_nothing() -> None:
    async def finder(listed: Mapping[TP, int]) -> dict[TP, int]:
        raise AssertionError(f"asked for {listed}")

    highwaters: Counter[TP] = Counter({TP("changelog", 0): -1})
    asyncio.run(raise_highwaters(highwaters, finder, "standby"))
    assert highwaters == Counter({TP("changelog", 0): -1})


class SlowSend:
    """Stands in for the Kafka client behind the buffer (only the hand-over is
    under test): each message takes `delay_s` to be handed over, longer than the
    0.1 s Faust's flush waits for one (a slow send or a loop busy elsewhere)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.handed: list[int] = []

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(self.delay_s)
        self.handed.append(fut.n)


async def flush_after_buffering(flush: Any, messages: int) -> tuple[int, list[int]]:
    """Buffer `messages`, flush with `flush`; (still buffered, handed over)."""
    client = SlowSend(0.15)
    buffer = ProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
    await buffer.start()
    try:
        for n in range(messages):
            buffer.put(SimpleNamespace(n=n, message=SimpleNamespace(channel=client)))
        await flush(buffer)
        return buffer.size, list(client.handed)
    finally:
        while not buffer.pending.empty():  # else stopping it raises, as Faust's flush does
            buffer.pending.get_nowait()
        await buffer.stop()


def test_faust_as_shipped_flushes_the_buffer_partly_and_returns() -> None:
    left, handed = asyncio.run(flush_after_buffering(UNFIXED_BUFFER_FLUSH, 4))
    assert left > 0 and len(handed) < 4  # what a commit then runs ahead of


def test_the_fixed_flush_returns_once_every_message_is_handed_over() -> None:
    fix_buffer_flush()
    fix_buffer_flush()  # idempotent
    left, handed = asyncio.run(flush_after_buffering(ProducerBuffer.flush, 4))
    assert (left, handed) == (0, [0, 1, 2, 3])  # the last one too, taken before size hit 0


async def queued_after_resumes(fixed: bool, suspend_between: bool) -> list[str]:
    """What an agent's queue (a real Faust app's, flow-controlled as every agent's
    is) still holds after: resume (recovery starts reading), a record delivered,
    [suspend (a rebalance starts),] resume again (recovery ends)."""
    app = faust.App("flow-resume-test", broker="kafka://localhost:1", web_enabled=False)
    if fixed:
        fix_flow_resume(app)
        fix_flow_resume(app)  # idempotent
    queue = app.FlowControlQueue(maxsize=10, clear_on_resume=True)
    app.flow_control.resume()
    queue.put_nowait("offset 504")
    if suspend_between:
        app.flow_control.suspend()
    app.flow_control.resume()
    return [queue.get_nowait() for _ in range(queue.qsize())]


def test_faust_as_shipped_drops_what_was_delivered_while_the_flow_ran() -> None:
    assert asyncio.run(queued_after_resumes(fixed=False, suspend_between=False)) == []


def test_the_fixed_flow_keeps_what_was_delivered_while_it_ran() -> None:
    assert asyncio.run(queued_after_resumes(fixed=True, suspend_between=False)) == ["offset 504"]


def test_the_fixed_flow_still_clears_what_a_rebalance_left_queued() -> None:
    # Fetched for the previous assignment: fetched again after the seek.
    assert asyncio.run(queued_after_resumes(fixed=True, suspend_between=True)) == []
