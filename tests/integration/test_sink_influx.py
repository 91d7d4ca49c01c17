"""The sink against the real embedded broker and InfluxDB 1.6 (the session `stack`)."""

from __future__ import annotations

import asyncio
import gc
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from heatstream.schemas import topics
from heatstream.schemas.deadletter import DeadLetter
from heatstream.schemas.derived import (
    DataQualityIssue,
    EfficiencyAnomaly,
    HeatWindow,
    LeakSuspected,
)
from heatstream.schemas.serde import decode_derived, encode
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.settings import Settings
from heatstream.sinks.consumer import Sink, build_sink
from heatstream.sinks.downsample import DownsampleParams, Downsampler
from heatstream.sinks.errors import InfluxRejected
from heatstream.sinks.health import HealthReporter, SinkCounters
from heatstream.sinks.isolate import write_isolating
from heatstream.sinks.lineprotocol import Point, encode_point
from heatstream.sinks.options import SinkOptions
from heatstream.sinks.points import points_of
from heatstream.sinks.writers.v1 import V1Writer
from heatstream.stack import EmbeddedStack
from heatstream.stack.provision import create_database, create_topics
from heatstream.streams.health import WorkerHealth
from heatstream.streams.processor import Counters

pytestmark = pytest.mark.integration

T0 = 1_768_435_200_000
FAST = SinkOptions(
    flush_interval_s=0.2, health_interval_s=0.5, session_timeout_s=6, batch_size=200, downsample_s=0
)


async def isolated(stack: EmbeddedStack, name: str) -> Settings:
    """Settings with this test's own topics (prefix), consumer group and database."""
    base = stack.settings
    settings = base.model_copy(
        update={
            "app_id": name,
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"{name}.", "partitions": 2}),
            "influxdb": base.influxdb.model_copy(update={"database": name}),
        }
    )
    await create_topics(stack.bootstrap, settings.kafka)
    await create_database(stack.influx_url, name)
    return settings


def window(boiler: str, i: int, heat: float) -> HeatWindow:
    return HeatWindow(
        boiler=boiler,
        site="s1",
        resolution="1m",
        window_start_ms=T0 + i * 60_000,
        window_end_ms=T0 + (i + 1) * 60_000,
        heat_kwh=heat,
        it_kwh=2.0,
        aux_kwh=0.1,
        total_kwh=2.1,
        erf=heat / 2.1,
        supply_temp_mean_c=65.0,
        return_temp_mean_c=45.0,
        flow_mean_lpm=12.5,
        coverage=1.0,
        co2_avoided_kg=heat * 0.25,
        samples=60,
    )


async def produce(settings: Settings, spec: topics.TopicSpec, events: list[Any]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap, enable_idempotence=False
    )
    await producer.start()
    try:
        name = topics.topic_name(spec, settings.kafka.topic_prefix)
        for e in events:
            await producer.send(name, encode(e), key=e.key.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def query(settings: Settings, q: str) -> list[list[Any]]:
    async with httpx.AsyncClient(base_url=settings.influxdb.url) as client:
        response = await client.get(
            "/query", params={"db": settings.influxdb.database, "q": q, "epoch": "ms"}
        )
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, result
    return [row for series in result.get("series", []) for row in series["values"]]


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.2)


async def count(settings: Settings, field: str, measurement: str) -> int:
    rows = await query(settings, f'SELECT count("{field}") FROM "{measurement}"')
    return int(rows[0][1]) if rows else 0


async def committed_offsets(sink: Sink, settings: Settings, spec: topics.TopicSpec) -> int:
    name = topics.topic_name(spec, settings.kafka.topic_prefix)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, group_id=sink.group_id)
    await consumer.start()
    try:
        total = 0
        for p in range(settings.kafka.partitions):
            total += await consumer.committed(TopicPartition(name, p)) or 0
        return total
    finally:
        await consumer.stop()


async def read_all(settings: Settings, spec: topics.TopicSpec) -> list[Any]:
    name = topics.topic_name(spec, settings.kafka.topic_prefix)
    consumer = AIOKafkaConsumer(
        name, bootstrap_servers=settings.kafka.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        records = await consumer.getmany(timeout_ms=2000)
        return [decode_derived(m.value) for batch in records.values() for m in batch]
    finally:
        await consumer.stop()


async def run_until(sink: Sink, done: Callable[[], Awaitable[bool]], timeout_s: float = 40) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    try:
        await eventually(done, timeout_s)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_derived_events_land_exactly_and_offsets_are_committed(
    stack: EmbeddedStack, unique_name: Callable[[str], str]
) -> None:
    settings = await isolated(stack, unique_name("sink"))
    events = [window(f"b{b}", i, 1.0 + b + i / 1000) for b in range(4) for i in range(150)]
    await produce(settings, topics.HEAT_WINDOWS, events)
    await produce(settings, topics.HEAT_WINDOWS, events[:50])  # a redelivery
    sink = build_sink(settings, FAST)

    async def landed() -> bool:
        return await committed_offsets(sink, settings, topics.HEAT_WINDOWS) == 650

    await run_until(sink, landed)
    assert await count(settings, "heat_kwh", "heat_window") == 600
    rows = await query(settings, "SELECT heat_kwh, erf FROM heat_window WHERE boiler = 'b2'")
    assert [r[1] for r in rows] == [3.0 + i / 1000 for i in range(150)]
    assert rows[7][2] == (3.0 + 7 / 1000) / 2.1  # full float precision
    assert await count(settings, "points_written", "pipeline_health") >= 1
    assert sink.counters.points_written >= 650 and sink.counters.dead_letters == 0


async def test_a_poison_point_goes_to_dead_letters_and_its_batch_lands(
    stack: EmbeddedStack, unique_name: Callable[[str], str]
) -> None:
    settings = await isolated(stack, unique_name("poison"))
    # A string field InfluxDB already holds: the same field as a float is refused
    # ("field type conflict") for that one point only.
    writer = V1Writer(settings.influxdb)
    await writer.start()
    seed = Point.at_ms("anomaly", {"boiler": "seed"}, {"ev_zz": "text"}, T0)
    await writer.write([encode_point(seed) or b""], "ms")
    await writer.close()

    def anomaly(i: int, evidence: dict[str, float]) -> EfficiencyAnomaly:
        return EfficiencyAnomaly(
            boiler="b1",
            site="s1",
            kind="efficiency_drop",
            phase="start",
            start_ms=T0 + i * 1000,
            severity="warning",
            evidence=evidence,
            reason="recovery below baseline",
        )

    events = [anomaly(i, {"ratio": 0.5}) for i in range(40)]
    events[17] = anomaly(17, {"zz": 1.5})
    await produce(settings, topics.ANOMALIES, events)
    sink = build_sink(settings, FAST)

    async def dead_letter_point_landed() -> bool:
        return await count(settings, "count", "dead_letter") == 1

    await run_until(sink, dead_letter_point_landed)
    rows = await query(settings, "SELECT ev_ratio FROM anomaly WHERE boiler = 'b1'")
    assert len(rows) == 39 and T0 + 17_000 not in [r[0] for r in rows]
    (dl,) = [r for r in await read_all(settings, topics.DEAD_LETTERS) if isinstance(r, DeadLetter)]
    assert (dl.stage, dl.reason) == ("sink", "influx_rejected")
    assert "field type conflict" in dl.error and "ev_zz" in dl.error
    assert dl.original.startswith(b"anomaly,") and b"ev_zz=1.5" in dl.original
    anomalies = topics.topic_name(topics.ANOMALIES, settings.kafka.topic_prefix)
    assert dl.source_topic == anomalies and dl.source_offset >= 0
    assert sink.counters.rejected_points == 1
    assert await committed_offsets(sink, settings, topics.ANOMALIES) == 40


async def test_unparsable_lines_are_isolated_by_the_real_server(
    stack: EmbeddedStack, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("parse")
    await create_database(stack.influx_url, name)
    settings = stack.settings.model_copy(
        update={"influxdb": stack.settings.influxdb.model_copy(update={"database": name})}
    )
    writer = V1Writer(settings.influxdb)
    await writer.start()
    lines = [f"m v={i} {T0 + i}".encode() for i in range(20)]
    lines[5] = b"m v=this is not line protocol"
    lines[13] = b"m v=1 not-a-timestamp"

    async def write(chunk: Any) -> None:
        await writer.write(chunk, "ms")

    refused = await write_isolating(write, lines)
    await writer.close()
    assert [r.index for r in refused] == [5, 13]
    assert all("unable to parse" in r.message for r in refused)
    assert await count(settings, "v", "m") == 18


async def test_a_write_leaves_no_cycle_holding_its_body(
    stack: EmbeddedStack, unique_name: Callable[[str], str]
) -> None:
    """The sink collects cyclic garbage rarely (heatstream.runtime.GC_THRESHOLDS): a
    response left in a reference cycle kept its request, and so the batch's body,
    until the next full collection (+19 MiB/min in the level-0 soak). Reference
    counting alone must free a written request and a refused one."""
    name = unique_name("cycle")
    await create_database(stack.influx_url, name)
    settings = stack.settings.model_copy(
        update={"influxdb": stack.settings.influxdb.model_copy(update={"database": name})}
    )
    writer = V1Writer(settings.influxdb, gzip_level=0)
    await writer.start()
    lines = [f"m v={i} {T0 + i}".encode() for i in range(2_000)]
    gc.collect()
    gc.disable()
    try:
        await writer.write(lines, "ms")
        with pytest.raises(InfluxRejected, match="unable to parse"):
            await writer.write([*lines, b"m v=this is not line protocol"], "ms")
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    await writer.close()
    # A request holds its body (bytes are not tracked by the collector, so the
    # bodies themselves never show in gc.garbage).
    assert [o for o in garbage if isinstance(o, (httpx.Request, httpx.Response))] == []
    assert await count(settings, "v", "m") == 2_000


async def test_tricky_points_read_back_from_influxdb(
    stack: EmbeddedStack, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("roundtrip")
    await create_database(stack.influx_url, name)
    settings = stack.settings.model_copy(
        update={"influxdb": stack.settings.influxdb.model_copy(update={"database": name})}
    )
    fields: dict[str, Any] = {
        "f k,=": 0.1 + 0.2,
        "tiny": 5e-324,
        "huge": 1.7976931348623157e308,
        "neg": -12,
        "on": True,
        "text": 'quote " backslash \\ unicode é ⏎',
    }
    point = Point.at_ms("m e,as", {"t k=": "v a,l=ue", "boiler": "b1"}, fields, T0)
    writer = V1Writer(settings.influxdb)
    await writer.start()
    await writer.write([encode_point(point) or b""], "ms")
    await writer.close()
    async with httpx.AsyncClient(base_url=settings.influxdb.url) as client:
        response = await client.get(
            "/query", params={"db": name, "q": 'SELECT * FROM "m e,as"', "epoch": "ms"}
        )
    (series,) = response.json()["results"][0]["series"]
    row = dict(zip(series["columns"], series["values"][0], strict=True))
    assert row.pop("time") == T0
    assert row == {**fields, "t k=": "v a,l=ue", "boiler": "b1"}


async def test_every_influxql_example_of_the_measurement_doc_runs(
    stack: EmbeddedStack, unique_name: Callable[[str], str]
) -> None:
    doc = Path(__file__).parents[2] / "docs" / "measurements.md"
    examples = re.findall(r"```sql\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    assert len(examples) >= 8

    name = unique_name("doc")
    await create_database(stack.influx_url, name)
    settings = stack.settings.model_copy(
        update={"influxdb": stack.settings.influxdb.model_copy(update={"database": name})}
    )
    now = time.time_ns() // 1_000_000
    minute = now - now % 60_000 - 3_600_000
    events: list[Any] = [window("boiler-lyon-01", i, 1.0) for i in range(3)]
    events = [
        e.model_copy(update={"window_start_ms": minute + i * 60_000, "coverage": 0.5})
        for i, e in enumerate(events)
    ]
    events.append(window("b1", 0, 2.0).model_copy(update={"resolution": "1d"}))
    events.append(
        EfficiencyAnomaly(
            boiler="b1",
            site="s1",
            kind="pump_failure",
            phase="start",
            start_ms=minute,
            severity="critical",
            evidence={"flow_lpm": 0.1},
            reason="pump off",
        )
    )
    events.append(
        LeakSuspected(
            boiler="b1",
            site="s1",
            start_ms=minute - 60_000,
            detected_ms=minute,
            evidence=["moisture"],
            confidence=0.8,
            leak_rate_lpm=0.3,
            reason="wet floor",
        )
    )
    events.append(
        DataQualityIssue(
            kind="gateway_silent", gateway="gw1", site="s1", start_ms=minute, detail="x"
        )
    )
    events.append(
        DeadLetter(
            source_topic="heatstream.raw.events",
            source_partition=0,
            source_offset=1,
            original=b"{",
            reason="decode_error",
            error="not JSON",
            rejected_at_ms=minute,
        )
    )
    points = [p for e in events for p in points_of(e)]
    sampler = Downsampler(DownsampleParams(10_000, 0, 60_000))
    for i in range(3):
        t = minute + i * 10_000
        frame = TelemetryFrame(
            gateway="gw-lyon-1",
            seq=i + 1,
            site="pool-lyon",
            event_time_ms=t,
            ingest_time_ms=t,
            boilers=["boiler-lyon-01"],
            boiler_idx=[0],
            dt_ms=[0],
            supply_temp_c=[60.0],
            return_temp_c=[40.0],
            flow_lpm=[10.0],
        )
        points += [f.point for f in sampler.add(frame, i)]
    points.append(
        HealthReporter(SinkCounters(), "test").point(
            consumer_lag=0, in_flight_points=0, paused=False
        )
    )
    worker = WorkerHealth("test", started_ms=now - 10_000, started_s=0.0)
    worker.latency.observe(0.02)
    points += points_of(
        worker.sample([Counters(readings=100)], {0: 3}, time_ms=now - 5_000, now_s=5.0)
    )
    writer = V1Writer(settings.influxdb)
    await writer.start()
    await writer.write([p for p in (encode_point(p, "ns") for p in points) if p], "ns")
    await writer.close()

    for q in examples:
        async with httpx.AsyncClient(base_url=settings.influxdb.url) as client:
            response = await client.get("/query", params={"db": name, "q": q})
        result = response.json()["results"][0]
        assert "error" not in result, (q, result)
        assert result.get("series"), f"no rows for:\n{q}"


async def test_fetches_carry_the_configured_max_wait(
    stack: EmbeddedStack, unique_name: Callable[[str], str]
) -> None:
    # The embedded broker holds a fetch that finds nothing new for about its max
    # wait, whatever arrives meanwhile: the option bounds what a record waits there.
    settings = await isolated(stack, unique_name("fetchwait"))
    sink = build_sink(settings, FAST.model_copy(update={"fetch_max_wait_ms": 37}))
    await sink._start_kafka()
    try:
        assert sink._consumer is not None
        assert sink._consumer._fetcher._fetch_max_wait_ms == 37  # put in every FetchRequest
    finally:
        await sink._stop_clients()
    assert SinkOptions().fetch_max_wait_ms == 50
