"""Monthly heat-reuse reports: `heatstream report --site S --month YYYY-MM`.

Flow: `data.build_report` queries InfluxDB into a frozen `ReportData`;
`figures` words it (values, how each was computed, notes); `render_md`,
`render_html` and `render_pdf` lay it out, with the plot from `plots`;
`cli` is the command. docs/report.md explains the figures to analysts.
"""

from __future__ import annotations

from heatstream.report.data import NoDataError, ReportError, build_report, month_bounds
from heatstream.report.model import ReportData

__all__ = ["NoDataError", "ReportData", "ReportError", "build_report", "month_bounds"]
