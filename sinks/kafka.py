"""aiokafka client arguments from `KafkaSettings` (bootstrap, TLS, SASL)."""

from __future__ import annotations

from typing import Any

from heatstream.settings import KafkaSettings


def client_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection arguments shared by the sink's consumer and producer."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap.split(","),
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        kwargs["ssl_context"] = create_ssl_context(
            cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None,
            certfile=str(kafka.ssl_certfile) if kafka.ssl_certfile else None,
            keyfile=str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None,
        )
    if kafka.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism or "PLAIN"
        kwargs["sasl_plain_username"] = kafka.sasl_username
        kwargs["sasl_plain_password"] = (
            kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        )
    return kwargs
