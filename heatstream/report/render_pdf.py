"""The report as a multi-page A4 PDF, drawn with matplotlib alone (PdfPages).

No LaTeX, no browser: text is laid out line by line in a monospaced font
(wrapping by character count is then exact), the plot is drawn as vector
graphics on its own page with the daily table.
"""

from __future__ import annotations

import io
import re
import textwrap
from datetime import UTC, datetime

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from heatstream.report import figures as f
from heatstream.report.model import ReportData
from heatstream.report.plots import draw_daily

PAGE_W, PAGE_H = 8.27, 11.69  # A4, inches
MARGIN = 0.6
COLS = 100  # characters per line at BODY_PT in DejaVu Sans Mono across the text width
BODY_PT = 8.0
LINE = BODY_PT * 1.4 / 72  # inches
MONO = "DejaVu Sans Mono"
_NUMERIC = re.compile(r"^(-?[\d,]+(\.\d+)?( %| °C)?|n/a|no data|)$")


class _Pages:
    """A cursor over A4 pages: add lines, headings, tables and the plot; new pages as needed."""

    def __init__(self, pdf: PdfPages, footer: str) -> None:
        self.pdf, self.footer = pdf, footer
        self.page: Figure | None = None
        self.number = 0
        self.y = 0.0  # inches from the top of the page

    def _new_page(self) -> Figure:
        self.close_page()
        self.page = Figure(figsize=(PAGE_W, PAGE_H))
        self.number += 1
        self.y = MARGIN
        self.page.text(
            MARGIN / PAGE_W,
            0.35 / PAGE_H,
            f"{self.footer} · page {self.number}",
            fontsize=7,
            color="#777777",
            family=MONO,
        )
        return self.page

    def close_page(self) -> None:
        if self.page is not None:
            self.pdf.savefig(self.page)
            self.page = None

    def _room(self, inches: float) -> Figure:
        if self.page is None or self.y + inches > PAGE_H - MARGIN:
            return self._new_page()
        return self.page

    def _put(
        self,
        text: str,
        *,
        size: float = BODY_PT,
        bold: bool = False,
        family: str = MONO,
        color: str = "#222222",
        height: float = LINE,
    ) -> None:
        page = self._room(height)
        self.y += height
        page.text(
            MARGIN / PAGE_W,
            1 - self.y / PAGE_H,
            text,
            fontsize=size,
            family=family,
            weight="bold" if bold else "normal",
            color=color,
            va="baseline",
        )

    def title(self, text: str) -> None:
        for part in textwrap.wrap(text, 70):
            self._put(part, size=14, bold=True, family="DejaVu Sans", height=0.3)
        self.y += LINE

    def heading(self, text: str) -> None:
        self._room(4 * LINE)  # keep a heading with the first lines under it
        self.y += LINE
        self._put(text, size=11, bold=True, family="DejaVu Sans", height=0.24)
        self.y += LINE / 3

    def para(self, text: str, indent: int = 0, *, color: str = "#222222") -> None:
        width = COLS - indent
        for part in textwrap.wrap(text, width) or [""]:
            self._put(" " * indent + part, color=color)

    def table(self, columns: list[str], rows: list[list[str]], max_width: int = 28) -> None:
        """Fixed-width columns; the last column wraps under itself, or below the row when
        the other columns leave it too little room."""
        widths = [
            min(max_width, max(len(c), *(len(r[i]) for r in rows))) if rows else len(c)
            for i, c in enumerate(columns)
        ]
        start_last = sum(w + 2 for w in widths[:-1])
        below = start_last > COLS - 30
        if below:
            start_last = 4
        last_width = COLS - start_last
        right = [
            bool(rows) and all(_NUMERIC.match(r[i]) for r in rows) for i in range(len(columns))
        ]

        def line(cells: list[str], bold: bool = False) -> None:
            head = "".join(
                (c[:w].rjust(w) if r else c[:w].ljust(w)) + "  "
                for c, w, r in zip(cells[:-1], widths, right, strict=False)
            )
            tail = textwrap.wrap(cells[-1], last_width) or [""]
            if below:
                self._put(head.rstrip(), bold=bold)
            else:
                self._put(head + tail.pop(0), bold=bold)
            for more in tail:
                self._put(" " * start_last + more, bold=bold)

        line(columns, bold=True)
        for row in rows:
            line(row)

    def plot(self, d: ReportData, height: float) -> None:
        page = self._room(height)
        top = 1 - (self.y + 0.3) / PAGE_H
        inner = height - 0.8
        left, width = (MARGIN + 0.5) / PAGE_W, (PAGE_W - 2 * MARGIN - 0.6) / PAGE_W
        heat_h = inner * 0.68 / PAGE_H
        cov_h = inner * 0.27 / PAGE_H
        heat_ax = page.add_axes((left, top - heat_h, width, heat_h))
        cov_ax = page.add_axes(
            (left, top - heat_h - 0.1 / PAGE_H - cov_h, width, cov_h), sharex=heat_ax
        )
        draw_daily(d, heat_ax, cov_ax)
        heat_ax.tick_params(labelbottom=False)
        self.y += height


def render_pdf(d: ReportData) -> bytes:
    """The whole report as PDF bytes."""
    buf = io.BytesIO()
    generated = datetime.fromtimestamp(d.generated_ms / 1000, tz=UTC)
    metadata = {
        "Title": f.title(d),
        "Subject": f"Heat reuse of site {d.site.id} in {d.month} (UTC)",
        "Creator": "heatstream report",
        "CreationDate": generated,
    }
    with PdfPages(buf, metadata=metadata) as pdf:
        pages = _Pages(pdf, f"{d.site.id} · {d.month}")
        pages.title(f.title(d))
        for key, value in f.header(d):
            lines = textwrap.wrap(value, COLS - 18) or [""]
            pages.para(f"{key:<16}  {lines[0]}")
            for more in lines[1:]:
                pages.para(" " * 18 + more)
        for warning in f.warnings(d):
            pages.y += LINE / 2
            pages.para(f"WARNING: {warning}", color="#a40000")
        pages.heading("Figures of the month")
        for x in f.figures(d):
            pages.para(f"{x.label} ".ljust(46, ".") + f" {x.value}")
            pages.para(f"how: {x.how}", indent=4, color="#555555")
        pages.heading("Notes")
        for note in f.notes(d):
            wrapped = textwrap.wrap(note, COLS - 2)
            pages.para("- " + wrapped[0])
            for more in wrapped[1:]:
                pages.para("  " + more)
        pages.close_page()

        pages.heading("Heat delivered per day")
        pages.plot(d, height=4.6)
        pages.table(f.DAY_COLUMNS, f.day_rows(d))
        pages.heading("Boilers")
        pages.table(f.BOILER_COLUMNS, f.boiler_rows(d))
        pages.heading("Alerts")
        if d.alerts:
            pages.table(f.ALERT_COLUMNS, f.alert_rows(d), max_width=20)
        else:
            pages.para("No alert overlaps the month.")
        pages.heading("Data quality")
        if d.quality:
            pages.table(f.QUALITY_COLUMNS, f.quality_rows(d))
        else:
            pages.para("No data-quality issue recorded in the month.")
        pages.close_page()

        pages.heading("Appendix: the InfluxQL behind these figures")
        for q in d.queries:
            pages.para(f"{q.purpose}:", color="#555555")
            pages.para(q.text, indent=4)
            pages.y += LINE / 2
        pages.close_page()
    return buf.getvalue()
