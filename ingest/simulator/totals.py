"""The simulator's own energy totals: what a correct pipeline must recover.

Integrated per boiler from the *true* state at the instants the samples were
taken (trapezoid over consecutive samples), so the only differences between
these totals and what a pipeline computes from the frames are sensor noise
and rounding, which average out (well under 0.1 % over an hour), plus whatever
the injected faults take away on purpose (stuck or drifting sensors, clock
skew, out-of-range readings, frames replaced by malformed messages).

Heat is what an ideal heat meter at the boiler measures,
ρ(T_meter)·V̇·c_p(T_mean)·(T_supply − T_return) from `heatstream.streams.water`,
i.e. exactly the formula the pipeline applies.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from heatstream.ingest.simulator.fleet import Fleet

MS_PER_HOUR = 3_600_000.0


class Totals:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        n = fleet.n_boilers
        self.heat_kwh = np.zeros(n)
        self.it_kwh = np.zeros(n)
        self.aux_kwh = np.zeros(n)
        self.samples = np.zeros(n, dtype=np.int64)
        self._last_t: np.ndarray | None = None
        self._last: dict[str, np.ndarray] = {}

    def add(
        self, t_ms: np.ndarray, heat_kw: np.ndarray, it_kw: np.ndarray, aux_kw: np.ndarray
    ) -> None:
        """Integrate one chunk: arrays (T, B), continuing from the previous chunk."""
        series = {"heat": heat_kw, "it": it_kw, "aux": aux_kw}
        t = t_ms.astype(np.float64)
        if self._last_t is not None:
            t = np.vstack([self._last_t[None, :], t])
            series = {k: np.vstack([self._last[k][None, :], v]) for k, v in series.items()}
        dt_h = np.diff(t, axis=0) / MS_PER_HOUR
        for name, target in (("heat", self.heat_kwh), ("it", self.it_kwh), ("aux", self.aux_kwh)):
            v = series[name]
            target += np.sum(0.5 * (v[1:] + v[:-1]) * dt_h, axis=0)
        self.samples += t_ms.shape[0]
        self._last_t = t[-1].copy()
        self._last = {k: v[-1].copy() for k, v in series.items()}

    def summary(self) -> dict[str, Any]:
        """Totals per boiler, per site and for the fleet (kWh, rounded to 1 Wh)."""
        f = self.fleet

        def entry(idx: np.ndarray) -> dict[str, Any]:
            heat = float(self.heat_kwh[idx].sum())
            it = float(self.it_kwh[idx].sum())
            aux = float(self.aux_kwh[idx].sum())
            return {
                "heat_kwh": round(heat, 3),
                "it_kwh": round(it, 3),
                "aux_kwh": round(aux, 3),
                "erf": round(heat / (it + aux), 5) if it + aux > 0 else None,
            }

        boilers = {}
        for b, boiler in enumerate(f.boiler_ids):
            boilers[boiler] = {
                "site": f.site_ids[f.site[b]],
                "gateway": f.gateway_ids[f.gateway[b]],
                **entry(np.array([b])),
                "samples": int(self.samples[b]),
            }
        sites = {}
        for s, site in enumerate(f.site_ids):
            members = np.flatnonzero(f.site == s)
            sites[site] = {"kind": f.site_kinds[s], "boilers": int(members.size), **entry(members)}
        fleet = {"boilers": f.n_boilers, **entry(np.arange(f.n_boilers))}
        return {"fleet": fleet, "sites": sites, "boilers": boilers}
