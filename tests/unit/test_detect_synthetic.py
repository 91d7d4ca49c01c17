"""A small synthetic digital boiler for the detector tests, and checks that it is sound.

One boiler, 5-second samples turned into real `WindowStats` by
`heatstream.streams.stats.summarise`, from a deliberately small physical model
with the topology of a real loop:

* the heat meter sits at the boiler outlet: heat = capture x IT - casing loss,
  capture falling 0.3 %/K above 65 °C supply (hot water takes less of the IT heat),
  times (1 - capture_loss) for a genuine loss of heat before the meter;
* supply = return + heat / (ṁ c_p) (the boiler's own water is small and fast); with
  the pump stopped that water takes the IT heat and the supply climbs;
* the site exchanger of effectiveness ε (1 - fouling) hands ε (supply - cold side)
  to the site; its outlet feeds the loop node (most of the water), which comes back
  as the return temperature; the cold side follows the outdoor temperature like a
  heating curve;
* pressure from the water mass and an expansion vessel obeying Boyle's law (p·V_gas
  constant), at the loop's mass-weighted mean temperature (15 % boiler, 85 % loop),
  so it rises with temperature non-linearly, falls when water leaks out and jumps
  when make-up water is fed (optionally by an auto-fill valve).

Every knob is a function of the minute, so a fault is a function too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from heatstream.streams.detectors import (
    EfficiencyDetector,
    LeakDetector,
    QualityDetector,
    WindowContext,
)
from heatstream.streams.stats import WindowStats, summarise
from heatstream.streams.water import density_kg_m3, heat_capacity_kj_kgk

T0_MS = 1_735_689_600_000  # 2025-01-01 00:00 UTC
STEP_MS = 5_000
WINDOW_MS = 60_000
ATM_BAR = 1.01325

Fn = Callable[[float], float]


def const(value: float) -> Fn:
    return lambda m: value


def step(at: float, before: float, after: float) -> Fn:
    return lambda m: after if m >= at else before


def ramp(start: float, minutes: float, low: float, high: float) -> Fn:
    return lambda m: low + (high - low) * min(1.0, max(0.0, (m - start) / minutes))


ZERO, ONE = const(0.0), const(1.0)


@dataclass(frozen=True)
class Scenario:
    minutes: int = 240
    seed: int = 0
    nominal_kw: float = 100.0
    volume_l: float = 500.0
    recovery: float = 0.95
    loss_kw: float = 2.0
    flow_lpm: float = 85.0
    effectiveness: float = 0.6
    start_c: float = 45.0
    fill_c: float = 20.0
    fill_bar: float = 1.8
    precharge_bar: float = 1.0
    vessel_l: float = 40.0
    noise: float = 1.0  # scale of every sensor's noise
    it: Fn = field(default=const(80.0))
    outdoor_c: Fn = field(default=const(5.0))
    # the site's side of the exchanger: a heating curve, warmer when it is colder outside
    cold_c: Fn | None = None
    cold_base_c: float = 30.0
    cold_per_k: float = 0.5
    throttled: Callable[[float], bool] = lambda m: False
    cap_kw: Callable[[float], float | None] = lambda m: None
    throttle_recovery: float = 1.0  # share of the heat still captured while throttled
    fouling: Fn = ZERO  # share of the exchanger's effectiveness lost
    capture_loss: Fn = ZERO  # share of the heat lost before the meter
    pump: Fn = ONE
    bypass: Fn = ZERO  # extra flow share through an open bypass
    bypass_heat_loss: float = 0.6  # heat lost per unit of bypass share
    supply_bias_k: Fn = ZERO  # drift of the supply temperature sensor
    return_bias_k: Fn = ZERO
    flow_bias: Fn = ZERO  # relative drift of the flow meter
    leak_lpm: Fn = ZERO  # loop water lost
    leak_between_meters: bool = False  # the leak sits between supply and return meters
    makeup_lpm: Fn = ZERO  # make-up water fed on purpose
    autofill_below_bar: float | None = None  # auto-fill valve: feeds 5 L/min below this ...
    autofill_band_bar: float = 0.15  # ... until this much above it
    autofill_after_min: float = 200.0  # (armed once the loop is warm)
    moisture_pct: Fn = field(default=const(3.0))
    supply_meter: bool = False
    stuck: dict[str, tuple[float, float]] = field(default_factory=dict)  # channel -> [from, to)
    boiler: str = "boiler-0001"
    gateway: str = "gw-01"
    site: str = "site-01"

    def ctx(self, minute: float) -> WindowContext:
        return WindowContext(
            nominal_it_kw=self.nominal_kw,
            loop_volume_l=self.volume_l,
            throttled=self.throttled(minute),
            cap_kw=self.cap_kw(minute),
            has_supply_flow_meter=self.supply_meter,
        )


def _rho(t: float) -> float:
    return float(density_kg_m3(t))


def samples(sc: Scenario) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(sc.seed)
    n = sc.minutes * 12 + 4
    names = [
        "supply_temp_c",
        "return_temp_c",
        "flow_lpm",
        "pressure_bar",
        "it_power_kw",
        "aux_power_kw",
        "makeup_flow_lpm",
        "moisture_pct",
        "outdoor_temp_c",
    ]
    if sc.supply_meter:
        names.append("supply_flow_lpm")
    cols = {name: np.empty(n) for name in names}
    t_ms = T0_MS + np.arange(n, dtype=np.int64) * STEP_MS
    ret = sc.start_c
    supply = ret
    boiler_kg, loop_kg = 0.15 * sc.volume_l, 0.85 * sc.volume_l
    fill_abs = sc.fill_bar + ATM_BAR
    gas0 = sc.vessel_l * (sc.precharge_bar + ATM_BAR) / fill_abs  # gas volume at the cold fill
    mass = sc.volume_l * _rho(sc.fill_c) / 1000.0  # kg of water in the rigid loop at the fill
    filling = False
    dt_s = STEP_MS / 1000.0
    noise = sc.noise
    for k in range(n):
        m = k * STEP_MS / 60_000.0
        it = max(0.0, sc.it(m))
        cap = sc.cap_kw(m)
        if cap is not None:
            it = min(it, cap)
        bypass = sc.bypass(m)
        capture = sc.recovery - 0.003 * max(0.0, supply - 65.0)
        heat = max(0.0, capture * it - sc.loss_kw) * (1.0 - sc.capture_loss(m))
        heat *= 1.0 - sc.bypass_heat_loss * bypass
        if sc.throttled(m):
            heat *= sc.throttle_recovery
        flow = sc.flow_lpm * sc.pump(m) * (1.0 + bypass)
        if flow <= 0.0:
            heat = 0.0
        cold = (
            sc.cold_c(m)
            if sc.cold_c is not None
            else sc.cold_base_c + sc.cold_per_k * max(0.0, 16.0 - sc.outdoor_c(m))
        )
        rho = _rho(ret)
        mdot = rho * flow / 60_000.0  # kg/s
        cp = float(heat_capacity_kj_kgk(ret))
        if mdot > 0:
            supply = ret + heat / (mdot * cp)
        else:  # no flow: the boiler's own water takes the IT heat
            supply = min(95.0, supply + it * dt_s / (boiler_kg * cp))
        eps = sc.effectiveness * (1.0 - sc.fouling(m))
        leaving = supply - eps * (supply - cold)
        ret += (leaving - ret) * (1.0 - math.exp(-mdot * dt_s / loop_kg)) if mdot > 0 else 0.0
        mean_c = (boiler_kg * supply + loop_kg * ret) / (boiler_kg + loop_kg)
        rho_mean = _rho(mean_c)
        leak = sc.leak_lpm(m)
        water_l = mass / rho_mean * 1000.0
        pressure_abs = fill_abs * gas0 / max(1e-3, gas0 - (water_l - sc.volume_l))
        pressure = pressure_abs - ATM_BAR
        fed = sc.makeup_lpm(m)
        if sc.autofill_below_bar is not None and m >= sc.autofill_after_min:
            if pressure < sc.autofill_below_bar:
                filling = True
            elif pressure >= sc.autofill_below_bar + sc.autofill_band_bar:
                filling = False
            if filling:
                fed += 5.0
        mass += (fed - leak) * dt_s / 60.0 * rho_mean / 1000.0
        flow_read = flow * (1.0 + sc.flow_bias(m))
        values = {
            "supply_temp_c": supply + sc.supply_bias_k(m) + rng.normal(0, 0.05 * noise),
            "return_temp_c": ret + sc.return_bias_k(m) + rng.normal(0, 0.05 * noise),
            "flow_lpm": max(0.0, flow_read + rng.normal(0, 0.4 * noise)) if flow > 0 else 0.0,
            "pressure_bar": pressure + rng.normal(0, 0.004 * noise),
            "it_power_kw": max(0.0, it + rng.normal(0, 0.4 * noise)) if it > 0 else 0.0,
            "aux_power_kw": 1.5 + rng.normal(0, 0.05 * noise),
            "makeup_flow_lpm": fed,
            "moisture_pct": max(0.0, sc.moisture_pct(m) + rng.normal(0, 0.2 * noise)),
            "outdoor_temp_c": sc.outdoor_c(m) + rng.normal(0, 0.05 * noise),
        }
        if sc.supply_meter:
            # the supply meter sees the warmer (larger) volume of the same mass, plus the leak
            extra = leak if sc.leak_between_meters else 0.0
            at_supply = flow * _rho(ret) / _rho(supply) + extra if flow > 0 else 0.0
            values["supply_flow_lpm"] = max(0.0, at_supply + rng.normal(0, 0.4 * noise))
        for name in names:
            cols[name][k] = values[name]
    for channel, (start, end) in sc.stuck.items():
        t_min = (t_ms - T0_MS) / 60_000.0
        inside = (t_min >= start) & (t_min < end)
        if inside.any():
            cols[channel][inside] = cols[channel][np.argmax(inside)]
    return t_ms, cols


def windows(sc: Scenario) -> list[tuple[WindowStats, WindowContext]]:
    t_ms, cols = samples(sc)
    out = []
    gap = 10_000
    for i in range(sc.minutes):
        s = T0_MS + i * WINDOW_MS
        e = s + WINDOW_MS
        lo = np.searchsorted(t_ms, s - gap, side="left")
        hi = np.searchsorted(t_ms, e + gap, side="right")
        w = summarise(
            sc.boiler,
            sc.gateway,
            sc.site,
            s,
            e,
            t_ms[lo:hi],
            {k: v[lo:hi] for k, v in cols.items()},
            0,
            gap,
        )
        out.append((w, sc.ctx(i + 0.5)))
    return out


def minute_of(ms: int) -> float:
    return (ms - T0_MS) / 60_000.0


DETECTORS = {"efficiency": EfficiencyDetector, "leak": LeakDetector, "quality": QualityDetector}


def run(
    sc: Scenario | Iterable[tuple[WindowStats, WindowContext]],
    kinds: Iterable[str] = ("efficiency", "leak", "quality"),
    params: dict[str, Any] | None = None,
) -> list[tuple[int, str, Any]]:
    """Feed every window to fresh detectors; (window index, detector, event) in order."""
    ws = windows(sc) if isinstance(sc, Scenario) else list(sc)
    params = params or {}
    first = ws[0][0]
    dets = {
        k: DETECTORS[k](first.boiler, first.site, params[k])
        if k in params
        else DETECTORS[k](first.boiler, first.site)
        for k in kinds
    }
    events = []
    for i, (w, ctx) in enumerate(ws):
        for name, det in dets.items():
            for event in det.update(w, ctx):
                events.append((i, name, event))
    return events


def run_with_restart(
    ws: list[tuple[WindowStats, WindowContext]], cut: int, kind: str
) -> list[tuple[int, Any]]:
    """Run one detector kind, serialising it through JSON and restoring it at window `cut`."""
    cls = DETECTORS[kind]
    first = ws[0][0]
    det = cls(first.boiler, first.site)
    out: list[tuple[int, Any]] = []
    for i, (w, ctx) in enumerate(ws):
        if i == cut:
            state = json.loads(json.dumps(det.to_state()))
            det = cls.from_state(first.boiler, first.site, state)
        out.extend((i, e) for e in det.update(w, ctx))
    return out


# -- the model itself ------------------------------------------------------------------


def test_healthy_windows_are_physically_consistent() -> None:
    ws = windows(Scenario(minutes=60, it=const(80.0)))
    w = ws[-1][0]
    assert w.coverage == 1.0 and w.samples == 12
    ratio = w.heat_kwh / w.it_kwh
    assert 0.9 < ratio < 0.95  # 0.95 x 80 - 2 kW = 74 kW
    assert 10 < w.supply_temp_mean_c - w.return_temp_mean_c < 15
    assert w.makeup_l == 0.0 and w.spread["supply_temp_c"] > 0


def test_warm_up_raises_pressure_through_thermal_expansion() -> None:
    ws = windows(Scenario(minutes=90, start_c=20.0, it=ramp(0, 15, 0.0, 100.0)))
    first, last = ws[0][0], ws[-1][0]
    assert first.pressure_mean_bar is not None and last.pressure_mean_bar is not None
    assert abs(first.pressure_mean_bar - 1.8) < 0.05
    assert last.loop_temp_mean_c is not None and last.loop_temp_mean_c > 50
    assert last.pressure_mean_bar - first.pressure_mean_bar > 0.5
    assert all(w.makeup_l == 0 for w, _ in ws)


def test_a_leak_lowers_pressure_and_make_up_restores_it() -> None:
    sc = Scenario(minutes=60, leak_lpm=step(20, 0.0, 0.3), autofill_after_min=0.0)
    ws = windows(sc)
    p = [w.pressure_mean_bar for w, _ in ws]
    assert p[19] - p[59] > 0.5
    filled = windows(replace(sc, autofill_below_bar=p[19] - 0.2))
    fed = sum(w.makeup_l for w, _ in filled)
    assert 0.5 * 0.3 * 40 < fed < 1.5 * 0.3 * 40  # replaces what leaked
