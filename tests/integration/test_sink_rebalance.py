"""Two sinks in one consumer group: partitions move between them, results do not change."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer

from heatstream.schemas import topics
from heatstream.schemas.serde import encode
from heatstream.sinks.consumer import build_sink
from heatstream.sinks.options import SinkOptions
from heatstream.stack import EmbeddedStack
from tests.integration.test_sink_influx import (
    committed_offsets,
    count,
    eventually,
    isolated,
    produce,
    query,
    window,
)
from tests.integration.test_sink_raw import BUCKET_MS, LATENESS_MS, expected_buckets, fleet

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow]


async def test_a_second_sink_joins_then_the_first_leaves(
    stack: EmbeddedStack, unique_name: Callable[[str], str]
) -> None:
    settings = await isolated(stack, unique_name("group"))
    frames = fleet(90, seed=11)
    expected = expected_buckets(frames)
    windows = [window(f"b{b}", i, b * 1000 + i) for b in range(8) for i in range(60)]
    raw = topics.topic_name(topics.RAW_EVENTS, settings.kafka.topic_prefix)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap, enable_idempotence=False
    )
    await producer.start()

    async def publish(part: int) -> None:
        half = len(frames) // 2
        for f in frames[:half] if part == 0 else frames[half:]:
            await producer.send(raw, encode(f), key=f.gateway.encode())
        await producer.flush()
        await produce(settings, topics.HEAT_WINDOWS, windows[part::2])

    options = SinkOptions(
        flush_interval_s=0.2,
        batch_size=100,
        health_interval_s=60,
        session_timeout_s=6,
        downsample_s=BUCKET_MS // 1000,
        lateness_s=LATENESS_MS // 1000,
    )
    first, second = build_sink(settings, options), build_sink(settings, options)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(first.run(stop_first))]
    try:
        await publish(0)

        async def started() -> bool:
            return await count(settings, "heat_kwh", "heat_window") > 0

        await eventually(started)
        tasks.append(asyncio.create_task(second.run(stop_second)))
        await asyncio.sleep(4)  # the group rebalances over both sinks
        await publish(1)
        await asyncio.sleep(1)
        stop_first.set()
        await asyncio.wait_for(tasks[0], 30)

        async def done() -> bool:
            rows = await query(settings, "SELECT count(samples) FROM telemetry")
            telemetry = int(rows[0][1]) if rows else 0
            return telemetry == len(expected) and await count(
                settings, "heat_kwh", "heat_window"
            ) == len(windows)

        await eventually(done, 60)

        async def committed() -> bool:
            return await committed_offsets(second, settings, topics.HEAT_WINDOWS) == len(windows)

        await eventually(committed)
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        await producer.stop()

    assert first.counters.messages > 0 and second.counters.messages > 0
    rows = await query(settings, "SELECT supply_temp_c, samples, boiler FROM telemetry")
    got = {(r[3], r[0]): (r[1], r[2]) for r in rows}
    assert set(got) == set(expected)
    for key, (mean, n) in expected.items():
        assert got[key][1] == n and got[key][0] == pytest.approx(mean, rel=1e-12)
    rows = await query(settings, "SELECT heat_kwh, boiler FROM heat_window")
    assert sorted(r[1] for r in rows) == sorted(w.heat_kwh for w in windows)
