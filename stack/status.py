"""What `stack status` reports: per server, running and healthy, with the reason.

Plain data with a JSON form, so the CLI, tests and scripts (`status --json`) read
the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class ServerStatus:
    running: bool
    healthy: bool
    pid: int | None
    log: Path | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "running": self.running,
            "pid": self.pid,
            "log": None if self.log is None else str(self.log),
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class StackStatus:
    data_dir: Path
    bootstrap: str | None
    influx_url: str | None
    database: str
    kafka: ServerStatus
    influxdb: ServerStatus

    @property
    def healthy(self) -> bool:
        return self.kafka.healthy and self.influxdb.healthy

    @property
    def running(self) -> bool:
        return self.kafka.running or self.influxdb.running

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "data_dir": str(self.data_dir),
            "kafka": {"bootstrap": self.bootstrap, **self.kafka.as_dict()},
            "influxdb": {
                "url": self.influx_url,
                "database": self.database,
                **self.influxdb.as_dict(),
            },
        }


NOT_STARTED = ServerStatus(
    running=False,
    healthy=False,
    pid=None,
    log=None,
    detail="not running (no stack recorded in the data directory)",
)
