"""Pump failure of one boiler: IT on, loop flow near zero, and the boiler heating up.

Judged on every window with a flow reading, steady or not, and not suppressed by
planned throttling (a cap explains less heat, not a stopped pump):

* evidence: IT >= `pump_min_load` of nominal now or in the previous window (a
  boiler's thermal protection cuts IT within a minute or two of its pump
  stopping), flow below `pump_flow_share` of the usual flow (the learned one, or
  the design flow before it is learned), and the boiler heating up as it must
  without flow: supply up `pump_heating_k` since the previous window, or twice
  that within the window, or already at `critical_supply_c`. A flow meter that
  reads low or zero while the pump runs heats nothing and is not a pump failure
  (the loss track reports it as a meter fault);
* start on the first such window (1 of 1), critical; end after `pump_off_n`
  consecutive windows with flow back above `pump_clear_share` of the usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from heatstream.streams.detectors.context import WindowContext
from heatstream.streams.detectors.hysteresis import Latch
from heatstream.streams.stats import WindowStats

if TYPE_CHECKING:
    from heatstream.streams.detectors.efficiency import EfficiencyParams


@dataclass(frozen=True, slots=True)
class PumpEvent:
    """What the track reports; the detector turns it into an `EfficiencyAnomaly`."""

    phase: str
    end_ms: int | None
    evidence: dict[str, float]
    reason: str
    info: dict[str, Any]  # kind, severity, start, min_flow_lpm


class PumpTrack:
    def __init__(self, params: EfficiencyParams) -> None:
        self.p = params
        self.latch = Latch(1, 1, params.pump_off_n)
        self.open: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        return self.latch.active

    def update(
        self,
        w: WindowStats,
        ctx: WindowContext,
        load: float | None,
        prev: list[Any] | None,
        usual_flow: tuple[float, bool],
    ) -> PumpEvent | None:
        """`prev` is the previous consecutive window's [end_ms, supply, return, it_kw] or
        None; `usual_flow` the flow expected and whether it was learned."""
        p, latch, flow = self.p, self.latch, w.flow_mean_lpm
        on = (load is not None and load >= p.pump_min_load) or (
            prev is not None
            and prev[3] is not None
            and prev[3] >= p.pump_min_load * ctx.nominal_it_kw
        )
        if flow is None or not (on or latch.active):
            return None
        base, learned = usual_flow
        evidence = on and flow < p.pump_flow_share * base and self._heating(w, prev)
        transition = latch.step(w.start_ms, evidence, flow >= p.pump_clear_share * base)
        if transition is None:
            if self.open is not None:
                self.open["min_flow_lpm"] = min(self.open["min_flow_lpm"], flow)
            return None
        if transition == "start":
            self.open = {
                "kind": "pump_failure",
                "severity": "critical",
                "start": latch.started_ms,
                "min_flow_lpm": flow,
            }
            return self._start(w, ctx, flow, base, learned)
        info, self.open = self.open or {}, None
        reason = (
            f"Loop flow back to {flow:.1f} L/min ({flow / base:.0%} of the {base:.1f} L/min "
            f"baseline) for {p.pump_off_n} consecutive windows; lowest flow during the "
            f"failure {info['min_flow_lpm']:.2f} L/min."
        )
        ev = {"flow_lpm": flow, "expected_flow_lpm": base, "min_flow_lpm": info["min_flow_lpm"]}
        return PumpEvent("end", latch.clear_start_ms, ev, reason, info)

    def _heating(self, w: WindowStats, prev: list[Any] | None) -> bool:
        """The boiler heats up, as it must with IT on and no flow. True when it cannot
        be told (no supply reading, or no previous window)."""
        p, supply = self.p, w.supply_temp_mean_c
        if supply is None or prev is None or prev[1] is None:
            return True
        return (
            supply - prev[1] >= p.pump_heating_k
            or w.spread.get("supply_temp_c", 0.0) >= 2 * p.pump_heating_k
            or supply >= p.critical_supply_c
        )

    def _start(
        self, w: WindowStats, ctx: WindowContext, flow: float, base: float, learned: bool
    ) -> PumpEvent:
        p = self.p
        it_kw = w.it_power_mean_kw or 0.0
        load = it_kw / ctx.nominal_it_kw
        ev = {
            "it_kw": it_kw,
            "load_pct": 100 * load,
            "flow_lpm": flow,
            "expected_flow_lpm": base,
            "flow_share_pct": 100 * flow / base,
        }
        if w.supply_temp_mean_c is not None:
            ev["supply_c"] = w.supply_temp_mean_c
        if w.pressure_mean_bar is not None:
            ev["pressure_bar"] = w.pressure_mean_bar
        source = "learned baseline" if learned else "design flow (baseline not learned yet)"
        reason = (
            f"IT load {it_kw:.1f} kW ({load:.0%} of nominal) but loop flow only "
            f"{flow:.2f} L/min, {flow / base:.1%} of its {base:.1f} L/min {source} "
            f"(threshold {p.pump_flow_share:.0%}) and the boiler heating up: the circulation "
            "pump has stopped and the servers are not being cooled."
        )
        if w.pressure_mean_bar is not None and w.pressure_mean_bar < 0.5:
            reason += (
                f" Loop pressure is {w.pressure_mean_bar:.2f} bar: the loop has drained and "
                "the pump lost its prime; look for a leak."
            )
        assert self.open is not None
        return PumpEvent("start", None, ev, reason, dict(self.open))

    def to_state(self) -> dict[str, Any]:
        return {
            "latch": self.latch.to_state(),
            "open": None if self.open is None else dict(self.open),
        }

    def load(self, state: dict[str, Any]) -> None:
        self.latch.load(state["latch"])
        self.open = None if state["open"] is None else dict(state["open"])
