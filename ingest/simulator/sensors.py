"""From the true state to what the sensors report: noise, resolution, sensor faults.

Noise is zero-mean (no calibration offsets), so heat integrated from the
readings converges on the true heat; each channel is rounded to the resolution
a gateway would report, which also keeps frames small. Flows and powers have
relative noise (a stopped pump reads exactly 0), readings that cannot be
negative are clipped at 0.
"""

from __future__ import annotations

import numpy as np

from heatstream.ingest.simulator.plan import PlannedFault

#: Channels with noise, in the column order of the noise array (after jitter and load).
NOISY: tuple[tuple[str, float, bool], ...] = (
    # (channel, sigma, relative)
    ("supply_temp_c", 0.03, False),
    ("return_temp_c", 0.03, False),
    ("flow_lpm", 0.003, True),
    ("supply_flow_lpm", 0.003, True),
    ("pressure_bar", 0.004, False),
    ("it_power_kw", 0.002, True),
    ("aux_power_kw", 0.01, True),
    ("makeup_flow_lpm", 0.02, True),
    ("moisture_pct", 0.15, False),
    ("outdoor_temp_c", 0.05, False),
)
JITTER_COLUMN = 0
LOAD_COLUMN = 1
FIRST_NOISE_COLUMN = 2
N_NOISE = FIRST_NOISE_COLUMN + len(NOISY)

DECIMALS: dict[str, int] = {
    "supply_temp_c": 2,
    "return_temp_c": 2,
    "flow_lpm": 2,
    "supply_flow_lpm": 2,
    "pressure_bar": 3,
    "it_power_kw": 2,
    "aux_power_kw": 3,
    "makeup_flow_lpm": 2,
    "moisture_pct": 1,
    "outdoor_temp_c": 1,
    "pump_speed_pct": 0,
    "it_utilisation_pct": 1,
}
NON_NEGATIVE = (
    "flow_lpm",
    "supply_flow_lpm",
    "pressure_bar",
    "it_power_kw",
    "aux_power_kw",
    "makeup_flow_lpm",
    "moisture_pct",
    "it_utilisation_pct",
)


def measure(true: dict[str, np.ndarray], noise: np.ndarray) -> dict[str, np.ndarray]:
    """Readings (T, B) from true values (T, B) and standard-normal noise (T, B, N_NOISE)."""
    out = dict(true)
    for j, (name, sigma, relative) in enumerate(NOISY):
        z = noise[:, :, FIRST_NOISE_COLUMN + j]
        value = true[name]
        out[name] = value * (1.0 + sigma * z) if relative else value + sigma * z
    for name in NON_NEGATIVE:
        out[name] = np.maximum(out[name], 0.0)
    out["moisture_pct"] = np.minimum(out["moisture_pct"], 100.0)
    return out


def quantize(readings: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Round every channel to its reported resolution (NaN stays NaN)."""
    return {name: np.round(values, DECIMALS[name]) for name, values in readings.items()}


class SensorFaults:
    """Stuck and drifting sensors, applied to the readings of each chunk."""

    def __init__(self, faults: list[PlannedFault]) -> None:
        self.faults = [f for f in faults if f.kind in ("stuck_sensor", "drifting_sensor")]
        self._stuck_at: dict[int, float] = {}

    def apply_drift(self, readings: dict[str, np.ndarray], t_ms: np.ndarray) -> None:
        """Before rounding: drifting channels move by rate x time since the fault began."""
        for f in self.faults:
            if f.kind != "drifting_sensor":
                continue
            assert f.boiler is not None
            active = f.active(t_ms)
            if not active.any():
                continue
            hours = (t_ms[active] - f.start_ms) / 3_600_000.0
            column = readings[str(f.params["channel"])]
            column[active, f.boiler] += float(f.params["rate_per_h"]) * hours

    def apply_stuck(self, readings: dict[str, np.ndarray], t_ms: np.ndarray) -> None:
        """After rounding: stuck channels repeat their first faulty reading exactly."""
        for f in self.faults:
            if f.kind != "stuck_sensor":
                continue
            assert f.boiler is not None
            active = np.flatnonzero(f.active(t_ms))
            if active.size == 0:
                continue
            column = readings[str(f.params["channel"])]
            if f.index not in self._stuck_at:
                self._stuck_at[f.index] = float(column[active[0], f.boiler])
            column[active, f.boiler] = self._stuck_at[f.index]
