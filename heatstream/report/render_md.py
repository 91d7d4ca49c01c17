"""The report as Markdown: tables, the plot as a base64 data-URI image, InfluxQL appendix."""

from __future__ import annotations

import base64

from heatstream.report import figures as f
from heatstream.report.model import ReportData
from heatstream.report.plots import daily_png


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(columns: list[str], rows: list[list[str]]) -> list[str]:
    out = [
        "| " + " | ".join(_cell(c) for c in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def render_md(d: ReportData, *, png: bytes | None = None) -> str:
    """The whole report; `png` is the daily plot (built here when not given)."""
    png = daily_png(d) if png is None else png
    lines = [f"# {f.title(d)}", ""]
    lines += _table(["", ""], [[f"**{k}**", v] for k, v in f.header(d)])
    lines += [""] + [f"> **Warning:** {w}" for w in f.warnings(d)]
    lines += ["", "## Figures of the month", ""]
    lines += _table(
        ["figure", "value", "how it was computed"],
        [[x.label, f"**{x.value}**", x.how] for x in f.figures(d)],
    )
    lines += ["", "## Heat delivered per day", ""]
    data_uri = base64.b64encode(png).decode("ascii")
    lines += [f"![Heat delivered per UTC day, {d.month}](data:image/png;base64,{data_uri})", ""]
    lines += _table(f.DAY_COLUMNS, f.day_rows(d))
    lines += ["", "## Boilers", ""]
    lines += _table(f.BOILER_COLUMNS, f.boiler_rows(d))
    lines += ["", "## Alerts", ""]
    lines += (
        _table(f.ALERT_COLUMNS, f.alert_rows(d)) if d.alerts else ["No alert overlaps the month."]
    )
    lines += ["", "## Data quality", ""]
    lines += (
        _table(f.QUALITY_COLUMNS, f.quality_rows(d))
        if d.quality
        else ["No data-quality issue recorded in the month."]
    )
    lines += ["", "## Notes", ""]
    lines += [f"- {n}" for n in f.notes(d)]
    lines += ["", "## Appendix: the InfluxQL behind these figures", ""]
    for q in d.queries:
        lines += [f"{q.purpose}:", "", "```sql", q.text, "```", ""]
    return "\n".join(lines).rstrip() + "\n"
