"""The embedded stack is a real broker and a real InfluxDB, provisioned as configured.

These tests use the session `stack` fixture (started once) and, for the CLI, start
and stop their own detached stack through `python -m heatstream stack ...`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from heatstream.schemas.topics import TOPICS, topic_name
from heatstream.stack import EmbeddedStack

pytestmark = pytest.mark.integration


async def test_raw_bytes_round_trip_through_the_broker(stack: EmbeddedStack, unique_name) -> None:
    topic = unique_name("bytes")
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    sent = [(f"gw-{i % 3}".encode(), bytes([i, 0, 255]) + b"\x00frame" * i) for i in range(50)]

    producer = AIOKafkaProducer(
        bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=False
    )
    await producer.start()
    try:
        for key, value in sent:
            await producer.send(topic, value, key=key, headers=[("schema", b"raw.v1")])
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        received: list[Any] = []
        deadline = time.monotonic() + 15
        while len(received) < len(sent) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            received.extend(m for batch in batches.values() for m in batch)
    finally:
        await consumer.stop()

    assert [(m.key, m.value) for m in received] == sent
    assert [m.offset for m in received] == list(range(len(sent)))
    assert all(list(m.headers) == [("schema", b"raw.v1")] for m in received)


async def test_registry_topics_exist_with_their_partitions_and_configs(
    stack: EmbeddedStack,
) -> None:
    kafka = stack.settings.kafka
    names = {topic_name(spec, kafka.topic_prefix): spec for spec in TOPICS}
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
    finally:
        await admin.close()

    partitions = {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}
    assert partitions == {name: spec.partitions or kafka.partitions for name, spec in names.items()}
    configs = {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}
        for response in responses
        for resource in response.resources
    }
    for name, spec in names.items():
        assert configs[name]["retention.ms"] == str(spec.retention_ms), name
        assert configs[name]["cleanup.policy"] == spec.cleanup_policy, name


def test_provisioning_again_changes_nothing(stack: EmbeddedStack) -> None:
    again = stack.provision()

    assert again.created == ()
    assert len(again.existing) == len(TOPICS)


def test_status_reports_both_servers_healthy(stack: EmbeddedStack) -> None:
    status = stack.status()

    assert status.healthy, status.as_dict()
    assert status.as_dict()["kafka"]["bootstrap"] == stack.bootstrap
    assert status.as_dict()["influxdb"]["url"] == stack.influx_url


def test_influxd_runs_with_the_configured_go_gc_target(stack: EmbeddedStack) -> None:
    assert stack.influxdb is not None
    environ = Path(f"/proc/{stack.influxdb.pid}/environ").read_bytes().split(b"\0")

    assert f"GOGC={stack.settings.stack.influx_gogc}".encode() in environ
    assert stack.settings.stack.influx_gogc == 400  # the default: see StackSettings
    # The rest of the environment is inherited, not replaced.
    assert f"PATH={os.environ['PATH']}".encode() in environ


async def test_line_protocol_written_reads_back_exactly(stack: EmbeddedStack, unique_name) -> None:
    measurement = unique_name("heat")
    fields = "boiler, site, p_th_w, coverage, samples, ok, reason"
    lines = [
        f"{measurement},boiler=b-001,site=lyon-1 p_th_w=41234.5,coverage=0.98,samples=60i,"
        f'ok=true,reason="none" 1700000000000000000',
        f"{measurement},boiler=b-002,site=lyon-1 p_th_w=-0.125,coverage=1,samples=1i,"
        f'ok=false,reason="gap \\"5s\\"" 1700000060123456789',
    ]
    async with httpx.AsyncClient(base_url=stack.influx_url, timeout=10) as client:
        write = await client.post(
            "/write",
            params={"db": stack.database, "precision": "ns"},
            content="\n".join(lines).encode(),
        )
        assert write.status_code == 204, write.text
        query = await client.get(
            "/query",
            params={
                "db": stack.database,
                "epoch": "ns",
                "q": f'SELECT {fields} FROM "{measurement}"',
            },
        )
    series = query.json()["results"][0]["series"][0]

    assert series["columns"] == ["time", *fields.split(", ")]
    assert series["values"] == [
        [1700000000000000000, "b-001", "lyon-1", 41234.5, 0.98, 60, True, "none"],
        [1700000060123456789, "b-002", "lyon-1", -0.125, 1, 1, False, 'gap "5s"'],
    ]


# -- the CLI, as a user runs it ----------------------------------------------------


def _heatstream(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATSTREAM_")}
    env["HEATSTREAM_STACK__DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "heatstream", "stack", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _gone(pid: int) -> bool:
    """Exited: no such pid, or a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def _status(data_dir: Path) -> tuple[int, dict[str, Any]]:
    result = _heatstream(data_dir, "status", "--json")
    return result.returncode, json.loads(result.stdout)


@pytest.fixture
def cli_data_dir(tmp_path: Path):
    """A data directory for a CLI-started stack, brought down whatever the test did."""
    data_dir = tmp_path / "cli-stack"
    yield data_dir
    _heatstream(data_dir, "down")


def test_cli_up_status_down(cli_data_dir: Path) -> None:
    up = _heatstream(cli_data_dir, "up")
    assert up.returncode == 0, up.stderr
    code, status = _status(cli_data_dir)
    assert code == 0, status
    assert status["kafka"]["healthy"] is True
    assert status["influxdb"]["healthy"] is True
    assert status["influxdb"]["database"] == "heatstream"
    assert status["influxdb"]["url"].startswith("http://127.0.0.1:")
    host, port = status["kafka"]["bootstrap"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    assert f"HEATSTREAM_KAFKA__BOOTSTRAP={status['kafka']['bootstrap']}" in up.stdout
    assert f"HEATSTREAM_INFLUXDB__URL={status['influxdb']['url']}" in up.stdout
    assert str(cli_data_dir) in up.stdout

    again = _heatstream(cli_data_dir, "up")
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stdout
    assert _status(cli_data_dir)[1]["kafka"]["pid"] == status["kafka"]["pid"]

    down = _heatstream(cli_data_dir, "down")
    assert down.returncode == 0, down.stderr
    assert _gone(status["kafka"]["pid"])
    assert _gone(status["influxdb"]["pid"])
    code, after = _status(cli_data_dir)
    assert code != 0
    assert after["kafka"]["healthy"] is False and after["influxdb"]["healthy"] is False

    nothing = _heatstream(cli_data_dir, "down")
    assert nothing.returncode == 0, nothing.stderr
    assert "not running" in nothing.stdout


def test_cli_recovers_from_a_dead_server(cli_data_dir: Path) -> None:
    assert _heatstream(cli_data_dir, "up").returncode == 0
    _, before = _status(cli_data_dir)
    os.kill(before["kafka"]["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while not _gone(before["kafka"]["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)

    code, broken = _status(cli_data_dir)
    assert code != 0
    assert broken["kafka"]["running"] is False
    assert broken["influxdb"]["healthy"] is True

    restarted = _heatstream(cli_data_dir, "up")
    assert restarted.returncode == 0, restarted.stderr
    assert _gone(before["influxdb"]["pid"])
    code, after = _status(cli_data_dir)
    assert code == 0, after
    assert after["kafka"]["pid"] != before["kafka"]["pid"]
