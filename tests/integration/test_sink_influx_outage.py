"""InfluxDB hangs, then dies, then comes back: no point lost, none duplicated.

The test starts its own influxd (the stack's config and process helpers) so it
can freeze it (SIGSTOP), kill it (SIGKILL) and restart it on the same data
directory and port, while the sink runs against the session broker.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from heatstream.schemas import topics
from heatstream.settings import Settings
from heatstream.sinks.consumer import build_sink
from heatstream.sinks.options import SinkOptions
from heatstream.stack import EmbeddedStack
from heatstream.stack.binaries import influxd_binary
from heatstream.stack.health import influx_ping
from heatstream.stack.influx_config import write_influx_config
from heatstream.stack.ports import free_port
from heatstream.stack.process import ServerProcess, spawn
from heatstream.stack.provision import create_database, create_topics
from tests.integration.test_sink_influx import (
    committed_offsets,
    count,
    eventually,
    produce,
    query,
    window,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow]


class OwnInflux:
    """An influxd of this test only, restartable on the same directory and port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port("127.0.0.1")
        self.config = write_influx_config(
            root / "influxdb.conf", root, "127.0.0.1", self.port, free_port("127.0.0.1")
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: ServerProcess | None = None

    def start(self) -> None:
        self.process = spawn(
            "influxd",
            [str(influxd_binary()), "-config", str(self.config)],
            self.root / "log",
            detach=False,
        )

    async def healthy(self) -> None:
        async def ping() -> bool:
            return (await influx_ping(self.url)).healthy

        await eventually(ping, 30)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process._signal(signum)

    def kill(self) -> None:
        assert self.process is not None
        self.signal(signal.SIGKILL)
        self.process.stop(grace_s=5)

    def stop(self) -> None:
        if self.process is not None:
            self.signal(signal.SIGCONT)
            self.process.stop(grace_s=5)


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[OwnInflux]:
    own = OwnInflux(tmp_path / "influx")
    own.start()
    try:
        yield own
    finally:
        own.stop()


async def test_influxdb_frozen_then_killed_then_restarted_loses_and_duplicates_nothing(
    stack: EmbeddedStack, influx: OwnInflux, unique_name: Callable[[str], str]
) -> None:
    await influx.healthy()
    name = unique_name("outage")
    base = stack.settings
    settings: Settings = base.model_copy(
        update={
            "app_id": name,
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"{name}.", "partitions": 2}),
            "influxdb": base.influxdb.model_copy(update={"url": influx.url, "database": name}),
        }
    )
    await create_topics(stack.bootstrap, settings.kafka)
    await create_database(influx.url, name)
    options = SinkOptions(
        batch_size=100,
        flush_interval_s=0.2,
        max_in_flight_points=500,
        max_records=100,
        backoff_initial_s=0.1,
        backoff_max_s=1.0,
        request_timeout_s=1.5,
        health_interval_s=0.5,
        session_timeout_s=6,
        downsample_s=0,
    )
    expected: dict[tuple[str, int], float] = {}

    def events(boilers: range, windows: range) -> list:
        batch = [window(f"b{b}", i, round(b + i / 7, 6)) for b in boilers for i in windows]
        expected.update({(w.boiler, w.window_start_ms): w.heat_kwh for w in batch})
        return batch

    sink = build_sink(settings, options)
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    try:

        async def landed(n: int) -> bool:
            return await count(settings, "heat_kwh", "heat_window") == n

        await produce(settings, topics.HEAT_WINDOWS, events(range(3), range(100)))
        await eventually(lambda: landed(300))

        # 1. InfluxDB hangs: writes time out and are retried.
        influx.signal(signal.SIGSTOP)
        await produce(settings, topics.HEAT_WINDOWS, events(range(3), range(100, 200)))
        await asyncio.sleep(4)
        assert sink.counters.retries > 0
        influx.signal(signal.SIGCONT)
        await eventually(lambda: landed(600))

        # 2. InfluxDB dies: the sink retries, and pauses consumption at its in-flight limit.
        influx.kill()
        await produce(settings, topics.HEAT_WINDOWS, events(range(3, 9), range(200)))
        deadline = time.monotonic() + 30
        while not sink.paused:
            assert time.monotonic() < deadline, "the sink never applied backpressure"
            await asyncio.sleep(0.1)
        await asyncio.sleep(3)
        assert sink.paused
        assert sink.in_flight_points <= options.max_in_flight_points + options.max_records + 10

        # 3. InfluxDB comes back on the same data directory and port.
        influx.start()
        await influx.healthy()
        await eventually(lambda: landed(len(expected)), 60)

        async def all_committed() -> bool:
            return await committed_offsets(sink, settings, topics.HEAT_WINDOWS) == len(expected)

        await eventually(all_committed)
        assert not sink.paused
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    rows = await query(settings, "SELECT heat_kwh, boiler FROM heat_window GROUP BY boiler")
    got = {(r[2], r[0]): r[1] for r in rows}
    assert len(rows) == len(expected) == 1800
    assert got == expected
