"""`heatstream sink` as a process: says where it reads and writes, lands points, stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from heatstream.schemas import topics
from heatstream.sinks.consumer import build_sink
from heatstream.stack import EmbeddedStack
from tests.integration.test_sink_influx import (
    committed_offsets,
    count,
    eventually,
    isolated,
    produce,
    window,
)

pytestmark = pytest.mark.integration


async def test_the_command_lands_points_and_exits_cleanly_on_ctrl_c(
    stack: EmbeddedStack, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("cli")
    settings = await isolated(stack, name)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "HEATSTREAM_APP_ID": name,
        "HEATSTREAM_KAFKA__BOOTSTRAP": stack.bootstrap,
        "HEATSTREAM_KAFKA__TOPIC_PREFIX": f"{name}.",
        "HEATSTREAM_INFLUXDB__URL": stack.influx_url,
        "HEATSTREAM_INFLUXDB__DATABASE": name,
    }
    env.pop("HEATSTREAM_CONFIG", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "heatstream",
            "sink",
            "--flush-interval",
            "0.2",
            "--session-timeout",
            "6",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
        assert first.startswith("heatstream sink: reading ")
        assert f"{name}.heatstream.derived.heat-windows" in first
        assert f"InfluxDB v1 API {stack.influx_url}/write db={name}" in first
        await produce(settings, topics.HEAT_WINDOWS, [window("b1", i, float(i)) for i in range(25)])

        async def landed() -> bool:
            return await count(settings, "heat_kwh", "heat_window") == 25

        await eventually(landed)
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.to_thread(process.communicate, timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "heatstream sink stopped: 25 messages read" in out
    sink = build_sink(settings)  # only for its group id
    assert await committed_offsets(sink, settings, topics.HEAT_WINDOWS) == 25
