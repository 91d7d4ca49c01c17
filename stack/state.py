"""The state file that lets later `heatstream stack` invocations find the servers.

`stack up` exits while tansu and influxd keep running, so their pids, argv (to
recognise them despite pid reuse), ports and logs are written to a JSON file in
the data directory. A file lock serialises concurrent `up`/`down` on one directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from heatstream.stack.errors import StackError
from heatstream.stack.layout import StackLayout


class ServerRecord(BaseModel):
    """One server as started: how to recognise it and where it listens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pid: int
    argv: tuple[str, ...]
    log: Path
    host: str
    port: int


class StackState(BaseModel):
    """What `stack up` started."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    started_at: datetime
    kafka: ServerRecord
    influxdb: ServerRecord


def read_state(layout: StackLayout) -> StackState | None:
    """The recorded state, or None when no stack was started from this data dir."""
    try:
        text = layout.state_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return StackState.model_validate_json(text)
    except ValidationError as exc:
        raise StackError(
            f"state file {layout.state_file} is unreadable ({exc.error_count()} errors); "
            "stop any tansu/influxd it started by pid, then delete it"
        ) from exc


def write_state(layout: StackLayout, state: StackState) -> None:
    """Replace the state file atomically (a reader never sees half a file)."""
    tmp = layout.state_file.with_suffix(".json.tmp")
    tmp.write_text(state.model_dump_json(indent=2), encoding="utf-8")
    os.replace(tmp, layout.state_file)


def clear_state(layout: StackLayout) -> None:
    with contextlib.suppress(FileNotFoundError):
        layout.state_file.unlink()


@contextlib.contextmanager
def state_lock(layout: StackLayout) -> Iterator[None]:
    """Exclusive lock on the data directory for the duration of `up` or `down`."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with Path(layout.lock_file).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
