"""The aiokafka producer of a gateway, built from KafkaSettings in one place.

`kafka_security_kwargs` turns the deployment's Kafka settings (bootstrap, TLS
files, SASL credentials) into aiokafka arguments and refuses inconsistent
combinations at start-up with a message that says what to set, instead of a
connection that silently never authenticates. `producer_kwargs` adds the
delivery guarantees the gateway relies on: acks=all, no idempotence and no
transactions (the embedded broker rejects InitProducerId, and the spool plus
event-id de-duplication already give exactly-once results), bounded request
time so a dead broker turns into a retry from the spool.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from heatstream.ingest.config import GatewayConfig
from heatstream.ingest.errors import GatewayConfigError
from heatstream.settings import KafkaSettings

_ENV = "HEATSTREAM_KAFKA__"


def kafka_security_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """bootstrap_servers, security_protocol, ssl_context and sasl_* for any aiokafka client."""
    protocol = kafka.security_protocol
    uses_tls = protocol in ("SSL", "SASL_SSL")
    uses_sasl = protocol in ("SASL_PLAINTEXT", "SASL_SSL")
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap,
        "security_protocol": protocol,
    }

    tls_files = {
        "ssl_cafile": kafka.ssl_cafile,
        "ssl_certfile": kafka.ssl_certfile,
        "ssl_keyfile": kafka.ssl_keyfile,
    }
    if uses_tls:
        for name, path in tls_files.items():
            if path is not None and not path.is_file():
                raise GatewayConfigError(f"{_ENV}{name.upper()} = {str(path)!r}: no such file")
        if kafka.ssl_keyfile is not None and kafka.ssl_certfile is None:
            raise GatewayConfigError(
                f"{_ENV}SSL_KEYFILE is set without {_ENV}SSL_CERTFILE: a client key needs its"
                " certificate"
            )
        # cafile None: the system's trusted CAs verify the broker.
        kwargs["ssl_context"] = create_ssl_context(
            cafile=_str(kafka.ssl_cafile),
            certfile=_str(kafka.ssl_certfile),
            keyfile=_str(kafka.ssl_keyfile),
        )
    else:
        stray = [name for name, path in tls_files.items() if path is not None]
        if stray:
            raise GatewayConfigError(
                f"{_ENV}{stray[0].upper()} is set but {_ENV}SECURITY_PROTOCOL={protocol}:"
                " set it to SSL or SASL_SSL, or remove the TLS files"
            )

    if uses_sasl:
        missing = [
            name
            for name, value in (
                ("SASL_MECHANISM", kafka.sasl_mechanism),
                ("SASL_USERNAME", kafka.sasl_username),
                ("SASL_PASSWORD", kafka.sasl_password),
            )
            if value is None
        ]
        if missing:
            raise GatewayConfigError(
                f"{_ENV}SECURITY_PROTOCOL={protocol} needs " + ", ".join(_ENV + m for m in missing)
            )
        assert kafka.sasl_password is not None  # checked above, for mypy
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.sasl_username
        kwargs["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    elif kafka.sasl_mechanism or kafka.sasl_username or kafka.sasl_password:
        raise GatewayConfigError(
            f"SASL credentials are set but {_ENV}SECURITY_PROTOCOL={protocol}:"
            " set it to SASL_SSL (or SASL_PLAINTEXT), or remove the credentials"
        )
    return kwargs


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
    return AIOKafkaProducer(**producer_kwargs(config, kafka))


def _str(path: object) -> str | None:
    return None if path is None else str(path)
