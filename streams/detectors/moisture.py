"""Leak evidence from the floor/caisson moisture sensor: water where there should be none.

The window's maximum (not its mean, so the window in which a burst begins
already counts) against a threshold of the learned dry baseline plus
`moisture_rise_pct` points (never below `moisture_floor_pct`, always from
`moisture_abs_pct`), in `moisture_on_k` of `moisture_on_n` windows. It clears
once the floor is back within half that rise of its baseline for
`moisture_off_n` windows; a wet floor dries over hours, and the suspicion
stays until it has. The baseline learns only from dry windows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heatstream.streams.detectors.baseline import DecayedMean
from heatstream.streams.detectors.hysteresis import Latch
from heatstream.streams.detectors.verdict import NOT_ASSESSED, Finding, Verdict
from heatstream.streams.stats import WindowStats

if TYPE_CHECKING:
    from heatstream.streams.detectors.leaks import LeakParams


class MoistureEvidence:
    def __init__(self, params: LeakParams) -> None:
        self.p = params
        self.baseline = DecayedMean()
        self.latch = Latch(params.moisture_on_k, params.moisture_on_n, params.moisture_off_n)

    def update(self, w: WindowStats) -> Verdict:
        p, latch, value = self.p, self.latch, w.moisture_max_pct
        if value is None:
            return Verdict(None, False) if latch.active else NOT_ASSESSED
        base = self.baseline.value(1.0)
        if base is None:
            threshold = p.moisture_abs_pct
            clear_below = p.moisture_abs_pct - p.moisture_rise_pct
        else:
            threshold = min(
                p.moisture_abs_pct, max(p.moisture_floor_pct, base + p.moisture_rise_pct)
            )
            clear_below = max(base + p.moisture_rise_pct / 2, threshold - p.moisture_rise_pct / 2)
        evidence = value >= threshold
        latch.step(w.start_ms, evidence, value < clear_below)
        if not evidence and not latch.active and not latch.pending:
            self.baseline.update(value, p.moisture_alpha)
        if not latch.active or latch.started_ms is None:
            return Verdict(None, value < clear_below)
        base_text = f"its {base:.1f} % baseline" if base is not None else "no baseline yet"
        text = f"floor moisture {value:.0f} % against {base_text} (threshold {threshold:.0f} %)"
        return Verdict(Finding(latch.started_ms, None, text), False)

    def to_state(self) -> dict[str, Any]:
        return {"baseline": self.baseline.to_state(), "latch": self.latch.to_state()}

    def load(self, state: dict[str, Any]) -> None:
        self.baseline = DecayedMean.from_state(state["baseline"])
        self.latch.load(state["latch"])
