"""What one boiler did in one closed event-time window: the input of every detector.

`summarise` turns the sorted samples around a window into a `WindowStats`;
heat windows, rollups and the efficiency, leak and data-quality detectors all
read these, never raw samples, so detectors cost one call per boiler-minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from heatstream.streams.heat import MS_PER_HOUR, integrate_many
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


# Channels integrated over time: their window mean, and for power and make-up
# flow also their energy or volume. One row each in a single `integrate_many`.
_MEAN_CHANNELS = (
    "supply_temp_c",
    "return_temp_c",
    "flow_lpm",
    "supply_flow_lpm",
    "pressure_bar",
    "outdoor_temp_c",
    "it_power_kw",
    "aux_power_kw",
)
_TIMED_CHANNELS = (*_MEAN_CHANNELS, "makeup_flow_lpm")


def _mean(integral_h: float, covered_ms: float) -> float | None:
    # Same expression as `time_weighted_mean`, so the rounding is the same.
    if covered_ms <= 0:
        return None
    return integral_h * MS_PER_HOUR / covered_ms


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
    """Summarise sorted samples (which may extend up to max_gap beyond the window).

    All channels go through one `integrate_many` call and one pass over the
    samples inside the window: this runs once per boiler-minute, so it is on
    the stream processor's hot path.
    """
    length = float(end_ms - start_ms)
    n = t_ms.size
    nan = np.full(n, np.nan)
    supply = cols.get("supply_temp_c", nan)
    ret = cols.get("return_temp_c", nan)
    power = thermal_power_kw(
        supply, ret, cols.get("flow_lpm", nan), metered_at_c=supply if meter_on_supply else ret
    )

    timed = [name for name in _TIMED_CHANNELS if name in cols]
    rows = np.empty((1 + len(timed), n))
    rows[0] = power
    for k, name in enumerate(timed, start=1):
        rows[k] = cols[name]
    integrals, covered = integrate_many(t_ms, rows, start_ms, end_ms, max_gap_ms)
    heat_kwh, heat_cov = float(integrals[0]), float(covered[0])
    by_name = {
        name: (integral_h, covered_ms)
        for name, integral_h, covered_ms in zip(
            timed, integrals[1:].tolist(), covered[1:].tolist(), strict=True
        )
    }
    it_kwh, it_cov = by_name.get("it_power_kw", (0.0, 0.0))
    aux_kwh = by_name.get("aux_power_kw", (0.0, 0.0))[0]
    makeup_lpm_h = by_name.get("makeup_flow_lpm", (0.0, 0.0))[0]
    means = {name: _mean(*by_name[name]) for name in _MEAN_CHANNELS if name in by_name}

    # Samples are sorted, so the ones inside [start, end) are one slice.
    lo, hi = np.searchsorted(t_ms, (start_ms, end_ms), side="left").tolist()
    names = list(cols)
    spread: dict[str, float] = {}
    last: dict[str, float] = {}
    p_first: float | None = None
    p_last: float | None = None
    moisture_max: float | None = None
    if names and hi > lo:
        inner = np.array([cols[name][lo:hi] for name in names], dtype=np.float64)
        finite = np.isfinite(inner)
        counts = np.count_nonzero(finite, axis=1).tolist()
        top = np.where(finite, inner, -np.inf).max(axis=1).tolist()
        bottom = np.where(finite, inner, np.inf).min(axis=1).tolist()
        rows_at = np.arange(len(names))
        first = inner[rows_at, finite.argmax(axis=1)].tolist()
        final = inner[rows_at, hi - lo - 1 - finite[:, ::-1].argmax(axis=1)].tolist()
        for k, name in enumerate(names):
            if counts[k]:
                spread[name] = top[k] - bottom[k]
                last[name] = final[k]
        if "pressure_bar" in last:
            p_first, p_last = first[names.index("pressure_bar")], last["pressure_bar"]
        if "moisture_pct" in last:
            moisture_max = top[names.index("moisture_pct")]
    return WindowStats(
        boiler=boiler,
        gateway=gateway,
        site=site,
        start_ms=start_ms,
        end_ms=end_ms,
        samples=hi - lo,
        quarantined=quarantined,
        heat_kwh=heat_kwh,
        it_kwh=it_kwh,
        aux_kwh=aux_kwh,
        coverage=min(1.0, heat_cov / length),
        it_coverage=min(1.0, it_cov / length),
        supply_temp_mean_c=means.get("supply_temp_c"),
        return_temp_mean_c=means.get("return_temp_c"),
        flow_mean_lpm=means.get("flow_lpm"),
        supply_flow_mean_lpm=means.get("supply_flow_lpm"),
        pressure_mean_bar=means.get("pressure_bar"),
        pressure_first_bar=p_first,
        pressure_last_bar=p_last,
        makeup_l=makeup_lpm_h * 60.0,  # (L/min)·h -> L
        moisture_max_pct=moisture_max,
        outdoor_temp_mean_c=means.get("outdoor_temp_c"),
        it_power_mean_kw=means.get("it_power_kw"),
        aux_power_mean_kw=means.get("aux_power_kw"),
        spread=spread,
        last_values=last,
    )
