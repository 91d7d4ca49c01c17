"""Exponential backoff with jitter, for retrying a broker that went away.

The delay doubles from `base_ms` up to `max_ms`; each wait is drawn uniformly
from the upper half of it ("equal jitter"), so a fleet of gateways cut off by
the same outage does not reconnect in lockstep when the broker comes back, yet
none waits much less than the schedule says.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, base_ms: int, max_ms: int, rng: random.Random | None = None) -> None:
        self.base_ms = base_ms
        self.max_ms = max_ms
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay_s(self) -> float:
        """The wait before the next attempt, after one more failure."""
        ceiling = min(self.max_ms, self.base_ms * 2 ** min(self.failures, 30))
        self.failures += 1
        return self._rng.uniform(ceiling / 2, ceiling) / 1000.0

    def reset(self) -> None:
        self.failures = 0
