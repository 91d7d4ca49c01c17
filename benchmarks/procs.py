"""Child processes of the harness: heatstream worker and sink, their memory and CPU.

Every process started here is tracked in `Children` and stopped by its pid
(SIGTERM, then SIGKILL) when the benchmark ends, even on error.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from heatstream.inventory import Inventory, inventory_toml

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Deployment:
    """Settings of one isolated heatstream deployment on the embedded broker."""

    bootstrap: str
    prefix: str  # topic prefix; also the app id
    partitions: int
    inventory: Inventory
    workdir: Path
    influx_url: str | None = None
    database: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def app_id(self) -> str:
        return self.prefix.rstrip(".")

    def env(self) -> dict[str, str]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        inventory = self.workdir / "inventory.toml"
        inventory.write_text(inventory_toml(self.inventory))
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEATSTREAM_")}
        env.update(
            {
                "HEATSTREAM_KAFKA__BOOTSTRAP": self.bootstrap,
                "HEATSTREAM_KAFKA__TOPIC_PREFIX": self.prefix,
                "HEATSTREAM_KAFKA__PARTITIONS": str(self.partitions),
                "HEATSTREAM_APP_ID": self.app_id,
                "HEATSTREAM_INVENTORY": str(inventory),
                "HEATSTREAM_STREAMS__SESSION_TIMEOUT_S": "6",
                "HEATSTREAM_STACK__DATA_DIR": str(self.workdir / "stack"),
            }
        )
        if self.influx_url is not None:
            env["HEATSTREAM_INFLUXDB__URL"] = self.influx_url
            env["HEATSTREAM_INFLUXDB__API"] = "v1"
        if self.database is not None:
            env["HEATSTREAM_INFLUXDB__DATABASE"] = self.database
        env.update(self.extra_env)
        return env


class Children:
    """The processes this harness started; `stop_all` ends each by its own pid."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            argv, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def worker(self, dep: Deployment, datadir: Path, log: Path) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-m",
            "heatstream",
            "worker",
            "--datadir",
            str(datadir),
            "--loglevel",
            "info",
        ]
        return self.start(argv, dep.env(), log)

    def sink(self, dep: Deployment, log: Path, *args: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "heatstream", "sink", "--loglevel", "warning", *args]
        return self.start(argv, dep.env(), log)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        self.procs.clear()


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MiB (psutil is not a dependency: /proc)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) / 1024 if match else 0.0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


_LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def log_times(log: Path, text: str, after: float = 0.0) -> list[float]:
    """Epoch seconds of the Faust log lines containing `text` (logged at or after `after`)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if text in line:
            m = _LOG_TIME.match(line)
            if m:
                t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                if t >= after:
                    found.append(t)
    return found


def wait_until(predicate: object, timeout_s: float, poll_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(poll_s)
    return False
