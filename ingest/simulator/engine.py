"""The simulation itself: chunks of simulated time in, per-gateway frames and events out.

`Simulation.periods()` yields one `Period` per frame span of simulated time:
for every gateway the frame payload (columnar, long form, as `TelemetryFrame`
wants it, minus the envelope the gateway SDK adds) and the compute events that
happened in it. Internally it works a chunk (15 simulated minutes by default)
at a time: exogenous inputs (weather, demand, jobs, caps, physical faults) are
computed for the whole chunk at once, the loop physics is stepped sample by
sample over all boilers together, then noise, rounding, sensor faults and the
true energy totals are applied to whole (samples x boilers) arrays.

Pure: no Kafka, no clock, no I/O. Transport faults (offline, duplicates,
out-of-order, malformed messages) are decided in `delivery.py` and carried out
by the publisher.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from heatstream.ingest.simulator import demand
from heatstream.ingest.simulator.caps import CapPlan
from heatstream.ingest.simulator.config import SimConfig
from heatstream.ingest.simulator.faultspec import expand
from heatstream.ingest.simulator.fleet import Fleet, build_fleet
from heatstream.ingest.simulator.physics import TRIP_FRACTION, LoopModel, StepInputs
from heatstream.ingest.simulator.plan import PlannedFault, plan_faults, truth_record
from heatstream.ingest.simulator.rng import Purpose, stream
from heatstream.ingest.simulator.sensors import (
    JITTER_COLUMN,
    LOAD_COLUMN,
    N_NOISE,
    SensorFaults,
    measure,
    quantize,
)
from heatstream.ingest.simulator.totals import Totals
from heatstream.ingest.simulator.weather import Weather
from heatstream.ingest.simulator.workload import BURN_IN_MS, ComputeEvent, build_schedule
from heatstream.inventory import Inventory, synthetic_inventory
from heatstream.schemas.telemetry import CHANNEL_NAMES
from heatstream.streams.water import density_kg_m3, thermal_power_kw

MAX_JITTER_MS = 80
JITTER_SD_MS = 8.0
LOAD_FLUCTUATION = 0.004  # relative sd of IT power around the job schedule


@dataclass(slots=True)
class FrameData:
    """One gateway's readings over one frame span: the body of a TelemetryFrame, as
    arrays (what `Gateway.publish_columns` takes), NaN where a reading is missing."""

    gateway: int
    event_time_ms: int
    boilers: list[str]
    boiler_idx: np.ndarray  # int64, per sample: index into boilers
    dt_ms: np.ndarray  # int64, per sample: ms after event_time_ms
    columns: dict[str, np.ndarray]  # float64, in contract (CHANNEL_NAMES) order

    @property
    def t_ms(self) -> np.ndarray:
        """Absolute sample times."""
        return self.dt_ms + self.event_time_ms

    def payload(self) -> dict[str, Any]:
        """The body as TelemetryFrame fields (lists, None for a missing reading)."""
        return {
            "event_time_ms": self.event_time_ms,
            "boilers": self.boilers,
            "boiler_idx": self.boiler_idx.tolist(),
            "dt_ms": self.dt_ms.tolist(),
            **{
                name: [None if math.isnan(x) else x for x in v.tolist()]
                for name, v in self.columns.items()
            },
        }

    def samples_of(self, boiler: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The absolute times and readings of one boiler in this frame."""
        rows = self.boiler_idx == self.boilers.index(boiler)
        return self.t_ms[rows], {k: v[rows] for k, v in self.columns.items()}


@dataclass(slots=True)
class Period:
    """One frame span of simulated time, [start_ms, end_ms) by the true clock."""

    index: int
    start_ms: int
    end_ms: int
    frames: list[FrameData]  # one per gateway, by gateway index
    events: list[list[ComputeEvent]] = field(default_factory=list)  # per gateway, time order


class Simulation:
    """A deterministic run: everything is fixed by `config` (and the inventory)."""

    def __init__(self, config: SimConfig, inventory: Inventory | None = None) -> None:
        self.config = config
        cfg = config
        self.inventory = inventory or synthetic_inventory(cfg.boilers, cfg.sites, cfg.nominal_it_kw)
        self.fleet: Fleet = build_fleet(self.inventory, cfg.seed)
        f = self.fleet
        self.start_ms, self.end_ms = cfg.start_ms, cfg.end_ms
        self.faults: list[PlannedFault] = plan_faults(
            expand(list(cfg.faults)), f, cfg.seed, self.start_ms, self.end_ms, cfg.frame_span_ms
        )
        self.weather = Weather(cfg.seed, f.n_sites, self.start_ms - BURN_IN_MS, self.end_ms)
        self.caps = CapPlan(f, self.weather, self.start_ms, self.end_ms)
        self.schedules = [
            build_schedule(f, b, cfg.seed, self.start_ms, self.end_ms) for b in range(f.n_boilers)
        ]
        events = [e for s in self.schedules for e in s.events] + self.caps.events
        events.sort(key=lambda e: (e.t_ms, e.boiler, e.schema_name))
        self._events = events
        self._event_t = np.array([e.t_ms for e in events], dtype=np.int64)
        self.model = LoopModel(f, cfg.physics_steps * cfg.sample_ms / 1000.0)
        self.totals = Totals(f)
        self.sensor_faults = SensorFaults(self.faults)
        self._jitter_max = min(MAX_JITTER_MS, cfg.sample_ms // 2 - 1)

    # -- ground truth -------------------------------------------------------------

    def truth(self) -> list[dict[str, Any]]:
        """The injected faults, one record each, in time order (see docs/simulator.md)."""
        records = [truth_record(f, self.fleet) for f in self.faults]
        records.sort(key=lambda r: (r["start"], r["kind"], r["gateway"], r["boiler"] or ""))
        return records

    # -- the run ------------------------------------------------------------------

    def periods(self) -> Iterator[Period]:
        for chunk in self.chunks():
            yield from chunk

    def chunks(self) -> Iterator[list[Period]]:
        """The periods, a chunk (`chunk_ms` of simulated time) at a time. Each chunk's
        arrays are new, so a chunk's periods can be read while the next is computed
        (in another thread: the publisher does)."""
        cfg, f = self.config, self.fleet
        n_b = f.n_boilers
        noise_rngs = [stream(cfg.seed, Purpose.NOISE, b) for b in range(n_b)]
        state = self._initial_state()
        period_index = 0
        for k0 in range(0, cfg.n_steps, cfg.chunk_steps):
            n = min(cfg.chunk_steps, cfg.n_steps - k0)
            t_nom = self.start_ms + (k0 + np.arange(n, dtype=np.int64)) * cfg.sample_ms
            noise = np.stack(
                [rng.standard_normal((n, N_NOISE), dtype=np.float32) for rng in noise_rngs], axis=1
            )
            jitter = np.clip(
                np.rint(f.jitter_ms[None, :] + JITTER_SD_MS * noise[:, :, JITTER_COLUMN]),
                0,
                self._jitter_max,
            ).astype(np.int64)
            t_true = t_nom[:, None] + jitter
            readings, thermal_events = self._chunk(state, t_nom, t_true, noise)
            yield list(
                self._periods_of_chunk(period_index, t_nom, t_true, readings, thermal_events)
            )
            period_index += n // cfg.steps_per_frame

    def _initial_state(self) -> Any:
        f = self.fleet
        t0 = np.array([self.start_ms], dtype=np.int64)
        it = np.array([s.at(t0)[0][0] for s in self.schedules])
        cap = self.caps.at(t0)[0] * f.nominal_kw
        outdoor = self.weather.outdoor_c(t0, np.arange(f.n_sites), diurnal=False)[0][f.site]
        cold = demand.cold_side_c(f.kind, outdoor)
        return self.model.steady_state(np.minimum(it, cap), cold, warm=self.config.warm_start)

    def _chunk(
        self, state: Any, t_nom: np.ndarray, t_true: np.ndarray, noise: np.ndarray
    ) -> tuple[dict[str, np.ndarray], list[ComputeEvent]]:
        """Step the physics over one chunk; readings (T, B) per channel, thermal events.

        The loop is stepped every `physics_steps` samples with the step's mean IT
        load and the other inputs at its first sample (so an effect never precedes
        its cause, and lags it by less than one step); temperatures, flow,
        pressure and moisture are interpolated linearly to the samples in between
        (their time constants are a minute and more), valve and cap states hold.
        """
        f = self.fleet
        n, n_b = t_nom.size, f.n_boilers
        m = self.config.physics_steps
        # The last chunk of a run may end inside a physics step: that step is
        # computed whole, and only its first samples are emitted.
        n_steps = -(-n // m)
        firsts = np.arange(0, n, m)  # sample index opening each physics step
        outdoor = self.weather.outdoor_c(t_nom, np.arange(f.n_sites))[:, f.site]
        daily = self.weather.outdoor_c(t_nom[firsts], np.arange(f.n_sites), diurnal=False)
        cold = demand.cold_side_c(f.kind[None, :], daily[:, f.site])
        it_demand = np.empty((n, n_b))
        busy = np.empty((n, n_b))
        for b, schedule in enumerate(self.schedules):
            it_demand[:, b], busy[:, b] = schedule.at(t_nom)
        load = np.maximum(it_demand * (1.0 + LOAD_FLUCTUATION * noise[:, :, LOAD_COLUMN]), 0.0)
        step_load = np.add.reduceat(load, firsts, axis=0) / np.diff(firsts, append=n)[:, None]
        fraction = self.caps.at(t_nom[firsts])
        cap = np.where(fraction >= 1.0, np.inf, fraction * f.nominal_kw[None, :])
        foul, pump_flow, pump_on, leak, wet = self._physical_faults(t_nom[firsts])

        # State at the start of the chunk, then at the end of every physics step.
        node = ("supply_c", "return_c", "mdot_kg_s", "pressure_bar", "moisture_pct")
        track = {k: np.empty((n_steps + 1, n_b)) for k in node}
        for k in node:
            track[k][0] = getattr(state, k)
        step_cap = np.empty((n_steps, n_b))
        aux = np.empty((n_steps, n_b))
        makeup = np.empty((n_steps, n_b))
        events: list[ComputeEvent] = []
        model = self.model
        for j in range(n_steps):
            out = model.step(
                state,
                StepInputs(
                    step_load[j],
                    cap[j],
                    cold[j],
                    foul[j],
                    pump_flow[j],
                    pump_on[j],
                    leak[j],
                    wet[j],
                ),
            )
            for k in node:
                track[k][j + 1] = getattr(state, k)
            step_cap[j], aux[j], makeup[j] = out.cap_kw, out.aux_kw, out.makeup_lpm
            if out.trips.any() or out.releases.any():
                at = int(t_true[firsts[j]].min())
                events.extend(self._thermal_events(at, out.trips, out.releases, cap[j]))

        # Back to samples: interpolate the continuous states, hold the discrete ones.
        share = ((np.arange(m) + 1.0) / m)[None, :, None]

        def interpolated(k: str) -> np.ndarray:
            a, b = track[k][:-1], track[k][1:]
            return (a[:, None, :] + share * (b - a)[:, None, :]).reshape(n_steps * m, n_b)[:n]

        def held(x: np.ndarray) -> np.ndarray:
            return np.repeat(x, m, axis=0)[:n]

        supply, ret, mdot = (
            interpolated("supply_c"),
            interpolated("return_c"),
            interpolated("mdot_kg_s"),
        )
        it = np.minimum(load, held(step_cap))
        leak_lpm = held(leak)

        # Flow meters read volume at their own water temperature; a leak sits between them.
        mean = (f.boiler_mass_kg * supply + f.loop_mass_kg * ret) / (
            f.boiler_mass_kg + f.loop_mass_kg
        )
        leak_kg_s = leak_lpm * density_kg_m3(mean) / 60_000.0
        return_lpm = np.maximum(mdot - leak_kg_s, 0.0) / density_kg_m3(ret) * 60_000.0
        supply_lpm = mdot / density_kg_m3(supply) * 60_000.0
        meter_return = f.flow_meter_return[None, :]
        flow = np.where(meter_return, return_lpm, supply_lpm)
        with np.errstate(invalid="ignore", divide="ignore"):
            throttle = np.where(load > 0, np.minimum(it / load, 1.0), 1.0)
        aux_kw = held(aux)
        true = {
            "supply_temp_c": supply,
            "return_temp_c": ret,
            "flow_lpm": flow,
            "supply_flow_lpm": np.where(meter_return, supply_lpm, np.nan),
            "pressure_bar": interpolated("pressure_bar"),
            "it_power_kw": it,
            "aux_power_kw": aux_kw,
            "makeup_flow_lpm": held(makeup),
            "moisture_pct": interpolated("moisture_pct"),
            "outdoor_temp_c": outdoor,
            "pump_speed_pct": np.broadcast_to(f.pump_speed_pct, (n, n_b)).copy(),
            "it_utilisation_pct": 100.0 * busy / f.nodes[None, :] * throttle,
        }
        heat = thermal_power_kw(supply, ret, flow, np.where(meter_return, ret, supply))
        self.totals.add(t_true, heat, it, aux_kw)

        readings = measure(true, noise)
        self.sensor_faults.apply_drift(readings, t_nom)
        readings = quantize(readings)
        self.sensor_faults.apply_stuck(readings, t_nom)
        self._out_of_range(readings, t_nom)
        return readings, events

    def _physical_faults(
        self, t_nom: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n, n_b = t_nom.size, self.fleet.n_boilers
        foul = np.zeros((n, n_b))
        pump_flow = np.ones((n, n_b))
        pump_on = np.ones((n, n_b), dtype=bool)
        leak = np.zeros((n, n_b))
        wet = np.full((n, n_b), np.nan)
        for fault in self.faults:
            if fault.boiler is None or fault.level != "boiler":
                continue
            active = fault.active(t_nom)
            if not active.any():
                continue
            b, p = fault.boiler, fault.params
            if fault.kind in ("slow_leak", "burst_leak"):
                leak[active, b] += float(p["rate_lpm"])
            if fault.kind == "burst_leak":
                wet[active, b] = float(p["moisture_pct"])
            elif fault.kind == "fouling":
                ramp_ms = max(float(p["ramp_h"]) * 3_600_000.0, 1.0)
                progress = np.clip((t_nom - fault.start_ms) / ramp_ms, 0.0, 1.0)
                foul[active, b] = float(p["loss"]) * progress[active]
            elif fault.kind == "pump_failure":
                pump_flow[active, b] = float(p["residual_pct"]) / 100.0
                pump_on[active, b] = False
        return foul, pump_flow, pump_on, leak, wet

    def _thermal_events(
        self, t_ms: int, trips: np.ndarray, releases: np.ndarray, planned_cap: np.ndarray
    ) -> list[ComputeEvent]:
        f = self.fleet
        events = []
        for b in np.flatnonzero(trips).tolist():
            cap = round(TRIP_FRACTION * float(f.nominal_kw[b]), 3)
            events.append(
                ComputeEvent(
                    t_ms,
                    b,
                    "compute.power_cap_set",
                    {"cap_kw": cap, "reason": "thermal", "planned": False},
                )
            )
        for b in np.flatnonzero(releases).tolist():
            planned = float(planned_cap[b])
            cap = None if not np.isfinite(planned) else round(planned, 3)
            events.append(
                ComputeEvent(
                    t_ms,
                    b,
                    "compute.power_cap_set",
                    {"cap_kw": cap, "reason": "thermal", "planned": False},
                )
            )
        return events

    def _out_of_range(self, readings: dict[str, np.ndarray], t_nom: np.ndarray) -> None:
        span = self.config.frame_span_ms
        for fault in self.faults:
            if fault.subkind != "out_of_range":
                continue
            assert fault.boiler is not None
            for t in fault.params["times_ms"]:
                # The first sample of the boiler in the frame span that starts at t.
                hit = np.flatnonzero((t_nom >= t) & (t_nom < t + span))
                if hit.size:
                    channel = str(fault.params["channel"])
                    readings[channel][hit[0], fault.boiler] = float(fault.params["value"])

    # -- frames -------------------------------------------------------------------

    def _skew(self, period_start: np.ndarray) -> np.ndarray:
        """Clock offset (P, G) of every gateway at the start of each period."""
        skew = np.zeros((period_start.size, self.fleet.n_gateways), dtype=np.int64)
        for fault in self.faults:
            if fault.kind == "clock_skew":
                skew[fault.active(period_start), fault.gateway] += int(fault.params["offset_ms"])
        return skew

    def _periods_of_chunk(
        self,
        first_index: int,
        t_nom: np.ndarray,
        t_true: np.ndarray,
        readings: dict[str, np.ndarray],
        thermal: list[ComputeEvent],
    ) -> Iterator[Period]:
        cfg, f = self.config, self.fleet
        spp = cfg.steps_per_frame
        n_periods = t_nom.size // spp
        starts = t_nom[::spp]
        skew = self._skew(starts)
        chunk_end = int(starts[-1]) + cfg.frame_span_ms
        # Compute events by period: scheduled ones (those before --start go with period 0).
        lo = 0 if first_index == 0 else int(np.searchsorted(self._event_t, starts[0]))
        hi = int(np.searchsorted(self._event_t, chunk_end))
        scheduled = self._events[lo:hi] + thermal
        scheduled.sort(key=lambda e: (e.t_ms, e.boiler, e.schema_name))
        by_period: list[list[list[ComputeEvent]]] = [
            [[] for _ in range(f.n_gateways)] for _ in range(n_periods)
        ]
        for ev in scheduled:
            p = max(0, min(n_periods - 1, (ev.t_ms - int(starts[0])) // cfg.frame_span_ms))
            g = int(f.gateway[ev.boiler])
            offset = int(skew[p, g])
            by_period[p][g].append(
                ev
                if not offset
                else ComputeEvent(ev.t_ms + offset, ev.boiler, ev.schema_name, ev.fields)
            )

        # Per gateway, the chunk's readings become per-frame rows of one array per
        # channel: (samples, boilers) -> (frames, samples per frame x boilers). The
        # frames are views of those rows: no per-reading Python object is made.
        frames_of: list[list[FrameData]] = [[] for _ in range(n_periods)]
        for g, members in enumerate(f.gateway_boilers):
            width = spp * members.size
            columns: dict[str, np.ndarray] = {}
            for name in CHANNEL_NAMES:
                block = readings[name][:, members]
                if np.isnan(block).all():
                    continue
                columns[name] = block.reshape(n_periods, width)
            times = (t_true[:, members] + np.repeat(skew[:, g], spp)[:, None]).reshape(
                n_periods, width
            )
            t0 = times.min(axis=1)
            dts = times - t0[:, None]
            ids = [f.boiler_ids[b] for b in members.tolist()]
            idx = np.tile(np.arange(members.size, dtype=np.int64), spp)
            for p, start in enumerate(t0.tolist()):
                frames_of[p].append(
                    FrameData(
                        gateway=g,
                        event_time_ms=start,
                        boilers=ids,
                        boiler_idx=idx,
                        dt_ms=dts[p],
                        columns={name: rows_[p] for name, rows_ in columns.items()},
                    )
                )

        for p in range(n_periods):
            frames = frames_of[p]
            start = int(starts[p])
            yield Period(
                index=first_index + p,
                start_ms=start,
                end_ms=start + cfg.frame_span_ms,
                frames=frames,
                events=by_period[p],
            )
