"""The heat loop of every boiler, stepped together with numpy (one array slot per boiler).

Two well-mixed water nodes per loop, advanced with the exact solution of their
linear ODE over a step (stable for any step length, even with the pump off;
the engine steps every 10 s and interpolates the samples in between):

* the boiler node (its cold plates and internal piping, 15 % of the loop's
  water) takes the captured IT heat and loses a little to the caisson; its
  temperature is the supply temperature;
* the loop node (pipes and the site's plate exchanger, 85 %) receives supply
  water, gives the site ε·ṁ·c_p·(T_supply − T_site) through the exchanger and
  comes back as the return temperature.

So in steady state supply = return + P_th / (ṁ c_p) and the return temperature
is set by the site: cold-side temperature plus what the exchanger's
effectiveness leaves. Fouling lowers ε, so the loop runs hotter for the same
heat; the hotter water captures less of the IT heat (0.3 %/K above 65 °C).

Pressure: a closed loop with a diaphragm expansion vessel. The water mass and
its density at the mean loop temperature (IAPWS-95, `heatstream.streams.water`)
give the water volume; what exceeds the rigid loop volume compresses the
vessel's gas (isothermal), so pressure rises about 0.02-0.045 bar/K around
1.6-2 bar (more in a hot loop: water expands more there) and about 0.15 bar
per litre lost. Leaks remove mass, the auto-fill adds it (4 L/min from 1.2 bar up to
1.6 bar, locked out after 15 min of continuous filling), the relief valve
discharges above 3 bar, and below the vessel's pre-charge the loop is
under-filled and pressure collapses; the pump then loses its prime.

The pump delivers its nominal mass flow (first-order, 3 s) unless it failed;
the thermal protection caps IT power to 5 % of nominal above 90 °C supply
until supply is back under 70 °C with flow restored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heatstream.ingest.simulator.fleet import Fleet
from heatstream.streams.water import density_kg_m3, heat_capacity_kj_kgk

ATM_BAR = 1.01325
CAISSON_C = 25.0
PIPES_AMBIENT_C = 18.0
PUMP_TAU_S = 3.0
CAPTURE_DROP_PER_K = 0.003
CAPTURE_REF_C = 65.0
TRIP_C = 90.0
RELEASE_C = 70.0
TRIP_FRACTION = 0.05
FILL_ON_BAR = 1.2
FILL_OFF_BAR = 1.6
FILL_LPM = 4.0
FILL_LOCKOUT_S = 15 * 60.0
LOCKOUT_RESET_S = 3600.0
RELIEF_BAR = 3.0
UNDERFILL_SPAN = 0.01  # pressure falls from pre-charge to 0 over this share of the loop volume
PRIME_LOST_BAR = 0.3
MOISTURE_RISE_S = 90.0
MOISTURE_DRY_S = 3 * 3600.0
MAKEUP_WATER_KG_L = 0.999  # mains water at about 15 °C


@dataclass
class LoopState:
    supply_c: np.ndarray
    return_c: np.ndarray
    mdot_kg_s: np.ndarray
    mass_kg: np.ndarray
    filling: np.ndarray  # bool
    fill_s: np.ndarray  # continuous filling time
    lockout_s: np.ndarray  # remaining lockout time
    tripped: np.ndarray  # bool: thermal protection active
    moisture_pct: np.ndarray
    pressure_bar: np.ndarray  # at the end of the last step


@dataclass
class StepInputs:
    it_demand_kw: np.ndarray
    cap_kw: np.ndarray  # planned cap (inf: none)
    cold_c: np.ndarray  # site side of the exchanger
    foul: np.ndarray  # fraction of ε lost
    pump_flow: np.ndarray  # pump's deliverable share of nominal flow (1 ok, ~0 failed)
    pump_on: np.ndarray  # bool: pump draws power
    leak_lpm: np.ndarray
    wet_pct: np.ndarray  # moisture the floor tends to (NaN: dry)


@dataclass
class StepOutputs:
    cap_kw: np.ndarray  # effective cap over the step: planned, or the thermal trip's
    aux_kw: np.ndarray
    makeup_lpm: np.ndarray
    trips: np.ndarray  # bool: thermal protection engaged at this step
    releases: np.ndarray  # bool: released at this step


class LoopModel:
    def __init__(self, fleet: Fleet, dt_s: float) -> None:
        self.f = fleet
        self.dt = dt_s
        self._pump_alpha = -np.expm1(-dt_s / PUMP_TAU_S)
        self._moist_up = -np.expm1(-dt_s / MOISTURE_RISE_S)
        self._moist_down = -np.expm1(-dt_s / MOISTURE_DRY_S)
        self._total_mass = fleet.boiler_mass_kg + fleet.loop_mass_kg
        # Per-boiler constants of the step, computed once.
        self._k = {
            "half_flow": 0.5 * fleet.mdot_kg_s,
            "trip_kw": TRIP_FRACTION * fleet.nominal_kw,
            "pump_and_controls_kw": fleet.pump_kw + fleet.controls_kw,
            "dt_per_boiler_kg": dt_s / fleet.boiler_mass_kg,
            "dt_per_loop_kg": dt_s / fleet.loop_mass_kg,
            "pipe_loss": fleet.ua_loop_kw_k * dt_s / fleet.loop_mass_kg,
            "min_mass": 0.5 * fleet.loop_volume_l,
        }

    # -- pressure --------------------------------------------------------------

    def mean_c(self, state: LoopState) -> np.ndarray:
        f = self.f
        return (
            f.boiler_mass_kg * state.supply_c + f.loop_mass_kg * state.return_c
        ) / self._total_mass

    def pressure_bar(self, mass_kg: np.ndarray, mean_c: np.ndarray) -> np.ndarray:
        """Gauge pressure of loops holding `mass_kg` of water at mean temperature `mean_c`."""
        f = self.f
        volume = mass_kg / (density_kg_m3(mean_c) / 1000.0)
        excess = volume - f.loop_volume_l  # water pushed into the vessel
        gas = np.maximum(f.vessel_l - excess, 1e-3)
        compressed = (f.precharge_bar + ATM_BAR) * f.vessel_l / gas - ATM_BAR
        underfilled = f.precharge_bar * np.clip(
            1.0 + excess / (UNDERFILL_SPAN * f.loop_volume_l), 0.0, 1.0
        )
        return np.where(excess > 0, compressed, underfilled)

    def mass_at(self, pressure_bar: np.ndarray | float, mean_c: np.ndarray) -> np.ndarray:
        """Water mass that gives `pressure_bar` (above pre-charge) at `mean_c`."""
        f = self.f
        gas = (f.precharge_bar + ATM_BAR) * f.vessel_l / (pressure_bar + ATM_BAR)
        return (f.loop_volume_l + f.vessel_l - gas) * density_kg_m3(mean_c) / 1000.0

    # -- initial state ---------------------------------------------------------

    def steady_state(
        self, it_kw: np.ndarray, cold_c: np.ndarray, warm: bool = True, cold_start_c: float = 20.0
    ) -> LoopState:
        """The loop after hours at `it_kw` (warm), or full of water at `cold_start_c`."""
        f = self.f
        n = f.n_boilers
        if warm:
            supply = np.full(n, 60.0)
            for _ in range(4):  # fixed point: capture and losses depend on supply temperature
                cp = heat_capacity_kj_kgk(supply)
                heat = self._capture(supply) * it_kw - f.ua_boiler_kw_k * (supply - CAISSON_C)
                supply = cold_c + heat / (f.effectiveness * f.mdot_kg_s * cp)
            ret = supply - heat / (f.mdot_kg_s * cp)
            pressure = f.nominal_pressure_bar
        else:
            supply = np.full(n, cold_start_c)
            ret = np.full(n, cold_start_c)
            pressure = f.nominal_pressure_bar - 0.4
        state = LoopState(
            supply_c=supply,
            return_c=ret,
            mdot_kg_s=f.mdot_kg_s.copy(),
            mass_kg=np.zeros(n),
            filling=np.zeros(n, dtype=bool),
            fill_s=np.zeros(n),
            lockout_s=np.zeros(n),
            tripped=np.zeros(n, dtype=bool),
            moisture_pct=f.moisture_pct,  # the baseline itself while dry (see step)
            pressure_bar=np.zeros(n),
        )
        state.mass_kg = self.mass_at(pressure, self.mean_c(state))
        state.pressure_bar = self.pressure_bar(state.mass_kg, self.mean_c(state))
        return state

    def _capture(self, supply_c: np.ndarray) -> np.ndarray:
        return np.clip(
            self.f.capture - CAPTURE_DROP_PER_K * np.maximum(supply_c - CAPTURE_REF_C, 0.0),
            0.5,
            1.0,
        )

    # -- one step --------------------------------------------------------------

    def step(self, s: LoopState, u: StepInputs) -> StepOutputs:
        """Advance `s` in place by one step with inputs `u`; returns what is not state."""
        f, k = self.f, self._k
        pressure = s.pressure_bar

        # Thermal protection, with hysteresis.
        trips = ~s.tripped & (s.supply_c > TRIP_C)
        releases = s.tripped & (s.supply_c < RELEASE_C) & (s.mdot_kg_s > k["half_flow"])
        s.tripped = (s.tripped | trips) & ~releases
        cap = np.where(s.tripped, k["trip_kw"], u.cap_kw)
        it = np.minimum(u.it_demand_kw, cap)

        # Pump: loses its prime when the loop is nearly empty.
        prime = np.clip(pressure * (1.0 / PRIME_LOST_BAR), 0.0, 1.0)
        target = f.mdot_kg_s * u.pump_flow * prime
        s.mdot_kg_s += (target - s.mdot_kg_s) * self._pump_alpha
        aux = np.where(u.pump_on, k["pump_and_controls_kw"], f.controls_kw)

        # Boiler node: exact over the step for constant inputs.
        cp = heat_capacity_kj_kgk(s.supply_c)
        heat = self._capture(s.supply_c) * it - f.ua_boiler_kw_k * (s.supply_c - CAISSON_C)
        a = s.mdot_kg_s * k["dt_per_boiler_kg"]
        mix = -np.expm1(-a)
        gain = np.where(a > 1e-9, mix / np.maximum(a, 1e-9), 1.0)  # (1 - e^-a) / a
        supply = (
            s.supply_c + mix * (s.return_c - s.supply_c) + gain * heat * k["dt_per_boiler_kg"] / cp
        )

        # Loop node: supply water through the site exchanger, then back.
        eps = f.effectiveness * (1.0 - u.foul)
        leaving_hx = supply - eps * (supply - u.cold_c)
        ret = s.return_c - np.expm1(-s.mdot_kg_s * k["dt_per_loop_kg"]) * (leaving_hx - s.return_c)
        ret -= k["pipe_loss"] * (s.return_c - PIPES_AMBIENT_C) / cp
        s.supply_c, s.return_c = supply, ret

        # Water: leak out, auto-fill in, relief valve.
        s.filling = (s.lockout_s <= 0) & (
            (pressure < FILL_ON_BAR) | (s.filling & (pressure < FILL_OFF_BAR))
        )
        if s.filling.any() or s.fill_s.any() or s.lockout_s.any():
            s.fill_s = np.where(s.filling, s.fill_s + self.dt, 0.0)
            lock_now = s.fill_s > FILL_LOCKOUT_S
            s.lockout_s = np.where(
                lock_now, LOCKOUT_RESET_S, np.maximum(s.lockout_s - self.dt, 0.0)
            )
            s.filling &= ~lock_now
        makeup = np.where(s.filling, FILL_LPM, 0.0)
        mean = self.mean_c(s)
        rho = density_kg_m3(mean) * 1e-3
        s.mass_kg += (makeup * MAKEUP_WATER_KG_L - u.leak_lpm * rho) * (self.dt / 60.0)
        s.pressure_bar = self.pressure_bar(s.mass_kg, mean)
        if (s.pressure_bar > RELIEF_BAR).any() or (s.mass_kg < k["min_mass"]).any():
            s.mass_kg = np.clip(s.mass_kg, k["min_mass"], self.mass_at(RELIEF_BAR, mean))
            s.pressure_bar = self.pressure_bar(s.mass_kg, mean)

        # Floor moisture (only computed while some floor is wet or drying).
        wet = ~np.isnan(u.wet_pct)
        if wet.any() or s.moisture_pct is not f.moisture_pct:
            goal = np.where(wet, u.wet_pct, f.moisture_pct)
            rate = np.where(goal > s.moisture_pct, self._moist_up, self._moist_down)
            s.moisture_pct = s.moisture_pct + (goal - s.moisture_pct) * rate
            if not wet.any() and np.allclose(s.moisture_pct, f.moisture_pct, atol=1e-6):
                s.moisture_pct = f.moisture_pct

        return StepOutputs(
            cap_kw=cap,
            aux_kw=aux,
            makeup_lpm=makeup,
            trips=trips,
            releases=releases,
        )
