"""Errors of the embedded development stack.

Each says what went wrong and what to do about it, because the person reading it
is a developer at a terminal (or a failing test run), not a log pipeline.
"""

from __future__ import annotations

from heatstream.errors import HeatstreamError


class StackError(HeatstreamError, RuntimeError):
    """The embedded stack could not do what was asked."""


class BinaryNotFoundError(StackError, FileNotFoundError):
    """A server binary is missing; the message names the package to install."""


class PortInUseError(StackError, OSError):
    """A configured port is already taken by another process."""


class StackStartError(StackError):
    """A server died or stayed unhealthy during start-up; the message carries its log tail."""


class ProvisioningError(StackError):
    """Topics or the database could not be created."""
