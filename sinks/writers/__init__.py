"""InfluxDB write APIs behind one interface: `v1` (`/write`) and `v2` (influxdb-client).

Both take lines from the same encoder (`heatstream.sinks.lineprotocol`); which
one is used is `influxdb.api` in the settings.
"""

from __future__ import annotations

from heatstream.settings import InfluxSettings
from heatstream.sinks.writers.base import Writer


def build_writer(influx: InfluxSettings, *, timeout_s: float = 10.0, gzip_level: int = 5) -> Writer:
    """The writer `influx.api` selects (nothing connects until `start()`)."""
    if influx.api == "v2":
        from heatstream.sinks.writers.v2 import V2Writer

        return V2Writer(influx, timeout_s=timeout_s, gzip=gzip_level > 0)
    from heatstream.sinks.writers.v1 import V1Writer

    return V1Writer(influx, timeout_s=timeout_s, gzip_level=gzip_level)


__all__ = ["Writer", "build_writer"]
