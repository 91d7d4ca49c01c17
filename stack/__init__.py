"""The embedded development stack: Tansu (Kafka protocol) and InfluxDB 1.6 on loopback.

`heatstream stack up|status|down` (see `cli.py`) and the pytest fixtures both use
`EmbeddedStack`; nothing here is needed in production, where Apache Kafka and
InfluxDB 2.x run as in `docker-compose.yml`.

Exports resolve lazily so that `heatstream --help` does not import aiokafka and httpx.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from heatstream.stack.embedded import EmbeddedStack
    from heatstream.stack.errors import (
        BinaryNotFoundError,
        PortInUseError,
        ProvisioningError,
        StackError,
        StackStartError,
    )
    from heatstream.stack.provision import TopicsProvisioned
    from heatstream.stack.status import ServerStatus, StackStatus

_EXPORTS = {
    "EmbeddedStack": "embedded",
    "BinaryNotFoundError": "errors",
    "PortInUseError": "errors",
    "ProvisioningError": "errors",
    "StackError": "errors",
    "StackStartError": "errors",
    "TopicsProvisioned": "provision",
    "ServerStatus": "status",
    "StackStatus": "status",
}

__all__ = [
    "BinaryNotFoundError",
    "EmbeddedStack",
    "PortInUseError",
    "ProvisioningError",
    "ServerStatus",
    "StackError",
    "StackStartError",
    "StackStatus",
    "TopicsProvisioned",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
