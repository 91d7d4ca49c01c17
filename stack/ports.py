"""Loopback ports for the embedded servers.

Port 0 in the settings means "any free port", so several stacks (a developer's
`stack up` and a test session) coexist on one machine without configuration.
"""

from __future__ import annotations

import socket

from heatstream.stack.errors import PortInUseError


def free_port(host: str) -> int:
    """A port that was free on `host` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def choose_port(host: str, configured: int, setting: str) -> int:
    """`configured`, checked to be free, or a free port when it is 0.

    `setting` names the setting in error messages, e.g. "stack.kafka_port".
    """
    if configured == 0:
        return free_port(host)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, configured))
        except OSError as exc:
            raise PortInUseError(
                f"port {configured} on {host} is in use; set {setting} "
                f"(HEATSTREAM_{setting.upper().replace('.', '__')}) to another port "
                "or to 0 to pick a free one"
            ) from exc
    return configured


def is_listening(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
