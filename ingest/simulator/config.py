"""What one simulator run is: fleet size, time span, sampling, seed and faults."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from heatstream.ingest.simulator.faultspec import FaultSpec
from heatstream.ingest.simulator.timeparse import parse_instant_ms
from heatstream.schemas.envelope import MAX_TIME_MS, MIN_TIME_MS
from heatstream.schemas.telemetry import MAX_SAMPLES, MAX_SPAN_MS

DEFAULT_START_MS = parse_instant_ms("2026-01-15T00:00Z")


class SimConfigError(ValueError):
    """The run cannot be simulated as asked; the message says what to change."""


@dataclass(frozen=True)
class SimConfig:
    boilers: int = 12
    sites: int = 3
    start_ms: int = DEFAULT_START_MS
    duration_ms: int = 3_600_000
    sample_ms: int = 1000  # one reading of every channel of every boiler per sample
    frame_span_ms: int = 1000  # event time one frame covers (a multiple of sample_ms)
    seed: int = 0
    faults: tuple[FaultSpec, ...] = field(default=())
    nominal_it_kw: float = 100.0
    warm_start: bool = True  # start from steady state (False: a cold loop, for warm-up studies)
    chunk_ms: int = 900_000  # how much simulated time is computed per numpy batch
    physics_ms: int = 10_000  # loop physics step; samples in between are interpolated

    def __post_init__(self) -> None:
        if self.boilers < 1 or self.sites < 1 or self.boilers < self.sites:
            raise SimConfigError(
                f"--boilers {self.boilers} --sites {self.sites}: need at least one boiler per site"
            )
        if self.sample_ms < 100:
            raise SimConfigError(f"sample period {self.sample_ms} ms: use at least 100 ms")
        if self.frame_span_ms % self.sample_ms:
            raise SimConfigError(
                f"frame span {self.frame_span_ms} ms must be a multiple of the sample period"
                f" {self.sample_ms} ms"
            )
        if not self.sample_ms <= self.frame_span_ms <= MAX_SPAN_MS // 2:
            raise SimConfigError(f"frame span {self.frame_span_ms} ms out of range")
        if self.duration_ms < self.frame_span_ms:
            raise SimConfigError(
                f"duration {self.duration_ms} ms is shorter than a frame ({self.frame_span_ms} ms)"
            )
        # Jobs already running at --start are announced with start times up to a day earlier.
        if not (
            self.start_ms - 86_400_000 >= MIN_TIME_MS and self.end_ms + 3_600_000 <= MAX_TIME_MS
        ):
            raise SimConfigError("the run must lie between 2000-01-02 and 2099-12-31")
        per_frame = (self.frame_span_ms // self.sample_ms) * self.boilers
        if per_frame > MAX_SAMPLES:
            raise SimConfigError(f"a frame would hold {per_frame} samples (max {MAX_SAMPLES})")
        if self.physics_ms < 1:
            raise SimConfigError("the physics step must be positive")
        if self.nominal_it_kw <= 0:
            raise SimConfigError("nominal IT power must be positive")

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.n_steps * self.sample_ms

    @property
    def n_steps(self) -> int:
        """Samples per boiler (whole frames only)."""
        return (self.duration_ms // self.frame_span_ms) * self.steps_per_frame

    @property
    def steps_per_frame(self) -> int:
        return self.frame_span_ms // self.sample_ms

    @property
    def physics_steps(self) -> int:
        """Samples per physics step."""
        return max(1, self.physics_ms // self.sample_ms)

    @property
    def chunk_steps(self) -> int:
        unit = math.lcm(self.steps_per_frame, self.physics_steps)
        return max(1, self.chunk_ms // (unit * self.sample_ms)) * unit
