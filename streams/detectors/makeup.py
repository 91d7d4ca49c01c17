"""Leak evidence from make-up water: fill episodes remembered over hours.

A closed loop needs no water. One fill, however large, is maintenance (or the
first fill of a cold loop); what a leak looks like is fills that come back
(an auto-fill valve topping up every time the pressure reaches its low limit)
or one fill that goes on and on (water fed as fast as it escapes). So the
evidence keeps the last few fill episodes (consecutive windows with make-up)
of the past `makeup_memory_ms` and fires, in a window with make-up, when:

* it is at least the second episode in memory and the episodes total at least
  `makeup_volume_l`; or
* the current episode has lasted `makeup_long_windows` windows or fed
  `makeup_topup_max_l` litres.

The estimated loss is what the later fills replaced over the time since the
first one ended (a top-up replaces what leaked before it), or the volume over
the duration of a single long fill.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heatstream.streams.detectors.verdict import Finding, Verdict
from heatstream.streams.stats import WindowStats

if TYPE_CHECKING:
    from heatstream.streams.detectors.leaks import LeakParams

MAX_EPISODES = 8


class MakeupEvidence:
    def __init__(self, params: LeakParams) -> None:
        self.p = params
        self.episodes: list[list[Any]] = []  # [start_ms, end_ms, litres, windows], oldest first
        self.open = False  # the last episode is still filling

    def update(self, w: WindowStats) -> Verdict:
        p = self.p
        wet = w.makeup_l >= p.makeup_wet_l
        if not wet:
            self.open = False
            return Verdict(None, True)
        if self.open:
            ep = self.episodes[-1]
            ep[1], ep[2], ep[3] = w.end_ms, ep[2] + w.makeup_l, ep[3] + 1
        else:
            self.episodes.append([w.start_ms, w.end_ms, w.makeup_l, 1])
            self.open = True
        self.episodes = [e for e in self.episodes if w.end_ms - e[1] <= p.makeup_memory_ms]
        del self.episodes[:-MAX_EPISODES]
        eps, last = self.episodes, self.episodes[-1]
        total = sum(e[2] for e in eps)
        long_fill = last[3] >= p.makeup_long_windows or last[2] >= p.makeup_topup_max_l
        if long_fill:
            minutes = (last[1] - last[0]) / 60_000.0
            rate = last[2] / minutes
            text = f"make-up water fed without a break for {minutes:.0f} min, {last[2]:.1f} L"
            return Verdict(Finding(int(last[0]), rate, text + f" ({rate:.2f} L/min)"), False)
        if len(eps) < 2 or total < p.makeup_volume_l:
            return Verdict(None, False)
        span_min = (w.end_ms - eps[0][1]) / 60_000.0
        rate = sum(e[2] for e in eps[1:]) / max(span_min, 1.0)
        hours = (w.end_ms - eps[0][0]) / 3_600_000.0
        text = (
            f"{len(eps)} make-up fills totalling {total:.1f} L in {hours:.1f} h "
            f"(≈{rate:.2f} L/min replaced)"
        )
        return Verdict(Finding(int(eps[0][0]), rate, text), False)

    def to_state(self) -> dict[str, Any]:
        return {"episodes": [list(e) for e in self.episodes], "open": self.open}

    def load(self, state: dict[str, Any]) -> None:
        self.episodes = [list(e) for e in state["episodes"]]
        self.open = bool(state["open"])
