"""Durations ("6h", "30m", "1d", "1h30m") and instants ("2026-01-15T00:00Z") as ms.

The simulator works in integer milliseconds since the Unix epoch, UTC, like the
event envelope, so that simulated times never go through floats.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration_ms(text: str) -> int:
    """'90s', '30m', '6h', '1d', '1h30m', '500ms' or a bare number of seconds -> ms."""
    value = text.strip().lower()
    if not value:
        raise ValueError("empty duration")
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return round(float(value) * 1000)
    pos, total = 0, 0.0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS_MS[match.group(2)]
        pos = match.end()
    if pos != len(value) or pos == 0:
        raise ValueError(
            f"duration {text!r} not understood: use e.g. 90s, 30m, 6h, 1d, 1h30m (units ms s m h d)"
        )
    return round(total)


def parse_instant_ms(text: str) -> int:
    """ISO 8601 ('2026-01-15', '2026-01-15T00:00Z', '2026-07-01T12:00:00+02:00') -> ms UTC.

    A time without an offset is UTC.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"time {text!r} not understood: use ISO 8601, e.g. 2026-01-15T00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def iso_ms(ms: int) -> str:
    """ms since epoch -> '2026-01-15T00:00:00.000Z'."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def format_duration_ms(ms: int) -> str:
    """ms -> a short duration such as '1h30m', '45s', '250ms'."""
    if ms == 0:
        return "0s"
    parts = []
    rest = ms
    for unit in ("d", "h", "m", "s", "ms"):
        size = _UNITS_MS[unit]
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)
