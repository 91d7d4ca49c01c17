"""Query expansion as Grafana does it, and Grafana's reduce/threshold emulation (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from heatstream.grafana import queries
from heatstream.grafana.evaluate import (
    UnsupportedExpression,
    evaluate,
    reduce,
    series_of,
    threshold,
)
from heatstream.grafana.files import load
from heatstream.grafana.payloads import (
    PushOptions,
    contact_point_payloads,
    contains,
    datasource_payload,
    fill,
    rule_payload,
)
from heatstream.grafana.queries import PanelTarget, expand, time_filter


def test_time_filter_like_grafana() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    end = datetime(2025, 1, 1, 6, tzinfo=UTC)
    assert time_filter(start, end) == "time >= 1735689600000ms and time <= 1735711200000ms"
    assert time_filter("now() - 6h") == "time >= now() - 6h"
    assert time_filter("now() - 30d", "now() - 1d") == "time >= now() - 30d and time <= now() - 1d"
    with pytest.raises(ValueError, match="aware"):
        time_filter(datetime(2025, 1, 1), end)


def test_expand_fills_builtins_and_template_variables() -> None:
    query = (
        'SELECT mean("x") FROM "m" WHERE "site" =~ /^$site$/ AND "boiler" =~ /^${boiler}$/ '
        "AND [[site]] != '' AND $timeFilter GROUP BY time($__interval) LIMIT $__interval_ms"
    )
    out = expand(
        query, {"site": ["pool-lyon", "res.nantes"], "boiler": "b1"}, "now() - 1h", interval="10s"
    )
    assert out == (
        'SELECT mean("x") FROM "m" WHERE "site" =~ /^(pool\\-lyon|res\\.nantes)$/ '
        'AND "boiler" =~ /^b1$/ '
        "AND (pool\\-lyon|res\\.nantes) != '' AND time >= now() - 1h GROUP BY time(10s) LIMIT 10000"
    )
    assert (
        expand('"site" =~ /^$site$/ AND $timeFilter', {"site": ["only"]})
        == '"site" =~ /^only$/ AND time >= now() - 6h'
    )


def test_expand_refuses_undefined_variables() -> None:
    with pytest.raises(ValueError, match=r"\['boiler'\]"):
        expand('SELECT * FROM "m" WHERE "boiler" = \'$boiler\' AND $timeFilter')


def test_panel_minimum_interval_wins() -> None:
    target = PanelTarget("d", 1, "t", "A", "q", "time_series", "1h")
    assert target.interval("1m") == "1h"
    assert target.interval("2h") == "2h"
    assert PanelTarget("d", 1, "t", "A", "q", "time_series").interval("1m") == "1m"


def test_all_queries_cover_panels_variables_annotations_and_rules() -> None:
    prov = load()
    found = queries.all_queries(prov)
    panel_targets = sum(
        len(p.get("targets", [])) for b in prov.dashboards.values() for p in b["panels"]
    )
    variables = sum(len(b["templating"]["list"]) for b in prov.dashboards.values())
    annotations = sum(len(b["annotations"]["list"]) - 1 for b in prov.dashboards.values())
    assert len(found) == panel_targets + variables + annotations + 5
    assert len({where for where, _ in found}) == len(found), "every location is named uniquely"
    sample = {"site": ["pool-lyon"], "boiler": "boiler-lyon-01", "process": ["worker-1"]}
    for where, query in found:
        expanded = expand(query, sample)
        assert not queries.variables_in(expanded), where


def test_rule_queries_expand_over_their_relative_range() -> None:
    leak = next(r for r in queries.rule_queries() if r.rule_uid == "heatstream-leak-suspected")
    assert queries.expand_rule_query(leak) == (
        'SELECT last("active") AS "active" FROM "leak" '
        'WHERE time >= now() - 2592000s GROUP BY "site", "boiler"'
    )


# -- Grafana's expressions ------------------------------------------------------------------


def test_reduce_and_threshold() -> None:
    values = (1.0, None, 3.0, float("nan"), 2.0)
    assert reduce(values, "last") == 2.0
    assert reduce(values, "mean") == 2.0
    assert reduce(values, "max") == 3.0 and reduce(values, "min") == 1.0
    assert reduce(values, "sum") == 6.0 and reduce(values, "count") == 3.0
    assert reduce(values, "last", mode="strict") is None
    assert reduce((), "last") is None
    assert threshold(0.6, {"type": "gt", "params": [0.5]})
    assert not threshold(0.5, {"type": "gt", "params": [0.5]})
    assert threshold(0.0, {"type": "lt", "params": [1]})
    assert threshold(5, {"type": "outside_range", "params": [0, 4]})
    assert not threshold(None, {"type": "gt", "params": [0]})
    with pytest.raises(UnsupportedExpression):
        reduce(values, "median")


def _leak_rule() -> dict[str, Any]:
    return next(r for _, r in load().rules() if r["uid"] == "heatstream-leak-suspected")


def _series(boiler: str, *active: int) -> dict[str, Any]:
    return {
        "name": "leak",
        "tags": {"boiler": boiler, "site": "s"},
        "columns": ["time", "active"],
        "values": [[i, a] for i, a in enumerate(active)],
    }


def test_evaluate_the_leak_rule_on_synthetic_series() -> None:
    result = evaluate(_leak_rule(), lambda node: [_series("b-open", 1), _series("b-ended", 0)])
    assert result.firing_label("boiler") == {"b-open"}
    assert not result.no_data
    values = {dict(labels)["boiler"]: v for labels, v in result.values.items()}
    assert values["b-ended"] == {"B": 0.0, "C": 0.0}
    assert values["b-open"] == {"B": 1.0, "C": 1.0}
    empty = evaluate(_leak_rule(), lambda node: [])
    assert empty.no_data and not empty.firing


def test_evaluate_rejects_what_grafana_rejects() -> None:
    with pytest.raises(ValueError, match="duplicate series"):
        evaluate(_leak_rule(), lambda node: [_series("b", 1), _series("b", 1)])
    rule = _leak_rule()
    rule = {
        **rule,
        "data": [
            *rule["data"][:2],
            {**rule["data"][2], "model": {**rule["data"][2]["model"], "type": "math"}},
        ],
    }
    with pytest.raises(UnsupportedExpression):
        evaluate(rule, lambda node: [_series("b", 1)])


def test_series_of_splits_value_columns() -> None:
    frames = series_of(
        [{"name": "m", "tags": {"a": "1"}, "columns": ["time", "x", "y"], "values": [[0, 1, "s"]]}]
    )
    assert [(f.column, f.values) for f in frames] == [("x", (1.0,)), ("y", (None,))]


# -- push payloads (pure parts) ------------------------------------------------------------


def test_fill_uses_given_values_only() -> None:
    from pydantic import SecretStr

    assert fill("Token $T", {"T": SecretStr("abc")}) == "Token abc"
    assert fill("Token ${T}", {"T": SecretStr("abc")}) == "Token abc"
    assert fill("Token $T", {}) is None
    assert fill("Token $T", {"T": SecretStr("")}) is None


def test_datasource_payload_drops_the_auth_header_without_a_token() -> None:
    (source,) = load().datasources
    payload = datasource_payload(source, PushOptions())
    assert "secureJsonData" not in payload and "httpHeaderName1" not in payload["jsonData"]
    assert source["jsonData"]["httpHeaderName1"] == "Authorization", (
        "the loaded file is not mutated"
    )


def test_contact_point_without_token_sends_no_authorization() -> None:
    from pydantic import SecretStr

    (point,) = load().contact_points
    (receiver,), missing = contact_point_payloads(
        point, PushOptions(secrets={"HEATSTREAM_ALERT_WEBHOOK_URL": SecretStr("http://x")})
    )
    assert not missing
    assert receiver["settings"] == {"url": "http://x", "httpMethod": "POST"}
    _, missing = contact_point_payloads(point, PushOptions())
    assert missing == ["HEATSTREAM_ALERT_WEBHOOK_URL"]


def test_rule_payload_is_the_provisioning_api_shape() -> None:
    group, rule = next((g, r) for g, r in load().rules() if r["uid"] == "heatstream-leak-suspected")
    payload = rule_payload(
        group, rule, PushOptions(folder_uid="f1", runbook_base="https://git.example/h/")
    )
    assert (
        payload["folderUID"] == "f1"
        and payload["ruleGroup"] == "detections"
        and payload["orgID"] == 1
    )
    assert payload["annotations"]["__dashboardUid__"] == "heatstream-alerts"
    assert payload["annotations"]["__panelId__"] == str(rule["panelId"])
    assert (
        payload["annotations"]["runbook_url"] == "https://git.example/h/docs/ops.md#leak-suspected"
    )


def test_contains_ignores_what_grafana_adds() -> None:
    assert contains({"a": 1, "id": 7, "b": [{"x": 1.0, "y": 2}]}, {"a": 1, "b": [{"x": 1}]})
    assert not contains({"a": 1, "b": [{"x": 1}, {"x": 2}]}, {"a": 1, "b": [{"x": 1}]})
    assert not contains({"a": True}, {"a": 1})
    assert not contains({}, {"a": None})
