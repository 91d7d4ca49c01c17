"""Renderers of the monthly report (md, html, pdf) on a hand-built ReportData: no database."""

from __future__ import annotations

import base64
import re

import pytest

from heatstream.report import figures
from heatstream.report.model import (
    Alert,
    BoilerFigures,
    Day,
    QualityCount,
    Query,
    ReportData,
    SiteInfo,
)
from heatstream.report.plots import daily_png
from heatstream.report.render_html import render_html
from heatstream.report.render_md import render_md
from heatstream.report.render_pdf import render_pdf

JAN = 1_767_225_600_000  # 2026-01-01T00:00Z
FEB = 1_769_904_000_000
DAY = 86_400_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sample(**changes: object) -> ReportData:
    days = tuple(
        Day(
            date=f"2026-01-{i + 1:02d}",
            windows=2880 if 2 <= i <= 4 else 0,
            heat_kwh=1234.5 + i if 2 <= i <= 4 else 0.0,
            total_kwh=1500.0 if 2 <= i <= 4 else 0.0,
            co2_avoided_kg=311.4 if 2 <= i <= 4 else 0.0,
            coverage=0.97 if 2 <= i <= 4 else 0.0,
            supply_temp_c=64.2 if 2 <= i <= 4 else None,
            return_temp_c=44.9 if 2 <= i <= 4 else None,
        )
        for i in range(31)
    )
    data = ReportData(
        site=SiteInfo(
            id="pool-lyon",
            name="Piscine municipale, Lyon 7e",
            kind="swimming_pool",
            timezone="Europe/Paris",
            heat_source="gas_boiler",
            efficiency=0.9,
            emission_factor_kg_per_kwh=0.227,
            factor_source="ADEME Base Empreinte: natural gas | combustion and upstream",
        ),
        month="2026-01",
        start_ms=JAN,
        end_ms=FEB,
        period_end_ms=FEB,
        generated_ms=FEB + 3 * DAY,
        source="InfluxDB http://127.0.0.1:8086, database 'heatstream'",
        inventory="/etc/heatstream/inventory.toml",
        boilers=(
            BoilerFigures(
                boiler="boiler-lyon-01",
                windows=4320,
                heat_kwh=1900.0,
                total_kwh=2250.0,
                coverage=0.0939,
                downtime_h=672.5,
            ),
            BoilerFigures(
                boiler="boiler-lyon-02",
                windows=4320,
                heat_kwh=1806.5,
                total_kwh=2250.0,
                coverage=0.0939,
                downtime_h=673.0,
            ),
        ),
        boilers_without_data=("boiler-lyon-03",),
        days=days,
        windows=8640,
        heat_kwh=3706.5,
        it_kwh=4300.0,
        aux_kwh=200.0,
        total_kwh=4500.0,
        erf=3706.5 / 4500.0,
        heat_positive_kwh=3710.0,
        supply_temp_c=64.2,
        return_temp_c=44.9,
        temp_covered_minutes=8380.8,
        co2_avoided_kg=935.7,
        co2_derived_kg=935.7,
        co2_agrees=True,
        co2_implied_factor=0.227,
        boiler_minutes=2 * 44640,
        coverage=0.0939,
        downtime_h=1345.5,
        alerts=(
            Alert(
                measurement="anomaly",
                kind="efficiency_drop",
                boiler="boiler-lyon-01",
                severity="warning",
                start_ms=JAN + 3 * DAY,
                end_ms=JAN + 3 * DAY + 7_200_000,
                reason="recovery 12 % below baseline <fouling?>",
            ),
            Alert(
                measurement="leak",
                kind="leak",
                boiler="boiler-lyon-02",
                severity="critical",
                start_ms=JAN + 4 * DAY,
                end_ms=None,
                reason="make-up water flowing",
                detail="evidence: makeup_water; est. 0.80 L/min",
            ),
        ),
        quality=(
            QualityCount(kind="out_of_range", issues=3, count=17),
            QualityCount(kind="sequence_gap", issues=1, count=4),
        ),
        queries=(Query(purpose="Month totals", text='SELECT sum("heat_kwh") FROM "heat_window"'),),
    )
    return data.model_copy(update=changes) if changes else data


@pytest.fixture(scope="module")
def png() -> bytes:
    return daily_png(sample())


def test_plot_is_a_png(png: bytes) -> None:
    assert png.startswith(PNG_MAGIC)
    assert len(png) > 5_000


def test_markdown_states_figures_how_and_queries(png: bytes) -> None:
    md = render_md(sample(), png=png)
    for text in (
        "3,706.5 kWh",
        "4,500.0 kWh",
        "0.824",
        "64.2 °C",
        "44.9 °C",
        "935.7 kg CO2e",
        "9.4 %",
        "1,345.5 h",
        "0.227 kg CO2e/kWh",
        "ADEME Base Empreinte",
        "Europe/Paris",
        "UTC calendar month",
        "ISO/IEC 30134-6",
        "efficiency_drop",
        "open at month end",
        "out_of_range",
        "boiler-lyon-03",
        "## Appendix",
        'SELECT sum("heat_kwh") FROM "heat_window"',
    ):
        assert text in md, text
    # every figure row carries its "how" note
    for fig in figures.figures(sample()):
        assert fig.how.replace("|", "\\|") in md
    # a pipe in free text does not break the table
    assert "natural gas \\| combustion" in md
    uri = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", md)
    assert uri and base64.b64decode(uri.group(1)) == png


def test_html_is_self_contained_and_escaped(png: bytes) -> None:
    html = render_html(sample(), png=png)
    assert html.startswith("<!DOCTYPE html>")
    assert "<fouling?>" not in html and "&lt;fouling?&gt;" in html
    src = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert src and base64.b64decode(src.group(1)).startswith(PNG_MAGIC)
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing fetched from elsewhere
    for text in ("3,706.5 kWh", "0.824", "935.7 kg CO2e", "Appendix", "Europe/Paris"):
        assert text in html


def test_pdf_has_several_pages_and_the_metadata() -> None:
    pdf = render_pdf(sample())
    assert pdf.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page\b", pdf))
    assert pages >= 3
    assert b"heatstream report" in pdf


def test_co2_disagreement_is_a_warning_in_every_format(png: bytes) -> None:
    bad = sample(co2_agrees=False, co2_derived_kg=1100.0, co2_implied_factor=0.193)
    assert "Warning" in render_md(bad, png=png)
    assert "Warning" in render_html(bad, png=png)
    assert "DOES NOT AGREE" in render_md(bad, png=png)
    assert "Warning" not in render_md(sample(), png=png)


def test_month_to_date_and_empty_sections(png: bytes) -> None:
    partial = sample(period_end_ms=JAN + 10 * DAY, alerts=(), quality=())
    md = render_md(partial, png=png)
    assert "month not over" in md
    assert "No alert overlaps the month." in md
    assert "No data-quality issue" in md
    assert "no data" in md  # days without any window are not shown as zeros
