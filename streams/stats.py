"""What one boiler did in one closed event-time window: the input of every detector.

`summarise` turns the sorted samples around a window into a `WindowStats`;
heat windows, rollups and the efficiency, leak and data-quality detectors all
read these, never raw samples, so detectors cost one call per boiler-minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from heatstream.streams.heat import integrate, time_weighted_mean
from heatstream.streams.water import thermal_power_kw


@dataclass(frozen=True, slots=True)
class WindowStats:
    boiler: str
    gateway: str
    site: str
    start_ms: int
    end_ms: int
    samples: int
    quarantined: int
    heat_kwh: float
    it_kwh: float
    aux_kwh: float
    coverage: float  # fraction of the window where heat could be computed
    it_coverage: float
    supply_temp_mean_c: float | None
    return_temp_mean_c: float | None
    flow_mean_lpm: float | None
    supply_flow_mean_lpm: float | None
    pressure_mean_bar: float | None
    pressure_first_bar: float | None
    pressure_last_bar: float | None
    makeup_l: float  # make-up water volume fed in the window, litres
    moisture_max_pct: float | None
    outdoor_temp_mean_c: float | None
    it_power_mean_kw: float | None
    aux_power_mean_kw: float | None
    spread: dict[str, float] = field(default_factory=dict)  # max - min per channel present
    last_values: dict[str, float] = field(default_factory=dict)

    @property
    def duration_h(self) -> float:
        return (self.end_ms - self.start_ms) / 3_600_000.0

    @property
    def total_kwh(self) -> float:
        return self.it_kwh + self.aux_kwh

    @property
    def loop_temp_mean_c(self) -> float | None:
        if self.supply_temp_mean_c is None or self.return_temp_mean_c is None:
            return None
        return (self.supply_temp_mean_c + self.return_temp_mean_c) / 2.0


def _first_last(
    t: np.ndarray, v: np.ndarray, start: int, end: int
) -> tuple[float | None, float | None]:
    inside = (t >= start) & (t < end) & np.isfinite(v)
    if not inside.any():
        return None, None
    vals = v[inside]
    return float(vals[0]), float(vals[-1])


def summarise(
    boiler: str,
    gateway: str,
    site: str,
    start_ms: int,
    end_ms: int,
    t_ms: np.ndarray,
    cols: dict[str, np.ndarray],
    quarantined: int,
    max_gap_ms: float,
    meter_on_supply: bool = False,
) -> WindowStats:
    """Summarise sorted samples (which may extend up to max_gap beyond the window)."""
    length = float(end_ms - start_ms)
    nan = np.full(t_ms.size, np.nan)

    def col(name: str) -> np.ndarray:
        return cols.get(name, nan)

    supply, ret, flow = col("supply_temp_c"), col("return_temp_c"), col("flow_lpm")
    metered_at = supply if meter_on_supply else ret
    power = thermal_power_kw(supply, ret, flow, metered_at_c=metered_at)
    heat_kwh, heat_cov = integrate(t_ms, power, start_ms, end_ms, max_gap_ms)
    it_kwh, it_cov = integrate(t_ms, col("it_power_kw"), start_ms, end_ms, max_gap_ms)
    aux_kwh, _ = integrate(t_ms, col("aux_power_kw"), start_ms, end_ms, max_gap_ms)
    makeup_lpm_h, _ = integrate(t_ms, col("makeup_flow_lpm"), start_ms, end_ms, max_gap_ms)

    def mean(name: str) -> float | None:
        if name not in cols:
            return None
        return time_weighted_mean(t_ms, cols[name], start_ms, end_ms, max_gap_ms)

    inside = (t_ms >= start_ms) & (t_ms < end_ms)
    spread: dict[str, float] = {}
    last: dict[str, float] = {}
    for name, values in cols.items():
        vals = values[inside]
        vals = vals[np.isfinite(vals)]
        if vals.size:
            spread[name] = float(vals.max() - vals.min())
            last[name] = float(vals[-1])
    p_first, p_last = _first_last(t_ms, col("pressure_bar"), start_ms, end_ms)
    moisture = cols.get("moisture_pct")
    moisture_in = moisture[inside] if moisture is not None else np.empty(0)
    moisture_in = moisture_in[np.isfinite(moisture_in)]
    return WindowStats(
        boiler=boiler,
        gateway=gateway,
        site=site,
        start_ms=start_ms,
        end_ms=end_ms,
        samples=int(inside.sum()),
        quarantined=quarantined,
        heat_kwh=heat_kwh,
        it_kwh=it_kwh,
        aux_kwh=aux_kwh,
        coverage=min(1.0, heat_cov / length),
        it_coverage=min(1.0, it_cov / length),
        supply_temp_mean_c=mean("supply_temp_c"),
        return_temp_mean_c=mean("return_temp_c"),
        flow_mean_lpm=mean("flow_lpm"),
        supply_flow_mean_lpm=mean("supply_flow_lpm"),
        pressure_mean_bar=mean("pressure_bar"),
        pressure_first_bar=p_first,
        pressure_last_bar=p_last,
        makeup_l=makeup_lpm_h * 60.0,  # (L/min)·h -> L
        moisture_max_pct=float(moisture_in.max()) if moisture_in.size else None,
        outdoor_temp_mean_c=mean("outdoor_temp_c"),
        it_power_mean_kw=mean("it_power_kw"),
        aux_power_mean_kw=mean("aux_power_kw"),
        spread=spread,
        last_values=last,
    )
