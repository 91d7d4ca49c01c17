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
    # Imported here so that `heatstream --help` stays fast and a missing optional
    # stage never breaks the others.
    from heatstream.config_cli import app as config_app
    from heatstream.schemas_cli import app as schemas_app
    from heatstream.stack.cli import app as stack_app
    from heatstream.topics_cli import app as topics_app

    app.add_typer(config_app, name="config")
    app.add_typer(schemas_app, name="schemas")
    app.add_typer(stack_app, name="stack")
    app.add_typer(topics_app, name="topics")


def main() -> None:
    _register()
    app()
