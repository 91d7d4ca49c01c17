"""`heatstream worker`: run the stream processor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def worker(
    ctx: typer.Context,
    datadir: Annotated[
        Path | None,
        typer.Option(help="Where RocksDB keeps this worker's table state (default: <stack.data_dir>/worker)."),
    ] = None,
    loglevel: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "warning",
) -> None:
    """Run the stream processor (a Faust worker) until interrupted.

    Reads the raw topic at kafka.bootstrap, writes heat windows, anomalies, leaks,
    data-quality issues, late events and dead letters to their topics. Start more
    workers with the same settings to spread the partitions (the gateways) over
    them; each needs its own --datadir when they share a machine. The inventory
    (HEATSTREAM_INVENTORY) must list every gateway and boiler that publishes:
    events from others are dead-lettered as unauthorised.
    """
    import faust

    from heatstream.cli import settings_of
    from heatstream.inventory import InventoryError, load_inventory
    from heatstream.streams.app import build_app

    settings = settings_of(ctx)
    try:
        inventory = load_inventory(settings.inventory)
    except InventoryError as exc:
        typer.secho(f"invalid inventory: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    app = build_app(settings, inventory, datadir=datadir)
    faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False).execute_from_commandline()
