"""The example in docs/gateway-sdk.md runs as printed, against a real broker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from heatstream.schemas.serde import decode_raw
from heatstream.schemas.telemetry import TelemetryFrame
from tests.integration.gateway_support import read_topic

pytestmark = pytest.mark.integration

DOC = Path(__file__).parents[2] / "docs" / "gateway-sdk.md"


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, f"no python example in {DOC}"
    return blocks[0]


async def test_the_documented_example_runs(stack, unique_name, tmp_path: Path) -> None:
    prefix = unique_name("docs") + "."  # its own topic, out of the way of other tests
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATSTREAM_")}
    env |= {
        "HEATSTREAM_KAFKA__BOOTSTRAP": stack.bootstrap,
        "HEATSTREAM_KAFKA__TOPIC_PREFIX": prefix,
    }
    script = tmp_path / "example.py"
    script.write_text(_example(), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert b"job event seq=" in done.stdout and b"dropped=0" in done.stdout
    assert (tmp_path / "gateway-state" / "gw-01.spool.sqlite3").is_file()

    records = await read_topic(stack.bootstrap, f"{prefix}heatstream.raw.events", until=2)
    events = [decode_raw(r.value) for r in records]
    frames = [e for e in events if isinstance(e, TelemetryFrame)]
    assert sum(f.n_samples for f in frames) == 100
    assert [e.schema_name for e in events if not isinstance(e, TelemetryFrame)] == [
        "compute.job_started"
    ]
    assert sorted(e.seq for e in events) == list(range(len(events)))
