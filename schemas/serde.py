"""Bytes <-> events: orjson on the wire, pydantic for the contract.

`decode_raw` is the single entry point of every raw event into heatstream: it
parses, identifies the event type and version, upcasts old versions and
validates, and turns every failure into an `EventError` whose `reason` is the
dead-letter reason code and whose message names the field, index and value.
"""

from __future__ import annotations

import itertools
import reprlib
from typing import Any, TypeAlias

import orjson
from pydantic import BaseModel, ValidationError

from heatstream.schemas.compute import ComputeEvent
from heatstream.schemas.errors import DecodeError, SchemaValidationError, UnknownSchemaError
from heatstream.schemas.registry import DERIVED_TYPES, RAW_VERSIONS, UPCASTERS, current_version
from heatstream.schemas.telemetry import TelemetryFrame

RawEvent: TypeAlias = TelemetryFrame | ComputeEvent

_MAX_ERRORS_SHOWN = 5


def encode(event: BaseModel) -> bytes:
    """Serialize any event to compact JSON bytes.

    Fields that are `None` and default to `None` are left out (an absent channel
    is absent, not null), which keeps frames small; decoding restores them.
    """
    data = event.model_dump(mode="json")
    fields = type(event).model_fields
    for name in [k for k, v in data.items() if v is None]:
        if fields[name].default is None:
            del data[name]
    return orjson.dumps(data)


def loads_object(raw: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Parse JSON that must be an object; DecodeError otherwise."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DecodeError(f"expected a JSON object, got {type(data).__name__}")
    return data


def upcast(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a raw event dict of any known version to the current version."""
    name = data.get("schema_name")
    version = data.get("schema_version")
    if not isinstance(name, str) or name not in RAW_VERSIONS:
        raise UnknownSchemaError(f"schema_name = {_short(name)} is not a known raw event type")
    if not isinstance(version, int) or isinstance(version, bool):
        raise UnknownSchemaError(f"schema_version = {_short(version)} is not an integer")
    latest = current_version(name)
    if version not in RAW_VERSIONS[name]:
        newer = " (newer than this release: upgrade heatstream)" if version > latest else ""
        raise UnknownSchemaError(f"{name} schema_version = {version} is unknown{newer}")
    while version < latest:
        try:
            data = UPCASTERS[(name, version)](data)
        except ValidationError as exc:
            raise SchemaValidationError(
                f"{name} v{version}: {format_validation_error(exc)}"
            ) from None
        version += 1
    return data


def decode_raw(raw: bytes | bytearray | memoryview | str) -> RawEvent:
    """Decode, upcast and validate one raw event.

    Strictly: JSON has types, and a `true` or a `"65.0"` where the contract
    says number is a broken or hostile producer, not a reading of 1.0 or 65.0.
    """
    data = loads_object(raw)
    written = data.get("schema_version")
    data = upcast(data)
    name, version = data["schema_name"], data["schema_version"]
    model = RAW_VERSIONS[name][version]
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        # Named by the version the producer wrote, which is what its author knows.
        label = f"v{version}" if written == version else f"v{written} (read as v{version})"
        raise SchemaValidationError(f"{name} {label}: {format_validation_error(exc)}") from None


def decode_derived(raw: bytes | bytearray | memoryview | str) -> BaseModel:
    """Decode a derived event or dead letter by its schema_name."""
    data = loads_object(raw)
    name = data.get("schema_name")
    model = DERIVED_TYPES.get(name) if isinstance(name, str) else None
    if model is None:
        raise UnknownSchemaError(f"schema_name = {_short(name)} is not a known derived event type")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SchemaValidationError(f"{name}: {format_validation_error(exc)}") from None


def format_validation_error(exc: ValidationError) -> str:
    """'field[index] = value: message; ...', at most a few errors."""
    parts = []
    errors = exc.errors(include_url=False)
    for err in errors[:_MAX_ERRORS_SHOWN]:
        where = _loc(err["loc"])
        if err["type"] == "value_error":
            # Our own validators already name the field, index and value.
            msg = str(err["msg"]).removeprefix("Value error, ")
            parts.append(msg if not where else f"{where}: {msg}")
        elif err["type"] == "missing":
            parts.append(f"{where}: {err['msg']}")  # its input is the parent object
        elif where:
            parts.append(f"{where} = {_short(err.get('input'))}: {err['msg']}")
        else:
            parts.append(str(err["msg"]))
    if len(errors) > _MAX_ERRORS_SHOWN:
        parts.append(f"... and {len(errors) - _MAX_ERRORS_SHOWN} more errors")
    return "; ".join(parts)


def _loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("float", "int", "str", "none", "function-after[_unb64(), bytes]"):
            continue  # union branch names, not fields
        else:
            text += part if not text else f".{part}"
    return text


class _BoundedRepr(reprlib.Repr):
    """Bounded repr of hostile input: a plain repr() of a 1,000-deep list raises
    RecursionError, and of a 10^6-element list costs time for text thrown away.
    Mappings show their names only: a table's values may be secrets (inventory keys)."""

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        names = [f"{self.repr1(k, level - 1)}: ..." for k in itertools.islice(x, self.maxdict)]
        return "{" + ", ".join(names + (["..."] if len(x) > self.maxdict else [])) + "}"


_REPR = _BoundedRepr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 12
_REPR.maxdict = 6
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 60


def _short(value: object, limit: int = 60) -> str:
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
