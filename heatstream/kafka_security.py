"""How every heatstream process connects to Kafka: bootstrap, TLS and SASL from `KafkaSettings`.

The gateway SDK, the worker (through Faust), the sink, `heatstream replay` and
`heatstream topics create` build their aiokafka clients from `client_kwargs`, so one
configuration means the same thing everywhere, and an inconsistent one stops start-up
with a message naming the setting to change (`KafkaConfigError`).

When a broker refuses what a client presents (a certificate the CA file does not vouch
for, a SASL mechanism it does not offer, a wrong user name or password), aiokafka hides
the cause: `KafkaConnectionError('Unable to bootstrap from [...]')` with the real error
only in a log line, or a bare `KeyError('v')` when the broker ends a SCRAM exchange with
an error message. `start_client` and `check_connection` turn these into `KafkaAuthError`,
a configuration error that retrying cannot fix, whose message names the broker, the
protocol, the mechanism and the user, never the password. A broker that is down or
unreachable is not an authentication failure: that is left to each caller's own retry.
"""

from __future__ import annotations

import asyncio
import ssl
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from heatstream.errors import HeatstreamError
from heatstream.settings import KafkaSettings

_ENV = "HEATSTREAM_KAFKA__"
_CREDENTIALS = (
    f"kafka.sasl_username and kafka.sasl_password ({_ENV}SASL_USERNAME, {_ENV}SASL_PASSWORD)"
)


#: TLS errors of a connection cut during the handshake: an outage, not a verdict.
_CUT_OFF = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


class KafkaConfigError(HeatstreamError, ValueError):
    """The Kafka security settings are inconsistent; the message says what to set."""


class KafkaAuthError(KafkaConfigError):
    """The broker refused the client's TLS or SASL identity: retrying cannot help."""


def client_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """bootstrap_servers, security_protocol, ssl_context and sasl_* for any aiokafka client.

    Raises KafkaConfigError for combinations that could never authenticate (SASL
    credentials with a non-SASL protocol, TLS files without TLS, a missing file...).
    """
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
                raise KafkaConfigError(f"{_ENV}{name.upper()} = {str(path)!r}: no such file")
        if kafka.ssl_keyfile is not None and kafka.ssl_certfile is None:
            raise KafkaConfigError(
                f"{_ENV}SSL_KEYFILE is set without {_ENV}SSL_CERTFILE: a client key needs its"
                " certificate"
            )
        kwargs["ssl_context"] = ssl_context(kafka)
    else:
        stray = [name for name, path in tls_files.items() if path is not None]
        if stray:
            raise KafkaConfigError(
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
            raise KafkaConfigError(
                f"{_ENV}SECURITY_PROTOCOL={protocol} needs " + ", ".join(_ENV + m for m in missing)
            )
        assert kafka.sasl_password is not None  # checked above, for mypy
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.sasl_username
        kwargs["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    elif kafka.sasl_mechanism or kafka.sasl_username or kafka.sasl_password:
        raise KafkaConfigError(
            f"SASL credentials are set but {_ENV}SECURITY_PROTOCOL={protocol}:"
            " set it to SASL_SSL (or SASL_PLAINTEXT), or remove the credentials"
        )
    return kwargs


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """The client's TLS context: the brokers' CA (the system's if unset), hostname checks on."""
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(
        cafile=_str(kafka.ssl_cafile),
        certfile=_str(kafka.ssl_certfile),
        keyfile=_str(kafka.ssl_keyfile),
    )


def describe(kafka: KafkaSettings) -> str:
    """How the clients connect, for messages and logs (no secret): 'SASL_SSL, SCRAM-SHA-512
    as user "gw-01"'."""
    if kafka.security_protocol.startswith("SASL"):
        return f"{kafka.security_protocol}, {kafka.sasl_mechanism} as user {kafka.sasl_username!r}"
    return kafka.security_protocol


def faust_credentials(kafka: KafkaSettings) -> dict[str, Any]:
    """`broker_credentials` for `faust.App` (nothing for PLAINTEXT), from the same checks."""
    kwargs = client_kwargs(kafka)
    if kafka.security_protocol == "PLAINTEXT":
        return {}
    from faust.auth import SASLCredentials, SSLCredentials

    if "sasl_mechanism" in kwargs:
        return {
            "broker_credentials": SASLCredentials(
                username=kwargs["sasl_plain_username"],
                password=kwargs["sasl_plain_password"],
                mechanism=kwargs["sasl_mechanism"],
                ssl_context=kwargs.get("ssl_context"),
            )
        }
    return {"broker_credentials": SSLCredentials(kwargs["ssl_context"])}


async def start_client(start: Callable[[], Awaitable[None]], kafka: KafkaSettings) -> None:
    """Await `start` (an aiokafka client's `start`); if the broker refused the client's
    TLS or SASL identity, raise KafkaAuthError saying so instead of aiokafka's error."""
    try:
        await start()
    except Exception as exc:
        refused = explain(exc, kafka)
        if refused is None and kafka.security_protocol != "PLAINTEXT":
            # aiokafka keeps the reason of a failed bootstrap in a log line only: ask again.
            refused = await _probe(kafka, timeout_s=5.0)
        if refused is not None:
            raise refused from exc
        raise


async def check_connection(kafka: KafkaSettings, timeout_s: float = 10.0) -> None:
    """Open one connection as every client does; raise KafkaAuthError if the broker
    refuses it. An unreachable broker passes: callers that wait for it keep doing so."""
    refused = await _probe(kafka, timeout_s)
    if refused is not None:
        raise refused


def explain(
    exc: BaseException, kafka: KafkaSettings, where: str | None = None
) -> KafkaAuthError | None:
    """KafkaAuthError if `exc` is a broker refusing this client's identity, else None."""
    from aiokafka import errors

    where = where or kafka.bootstrap
    if isinstance(exc, ssl.SSLCertVerificationError):
        trusted = f"the CA file {str(kafka.ssl_cafile)!r}" if kafka.ssl_cafile else "the system CAs"
        why = getattr(exc, "verify_message", None) or exc
        return KafkaAuthError(
            f"TLS: Kafka at {where} presented a certificate not trusted by {trusted} ({why});"
            f" set kafka.ssl_cafile ({_ENV}SSL_CAFILE) to the CA that signed the broker's"
            " certificate, and use a host name in kafka.bootstrap that the certificate names"
        )
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, _CUT_OFF):
        why = getattr(exc, "reason", None) or exc
        return KafkaAuthError(
            f"TLS: the handshake with Kafka at {where} failed ({why}); check that this listener"
            f" speaks TLS (kafka.security_protocol={kafka.security_protocol}) and"
            " kafka.ssl_cafile, ssl_certfile and ssl_keyfile"
        )
    if not kafka.security_protocol.startswith("SASL"):
        return None
    how = f"SASL {kafka.sasl_mechanism} authentication of user {kafka.sasl_username!r}"
    if isinstance(exc, errors.UnsupportedSaslMechanismError):
        offered = str(exc).partition("Enabled mechanisms are: ")[2]
        return KafkaAuthError(
            f"Kafka at {where} does not offer SASL mechanism {kafka.sasl_mechanism}"
            f" ({kafka.security_protocol}{'; it offers ' + offered if offered else ''}): set"
            f" kafka.sasl_mechanism ({_ENV}SASL_MECHANISM) to one the listener enables, or"
            " check that this listener has SASL on"
        )
    if isinstance(exc, errors.SaslAuthenticationFailed | errors.IllegalSaslStateError) or (
        _in_sasl_exchange(exc)
        and not isinstance(exc, errors.KafkaConnectionError | OSError | asyncio.TimeoutError)
    ):
        # A broker that ends a SCRAM exchange with an error ("e=...") instead of its
        # signature makes aiokafka fail with KeyError('v'): the credentials were refused.
        detail = (
            str(exc)
            if isinstance(exc, errors.KafkaError)
            else "the broker ended the exchange with an error instead of its proof"
        )
        return KafkaAuthError(
            f"Kafka at {where} refused {how} ({kafka.security_protocol}): {detail}; check"
            f" {_CREDENTIALS}, and that the user exists on the cluster with a"
            f" {kafka.sasl_mechanism} credential"
        )
    return None


async def _probe(kafka: KafkaSettings, timeout_s: float) -> KafkaAuthError | None:
    """Connect to each bootstrap server until one answers; why the first refused us, if so."""
    from aiokafka.conn import create_conn

    kwargs = client_kwargs(kafka)
    for host, port in _servers(kafka.bootstrap):
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host,
                    port,
                    client_id="heatstream-check",
                    request_timeout_ms=int(timeout_s * 1000),
                    ssl_context=kwargs.get("ssl_context"),
                    security_protocol=kwargs["security_protocol"],
                    sasl_mechanism=kwargs.get("sasl_mechanism"),
                    sasl_plain_username=kwargs.get("sasl_plain_username"),
                    sasl_plain_password=kwargs.get("sasl_plain_password"),
                ),
                timeout_s,
            )
        except Exception as exc:
            refused = explain(exc, kafka, f"{host}:{port}")
            if refused is not None:
                return refused
            continue  # down or unreachable: not a verdict on our identity
        conn.close()
        return None
    return None


def _servers(bootstrap: str) -> list[tuple[str, int]]:
    servers = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        servers.append((host.strip("[]") or "localhost", int(port or 9092)))
    return servers


def _in_sasl_exchange(exc: BaseException) -> bool:
    return any(
        frame.f_code.co_name == "_do_sasl_handshake"
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def _str(path: object) -> str | None:
    return None if path is None else str(path)
