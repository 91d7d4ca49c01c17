"""Grafana provisioning as code: the last stage of the flow (InfluxDB -> Grafana).

The files Grafana loads live next to this package and are versioned with it:

- ``provisioning/datasources/influxdb.yaml``: the InfluxQL datasource (uid ``heatstream-influxdb``);
- ``provisioning/dashboards/dashboards.yaml`` + ``dashboards/*.json``: the dashboards;
- ``provisioning/alerting/*.yaml``: unified-alerting rules, contact point, notification policy.

docker-compose mounts them into Grafana, and ``heatstream grafana push`` uploads the very
same files to a Grafana that does not mount them. The dashboards and alert rules are
generated from ``boards.py`` and ``rules.py`` (``python -m heatstream.grafana.generate``);
``queries.py`` lists and expands every InfluxQL query in those files so tests (and
``heatstream grafana check``) can run them against a real InfluxDB.
"""

from heatstream.grafana.panels import DATASOURCE, DATASOURCE_UID

__all__ = ["DATASOURCE", "DATASOURCE_UID"]
