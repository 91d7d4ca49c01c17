"""JSON Schema of every event contract, for gateway vendors in other languages.

Pure: returns documents; the CLI writes them to files.
"""

from __future__ import annotations

from typing import Any

from heatstream.schemas.registry import all_models

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schemas(base_id: str = "https://heatstream.dev/schemas/") -> dict[str, dict[str, Any]]:
    """'<name>.v<version>' -> JSON Schema (draft 2020-12) of that event as it is on the wire."""
    out: dict[str, dict[str, Any]] = {}
    for key, model in sorted(all_models().items()):
        schema = model.model_json_schema(mode="serialization")
        # On the wire: our encoder leaves out absent optional fields, so nothing
        # with a null default is required; event_id is filled from gateway:seq.
        schema = {"$schema": SCHEMA_DIALECT, "$id": f"{base_id}{key}.json", **schema}
        out[key] = schema
    return out
