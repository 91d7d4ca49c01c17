"""Leak detector: each evidence fires for the right boiler within its delay, with an onset
time, a rate and a confidence; warm-ups, cool-downs, throttling, pressure noise and a single
top-up never fire; a repaired leak ends; restored state gives identical outputs."""

from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heatstream.streams.detectors import LeakDetector, LeakParams
from heatstream.streams.detectors.expansion import position
from tests.unit.test_detect_synthetic import (
    Scenario,
    const,
    minute_of,
    ramp,
    run,
    run_with_restart,
    step,
    windows,
)

BASE = Scenario(minutes=360, start_c=20.0, it=ramp(0, 15, 0.0, 90.0))


def leaks(sc: Scenario, params: LeakParams | None = None) -> list:
    p = {"leak": params} if params else None
    return [(i, e) for i, _, e in run(sc, kinds=("leak",), params=p)]


# -- no false alarms -------------------------------------------------------------------


def test_warm_up_from_cold_is_not_a_leak() -> None:
    # the loop warms by 25-38 K: pressure rises by 0.5 bar through thermal expansion
    ws = windows(BASE)
    assert ws[-1][0].pressure_mean_bar - ws[0][0].pressure_mean_bar > 0.45
    assert leaks(BASE) == []


def test_cool_down_and_reheat_are_not_leaks() -> None:
    # servers off for two hours at night: the loop cools by ~15 K and pressure falls
    sc = replace(BASE, minutes=600, it=lambda m: 0.0 if 200 <= m < 320 else min(90.0, 6 * m))
    ws = windows(sc)
    assert ws[199][0].pressure_mean_bar - ws[319][0].pressure_mean_bar > 0.2
    assert leaks(sc) == []


def test_cool_down_before_anything_was_learned_is_not_a_leak() -> None:
    sc = Scenario(minutes=180, start_c=62.0, it=const(0.0))
    assert leaks(sc) == []


def test_summer_throttling_with_varying_site_temperature_is_not_a_leak() -> None:
    sc = replace(
        BASE,
        minutes=720,
        throttled=lambda m: m >= 300,
        cap_kw=lambda m: 30.0 if m >= 300 else None,
        outdoor_c=lambda m: 5 + 10 * math.sin(m / 120 * math.pi),
    )
    assert leaks(sc) == []


def test_a_single_top_up_is_maintenance() -> None:
    sc = replace(BASE, makeup_lpm=lambda m: 6.0 if 200 <= m < 202.5 else 0.0)
    assert sum(w.makeup_l for w, _ in windows(sc)) > 10
    assert leaks(sc) == []


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    noise=st.floats(0.2, 3.0),
    volume=st.floats(200.0, 1500.0),
    vessel_share=st.floats(0.05, 0.12),
    fill=st.floats(1.2, 2.2),
    levels=st.lists(st.floats(0.0, 100.0), min_size=3, max_size=8),
    every=st.integers(5, 90),
)
def test_healthy_loops_never_leak(
    seed: int,
    noise: float,
    volume: float,
    vessel_share: float,
    fill: float,
    levels: list[float],
    every: int,
) -> None:
    sc = Scenario(
        minutes=360,
        seed=seed,
        noise=noise,
        volume_l=volume,
        vessel_l=vessel_share * volume,
        fill_bar=fill,
        start_c=20.0,
        it=lambda m: min(5.0 * m, levels[int(m // every) % len(levels)]),
    )
    assert leaks(sc) == []


# -- each evidence -----------------------------------------------------------------------


def test_small_leak_shows_as_temperature_compensated_pressure_decay() -> None:
    events = leaks(replace(BASE, leak_lpm=step(300, 0.0, 0.2)))
    (i, first) = events[0]
    assert first.phase == "start" and first.evidence == ["pressure_decay"]
    assert i + 1 - 300 <= 8  # ~35 mbar/min here: 0.12 bar in under 5 windows
    assert 299 <= minute_of(first.start_ms) <= 302
    assert first.detected_ms > first.start_ms
    assert 0.07 < first.leak_rate_lpm < 0.4  # compliance from the default slope: order of magnitude
    assert first.confidence == 0.6 and first.severity == "warning"
    assert "pressure" in first.reason and "bar" in first.reason


def test_very_small_leak_is_caught_later() -> None:
    events = leaks(replace(BASE, leak_lpm=step(300, 0.0, 0.05)))
    assert events and events[0][0] + 1 - 300 <= 25


def test_auto_filled_leak_shows_as_make_up_water_too() -> None:
    sc = replace(BASE, minutes=420, leak_lpm=step(300, 0.0, 0.5), autofill_below_bar=2.1)
    events = leaks(sc)
    (i, first) = events[0]
    assert "pressure_decay" in first.evidence and i + 1 - 300 <= 5
    # repeated fills: make-up joins; the rate comes from the water fed
    fed = [e for _, e in events if "makeup_water" in e.evidence]
    assert not fed  # phase start is emitted once; later evidence shows on the end event
    ended = leaks(replace(sc, leak_lpm=lambda m: 0.5 if 300 <= m < 360 else 0.0))
    end = ended[-1][1]
    assert end.phase == "end" and "makeup_water" in end.evidence


def test_make_up_only_loop_reports_make_up_evidence_with_its_rate() -> None:
    # a loop whose pressure is held by a make-up pump: every litre lost is fed back
    sc = replace(BASE, makeup_lpm=lambda m: 0.4 if m >= 300 else 0.0)
    events = leaks(sc)
    (i, first) = events[0]
    assert first.evidence == ["makeup_water"]
    assert i + 1 - 300 <= 11  # one uninterrupted fill: 10 windows before it is not a top-up
    assert abs(first.leak_rate_lpm - 0.4) < 0.05
    assert minute_of(first.start_ms) == 300


def test_leak_between_the_meters_shows_as_flow_imbalance() -> None:
    # 3 L/min with an auto-fill valve: pressure crashes within one window and is then
    # held, which is a step, not a decay; the meters and the make-up water tell instead
    sc = replace(
        BASE,
        minutes=420,
        supply_meter=True,
        leak_between_meters=True,
        leak_lpm=lambda m: 3.0 if 300 <= m < 340 else 0.0,
        autofill_below_bar=2.1,
    )
    events = leaks(sc)
    (i, first) = events[0]
    assert i + 1 - 300 <= 4
    assert first.evidence == ["flow_imbalance"] and first.severity == "critical"
    assert abs(first.leak_rate_lpm - 3.0) < 0.6
    end = events[-1][1]
    assert end.phase == "end" and {"flow_imbalance", "makeup_water"} <= set(end.evidence)
    assert end.confidence > first.confidence


def test_flow_imbalance_alone_with_meters_that_disagree_by_a_constant() -> None:
    sc = replace(BASE, supply_meter=True, leak_lpm=step(300, 0.0, 3.0), leak_between_meters=True)
    # without the supply meter in the context, the imbalance is not looked at
    no_meter = [i for i, e in leaks(replace(sc, supply_meter=False))]
    assert no_meter  # (pressure still sees it)
    events = leaks(sc, LeakParams(pressure_drop_bar=100.0))
    assert events[0][1].evidence == ["flow_imbalance"]
    assert abs(events[0][1].leak_rate_lpm - 3.0) < 0.6


def test_a_drifting_return_meter_is_not_a_leak() -> None:
    # the return meter drifts low at 6 %/h: the meters disagree by several L/min, but the
    # loop's pressure does not fall, so no water is leaving: a meter, not a leak
    sc = replace(BASE, supply_meter=True, flow_bias=lambda m: -0.001 * max(0.0, m - 200))
    ws = windows(sc)
    w = ws[-1][0]
    assert w.supply_flow_mean_lpm - w.flow_mean_lpm > 8
    assert leaks(sc) == []


def test_moisture_is_a_burst_and_critical_within_two_windows() -> None:
    events = leaks(replace(BASE, moisture_pct=step(300.5, 3.0, 60.0)))
    (i, first) = events[0]
    assert first.evidence == ["moisture"] and first.severity == "critical"
    assert i + 1 - 300.5 <= 2
    assert minute_of(first.start_ms) == 300
    assert first.leak_rate_lpm == 0.0 and "rate unknown" in first.reason


def test_agreeing_evidence_raises_confidence() -> None:
    sc = replace(
        BASE,
        minutes=420,
        supply_meter=True,
        leak_between_meters=True,
        leak_lpm=lambda m: 2.5 if 300 <= m < 320 else 0.0,  # above the meters' 1.7 L/min
        moisture_pct=lambda m: 70.0 if 300 <= m < 320 else 3.0,
    )
    events = leaks(sc)
    first, end = events[0][1], events[-1][1]
    # moisture answers first (2 windows); the start is emitted once, with what fired by then
    assert first.evidence == ["moisture"] and first.confidence == 0.8
    assert first.severity == "critical" and events[0][0] + 1 - 300 <= 2
    # the end reports every evidence seen during the episode and the best confidence
    assert [e.phase for _, e in events] == ["start", "end"]
    assert set(end.evidence) == {"pressure_decay", "flow_imbalance", "moisture"}
    assert end.confidence > 0.95 and end.leak_rate_lpm > 1.5


def test_repaired_leak_ends_once() -> None:
    sc = replace(BASE, minutes=480, leak_lpm=lambda m: 0.3 if 300 <= m < 340 else 0.0)
    events = leaks(sc)
    assert [e.phase for _, e in events] == ["start", "end"]
    start, end = events[0][1], events[1][1]
    assert end.start_ms == start.start_ms and end.id != start.id
    assert end.end_ms is not None and minute_of(end.end_ms) >= 340


def test_only_the_leaking_boiler_alerts() -> None:
    a = leaks(replace(BASE, boiler="boiler-0002", seed=5))
    b = leaks(replace(BASE, boiler="boiler-0003", seed=6, leak_lpm=step(300, 0.0, 0.2)))
    assert a == [] and {e.boiler for _, e in b} == {"boiler-0003"}


# -- state -------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _leaky_windows() -> list:
    sc = replace(
        BASE,
        minutes=480,
        supply_meter=True,
        leak_between_meters=True,
        leak_lpm=lambda m: 0.3 if 250 <= m < 300 else (2.0 if 380 <= m < 400 else 0.0),
        autofill_below_bar=2.1,
        moisture_pct=lambda m: 50.0 if 385 <= m < 395 else 3.0,
    )
    return windows(sc)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=479))
def test_restored_state_gives_identical_outputs(cut: int) -> None:
    ws = _leaky_windows()
    uninterrupted = run_with_restart(ws, -1, "leak")
    assert len(uninterrupted) >= 4
    assert run_with_restart(ws, cut, "leak") == uninterrupted


def test_state_is_bounded() -> None:
    ws = _leaky_windows()
    det = LeakDetector("boiler-0001", "site-01")
    sizes = []
    for w, ctx in ws:
        det.update(w, ctx)
        sizes.append(len(str(det.to_state())))
        # the pressure ring's cached curve positions follow its clears and trims
        evidence = det._pressure
        assert evidence.positions == [position(x[2]) for x in evidence.ring]
    assert max(sizes[200:]) < 1.3 * max(sizes[:200])
