"""`heatstream report` command line: help and refusals that need no database."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from heatstream.report.cli import report
from heatstream.settings import load_settings

app = typer.Typer()


@app.callback()
def _root(ctx: typer.Context) -> None:
    ctx.obj = load_settings(influxdb={"url": "http://127.0.0.1:1"})


app.command("report")(report)


def test_help_answers_which_data_timezone_formats_and_factor() -> None:
    result = CliRunner().invoke(app, ["report", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for words in (
        "InfluxDB",
        "heat_window",
        "UTC calendar month",
        "time zone",
        "html",
        "md",
        "pdf",
        "emission_factor_kg_per_kwh",
        "factor_source",
        "--inventory",
        "HEATSTREAM_INVENTORY",
        "Exit status 2",
    ):
        assert words in text, words


def test_malformed_month_exits_2_before_any_query(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["report", "--site", "pool-lyon", "--month", "2026-1", "--output", str(tmp_path / "r.md")],
    )
    assert result.exit_code == 2
    assert "YYYY-MM" in result.output


def test_unreadable_inventory_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--site",
            "pool-lyon",
            "--month",
            "2026-01",
            "--inventory",
            str(tmp_path / "missing.toml"),
        ],
    )
    assert result.exit_code == 2
    assert "missing.toml" in result.output


def test_unreachable_influxdb_exits_1_and_says_what_to_set(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--site",
            "pool-lyon",
            "--month",
            "2026-01",
            "--output",
            str(tmp_path / "r.pdf"),
        ],
    )
    assert result.exit_code == 1
    assert "HEATSTREAM_INFLUXDB__URL" in result.output
    assert not (tmp_path / "r.pdf").exists()
