"""The benchmark harness runs end to end and reports its figures (never their values).

`python -m benchmarks --quick --json FILE` from the repository root, in a
subprocess, exactly as CI runs it. It starts its own embedded stack, worker
and sink, so it is marked integration and slow despite living beside the
unit tests (the harness is part of no installed package). No timing is
asserted: a figure must exist and be a positive number, that is all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.latency import start_at

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]

THROUGHPUT = [
    "decode_readings_per_s",
    "windows_readings_per_s",
    "detectors_readings_per_s",
    "processor_readings_per_s",
    "worker_core_readings_per_s",
    "state_export_readings_per_s",
    "sink_downsample_readings_per_s",
    "aiokafka_consume_readings_per_s",
    "worker_readings_per_s",
    "replay_readings_per_s",
    "replay_worker_sink_readings_per_s",
    "frame_reading_processor_readings_per_s",
    "frame_boiler_1s_processor_readings_per_s",
    "frame_gateway_1s_processor_readings_per_s",
    "frame_gateway_10s_processor_readings_per_s",
]
OTHER = [
    "lineprotocol_points_per_s",
    "influx_write_ceiling_points_per_s",
    "influx_write_points_per_s",
    "worker_rss_mb",
    "table_recovery_s",
    "restart_to_resumed_s",
    "live_telemetry_latency_p50_ms",
    "live_telemetry_latency_p99_ms",
    "replay_speed_x",
    "state_bytes_per_message",
]


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert out.exists(), f"no JSON written (exit {done.returncode}):\n{done.stderr[-4000:]}"
    data = json.loads(out.read_text())
    assert isinstance(data, dict)
    return data


def test_quick_run_reports_no_error(figures: dict[str, object]) -> None:
    meta = figures["meta"]
    assert isinstance(meta, dict)
    assert meta["mode"] == "quick"
    assert meta["errors"] == {}


def test_the_machine_speed_is_gauged_at_both_ends_of_the_run(figures: dict[str, object]) -> None:
    meta = figures["meta"]
    assert isinstance(meta, dict)
    gauge = meta["speed_gauge"]
    for when in ("at_start", "at_end"):
        assert isinstance(gauge[when], int) and gauge[when] > 0, (when, gauge)


@pytest.mark.parametrize("key", THROUGHPUT + OTHER)
def test_figure_is_a_positive_number(figures: dict[str, object], key: str) -> None:
    value = figures.get(key)
    assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
    assert value > 0, (key, value)


def test_throughput_keys_are_named_per_reading(figures: dict[str, object]) -> None:
    rates = [k for k in figures if k.endswith("_per_s") and not k.endswith("_vs_ceiling")]
    assert set(THROUGHPUT) <= set(rates)
    assert all(
        k.endswith(("_readings_per_s", "_points_per_s", "_messages_per_s")) for k in rates
    ), rates


def test_stages_are_compared_with_ceilings_from_the_same_run(figures: dict[str, object]) -> None:
    meta = figures["meta"]
    assert isinstance(meta, dict)
    assert meta["ceilings"]["processor_readings_per_s"] == "aiokafka_consume_readings_per_s"
    assert meta["ceilings"]["influx_write_points_per_s"] == "influx_write_ceiling_points_per_s"
    for key in ("processor_readings_per_s", "influx_write_points_per_s"):
        ratio = figures[f"{key}_vs_ceiling"]
        assert isinstance(ratio, float) and ratio > 0


@given(st.floats(0, 4e9), st.none() | st.integers(0, 59))
def test_live_runs_start_at_the_chosen_second(now: float, second: int | None) -> None:
    start = start_at(now, second) / 1000
    assert start == int(start) and now + 2.0 <= start
    if second is None:
        assert start <= now + 4.0
    else:
        assert start % 60 == second and start < now + 2.0 + 61
