"""Raw telemetry landed as 10 s means, across a sink crash and restart."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import defaultdict
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer

from heatstream.schemas import topics
from heatstream.schemas.serde import encode
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.sinks.consumer import build_sink
from heatstream.sinks.options import SinkOptions
from heatstream.stack import EmbeddedStack
from tests.integration.test_sink_influx import committed_offsets, eventually, isolated, query

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow]

T0 = 1_768_435_200_000
BUCKET_MS, LATENESS_MS = 10_000, 5_000


def fleet(seconds: int, seed: int = 3) -> list[TelemetryFrame]:
    """Four gateways, 1 s frames of two boilers sampled at 2 Hz, not aligned to buckets."""
    rng = random.Random(seed)
    frames = []
    for s in range(seconds):
        for g in range(4):
            t = [T0 + s * 1000 + g * 237 + k * 500 for k in range(2) for _ in range(2)]
            frames.append(
                TelemetryFrame(
                    gateway=f"gw{g}",
                    seq=s + 1,
                    site="s1",
                    event_time_ms=t[0],
                    ingest_time_ms=t[0],
                    boilers=[f"gw{g}-a", f"gw{g}-b"],
                    boiler_idx=[0, 1, 0, 1],
                    dt_ms=[x - t[0] for x in t],
                    supply_temp_c=[round(rng.uniform(40, 70), 2) for _ in t],
                    flow_lpm=[round(rng.uniform(5, 20), 2) for _ in t],
                )
            )
    return frames


def expected_buckets(frames: list[TelemetryFrame]) -> dict[tuple[str, int], tuple[float, int]]:
    """(boiler, bucket start) -> (mean supply temperature, samples), closed buckets only."""
    samples: dict[tuple[str, int], list[float]] = defaultdict(list)
    watermark: dict[str, int] = defaultdict(int)  # per gateway: its latest sample
    for f in {(f.gateway, f.seq): f for f in frames}.values():  # retries count once
        for i, t in enumerate(f.t_ms.tolist()):
            samples[(f.boilers[f.boiler_idx[i]], t - t % BUCKET_MS)].append(f.supply_temp_c[i])
            watermark[f.gateway] = max(watermark[f.gateway], t)

    def closed(boiler: str, start: int) -> bool:
        w = watermark[boiler.split("-")[0]] - LATENESS_MS
        return start < w - w % BUCKET_MS

    return {k: (sum(v) / len(v), len(v)) for k, v in samples.items() if closed(*k)}


async def test_downsampled_means_survive_a_sink_crash(
    stack: EmbeddedStack, unique_name: Callable[[str], str]
) -> None:
    settings = await isolated(stack, unique_name("raw"))
    frames = fleet(120)
    expected = expected_buckets(frames)
    raw = topics.topic_name(topics.RAW_EVENTS, settings.kafka.topic_prefix)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap, enable_idempotence=False
    )
    await producer.start()

    async def publish(part: list[TelemetryFrame]) -> None:
        for f in part:
            await producer.send(raw, encode(f), key=f.gateway.encode())
        await producer.flush()

    options = SinkOptions(
        flush_interval_s=0.2,
        batch_size=50,
        health_interval_s=1,
        session_timeout_s=6,
        downsample_s=BUCKET_MS // 1000,
        lateness_s=LATENESS_MS // 1000,
    )

    async def buckets() -> dict[tuple[str, int], tuple[float, int]]:
        rows = await query(settings, "SELECT supply_temp_c, samples, boiler FROM telemetry")
        return {(r[3], r[0]): (r[1], r[2]) for r in rows}

    try:
        await publish(frames[: len(frames) // 2])
        first = build_sink(settings, options)
        run = asyncio.create_task(first.run())

        async def some_landed() -> bool:
            return len(await buckets()) >= 20

        async def some_committed() -> bool:
            # The crash must come after a commit, or the next sink has nothing to re-read
            # before its committed offset (a write lands before its offsets are committed).
            return await committed_offsets(first, settings, topics.RAW_EVENTS) > 0

        await eventually(some_landed)
        await eventually(some_committed)
        await publish(frames[len(frames) // 2 :] + frames[100:140])  # and some gateway retries
        await asyncio.sleep(0.3)
        run.cancel()  # a crash: nothing flushed or committed on the way out
        with contextlib.suppress(asyncio.CancelledError):
            await run

        second = build_sink(settings, options)
        stop = asyncio.Event()
        run = asyncio.create_task(second.run(stop))

        async def all_landed() -> bool:
            return len(await buckets()) == len(expected)

        try:
            await eventually(all_landed, 60)
        finally:
            stop.set()
            await asyncio.wait_for(run, 30)
    finally:
        await producer.stop()

    assert second.counters.warmup_messages > 0  # it re-read before the first sink's commit
    got = await buckets()
    assert set(got) == set(expected)
    for key, (mean, n) in expected.items():
        assert got[key][1] == n, f"bucket {key} has {got[key][1]} samples, not {n}"
        assert got[key][0] == pytest.approx(mean, rel=1e-12)


async def test_a_watermarked_frame_lands_its_bucket_without_waiting_for_more(
    stack: EmbeddedStack, unique_name: Callable[[str], str]
) -> None:
    # The frame's watermark closes its bucket (no later frame is ever sent), and the
    # sink, having read everything there is, writes at once: not after its flush
    # interval (an hour here) nor when a batch fills up.
    settings = await isolated(stack, unique_name("wm"))
    options = SinkOptions(
        flush_interval_s=3600,
        batch_size=5000,
        session_timeout_s=6,
        downsample_s=1,
        lateness_s=0,
    )
    second = T0 + 7000
    frame = TelemetryFrame(
        gateway="gw0",
        seq=1,
        site="s1",
        event_time_ms=second + 20,
        ingest_time_ms=second + 1000,
        boilers=["gw0-a", "gw0-b"],
        boiler_idx=[0, 1, 0, 1],
        dt_ms=[0, 5, 500, 505],
        supply_temp_c=[60.0, 40.0, 61.0, 41.0],
        watermark_ms=second + 1000,
    )
    raw = topics.topic_name(topics.RAW_EVENTS, settings.kafka.topic_prefix)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap, enable_idempotence=False
    )
    await producer.start()
    sink = build_sink(settings, options)
    stop = asyncio.Event()
    run = asyncio.create_task(sink.run(stop))
    try:
        await producer.send_and_wait(raw, encode(frame), key=b"gw0")

        async def landed() -> bool:
            rows = await query(settings, "SELECT supply_temp_c, samples, boiler FROM telemetry")
            return len(rows) == 2

        await eventually(landed, 60)
    finally:
        stop.set()
        await asyncio.wait_for(run, 30)
        await producer.stop()
    rows = await query(settings, "SELECT supply_temp_c, samples, boiler FROM telemetry")
    assert sorted((r[3], r[0], r[1], r[2]) for r in rows) == [
        ("gw0-a", second, 60.5, 2),
        ("gw0-b", second, 40.5, 2),
    ]
