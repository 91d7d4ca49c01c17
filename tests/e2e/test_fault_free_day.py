"""A healthy fleet for a simulated day raises no alert (DESIGN.md: alerts must not flap).

Warm loops through a winter day with job arrivals, throttling and normal pressure
swings, through the whole pipeline. Nothing may fire, nothing may be refused,
and every closed window's heat must match the simulator's own physics.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_pipeline import _env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_a_healthy_fleet_day_raises_no_alert(tmp_path: Path) -> None:
    env = _env(tmp_path / "stack")
    summary_path = tmp_path / "summary.json"
    cmd = [
        sys.executable, "-m", "heatstream", "up", "--boilers", "6", "--sites", "3",
        "--duration", "1d", "--faults", "none", "--seed", "3",
        "--summary-json", str(summary_path), "--timeout", "300",
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    finally:
        subprocess.run(
            [sys.executable, "-m", "heatstream", "stack", "down", "--purge"],
            env=env, capture_output=True, timeout=120,
        )  # fmt: skip
    summary = json.loads(summary_path.read_text())
    assert summary["alerts"] == []
    assert summary["dead_letters"] == 0 and summary["late_events"] == 0
    assert len(summary["sites"]) == 3
    for site, row in summary["sites"].items():
        # All but the last minute of the day are closed windows.
        assert row["coverage"] == pytest.approx(1.0, abs=1e-6)
        assert row["windows"] == 2 * (24 * 60 - 1)
        assert row["heat_kwh"] == pytest.approx(summary["simulator"][site]["heat_kwh"], rel=2e-3)
