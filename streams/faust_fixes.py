"""Fixes to Faust (faust-streaming 0.15) that the worker applies when it builds its app.

Committing past a false gap, one offset per commit
--------------------------------------------------
Faust commits a partition up to the first hole in the offsets its agents have
acknowledged, and records a *gap* when a message's offset is more than one past
the last one it read (a compacted topic, a transaction marker), so that the
missing offsets do not hold the commit back. After recovering its tables, a
worker resumes its stream partitions before it seeks them to their committed
offsets: the records fetched during recovery are delivered in between, the seek
then rewinds the read position, and the next record looks like a jump. The gap
recorded then covers offsets that were delivered and are acknowledged too.

`Consumer._new_offset` merges a gap into the acknowledged offsets without
removing repeats, and takes the first run of *consecutive* offsets as what can
be committed. With every offset there twice the runs are one or two long, so
the committed offset moved by one or two per commit (one a second): after a
restart, a worker that had caught up in seconds reported a lag for as many
seconds as the gap had records (34-88 s measured; robinhood/faust#625 reports
the same repeats). `fix_gap_commits` merges the gap itself, without repeats,
before Faust's method runs, which then finds nothing left to merge.

Recovering a table to the changelog's real end
----------------------------------------------
Faust restores a table by reading each changelog partition up to the end offset
the broker lists (ListOffsets) when recovery starts, and stops there. Some
Kafka-protocol brokers list less than the real end: Tansu 0.6, the embedded one,
answers the base offset of the partition's last record batch + 1. Rows written
in one batch after that base offset are then never restored: five rows produced
in one batch to an empty changelog came back as the first row alone, in every
run (tests/integration/test_faust_recovery.py). A worker restarted on an empty
data directory (a new machine, a partition moving to another worker) resumed
with stale state for those keys; one restarted on its own data directory, whose
RocksDB had persisted an offset past the listed end, was stopped by Faust's
ConsistencyError instead.

`fix_recovery_ends` makes recovery ask, for every partition whose listed end
is above 0, where the real end is: a consumer of its own fetches from the
listed end - 1, which returns that whole last batch and the partition's
highwater mark. Against a broker whose listed ends are right (Apache Kafka)
the answer is the listed end, so nothing changes but one small fetch per
changelog partition at each recovery.

Committing only what the changelog holds
----------------------------------------
A table write goes to the producer's buffer (`ProducerBuffer`), which a task of
its own hands to the Kafka client. Before committing offsets Faust flushes the
producer: the buffer, then the client. The buffer's `flush` waits 0.1 s at a
time for a message to be sent and *returns* when none was, with messages still
in it: a loop busy for more than 0.1 s (a batch of window closes, a loaded
machine) or a slow send is enough. The client's flush then waits only for what
it was handed, and the offsets are committed ahead of the state rows that
belong to them. If the partition then moves to another worker (a rebalance, a
worker leaving) before those rows reach the broker, the new owner restores an
older state and resumes after the messages it lacks: their samples are lost.
(Losses of that shape seen with this fix in place had the cause described in
the next section.) `fix_buffer_flush` makes `flush`
wait until the buffer is empty and the message it took last has been handed
to the client; while the buffer's service is not running it raises, as Faust's
does, so nothing is committed then.

Keeping the records delivered while the streams start
-----------------------------------------------------
When its table recovery ends (at start, after every rebalance), a worker
resumes its stream partitions, then seeks them to their committed offsets, then
resumes flow control. The fetcher is already running: during the seek it hands
records of those partitions to the agents' queues, and Faust's read offset moves
past them. Resuming flow control clears every queue it manages, although the
flow was never suspended since recovery started, so those queued records are of
the current assignment: a record still in a queue at that moment is discarded.
Its fetch after the seek is then dropped as already read, so it is never
processed, and the commits move past it once later offsets are acknowledged.
Measured: offsets 462 and 504 of a restarted worker's first batch missing, one
sample short in one window of every boiler of that gateway (BENCHMARKS.md,
"Defects found while measuring": "A restart could lose a sample"); more likely on a busy
machine, where the stream drains its queue more slowly. `fix_flow_resume` makes
an app's flow control clear its queues only when it resumes from *suspended*
(a rebalance started since: what they hold was fetched for the previous
assignment and is fetched again after the seek); resuming a flow that is
already running leaves the queues as they are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.producer import ProducerBuffer
from faust.types import TP

from heatstream.kafka_security import client_kwargs, start_client
from heatstream.settings import KafkaSettings

log = logging.getLogger(__name__)

_FIXED = "_heatstream_gap_commits_fixed"
#: Faust's method as shipped (this module is what replaces it).
UNFIXED_NEW_OFFSET = Consumer._new_offset


def fix_gap_commits() -> None:
    """Make `Consumer._new_offset` merge gaps without repeated offsets (idempotent)."""
    if getattr(Consumer, _FIXED, False):
        return

    def _new_offset(self: Any, tp: TP) -> int | None:
        merge_gap(self._acked[tp], self._gap[tp])
        return UNFIXED_NEW_OFFSET(self, tp)

    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    setattr(Consumer, _FIXED, True)


_FLUSH_FIXED = "_heatstream_buffer_flush_fixed"
_SENDING = "_heatstream_sending"
#: Faust's methods as shipped.
UNFIXED_BUFFER_FLUSH = ProducerBuffer.flush
UNFIXED_SEND_PENDING = ProducerBuffer._send_pending


def fix_buffer_flush() -> None:
    """Make `ProducerBuffer.flush` return only once every buffered message has been
    handed to the Kafka client (idempotent); see the module docstring."""
    if getattr(ProducerBuffer, _FLUSH_FIXED, False):
        return

    async def _send_pending(self: Any, fut: Any) -> None:
        # Taken from the queue (no longer in `size`) until the client has it.
        setattr(self, _SENDING, getattr(self, _SENDING, 0) + 1)
        try:
            await UNFIXED_SEND_PENDING(self, fut)
        finally:
            setattr(self, _SENDING, getattr(self, _SENDING) - 1)

    async def flush(self: Any) -> None:
        while self.size or getattr(self, _SENDING, 0):
            if self.state != "running":
                raise RuntimeError("Cannot flush: Producer not Running")
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)
            except TimeoutError:
                continue  # a busy loop or a slow send: keep waiting, never commit ahead

    ProducerBuffer._send_pending = _send_pending  # type: ignore[method-assign]
    ProducerBuffer.flush = flush  # type: ignore[method-assign]
    setattr(ProducerBuffer, _FLUSH_FIXED, True)


_FLOW_FIXED = "_heatstream_flow_resume_fixed"


def fix_flow_resume(app: Any) -> None:
    """Make `app.flow_control.resume` clear the queues it manages only when the flow
    was suspended (idempotent; other apps are untouched); see the module docstring."""
    flow = app.flow_control
    if getattr(flow, _FLOW_FIXED, False):
        return
    shipped = flow.resume

    def resume() -> None:
        if flow.is_active():
            return  # running since the last resume: what is queued is current, keep it
        shipped()

    flow.resume = resume
    setattr(flow, _FLOW_FIXED, True)


def merge_gap(acked: list[int], gap: Any) -> None:
    """Move the gap's intervals below the highest acknowledged offset into `acked`,
    each offset once, sorted (`gap` is Faust's IntervalTree, end excluded)."""
    if not acked or not gap:
        return
    top = max(acked)
    spans = gap.overlap(0, top)
    if not spans:
        return
    merged = set(acked)
    for span in spans:
        merged.update(range(span.begin, span.end))
    acked[:] = sorted(merged)
    gap.chop(0, max(top + 1, max(span.end for span in spans)))


# -- Recovering to the real end -------------------------------------------------------

_ENDS_FIXED = "_heatstream_recovery_ends_fixed"
_END_FINDER = "_heatstream_true_ends"  # attribute of the app: its own broker settings
#: Faust's method as shipped (this module is what wraps it).
UNFIXED_BUILD_HIGHWATERS = Recovery._build_highwaters
#: How long `true_end_offsets` waits for the broker's answer before keeping the listed ends.
END_PROBE_TIMEOUT_S = 10.0

EndFinder = Callable[[Mapping[TP, int]], Awaitable[dict[TP, int]]]


def fix_recovery_ends(app: Any, kafka: KafkaSettings) -> None:
    """Make `app`'s table recovery read each changelog partition to its real end
    (`true_end_offsets`), not to the end its broker lists. Other apps are untouched."""

    async def find(listed: Mapping[TP, int]) -> dict[TP, int]:
        return await true_end_offsets(kafka, listed)

    setattr(app, _END_FINDER, find)
    if getattr(Recovery, _ENDS_FIXED, False):
        return

    async def _build_highwaters(
        self: Any, consumer: Any, tps: Any, destination: Any, title: str
    ) -> None:
        await UNFIXED_BUILD_HIGHWATERS(self, consumer, tps, destination, title)
        finder: EndFinder | None = getattr(self.app, _END_FINDER, None)
        if finder is not None:
            await raise_highwaters(destination, finder, title)

    Recovery._build_highwaters = _build_highwaters  # type: ignore[method-assign]
    setattr(Recovery, _ENDS_FIXED, True)


async def raise_highwaters(highwaters: Any, finder: EndFinder, title: str) -> None:
    """Move Faust's recovery highwaters (last offset to read, -1 for an empty
    partition) up to the real ends `finder` gives; never down."""
    listed = {tp: last + 1 for tp, last in highwaters.items() if last is not None and last >= 0}
    if not listed:
        return
    for tp, end in (await finder(listed)).items():
        if end - 1 > highwaters[tp]:
            log.info(
                "Recovery (%s): %s[%d] ends at offset %d, not at the %d its broker lists",
                title,
                tp.topic,
                tp.partition,
                end,
                listed[tp],
            )
            highwaters[tp] = end - 1


async def true_end_offsets(
    kafka: KafkaSettings, listed: Mapping[TP, int], timeout_s: float = END_PROBE_TIMEOUT_S
) -> dict[TP, int]:
    """The offset after the last record of each partition in `listed` (partition ->
    end offset listed by the broker, above 0), read from the partition itself.

    A fetch from offset listed - 1 returns the record batch holding it, whole,
    and the partition's highwater mark: the larger of the offset after that
    batch's last record and the highwater is the real end. A partition that does
    not answer within `timeout_s` keeps its listed end (logged)."""
    tps = {TopicPartition(tp.topic, tp.partition): tp for tp, end in listed.items() if end > 0}
    ends = {tp: end for tp, end in listed.items()}
    if not tps:
        return ends
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), enable_auto_commit=False)
    await start_client(consumer.start, kafka)
    try:
        consumer.assign(list(tps))
        for atp, tp in tps.items():
            consumer.seek(atp, listed[tp] - 1)
        waiting = set(tps)
        deadline = time.monotonic() + timeout_s
        while waiting and time.monotonic() < deadline:
            batch = await consumer.getmany(*waiting, timeout_ms=200)
            for atp in list(waiting):
                records = batch.get(atp)
                highwater = consumer.highwater(atp)
                if records or highwater is not None:
                    tp = tps[atp]
                    last = records[-1].offset + 1 if records else 0
                    ends[tp] = max(ends[tp], last, highwater or 0)
                    waiting.discard(atp)
        for atp in waiting:
            log.warning(
                "No answer for the end of %s[%d] in %.0f s: recovering it to the listed %d",
                atp.topic,
                atp.partition,
                timeout_s,
                listed[tps[atp]],
            )
    finally:
        await consumer.stop()
    return ends
