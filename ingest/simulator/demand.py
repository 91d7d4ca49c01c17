"""What each kind of site does with the heat: demand, exchanger and cold-side temperature.

A digital boiler hands its loop heat to the site through a plate heat exchanger.
Per site kind this module says

* `demand_ratio`: the heat the site can absorb right now over what the boiler
  can deliver at full IT power (1 = everything, above 1 the site's own backup
  covers the rest). The operator caps IT power when it falls below 1, which is
  the summer throttling of a residential building; a pool needs heat all year.
* `cold_side_c`: the temperature of the site water entering the exchanger
  (pool water, radiator return following the heating curve, network return),
  which, with the exchanger's effectiveness, sets the loop's return temperature.
* `EFFECTIVENESS`: the exchanger's nominal effectiveness ε, chosen per kind so
  that supply lands around 60-70 °C at full power with a 13-17 K loop ΔT.

Heating-degree fraction: (16 °C - outdoor) / (16 - (-7)), clipped at 0: 0 in
summer, 1 on a design-cold day, from the outdoor temperature without its
day/night swing (a building's thermal mass averages the day).
"""

from __future__ import annotations

import numpy as np

HEATING_BASE_C = 16.0
DESIGN_OUTDOOR_C = -7.0

SITE_KINDS: tuple[str, ...] = (
    "swimming_pool",
    "residential",
    "district_heating",
    "office",
    "industrial",
)
_KIND_INDEX = {k: i for i, k in enumerate(SITE_KINDS)}

#: Nominal exchanger effectiveness per site kind (same order as SITE_KINDS).
EFFECTIVENESS = np.array([0.45, 0.62, 0.72, 0.62, 0.60])


def kind_index(kind: str) -> int:
    return _KIND_INDEX[kind]


def heating_fraction(outdoor_c: np.ndarray) -> np.ndarray:
    return np.clip((HEATING_BASE_C - outdoor_c) / (HEATING_BASE_C - DESIGN_OUTDOOR_C), 0.0, 1.3)


def _hot_water_profile(hour: np.ndarray) -> np.ndarray:
    """Residential domestic hot water: a base with morning and evening peaks."""
    morning = np.exp(-0.5 * ((hour - 7.5) / 1.2) ** 2)
    evening = np.exp(-0.5 * ((hour - 20.0) / 1.8) ** 2)
    return 0.15 + 0.22 * morning + 0.2 * evening


def demand_ratio(
    kind_idx: np.ndarray, outdoor_c: np.ndarray, hour: np.ndarray, weekday: np.ndarray
) -> np.ndarray:
    """Heat demand over boiler capacity, elementwise (all arrays broadcast together)."""
    hdd = heating_fraction(outdoor_c)
    pool = 0.92 + 0.3 * hdd
    residential = _hot_water_profile(hour) + 2.0 * hdd
    district = 0.55 + 0.9 * hdd
    office_hours = (weekday < 5) & (hour >= 7.0) & (hour < 19.0)
    office = 0.05 + np.where(office_hours, 1.8, 0.6) * hdd
    industrial = np.full_like(hdd, 0.8)
    return np.choose(kind_idx, (pool, residential, district, office, industrial))


def cold_side_c(kind_idx: np.ndarray, outdoor_c: np.ndarray) -> np.ndarray:
    """Temperature of the site water entering the exchanger, °C."""
    hdd = np.minimum(heating_fraction(outdoor_c), 1.0)
    pool = np.full_like(hdd, 28.0)
    residential = 32.0 + 10.0 * hdd
    district = 45.0 + 6.0 * hdd
    office = 30.0 + 12.0 * hdd
    industrial = np.full_like(hdd, 40.0)
    return np.choose(kind_idx, (pool, residential, district, office, industrial))


def planned_cap_fraction(ratio: np.ndarray) -> np.ndarray:
    """The operator's IT power cap as a fraction of nominal (NaN = no cap).

    Caps come in 10 % steps rounded up (never starve the site), never below
    20 %, and only when the site needs less than 90 % of the boiler's heat.
    """
    stepped = np.clip(np.ceil(np.round(ratio * 10.0, 6)) / 10.0, 0.2, 1.0)
    return np.where(ratio < 0.9, stepped, np.nan)
