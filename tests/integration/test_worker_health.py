"""The worker's own pipeline_health, end to end on the real broker and InfluxDB 1.6.

A simulated fleet goes through the gateway SDK to the raw topic; a `heatstream
worker` process publishes its health samples to the health topic every second;
the sink lands them in `pipeline_health` with component `worker`. The worker's
counters there must equal what the raw topic holds, read independently.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from heatstream.ingest.simulator import SimConfig, Simulation
from heatstream.ingest.simulator.publish import Publisher, PublishOptions
from heatstream.inventory import inventory_toml
from heatstream.schemas import topics
from heatstream.schemas.serde import decode_raw
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.settings import Settings
from heatstream.sinks.consumer import build_sink
from heatstream.sinks.options import SinkOptions
from heatstream.stack import EmbeddedStack
from heatstream.stack.provision import create_database, create_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 2
FAST = SinkOptions(
    flush_interval_s=0.2, health_interval_s=0.5, session_timeout_s=6, batch_size=200, downsample_s=0
)


def isolated(stack: EmbeddedStack, name: str) -> Settings:
    base = stack.settings
    settings = base.model_copy(
        update={
            "app_id": name,
            "kafka": base.kafka.model_copy(
                update={"topic_prefix": f"{name}.", "partitions": PARTITIONS}
            ),
            "influxdb": base.influxdb.model_copy(update={"database": name}),
        }
    )
    asyncio.run(create_topics(stack.bootstrap, settings.kafka))
    asyncio.run(create_database(stack.influx_url, name))
    return settings


def worker_env(settings: Settings, inventory: Path, process: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATSTREAM_")}
    env.update(
        {
            "HEATSTREAM_APP_ID": settings.app_id,
            "HEATSTREAM_INVENTORY": str(inventory),
            "HEATSTREAM_KAFKA__BOOTSTRAP": settings.kafka.bootstrap,
            "HEATSTREAM_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
            "HEATSTREAM_KAFKA__PARTITIONS": str(PARTITIONS),
            "HEATSTREAM_STREAMS__SESSION_TIMEOUT_S": "6",
            "HEATSTREAM_STREAMS__LIVENESS_CHECK_S": "0",  # simulated time, not the wall clock
            "HEATSTREAM_STREAMS__HEALTH_INTERVAL_S": "1",
            "HEATSTREAM_STREAMS__PROCESS_NAME": process,
        }
    )
    return env


async def raw_totals(settings: Settings) -> dict[str, int]:
    """What the raw topic holds, read back and decoded: the reference numbers."""
    name = topics.topic_name(topics.RAW_EVENTS, settings.kafka.topic_prefix)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 * 2**20,
    )
    await consumer.start()
    out = {"messages": 0, "frames": 0, "readings": 0, "compute_events": 0, "partitions": 0}
    try:
        parts = [TopicPartition(name, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=300)
            idle = 0 if batch else idle + 1
            for tp, records in batch.items():
                out["partitions"] |= 1 << tp.partition  # a bit per partition with records
                for record in records:
                    event = decode_raw(record.value)
                    out["messages"] += 1
                    if isinstance(event, TelemetryFrame):
                        out["frames"] += 1
                        out["readings"] += event.n_readings
                    else:
                        out["compute_events"] += 1
    finally:
        await consumer.stop()
    return out


def influx_rows(settings: Settings, query: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{settings.influxdb.url}/query",
        params={"db": settings.influxdb.database, "q": query, "epoch": "ms"},
        timeout=10,
    )
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, result
    return [
        dict(zip(series["columns"], row, strict=True))
        for series in result.get("series", [])
        for row in series["values"]
    ]


def test_the_worker_reports_exactly_what_it_processed(
    stack: EmbeddedStack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    name = unique_name("health")
    settings = isolated(stack, name)
    sim = Simulation(SimConfig(boilers=4, sites=2, duration_ms=5 * 60_000, seed=3))
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(inventory_toml(sim.inventory))
    process = f"worker-{name[-8:]}"
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "heatstream", "worker", "--datadir", str(tmp_path / "state")],
        env=worker_env(settings, inventory, process),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    latest = f"""SELECT "readings", "consumer_lag" FROM "pipeline_health"
                 WHERE "component" = 'worker' AND "process" = '{process}'
                 ORDER BY time DESC LIMIT 1"""

    async def run() -> dict[str, int]:
        raw_topic = topics.topic_name(topics.RAW_EVENTS, settings.kafka.topic_prefix)
        report = await Publisher(sim, settings.kafka, PublishOptions(topic=raw_topic)).run()
        assert report.sent == report.accepted > 0
        sent = await raw_totals(settings)
        stop = asyncio.Event()
        sink = asyncio.create_task(build_sink(settings, FAST).run(stop))
        deadline = time.monotonic() + 90
        try:
            while time.monotonic() < deadline:
                rows = await asyncio.to_thread(influx_rows, settings, latest)
                if rows and (rows[0]["readings"], rows[0]["consumer_lag"]) == (
                    sent["readings"],
                    0,  # caught up, and its offsets committed
                ):
                    break
                assert worker.poll() is None, log.read_text()[-3000:]
                await asyncio.sleep(0.5)
        finally:
            stop.set()
            await asyncio.wait_for(sink, 30)
        return sent

    try:
        sent = asyncio.run(run())
        # Every thread (Faust's, aiokafka's, RocksDB's) at streams.nice, 10 by default.
        threads = thread_nice_values(worker.pid)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

    points = influx_rows(
        settings,
        f"""SELECT * FROM "pipeline_health" WHERE "component" = 'worker'
            AND "process" = '{process}' ORDER BY time""",
    )
    assert points, log.read_text()[-3000:]
    last = points[-1]
    assert last["readings"] == sent["readings"] > 0, log.read_text()[-3000:]
    assert (last["messages"], last["frames"], last["compute_events"]) == (
        sent["messages"],
        sent["frames"],
        sent["compute_events"],
    )
    assert last["dead_letters"] == last["late_events"] == last["duplicates"] == 0
    assert last["windows"] > 0  # 4 boilers x 5 one-minute windows, the last ones still open
    # Cumulative: never going down, from one process start.
    for field in ("messages", "frames", "readings", "windows"):
        values = [p[field] for p in points]
        assert values == sorted(values), field
    assert len({p["started_ms"] for p in points}) == 1
    assert all(0.5 <= p["interval_s"] <= 3.0 for p in points[1:])
    # Caught up: nothing left behind on the raw partitions it consumes.
    assert last["consumer_lag"] == 0
    assert {k for k in last if k.startswith("consumer_lag_p") and last[k] is not None} == {
        f"consumer_lag_p{p}" for p in range(PARTITIONS) if sent["partitions"] >> p & 1
    }
    latencies = [p["processing_latency_ms"] for p in points if p["processing_latency_ms"]]
    worst = max(p["processing_latency_max_ms"] or 0 for p in points)
    assert latencies and 0 < max(latencies) <= worst < 30_000
    # The sink's own points stay apart, under component 'sink'.
    sink_points = influx_rows(
        settings, """SELECT count("messages") FROM "pipeline_health" WHERE "component" = 'sink'"""
    )
    assert sink_points and sink_points[0]["count"] >= 1
    expected = max(10, os.getpriority(os.PRIO_PROCESS, 0))  # raised, never lowered
    assert len(threads) > 1 and set(threads.values()) == {expected}, threads


def thread_nice_values(pid: int) -> dict[int, int]:
    """Thread id -> nice value (field 19 of /proc/PID/task/TID/stat)."""
    values = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        values[int(task.name)] = int(stat[stat.rindex(")") + 2 :].split()[16])
    return values
