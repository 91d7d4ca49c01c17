"""Grafana's server-side expressions (reduce, threshold) applied to InfluxQL results.

Grafana cannot run on the project's machines, so this re-implements the small part of
its alert evaluation the heatstream rules use: the InfluxDB backend turns each series
(tag set) and value column of a ``/query`` result into one labelled time series;
``reduce`` turns each into one number; ``threshold`` into 1 (firing) or 0. With it, a
test runs a rule against real data and asserts which boilers would fire. Pure: the
caller runs the queries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from heatstream.grafana.panels import DATASOURCE_UID

Labels = tuple[tuple[str, str], ...]
InfluxSeries = Mapping[str, Any]  # one entry of results[i].series in InfluxDB's /query JSON


class UnsupportedExpression(ValueError):
    """The rule uses an expression this module does not emulate."""


@dataclass(frozen=True)
class Series:
    labels: Labels
    column: str
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class RuleResult:
    """Per label set: the value of every expression node, and whether the condition fires."""

    rule_uid: str
    no_data: bool
    values: dict[Labels, dict[str, float | None]] = field(default_factory=dict)
    firing: frozenset[Labels] = frozenset()

    def firing_label(self, key: str) -> set[str]:
        """The values of label `key` among firing instances (e.g. the boilers)."""
        return {dict(labels).get(key, "") for labels in self.firing}


def series_of(influx_series: list[InfluxSeries]) -> list[Series]:
    """One labelled series per InfluxDB series and non-time column, as Grafana frames them."""
    out: list[Series] = []
    for s in influx_series:
        labels = tuple(sorted((s.get("tags") or {}).items()))
        columns = s["columns"]
        for index, column in enumerate(columns):
            if column == "time":
                continue
            values = tuple(
                float(row[index]) if isinstance(row[index], (int, float)) else None
                for row in s["values"]
            )
            out.append(Series(labels, column, values))
    return out


def reduce(values: tuple[float | None, ...], reducer: str, mode: str = "dropNN") -> float | None:
    numbers = [v for v in values if v is not None and not math.isnan(v)]
    if mode == "strict" and len(numbers) != len(values):
        return None
    if not numbers:
        return None if reducer != "count" else 0.0
    match reducer:
        case "last":
            return numbers[-1]
        case "mean":
            return sum(numbers) / len(numbers)
        case "min":
            return min(numbers)
        case "max":
            return max(numbers)
        case "sum":
            return sum(numbers)
        case "count":
            return float(len(numbers))
    raise UnsupportedExpression(f"reducer {reducer!r}")


def threshold(value: float | None, evaluator: Mapping[str, Any]) -> bool:
    if value is None:
        return False
    kind, params = evaluator["type"], [float(p) for p in evaluator["params"]]
    match kind:
        case "gt":
            return value > params[0]
        case "lt":
            return value < params[0]
        case "within_range":
            return params[0] < value < params[1]
        case "outside_range":
            return value < params[0] or value > params[1]
    raise UnsupportedExpression(f"threshold evaluator {kind!r}")


def evaluate(
    rule: Mapping[str, Any], run: Callable[[Mapping[str, Any]], list[InfluxSeries]]
) -> RuleResult:
    """Evaluate a provisioned rule; `run(node)` returns the InfluxDB series of a query node."""
    frames: dict[str, dict[Labels, Series]] = {}
    numeric: dict[str, dict[Labels, float | None]] = {}
    no_data = False
    for node in rule["data"]:
        ref, model = node["refId"], node["model"]
        if node.get("datasourceUid") == DATASOURCE_UID:
            by_labels: dict[Labels, Series] = {}
            for s in series_of(run(node)):
                if s.labels in by_labels:
                    # Grafana refuses this too: two results with the same labels.
                    raise ValueError(
                        f"{rule['uid']}/{ref}: duplicate series for labels {dict(s.labels)}"
                    )
                by_labels[s.labels] = s
            no_data = no_data or not by_labels
            frames[ref] = by_labels
            continue
        kind = model.get("type")
        source = model.get("expression", "")
        if kind == "reduce":
            mode = model.get("settings", {}).get("mode", "strict")
            numeric[ref] = {
                labels: reduce(s.values, model["reducer"], mode)
                for labels, s in frames.get(source, {}).items()
            }
        elif kind == "threshold":
            (condition,) = model["conditions"]
            numeric[ref] = {
                labels: 1.0 if threshold(value, condition["evaluator"]) else 0.0
                for labels, value in numeric[source].items()
            }
        else:
            raise UnsupportedExpression(f"{rule['uid']}/{ref}: expression type {kind!r}")
    condition = numeric[rule["condition"]]
    values = {
        labels: {ref: by_ref.get(labels) for ref, by_ref in numeric.items()} for labels in condition
    }
    firing = frozenset(labels for labels, v in condition.items() if v == 1.0)
    return RuleResult(rule["uid"], no_data, values, firing)
