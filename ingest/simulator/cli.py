"""`heatstream simulate`: run the fleet simulator against Kafka (or dry).

Thin: parses options into a `SimConfig` and `PublishOptions`, writes the
ground truth, runs `Publisher` with a rich progress bar, prints and writes the
simulator's own energy totals. See docs/simulator.md.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperCommand

from heatstream.errors import HeatstreamError
from heatstream.ingest.simulator.catalogue import describe_kinds
from heatstream.ingest.simulator.config import SimConfig, SimConfigError
from heatstream.ingest.simulator.engine import Period, Simulation
from heatstream.ingest.simulator.faultspec import (
    FAULT_HELP,
    FaultSpec,
    FaultSpecError,
    parse_fault_list,
    parse_fault_spec,
)
from heatstream.ingest.simulator.publish import Publisher, PublishOptions, PublishReport
from heatstream.ingest.simulator.timeparse import (
    format_duration_ms,
    iso_ms,
    parse_duration_ms,
    parse_instant_ms,
)

LIST_FAULTS = "list"  # `--faults list`, and what a bare `--faults` becomes
AUTO = "auto"
MAX_SAMPLES_AT_MAX_SPEED = 3000  # per frame, when --frame-span is auto and --speed max


class SimulateCommand(TyperCommand):
    """`simulate`, where `--faults` without a value means `--faults list`.

    Typer's parser has no options with an optional value, so a bare `--faults`
    (last, or followed by another option) gets its value here.
    """

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        args = list(args)
        i = 0
        while i < len(args):
            if args[i] == "--":
                break
            if args[i] == "--faults" and (i + 1 == len(args) or args[i + 1].startswith("-")):
                args.insert(i + 1, LIST_FAULTS)
            i += 1
        return super().parse_args(ctx, args)


app = typer.Typer(help="The fleet simulator.")


def _speed(text: str) -> float | None:
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: use 'max' or a factor such as 1, 10, 0.5", param_hint="--speed"
        ) from None
    if value <= 0:
        raise typer.BadParameter("must be positive", param_hint="--speed")
    return value


def _ms(text: str, hint: str) -> int:
    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from None


def fault_specs(kinds: str | None, pinned: list[str] | None) -> list[FaultSpec]:
    """`--faults KIND,...` then every `--fault SPEC`, parsed (also for `heatstream up`)."""
    try:
        specs = parse_fault_list(kinds) if kinds else []
        specs.extend(parse_fault_spec(text) for text in pinned or [])
    except FaultSpecError as exc:
        raise typer.BadParameter(str(exc), param_hint="--faults/--fault") from None
    return specs


def auto_frame_span_ms(speed: float | None, sample_ms: int, boilers_per_gateway: int) -> int:
    """1 s frames when paced (live latency); at --speed max, frames of up to a minute
    (at most ~3000 samples), because the per-message cost of SDK and broker, not the
    readings, would otherwise bound the speed."""
    if speed is not None:
        return max(1000, sample_ms) // sample_ms * sample_ms
    steps = max(1, MAX_SAMPLES_AT_MAX_SPEED // max(1, boilers_per_gateway))
    span = min(60_000, steps * sample_ms)
    return max(sample_ms, span // sample_ms * sample_ms)


def simulate(
    ctx: typer.Context,
    boilers: Annotated[int, typer.Option(help="Number of boilers (synthetic fleet).", min=1)] = 12,
    sites: Annotated[
        int,
        typer.Option(
            help="Number of sites; kinds rotate pool, residential, district heating.", min=1
        ),
    ] = 3,
    duration: Annotated[str, typer.Option(help="Simulated time: 90s, 30m, 6h, 1d, 1h30m.")] = "1h",
    start: Annotated[
        str, typer.Option(help="Simulated start (ISO 8601, UTC unless an offset is given).")
    ] = "2026-01-15T00:00Z",
    speed: Annotated[
        str, typer.Option(help="'max' (as fast as the broker takes it) or a factor of real time.")
    ] = "max",
    faults: Annotated[
        str | None,
        typer.Option(
            "--faults",
            help="Comma list of fault kinds, targets and times chosen from the seed ('all': one"
            " of each). Without a value (or 'list'): list the kinds and their parameters.",
        ),
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option("--fault", help=FAULT_HELP),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    truth: Annotated[
        Path | None,
        typer.Option(help="Write the injected faults here (JSON lines).", dir_okay=False),
    ] = None,
    totals: Annotated[
        Path | None,
        typer.Option(help="Write the simulator's energy totals here (JSON).", dir_okay=False),
    ] = None,
    sample_s: Annotated[float, typer.Option(help="Sample period in seconds.", min=0.1)] = 1.0,
    frame_span: Annotated[
        str,
        typer.Option(
            help="Event time per frame, e.g. 1s, 10s, 1m; 'auto': 1 s when paced, up to 1 min at"
            " --speed max."
        ),
    ] = AUTO,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="Gateway SDK state (spools, sequences); default: a fresh temporary dir.",
            file_okay=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            help="Also write every message as JSON lines {key, value}, per gateway.", dir_okay=False
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="No broker: run the SDK into --output (or nowhere).")
    ] = False,
    inventory: Annotated[
        Path | None,
        typer.Option(
            help="Simulate this inventory TOML instead of a synthetic fleet.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    nominal_kw: Annotated[
        float, typer.Option(help="Nominal IT power per boiler (synthetic).", min=1.0)
    ] = 100.0,
    topic: Annotated[
        str | None,
        typer.Option(help="Raw topic (default: heatstream.raw.events under kafka.topic_prefix)."),
    ] = None,
    cold_start: Annotated[
        bool, typer.Option("--cold-start", help="Start with cold loops at 20 °C (warm-up).")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar (default: when a terminal)."),
    ] = None,
) -> None:
    """Simulate digital boilers (physics, compute jobs, faults) and publish through the gateway SDK.

    Deterministic: the same seed and options give byte-identical messages and truth file.
    """
    if faults == LIST_FAULTS:
        typer.echo(describe_kinds())
        return
    from heatstream.cli import settings_of

    settings = settings_of(ctx)
    specs = fault_specs(faults, fault)
    try:
        start_ms = parse_instant_ms(start)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--start") from None
    speed_x = _speed(speed)
    sample_ms = round(sample_s * 1000)
    inv = None
    if inventory is not None:
        from heatstream.inventory import InventoryError, load_inventory

        try:
            inv = load_inventory(inventory)
        except InventoryError as exc:
            raise typer.BadParameter(str(exc), param_hint="--inventory") from None
        boilers, sites = len(inv.boilers), len(inv.sites)
        per_gateway = max(len(g.boilers) for g in inv.gateways)
    else:
        per_gateway = -(-boilers // sites)
    span_ms = (
        auto_frame_span_ms(speed_x, sample_ms, per_gateway)
        if frame_span.strip().lower() == AUTO
        else _ms(frame_span, "--frame-span")
    )
    try:
        config = SimConfig(
            boilers=boilers,
            sites=sites,
            start_ms=start_ms,
            duration_ms=_ms(duration, "--duration"),
            sample_ms=sample_ms,
            frame_span_ms=span_ms,
            seed=seed,
            faults=tuple(specs),
            nominal_it_kw=nominal_kw,
            warm_start=not cold_start,
        )
        sim = Simulation(config, inv)
    except (SimConfigError, FaultSpecError) as exc:
        raise typer.BadParameter(str(exc)) from None

    console = Console(stderr=True)
    if truth is not None:
        write_truth(truth, sim.truth())
    show = console.is_terminal if progress is None else progress
    options = PublishOptions(
        speed=speed_x,
        dry_run=dry_run,
        output=output,
        state_dir=state_dir,
        topic=topic,
    )
    console.print(
        f"simulating {sim.fleet.n_boilers} boilers at {sim.fleet.n_sites} sites from"
        f" {iso_ms(sim.start_ms)} for {format_duration_ms(sim.end_ms - sim.start_ms)}"
        f" (seed {seed}, {len(sim.faults)} faults, frames of {format_duration_ms(span_ms)},"
        f" {'dry run' if dry_run else settings.kafka.bootstrap})"
    )
    simulated = sim.end_ms - sim.start_ms
    if simulated != config.duration_ms:
        console.print(
            f"note: --duration {duration} is not a whole number of"
            f" {format_duration_ms(span_ms)} frames: simulating {format_duration_ms(simulated)}"
            " (set --frame-span to cover it exactly)"
        )
    try:
        report = run_with_progress(sim, settings.kafka, options, console, show)
    except HeatstreamError as exc:
        console.print(f"[red]simulation stopped:[/red] {exc}")
        raise typer.Exit(1) from None
    summary = sim.totals.summary()
    if totals is not None:
        write_totals(totals, sim, report, summary)
    print_summary(Console(), sim, report, summary)


def run_with_progress(
    sim: Simulation, kafka: Any, options: PublishOptions, console: Console, show: bool
) -> PublishReport:
    total_ms = sim.end_ms - sim.start_ms
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[sim_time]}"),
        TextColumn("{task.fields[messages]} msgs"),
        TimeElapsedColumn(),
        console=console,
        disable=not show,
        transient=False,
    ) as bar:
        task = bar.add_task("simulate", total=total_ms, sim_time="", messages=0)

        def on_progress(period: Period, report: PublishReport) -> None:
            bar.update(
                task,
                completed=period.end_ms - sim.start_ms,
                sim_time=iso_ms(period.end_ms)[:19],
                messages=report.frames + report.compute_events,
            )

        publisher = Publisher(sim, kafka, options, on_progress=on_progress)
        return asyncio.run(publisher.run())


def write_truth(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))


def write_totals(
    path: Path, sim: Simulation, report: PublishReport, summary: dict[str, Any]
) -> None:
    cfg = sim.config
    document = {
        "run": {
            "seed": cfg.seed,
            "start": sim.start_ms,
            "end": sim.end_ms,
            "sample_ms": cfg.sample_ms,
            "frame_span_ms": cfg.frame_span_ms,
            "boilers": sim.fleet.n_boilers,
            "sites": sim.fleet.n_sites,
            "faults": len(sim.faults),
        },
        "messages": {
            "frames": report.frames,
            "compute_events": report.compute_events,
            "duplicates": report.duplicates,
            "held_back": report.held_back,
            "malformed": report.malformed,
            "foreign": report.foreign,
            "accepted": report.accepted,
            "sent": report.sent,
            "raw_sent": report.raw_sent,
        },
        **summary,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


def print_summary(
    console: Console, sim: Simulation, report: PublishReport, summary: dict[str, Any]
) -> None:
    table = Table(title="simulated energy (true physical state, trapezoid over the samples sent)")
    for column in ("site", "kind", "boilers", "heat kWh", "IT kWh", "aux kWh", "ERF"):
        table.add_column(column, justify="left" if column in ("site", "kind") else "right")
    for site, entry in summary["sites"].items():
        table.add_row(
            site,
            entry["kind"],
            str(entry["boilers"]),
            f"{entry['heat_kwh']:.1f}",
            f"{entry['it_kwh']:.1f}",
            f"{entry['aux_kwh']:.1f}",
            f"{entry['erf']:.3f}",
        )
    fleet = summary["fleet"]
    table.add_row(
        "fleet",
        "",
        str(fleet["boilers"]),
        f"{fleet['heat_kwh']:.1f}",
        f"{fleet['it_kwh']:.1f}",
        f"{fleet['aux_kwh']:.1f}",
        f"{fleet['erf']:.3f}",
        style="bold",
    )
    console.print(table)
    rate = (report.frames + report.compute_events) / report.wall_s if report.wall_s else 0.0
    console.print(
        f"{report.frames} frames, {report.compute_events} compute events"
        f" ({report.duplicates} copies, {report.held_back} held back, {report.malformed} malformed,"
        f" {report.foreign} foreign); {report.sent} sent + {report.raw_sent} raw in"
        f" {report.wall_s:.1f} s ({rate:.0f} msgs/s)"
    )


app.command("simulate", cls=SimulateCommand)(simulate)
