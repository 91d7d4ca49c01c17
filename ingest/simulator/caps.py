"""Planned IT power caps: throttling when the site needs little heat.

Every 15 minutes the operator compares each site's heat demand with what its
boilers would deliver at full power (`demand.demand_ratio`) and caps the IT
power to match, in 10 % steps. The cap rises as soon as the site needs more
heat but falls only once demand is clearly (15 points) below it, so it does
not flap. Each change is a planned `compute.power_cap_set` event (reason
`low_heat_demand`), which explains the lower heat to the stream processor. The
state at `--start` is announced at `--start`.
"""

from __future__ import annotations

import numpy as np

from heatstream.ingest.simulator import demand
from heatstream.ingest.simulator.fleet import Fleet
from heatstream.ingest.simulator.weather import DAY_MS, HOUR_MS, Weather
from heatstream.ingest.simulator.workload import ComputeEvent

DECISION_MS = 15 * 60_000
LOWER_MARGIN = 0.15


def weekday(t_ms: np.ndarray) -> np.ndarray:
    """0 = Monday (1970-01-01 was a Thursday)."""
    return (np.asarray(t_ms, dtype=np.int64) // DAY_MS + 3) % 7


class CapPlan:
    """Per boiler cap (fraction of nominal IT power, 1.0 = uncapped) as step functions."""

    def __init__(self, fleet: Fleet, weather: Weather, start_ms: int, end_ms: int) -> None:
        n_decisions = max(1, -(-(end_ms - start_ms) // DECISION_MS))
        self.times = start_ms + DECISION_MS * np.arange(n_decisions, dtype=np.int64)
        outdoor = weather.outdoor_c(self.times, np.arange(fleet.n_sites), diurnal=False)  # (D, S)
        hour = np.mod(self.times, DAY_MS) / HOUR_MS
        day = weekday(self.times)
        kinds = np.array([demand.kind_index(k) for k in fleet.site_kinds])
        ratio = demand.demand_ratio(kinds[None, :], outdoor, hour[:, None], day[:, None])
        wanted = np.nan_to_num(demand.planned_cap_fraction(ratio), nan=1.0)  # (D, S)

        self.fraction = np.empty((n_decisions, fleet.n_boilers))
        self.events: list[ComputeEvent] = []
        for s in range(fleet.n_sites):
            level = wanted[0, s]
            levels = np.empty(n_decisions)
            for d in range(n_decisions):
                target = wanted[d, s]
                if target > level or ratio[d, s] <= level - LOWER_MARGIN:
                    level = target
                levels[d] = level
            members = np.flatnonzero(fleet.site == s)
            self.fraction[:, members] = levels[:, None]
            changed = np.r_[levels[0] < 1.0, levels[1:] != levels[:-1]]
            for d in np.flatnonzero(changed).tolist():
                for b in members.tolist():
                    cap = None if levels[d] >= 1.0 else round(levels[d] * fleet.nominal_kw[b], 3)
                    self.events.append(
                        ComputeEvent(
                            int(self.times[d]),
                            b,
                            "compute.power_cap_set",
                            {"cap_kw": cap, "reason": "low_heat_demand", "planned": True},
                        )
                    )
        self.events.sort(key=lambda e: (e.t_ms, e.boiler))

    def at(self, t_ms: np.ndarray) -> np.ndarray:
        """Cap fraction (T, B) at times `t_ms`."""
        idx = np.searchsorted(self.times, t_ms, side="right") - 1
        return self.fraction[np.maximum(idx, 0)]
