"""Child processes of the harness: heatstream worker and sink, their memory and CPU.

Every process started here is tracked in `Children` and stopped by its pid
(SIGTERM, then SIGKILL) when the benchmark ends, even on error.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
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
        """A worker on an empty `datadir`. The embedded broker keeps its log in memory, so
        table databases left there by an earlier run with the same --workdir hold
        offsets this broker never had, and Faust would stop with a ConsistencyError."""
        shutil.rmtree(datadir, ignore_errors=True)
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


class CpuSampler:
    """The CPU of some processes over time: `cpu_s` of each, every `period_s`, read by
    a thread (reading /proc costs ~20 us a process), from `start` to `stop`."""

    def __init__(self, pids: dict[str, int], period_s: float = 1.0) -> None:
        self.pids = pids
        self.period_s = period_s
        self.samples: list[tuple[float, dict[str, float]]] = []  # (epoch s, CPU s by name)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _sample(self) -> None:
        # A process that has exited keeps the CPU it had (cpu_s of a gone pid reads 0).
        last = self.samples[-1][1] if self.samples else {}
        now = {name: cpu_s(pid) for name, pid in self.pids.items()}
        self.samples.append(
            (time.time(), {name: max(c, last.get(name, 0.0)) for name, c in now.items()})
        )

    def _run(self) -> None:
        self._sample()
        while not self._stop.wait(self.period_s):
            self._sample()

    def start(self) -> CpuSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def cores(self, since: float, until: float) -> dict[str, float]:
        """Mean cores each process used between two epoch times (the samples nearest
        inside them; {} if fewer than two fall inside)."""
        inside = [(t, cpu) for t, cpu in self.samples if since <= t <= until]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return {}
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return {name: (c1[name] - c0[name]) / (t1 - t0) for name in self.pids}

    def save(self, path: Path) -> None:
        """Cores used by each process in each interval, as CSV (time at its end)."""
        names = list(self.pids)
        rows = ["t_s," + ",".join(names)]
        for (ta, ca), (tb, cb) in zip(self.samples, self.samples[1:], strict=False):
            if tb > ta:
                used = ",".join(f"{(cb[n] - ca[n]) / (tb - ta):.3f}" for n in names)
                rows.append(f"{tb:.3f},{used}")
        path.write_text("\n".join(rows) + "\n")
