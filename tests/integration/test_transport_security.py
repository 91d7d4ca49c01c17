"""Transport security against real servers: Kafka over TLS and SASL/SCRAM, InfluxDB with
authentication, and secrets kept out of logs, printed configuration and dead letters.

What Tansu 0.6 allows (docs/security.md#transport-security, `security_support.py`):

* TLS: Tansu cannot serve it (its `--cert` and `--key` exclude each other), so a TLS
  terminator in front of it serves the broker's certificate, and the broker advertises
  the terminator. Every client connection is TLS, verified against a throwaway CA.
* SASL/SCRAM: Tansu with `--authentication` refuses every client without SCRAM, but no
  SCRAM user can authenticate to it (`test_tansu_06_scram_as_found`), so the success
  path of SCRAM is not tested here; every wrong-credential path is, over TLS and without.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr

from heatstream.influxql import QueryError, query
from heatstream.ingest.errors import GatewayClosedError
from heatstream.ingest.gateway import Gateway, GatewayConfig
from heatstream.inventory import Inventory, inventory_toml, synthetic_inventory
from heatstream.kafka_security import client_kwargs
from heatstream.schemas import topics
from heatstream.schemas.serde import decode_derived, encode
from heatstream.settings import KafkaSettings, Settings
from heatstream.sinks.errors import InfluxConfigError
from heatstream.sinks.lineprotocol import Point, encode_points
from heatstream.sinks.writers.v1 import V1Writer
from heatstream.stack.binaries import tansu_binary
from heatstream.stack.ports import free_port
from heatstream.stack.provision import create_topics
from heatstream.streams.replay import replay
from tests.integration.gateway_support import TansuBroker
from tests.integration.security_support import (
    AuthInflux,
    TlsFiles,
    TlsTerminator,
    create_scram_user_unauthenticated,
    make_tls_files,
    scram_server_final,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

# Distinctive, so that finding one anywhere in an output is never a coincidence.
SASL_USER = "svc-heatstream"
SASL_PASSWORD = "kafka-pw-Q7x3VwZ9"
INFLUX_ADMIN = "hsadmin"
INFLUX_PASSWORD = "influx-pw-K2m8RtY4"
INFLUX_TOKEN = "influx-token-J5n1PzX6"
HMAC_KEY = "hmac-key-Z3c7Lq0W-0123456789abcdef0123456789"
SECRETS = (SASL_PASSWORD, INFLUX_PASSWORD, INFLUX_TOKEN, HMAC_KEY)
FAST_S = 20.0  # "fails fast": a refused credential is reported within this


@dataclass(frozen=True, slots=True)
class Broker:
    bootstrap: str  # the TLS terminator: what clients use
    plain_port: int  # Tansu itself, without TLS


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def _broker(log_dir: Path, tls: TlsFiles, *args: str) -> Iterator[Broker]:
    terminator_port = free_port("127.0.0.1")  # the broker advertises the terminator
    tansu = TansuBroker(log_dir, advertised_port=terminator_port, extra_args=args)
    tansu.start()
    terminator = TlsTerminator(tansu.port, tls, port=terminator_port)
    terminator.start()
    try:
        yield Broker(f"127.0.0.1:{terminator_port}", tansu.port)
    finally:
        terminator.stop()
        tansu.stop()


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles) -> Iterator[Broker]:
    """Tansu without authentication, reached over TLS."""
    yield from _broker(tmp_path_factory.mktemp("tansu-tls"), tls)


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles) -> Iterator[Broker]:
    """Tansu that requires SASL (`--authentication`), reached over TLS or directly."""
    yield from _broker(tmp_path_factory.mktemp("tansu-auth"), tls, "--authentication")


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthInflux]:
    server = AuthInflux(tmp_path_factory.mktemp("influx-auth"), INFLUX_ADMIN, INFLUX_PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def tls_kafka(broker: Broker, tls: TlsFiles, **more: object) -> KafkaSettings:
    return KafkaSettings(
        bootstrap=broker.bootstrap, security_protocol="SSL", ssl_cafile=tls.ca, **more
    )


def scram_kafka(broker: Broker, tls: TlsFiles) -> KafkaSettings:
    return KafkaSettings(
        bootstrap=broker.bootstrap,
        security_protocol="SASL_SSL",
        ssl_cafile=tls.ca,
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=SASL_USER,
        sasl_password=SecretStr(SASL_PASSWORD),
    )


def env_of(settings: Settings, **more: str) -> dict[str, str]:
    """The settings as HEATSTREAM_* variables (secrets in clear: this is how they reach
    a process), on top of an environment without the developer's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATSTREAM_")}
    for section in ("kafka", "influxdb", "streams"):
        for name, value in getattr(settings, section).model_dump().items():
            if value is not None:
                secret = value.get_secret_value() if isinstance(value, SecretStr) else value
                env[f"HEATSTREAM_{section.upper()}__{name.upper()}"] = str(secret)
    env["HEATSTREAM_APP_ID"] = settings.app_id
    if settings.inventory is not None:
        env["HEATSTREAM_INVENTORY"] = str(settings.inventory)
    env.update(more)
    return env


def heatstream(*args: str, env: dict[str, str], timeout_s: float = 60.0) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "heatstream", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret appears in {where}"


# -- the pipeline over TLS, InfluxDB with credentials --------------------------------------


T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SECONDS = 200  # three closed 1-minute windows per boiler once the watermark passes 190 s


def signed_inventory() -> Inventory:
    inv = synthetic_inventory(boilers=3, sites=1)
    (gateway,) = inv.gateways
    keyed = gateway.model_copy(update={"hmac_key": SecretStr(HMAC_KEY)})
    return Inventory(sites=inv.sites, gateways=(keyed,), boilers=inv.boilers)


async def publish(kafka: KafkaSettings, inventory: Inventory, state: Path) -> None:
    (gw,) = inventory.gateways
    now = [T0]
    config = GatewayConfig(
        gateway=gw.id,
        site=gw.site,
        state_dir=state,
        hmac_key=SecretStr(HMAC_KEY),
        linger_ms=None,  # frames seal by event-time span: deterministic
    )
    async with Gateway(config, kafka, clock_ms=lambda: now[0] + 80) as gateway:
        for second in range(SECONDS):
            now[0] = T0 + second * 1000
            for b, boiler in enumerate(gw.boilers):
                await gateway.add_sample(
                    boiler,
                    now[0],
                    {
                        "supply_temp_c": 62.0 + b,
                        "return_temp_c": 45.0,
                        "flow_lpm": 12.0,
                        "it_power_kw": 20.0,
                        "aux_power_kw": 0.5,
                        "pressure_bar": 1.8,
                    },
                )
        frame = gateway.seal()
        assert frame is not None
        await gateway.send_raw(b"not json at all", key=gw.id.encode())  # decode_error
        await gateway.send_raw(encode(frame), key=gw.id.encode())  # unsigned: unauthenticated
        await gateway.flush()
        assert await gateway.wait_drained(30)


async def read_all(kafka: KafkaSettings, topic: str, want: int, timeout_s: float) -> list[bytes]:
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), group_id=None, enable_auto_commit=False)
    await consumer.start()
    values: list[bytes] = []
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        parts = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout_s
        while len(values) < want and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return values


def wait_for_rows(settings: Settings, measurement: str, want: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    rows = 0
    while time.monotonic() < deadline:
        rows = sum(len(s.values) for s in query(settings.influxdb, f"SELECT * FROM {measurement}"))
        if rows >= want:
            break
        time.sleep(1.0)
    return rows


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_over_tls_the_gateway_worker_sink_and_replay_work_and_keep_secrets(
    tls_broker: Broker, tls: TlsFiles, influx: AuthInflux, tmp_path: Path, unique_name
) -> None:
    prefix = unique_name("sec") + "."
    database = unique_name("db")
    influx.create_database(database)
    inventory = signed_inventory()
    inventory_file = tmp_path / "inventory.toml"
    inventory_file.write_text(inventory_toml(inventory))
    settings = Settings(
        app_id=prefix.rstrip("."),
        inventory=inventory_file,
        kafka=tls_kafka(tls_broker, tls, topic_prefix=prefix, partitions=2),
        influxdb=influx.settings(database),
        streams={
            "allowed_lateness_s": 10,
            "max_gap_s": 5,
            # Every window closes as soon as lateness and gap allow: the test counts
            # the windows of a short log.
            "close_spread_s": 0,
            "liveness_check_s": 0,
            "session_timeout_s": 6,
        },
    )
    env = env_of(settings)

    code, out, _ = heatstream("topics", "create", env=env)
    assert code == 0 and "created" in out, out

    worker_log, sink_log = tmp_path / "worker.log", tmp_path / "sink.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "heatstream", "worker", "--datadir", str(tmp_path / "worker")],
        env=env,
        stdout=worker_log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    sink = subprocess.Popen(
        [sys.executable, "-m", "heatstream", "sink", "--flush-interval", "0.5",
         "--downsample", "0", "--health-interval", "3600"],
        env=env,
        stdout=sink_log.open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        asyncio.run(publish(settings.kafka, inventory, tmp_path / "gateway"))
        windows = wait_for_rows(settings, "heat_window", want=9, timeout_s=90)
        assert windows == 9, worker_log.read_text()[-3000:] + sink_log.read_text()[-3000:]
        assert wait_for_rows(settings, "dead_letter", want=2, timeout_s=30) == 2
    finally:
        stop(worker)
        stop(sink)

    dead = topics.topic_name(topics.DEAD_LETTERS, prefix)
    letters = asyncio.run(read_all(settings.kafka, dead, want=2, timeout_s=20))
    reasons = {decode_derived(letter).reason for letter in letters}
    assert reasons == {"decode_error", "unauthenticated"}
    for letter in letters:
        assert_no_secret(letter.decode("utf-8", "replace"), f"a dead letter on {dead}")
    assert_no_secret(worker_log.read_text(), "the worker's log")
    assert_no_secret(sink_log.read_text(), "the sink's log")

    # Replay reads the raw log over TLS too, and rebuilds the same windows.
    out_prefix = "replay." + prefix
    asyncio.run(
        create_topics(
            settings.kafka.bootstrap, settings.kafka.model_copy(update={"topic_prefix": out_prefix})
        )
    )
    stats = asyncio.run(
        replay(settings, inventory, to_topics=True, output_prefix=out_prefix, to_influx=False)
    )
    assert stats.by_topic[topics.topic_name(topics.HEAT_WINDOWS, out_prefix)] == 9
    assert stats.by_topic[topics.topic_name(topics.DEAD_LETTERS, out_prefix)] == 2


# -- wrong Kafka credentials: every component stops at once and says why -------------------


def assert_says_why(text: str, broker: Broker, mechanism: str = "SCRAM-SHA-512") -> None:
    assert broker.bootstrap in text or str(broker.plain_port) in text, text
    assert mechanism in text and SASL_USER in text and "kafka.sasl_password" in text, text
    assert_no_secret(text, "the error output")


async def gateway_outcome(kafka: KafkaSettings, state: Path) -> str:
    config = GatewayConfig(gateway="gw-01", site="site-01", state_dir=state, linger_ms=None)
    gateway = Gateway(config, kafka)
    await gateway.start()
    try:
        await gateway.add_sample("boiler-0001", T0, {"supply_temp_c": 60.0})
        deadline = time.monotonic() + FAST_S
        while time.monotonic() < deadline:  # flush returns while the sender is failing
            await gateway.flush()
            await asyncio.sleep(0.2)
        return "still running"
    except GatewayClosedError as exc:
        return str(exc)
    finally:
        with pytest.raises(GatewayClosedError):  # close() reports why it had stopped
            await gateway.close()


def test_a_wrong_password_stops_the_gateway_at_once(
    auth_broker: Broker, tls: TlsFiles, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # even aiokafka's debug log must not show it
    started = time.monotonic()
    outcome = asyncio.run(gateway_outcome(scram_kafka(auth_broker, tls), tmp_path))
    assert time.monotonic() - started < FAST_S
    assert "refused SASL SCRAM-SHA-512 authentication" in outcome, outcome
    assert_says_why(outcome, auth_broker)
    assert_no_secret(caplog.text, "the gateway's log")


@pytest.mark.parametrize(
    "command",
    [
        ("worker",),
        ("sink",),
        ("topics", "create"),
        ("replay", "--no-influx"),
    ],
    ids=lambda c: " ".join(c),
)
def test_a_wrong_password_stops_each_command_at_once(
    command: tuple[str, ...],
    auth_broker: Broker,
    tls: TlsFiles,
    influx: AuthInflux,
    tmp_path: Path,
) -> None:
    settings = Settings(
        app_id="wrong-password",
        kafka=scram_kafka(auth_broker, tls),
        influxdb=influx.settings("heatstream"),
    )
    args = [*command, "--datadir", str(tmp_path)] if command == ("worker",) else [*command]
    code, out, seconds = heatstream(*args, env=env_of(settings))
    assert code == 1, out
    assert seconds < FAST_S, out
    assert "Traceback" not in out, out
    assert_says_why(out, auth_broker)


def test_sasl_without_tls_is_refused_as_clearly(auth_broker: Broker) -> None:
    settings = Settings(
        kafka=KafkaSettings(
            bootstrap=f"127.0.0.1:{auth_broker.plain_port}",
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_username=SASL_USER,
            sasl_password=SecretStr(SASL_PASSWORD),
        )
    )
    code, out, seconds = heatstream("topics", "create", env=env_of(settings))
    assert (code, seconds < FAST_S) == (1, True), out
    assert "SASL_PLAINTEXT" in out
    assert_says_why(out, auth_broker, mechanism="SCRAM-SHA-256")


def test_an_untrusted_broker_certificate_stops_clients_at_once(
    tls_broker: Broker, tls: TlsFiles, tmp_path: Path
) -> None:
    kafka = KafkaSettings(
        bootstrap=tls_broker.bootstrap, security_protocol="SSL", ssl_cafile=tls.other_ca
    )
    started = time.monotonic()
    outcome = asyncio.run(gateway_outcome(kafka, tmp_path / "gateway"))
    code, out, _ = heatstream(
        "worker", "--datadir", str(tmp_path), env=env_of(Settings(kafka=kafka))
    )
    assert time.monotonic() - started < 2 * FAST_S
    for text in (outcome, out):
        assert f"TLS: Kafka at {tls_broker.bootstrap} presented a certificate not trusted" in text
        assert "kafka.ssl_cafile" in text and "Traceback" not in text
    assert code == 1


# -- InfluxDB with authentication ---------------------------------------------------------


async def write_and_check(writer: V1Writer, point: Point) -> None:
    await writer.start()
    try:
        await writer.check()
        await writer.write(encode_points([point], "ms"), "ms")
    finally:
        await writer.close()


def test_influxdb_takes_the_right_credentials_and_refuses_wrong_ones_at_once(
    influx: AuthInflux, tls_broker: Broker, tls: TlsFiles, unique_name
) -> None:
    database = unique_name("db")
    influx.create_database(database)
    right = influx.settings(database)
    asyncio.run(write_and_check(V1Writer(right), Point.at_ms("probe", {"k": "v"}, {"x": 1.0}, T0)))
    assert [s.values for s in query(right, "SELECT x FROM probe")] == [[[T0, 1.0]]]

    wrong = influx.settings(database, password=SASL_PASSWORD)
    with pytest.raises(InfluxConfigError) as refused:
        asyncio.run(write_and_check(V1Writer(wrong), Point.at_ms("probe", {}, {"x": 2.0}, T0)))
    message = str(refused.value)
    assert f"InfluxDB at {influx.url} answered 401: authorization failed" in message
    assert "check the credentials" in message
    with pytest.raises(QueryError, match=r"answered 401.*check influxdb\.username"):
        query(wrong, "SELECT x FROM probe")

    # The sink with a wrong InfluxDB password: stops, says why, no retry loop.
    settings = Settings(kafka=tls_kafka(tls_broker, tls), influxdb=wrong)
    code, out, seconds = heatstream("sink", env=env_of(settings))
    assert (code, seconds < FAST_S) == (1, True), out
    assert f"InfluxDB at {influx.url} answered 401" in out and "Traceback" not in out, out
    # One refusal, not one per retry. Counted by its words: a bare "401" also
    # matches the random ports the output names (a broker on 127.0.0.1:54015).
    assert out.count("answered 401") == 1, out
    assert_no_secret(out, "the sink's output")


# -- printed configuration ----------------------------------------------------------------


def test_config_show_masks_every_secret() -> None:
    settings = Settings(
        kafka={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": SASL_USER,
            "sasl_password": SASL_PASSWORD,
        },
        influxdb={"username": INFLUX_ADMIN, "password": INFLUX_PASSWORD, "token": INFLUX_TOKEN},
    )
    env = env_of(settings)
    for args in (("config", "show"), ("config", "show", "--json")):
        code, out, _ = heatstream(*args, env=env)
        assert code == 0, out
        assert SASL_USER in out and out.count("**********") == 3, out
        assert_no_secret(out, " ".join(args))


# -- Tansu 0.6 as found ---------------------------------------------------------------------


def test_tansu_06_scram_as_found(auth_broker: Broker, tls: TlsFiles) -> None:
    """Why the success path of TLS and SCRAM is not tested against Tansu itself.

    When this test fails, Tansu changed: check whether it now serves TLS and
    authenticates SCRAM users, and if so test the SCRAM success path for real
    (gateway, worker and sink with the right password).
    """
    # 1. No TLS: --cert and --key are in one clap group, so they exclude each other.
    refused = subprocess.run(
        [str(tansu_binary()), "broker", "--cert", str(tls.cert), "--key", str(tls.key)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert refused.returncode != 0
    assert "'--cert <CERT>' cannot be used with '--key <KEY>'" in refused.stderr

    # 2. With --authentication, `tansu user create` cannot authenticate (it speaks no
    #    SASL), and no user exists to authenticate as. A client that ignores the server's
    #    final "e=unknown-user" is admitted all the same (an authentication bypass) and
    #    can create a user through AlterUserScramCredentials, which answers success...
    final, error_code = asyncio.run(
        create_scram_user_unauthenticated(
            auth_broker.plain_port, "alice", "alice-pw", "SCRAM-SHA-512"
        )
    )
    assert (final, error_code) == ("e=unknown-user", 0)
    # 3. ...but that user is still unknown to the authenticator, right password or not.
    assert (
        asyncio.run(
            scram_server_final(auth_broker.plain_port, "alice", "alice-pw", "SCRAM-SHA-512")
        )
        == "e=unknown-user"
    )
