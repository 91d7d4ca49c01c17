"""`heatstream sink`: run the InfluxDB sink until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Annotated

import typer

from heatstream.sinks.options import SinkOptions

_D = {name: f.default for name, f in SinkOptions.model_fields.items()}


def sink(
    ctx: typer.Context,
    batch_size: Annotated[int, typer.Option(help="Points per InfluxDB write, at most.")] = _D[
        "batch_size"
    ],
    flush_interval: Annotated[
        float, typer.Option(help="Seconds after which a non-empty batch is written anyway.")
    ] = _D["flush_interval_s"],
    downsample: Annotated[
        int,
        typer.Option(
            help="Seconds per bucket of the raw telemetry landed as per-boiler means "
            "(measurement 'telemetry'); 0 leaves raw telemetry in Kafka only."
        ),
    ] = _D["downsample_s"],
    lateness: Annotated[
        int, typer.Option(help="Seconds a telemetry bucket waits for late samples after it ends.")
    ] = _D["lateness_s"],
    max_in_flight: Annotated[
        int,
        typer.Option(help="Points buffered or being written above which consumption pauses."),
    ] = _D["max_in_flight_points"],
    write_concurrency: Annotated[
        int,
        typer.Option(
            help="Batches written to InfluxDB at once; offsets are still committed in order."
        ),
    ] = _D["write_concurrency"],
    gzip_level: Annotated[
        int,
        typer.Option(
            help="gzip level 1-9 of the write requests; 0 sends them uncompressed (InfluxDB on"
            " the same host: compression only costs CPU at both ends)."
        ),
    ] = _D["gzip_level"],
    max_retries: Annotated[
        int | None,
        typer.Option(
            help="Give up (and stop) after this many retries of one write; default: never."
        ),
    ] = None,
    health_interval: Annotated[
        float, typer.Option(help="Seconds between the sink's pipeline_health points.")
    ] = _D["health_interval_s"],
    process_name: Annotated[
        str | None,
        typer.Option(help="'process' tag of the pipeline_health points (default: the host name)."),
    ] = None,
    session_timeout: Annotated[
        float | None,
        typer.Option(
            help="Consumer-group session timeout, seconds (default: streams.session_timeout_s)."
        ),
    ] = None,
    loglevel: Annotated[
        str | None,
        typer.Option(help="debug, info, warning or error (default: the log_level setting)."),
    ] = None,
) -> None:
    """Land heatstream's results in InfluxDB until interrupted (Ctrl-C).

    Consumes the derived topics (heat windows, anomalies, leaks, data-quality
    issues), the dead-letter and late-event topics, and the raw telemetry topic
    as per-boiler means over --downsample seconds (full resolution stays in
    Kafka), from kafka.bootstrap as consumer group '<app_id>-sink'. Writes
    InfluxDB line protocol in batches to influxdb.url: the v1 /write API
    (InfluxDB 1.x, the embedded stack) or the v2 API (InfluxDB 2.x, 3.x, Cloud,
    1.8+) as influxdb.api says.

    Offsets are committed only after InfluxDB acknowledged the points, and the
    points are deterministic, so a restart or a redelivery overwrites instead of
    double counting. While InfluxDB is down or slow the sink retries with
    backoff and pauses consumption. Points InfluxDB refuses go to the
    dead-letter topic with its message. Ctrl-C writes and commits what is
    buffered; telemetry buckets still open are rebuilt from Kafka on the next
    start. Measurements, tags and fields: docs/measurements.md.
    """
    from aiokafka.errors import KafkaError

    from heatstream.cli import settings_of
    from heatstream.inventory import InventoryError, load_inventory
    from heatstream.kafka_security import KafkaConfigError, check_connection
    from heatstream.runtime import tune_gc
    from heatstream.sinks.consumer import build_sink
    from heatstream.sinks.errors import SinkError

    settings = settings_of(ctx)
    level = (loglevel or settings.log_level).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":  # one line per HTTP request otherwise
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        options = SinkOptions(
            batch_size=batch_size,
            flush_interval_s=flush_interval,
            downsample_s=downsample,
            lateness_s=lateness,
            max_in_flight_points=max_in_flight,
            max_retries=max_retries,
            gzip_level=gzip_level,
            write_concurrency=write_concurrency,
            health_interval_s=health_interval,
            process_name=process_name,
            session_timeout_s=session_timeout or settings.streams.session_timeout_s,
        )
    except ValueError as exc:  # pydantic ValidationError
        typer.secho(f"invalid sink options:\n{exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    try:
        inventory = load_inventory(settings.inventory)
    except InventoryError as exc:
        typer.secho(f"invalid inventory: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    runner = build_sink(settings, options, inventory=inventory)
    typer.echo(f"heatstream sink: {runner.describe()}")

    async def main() -> None:
        # A refused certificate or password stops the sink now, not once InfluxDB is up.
        await check_connection(settings.kafka)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await runner.run(stop)

    tune_gc()
    try:
        asyncio.run(main())
    except SinkError as exc:
        typer.secho(f"heatstream sink stopped: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    except KafkaConfigError as exc:  # the broker refused our TLS or SASL identity, or the
        # settings contradict each other: retrying cannot help
        typer.secho(f"heatstream sink stopped: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    except KafkaError as exc:
        typer.secho(
            f"heatstream sink stopped: Kafka at {settings.kafka.bootstrap} failed: {exc!r}; "
            "check kafka.bootstrap (HEATSTREAM_KAFKA__BOOTSTRAP) and that the broker runs",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1) from exc
    c = runner.counters
    typer.echo(
        f"heatstream sink stopped: {c.messages} messages read, {c.points_written} points written, "
        f"{c.dead_letters} dead letters"
    )
