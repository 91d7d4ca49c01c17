"""Building the bad messages of the `malformed` fault from a real, sealed frame.

Each keeps the identity of the frame it replaces (same gateway, seq and event
id where they are still readable), so a pipeline can say exactly which event
it dead-lettered:

* broken_json: the frame's JSON cut short (at an ASCII byte, so the rest of the
  tooling can still show it as text);
* wrong_types: one reading written as a string with its unit ("64.21 °C");
* unknown_version: `schema_version` one above the current one (4), newer than any
  release knows.
"""

from __future__ import annotations

import numpy as np
import orjson

from heatstream.schemas.registry import current_version
from heatstream.schemas.telemetry import CHANNEL_BY_NAME


def corrupt(message: bytes, subkind: str, rng: np.random.Generator) -> bytes:
    """The malformed replacement of the encoded frame `message`."""
    u = rng.uniform(size=3)  # fixed number of draws per message
    if subkind == "broken_json":
        cut = len(message) // 4 + int(u[0] * (len(message) // 2))
        while cut > 1 and message[cut - 1] >= 0x80:
            cut -= 1
        return message[:cut]
    data = orjson.loads(message)
    if subkind == "wrong_types":
        channels = [k for k in data if k in CHANNEL_BY_NAME]
        name = channels[int(u[0] * len(channels))]
        values = data[name]
        i = int(u[1] * len(values))
        unit = CHANNEL_BY_NAME[name].unit
        values[i] = f"{values[i]} {unit}"
        return orjson.dumps(data)
    if subkind == "unknown_version":
        data["schema_version"] = current_version("telemetry.frame") + 1
        return orjson.dumps(data)
    raise ValueError(f"{subkind!r} is not a replacing malformed subkind")
