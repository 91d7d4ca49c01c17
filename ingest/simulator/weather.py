"""Outdoor temperature at each site: season, time of day and a random weather anomaly.

A temperate climate (annual mean 11 °C, coldest around 20 January, warmest in
July, 4 K day/night swing peaking mid-afternoon UTC) plus, per site, a fixed
offset and an hourly AR(1) anomaly (standard deviation about 2.5 K, a few days
of memory), interpolated to the sample times.
"""

from __future__ import annotations

import numpy as np

from heatstream.ingest.simulator.rng import Purpose, stream

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
YEAR_DAYS = 365.2425
ANNUAL_MEAN_C = 11.0
ANNUAL_AMPLITUDE_K = 8.0
COLDEST_DAY_OF_YEAR = 20.0
DAILY_AMPLITUDE_K = 4.0
WARMEST_HOUR_UTC = 16.0
ANOMALY_PHI = 0.97  # hourly persistence
ANOMALY_SD_K = 2.5  # stationary standard deviation


def day_of_year(t_ms: np.ndarray) -> np.ndarray:
    """Fractional day of the year (0 = 1 January 00:00 UTC), ignoring leap days."""
    days = np.asarray(t_ms, dtype=np.float64) / DAY_MS
    # 1970-01-01 is day 0 of its year; drift of the 365.2425-day year is below a day per century.
    return np.mod(days, YEAR_DAYS)


def hour_of_day(t_ms: np.ndarray) -> np.ndarray:
    return np.mod(np.asarray(t_ms, dtype=np.float64), DAY_MS) / HOUR_MS


def climate_c(t_ms: np.ndarray, diurnal: bool = True) -> np.ndarray:
    """Seasonal (and diurnal) mean outdoor temperature, °C, without weather."""
    doy = day_of_year(t_ms)
    seasonal = ANNUAL_MEAN_C - ANNUAL_AMPLITUDE_K * np.cos(
        2 * np.pi * (doy - COLDEST_DAY_OF_YEAR) / YEAR_DAYS
    )
    if not diurnal:
        return seasonal
    hour = hour_of_day(t_ms)
    return seasonal + DAILY_AMPLITUDE_K * np.cos(2 * np.pi * (hour - WARMEST_HOUR_UTC) / 24.0)


class Weather:
    """Outdoor temperature of `n_sites` sites between `start_ms` and `end_ms`."""

    def __init__(self, seed: int, n_sites: int, start_ms: int, end_ms: int) -> None:
        first_hour = start_ms // HOUR_MS
        n_hours = int((end_ms - first_hour * HOUR_MS) // HOUR_MS) + 2
        self._hours_ms = (first_hour + np.arange(n_hours, dtype=np.int64)) * HOUR_MS
        self.offset_c = np.empty(n_sites)
        self._anomaly = np.empty((n_hours, n_sites))
        innovation_sd = ANOMALY_SD_K * np.sqrt(1 - ANOMALY_PHI**2)
        for s in range(n_sites):
            rng = stream(seed, Purpose.WEATHER, s)
            self.offset_c[s] = rng.uniform(-1.5, 1.5)
            shocks = rng.standard_normal(n_hours)
            value = shocks[0] * ANOMALY_SD_K
            for h in range(n_hours):
                if h:
                    value = ANOMALY_PHI * value + innovation_sd * shocks[h]
                self._anomaly[h, s] = value

    def outdoor_c(self, t_ms: np.ndarray, site_idx: np.ndarray, diurnal: bool = True) -> np.ndarray:
        """Outdoor temperature at times `t_ms` (shape (n,)) for sites `site_idx` -> (n, len(sites)).

        `diurnal=False` leaves out the day/night swing: the temperature a building's
        heat demand follows (its thermal mass averages the day).
        """
        t = np.asarray(t_ms, dtype=np.float64)
        base = climate_c(t, diurnal)[:, None] + self.offset_c[site_idx][None, :]
        hours = self._hours_ms.astype(np.float64)
        anomaly = np.empty((t.size, len(site_idx)))
        for j, s in enumerate(site_idx):
            anomaly[:, j] = np.interp(t, hours, self._anomaly[:, s])
        return base + anomaly
