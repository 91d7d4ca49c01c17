"""`heatstream topics`: the topic registry, and creating it on a cluster."""

from __future__ import annotations

import asyncio

import typer

app = typer.Typer(
    help="Kafka topics: list the registry, create the topics on a cluster.", no_args_is_help=True
)


@app.command("list")
def list_topics(ctx: typer.Context) -> None:
    """Print every topic heatstream uses: name, key, partitions, retention and purpose."""
    from heatstream.cli import settings_of
    from heatstream.schemas.topics import TOPICS, topic_name

    kafka = settings_of(ctx).kafka
    for spec in TOPICS:
        days = "forever" if spec.retention_ms < 0 else f"{spec.retention_ms / 86_400_000:g} d"
        typer.echo(
            f"{topic_name(spec, kafka.topic_prefix):36} key={spec.key!r:<20} "
            f"partitions={spec.partitions or kafka.partitions:<3} retention={days:<8} {spec.purpose}"
        )


@app.command("create")
def create(ctx: typer.Context) -> None:
    """Create every registry topic missing on the cluster at kafka.bootstrap (idempotent).

    Topics get their partitions, retention and cleanup policy at creation. Run it
    once before the first worker starts: a topic auto-created by a producer would
    get the broker's default retention and could delete the raw log.
    """
    from heatstream.cli import settings_of
    from heatstream.kafka_security import KafkaConfigError
    from heatstream.stack.errors import ProvisioningError
    from heatstream.stack.provision import create_topics

    kafka = settings_of(ctx).kafka
    try:
        result = asyncio.run(create_topics(kafka.bootstrap, kafka))
    except (ProvisioningError, KafkaConfigError, OSError) as exc:
        typer.secho(
            f"cannot create topics on {kafka.bootstrap}: {exc}", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(1) from exc
    for name in result.created:
        typer.echo(f"created  {name}")
    for name in result.existing:
        typer.echo(f"exists   {name}")
