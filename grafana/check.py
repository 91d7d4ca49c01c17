"""Run every dashboard and alert-rule query against a real InfluxDB.

What Grafana would do, minus Grafana: fill the template variables from their own
``SHOW TAG VALUES`` queries (or take them from the caller), expand each query
(``queries.expand``), send it to InfluxDB's ``/query`` endpoint, and evaluate each
alert rule with ``evaluate``. Used by the integration tests and by
``heatstream grafana check`` after a pipeline run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from heatstream.grafana import queries
from heatstream.grafana.evaluate import InfluxSeries, RuleResult, evaluate
from heatstream.grafana.files import Json, Provisioning, load


class QueryFailed(RuntimeError):
    """InfluxDB answered a query with an error (or not at all)."""


class InfluxQL:
    """A minimal InfluxQL client over the v1 `/query` endpoint (InfluxDB 1.x, 2.x DBRP, 3.x)."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        headers = {"Authorization": f"Token {token}"} if token else {}
        auth = (username, password or "") if username else None
        self.database = database
        self._http = httpx.Client(base_url=url, headers=headers, auth=auth, timeout=timeout_s)

    def __enter__(self) -> InfluxQL:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def run(self, query: str) -> list[InfluxSeries]:
        """The series of a single-statement query; QueryFailed on any error."""
        try:
            response = self._http.get(
                "/query", params={"db": self.database, "q": query, "epoch": "ms"}
            )
        except httpx.HTTPError as exc:
            raise QueryFailed(f"InfluxDB unreachable: {exc!r}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise QueryFailed(
                f"HTTP {response.status_code}: {response.text.strip()[:200]}"
            ) from exc
        if response.status_code != 200 or "error" in body:
            raise QueryFailed(f"HTTP {response.status_code}: {body.get('error', body)}")
        (result,) = body.get("results", [{}])
        if "error" in result:
            raise QueryFailed(str(result["error"]))
        return list(result.get("series", []))


@dataclass(frozen=True)
class Checked:
    where: str
    query: str  # as sent, expanded
    series: list[InfluxSeries]
    error: str | None = None

    def rows(self) -> int:
        return sum(len(s.get("values", [])) for s in self.series)

    def column(self, name: str) -> list[Any]:
        """Every value of column `name` across the series."""
        out: list[Any] = []
        for s in self.series:
            if name in s["columns"]:
                index = s["columns"].index(name)
                out.extend(row[index] for row in s["values"])
        return out


def discover_variables(
    client: InfluxQL,
    board: Json,
    *,
    given: Mapping[str, queries.VariableValue] | None = None,
) -> dict[str, queries.VariableValue]:
    """Template values as Grafana picks them on load: every value for a multi/All
    variable, the first one otherwise; `given` values win."""
    values: dict[str, queries.VariableValue] = dict(given or {})
    for var in board.get("templating", {}).get("list", []):
        name = var["name"]
        if name in values or var.get("type") != "query":
            continue
        found = [
            str(row[1])
            for s in client.run(queries.expand(var["query"], values))
            for row in s.get("values", [])
        ]
        if not found:
            raise QueryFailed(f"{board['uid']}: variable {name!r} has no values ({var['query']})")
        values[name] = found if (var.get("multi") or var.get("includeAll")) else found[0]
    return values


def check_dashboards(
    client: InfluxQL,
    *,
    time_from: queries.TimeBound = "now() - 6h",
    time_to: queries.TimeBound = "now()",
    interval: str = "1m",
    variables: Mapping[str, Mapping[str, queries.VariableValue]] | None = None,
    provisioning: Provisioning | None = None,
) -> list[Checked]:
    """Run every panel and annotation query; `variables` maps dashboard uid -> values."""
    prov = provisioning or load()
    out: list[Checked] = []
    for board in prov.dashboards.values():
        values = discover_variables(client, board, given=(variables or {}).get(board["uid"]))
        texts = [
            (t.where, t.query, t.interval(interval))
            for t in queries.panel_targets(prov)
            if t.dashboard_uid == board["uid"]
        ]
        texts += [
            (q.where, q.query, interval)
            for q in queries.annotation_queries(prov)
            if q.where.startswith(board["uid"] + " ")
        ]
        for where, text, step in texts:
            expanded = queries.expand(text, values, time_from, time_to, step)
            try:
                out.append(Checked(where, expanded, client.run(expanded)))
            except QueryFailed as exc:
                out.append(Checked(where, expanded, [], str(exc)))
    return out


def check_rules(client: InfluxQL, provisioning: Provisioning | None = None) -> list[RuleResult]:
    """Evaluate every alert rule now, over its own relative time range."""
    prov = provisioning or load()
    results: list[RuleResult] = []
    for _group, rule in prov.rules():
        by_ref = {q.ref_id: q for q in queries.rule_queries(prov) if q.rule_uid == rule["uid"]}

        def run(
            node: Mapping[str, Any], by_ref: dict[str, queries.RuleQuery] = by_ref
        ) -> list[InfluxSeries]:
            return client.run(queries.expand_rule_query(by_ref[node["refId"]]))

        results.append(evaluate(rule, run))
    return results
