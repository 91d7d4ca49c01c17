"""`heatstream schemas`: the event contracts, for humans and for other languages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Event contracts: list them, export them as JSON Schema.", no_args_is_help=True
)


@app.command("export")
def export(
    directory: Annotated[
        Path,
        typer.Argument(
            help="Folder to write into (created if missing); one <type>.v<N>.json per event type."
        ),
    ],
) -> None:
    """Write one JSON Schema (draft 2020-12) per event type and version.

    For gateway vendors writing in other languages: a message is valid when it
    validates against its schema (telemetry.frame.v3 for new frames). Range
    checks on channel values are documented in each field's description; the
    pipeline quarantines out-of-range readings rather than rejecting the frame.
    """
    from heatstream.schemas.export import json_schemas

    directory.mkdir(parents=True, exist_ok=True)
    schemas = json_schemas()
    for key, schema in schemas.items():
        (directory / f"{key}.json").write_text(
            json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
        )
    typer.echo(f"wrote {len(schemas)} JSON Schemas to {directory}/: {', '.join(schemas)}")


@app.command("list")
def list_schemas() -> None:
    """List the event types, their current versions and the topics they travel on."""
    from heatstream.schemas.registry import DERIVED_TYPES, RAW_VERSIONS
    from heatstream.schemas.topics import TOPICS

    for name, versions in RAW_VERSIONS.items():
        typer.echo(f"{name:26} raw      versions {sorted(versions)} (current v{max(versions)})")
    for name in DERIVED_TYPES:
        typer.echo(f"{name:26} derived")
    typer.echo("")
    for topic in TOPICS:
        typer.echo(f"{topic.name:34} key: {topic.key:14.14} {topic.purpose}")
