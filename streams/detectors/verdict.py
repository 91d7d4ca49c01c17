"""What one piece of leak evidence says about one window."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    """The evidence fires: since when, how fast water is lost (if it can tell), in words."""

    start_ms: int
    rate_lpm: float | None
    text: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """`finding` when the evidence fires; `clear` True when it positively shows no leak,
    False when it does not, None when it cannot be assessed this window."""

    finding: Finding | None
    clear: bool | None


NOT_ASSESSED = Verdict(None, None)
