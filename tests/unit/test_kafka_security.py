"""Every Kafka client gets the same connection arguments, and a broker refusing the
client's identity is told apart from a broker that is merely unreachable."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from aiokafka import errors
from pydantic import SecretStr

from heatstream.kafka_security import (
    KafkaAuthError,
    KafkaConfigError,
    check_connection,
    client_kwargs,
    describe,
    explain,
    faust_credentials,
    start_client,
)
from heatstream.settings import KafkaSettings

SECRET = "pw-never-shown-4711"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ca")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=kafka-test-ca", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem")],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return d / "ca.pem"


def scram(ca: Path, protocol: str = "SASL_SSL") -> KafkaSettings:
    return KafkaSettings(
        bootstrap="k1:9093,[::1]:9094",
        security_protocol=protocol,  # type: ignore[arg-type]
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="gw-01",
        sasl_password=SecretStr(SECRET),
        ssl_cafile=ca if protocol == "SASL_SSL" else None,
    )


def test_inconsistent_settings_are_a_config_error_naming_the_variable() -> None:
    with pytest.raises(KafkaConfigError, match="HEATSTREAM_KAFKA__SASL_PASSWORD"):
        client_kwargs(KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                                    sasl_username="u"))  # fmt: skip
    assert issubclass(KafkaAuthError, KafkaConfigError) and issubclass(KafkaConfigError, ValueError)


def test_faust_gets_the_same_mechanism_credentials_and_tls_context(ca: Path) -> None:
    from faust.auth import SASLCredentials, SSLCredentials

    assert faust_credentials(KafkaSettings()) == {}
    creds = faust_credentials(scram(ca))["broker_credentials"]
    assert isinstance(creds, SASLCredentials)
    assert (creds.mechanism.value, creds.username, creds.password) == (
        "SCRAM-SHA-512",
        "gw-01",
        SECRET,
    )
    assert creds.protocol.value == "SASL_SSL" and isinstance(creds.ssl_context, ssl.SSLContext)
    assert SECRET not in repr(creds)
    plain = faust_credentials(scram(ca, "SASL_PLAINTEXT"))["broker_credentials"]
    assert plain.protocol.value == "SASL_PLAINTEXT" and plain.ssl_context is None
    tls = faust_credentials(KafkaSettings(security_protocol="SSL", ssl_cafile=ca))
    assert isinstance(tls["broker_credentials"], SSLCredentials)
    with pytest.raises(KafkaConfigError):
        faust_credentials(KafkaSettings(security_protocol="SASL_SSL"))


def test_describe_names_protocol_mechanism_and_user_but_no_secret(ca: Path) -> None:
    assert describe(scram(ca)) == "SASL_SSL, SCRAM-SHA-512 as user 'gw-01'"
    assert describe(KafkaSettings()) == "PLAINTEXT"


def _raised_in_sasl_handshake(exc: BaseException) -> BaseException:
    def _do_sasl_handshake() -> None:  # the name aiokafka's connection gives the exchange
        raise exc

    try:
        _do_sasl_handshake()
    except BaseException as raised:
        return raised
    raise AssertionError


def test_refusals_are_explained_and_outages_are_not(ca: Path) -> None:
    kafka = scram(ca)
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "self-signed certificate in certificate chain"
    refused = {
        "certificate": untrusted,
        "not TLS": ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
        "password": errors.SaslAuthenticationFailed("invalid credentials"),
        "SCRAM e=": _raised_in_sasl_handshake(KeyError("v")),
        "mechanism": errors.UnsupportedSaslMechanismError(
            "Kafka broker does not support SCRAM-SHA-512 sasl mechanism. Enabled mechanisms"
            " are: ['PLAIN']"
        ),
    }
    for what, exc in refused.items():
        explained = explain(exc, kafka)
        assert isinstance(explained, KafkaAuthError), what
        assert "k1:9093" in str(explained) and SECRET not in str(explained), what
    assert "self-signed" in str(explain(untrusted, kafka))
    assert "it offers ['PLAIN']" in str(explain(refused["mechanism"], kafka))
    password = str(explain(refused["password"], kafka))
    assert "SCRAM-SHA-512" in password and "'gw-01'" in password and "sasl_password" in password

    outages = [
        errors.KafkaConnectionError("Unable to bootstrap from [('k1', 9093)]"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
        _raised_in_sasl_handshake(errors.KafkaConnectionError("Connection at k1:9093 closed")),
        KeyError("v"),  # not from the SASL exchange: a bug, not a verdict
    ]
    for exc in outages:
        assert explain(exc, kafka) is None, exc
    # Without SASL, a SASL-looking failure is no verdict on credentials we do not send.
    assert explain(refused["password"], KafkaSettings()) is None


async def test_start_client_replaces_a_refusal_and_keeps_other_errors(ca: Path) -> None:
    kafka = scram(ca)

    async def refused() -> None:
        raise _raised_in_sasl_handshake(KeyError("v"))

    with pytest.raises(KafkaAuthError, match="refused SASL SCRAM-SHA-512 authentication"):
        await start_client(refused, kafka)

    async def bug() -> None:
        raise RuntimeError("not about Kafka")

    plaintext = KafkaSettings(bootstrap="127.0.0.1:1")
    with pytest.raises(RuntimeError, match="not about Kafka"):
        await start_client(bug, plaintext)


async def test_an_unreachable_broker_passes_the_check() -> None:
    # Nothing listens on port 1: an outage, for the callers' own retry to handle.
    await check_connection(KafkaSettings(bootstrap="127.0.0.1:1"), timeout_s=2.0)
