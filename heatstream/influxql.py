"""Read results back with InfluxQL over HTTP `/query`.

Works against InfluxDB 1.x (database, optional user/password) and 2.x/3.x
through their v1-compatible `/query` endpoint with a DBRP mapping (token). The
main job's summary, the monthly report and the tests read through this.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx

from heatstream.errors import HeatstreamError
from heatstream.settings import InfluxSettings


class QueryError(HeatstreamError, RuntimeError):
    """InfluxDB refused or failed a query."""


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def rows(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.values]


def _auth(influx: InfluxSettings) -> dict[str, str]:
    """The credentials as a header. As `u=` and `p=` in the URL they would reach access
    logs and httpx's request log."""
    if influx.token is not None:
        return {"Authorization": f"Token {influx.token.get_secret_value()}"}
    if influx.username:
        password = influx.password.get_secret_value() if influx.password else ""
        basic = base64.b64encode(f"{influx.username}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {basic}"}
    return {}


def _refused(influx: InfluxSettings, status: int) -> str:
    if status in (401, 403):
        return "; check influxdb.username and influxdb.password, or influxdb.token"
    return ""


def query(influx: InfluxSettings, q: str, *, timeout_s: float = 30.0) -> list[Series]:
    """Run one InfluxQL statement; every series of its result (epoch ms timestamps)."""
    headers = _auth(influx)
    params = {"db": influx.database, "q": q, "epoch": "ms"}
    if influx.retention_policy:
        params["rp"] = influx.retention_policy
    try:
        response = httpx.get(
            f"{influx.url.rstrip('/')}/query", params=params, headers=headers, timeout=timeout_s
        )
    except httpx.HTTPError as exc:
        raise QueryError(f"InfluxDB at {influx.url} unreachable: {exc}") from None
    if response.status_code != 200:
        raise QueryError(
            f"InfluxDB at {influx.url} answered {response.status_code} to {q!r}:"
            f" {response.text.strip()[:300]}{_refused(influx, response.status_code)}"
        )
    out: list[Series] = []
    for result in response.json().get("results", []):
        if "error" in result:
            raise QueryError(f"InfluxDB: {result['error']} (query {q!r})")
        for s in result.get("series", []):
            out.append(
                Series(s.get("name", ""), s.get("tags", {}) or {}, s["columns"], s["values"])
            )
    return out


def execute(influx: InfluxSettings, statement: str) -> None:
    """A statement that changes something (CREATE/DROP ...), sent by POST."""
    headers = _auth(influx)
    params = {"q": statement}
    try:
        response = httpx.post(
            f"{influx.url.rstrip('/')}/query", params=params, headers=headers, timeout=30.0
        )
    except httpx.HTTPError as exc:
        raise QueryError(f"InfluxDB at {influx.url} unreachable: {exc}") from None
    body = (
        response.json()
        if response.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    errors = [r["error"] for r in body.get("results", []) if "error" in r]
    if response.status_code != 200 or errors:
        raise QueryError(
            f"InfluxDB at {influx.url} refused {statement!r}: {errors or response.text.strip()[:300]}"
            f"{_refused(influx, response.status_code)}"
        )
