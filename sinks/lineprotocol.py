"""InfluxDB line protocol: one pure encoder for both write APIs.

A `Point` is a measurement, a tag set, a field set and a timestamp in
nanoseconds; `encode_point` turns it into one line:

    measurement,tag1=v1,tag2=v2 field1=1.5,field2=3i,field3="text",field4=true 1700000000000

* measurement: commas and spaces are escaped; tag keys, tag values and field
  keys: commas, equals signs and spaces; string field values: double quotes and
  backslashes. Tags are sorted by key (what InfluxDB recommends, and it makes the
  line a deterministic function of the point).
* Integers get the `i` suffix, booleans are `true`/`false`, floats are written
  with `repr`, the shortest text that reads back to the same float.
* NaN and ±inf cannot be stored: such a field is left out of the line; a point
  left with no field is not written at all (`encode_point` returns None).
* What line protocol cannot carry portably is refused with `LineProtocolError`
  rather than mangled: empty names, newlines anywhere, backslashes in names and
  tags (InfluxDB does not unescape them, so `a\\,b` would split a tag), the key
  `time`, a measurement starting with `#` (a comment line), integers outside
  int64, timestamps not whole in the chosen precision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from orjson import dumps as _dumps

from heatstream.errors import HeatstreamError

FieldValue = float | int | bool | str
Precision = Literal["ns", "us", "ms", "s"]

NS_PER: dict[str, int] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})


class LineProtocolError(HeatstreamError, ValueError):
    """A point line protocol cannot represent (the message says which part and why)."""


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point; `time_ns` is nanoseconds since the Unix epoch (UTC)."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int

    @classmethod
    def at_ms(
        cls,
        measurement: str,
        tags: Mapping[str, str],
        fields: Mapping[str, FieldValue],
        time_ms: int,
    ) -> Point:
        return cls(measurement, tags, fields, time_ms * 1_000_000)


def _name(text: str, what: str, table: dict[int, str]) -> str:
    if not isinstance(text, str) or not text:
        raise LineProtocolError(f"{what} {text!r} must be a non-empty string")
    if "\\" in text or "\n" in text or "\r" in text:
        raise LineProtocolError(f"{what} {text!r} contains a backslash or a line break")
    return text.translate(table)


def _key(text: str, what: str) -> str:
    if text == "time":
        raise LineProtocolError(f"{what} 'time' is reserved by InfluxDB")
    return _name(text, what, _KEY)


# Names, keys and tag values repeat from point to point (a fleet has a few
# thousand boilers, a measurement a few dozen fields): each distinct one is
# checked and escaped once. Errors are raised, never cached; what is not a
# string (hence maybe not hashable) goes the uncached way, to its error.
@lru_cache(maxsize=1 << 16)
def _field_prefix(key: str) -> str:
    return _key(key, "field key") + "="


@lru_cache(maxsize=1 << 16)
def _tag(key: str, value: str) -> str:
    return f"{_key(key, 'tag key')}={_name(value, f'tag {key!r} value', _KEY)}"


@lru_cache(maxsize=1 << 10)
def _measurement(text: str) -> str:
    if text.startswith("#"):  # a comment line: InfluxDB would skip it silently
        raise LineProtocolError(f"measurement {text!r} starts with '#'")
    return _name(text, "measurement", _MEASUREMENT)


def _float(value: float) -> str:
    """The shortest text that reads back as exactly `value` (as `repr`, in some cases
    spelt differently: 1e-05 as 0.00001); orjson's is 3x faster than `repr`, which was
    most of the sink's time landing 10,000 points a second."""
    return _dumps(value).decode()


def _field_value(key: str, value: FieldValue) -> str | None:
    """A field's text, None when not finite; plain floats never come here
    (`encode_point` writes them itself, as `_float` does)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise LineProtocolError(f"field {key!r} = {value} does not fit in int64")
        return f"{value}i"
    if isinstance(value, float):
        return _float(float(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        if "\n" in value or "\r" in value:
            raise LineProtocolError(f"string field {key!r} contains a line break")
        return '"' + value.translate(_STRING) + '"'
    raise LineProtocolError(
        f"field {key!r} = {value!r}: {type(value).__name__} is not a field type"
    )


def timestamp(time_ns: int, precision: Precision) -> int:
    """`time_ns` in units of `precision`; it must be a whole number of them."""
    per = NS_PER[precision]
    if time_ns % per:
        raise LineProtocolError(f"timestamp {time_ns} ns is not a whole number of {precision}")
    return time_ns // per


def encode_point(point: Point, precision: Precision = "ms") -> bytes | None:
    """One line (without newline), or None when no field is finite."""
    fields = []
    append = fields.append
    for key, value in point.fields.items():
        if type(key) is not str:
            _key(key, "field key")  # raises: not a string
        if type(value) is float:  # most fields, inlined
            if math.isfinite(value):
                append(_field_prefix(key) + _dumps(value).decode())
            continue
        text = _field_value(key, value)
        if text is not None:
            append(_field_prefix(key) + text)
    if not fields:
        return None
    measurement = point.measurement
    if type(measurement) is not str:
        _name(measurement, "measurement", _MEASUREMENT)  # raises: not a string
    head = [_measurement(measurement)]
    for key in sorted(point.tags):
        value = point.tags[key]
        if type(key) is str and type(value) is str:
            head.append(_tag(key, value))
        else:  # raises: not a string
            head.append(f"{_key(key, 'tag key')}={_name(value, f'tag {key!r} value', _KEY)}")
    line = f"{','.join(head)} {','.join(fields)} {timestamp(point.time_ns, precision)}"
    return line.encode("utf-8")


def precision_for(points: list[Point]) -> Precision:
    """The coarsest of ms and ns that represents every timestamp exactly."""
    per_ms = NS_PER["ms"]
    return "ms" if all(p.time_ns % per_ms == 0 for p in points) else "ns"


def encode_points(points: list[Point], precision: Precision | None = None) -> list[bytes]:
    """Lines of every point that has a finite field (see `encode_point`)."""
    chosen = precision or precision_for(points)
    return [line for p in points if (line := encode_point(p, chosen)) is not None]
