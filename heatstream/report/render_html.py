"""The report as one self-contained HTML page: inline CSS, the plot as a base64 PNG."""

from __future__ import annotations

import base64
from html import escape

from heatstream.report import figures as f
from heatstream.report.model import ReportData
from heatstream.report.plots import daily_png

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 64rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.4; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem;
     border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left;
         vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; white-space: nowrap; }
td.how { color: #555; font-size: 0.85rem; } td.value { font-weight: 600;
         white-space: nowrap; }
img { max-width: 100%; } pre { background: #f7f7f7; padding: 0.5rem; overflow-x: auto;
      white-space: pre-wrap; font-size: 0.8rem; }
.warn { color: #a40000; }
@media print { body { margin: 0; } h2 { break-after: avoid; } }
"""


def _table(columns: list[str], rows: list[list[str]], numeric: frozenset[int] = frozenset()) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{escape(c)}</td>' if i in numeric else f"<td>{escape(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(d: ReportData, *, png: bytes | None = None) -> str:
    """The whole report; `png` is the daily plot (built here when not given)."""
    png = daily_png(d) if png is None else png
    title = escape(f.title(d))
    header = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in f.header(d))
    figs = "".join(
        f'<tr><td>{escape(x.label)}</td><td class="value">{escape(x.value)}</td>'
        f'<td class="how">{escape(x.how)}</td></tr>'
        for x in f.figures(d)
    )
    image = base64.b64encode(png).decode("ascii")
    alerts = (
        _table(f.ALERT_COLUMNS, f.alert_rows(d))
        if d.alerts
        else "<p>No alert overlaps the month.</p>"
    )
    quality = (
        _table(f.QUALITY_COLUMNS, f.quality_rows(d), frozenset({1, 2}))
        if d.quality
        else "<p>No data-quality issue recorded in the month.</p>"
    )
    notes = "".join(f"<li>{escape(n)}</li>" for n in f.notes(d))
    warnings = "".join(
        f'<p class="warn"><strong>Warning:</strong> {escape(w)}</p>' for w in f.warnings(d)
    )
    queries = "".join(
        f"<p>{escape(q.purpose)}:</p><pre><code>{escape(q.text)}</code></pre>" for q in d.queries
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{title}</h1>
<table>{header}</table>
{warnings}
<h2>Figures of the month</h2>
<table><thead><tr><th>figure</th><th>value</th><th>how it was computed</th></tr></thead>
<tbody>{figs}</tbody></table>
<h2>Heat delivered per day</h2>
<img alt="Heat delivered per UTC day and daily coverage, {escape(d.month)}"
 src="data:image/png;base64,{image}">
{_table(f.DAY_COLUMNS, f.day_rows(d), frozenset(range(1, 8)))}
<h2>Boilers</h2>
{_table(f.BOILER_COLUMNS, f.boiler_rows(d), frozenset(range(1, 6)))}
<h2>Alerts</h2>
{alerts}
<h2>Data quality</h2>
{quality}
<h2>Notes</h2>
<ul>{notes}</ul>
<h2>Appendix: the InfluxQL behind these figures</h2>
{queries}
</body>
</html>
"""
