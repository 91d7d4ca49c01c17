"""What one judged window says about a boiler, measured against its learned baselines.

A `Reading` gathers the numbers (recovery ratio against the load model,
supply/return temperatures against the temperature model, flow against its
baseline) and the verdicts the efficiency tracks vote on, so that the state
machine in `efficiency.py` and the sentences in `explain.py` share one
definition of "low", "hot" and "split".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reading:
    load: float  # IT power / nominal
    it_kw: float
    heat_kw: float
    ratio: float  # heat / IT
    erf: float  # heat / (IT + aux)
    expected_ratio: float | None
    supply_c: float
    return_c: float
    supply_res_k: float | None  # measured - expected for this load and weather
    return_res_k: float | None
    flow_lpm: float | None
    flow_base_lpm: float | None
    # the models' answers wherever they are, judged or not: (value(s)..., leverage)
    ratio_fit: tuple[float, float] | None = None
    temps_fit: tuple[float, float, float] | None = None
    settled: bool = True  # the loop temperature has settled: the temperature models apply

    @property
    def dev(self) -> float | None:
        """Relative deviation of the recovery ratio from this boiler's baseline."""
        if self.expected_ratio is None:
            return None
        return self.ratio / self.expected_ratio - 1.0

    @property
    def split_k(self) -> float | None:
        """Supply residual minus return residual: ΔT not implied by the IT load."""
        if self.supply_res_k is None or self.return_res_k is None:
            return None
        return self.supply_res_k - self.return_res_k

    def one_sensor_moved(self, min_k: float, still_k: float, still_share: float) -> bool:
        """One thermometer's residual moved by min_k or more while the other stayed put.

        A real change of the loop moves both: the return is the exchanger's outlet, so
        it follows the supply (by 1 - ε of its change for a loss of heat, fully for
        fouling or a warmer site). A thermometer that drifts moves alone.
        """
        s, r = self.supply_res_k, self.return_res_k
        if s is None or r is None:
            return False
        moved, other = (s, r) if abs(s) >= abs(r) else (r, s)
        return abs(moved - other) >= min_k and abs(other) <= max(still_k, still_share * abs(moved))

    @property
    def hot_k(self) -> float | None:
        """How much hotter the whole loop runs than its baseline (the smaller residual)."""
        if self.supply_res_k is None or self.return_res_k is None:
            return None
        return min(self.supply_res_k, self.return_res_k)

    @property
    def flow_change(self) -> float | None:
        if self.flow_lpm is None or not self.flow_base_lpm:
            return None
        return self.flow_lpm / self.flow_base_lpm - 1.0

    def evidence(self) -> dict[str, float]:
        """The numbers, for an event's evidence dict (absent ones left out)."""
        ev: dict[str, float] = {
            "ratio": self.ratio,
            "erf": self.erf,
            "load_pct": 100 * self.load,
            "it_kw": self.it_kw,
            "heat_kw": self.heat_kw,
            "supply_c": self.supply_c,
            "return_c": self.return_c,
        }
        optional = {
            "expected_ratio": self.expected_ratio,
            "deviation_pct": None if self.dev is None else 100 * self.dev,
            "supply_residual_k": self.supply_res_k,
            "return_residual_k": self.return_res_k,
            "flow_lpm": self.flow_lpm,
            "baseline_flow_lpm": self.flow_base_lpm,
        }
        ev.update({k: v for k, v in optional.items() if v is not None})
        return ev
