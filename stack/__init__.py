"""The embedded development stack: Tansu (Kafka protocol) and InfluxDB 1.6 on loopback.

`heatstream stack up|status|down` (see `cli.py`) and the pytest fixtures both use
`EmbeddedStack`; nothing here is needed in production, where Apache Kafka and
InfluxDB 2.x run as in `docker-compose.yml`.
"""

from heatstream.stack.embedded import EmbeddedStack
from heatstream.stack.errors import (
    BinaryNotFoundError,
    PortInUseError,
    ProvisioningError,
    StackError,
    StackStartError,
)
from heatstream.stack.status import ServerStatus, StackStatus

__all__ = [
    "BinaryNotFoundError",
    "EmbeddedStack",
    "PortInUseError",
    "ProvisioningError",
    "ServerStatus",
    "StackError",
    "StackStartError",
    "StackStatus",
]
