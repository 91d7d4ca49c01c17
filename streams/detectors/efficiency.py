"""Efficiency anomalies of one boiler: its own learned baselines, and pump failure.

Called once per closed 1-minute window of one boiler, in window order. Three
tracks, each a hysteresis `Latch`:

* **pump** -> `pump_failure` (critical), see `pump.py`: IT load on, loop flow
  near zero against the boiler's usual flow, the boiler heating up. Judged on
  every window; while it is open the two other tracks are frozen.
* **loss** -> `efficiency_drop` / `bypass_open` (or `sensor_drift` when only
  the flow reading fell): the loop runs hotter than its baseline for the same
  IT load and weather (a fouled exchanger: both supply and return rise), or
  heat recovered per kWh of IT falls below what this boiler recovered at the
  same load.
* **meter** -> `sensor_drift`: supply and return disagree about the ΔT the IT
  load implies (one thermometer moved, the other did not), or recovery is
  above its baseline, or more heat comes out than electricity goes in.

Baselines, per boiler, learned only from judged windows that look healthy:
a `LoadModel` of heat against IT load; two `LinearModel`s of the loop
temperatures, the return against the IT load low-passed over the loop's
settling time and the heating degree (outdoor temperature below the heating
base: the site's side follows its heating curve), and the loop ΔT against the
IT load (the expected supply is their sum); and the usual flow. IT power and
outdoor temperature come from other instruments than the thermometers, so a
drifting thermometer moves its own residual only, while a fouled exchanger
moves both.

Only steady windows are judged: good coverage, IT above a floor, no planned
throttle or cap, no IT step, no frozen (stuck) reading, boiler temperatures
moving too slowly for the boiler's own water to store or release a visible
share of the heat, and a settling time after anything unsteady. Other windows freeze the tracks (they
neither raise nor end an alert) and teach nothing. See docs/detections.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from heatstream.schemas.derived import EfficiencyAnomaly
from heatstream.streams.detectors.baseline import DecayedMean, LinearModel, LoadModel
from heatstream.streams.detectors.context import WindowContext
from heatstream.streams.detectors.explain import classify_loss, classify_meter, end_reason
from heatstream.streams.detectors.hysteresis import Latch
from heatstream.streams.detectors.pump import PumpTrack
from heatstream.streams.detectors.reading import Reading
from heatstream.streams.stats import WindowStats
from heatstream.streams.water import density_at, heat_capacity_at

STATE_VERSION = 4
#: A noisy channel whose every reading in the window is identical (and not 0) is frozen
#: (a stuck sensor, reported by the quality detector): such a window is not judged.
FROZEN_CHECKED = ("supply_temp_c", "return_temp_c", "flow_lpm", "it_power_kw")


@dataclass(frozen=True, slots=True)
class EfficiencyParams:
    # -- which windows are judged (and learned from) ---------------------------
    min_coverage: float = 0.9  # heat and IT coverage of the window
    min_load: float = 0.2  # IT power / nominal
    max_it_spread: float = 0.15  # IT max - min inside the window, share of nominal
    max_it_step: float = 0.10  # |IT mean - previous window's|, share of nominal
    boiler_water_share: float = 0.2  # assumed share of the loop volume inside the boiler
    max_storage_share: float = 0.03  # heat that water could store/release, share of IT power
    settle_windows: int = 2  # steady windows skipped after any unsteady one
    # -- baselines -----------------------------------------------------------------
    learn_alpha: float = 1.0 / 720  # ~12 h of steady windows
    warmup_windows: int = 30  # learned windows before a baseline is trusted
    ridge_windows: float = 5.0  # pull of the load model's intercept towards 0
    learn_band: float = 0.04  # learn only from windows within +-4 % of the ratio baseline ...
    temps_learn_band_k: float = 1.0  # ... and within 1 K of the temperature baselines
    # The loop's return follows the IT load with its own settling time (7-20 min, more
    # with low flow): the return model gets the load low-passed over two time constants
    # and learns the mix that fits this boiler.
    lag_windows: tuple[float, float] = (5.0, 20.0)
    temps_settled_k: float = 0.15  # judge/learn temperatures only with the return this still
    heating_base_c: float = 16.0  # outdoor temperature above which sites need no heating
    # Judge only loads and weather the learned windows support (leverage bounds; the
    # temperature models are linear in physics, the ratio's 1/load term is not) ...
    ratio_max_leverage: float = 0.05
    temps_max_leverage: float = 0.15
    # ... and learn (within band) a little beyond what is judged
    ratio_learn_leverage: float = 0.2
    temps_learn_leverage: float = 0.3
    free_learn_windows: int = 180  # before this much is learned, learn any healthy window
    flow_alpha: float = 1.0 / 240
    flow_warmup_windows: int = 10
    design_delta_t_k: float = 15.0  # fallback flow before learning: nominal power at this ΔT
    # -- loss track ----------------------------------------------------------------
    drop: float = 0.08  # evidence: recovery 8 % below baseline ...
    hot_k: float = 3.0  # ... or supply and return both this much above their baseline
    drop_clear: float = 0.03  # clear: recovery back within 3 % ...
    hot_clear_k: float = 1.0  # ... and the loop within 1 K of its baseline
    drop_critical: float = 0.25  # severity critical from 25 % below ...
    critical_supply_c: float = 85.0  # ... or with the supply this hot (thermal protection near)
    on_k: int = 4
    on_n: int = 6
    off_n: int = 10
    bypass_flow_rise: float = 0.15  # flow this far above baseline names a bypass
    flow_drift: float = 0.05  # flow this far off baseline, temperatures consistent: flow meter
    # -- meter track (sensor drift) ------------------------------------------------------
    rise: float = 0.08  # evidence: recovery 8 % above baseline ...
    max_plausible_erf: float = 1.02  # ... or heat / (IT + aux) above this ...
    split_k: float = 1.2  # ... or one of supply/return this far off, the other ...
    split_other_share: float = 0.25  # ... within this share of it (or within split_clear_k)
    rise_clear: float = 0.03
    split_clear_k: float = 0.6
    drift_on_k: int = 6
    drift_on_n: int = 8
    # -- pump failure --------------------------------------------------------------
    pump_min_load: float = 0.2
    pump_flow_share: float = 0.10  # evidence: flow below 10 % of baseline with IT on ...
    pump_heating_k: float = 1.0  # ... and the supply rising this much (a real stop heats)
    pump_clear_share: float = 0.5  # clear: flow back above 50 % of baseline
    pump_off_n: int = 3


def _frozen(w: WindowStats, channel: str) -> bool:
    """Every reading of a noisy channel identical, at a value other than 0 (a meter
    reading 0 is not frozen: it says something, and a flow of 0 with the pump running
    is for the loss track to report as a meter fault)."""
    return w.spread.get(channel, 1.0) <= 0.0 and w.last_values.get(channel, 0.0) != 0.0


def volumetric_heat_capacity(temp_c: float) -> float:
    """ρ·c_p of water in kJ/(L·K)."""
    return density_at(temp_c) / 1000.0 * heat_capacity_at(temp_c)


class EfficiencyDetector:
    """Efficiency anomalies of one boiler (see the module docstring)."""

    def __init__(
        self, boiler: str, site: str, params: EfficiencyParams = EfficiencyParams()
    ) -> None:
        self.boiler, self.site, self.params = boiler, site, params
        p = params
        self._ratio = LoadModel()
        # return on 1, the lagged loads, heating degree
        self._return = LinearModel(2 + len(p.lag_windows))
        self._delta = LinearModel(2)  # loop ΔT on 1, load
        self._flow = DecayedMean()
        self._pump = PumpTrack(p)
        self._latches = {
            "loss": Latch(p.on_k, p.on_n, p.off_n),
            "meter": Latch(p.drift_on_k, p.drift_on_n, p.off_n),
        }
        self._open: dict[str, dict[str, Any]] = {}  # track -> kind, severity, start, peaks
        self._onset: dict[str, int | None] = {"loss": None, "meter": None}
        self._prev: list[Any] | None = None  # [end_ms, supply, return, it_kw]
        self._settle = 0
        self._lagged: list[float] | None = None  # IT load low-passed over lag_windows
        self._outdoor: float | None = None  # last outdoor temperature seen

    # -- public -----------------------------------------------------------------

    def update(self, w: WindowStats, ctx: WindowContext) -> list[EfficiencyAnomaly]:
        out: list[EfficiencyAnomaly] = []
        it_kw = w.it_power_mean_kw if w.it_coverage > 0 else None
        load = None if it_kw is None else it_kw / ctx.nominal_it_kw
        flow, base = w.flow_mean_lpm, self._expected_flow(ctx)[0]
        if load is not None and (flow is None or flow >= self.params.pump_clear_share * base):
            # The loop's water follows the load only while it circulates: with the pump
            # stopped it sits still, and the lag holds what it last knew.
            if self._lagged is None:
                self._lagged = [load for _ in self.params.lag_windows]
            else:
                self._lagged = [
                    v + (load - v) / tau
                    for v, tau in zip(self._lagged, self.params.lag_windows, strict=True)
                ]
        if w.outdoor_temp_mean_c is not None:
            self._outdoor = w.outdoor_temp_mean_c
        prev = self._prev if self._prev is not None and self._prev[0] == w.start_ms else None
        pump = self._pump.update(w, ctx, load, prev, self._expected_flow(ctx))
        if pump is not None:
            out.append(
                self._event("pump", pump.phase, pump.end_ms, pump.evidence, pump.reason, pump.info)
            )
        steady = self._steady(w, ctx, it_kw, load) and not self._pump.active
        if self._settled(steady):
            assert it_kw is not None and load is not None
            r = self._read(w, ctx, it_kw, load)
            self._loss_and_meter(w, r, out)
            self._learn(r)
        self._prev = [w.end_ms, w.supply_temp_mean_c, w.return_temp_mean_c, it_kw]
        return out

    def to_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "ratio": self._ratio.to_state(),
            "return": self._return.to_state(),
            "delta": self._delta.to_state(),
            "flow": self._flow.to_state(),
            "pump": self._pump.to_state(),
            "latches": {name: latch.to_state() for name, latch in self._latches.items()},
            "open": {k: dict(v) for k, v in self._open.items()},
            "onset": dict(self._onset),
            "prev": None if self._prev is None else list(self._prev),
            "settle": self._settle,
            "lagged": None if self._lagged is None else list(self._lagged),
            "outdoor": self._outdoor,
        }

    @classmethod
    def from_state(
        cls,
        boiler: str,
        site: str,
        state: dict[str, Any],
        params: EfficiencyParams = EfficiencyParams(),
    ) -> EfficiencyDetector:
        if state.get("v") != STATE_VERSION:
            raise ValueError(
                f"efficiency detector state version {state.get('v')!r} is not {STATE_VERSION}"
            )
        d = cls(boiler, site, params)
        d._ratio = LoadModel.from_state(state["ratio"])
        d._return = LinearModel.from_state(2 + len(params.lag_windows), state["return"])
        d._delta = LinearModel.from_state(2, state["delta"])
        d._flow = DecayedMean.from_state(state["flow"])
        d._pump.load(state["pump"])
        for name, latch in d._latches.items():
            latch.load(state["latches"][name])
        d._open = {k: dict(v) for k, v in state["open"].items()}
        d._onset = dict(state["onset"])
        d._prev = None if state["prev"] is None else list(state["prev"])
        d._settle = int(state["settle"])
        d._lagged = None if state["lagged"] is None else list(state["lagged"])
        d._outdoor = state["outdoor"]
        return d

    # -- gating -------------------------------------------------------------------------

    def _steady(
        self, w: WindowStats, ctx: WindowContext, it_kw: float | None, load: float | None
    ) -> bool:
        p, prev = self.params, self._prev
        if (
            ctx.throttled
            or it_kw is None
            or load is None
            or load < p.min_load
            or w.coverage < p.min_coverage
            or w.it_coverage < p.min_coverage
            or w.supply_temp_mean_c is None
            or w.return_temp_mean_c is None
            or w.spread.get("it_power_kw", 0.0) > p.max_it_spread * ctx.nominal_it_kw
            or prev is None
            or prev[0] != w.start_ms
            or None in prev
            or abs(it_kw - prev[3]) > p.max_it_step * ctx.nominal_it_kw
            or any(_frozen(w, ch) for ch in FROZEN_CHECKED)
        ):
            return False
        dt_k = max(abs(w.supply_temp_mean_c - prev[1]), abs(w.return_temp_mean_c - prev[2]))
        mean_c = (w.supply_temp_mean_c + w.return_temp_mean_c) / 2.0
        seconds = (w.end_ms - w.start_ms) / 1000.0
        water_l = p.boiler_water_share * ctx.loop_volume_l
        storage_kw = water_l * volumetric_heat_capacity(mean_c) * dt_k / seconds
        return storage_kw <= p.max_storage_share * it_kw

    def _settled(self, steady: bool) -> bool:
        if not steady:
            self._settle = self.params.settle_windows
            return False
        if self._settle > 0:
            self._settle -= 1
            return False
        return True

    # -- readings -----------------------------------------------------------------

    def _return_features(self) -> list[float]:
        """Return temperature features: the loop's slow node follows the lagged load, and
        the site's side of the exchanger follows the weather (heating degree)."""
        p = self.params
        degree = 0.0 if self._outdoor is None else max(0.0, p.heating_base_c - self._outdoor)
        lagged = self._lagged or [0.0] * len(p.lag_windows)
        return [1.0, *lagged, degree / 10.0]

    def _temps_fit(self, load: float) -> tuple[float, float, float] | None:
        """(expected supply, expected return, leverage), or None before warm-up."""
        p = self.params
        ret = self._return.predict(self._return_features(), 1e-2, p.warmup_windows)
        delta = self._delta.predict([1.0, load], 1e-2, p.warmup_windows)
        if ret is None or delta is None:
            return None
        return ret[0] + delta[0], ret[0], max(ret[1], delta[1])

    def _read(self, w: WindowStats, ctx: WindowContext, it_kw: float, load: float) -> Reading:
        p = self.params
        assert w.supply_temp_mean_c is not None and w.return_temp_mean_c is not None
        heat_kw = w.heat_kwh / (w.coverage * w.duration_h)
        ratio_fit = self._ratio.predict(load, p.ridge_windows, p.warmup_windows)
        temps_fit = self._temps_fit(load)
        # The temperature models describe a loop that has settled: while the return still
        # moves (a warm-up, a load change on a slow loop) it is neither judged nor learned.
        prev = self._prev
        settled = (
            prev is not None
            and prev[2] is not None
            and abs(w.return_temp_mean_c - prev[2]) <= p.temps_settled_k
        )
        ratio_ok = ratio_fit is not None and ratio_fit[1] <= p.ratio_max_leverage
        temps_ok = settled and temps_fit is not None and temps_fit[2] <= p.temps_max_leverage
        return Reading(
            load=load,
            it_kw=it_kw,
            heat_kw=heat_kw,
            ratio=heat_kw / it_kw,
            erf=heat_kw / (it_kw + (w.aux_power_mean_kw or 0.0)),
            expected_ratio=ratio_fit[0] if ratio_ok and ratio_fit else None,
            supply_c=w.supply_temp_mean_c,
            return_c=w.return_temp_mean_c,
            supply_res_k=w.supply_temp_mean_c - temps_fit[0] if temps_ok and temps_fit else None,
            return_res_k=w.return_temp_mean_c - temps_fit[1] if temps_ok and temps_fit else None,
            flow_lpm=w.flow_mean_lpm,
            flow_base_lpm=self._flow.value(p.flow_warmup_windows),
            ratio_fit=ratio_fit,
            temps_fit=temps_fit,
            settled=settled,
        )

    def _expected_flow(self, ctx: WindowContext) -> tuple[float, bool]:
        learned = self._flow.value(self.params.flow_warmup_windows)
        if learned is not None and learned > 0:
            return learned, True
        design = (
            ctx.nominal_it_kw
            * 60.0
            / (volumetric_heat_capacity(40.0) * self.params.design_delta_t_k)
        )
        return design, False

    # -- tracks ---------------------------------------------------------------------

    def _loss_and_meter(self, w: WindowStats, r: Reading, out: list[EfficiencyAnomaly]) -> None:
        p = self.params
        dev, hot, split = r.dev, r.hot_k, r.split_k
        low = dev is not None and dev <= -p.drop
        is_hot = hot is not None and hot >= p.hot_k
        is_split = r.one_sensor_moved(p.split_k, p.split_clear_k, p.split_other_share)
        # A low ratio while one thermometer is already half-way to a drift verdict is
        # that thermometer, not a loss of heat: leave it to the meter track.
        leaning = r.one_sensor_moved(p.split_k / 2, p.split_clear_k / 2, p.split_other_share)
        # ... and while a sensor drift is already reported, a low ratio is that drift.
        loss = is_hot or (low and not leaning and not self._latches["meter"].active)
        meter = (
            (dev is not None and dev >= p.rise)
            or r.erf > p.max_plausible_erf
            or (is_split and not is_hot)
        )
        # Clear is a positive verdict: it needs both the ratio and the temperatures judged
        # (a window where either is out of the baselines' reach says nothing).
        known = dev is not None and hot is not None and split is not None
        loss_clear = known and dev >= -p.drop_clear and hot < p.hot_clear_k
        meter_clear = (
            known
            and -p.drop_clear <= dev <= p.rise_clear
            and r.erf <= 1.0
            and abs(split) < p.split_clear_k
        )
        # Where the evidence began: the first window outside the learning band that
        # the deviation has not come back from.
        outside = {
            "loss": (dev is not None and dev < -p.learn_band)
            or (hot is not None and hot >= p.hot_k / 2),
            "meter": (dev is not None and dev > p.learn_band)
            or r.erf > 1.0
            or (split is not None and abs(split) >= p.split_k / 2),
        }
        for track, evidence, clear in (("loss", loss, loss_clear), ("meter", meter, meter_clear)):
            self._onset[track] = (self._onset[track] or w.start_ms) if outside[track] else None
            latch = self._latches[track]
            if latch.active and not evidence and not known:
                continue  # an ongoing anomaly neither ends nor restarts on a window it can't see
            transition = latch.step(w.start_ms, evidence, clear)
            self._after(track, transition, w, r, out)

    def _after(
        self,
        track: str,
        transition: str | None,
        w: WindowStats,
        r: Reading,
        out: list[EfficiencyAnomaly],
    ) -> None:
        latch = self._latches[track]
        if transition is None:
            if latch.active:
                self._peaks(self._open[track], r)
            return
        if transition == "start":
            p = self.params
            votes = f"{sum(v is not None for v in latch.votes)} of the last " + (
                f"{p.on_n}" if track == "loss" else f"{p.drift_on_n}"
            )
            classify = classify_loss if track == "loss" else classify_meter
            kind, severity, reason = classify(r, p, votes)
            onset, started = self._onset[track], latch.started_ms
            start = started if onset is None or started is None else min(onset, started)
            self._open[track] = {"kind": kind, "severity": severity, "start": start}
            self._peaks(self._open[track], r)
            out.append(self._event(track, "start", None, r.evidence(), reason))
            return
        info = self._open.pop(track)
        minutes = (w.end_ms - int(info["start"])) / 60_000.0
        ev = r.evidence()
        ev.update({k: v for k, v in info.items() if k.startswith("peak_")})
        ev["duration_min"] = minutes
        reason = end_reason(info["kind"], r, self.params, minutes)
        out.append(self._event(track, "end", latch.clear_start_ms, ev, reason, info))

    @staticmethod
    def _peaks(info: dict[str, Any], r: Reading) -> None:
        """Worst values seen during an episode (for the end event's evidence)."""
        for key, value, worse in (
            ("peak_low_deviation_pct", None if r.dev is None else 100 * r.dev, min),
            ("peak_high_deviation_pct", None if r.dev is None else 100 * r.dev, max),
            ("peak_hot_k", r.hot_k, max),
            ("peak_split_k", None if r.split_k is None else abs(r.split_k), max),
            ("peak_supply_c", r.supply_c, max),
        ):
            if value is not None:
                info[key] = value if key not in info else worse(info[key], value)

    # -- learning and events -------------------------------------------------------

    def _learn(self, r: Reading) -> None:
        """Teach the baselines a window that looks healthy (each model on its own).

        Where a model already predicts (leverage up to its `*_learn_leverage`, a little
        beyond what is judged, so that it follows slow changes such as the
        seasons), only windows within its band teach it. Where it does not, it
        learns freely only during its first `free_learn_windows`: after that a
        load or a weather far from anything seen is neither judged nor learned,
        so a fault that develops meanwhile is not absorbed into the baseline.
        """
        p = self.params
        if self._pump.active or any(latch.active for latch in self._latches.values()):
            return
        if r.erf > p.max_plausible_erf:
            return
        if r.ratio_fit is None:
            ratio_ok = True
        elif r.ratio_fit[1] <= p.ratio_learn_leverage:
            ratio_ok = abs(r.ratio / r.ratio_fit[0] - 1.0) <= p.learn_band
        else:
            ratio_ok = self._ratio.s0 < p.free_learn_windows
        if ratio_ok:
            self._ratio.update(r.load, r.load * r.ratio, p.learn_alpha)
            if r.flow_lpm is not None:
                self._flow.update(r.flow_lpm, p.flow_alpha)
        if not r.settled:
            return
        if r.temps_fit is None:
            temps_ok = True
        elif r.temps_fit[2] <= p.temps_learn_leverage:
            sr, rr = r.supply_c - r.temps_fit[0], r.return_c - r.temps_fit[1]
            temps_ok = (
                max(abs(sr), abs(rr)) <= p.temps_learn_band_k and abs(sr - rr) <= p.split_k / 2
            )
        else:
            temps_ok = self._return.weight < p.free_learn_windows
        if temps_ok:
            self._return.update(self._return_features(), r.return_c, p.learn_alpha)
            self._delta.update([1.0, r.load], r.supply_c - r.return_c, p.learn_alpha)

    def _event(
        self,
        track: str,
        phase: str,
        end_ms: int | None,
        evidence: dict[str, float],
        reason: str,
        info: dict[str, Any] | None = None,
    ) -> EfficiencyAnomaly:
        info = info or self._open[track]
        return EfficiencyAnomaly(
            boiler=self.boiler,
            site=self.site,
            kind=info["kind"],
            phase=phase,
            start_ms=int(info["start"]),
            end_ms=end_ms,
            severity=info["severity"],
            evidence={k: float(v) for k, v in evidence.items()},
            reason=reason[:500],
        )
