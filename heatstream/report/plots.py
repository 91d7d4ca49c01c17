"""The report's plot: heat delivered per UTC day, with daily coverage beneath.

Built on `matplotlib.figure.Figure` directly (no pyplot): no global state, no
display, safe in a server or a test run.
"""

from __future__ import annotations

import io
from datetime import date

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from heatstream.report.model import ReportData


def daily_figure(d: ReportData) -> Figure:
    """Two panels sharing the UTC days of the month: heat (bars) and coverage (%)."""
    fig = Figure(figsize=(8.0, 4.8), dpi=110, layout="constrained")
    heat_ax, cov_ax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1.3))
    draw_daily(d, heat_ax, cov_ax)
    return fig


def draw_daily(d: ReportData, heat_ax: Axes, cov_ax: Axes) -> None:
    """Draw the two panels into given axes (the PDF places them on a page itself)."""
    days = [date.fromisoformat(day.date).day for day in d.days]
    heat = [day.heat_kwh for day in d.days]
    colors = ["#c8553d" if day.windows else "#bbbbbb" for day in d.days]
    heat_ax.bar(days, heat, color=colors, width=0.8)
    heat_ax.set_ylabel("heat delivered (kWh)")
    heat_ax.set_title(f"{d.site.name}: heat delivered per UTC day, {d.month}", fontsize=10)
    heat_ax.grid(axis="y", alpha=0.3)
    if d.days:
        mean = d.heat_kwh / len(d.days)
        heat_ax.axhline(
            mean,
            color="#555555",
            linewidth=0.8,
            linestyle="--",
            label=f"month total / {len(d.days)} days = {mean:,.1f} kWh",
        )
        heat_ax.legend(loc="upper right", fontsize=8, frameon=False)
    cov_ax.plot(
        days, [100 * day.coverage for day in d.days], marker="o", markersize=3, color="#2d6a8e"
    )
    cov_ax.set_ylim(0, 105)
    cov_ax.set_ylabel("coverage (%)")
    cov_ax.set_xlabel("day of month (UTC)")
    cov_ax.grid(alpha=0.3)
    if days:
        cov_ax.set_xlim(0.3, max(days) + 0.7)
        cov_ax.set_xticks(range(1, max(days) + 1, 2 if len(days) > 16 else 1))


def daily_png(d: ReportData) -> bytes:
    """The plot as PNG bytes (for HTML and Markdown, embedded as base64)."""
    buf = io.BytesIO()
    daily_figure(d).savefig(buf, format="png")
    return buf.getvalue()
