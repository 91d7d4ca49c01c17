"""The `heatstream` command: one entry point, one subcommand group per stage.

The root callback builds the settings once (from `--config`, `HEATSTREAM_*`
variables and defaults) and hands them to subcommands through the typer
context; subcommands never read the environment themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from heatstream.settings import ConfigFileError, Settings, load_settings

app = typer.Typer(
    name="heatstream",
    help=(
        "Event-sourced telemetry for digital boilers: gateways publish to Kafka, "
        "stream processors compute heat recovery, anomalies and leaks, results land "
        "in InfluxDB and Grafana.\n\n"
        "Configuration comes from --config FILE (TOML), HEATSTREAM_* environment "
        "variables (nested with '__', e.g. HEATSTREAM_KAFKA__BOOTSTRAP) and defaults; "
        "'heatstream config show' prints the result."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML configuration file (default: $HEATSTREAM_CONFIG if set).",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    try:
        ctx.obj = load_settings(config)
    except ConfigFileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from exc
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        typer.secho(f"invalid configuration:\n{exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the root callback built (subcommands call this)."""
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    return settings


def _register() -> None:
    # Imported here so that `heatstream --help` stays fast: each module imports
    # its heavy dependencies (Faust, aiokafka, matplotlib) only when it runs.
    from heatstream.config_cli import app as config_app
    from heatstream.grafana.cli import app as grafana_app
    from heatstream.ingest.simulator.cli import SimulateCommand, simulate
    from heatstream.report.cli import report
    from heatstream.schemas_cli import app as schemas_app
    from heatstream.sinks.cli import sink
    from heatstream.stack.cli import app as stack_app
    from heatstream.streams.cli import replay, worker
    from heatstream.topics_cli import app as topics_app
    from heatstream.up_cli import up

    # The order is the order of `heatstream --help`: the main job first.
    app.command("up")(up)
    app.command("worker")(worker)
    app.command("sink")(sink)
    app.command("simulate", cls=SimulateCommand)(simulate)
    app.command("replay")(replay)
    app.command("report")(report)
    app.add_typer(stack_app, name="stack")
    app.add_typer(config_app, name="config")
    app.add_typer(schemas_app, name="schemas")
    app.add_typer(topics_app, name="topics")
    app.add_typer(grafana_app, name="grafana")


def main() -> None:
    _register()
    app()
