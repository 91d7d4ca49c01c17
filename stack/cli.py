"""`heatstream stack`: run the embedded development stack from a terminal.

`up` starts Tansu and InfluxDB detached and exits; `status` and `down`, run later,
find them through the state file in the data directory. The commands only parse,
call `EmbeddedStack` and print.
"""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from heatstream.settings import Settings
from heatstream.stack.errors import ProvisioningError, StackError
from heatstream.stack.layout import StackLayout
from heatstream.stack.status import StackStatus

if TYPE_CHECKING:
    from heatstream.stack.embedded import EmbeddedStack

app = typer.Typer(
    help=(
        "Run a local Kafka-protocol broker (Tansu) and InfluxDB 1.6 for development "
        "and tests. State, logs and InfluxDB data live in the data directory "
        "(settings stack.data_dir, env HEATSTREAM_STACK__DATA_DIR, default ./.heatstream); "
        "ports are free loopback ports unless HEATSTREAM_STACK__KAFKA_PORT / "
        "HEATSTREAM_STACK__INFLUX_PORT are set."
    ),
    no_args_is_help=True,
)

_err = Console(stderr=True)


def _stack_class() -> type[EmbeddedStack]:
    # Imported on use: aiokafka and httpx would slow every `heatstream --help`.
    from heatstream.stack.embedded import EmbeddedStack

    return EmbeddedStack


def _settings(ctx: typer.Context) -> Settings:
    from heatstream.cli import settings_of

    return settings_of(ctx)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _exports(stack: EmbeddedStack) -> list[str]:
    return [
        f"export HEATSTREAM_KAFKA__BOOTSTRAP={stack.bootstrap}",
        f"export HEATSTREAM_INFLUXDB__URL={stack.influx_url}",
        "export HEATSTREAM_INFLUXDB__API=v1",
    ]


def _describe(status: StackStatus) -> list[str]:
    k, i = status.kafka, status.influxdb

    def mark(healthy: bool, running: bool) -> str:
        return "healthy" if healthy else ("UNHEALTHY" if running else "NOT RUNNING")

    return [
        f"  Kafka (tansu)  {status.bootstrap}  pid {k.pid}  {mark(k.healthy, k.running)}"
        + ("" if k.healthy else f" ({k.detail})"),
        f"    log: {k.log}",
        f"  InfluxDB 1.6   {status.influx_url}  database {status.database!r}  pid {i.pid}  "
        + mark(i.healthy, i.running)
        + ("" if i.healthy else f" ({i.detail})"),
        f"    log: {i.log}",
    ]


@app.command("up")
def up(ctx: typer.Context) -> None:
    """Start the broker and InfluxDB in the background, create the topics and database.

    When the stack is already up it only re-checks topics and database.
    Prints the environment variables that point heatstream at it.
    """
    settings = _settings(ctx)
    try:
        existing = _stack_class().recorded(settings)
        if existing is not None:
            status = existing.status()
            if status.kafka.running and status.influxdb.running:
                _already_up(existing)
                return
            typer.echo("The recorded stack is no longer fully running; cleaning up its leftovers.")
            existing.stop()

        stack = _stack_class()(settings, detach=True)
        with _err.status("Starting Tansu and InfluxDB…") as spinner:
            provisioned = stack.start(progress=spinner.update)
        status = stack.status()
    except StackError as exc:
        raise _fail(str(exc)) from exc

    typer.echo(f"Embedded stack up (data and logs in {status.data_dir}):")
    typer.echo("\n".join(_describe(status)))
    typer.echo(
        f"  topics: {len(provisioned.created)} created, {len(provisioned.existing)} already there; "
        f"InfluxDB database {stack.database!r} ready"
    )
    typer.echo(
        "  note: Tansu keeps its log in memory (topics and messages are lost at `down`); "
        f"InfluxDB data persists in {stack.layout.influx_dir}"
    )
    typer.echo("\n".join(["", "Point heatstream at it:", *_exports(stack)]))
    typer.echo('(or: eval "$(heatstream stack env)")   Stop it with: heatstream stack down')


def _already_up(stack: EmbeddedStack) -> None:
    # Provision again: the configured topic prefix or database may have changed.
    problem = ""
    try:
        stack.provision()
    except ProvisioningError as exc:
        problem = f"{exc}\n"
    status = stack.status()
    if not status.healthy or problem:
        lines = "\n".join(_describe(status))
        raise _fail(
            f"Embedded stack is running but unhealthy:\n{problem}{lines}\n"
            "Check the logs, then restart it: heatstream stack down && heatstream stack up"
        )
    typer.echo(f"Embedded stack already up (data dir {status.data_dir}):")
    typer.echo("\n".join(_describe(status)))
    typer.echo("\n".join(["", "Point heatstream at it:", *_exports(stack)]))


@app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help=(
                'Print JSON: {"healthy", "data_dir", "kafka": {"bootstrap", "healthy", '
                '"running", "pid", "log", "detail"}, "influxdb": {"url", "database", ...}}.'
            ),
        ),
    ] = False,
) -> None:
    """Is the stack running and healthy? Exit code 0 when both servers are healthy, 1 otherwise.

    Healthy: the broker answers a metadata request, InfluxDB answers /ping,
    and the configured database exists.
    """
    settings = _settings(ctx)
    try:
        stack_cls = _stack_class()
        stack = stack_cls.recorded(settings) or stack_cls(settings, detach=True)
        report = stack.status()
    except StackError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    elif report.running:
        verdict = "healthy" if report.healthy else "NOT healthy"
        typer.echo(f"Embedded stack {verdict} (data dir {report.data_dir}):")
        typer.echo("\n".join(_describe(report)))
    else:
        typer.echo(
            f"Embedded stack not running (data dir {report.data_dir}); "
            "start it: heatstream stack up"
        )
    if not report.healthy:
        raise typer.Exit(1)


@app.command("env")
def env(ctx: typer.Context) -> None:
    """Print `export` lines that point heatstream at the running stack.

    Use: eval "$(heatstream stack env)"
    """
    settings = _settings(ctx)
    try:
        stack = _stack_class().recorded(settings)
    except StackError as exc:
        raise _fail(str(exc)) from exc
    running = stack is not None and all(
        server is not None and server.alive() for server in (stack.kafka, stack.influxdb)
    )
    if stack is None or not running:
        raise _fail("Embedded stack not running; start it: heatstream stack up")
    typer.echo("\n".join(_exports(stack)))


@app.command("down")
def down(
    ctx: typer.Context,
    purge: Annotated[
        bool,
        typer.Option(
            "--purge",
            help="Also delete the InfluxDB data and the logs in the data directory.",
        ),
    ] = False,
) -> None:
    """Stop the broker and InfluxDB (SIGTERM, then SIGKILL after 10 s) and wait for them to exit.

    Succeeds (exit 0) when nothing is running.
    """
    settings = _settings(ctx)
    layout = StackLayout.under(settings.stack.data_dir)
    try:
        stack = _stack_class().recorded(settings)
        if stack is None:
            typer.echo(f"Embedded stack not running (nothing recorded in {layout.root}).")
        else:
            assert stack.kafka is not None and stack.influxdb is not None
            was_running = stack.kafka.alive() or stack.influxdb.alive()
            stack.stop()
            if was_running:
                typer.echo(
                    f"Embedded stack stopped (tansu pid {stack.kafka.pid}, "
                    f"influxd pid {stack.influxdb.pid})."
                )
            else:
                typer.echo("Embedded stack was not running; cleared its stale state file.")
    except StackError as exc:
        raise _fail(str(exc)) from exc
    if purge:
        for path in (layout.influx_dir, layout.logs):
            shutil.rmtree(path, ignore_errors=True)
        typer.echo(f"Deleted InfluxDB data and logs under {layout.root}.")
