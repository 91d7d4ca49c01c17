"""Leak evidence from the two flow meters: more water leaving than coming back.

Where the boiler has a second flow meter on the supply side, a leak between
the meters shows as supply flow above return flow. The supply meter sees the
same mass as a larger volume (warmer water), so the return flow is first
corrected by ρ(T_return)/ρ(T_supply); the meters' own relative offset is
learned over `imbalance_warmup` quiet windows and followed slowly after. The
excess fires beyond max(`imbalance_abs_lpm`, `imbalance_rel` x flow) in
`imbalance_on_k` of `imbalance_on_n` windows and clears below half of that for
`imbalance_off_n` windows. The excess is the loss rate, measured directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heatstream.streams.detectors.baseline import DecayedMean
from heatstream.streams.detectors.context import WindowContext
from heatstream.streams.detectors.hysteresis import Latch
from heatstream.streams.detectors.verdict import NOT_ASSESSED, Finding, Verdict
from heatstream.streams.stats import WindowStats
from heatstream.streams.water import density_at

if TYPE_CHECKING:
    from heatstream.streams.detectors.leaks import LeakParams


class ImbalanceEvidence:
    def __init__(self, params: LeakParams) -> None:
        self.p = params
        self.offset = DecayedMean()
        self.latch = Latch(params.imbalance_on_k, params.imbalance_on_n, params.imbalance_off_n)

    def update(self, w: WindowStats, ctx: WindowContext, active: bool) -> Verdict:
        p, latch = self.p, self.latch
        supply, ret = w.supply_flow_mean_lpm, w.flow_mean_lpm
        ts, tr = w.supply_temp_mean_c, w.return_temp_mean_c
        if (
            not ctx.has_supply_flow_meter
            or supply is None
            or ret is None
            or ts is None
            or tr is None
            or ret < p.imbalance_min_flow_lpm
        ):
            return Verdict(None, False) if latch.active else NOT_ASSESSED
        expected = ret * density_at(tr) / density_at(ts)
        tol = max(p.imbalance_abs_lpm, p.imbalance_rel * ret)
        offset = self.offset.value(p.imbalance_warmup)
        if offset is None:
            if abs(supply / expected - 1.0) <= p.imbalance_rel:
                self.offset.update(supply / expected - 1.0, p.imbalance_alpha)
            return NOT_ASSESSED
        excess = supply - expected * (1.0 + offset)
        latch.step(w.start_ms, excess > tol, excess < tol / 2)
        if not latch.active and not latch.pending and not active and abs(excess) < tol / 2:
            self.offset.update(supply / expected - 1.0, p.imbalance_alpha)
        if not latch.active or latch.started_ms is None:
            return Verdict(None, excess < tol / 2)
        text = (
            f"supply flow {supply:.1f} L/min exceeds the return's {ret:.1f} L/min by "
            f"{excess:.2f} L/min beyond the meters' usual offset (tolerance {tol:.2f} L/min)"
        )
        return Verdict(Finding(latch.started_ms, max(0.0, excess), text), False)

    def to_state(self) -> dict[str, Any]:
        return {"offset": self.offset.to_state(), "latch": self.latch.to_state()}

    def load(self, state: dict[str, Any]) -> None:
        self.offset = DecayedMean.from_state(state["offset"])
        self.latch.load(state["latch"])
