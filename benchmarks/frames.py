"""The frame trade-off, measured: throughput and latency per frame shape.

For every shape in `workload.SHAPES` (one reading per message, the naive
baseline; one boiler x 1 s; a gateway's boilers x 1 s, heatstream's choice; a
gateway x 10 s; one boiler x 60 s):

* throughput of the processor (`Processor.process`, CPU time) and of the worker's
  core loop (plus encoding and the per-message state export), in this process;
* the raw aiokafka consume rate of the same messages through the broker (the
  ceiling a Kafka consumer of that shape cannot beat), and the message size;
* latency, live: the fleet publishes in real time (`benchmarks.pace`) while this
  process consumes and processes; p50 and p99 from a reading's event time to its
  message being processed. Shapes whose span is longer than a third of the live
  run get only the latency they imply, marked as such: the span's first reading
  waits for its last (the frame is sealed then) plus the hand-off to the broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.broker import consume_all, produce, provision
from benchmarks.live import Done, Pacer, consume_and_process, percentile
from benchmarks.pace import SEND_DELAY_MS
from benchmarks.procs import Children
from benchmarks.results import Figure
from benchmarks.stages import BATCH_MAX, partition_of, timed
from benchmarks.workload import SHAPES, Fleet, Message
from heatstream.inventory import Inventory
from heatstream.schemas.serde import encode
from heatstream.schemas.topics import RAW_EVENTS, topic_name
from heatstream.streams.processor import Origin, Processor


def throughput(
    fleet: Fleet,
    seconds: int,
    max_messages: int,
    partitions: int,
    bootstrap: str | None,
    run_id: str,
) -> list[Figure]:
    figures: list[Figure] = []
    inv = fleet.inventory
    for shape in SHAPES:
        n_sec = max(shape.span_s, min(seconds, seconds // shape.span_s * shape.span_s))
        msgs, readings = fleet.messages(shape, n_sec, limit=max_messages)
        parts = [partition_of(k, partitions) for k, _ in msgs]

        t_proc, _ = timed(partial(_process, msgs, parts, inv, partitions))
        t_core, _ = timed(partial(_core, msgs, parts, inv, partitions))
        size = sum(len(v) for _, v in msgs) / len(msgs)
        k = f"frame_{shape.key}"
        figures += [
            Figure(
                f"{k}_processor_readings_per_s",
                readings / t_proc,
                "readings/s",
                f"frames {shape.label}: processor",
                f"{k}_consume_readings_per_s",
                note=f"{len(msgs):,} messages of {readings / len(msgs):,.0f} readings, "
                f"{size:,.0f} B each; {len(msgs) / t_proc:,.0f} messages/s",
            ),
            Figure(
                f"{k}_worker_core_readings_per_s",
                readings / t_core,
                "readings/s",
                f"frames {shape.label}: worker core (+encode, batched export)",
                f"{k}_consume_readings_per_s",
            ),
        ]
        if bootstrap is not None:
            prefix = f"bf{run_id}{shape.key.replace('_', '')}."
            asyncio.run(provision(bootstrap, prefix, partitions))
            topic = topic_name(RAW_EVENTS, prefix)
            asyncio.run(produce(bootstrap, topic, msgs))
            t_consume = min(
                asyncio.run(consume_all(bootstrap, topic, len(msgs)))[0] for _ in range(2)
            )
            figures.append(
                Figure(
                    f"{k}_consume_readings_per_s",
                    readings / t_consume,
                    "readings/s",
                    f"frames {shape.label}: CEILING raw aiokafka consume",
                    note=f"{len(msgs) / t_consume:,.0f} messages/s",
                )
            )
    return figures


def _process(msgs: list[Message], parts: list[int], inv: Inventory, partitions: int) -> None:
    procs = [Processor(inv) for _ in range(partitions)]
    for i, ((key, raw), p) in enumerate(zip(msgs, parts, strict=True)):
        procs[p].process(raw, key, Origin("t", p, i, 0))


def _core(msgs: list[Message], parts: list[int], inv: Inventory, partitions: int) -> None:
    """As streams/app.py in a backlog: the rows a batch changed exported per batch."""
    procs = [Processor(inv) for _ in range(partitions)]
    for i, ((key, raw), p) in enumerate(zip(msgs, parts, strict=True)):
        for emit in procs[p].process(raw, key, Origin("t", p, i, 0)):
            encode(emit.event)
        if (i + 1) % BATCH_MAX == 0 or i + 1 == len(msgs):
            for proc in procs:
                proc.dirty_rows()


async def _live(
    pacer: Pacer, children: Children, consume: Callable[[asyncio.Event], Coroutine[Any, Any, Done]]
) -> Done:
    """Start consuming, then the fleet; the consumer's record of what it processed."""
    ready = asyncio.Event()
    task = asyncio.create_task(consume(ready))
    await ready.wait()
    pacer.start(children, (int(time.time() * 1000) // 1000 + 2) * 1000)
    return await task


def latency(
    fleet: Fleet,
    recording: Path,
    seconds: int,
    partitions: int,
    bootstrap: str,
    children: Children,
    workdir: Path,
    run_id: str,
) -> list[Figure]:
    figures: list[Figure] = []
    for shape in SHAPES:
        k = f"frame_{shape.key}"
        if shape.span_s * 3 > seconds:
            figures.append(
                Figure(
                    f"{k}_latency_floor_ms",
                    float(fleet.last_sample_ms(shape, 0, start_ms=0) + SEND_DELAY_MS),
                    "ms",
                    f"frames {shape.label}: latency floor (first reading waits for the last)",
                    note="implied, not run live: span longer than a third of the live run",
                )
            )
            continue
        prefix = f"bl{run_id}{shape.key.replace('_', '')}."
        asyncio.run(provision(bootstrap, prefix, partitions))
        topic = topic_name(RAW_EVENTS, prefix)
        n_spans = seconds // shape.span_s
        per_span = len(fleet.messages(shape, shape.span_s)[0])
        pacer = Pacer(
            recording,
            bootstrap,
            topic,
            fleet.boilers,
            shape,
            seconds,
            workdir / f"pace-{shape.key}.log",
        )

        expected = n_spans * per_span
        done = asyncio.run(
            _live(
                pacer,
                children,
                partial(
                    consume_and_process,
                    bootstrap,
                    topic,
                    partitions,
                    fleet.inventory,
                    expected,
                    timeout_s=seconds + 15,
                ),
            )
        )
        sent = pacer.result(timeout_s=60)
        lat, w = done.latency_ms()
        got = len(done.done_ms)
        behind = (
            "" if got >= sent["sent"] else f"; only {got:,} of {sent['sent']:,} processed in time"
        )
        note = (
            f"{fleet.boilers:,} boilers live for {seconds} s, {sent['sent']:,} messages; "
            f"sender at worst {sent['worst_behind_ms']:,.0f} ms behind schedule{behind}"
        )
        figures += [
            Figure(
                f"{k}_latency_p50_ms",
                percentile(lat, w, 50),
                "ms",
                f"frames {shape.label}: latency p50 (event -> processed)",
                note=note,
            ),
            Figure(
                f"{k}_latency_p99_ms",
                percentile(lat, w, 99),
                "ms",
                f"frames {shape.label}: latency p99 (event -> processed)",
            ),
        ]
    return figures
