"""Is each embedded server really usable, not merely running?

Kafka is healthy when a client completes a metadata round trip (what every
producer and consumer does first); InfluxDB when `/ping` answers 204 and the
configured database exists (a write to a missing database fails). Checks return a
verdict with a reason instead of raising, because callers poll them during
start-up and print them in `stack status`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from heatstream.stack.ports import is_listening


@dataclass(frozen=True, slots=True)
class Health:
    """The verdict of one check; `detail` says why when unhealthy."""

    healthy: bool
    detail: str = "ok"


async def kafka_health(bootstrap: str, timeout_s: float = 3.0) -> Health:
    """Healthy when the broker answers a metadata request."""
    host, _, port = bootstrap.rpartition(":")
    # Probing the port first keeps aiokafka from logging connection errors while
    # the broker is still starting.
    if not await asyncio.to_thread(is_listening, host, int(port)):
        return Health(False, f"nothing listens on {bootstrap}")
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
    except Exception as exc:  # any failure is the verdict, reported to the caller
        return Health(False, f"metadata request to {bootstrap} failed: {exc!r}")
    finally:
        await admin.close()
    return Health(True)


async def influx_health(url: str, database: str, timeout_s: float = 3.0) -> Health:
    """Healthy when `/ping` answers 204 and `database` exists."""
    try:
        async with httpx.AsyncClient(base_url=url, timeout=timeout_s) as client:
            ping = await client.get("/ping")
            if ping.status_code != 204:
                return Health(False, f"GET {url}/ping answered {ping.status_code}")
            if database not in await show_databases(client):
                return Health(False, f"database {database!r} does not exist at {url}")
    except httpx.HTTPError as exc:
        return Health(False, f"{url} unreachable: {exc!r}")
    return Health(True)


async def influx_ping(url: str, timeout_s: float = 3.0) -> Health:
    """Healthy when the server answers `/ping` (before any database exists)."""
    try:
        async with httpx.AsyncClient(base_url=url, timeout=timeout_s) as client:
            ping = await client.get("/ping")
    except httpx.HTTPError as exc:
        return Health(False, f"{url} unreachable: {exc!r}")
    if ping.status_code != 204:
        return Health(False, f"GET {url}/ping answered {ping.status_code}")
    return Health(True)


async def show_databases(client: httpx.AsyncClient) -> set[str]:
    """Database names from InfluxQL `SHOW DATABASES` (client has the base URL)."""
    response = await client.get("/query", params={"q": "SHOW DATABASES"})
    response.raise_for_status()
    names: set[str] = set()
    for result in response.json().get("results", []):
        for series in result.get("series", []):
            names.update(row[0] for row in series.get("values", []))
    return names
