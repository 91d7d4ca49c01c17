"""A Faust app of one table, for test_faust_recovery.py: it restores the table from
an existing changelog (in-memory store: nothing on disk, like an empty data
directory), then writes what it holds to a JSON file once a second.

    python -m tests.integration.recovery_child BOOTSTRAP APP_ID OUT.json DATADIR fixed|shipped

`fixed` applies `fix_recovery_ends` (as the worker does), `shipped` leaves Faust as is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import faust

from heatstream.settings import KafkaSettings
from heatstream.streams.faust_fixes import fix_recovery_ends

TABLE = "t"  # its changelog: "<app id>-t-changelog", one partition


def build(bootstrap: str, app_id: str, out: Path, datadir: str, fixed: bool) -> faust.App:
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=datadir,
        web_enabled=False,
        topic_partitions=1,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6,
        broker_heartbeat_interval=1.2,
    )
    if fixed:
        fix_recovery_ends(app, KafkaSettings(bootstrap=bootstrap))
    source = app.topic(f"{app_id}-source", key_type=bytes, value_type=bytes, partitions=1)
    table = app.Table(TABLE, default=None, key_type=bytes, value_type=bytes, partitions=1)

    @app.agent(source)
    async def idle(stream: Any) -> None:  # a source topic, so that the table is assigned
        async for _ in stream:
            pass

    @app.timer(1.0)  # timers start once recovery is complete
    async def dump() -> None:
        held = {k.decode(): v.decode() for k, v in table.items()}
        part = out.with_suffix(".part")
        part.write_text(json.dumps(held))
        part.replace(out)

    return app


if __name__ == "__main__":
    bootstrap, app_id, out, datadir, mode = sys.argv[1:6]
    app = build(bootstrap, app_id, Path(out), datadir, fixed=mode == "fixed")
    sys.argv = [sys.argv[0], "worker", "--loglevel", "info"]
    app.main()
