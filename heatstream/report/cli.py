"""`heatstream report`: write a site's monthly heat-reuse report (md, html or pdf).

Thin: resolve the inventory and the output, call `build_report`, render, write.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class ReportFormat(StrEnum):
    html = "html"
    md = "md"
    pdf = "pdf"


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _inventory_path(option: Path | None, configured: Path | None, data_dir: Path) -> Path | None:
    """--inventory, else the configured one, else the one `heatstream up` last wrote."""
    if option is not None:
        return option
    if configured is not None:
        return configured
    from_up = data_dir / "run" / "inventory.toml"
    return from_up if from_up.is_file() else None


def report(
    ctx: typer.Context,
    site: Annotated[
        str,
        typer.Option(
            "--site",
            help="Site id, as in the inventory and InfluxDB's `site` tag.",
            show_default=False,
        ),
    ],
    month: Annotated[
        str, typer.Option("--month", help="UTC calendar month, YYYY-MM.", show_default=False)
    ],
    fmt: Annotated[
        ReportFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="html (one self-contained file), md (Markdown, plot "
            "as a data-URI image) or pdf (A4). Default: --output's extension, else html.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="File to write. Default: report-SITE-MONTH.FORMAT in the current directory.",
            dir_okay=False,
        ),
    ] = None,
    inventory: Annotated[
        Path | None,
        typer.Option(
            "--inventory",
            help="Inventory TOML giving the site's name, displaced heat "
            "source, efficiency, emission factor and factor source. Default: "
            "HEATSTREAM_INVENTORY (setting `inventory`), else the one the last "
            "`heatstream up` wrote (STACK_DATA_DIR/run/inventory.toml), else the "
            "bundled example.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Write a site's monthly heat-reuse report, for the building owner and
    regulators.

    Data: everything is read from InfluxDB (settings influxdb.*, e.g.
    HEATSTREAM_INFLUXDB__URL; for the embedded stack run `eval "$(heatstream
    stack env)"` first): the site's 1-minute heat_window points, its anomaly and
    leak alerts and its data_quality issues (docs/measurements.md). Heat per day
    (plotted), heat, IT, auxiliary and total energy, ERF, average supply and
    return temperatures, CO2 avoided, coverage, downtime, alerts and
    data-quality counts; each figure states how it was computed and the InfluxQL
    used is in an appendix.

    Time zone: the month is the UTC calendar month and days are UTC days; the
    report names the site's own time zone (from the inventory) but does not
    shift days to it.

    Emission factor: the site's displaced_heat in the inventory (source,
    efficiency, emission_factor_kg_per_kwh and factor_source); see --inventory.
    CO2 avoided is the sum the pipeline stored, re-derived from that factor as a
    check.

    Exit status 2 when the site has no data that month (the sites that do are
    listed), the month is malformed or the inventory does not know the site.
    """
    from heatstream.cli import settings_of
    from heatstream.influxql import QueryError
    from heatstream.inventory import EXAMPLE_PATH, InventoryError, load_inventory
    from heatstream.report.data import ReportError, build_report, month_bounds

    settings = settings_of(ctx)
    try:
        month_bounds(month)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--month") from None
    if fmt is None:
        suffix = output.suffix.lower().lstrip(".") if output is not None else ""
        fmt = ReportFormat(suffix) if suffix in ReportFormat.__members__ else ReportFormat.html
    output = output or Path(f"report-{site}-{month}.{fmt.value}")

    path = _inventory_path(inventory, settings.inventory, settings.stack.data_dir)
    try:
        inv = load_inventory(path)
    except InventoryError as exc:
        raise _fail(str(exc), 2) from None
    label = str(path) if path is not None else f"bundled example ({EXAMPLE_PATH.name})"

    try:
        data = build_report(settings.influxdb, site, month, inv, label)
    except ReportError as exc:
        raise _fail(str(exc), 2) from None
    except QueryError as exc:
        raise _fail(
            f"{exc}\n(InfluxDB is set by HEATSTREAM_INFLUXDB__URL and "
            "HEATSTREAM_INFLUXDB__DATABASE, or --config)",
            1,
        ) from None

    if fmt is ReportFormat.pdf:
        from heatstream.report.render_pdf import render_pdf

        content: bytes = render_pdf(data)
    elif fmt is ReportFormat.md:
        from heatstream.report.render_md import render_md

        content = render_md(data).encode("utf-8")
    else:
        from heatstream.report.render_html import render_html

        content = render_html(data).encode("utf-8")
    try:
        output.write_bytes(content)
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc.strerror}", 1) from None
    erf = "n/a" if data.erf is None else f"{data.erf:.3f}"
    typer.echo(
        f"{output}: {fmt.value} report of {site} for {month} (UTC): heat {data.heat_kwh:,.1f} kWh, "
        f"ERF {erf}, CO2 avoided {data.co2_avoided_kg:,.1f} kg, coverage {data.coverage:.1%}, "
        f"{len(data.alerts)} alert(s)"
    )
