"""`heatstream sink` command line: help, options, refusals (no servers)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from heatstream.settings import load_settings
from heatstream.sinks.cli import sink
from heatstream.sinks.options import SinkOptions

# A root like heatstream's own (which builds the settings), without touching the global app.
app = typer.Typer()


@app.callback()
def _root(ctx: typer.Context) -> None:
    ctx.obj = load_settings()


app.command("sink")(sink)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_help_says_what_it_reads_and_where_it_writes(runner: CliRunner) -> None:
    result = runner.invoke(app, ["sink", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for words in ("derived topics", "raw telemetry", "InfluxDB", "/write", "v2", "--downsample"):
        assert words in text


def test_invalid_options_stop_before_connecting(runner: CliRunner) -> None:
    result = runner.invoke(app, ["sink", "--batch-size", "10", "--max-in-flight", "5"])
    assert result.exit_code == 2
    assert "max_in_flight_points" in result.output


def test_options_refuse_inconsistent_values() -> None:
    with pytest.raises(ValueError, match="idle_close_s"):
        SinkOptions(downsample_s=60, lateness_s=30, idle_close_s=60)
    assert not SinkOptions(downsample_s=0).downsampling
