"""Kafka connection settings reach the producer intact, and inconsistent ones stop
start-up with a message that names the setting to change."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from heatstream.ingest.config import GatewayConfig
from heatstream.ingest.errors import GatewayConfigError
from heatstream.ingest.producer import kafka_security_kwargs, producer_kwargs
from heatstream.settings import KafkaSettings


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A self-signed certificate (also used as the CA) and its key."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "client.pem", d / "client.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=gateway-test", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, cert, key


def test_plaintext_passes_only_bootstrap_and_protocol() -> None:
    kwargs = kafka_security_kwargs(KafkaSettings(bootstrap="k1:9092,k2:9092"))
    assert kwargs == {"bootstrap_servers": "k1:9092,k2:9092", "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_builds_an_ssl_context_and_reveals_the_secret_only_to_the_client(
    tls_files: tuple[Path, Path, Path],
) -> None:
    ca, cert, key = tls_files
    kafka = KafkaSettings(
        bootstrap="kafka.example:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="gw-01",
        sasl_password=SecretStr("s3cret"),
        ssl_cafile=ca,
        ssl_certfile=cert,
        ssl_keyfile=key,
    )
    kwargs = kafka_security_kwargs(kafka)
    context = kwargs.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any("gateway-test" in str(c.get("subject")) for c in context.get_ca_certs())
    assert kwargs == {
        "bootstrap_servers": "kafka.example:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "gw-01",
        "sasl_plain_password": "s3cret",
    }
    assert "s3cret" not in repr(kafka)


def test_ssl_without_client_certificate_uses_the_ca_only(
    tls_files: tuple[Path, Path, Path],
) -> None:
    ca, _, _ = tls_files
    kwargs = kafka_security_kwargs(KafkaSettings(security_protocol="SSL", ssl_cafile=ca))
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in kwargs


def test_sasl_plaintext_has_no_ssl_context() -> None:
    kwargs = kafka_security_kwargs(
        KafkaSettings(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_username="u",
            sasl_password=SecretStr("p"),
        )
    )
    assert "ssl_context" not in kwargs
    assert (kwargs["sasl_mechanism"], kwargs["sasl_plain_password"]) == ("PLAIN", "p")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
            "HEATSTREAM_KAFKA__SASL_PASSWORD",
        ),
        ({"sasl_username": "u", "sasl_password": "p"}, "SECURITY_PROTOCOL=PLAINTEXT"),
        ({"ssl_cafile": "/etc/hosts"}, "HEATSTREAM_KAFKA__SSL_CAFILE is set but"),
        ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "no such file"),
        (
            {"security_protocol": "SSL", "ssl_keyfile": "/etc/hosts"},
            "SSL_KEYFILE is set without HEATSTREAM_KAFKA__SSL_CERTFILE",
        ),
    ],
)
def test_inconsistent_settings_say_what_to_change(settings: dict, message: str) -> None:
    with pytest.raises(GatewayConfigError, match=message):
        kafka_security_kwargs(KafkaSettings(**settings))


def test_producer_guarantees(tmp_path: Path) -> None:
    config = GatewayConfig(gateway="gw-01", site="site-01", state_dir=tmp_path, compression=None)
    kwargs = producer_kwargs(config, KafkaSettings())
    assert kwargs["acks"] == "all"
    assert kwargs["enable_idempotence"] is False  # the embedded broker rejects InitProducerId
    assert "transactional_id" not in kwargs
    assert kwargs["compression_type"] is None
    assert kwargs["request_timeout_ms"] == config.send_timeout_ms
    assert kwargs["max_request_size"] == config.max_message_bytes
    gz = GatewayConfig(gateway="gw-01", site="site-01", state_dir=tmp_path)
    assert producer_kwargs(gz, KafkaSettings())["compression_type"] == "gzip"


def test_gateway_config_is_frozen_strict_and_checks_codecs(tmp_path: Path) -> None:
    config = GatewayConfig(gateway="gw-01", site="site-01", state_dir=tmp_path)
    assert config.topic is None and config.spool_full_policy == "reject_new"
    with pytest.raises(ValidationError):
        config.gateway = "gw-02"
    with pytest.raises(ValidationError, match="extra"):
        GatewayConfig(gateway="gw-01", site="site-01", state_dir=tmp_path, linger=5)
    with pytest.raises(ValidationError, match="gateway"):
        GatewayConfig(gateway="gw 01", site="site-01", state_dir=tmp_path)
    with pytest.raises(ValidationError, match="must hold at least one message"):
        GatewayConfig(gateway="gw-01", site="s", state_dir=tmp_path, spool_max_bytes=1000)
    from aiokafka import codec

    if not codec.has_zstd():
        with pytest.raises(ValidationError, match="cramjam"):
            GatewayConfig(gateway="gw-01", site="s", state_dir=tmp_path, compression="zstd")
