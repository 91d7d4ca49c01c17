"""The simulator's physics, checked on the frames it emits (pure engine, no SDK, no broker).

Each fault is compared with its exact counterfactual: the same seed without the
fault, which by construction draws the same noise for every boiler.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from heatstream.ingest.simulator import SimConfig, Simulation, parse_fault_spec
from heatstream.ingest.simulator.timeparse import parse_instant_ms
from heatstream.streams.heat import integrate
from heatstream.streams.water import thermal_power_kw

MIN = 60_000

Series = dict[str, dict[str, np.ndarray]]


def run(*faults: str, **options: Any) -> tuple[Simulation, Series, list[Any]]:
    config: dict[str, Any] = {"boilers": 6, "sites": 2, "duration_ms": 90 * MIN, "seed": 3}
    config.update(options)
    sim = Simulation(SimConfig(faults=tuple(parse_fault_spec(f) for f in faults), **config))
    acc: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    events = []
    for period in sim.periods():
        for frame in period.frames:
            t = np.asarray(frame.dt_ms, dtype=np.int64) + frame.event_time_ms
            idx = np.asarray(frame.boiler_idx)
            for j, boiler in enumerate(frame.boilers):
                rows = idx == j
                acc[boiler]["t"].append(t[rows])
                for name, values in frame.columns.items():
                    column = np.array(values, dtype=float)  # None -> NaN
                    acc[boiler][name].append(column[rows])
        for per_gateway in period.events:
            events.extend(per_gateway)
    series = {b: {k: np.concatenate(v) for k, v in d.items()} for b, d in acc.items()}
    return sim, series, events


def window(s: dict[str, np.ndarray], start_min: float, end_min: float) -> np.ndarray:
    """Samples whose nominal time (before jitter, which is < 100 ms) is in the window."""
    t = s["t"] // 1000 * 1000 - s["t"][0] // 1000 * 1000
    return (t >= start_min * MIN) & (t < end_min * MIN)


@pytest.fixture(scope="module")
def baseline() -> tuple[Simulation, Series, list[Any]]:
    return run()


def trapezoid_kwh(t_ms: np.ndarray, kw: np.ndarray) -> float:
    return float(np.sum(0.5 * (kw[1:] + kw[:-1]) * np.diff(t_ms)) / 3_600_000.0)


def test_heat_totals_agree_with_an_independent_integration_of_the_frames(baseline) -> None:
    """A correct pipeline recovers the simulator's totals: noise and rounding average out."""
    sim, series, _ = baseline
    totals = sim.totals.summary()["boilers"]
    for boiler, s in series.items():
        heat_kw = thermal_power_kw(s["supply_temp_c"], s["return_temp_c"], s["flow_lpm"])
        heat = trapezoid_kwh(s["t"], heat_kw)
        it = trapezoid_kwh(s["t"], s["it_power_kw"])
        aux = trapezoid_kwh(s["t"], s["aux_power_kw"])
        # Stated tolerance: 0.2 % (sensor noise is ~0.5 % per heat sample, averaged over 5400).
        assert heat == pytest.approx(totals[boiler]["heat_kwh"], rel=2e-3), boiler
        assert it == pytest.approx(totals[boiler]["it_kwh"], rel=1e-3), boiler
        assert aux == pytest.approx(totals[boiler]["aux_kwh"], rel=5e-3), boiler
        assert 0.85 < totals[boiler]["erf"] < 0.97
        # The stream processor's own integration (windows split exactly) agrees too.
        pipeline_kwh, covered_ms = integrate(
            s["t"], heat_kw, sim.start_ms, sim.end_ms, max_gap_ms=10_000
        )
        assert pipeline_kwh == pytest.approx(totals[boiler]["heat_kwh"], rel=2e-3), boiler
        assert covered_ms == pytest.approx(sim.end_ms - sim.start_ms, rel=1e-3)


def test_almost_all_it_power_becomes_heat_in_the_loop(baseline) -> None:
    sim, _, _ = baseline
    fleet = sim.totals.summary()["fleet"]
    assert 0.85 < fleet["heat_kwh"] / fleet["it_kwh"] < 0.97
    assert 0.01 < fleet["aux_kwh"] / fleet["it_kwh"] < 0.03


def test_the_loop_looks_like_a_heating_loop(baseline) -> None:
    _, series, _ = baseline
    for s in series.values():
        assert 40 < np.mean(s["supply_temp_c"]) < 75
        delta = s["supply_temp_c"] - s["return_temp_c"]
        assert 5 < np.mean(delta) < 20
        assert 1.4 < np.mean(s["pressure_bar"]) < 2.2
        assert np.all(s["makeup_flow_lpm"] == 0)
        assert np.max(s["moisture_pct"]) < 10
        # Sampling jitter: a few tens of ms around the 1 s grid, never reordering samples.
        steps = np.diff(s["t"])
        assert steps.min() > 800 and steps.max() < 1200 and steps.std() > 5


def test_slow_leak_pressure_decays_and_the_auto_fill_tops_up(baseline) -> None:
    _, base, _ = baseline
    _, faulty, _ = run("slow_leak:boiler-0002@20m:rate_lpm=0.3")
    b, f = base["boiler-0002"], faulty["boiler-0002"]
    before = window(f, 0, 20)
    assert np.array_equal(f["pressure_bar"][before], b["pressure_bar"][before])
    leak = window(f, 20, 45)
    drop = b["pressure_bar"][leak] - f["pressure_bar"][leak]
    assert drop.max() > 0.5  # about 0.1 bar per litre lost
    assert np.all(f["makeup_flow_lpm"][before] == 0)
    assert f["makeup_flow_lpm"][window(f, 20, 90)].max() > 3  # the auto-fill kicked in
    assert f["pressure_bar"][window(f, 20, 90)].min() > 1.1  # ... before 1.2 bar was passed by much
    # A leak sits between the supply and return flow meters.
    imbalance = f["supply_flow_lpm"][leak].mean() - f["flow_lpm"][leak].mean()
    base_imbalance = b["supply_flow_lpm"][leak].mean() - b["flow_lpm"][leak].mean()
    assert imbalance - base_imbalance == pytest.approx(0.3, abs=0.05)


def test_burst_leak_wets_the_floor_and_pressure_collapses() -> None:
    _, faulty, events = run("burst_leak:boiler-0005@30m+15m:rate_lpm=12,moisture_pct=80")
    f = faulty["boiler-0005"]
    assert f["moisture_pct"][window(f, 0, 30)].max() < 10
    assert f["moisture_pct"][window(f, 35, 45)].min() > 50
    assert f["pressure_bar"][window(f, 40, 45)].max() < 0.3
    assert f["makeup_flow_lpm"][window(f, 31, 40)].mean() > 3.5
    # An empty loop starves the pump; the boiler protects itself.
    assert f["flow_lpm"][window(f, 40, 45)].max() < 10
    caps = [e for e in events if e.schema_name == "compute.power_cap_set" and e.boiler == 4]
    assert any(e.fields["reason"] == "thermal" and e.fields["planned"] is False for e in caps)


def test_fouling_raises_the_return_temperature_and_costs_efficiency(baseline) -> None:
    base_sim, base, _ = baseline
    sim, faulty, _ = run("fouling:boiler-0003@20m:loss=0.35,ramp_h=0.5")
    b, f = base["boiler-0003"], faulty["boiler-0003"]
    late = window(f, 60, 90)
    assert f["return_temp_c"][late].mean() - b["return_temp_c"][late].mean() > 5
    assert f["supply_temp_c"][late].mean() - b["supply_temp_c"][late].mean() > 5
    # The heat meter's ΔT hardly moves: it is the temperature level that rises.
    delta_f = (f["supply_temp_c"] - f["return_temp_c"])[late].mean()
    delta_b = (b["supply_temp_c"] - b["return_temp_c"])[late].mean()
    assert abs(delta_f - delta_b) < 1.5
    erf = sim.totals.summary()["boilers"]["boiler-0003"]["erf"]
    assert erf < base_sim.totals.summary()["boilers"]["boiler-0003"]["erf"] - 0.01


def test_pump_failure_stops_the_flow_and_trips_the_thermal_protection(baseline) -> None:
    _, base, _ = baseline
    _, faulty, events = run("pump_failure:boiler-0004@30m+20m:residual_pct=1")
    b, f = base["boiler-0004"], faulty["boiler-0004"]
    during = window(f, 31, 50)
    assert f["flow_lpm"][during].max() < 0.05 * b["flow_lpm"].mean()
    assert f["pump_speed_pct"][during].min() == b["pump_speed_pct"][0]  # the command stays
    assert f["aux_power_kw"][during].mean() < b["aux_power_kw"][during].mean() - 0.2
    assert f["supply_temp_c"][during].max() > 85
    tripped = window(f, 40, 50)
    assert f["it_power_kw"][tripped].max() < 10
    caps = [e for e in events if e.schema_name == "compute.power_cap_set" and e.boiler == 3]
    assert [e.fields["reason"] for e in caps] == ["thermal", "thermal"]  # trip, then release
    assert f["flow_lpm"][window(f, 60, 90)].min() > 0.9 * b["flow_lpm"].mean()


def test_stuck_sensor_repeats_one_value_exactly(baseline) -> None:
    _, base, _ = baseline
    _, faulty, _ = run("stuck_sensor:boiler-0006@30m+20m:channel=supply_temp_c")
    f, b = faulty["boiler-0006"], base["boiler-0006"]
    stuck = window(f, 30, 50)
    assert np.unique(f["supply_temp_c"][stuck]).size == 1
    assert np.unique(b["supply_temp_c"][stuck]).size > 10
    after = window(f, 50, 90)
    assert np.array_equal(f["supply_temp_c"][after], b["supply_temp_c"][after])


def test_drifting_sensor_departs_linearly(baseline) -> None:
    _, base, _ = baseline
    _, faulty, _ = run("drifting_sensor:boiler-0001@30m:channel=return_temp_c,rate_per_h=2")
    f, b = faulty["boiler-0001"], base["boiler-0001"]
    diff = f["return_temp_c"] - b["return_temp_c"]
    assert np.abs(diff[window(f, 0, 30)]).max() < 0.011  # rounding only
    end = window(f, 85, 90)
    assert diff[end].mean() == pytest.approx(2.0 * (87.5 - 30) / 60, abs=0.05)


def test_faults_leave_the_other_boilers_untouched(baseline) -> None:
    _, base, _ = baseline
    _, faulty, _ = run("pump_failure:boiler-0004@30m+20m", "slow_leak:boiler-0002@10m")
    for boiler in ("boiler-0001", "boiler-0003", "boiler-0005", "boiler-0006"):
        for name in ("t", "supply_temp_c", "pressure_bar", "it_power_kw"):
            assert np.array_equal(faulty[boiler][name], base[boiler][name]), (boiler, name)


def test_thermal_expansion_raises_pressure_on_warm_up_without_make_up_water() -> None:
    _, series, _ = run(boilers=3, sites=1, duration_ms=40 * MIN, warm_start=False)
    for s in series.values():
        mean_c = (s["supply_temp_c"] + s["return_temp_c"]) / 2
        warm = window(s, 30, 40)
        assert mean_c[warm].mean() - mean_c[:60].mean() > 15
        rise = s["pressure_bar"][warm].mean() - s["pressure_bar"][:60].mean()
        per_k = rise / (mean_c[warm].mean() - mean_c[:60].mean())
        # bar per kelvin through the expansion vessel; water's expansion coefficient
        # grows from 2e-4/K at 20 °C to 5e-4/K at 60 °C, so this warm-up sees the low end.
        assert 0.012 < per_k < 0.05
        assert np.corrcoef(mean_c, s["pressure_bar"])[0, 1] > 0.95
        assert np.all(s["makeup_flow_lpm"] == 0)


def test_summer_throttles_residential_boilers_but_not_the_pool() -> None:
    july = parse_instant_ms("2026-07-15T00:00Z")
    sim, series, events = run(boilers=3, sites=3, start_ms=july, duration_ms=3 * 60 * MIN)
    kinds = dict(zip(sim.fleet.site_ids, sim.fleet.site_kinds, strict=True))
    caps = {
        sim.fleet.boiler_ids[e.boiler]: e.fields
        for e in events
        if e.schema_name == "compute.power_cap_set"
    }
    boiler_kind = {
        b: kinds[sim.fleet.site_ids[sim.fleet.site[i]]] for i, b in enumerate(sim.fleet.boiler_ids)
    }
    for boiler, kind in boiler_kind.items():
        it = series[boiler]["it_power_kw"]
        if kind == "residential":
            assert caps[boiler]["reason"] == "low_heat_demand" and caps[boiler]["planned"]
            assert caps[boiler]["cap_kw"] <= 50  # hot water only
            assert it.max() <= caps[boiler]["cap_kw"] + 0.5
        elif kind == "swimming_pool":
            assert boiler not in caps
            assert it.max() > 60
    winter_sim, _, winter_events = run(boilers=3, sites=3, duration_ms=60 * MIN)
    assert not [e for e in winter_events if e.schema_name == "compute.power_cap_set"]
    assert winter_sim.fleet.n_sites == 3


def test_compute_events_explain_the_load(baseline) -> None:
    sim, _, events = baseline
    kinds = {e.schema_name for e in events}
    assert {"compute.job_started", "compute.job_finished"} <= kinds
    workloads = {e.fields["workload"] for e in events if "workload" in e.fields}
    assert workloads <= {"ai_training", "ai_inference", "rendering", "financial_simulation"}
    started = {e.fields["job_id"] for e in events if e.schema_name == "compute.job_started"}
    finished = {e.fields["job_id"] for e in events if e.schema_name == "compute.job_finished"}
    assert finished <= started  # jobs running at --start are announced too
    times = [e.t_ms for e in events]
    assert min(times) < sim.start_ms  # ... with their real (earlier) start times


def test_clock_skew_shifts_the_gateways_event_times() -> None:
    _, base, _ = run(boilers=2, sites=2, duration_ms=20 * MIN)
    _, skewed, _ = run(
        "clock_skew:gw-01@10m:offset_ms=-90000", boilers=2, sites=2, duration_ms=20 * MIN
    )
    t_base, t_skew = base["boiler-0001"]["t"], skewed["boiler-0001"]["t"]
    shift = t_skew - t_base
    assert np.all(shift[:600] == 0) and np.all(shift[600:] == -90_000)
    assert np.array_equal(skewed["boiler-0002"]["t"], base["boiler-0002"]["t"])


def test_a_shorter_run_is_a_prefix_of_a_longer_one() -> None:
    _, short, _ = run(boilers=2, sites=1, duration_ms=10 * MIN)
    _, long, _ = run(boilers=2, sites=1, duration_ms=30 * MIN)
    for boiler, s in short.items():
        for name, values in s.items():
            assert np.array_equal(values, long[boiler][name][: values.size], equal_nan=True)


@pytest.mark.parametrize("duration_ms", [25_000, 15 * MIN + 35_000])
def test_a_run_may_end_inside_a_physics_step(duration_ms: int) -> None:
    """The loop is stepped every 10 s; a run whose end falls inside a step (here
    also inside a 15 min chunk) emits every sample. Up to that step they are the
    samples of a longer run; the cut step is driven by the load of the samples it
    has, so its few samples differ by a rounding step at most."""
    sim, short, _ = run(boilers=2, sites=1, duration_ms=duration_ms)
    _, long, _ = run(boilers=2, sites=1, duration_ms=30 * MIN)
    assert sim.config.physics_steps == 10 and sim.config.n_steps % 10 == 5
    whole = sim.config.n_steps - 5
    totals = sim.totals.summary()["boilers"]
    for boiler, s in short.items():
        assert s["t"].size == duration_ms // 1000
        for name, values in s.items():
            longer = long[boiler][name][: values.size]
            assert np.array_equal(values[:whole], longer[:whole], equal_nan=True), name
            assert np.allclose(values, longer, rtol=1e-3, atol=0.02, equal_nan=True), name
        heat = thermal_power_kw(s["supply_temp_c"], s["return_temp_c"], s["flow_lpm"])
        assert trapezoid_kwh(s["t"], heat) == pytest.approx(totals[boiler]["heat_kwh"], rel=0.02)
