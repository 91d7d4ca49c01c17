"""Leak evidence from loop pressure, compensated for temperature.

Keeps the last `pressure_horizon` windows of (mean pressure, loop temperature,
loop ΔT) of one pump regime and water mass (a flow change, a gap, missing
data or make-up water starts afresh: pump head moves the gauge, added water
raises it) and, with the boiler's learned expansion
curve (`expansion.py`), the compensated pressure p_c = p - Φ(T) of each.

The loop temperature is the mean of supply and return, but how much of the
water is at supply temperature is not known (the boiler's own water, the
supply pipes...): the effective temperature lies somewhere between return and
supply. So a change of ΔT between two windows moves the true temperature by up
to half of it more or less than the proxy, and that much is added to the
uncertainty; and the curve learns only from window pairs whose ΔT did not change.

* **Fires** when p_c has fallen from some earlier window to now by more than
  `pressure_drop_bar` beyond what the curve's uncertainty over that
  temperature change and `pressure_noise_bar` could hide, over at least
  `pressure_min_run` window steps, with no single step carrying more than
  `pressure_max_step_share` of the fall (a step is a valve or a pump, not a
  leak). The onset is the last window still as high as the top of the fall.
* **Clear** when the trend of p_c over the last `pressure_quiet_windows`
  windows falls by less than `pressure_quiet_bar_h` even counting those same
  allowances as decline: raising a leak gives the benefit of the doubt to the
  boiler, clearing one gives it to the leak.

The learned curve is fed here too, from window-to-window changes of quiet
windows (no make-up, same regime, no leak suspected).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heatstream.streams.detectors.context import WindowContext
from heatstream.streams.detectors.expansion import Curve, ExpansionModel, position
from heatstream.streams.detectors.verdict import NOT_ASSESSED, Finding, Verdict
from heatstream.streams.stats import WindowStats

if TYPE_CHECKING:
    from heatstream.streams.detectors.leaks import LeakParams


class PressureEvidence:
    def __init__(self, params: LeakParams) -> None:
        self.p = params
        self.ring: list[list[Any]] = []  # [start_ms, bar, loop °C, loop ΔT]
        # The expansion curve's bin and fraction of each ring entry's loop °C (derived)
        self.positions: list[tuple[int, float]] = []
        # [end_ms, bar, loop °C, flow or None, makeup L, loop ΔT]
        self.prev: list[Any] | None = None
        self.expansion = ExpansionModel(params.expansion)
        self.view: _View | None = None  # as of the last update (derived, not state)

    def update(self, w: WindowStats, ctx: WindowContext, active: bool) -> Verdict:
        p = self.p
        bar, temp = w.pressure_mean_bar, w.loop_temp_mean_c
        if bar is None or temp is None or w.spread.get("pressure_bar", 1.0) <= 0.0:
            return NOT_ASSESSED  # no reading, or a frozen (stuck) gauge
        assert w.supply_temp_mean_c is not None and w.return_temp_mean_c is not None
        delta = w.supply_temp_mean_c - w.return_temp_mean_c
        flow = w.flow_mean_lpm
        prev, self.prev = self.prev, [w.end_ms, bar, temp, flow, w.makeup_l, delta]
        same_regime = (
            prev is not None
            and prev[0] == w.start_ms
            and (
                (flow is None and prev[3] is None)
                or (
                    flow is not None
                    and prev[3] is not None
                    and abs(flow - prev[3]) <= p.max_flow_change * max(prev[3], 10.0)
                )
            )
        )
        if not same_regime or w.makeup_l >= p.makeup_wet_l:
            self.ring.clear()  # a new pump regime, or water added: compare from here on
            self.positions.clear()
        self.ring.append([w.start_ms, bar, temp, delta])
        self.positions.append(position(temp))
        del self.ring[: -(p.pressure_horizon + 1)]
        del self.positions[: -(p.pressure_horizon + 1)]
        curve = self.expansion.curve()
        view = self.view = _View(curve, self.ring, self.positions, self.p.pressure_noise_bar)
        finding = self._decline(ctx, view)
        quiet = w.makeup_l < p.makeup_wet_l and prev is not None and prev[4] < p.makeup_wet_l
        if same_regime and quiet and not active and finding is None:
            assert prev is not None
            if abs(delta - prev[5]) <= p.expansion_max_delta_change_k:
                self.expansion.learn(prev[2], temp, bar - prev[1])
        return Verdict(finding, None if finding else self._quiet(view))

    def _decline(self, ctx: WindowContext, view: _View) -> Finding | None:
        p, ring, pc = self.p, self.ring, view.pc
        if len(ring) <= p.pressure_min_run:
            return None
        now = len(ring) - 1
        # the biggest single step down from window j to now, for every j
        biggest_from = [0.0] * (now + 1)
        biggest_from[now] = float("-inf")
        for j in range(now - 1, -1, -1):
            biggest_from[j] = max(pc[j] - pc[j + 1], biggest_from[j + 1])
        best: tuple[float, int, float] | None = None  # (margin, i, decline)
        for i in range(now - p.pressure_min_run + 1):
            decline = pc[i] - pc[now]
            margin = decline - view.hidden(i, now)
            if margin < p.pressure_drop_bar:
                continue
            if biggest_from[i] > p.pressure_max_step_share * decline:
                continue
            if best is None or margin > best[0]:
                best = (margin, i, decline)
        if best is None:
            return None
        # The run with the widest margin may reach back into flat, pre-leak windows (their
        # noise decides how far); the onset is the last window still as high as the top.
        _, i, decline = best
        i = max(
            j
            for j in range(i, now - p.pressure_min_run + 1)
            if pc[j] - pc[now] >= decline - p.pressure_noise_bar
        )
        decline = pc[i] - pc[now]
        minutes = (ring[now][0] - ring[i][0]) / 60_000.0
        bar_per_min = decline / minutes
        compliance, learned = view.curve.compliance_l_per_bar(ring[now][2], ctx.loop_volume_l)
        text = (
            f"pressure {decline:.2f} bar below what the loop temperature explains over "
            f"{minutes:.0f} min ({bar_per_min * 1000:.1f} mbar/min"
        )
        if compliance == float("inf"):
            return Finding(int(ring[i + 1][0]), None, text + ")")
        rate = bar_per_min * compliance
        text += (
            f"; ≈{rate:.2f} L/min at a compliance of {compliance:.1f} L/bar "
            f"{'learned' if learned else 'assumed'} from thermal expansion)"
        )
        return Finding(int(ring[i + 1][0]), rate, text)

    def _quiet(self, view: _View) -> bool | None:
        """The compensated pressure's trend over the last quiet_windows windows falls by
        less than pressure_quiet_bar_h even if all `hidden` could mask were a decline too.

        Raising a leak gives the allowances to the boiler (no false alarm); clearing
        one gives them to the leak (no early all-clear while the loop moves)."""
        p, ring = self.p, self.ring
        first = len(ring) - p.pressure_quiet_windows
        if first < 0:
            return None
        ts = [(x[0] - ring[first][0]) / 3_600_000.0 for x in ring[first:]]
        ys = view.pc[first:]
        n = len(ts)
        mt, my = sum(ts) / n, sum(ys) / n
        sxx = sum((t - mt) ** 2 for t in ts)
        slope = sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / sxx
        span_h = ts[-1]
        worst = -slope * span_h + view.hidden(first, len(ring) - 1)
        return worst <= p.pressure_quiet_bar_h * span_h

    def declining(self, min_windows: int = 10) -> bool | None:
        """Whether the compensated pressure has fallen, beyond everything `hidden`
        could explain, over the last pressure_quiet_windows windows (at least
        `min_windows` of one regime, else None)."""
        view, ring = self.view, self.ring
        first = max(0, len(ring) - self.p.pressure_quiet_windows)
        if len(ring) - first < min_windows or view is None:
            return None
        now = len(ring) - 1
        return view.pc[first] - view.pc[now] > view.hidden(first, now)

    def to_state(self) -> dict[str, Any]:
        return {
            "ring": [list(x) for x in self.ring],
            "prev": None if self.prev is None else list(self.prev),
            "expansion": self.expansion.to_state(),
        }

    def load(self, state: dict[str, Any]) -> None:
        self.ring = [list(x) for x in state["ring"]]
        self.positions = [position(x[2]) for x in self.ring]
        self.prev = None if state["prev"] is None else list(state["prev"])
        self.expansion = ExpansionModel.from_state(state["expansion"], self.p.expansion)


class _View:
    """The ring seen through the current curve: compensated pressures and the integral
    of the slope uncertainty at every entry, computed once per window."""

    def __init__(
        self,
        curve: Curve,
        ring: list[list[Any]],
        positions: list[tuple[int, float]],
        noise_bar: float,
    ) -> None:
        self.curve = curve
        self.pc, self.width = curve.compensated_with_width(ring, positions)
        self.delta = [x[3] for x in ring]
        self.steepest = curve.steepest(ring[-1][2]) if ring else 0.0
        self.noise = noise_bar

    def hidden(self, a: int, b: int) -> float:
        """The largest pressure change between entries a and b (b the newest) that the
        slope's uncertainty, an unknown share of water at supply temperature and the
        noise of window means could explain, bar."""
        return (
            abs(self.width[b] - self.width[a])
            + self.steepest * abs(self.delta[b] - self.delta[a]) / 2.0
            + self.noise
        )
