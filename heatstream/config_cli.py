"""`heatstream config`: inspect the effective configuration and the inventory."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from heatstream.settings import masked

app = typer.Typer(
    help="Inspect the effective configuration and the inventory.", no_args_is_help=True
)


@app.command("show")
def show(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of TOML-like text.")
    ] = False,
) -> None:
    """Print the effective configuration (file, environment, defaults) with secrets masked."""
    from heatstream.cli import settings_of

    data = masked(settings_of(ctx))
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        if isinstance(value, dict):
            continue
        typer.echo(f"{key} = {json.dumps(value)}")
    for key, value in data.items():
        if isinstance(value, dict):
            typer.echo(f"\n[{key}]")
            for sub, item in value.items():
                typer.echo(f"{sub} = {json.dumps(item)}")


@app.command("inventory")
def inventory(ctx: typer.Context) -> None:
    """Validate the inventory file and summarise it (sites, gateways, boilers, emission factors).

    The file comes from `inventory` in the configuration (HEATSTREAM_INVENTORY);
    without one, the bundled example is used. Exits 2 with the offending field
    and value when the file is invalid.
    """
    from heatstream.cli import settings_of
    from heatstream.inventory import EXAMPLE_PATH, InventoryError, load_inventory

    settings = settings_of(ctx)
    try:
        inv = load_inventory(settings.inventory)
    except InventoryError as exc:
        typer.secho(f"invalid inventory: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"inventory: {settings.inventory or EXAMPLE_PATH}")
    for site in inv.sites:
        boilers = [b for b in inv.boilers if b.site == site.id]
        heat = site.displaced_heat
        typer.echo(
            f"  {site.id} ({site.kind}): {len(boilers)} boilers,"
            f" {sum(b.nominal_it_kw for b in boilers):.0f} kW IT;"
            f" displaces {heat.source} (efficiency {heat.efficiency},"
            f" {heat.emission_factor_kg_per_kwh} kg CO2e/kWh: {heat.factor_source})"
        )
    for gw in inv.gateways:
        typer.echo(f"  gateway {gw.id} @ {gw.site}: {', '.join(gw.boilers)}")
