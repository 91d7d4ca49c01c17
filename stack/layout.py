"""The files the embedded stack keeps under `settings.stack.data_dir`.

One place names them so that `stack up`, `stack status`, `stack down` (separate
processes) and the test fixtures agree on where state, logs and data live.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class StackLayout:
    """Paths under one data directory (absolute, so a later `cd` changes nothing)."""

    root: Path

    @classmethod
    def under(cls, data_dir: Path) -> StackLayout:
        return cls(data_dir.expanduser().resolve())

    @property
    def state_file(self) -> Path:
        """pids, ports and argv of the running servers (JSON)."""
        return self.root / "stack.json"

    @property
    def lock_file(self) -> Path:
        """Serialises `up` and `down` run concurrently on the same data directory."""
        return self.root / "stack.lock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def kafka_log(self) -> Path:
        return self.logs / "tansu.log"

    @property
    def influx_log(self) -> Path:
        return self.logs / "influxd.log"

    @property
    def influx_dir(self) -> Path:
        """InfluxDB's meta, data and WAL; survives `down` (Tansu keeps nothing on disk)."""
        return self.root / "influxdb"

    @property
    def influx_config(self) -> Path:
        return self.influx_dir / "influxdb.conf"

    def create(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.influx_dir.mkdir(parents=True, exist_ok=True)
