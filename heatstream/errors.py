"""The root of heatstream's exceptions.

Each subclass also inherits the builtin it resembles, so callers that only know
`ValueError` or `ConnectionError` still catch it.
"""

from __future__ import annotations


class HeatstreamError(Exception):
    """Base class of every error heatstream raises on purpose."""
