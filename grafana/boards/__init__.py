"""The four heatstream dashboards, as code.

Every query reads the measurements of docs/measurements.md with InfluxQL, so the same
dashboards work on InfluxDB 1.x, 2.x (DBRP mapping) and 3.x. Conventions:

- time series group by ``time($__interval)``; panels over ``heat_window`` set a minimum
  interval of 1m (the window length) so Grafana never asks for finer buckets than exist;
- every ``heat_window`` query filters ``resolution``: 1m, 1h and 1d points of the same
  boiler coexist, and summing across resolutions would triple-count the heat;
- energy ratios (ERF) are ``sum(heat) / sum(total)``, never a mean of per-window ERFs;
- template variables are matched as regexes (``=~ /^$site$/``), which is how Grafana
  expands multi-value and "All" selections for InfluxQL;
- "current state" tables (active leaks and anomalies) look back 30 days whatever the
  dashboard range: a leak opened last week and still open is current.

``python -m heatstream.grafana.generate`` writes them to ``dashboards/*.json``.
"""

from heatstream.grafana.boards.alerts import alerts_and_leaks
from heatstream.grafana.boards.boiler import boiler_detail
from heatstream.grafana.boards.common import ALERTS_UID, BOILER_UID, FLEET_UID, PIPELINE_UID
from heatstream.grafana.boards.fleet import fleet_overview
from heatstream.grafana.boards.pipeline import pipeline_health
from heatstream.grafana.panels import Json

__all__ = ["ALERTS_UID", "BOILER_UID", "FLEET_UID", "PIPELINE_UID", "all_dashboards", "panel_id"]


def all_dashboards() -> dict[str, Json]:
    """File name (in ``dashboards/``) -> dashboard JSON model."""
    return {
        "fleet-overview.json": fleet_overview(),
        "boiler-detail.json": boiler_detail(),
        "alerts-and-leaks.json": alerts_and_leaks(),
        "pipeline-health.json": pipeline_health(),
    }


def panel_id(board: Json, title: str) -> int:
    """The id of the panel titled `title` (alert rules link to it)."""
    ids = [p["id"] for p in board["panels"] if p["title"] == title]
    if len(ids) != 1:
        raise KeyError(f"{board['uid']}: {len(ids)} panels titled {title!r}")
    return int(ids[0])
