"""`heatstream up`: the main job (see `heatstream.mainjob` for the moving parts)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from heatstream.ingest.simulator.faultspec import FAULT_HELP

DEFAULT_FAULTS = "slow_leak,fouling,pump_failure,malformed,duplicates,out_of_order"


def up(
    ctx: typer.Context,
    boilers: Annotated[int, typer.Option(help="Boilers in the simulated fleet.", min=1)] = 12,
    sites: Annotated[
        int, typer.Option(help="Sites (kinds rotate: pool, residential, district heating).", min=1)
    ] = 3,
    duration: Annotated[str, typer.Option(help="Simulated time to run: 30m, 6h, 1d.")] = "2h",
    start: Annotated[
        str, typer.Option(help="Simulated start, ISO 8601 (UTC).")
    ] = "2026-01-15T00:00Z",
    speed: Annotated[
        str, typer.Option(help="'max' or a factor of real time (1 = real time).")
    ] = "max",
    faults: Annotated[
        str | None,
        typer.Option(
            help="Faults to inject: comma list of kinds, targets and times chosen from the seed"
            " ('none' for a healthy fleet; 'heatstream simulate --faults' lists the kinds)."
            f" Default, unless --fault is given: {DEFAULT_FAULTS}.",
            show_default=False,
        ),
    ] = None,
    fault: Annotated[list[str] | None, typer.Option("--fault", help=FAULT_HELP)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulation (same seed: same events).")] = 1,
    truth: Annotated[
        Path | None,
        typer.Option(help="Write the injected faults here (JSON lines).", dir_okay=False),
    ] = None,
    summary_json: Annotated[
        Path | None,
        typer.Option(
            "--summary-json", help="Write the final summary here as JSON.", dir_okay=False
        ),
    ] = None,
    kafka: Annotated[
        str | None, typer.Option(help="Use this Kafka (host:port) instead of the embedded broker.")
    ] = None,
    influx: Annotated[
        str | None,
        typer.Option(
            help="Use this InfluxDB URL instead of the embedded one (api and credentials "
            "from the configuration, HEATSTREAM_INFLUXDB__*)."
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(help="Seconds to wait for processing to catch up once publishing is done."),
    ] = 300.0,
) -> None:
    """Run the whole platform: stack, worker, sink and a simulated fleet, with live progress.

    Starts the embedded stack (a Kafka-protocol broker and InfluxDB on loopback
    ports; a previous run's stack is replaced, so results are this run's), creates
    topics and database, starts a stream-processing worker and an InfluxDB sink,
    and publishes a simulated fleet with a few injected faults through the gateway
    SDK. It stops once the simulated --duration has been processed and landed in
    InfluxDB (or on Ctrl-C) and prints heat, ERF and CO2 avoided per site, the
    alerts raised, dead letters and late events, and how to query the data. The
    stack keeps running afterwards: `heatstream stack down` stops it.
    """
    from heatstream.cli import settings_of
    from heatstream.influxql import execute
    from heatstream.ingest.simulator import SimConfig, SimConfigError, Simulation
    from heatstream.ingest.simulator.cli import fault_specs
    from heatstream.ingest.simulator.faultspec import FaultSpecError
    from heatstream.ingest.simulator.publish import Publisher, PublishOptions
    from heatstream.ingest.simulator.timeparse import parse_duration_ms, parse_instant_ms
    from heatstream.inventory import inventory_toml, synthetic_inventory
    from heatstream.mainjob import Children, Progress, caught_up, child_env, monitor
    from heatstream.stack.errors import StackError
    from heatstream.summary import run_summary

    console = Console()
    settings = settings_of(ctx)
    if faults is None and not fault:
        faults = DEFAULT_FAULTS
    if faults is not None and faults.strip().lower() in ("", "none"):
        faults = None
    specs = fault_specs(faults, fault)  # as `heatstream simulate --faults ... --fault ...`
    try:
        start_ms = parse_instant_ms(start)
        duration_ms = parse_duration_ms(duration)
        speed_x = None if speed == "max" else float(speed)
        inv = synthetic_inventory(boilers, sites)
        sim = Simulation(
            SimConfig(
                boilers=boilers,
                sites=sites,
                start_ms=start_ms,
                duration_ms=duration_ms,
                sample_ms=1000,
                frame_span_ms=1000 if speed_x is not None else 10_000,
                seed=seed,
                faults=tuple(specs),
            ),
            inv,
        )
    except (FaultSpecError, SimConfigError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None

    # -- the stack ------------------------------------------------------------------
    if kafka is None or influx is None:
        from heatstream.stack.embedded import EmbeddedStack

        previous = EmbeddedStack.recorded(settings)
        if previous is not None:
            console.print("[dim]replacing the previous run's embedded stack[/dim]")
            previous.stop()
        stack = EmbeddedStack(settings, detach=True)
        try:
            with console.status("starting the embedded stack (Tansu + InfluxDB)"):
                stack.start()
        except StackError as exc:
            console.print(f"[red]cannot start the embedded stack:[/red] {exc}")
            raise typer.Exit(1) from None
        settings = stack.settings
        execute(settings.influxdb, f'DROP DATABASE "{settings.influxdb.database}"')
        execute(settings.influxdb, f'CREATE DATABASE "{settings.influxdb.database}"')
    if kafka is not None:
        settings = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update={"bootstrap": kafka})}
        )
    if influx is not None:
        settings = settings.model_copy(
            update={"influxdb": settings.influxdb.model_copy(update={"url": influx})}
        )
    run_dir = settings.stack.data_dir / "run"
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    inventory = run_dir / "inventory.toml"
    inventory.write_text(inventory_toml(inv))
    if truth is not None:
        truth.write_text("".join(json.dumps(r) + "\n" for r in sim.truth()))
    console.print(
        f"Kafka [bold]{settings.kafka.bootstrap}[/bold] · InfluxDB [bold]{settings.influxdb.url}[/bold]"
        f" (database {settings.influxdb.database}) · {boilers} boilers at {sites} sites · "
        f"{duration} of simulated time · faults: {', '.join(f.kind for f in sim.faults) or 'none'}"
    )

    children = Children(child_env(settings, inventory), run_dir / "logs")
    children.start("worker", ["worker", "--datadir", str(run_dir / f"worker-{int(time.time())}")])
    children.start("sink", ["sink"])
    progress = Progress()
    interrupted = False

    def table(p: Progress) -> Table:
        t = Table(show_header=False, box=None)
        pct = 100.0 * (p.sim_time_ms - sim.start_ms) / max(1, sim.end_ms - sim.start_ms)
        t.add_row(
            "published", f"{p.published:,} events ({p.events_per_s:,.0f}/s) · simulated {pct:.0f}%"
        )
        t.add_row("worker lag", "…" if p.worker_lag is None else f"{p.worker_lag:,} messages")
        t.add_row("windows closed", f"{p.windows:,} (incl. hourly/daily rollups)")
        t.add_row("alerts raised", f"{p.alerts:,} anomaly/leak events")
        t.add_row("dead letters · late", f"{p.dead_letters:,} · {p.late_events:,}")
        t.add_row(
            "sink lag", "…" if p.sink_lag is None else f"{p.sink_lag:,} derived events to land"
        )
        return t

    async def run() -> None:
        stop = asyncio.Event()
        last = [time.monotonic(), 0]

        def on_period(period, report) -> None:
            progress.sim_time_ms = period.end_ms
            progress.published = report.frames + report.compute_events
            now = time.monotonic()
            if now - last[0] >= 1.0:
                progress.events_per_s = (progress.published - last[1]) / (now - last[0])
                last[0], last[1] = now, progress.published

        with Live(table(progress), console=console, refresh_per_second=2) as live:
            mon = asyncio.create_task(
                monitor(settings, progress, stop, lambda p: live.update(table(p)))
            )
            publisher = Publisher(
                sim, settings.kafka, PublishOptions(speed=speed_x), on_progress=on_period
            )
            await publisher.run()
            progress.publishing_done = True
            progress.sim_time_ms = sim.end_ms
            deadline = time.monotonic() + timeout
            while not caught_up(progress) and time.monotonic() < deadline:
                if children.dead():
                    break
                await asyncio.sleep(1.0)
            await asyncio.sleep(2.0)  # one more poll: the sink commits after its last write
            stop.set()
            await mon

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]interrupted: stopping the worker and the sink[/yellow]")
    finally:
        dead = children.dead()
        children.stop()
    for name in dead:
        console.print(
            f"[red]{name} stopped unexpectedly[/red]; its log ends with:\n{children.log_tail(name)}"
        )
    if not interrupted and not caught_up(progress):
        console.print(
            f"[yellow]processing had not caught up after {timeout:.0f} s; the summary shows what landed[/yellow]"
        )

    summary = run_summary(settings.influxdb, sim.start_ms, sim.end_ms)
    summary["simulator"] = sim.totals.summary()["sites"]
    print_summary(console, summary, settings)
    if summary_json is not None:
        summary_json.write_text(json.dumps(summary, indent=2) + "\n")
        console.print(f"summary written to {summary_json}")
    if dead:
        raise typer.Exit(1)


def print_summary(console: Console, summary: dict, settings) -> None:
    sites = Table(title=f"Heat reuse, {summary['from']} to {summary['to']}")
    for col in ("site", "heat kWh", "ERF", "CO2 avoided kg", "coverage", "simulator heat kWh"):
        sites.add_column(col, justify="right" if col != "site" else "left")
    for site, row in summary["sites"].items():
        sim_heat = summary.get("simulator", {}).get(site, {}).get("heat_kwh")
        sites.add_row(
            site,
            f"{row['heat_kwh']:,.1f}",
            "-" if row["erf"] is None else f"{row['erf']:.3f}",
            f"{row['co2_avoided_kg']:,.1f}",
            f"{row['coverage']:.1%}",
            "-" if sim_heat is None else f"{sim_heat:,.1f}",
        )
    console.print(sites)
    alerts = Table(title="Alerts")
    for col in ("kind", "boiler", "site", "start", "end", "reason"):
        alerts.add_column(col)
    for a in summary["alerts"]:
        alerts.add_row(
            a["kind"],
            a["boiler"],
            a["site"],
            a["start"] or "",
            a["end"] or "(ongoing)",
            (a.get("reason") or "")[:70],
        )
    console.print(alerts if summary["alerts"] else "No alerts.")
    console.print(
        f"Dead letters: {summary['dead_letters']} · late events: {summary['late_events']}"
    )
    influx = settings.influxdb
    host_port = influx.url.split("//", 1)[-1]
    host, _, port = host_port.partition(":")
    console.print(
        "\nThe data is in InfluxDB "
        f"{influx.url}, database {influx.database}. Query it:\n"
        f"  influx -host {host} -port {port or 8086} -database {influx.database} -precision rfc3339 "
        "-execute 'SELECT sum(heat_kwh) FROM heat_window WHERE resolution = '\\''1d'\\'' GROUP BY site'\n"
        "Dashboards: with Docker, `cp .env.example .env` (set the secrets), then "
        "`docker compose --profile demo up -d` and open http://localhost:3000;\n"
        "or load them into a Grafana you run: `heatstream grafana push --url URL`.\n"
        "Stop the embedded stack: `heatstream stack down`."
    )
