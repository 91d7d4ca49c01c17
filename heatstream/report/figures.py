"""The report's wording, shared by every renderer: figures, how each was computed, notes.

Renderers only lay these out (Markdown table, HTML table, PDF text page), so the
three formats say the same thing in the same words.
"""

from __future__ import annotations

from dataclasses import dataclass

from heatstream.report.data import DOWNTIME_BELOW
from heatstream.report.model import ReportData, iso

TITLE = "Monthly heat-reuse report"


@dataclass(frozen=True, slots=True)
class Figure:
    label: str
    value: str
    how: str


def kwh(x: float) -> str:
    return f"{x:,.1f} kWh"


def kg(x: float) -> str:
    return f"{x:,.1f} kg CO2e"


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def temp(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f} °C"


def ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def title(d: ReportData) -> str:
    return f"{TITLE}: {d.site.name} ({d.site.id}), {d.month}"


def period(d: ReportData) -> str:
    text = f"{iso(d.start_ms)} to {iso(d.end_ms)} (UTC calendar month)"
    if not d.complete:
        text += f"; month not over: figures to {iso(d.period_end_ms)}"
    return text


def header(d: ReportData) -> list[tuple[str, str]]:
    """Who and what the report is about, where its data comes from."""
    s = d.site
    return [
        ("Site", f"{s.name} ({s.id}), {s.kind.replace('_', ' ')}"),
        ("Period", period(d)),
        ("Site time zone", f"{s.timezone} (days in this report are UTC days)"),
        ("Boilers", ", ".join(b.boiler for b in d.boilers) or "none"),
        ("Displaced heat", f"{s.heat_source.replace('_', ' ')}, efficiency {s.efficiency:g}"),
        ("Emission factor", f"{s.emission_factor_kg_per_kwh:g} kg CO2e/kWh: {s.factor_source}"),
        ("Data", f"{d.source}; measurements heat_window (1m), anomaly, leak, data_quality"),
        ("Inventory", d.inventory),
        ("Generated", iso(d.generated_ms)),
    ]


def figures(d: ReportData) -> list[Figure]:
    """The month's figures, each with a one-line account of how it was computed."""
    s = d.site
    n_boilers = len(d.boilers)
    windows = (
        f"over the site's {d.windows:,} 1-minute heat_window points (resolution '1m') "
        f"of the month, {n_boilers} boiler(s)"
    )
    co2_check = (
        "agrees with the stored sum"
        if d.co2_agrees
        else "DOES NOT AGREE with the stored sum: the pipeline used another factor or "
        f"efficiency (the stored CO2 implies {ratio(d.co2_implied_factor)} kg/kWh at "
        f"efficiency {s.efficiency:g})"
    )
    return [
        Figure(
            "Heat delivered",
            kwh(d.heat_kwh),
            f"sum of heat_kwh {windows}; a window whose return was warmer than its "
            "supply counts negative",
        ),
        Figure("IT energy", kwh(d.it_kwh), f"sum of it_kwh {windows}"),
        Figure("Auxiliary energy", kwh(d.aux_kwh), f"sum of aux_kwh (pumps, fans) {windows}"),
        Figure("Total energy", kwh(d.total_kwh), f"sum of total_kwh (IT + auxiliary) {windows}"),
        Figure(
            "Energy Reuse Factor (ERF)",
            ratio(d.erf),
            f"heat delivered / total energy = {d.heat_kwh:,.3f} / {d.total_kwh:,.3f} kWh "
            "(ISO/IEC 30134-6), over the month, not a mean of daily ERFs",
        ),
        Figure(
            "Average waste-heat (supply) temperature",
            temp(d.supply_temp_c),
            "mean of each window's time-weighted supply_temp_c, weighted by its coverage "
            f"(covered time: {d.temp_covered_minutes:,.1f} minutes of windows that meter it)",
        ),
        Figure(
            "Average return temperature", temp(d.return_temp_c), "the same weighting, return_temp_c"
        ),
        Figure(
            "CO2 avoided",
            kg(d.co2_avoided_kg),
            f"sum of co2_avoided_kg {windows} (the pipeline computes each window as "
            "max(heat, 0) / efficiency x emission factor)",
        ),
        Figure(
            "CO2 avoided, re-derived",
            kg(d.co2_derived_kg),
            f"heat of the windows with heat > 0 ({d.heat_positive_kwh:,.3f} kWh) / "
            f"efficiency {s.efficiency:g} x {s.emission_factor_kg_per_kwh:g} kg CO2e/kWh "
            f"({s.heat_source.replace('_', ' ')}); {co2_check}",
        ),
        Figure(
            "Coverage",
            pct(d.coverage),
            f"sum of window coverage / ({n_boilers} boiler(s) reporting this month x "
            f"{d.boiler_minutes // max(n_boilers, 1):,} minutes); a minute without a "
            "window counts 0",
        ),
        Figure(
            "Downtime",
            f"{d.downtime_h:,.1f} h",
            f"boiler-minutes with coverage < {DOWNTIME_BELOW:g} or no window, "
            f"out of {d.boiler_minutes:,} boiler-minutes, in hours",
        ),
        Figure(
            "Alerts",
            str(len(d.alerts)),
            "anomaly and leak suspicions of the site's boilers overlapping the month "
            "(started before its end, not ended before its start)",
        ),
        Figure(
            "Data-quality issues",
            f"{sum(q.issues for q in d.quality):,}",
            "data_quality points of the site in the month (details by kind below)",
        ),
    ]


def notes(d: ReportData) -> list[str]:
    """What a reader must know to interpret the figures."""
    out = [
        "Days are UTC calendar days and the month is the UTC calendar month; the site's "
        f"local time zone is {d.site.timezone}, so a local day starts up to a few hours "
        "away from a UTC day.",
        "Figures are sums of the 1-minute heat windows rather than of the '1d' rollups: a "
        "daily rollup is only written once the next day's first window arrives, so the "
        "last day with data may not have one; the 1-minute windows are final as soon as "
        "each window closes.",
        "Heat and energy come from windows the pipeline closed; readings quarantined as "
        "physically impossible are not in them (see data_quality out_of_range).",
    ]
    if not d.complete:
        out.append(
            f"The month is not over: coverage and downtime count minutes up to "
            f"{iso(d.period_end_ms)}."
        )
    if d.boilers_without_data:
        out.append(
            "Boilers listed at this site in the inventory with no data this month "
            f"(not counted in coverage): {', '.join(d.boilers_without_data)}."
        )
    return out


def warnings(d: ReportData) -> list[str]:
    """Problems that make a figure questionable: shown first, in every format."""
    out = []
    if not d.co2_agrees:
        out.append(
            f"CO2 avoided stored by the pipeline ({kg(d.co2_avoided_kg)}) and re-derived from "
            f"this inventory ({kg(d.co2_derived_kg)}) disagree: check that {d.inventory} is "
            "the inventory the pipeline ran with."
        )
    return out


def day_rows(d: ReportData) -> list[list[str]]:
    """One row per UTC day; a day without any window says so instead of showing zeros."""
    return [
        [
            day.date,
            f"{day.heat_kwh:,.1f}",
            f"{day.total_kwh:,.1f}",
            ratio(day.erf),
            f"{day.co2_avoided_kg:,.1f}",
            pct(day.coverage),
            temp(day.supply_temp_c),
            temp(day.return_temp_c),
        ]
        if day.windows
        else [day.date, "no data", "", "", "", pct(0.0), "", ""]
        for day in d.days
    ]


DAY_COLUMNS = ["UTC day", "heat kWh", "total kWh", "ERF", "CO2 kg", "coverage", "supply", "return"]
BOILER_COLUMNS = ["boiler", "windows", "heat kWh", "total kWh", "coverage", "downtime h"]
ALERT_COLUMNS = ["kind", "boiler", "severity", "start", "end", "reason"]
QUALITY_COLUMNS = ["kind", "issues", "readings or events"]


def boiler_rows(d: ReportData) -> list[list[str]]:
    return [
        [
            b.boiler,
            f"{b.windows:,}",
            f"{b.heat_kwh:,.1f}",
            f"{b.total_kwh:,.1f}",
            pct(b.coverage),
            f"{b.downtime_h:,.1f}",
        ]
        for b in d.boilers
    ]


def alert_rows(d: ReportData) -> list[list[str]]:
    rows = []
    for a in d.alerts:
        reason = a.reason + (f" ({a.detail})" if a.detail else "")
        open_ = "open at month end" if d.complete else "still open"
        end = iso(a.end_ms) if a.end_ms is not None else open_
        rows.append([a.kind, a.boiler, a.severity, iso(a.start_ms), end, reason])
    return rows


def quality_rows(d: ReportData) -> list[list[str]]:
    return [[q.kind, f"{q.issues:,}", f"{q.count:,}"] for q in d.quality]
