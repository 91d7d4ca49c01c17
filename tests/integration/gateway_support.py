"""Helpers of the gateway SDK's integration tests.

`TansuBroker` is a broker of the test's own, which it may kill and restart
(the session `stack` broker must stay up for everyone else). Tansu keeps its
log in memory only, so a restart comes back empty and topics must be created
again *before* any producer that knew the old broker reaches it: Tansu 0.6
acknowledges a produce to a partition of a topic that no longer exists and the
records are then unreadable (seen here: acked offsets that never come back).

`Outage` is a TCP relay in front of a broker that advertises the relay's
port: taking it down refuses and cuts every connection, as a broker that went
away or a cut network link does, while the broker keeps its log.

`read_topic` reads every partition from the start without a consumer group,
so no group membership or session timeout can slow a test down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from heatstream.stack.binaries import tansu_binary
from heatstream.stack.ports import free_port, is_listening
from heatstream.stack.process import ServerProcess, spawn


class TansuBroker:
    """A Tansu process on a fixed loopback port, restartable on the same port.

    `advertised_port`: the port clients are told to use (a relay's), when not
    the port it listens on; `extra_args`: more `tansu broker` options.
    """

    def __init__(
        self,
        log_dir: Path,
        port: int | None = None,
        advertised_port: int | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.extra_args = extra_args  # e.g. ("--authentication",)
        self.port = port or free_port("127.0.0.1")
        self.advertised_port = advertised_port or self.port
        self.bootstrap = f"127.0.0.1:{self.advertised_port}"
        self.log_dir = log_dir
        self.process: ServerProcess | None = None
        self._starts = 0

    def start(self, timeout_s: float = 20.0) -> None:
        self._starts += 1
        argv = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{self.advertised_port}",
            *self.extra_args,
        ]
        self.process = spawn(
            "tansu", argv, self.log_dir / f"tansu-{self._starts}.log", detach=False
        )
        deadline = time.monotonic() + timeout_s
        while not is_listening("127.0.0.1", self.port, 0.2):
            if not self.process.alive() or time.monotonic() > deadline:
                tail = self.process.log_tail()
                raise RuntimeError(f"tansu did not start on port {self.port}:\n{tail}")
            time.sleep(0.05)

    def kill(self) -> None:
        """The broker dies at once (SIGKILL), like a crashed machine."""
        if self.process is not None:
            self.process.stop(grace_s=0.0)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


class Outage:
    """A TCP relay 127.0.0.1:port -> 127.0.0.1:target that can be taken down and up.

    With `ssl_context`, the listening side speaks TLS and the relay to the target stays
    in clear (a TLS terminator)."""

    def __init__(
        self,
        target_port: int,
        port: int | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.port = port or free_port("127.0.0.1")
        self.target_port = target_port
        self._ssl_context = ssl_context
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(
            self._relay, "127.0.0.1", self.port, ssl=self._ssl_context
        )

    async def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


async def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            await admin.create_topics(
                [
                    NewTopic(
                        topic,
                        num_partitions=partitions,
                        replication_factor=1,
                        topic_configs={"retention.ms": "-1", "cleanup.policy": "delete"},
                    )
                ]
            )
    finally:
        await admin.close()


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: int,
    timeout_s: float = 30.0,
    settle_s: float = 1.0,
) -> list[Record]:
    """Every record of `topic`, reading until at least `until` arrived (then `settle_s`
    more, to catch unexpected extras) or `timeout_s` passed."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=10_000,
    )
    await consumer.start()
    records: list[Record] = []
    try:
        partitions = None
        deadline = time.monotonic() + timeout_s
        while not partitions and time.monotonic() < deadline:
            with contextlib.suppress(KafkaError):
                await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await asyncio.sleep(0.2)
        if not partitions:
            return records
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        settle_deadline: float | None = None
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for tp, messages in batches.items():
                records.extend(Record(tp.partition, m.offset, m.key, m.value) for m in messages)
            if len(records) >= until:
                settle_deadline = settle_deadline or time.monotonic() + settle_s
                if time.monotonic() >= settle_deadline:
                    break
    finally:
        await consumer.stop()
    return records
