"""The aiokafka producer of a gateway, built from KafkaSettings in one place.

`kafka_security_kwargs` turns the deployment's Kafka settings (bootstrap, TLS
files, SASL credentials) into aiokafka arguments (`heatstream.kafka_security`, shared
with the worker, the sink and replay) and refuses inconsistent combinations at
start-up with a message that says what to set, instead of a connection that
silently never authenticates; a broker that refuses the credentials stops the
gateway with a message naming broker, mechanism and user. `producer_kwargs` adds the
delivery guarantees the gateway relies on: acks=all, no idempotence and no
transactions (the embedded broker rejects InitProducerId, and the spool plus
event-id de-duplication already give exactly-once results), bounded request
time so a dead broker turns into a retry from the spool.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aiokafka import AIOKafkaProducer

from heatstream.ingest.config import GatewayConfig
from heatstream.ingest.errors import GatewayConfigError
from heatstream.kafka_security import (
    KafkaAuthError,
    KafkaConfigError,
    client_kwargs,
    start_client,
)
from heatstream.settings import KafkaSettings


def kafka_security_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """bootstrap_servers, security_protocol, ssl_context and sasl_* for any aiokafka client."""
    try:
        return client_kwargs(kafka)
    except KafkaConfigError as exc:
        raise GatewayConfigError(str(exc)) from None


def producer_kwargs(config: GatewayConfig, kafka: KafkaSettings) -> dict[str, Any]:
    """Everything AIOKafkaProducer needs for this gateway."""
    return {
        **kafka_security_kwargs(kafka),
        "client_id": f"heatstream-gateway-{config.gateway}",
        "acks": "all",
        "enable_idempotence": False,
        "compression_type": config.compression,
        "request_timeout_ms": config.send_timeout_ms,
        "retry_backoff_ms": config.retry_backoff_ms,
        "max_request_size": config.max_message_bytes,
        # One round trip already carries a whole spool batch: no need to wait for more.
        "linger_ms": 0,
        "max_batch_size": min(config.max_message_bytes, 1024 * 1024),
    }


def build_producer(config: GatewayConfig, kafka: KafkaSettings) -> AIOKafkaProducer:
    return _Producer(kafka, **producer_kwargs(config, kafka))


class _Producer(AIOKafkaProducer):
    """A producer whose start() fails with KafkaAuthError when the broker refuses the
    gateway's TLS or SASL identity: not retriable, so the gateway stops and says why
    instead of retrying a wrong password forever."""

    def __init__(self, kafka: KafkaSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._kafka = kafka

    async def start(self) -> None:
        try:
            await start_client(super().start, self._kafka)
        except KafkaAuthError:
            with contextlib.suppress(Exception):  # what it opened; the refusal is the news
                await self.stop()
            raise
