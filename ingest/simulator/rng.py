"""Named, independent random streams derived from the one `--seed`.

Each stream is keyed by (purpose, index): the noise of boiler 7 comes from
`stream(seed, NOISE, 7)` whatever else the run contains, so adding a boiler, a
fault or a gateway never changes the numbers drawn for the others. numpy's
SeedSequence spawn keys give streams that are statistically independent.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Purpose(IntEnum):
    """What a stream is for (its value is part of the key: never renumber)."""

    PARAMS = 1  # per boiler: static parameters (sizes, efficiencies, setpoints)
    JOBS = 2  # per boiler: job arrivals, sizes and durations
    NOISE = 3  # per boiler: sensor noise, IT-power fluctuation, sampling jitter
    WEATHER = 4  # per site: weather anomaly
    FAULT = 5  # per fault spec (by position in the list): target, time, parameters
    DELIVERY = 6  # per fault spec: duplicate / reorder decisions
    MALFORMED = 7  # per fault spec: how a malformed message is broken


def stream(seed: int, purpose: Purpose, index: int = 0) -> np.random.Generator:
    """The generator of one (purpose, index) stream of run `seed`."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(purpose), index)))
