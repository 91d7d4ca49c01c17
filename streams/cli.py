"""`heatstream worker`: run the stream processor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer


def worker(
    ctx: typer.Context,
    datadir: Annotated[
        Path | None,
        typer.Option(
            help="Where RocksDB keeps this worker's table state (default: <stack.data_dir>/worker)."
        ),
    ] = None,
    loglevel: Annotated[
        str | None,
        typer.Option(help="debug, info, warning or error (default: the log_level setting)."),
    ] = None,
) -> None:
    """Run the stream processor (a Faust worker) until interrupted.

    Reads the raw topic at kafka.bootstrap, writes heat windows, anomalies, leaks,
    data-quality issues, late events and dead letters to their topics. Start more
    workers with the same settings to spread the partitions (the gateways) over
    them; each needs its own --datadir when they share a machine. The inventory
    (HEATSTREAM_INVENTORY) must list every gateway and boiler that publishes:
    events from others are dead-lettered as unauthorised.
    """
    import asyncio

    import faust

    from heatstream.cli import settings_of
    from heatstream.inventory import InventoryError, load_inventory
    from heatstream.kafka_security import KafkaConfigError, check_connection
    from heatstream.runtime import lower_cpu_priority, tune_gc, tune_malloc
    from heatstream.streams.app import build_app

    settings = settings_of(ctx)
    lower_cpu_priority(settings.streams.nice)  # before Faust's and RocksDB's threads start
    try:
        inventory = load_inventory(settings.inventory)
    except InventoryError as exc:
        typer.secho(f"invalid inventory: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    try:
        app = build_app(settings, inventory, datadir=datadir)
        # Faust stops on a refused certificate or password with aiokafka's bare error
        # (KeyError('v'), "Unable to bootstrap") and a traceback: one connection first,
        # so that the worker says what was refused and what to check. (A loop of its
        # own: asyncio.run would unset the one Faust goes on to use.)
        probe = asyncio.new_event_loop()
        try:
            probe.run_until_complete(check_connection(settings.kafka))
        finally:
            probe.close()
    except KafkaConfigError as exc:
        _stop("worker", exc)
    level = (loglevel or settings.log_level).lower()
    tune_gc(freeze_survivors=True)
    tune_malloc()
    faust.Worker(app, loglevel=level, quiet=True, redirect_stdouts=False).execute_from_commandline()


def replay(
    ctx: typer.Context,
    output_prefix: Annotated[
        str,
        typer.Option(
            help="Prefix of the topics the rebuilt derived events go to (compare them with the "
            "live ones); use --in-place to write to the live derived topics instead."
        ),
    ] = "replay.",
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Write derived events to the live derived topics.")
    ] = False,
    topics_out: Annotated[
        bool, typer.Option("--topics/--no-topics", help="Publish the rebuilt derived events.")
    ] = True,
    influx_out: Annotated[
        bool,
        typer.Option(
            "--influx/--no-influx",
            help="Write the rebuilt points to InfluxDB (influxdb.* settings); points overwrite "
            "themselves, so the live data is replaced, never doubled.",
        ),
    ] = True,
    database: Annotated[
        str | None,
        typer.Option(help="Write to this InfluxDB database (v1) instead of influxdb.database."),
    ] = None,
) -> None:
    """Rebuild every derived event and InfluxDB measurement from the raw log, from offset 0.

    Runs the stream processor's code with fresh state over each partition of the
    raw topic in log order, so the result equals what the live worker produced
    (byte for byte, after ordering), and prints what it did. It reads the log up to
    its end when the command starts, then exits: messages published meanwhile are
    not waited for. Use it after fixing a computation, after losing InfluxDB, or to
    check a deployment.
    """
    import asyncio

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from heatstream.cli import settings_of
    from heatstream.influxql import execute
    from heatstream.inventory import InventoryError, load_inventory
    from heatstream.kafka_security import KafkaConfigError
    from heatstream.runtime import tune_gc, tune_malloc
    from heatstream.streams.replay import ReplayStalled
    from heatstream.streams.replay import replay as run_replay

    settings = settings_of(ctx)
    try:
        inventory = load_inventory(settings.inventory)
    except InventoryError as exc:
        typer.secho(f"invalid inventory: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    if database is not None:
        # On the v2 API points go to a bucket: the database name names the bucket too.
        settings = settings.model_copy(
            update={
                "influxdb": settings.influxdb.model_copy(
                    update={"database": database, "bucket": database}
                )
            }
        )
        if influx_out and settings.influxdb.api == "v1":
            execute(settings.influxdb, f'CREATE DATABASE "{database}"')
    console = Console(stderr=True)
    prefix_out = (
        settings.kafka.topic_prefix if in_place else output_prefix + settings.kafka.topic_prefix
    )
    if topics_out and not in_place:
        from heatstream.stack.provision import create_topics

        kafka_out = settings.kafka.model_copy(update={"topic_prefix": prefix_out})
        try:
            created = asyncio.run(create_topics(settings.kafka.bootstrap, kafka_out))
        except KafkaConfigError as exc:
            _stop("replay", exc)
        if created.created:
            console.print(f"created {len(created.created)} topics under {prefix_out!r}")
    with Progress(
        TextColumn("[bold]replay"),
        BarColumn(),
        TextColumn("{task.completed:,} messages read"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("replay", total=None, rate="")

        def on_progress(stats, total: int, done: int) -> None:
            bar.update(
                task, total=total, completed=done, rate=f"{stats.readings_per_s:,.0f} readings/s"
            )

        tune_gc()
        tune_malloc()
        try:
            stats = asyncio.run(
                run_replay(
                    settings,
                    inventory,
                    to_topics=topics_out,
                    output_prefix=prefix_out,
                    to_influx=influx_out,
                    on_progress=on_progress,
                )
            )
        except (KafkaConfigError, ReplayStalled) as exc:
            _stop("replay", exc)
    console.print(
        f"replayed {stats.messages:,} messages ({stats.readings:,} readings) in {stats.wall_s:.1f} s"
        f" ({stats.readings_per_s:,.0f} readings/s): {stats.derived:,} derived events, "
        f"{stats.points:,} points written, {stats.rejected_points} refused"
    )
    for name, n in sorted(stats.by_topic.items()):
        console.print(f"  {n:>9,}  {name}")


def _stop(command: str, exc: Exception) -> NoReturn:
    """Refused credentials, bad Kafka settings or a stalled log: say why, exit 1 (no traceback)."""
    typer.secho(f"heatstream {command}: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1) from exc
