"""`heatstream.report.data` without a database: month bounds, assembly from canned series."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from heatstream.influxql import Series
from heatstream.inventory import load_inventory
from heatstream.report.data import (
    NoDataError,
    ReportError,
    _literal,
    build_report,
    month_bounds,
)
from heatstream.settings import InfluxSettings

JAN = 1_767_225_600_000  # 2026-01-01T00:00Z
FEB = 1_769_904_000_000
DAY = 86_400_000
INFLUX = InfluxSettings(url="http://influx.invalid:8086", database="heatstream")


def test_month_bounds_are_utc_calendar_months() -> None:
    assert month_bounds("2026-01") == (JAN, FEB)
    start, end = month_bounds("2026-12")
    assert (end - start) // DAY == 31 and month_bounds("2027-01")[0] == end
    assert (month_bounds("2028-02")[1] - month_bounds("2028-02")[0]) // DAY == 29
    for bad in ("2026-13", "2026-00", "2026-1", "26-01", "2026/01", "january"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            month_bounds(bad)


def test_string_literals_are_escaped() -> None:
    assert _literal("pool-lyon") == "'pool-lyon'"
    assert _literal("a'b\\c") == "'a\\'b\\\\c'"


def fake_influx(
    *,
    site: str = "pool-lyon",
    heat: float = 90.0,
    co2: float = 22.7,
    days: int = 31,
    newest_ms: int | None = None,
) -> tuple[Callable[[str], list[Series]], list[str]]:
    """Canned answers keyed on what each statement selects; records the statements."""
    asked: list[str] = []

    def run(q: str) -> list[Series]:
        asked.append(q)
        if 'GROUP BY "site"' in q:
            return [Series("heat_window", {"site": site}, ["time", "windows"], [[0, 3]])]
        if q.startswith('SELECT last("heat_kwh")'):
            return [Series("heat_window", {}, ["time", "heat_kwh"], [[newest_ms, 1.0]])]
        if '"heat_kwh" > 0' in q:
            return [Series("heat_window", {}, ["time", "heat_kwh"], [[0, heat]])]
        if q.startswith('SELECT sum("heat_kwh") AS "heat_kwh", sum("it_kwh")'):
            cols = [
                "time",
                "heat_kwh",
                "it_kwh",
                "aux_kwh",
                "total_kwh",
                "co2_avoided_kg",
                "windows",
            ]
            return [Series("heat_window", {}, cols, [[0, heat, 100.0, 20.0, 120.0, co2, 3]])]
        if '"coverage" >= 0.5' in q:
            return [
                Series("heat_window", {"boiler": "boiler-lyon-01"}, ["time", "minutes"], [[0, 2]])
            ]
        if 'GROUP BY "boiler"' in q:
            cols = ["time", "windows", "coverage", "heat_kwh", "total_kwh"]
            return [
                Series(
                    "heat_window", {"boiler": "boiler-lyon-01"}, cols, [[0, 3, 2.5, heat, 120.0]]
                )
            ]
        if "FROM (SELECT" in q:
            cols = ["time", "supply_weighted", "supply_weight", "return_weighted", "return_weight"]
            rows: list[list[float]] = [[JAN + i * DAY, 0, 0, 0, 0] for i in range(days)]
            rows[2] = [JAN + 2 * DAY, 130.0, 2.0, 90.0, 2.0]
            return [Series("heat_window", {}, cols, rows)]
        if "GROUP BY time(1d)" in q:
            cols = ["time", "heat_kwh", "total_kwh", "co2_avoided_kg", "coverage", "windows"]
            rows = [[JAN + i * DAY, 0.0, 0.0, 0.0, 0.0, 0] for i in range(days)]
            rows[2] = [JAN + 2 * DAY, heat, 120.0, co2, 2.5, 3]
            return [Series("heat_window", {}, cols, rows)]
        return []  # no alerts, no data-quality issues

    return run, asked


def test_assembles_the_figures_of_a_complete_month() -> None:
    run, asked = fake_influx()
    d = build_report(
        INFLUX, "pool-lyon", "2026-01", load_inventory(), "example", now_ms=FEB + DAY, run=run
    )
    assert d.complete and d.period_end_ms == FEB
    assert not any("last(" in q for q in asked)  # only asked for a month still running
    assert [q.text for q in d.queries] == asked
    assert d.heat_kwh == 90.0 and d.total_kwh == 120.0 and d.erf == 0.75
    assert d.co2_derived_kg == pytest.approx(90.0 / 0.9 * 0.227)
    assert d.co2_agrees
    assert d.supply_temp_c == 65.0 and d.return_temp_c == 45.0
    assert d.boiler_minutes == 31 * 1440
    assert d.coverage == pytest.approx(2.5 / (31 * 1440))
    assert d.downtime_h == pytest.approx((31 * 1440 - 2) / 60)
    assert d.boilers_without_data == ("boiler-lyon-02",)
    assert d.days[2].supply_temp_c == 65.0 and d.days[0].supply_temp_c is None
    assert d.site.timezone == "Europe/Paris" and "ADEME" in d.site.factor_source
    assert "influx.invalid" in d.source


def test_a_month_still_running_counts_minutes_up_to_now() -> None:
    now = JAN + 10 * DAY + 123_456
    run, asked = fake_influx(newest_ms=JAN + 5 * DAY)
    d = build_report(
        INFLUX, "pool-lyon", "2026-01", load_inventory(), "example", now_ms=now, run=run
    )
    assert not d.complete
    assert d.period_end_ms == JAN + 10 * DAY + 120_000  # now, to the minute
    assert d.boiler_minutes == 10 * 1440 + 2
    assert any("last(" in q for q in asked)


def test_data_ahead_of_the_clock_extends_the_period() -> None:
    run, _ = fake_influx(newest_ms=JAN + 20 * DAY)
    d = build_report(
        INFLUX, "pool-lyon", "2026-01", load_inventory(), "example", now_ms=JAN - DAY, run=run
    )
    assert d.period_end_ms == JAN + 20 * DAY + 60_000


def test_co2_from_another_factor_is_flagged() -> None:
    run, _ = fake_influx(co2=30.0)
    d = build_report(
        INFLUX, "pool-lyon", "2026-01", load_inventory(), "example", now_ms=FEB, run=run
    )
    assert not d.co2_agrees
    assert d.co2_implied_factor == pytest.approx(30.0 * 0.9 / 90.0)


def test_site_without_data_or_without_inventory_entry() -> None:
    run, _ = fake_influx(site="res-nantes")
    with pytest.raises(NoDataError) as err:
        build_report(INFLUX, "pool-lyon", "2026-01", load_inventory(), "example", run=run)
    assert str(err.value) == (
        "no heat_window data for site 'pool-lyon' in 2026-01 (UTC calendar month); "
        "sites with data in 2026-01: res-nantes"
    )
    run, _ = fake_influx(site="site-01")
    with pytest.raises(ReportError, match="'site-01' is not in the inventory example"):
        build_report(INFLUX, "site-01", "2026-01", load_inventory(), "example", run=run)
