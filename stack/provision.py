"""Create what heatstream expects to find: its topics and its InfluxDB database.

Topics are created with their configs (retention, cleanup policy) set at creation,
because Tansu reports (DescribeConfigs) only the configs that were set then. Both
steps are idempotent, so `stack up` may run them on every call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from heatstream.kafka_security import client_kwargs, start_client
from heatstream.schemas.topics import TOPICS, TopicSpec, topic_name
from heatstream.settings import KafkaSettings
from heatstream.stack.errors import ProvisioningError

_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True, slots=True)
class TopicsProvisioned:
    """Which of the requested topics this call created and which already existed."""

    created: tuple[str, ...]
    existing: tuple[str, ...]


def new_topic(spec: TopicSpec, kafka: KafkaSettings) -> NewTopic:
    """The creation request of one registry topic under these Kafka settings."""
    return NewTopic(
        name=topic_name(spec, kafka.topic_prefix),
        num_partitions=spec.partitions or kafka.partitions,
        replication_factor=kafka.replication_factor,
        topic_configs=spec.configs(),
    )


async def create_topics(
    bootstrap: str, kafka: KafkaSettings, specs: Iterable[TopicSpec] = TOPICS
) -> TopicsProvisioned:
    """Create every topic in `specs` that does not exist yet on the brokers at `bootstrap`,
    connecting with `kafka`'s TLS and SASL settings.

    Raises ProvisioningError when the cluster refuses or fails the request, and
    KafkaAuthError (from heatstream.kafka_security) when it refuses the credentials.
    """
    requests = [new_topic(spec, kafka) for spec in specs]
    secured = kafka.model_copy(update={"bootstrap": bootstrap})
    admin = AIOKafkaAdminClient(**client_kwargs(secured), request_timeout_ms=10_000)
    created: list[str] = []
    try:
        await start_client(admin.start, secured)
        present = set(await admin.list_topics())
        missing = [r for r in requests if r.name not in present]
        if missing:
            response = await admin.create_topics(missing)
            failures = []
            for entry in response.topic_errors:
                name, code = entry[0], entry[1]
                message = entry[2] if len(entry) > 2 else None
                if code == 0:
                    created.append(name)
                elif code != _TOPIC_ALREADY_EXISTS:  # (created meanwhile by another caller: fine)
                    failures.append(f"{name}: error {code} {message or ''}".strip())
            if failures:
                raise ProvisioningError(
                    f"could not create topics on {bootstrap}: " + "; ".join(failures)
                )
    except KafkaError as exc:
        raise ProvisioningError(f"could not create topics on {bootstrap}: {exc!r}") from exc
    finally:
        await admin.close()
    existing = tuple(r.name for r in requests if r.name not in created)
    return TopicsProvisioned(created=tuple(created), existing=existing)


def quote_identifier(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def create_database(url: str, database: str) -> None:
    """`CREATE DATABASE` (a no-op when it exists) through the v1 `/query` endpoint."""
    statement = f"CREATE DATABASE {quote_identifier(database)}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
            response = await client.post("/query", data={"q": statement})
    except httpx.HTTPError as exc:
        raise ProvisioningError(f"could not reach InfluxDB at {url}: {exc!r}") from exc
    errors = [r["error"] for r in _results(response) if "error" in r]
    if response.status_code != 200 or errors:
        detail = "; ".join(errors) or response.text.strip()
        raise ProvisioningError(
            f"could not create InfluxDB database {database!r} at {url}: "
            f"HTTP {response.status_code} {detail}"
        )


def _results(response: httpx.Response) -> list[dict[str, str]]:
    try:
        results = response.json().get("results", [])
    except ValueError:
        return []
    return [r for r in results if isinstance(r, dict)]
