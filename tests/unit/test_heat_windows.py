"""Heat integration and event-time windows: exact values and invariants."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heatstream.streams.heat import integrate
from heatstream.streams.windows import (
    CHANNEL_INDEX,
    N_ROWS,
    WindowEngine,
    WindowParams,
    close_phase_ms,
)

T0 = 1_768_435_200_000  # 2026-01-15T00:00:00Z, a window boundary


def samples(
    t: np.ndarray, supply: float = 65.0, ret: float = 45.0, flow: float = 10.0
) -> np.ndarray:
    v = np.full((N_ROWS, t.size), np.nan)
    v[-1] = 0
    v[CHANNEL_INDEX["supply_temp_c"]] = supply
    v[CHANNEL_INDEX["return_temp_c"]] = ret
    v[CHANNEL_INDEX["flow_lpm"]] = flow
    v[CHANNEL_INDEX["it_power_kw"]] = 15.0
    return v


def run(engine: WindowEngine, chunks: list[tuple[np.ndarray, np.ndarray]]) -> list:
    out = []
    for t, v in chunks:
        engine.add("gw", "site", "b1", t, v)
        engine.advance("gw", int(t.max()))
        out.extend(engine.close_ready())
    return out


def test_one_hour_of_the_reference_loop() -> None:
    # 10 L/min metered at 45 °C (return side), 45 -> 65 °C, 1 Hz for one hour:
    # ρ(45 °C) = 990.256 kg/m³ -> ṁ = 0.1650427 kg/s; c_p(55 °C) = 4.18283 kJ/(kg K)
    # P = 0.1650427 x 4.18283 x 20 K = 13.8067 kW -> 13.8067 kWh in one hour.
    t = np.arange(T0, T0 + 3_700_000, 1000, dtype=np.int64)
    windows = run(
        WindowEngine(WindowParams()), [(t[i : i + 1], samples(t[i : i + 1])) for i in range(t.size)]
    )
    first_hour = [w for w in windows if w.start_ms < T0 + 3_600_000]
    assert len(first_hour) == 60
    assert all(w.coverage == 1.0 for w in first_hour)
    assert sum(w.heat_kwh for w in first_hour) == pytest.approx(13.8067, abs=1e-3)
    assert sum(w.it_kwh for w in first_hour) == pytest.approx(15.0, rel=1e-12)
    assert first_hour[0].supply_temp_mean_c == pytest.approx(65.0)


def test_gaps_longer_than_the_limit_are_not_bridged() -> None:
    t = np.array([T0, T0 + 1000, T0 + 30_000, T0 + 31_000], dtype=np.int64)
    power = np.array([10.0, 10.0, 10.0, 10.0])
    energy, covered = integrate(t, power, T0, T0 + 60_000, max_gap_ms=10_000)
    assert covered == 2000.0
    assert energy == pytest.approx(10.0 * 2 / 3600)


@settings(max_examples=200, deadline=None)
@given(
    times=st.lists(st.integers(0, 600_000), min_size=2, max_size=60, unique=True),
    powers=st.lists(st.floats(0, 500), min_size=60, max_size=60),
    cuts=st.lists(st.integers(0, 600_000), max_size=6),
)
def test_window_energy_equals_the_sum_over_any_split(times, powers, cuts) -> None:
    t = np.array(sorted(times), dtype=np.int64)
    p = np.array(powers[: t.size])
    edges = sorted({0, 600_000, *cuts})
    whole, whole_cov = integrate(t, p, 0, 600_000, max_gap_ms=50_000)
    parts = [integrate(t, p, a, b, max_gap_ms=50_000) for a, b in itertools.pairwise(edges)]
    assert sum(e for e, _ in parts) == pytest.approx(whole, rel=1e-9, abs=1e-12)
    assert sum(c for _, c in parts) == pytest.approx(whole_cov, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_arrival_order_within_lateness_does_not_change_windows(data: st.DataObject) -> None:
    params = WindowParams(window_ms=60_000, allowed_lateness_ms=30_000, max_gap_ms=10_000)
    t = np.arange(T0, T0 + 400_000, 1000, dtype=np.int64)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    supply = 60 + 10 * rng.random(t.size)
    chunks = []
    for i in range(0, t.size, 5):
        v = samples(t[i : i + 5])
        v[CHANNEL_INDEX["supply_temp_c"]] = supply[i : i + 5]
        chunks.append((t[i : i + 5], v))
    # Permute: each chunk may be delayed by up to 4 chunks (20 s < 30 s lateness).
    delays = [data.draw(st.integers(0, 4)) for _ in chunks]
    shuffled = [
        c
        for _, _, c in sorted(
            ((i + d, i, c) for i, (d, c) in enumerate(zip(delays, chunks, strict=True))),
            key=lambda x: (x[0], x[1]),
        )
    ]
    in_order = run(WindowEngine(params), chunks)
    out_of_order = run(WindowEngine(params), shuffled)
    assert [w.start_ms for w in in_order] == [w.start_ms for w in out_of_order]
    for a, b in zip(in_order, out_of_order, strict=True):
        assert a.heat_kwh == pytest.approx(b.heat_kwh, rel=1e-12)
        assert a.coverage == b.coverage
        assert a.samples == b.samples


def test_a_sample_after_its_window_closed_is_late_not_folded_in() -> None:
    params = WindowParams(window_ms=60_000, allowed_lateness_ms=5_000, max_gap_ms=2_000)
    engine = WindowEngine(params)
    t = np.arange(T0, T0 + 70_000, 1000, dtype=np.int64)
    closed = run(engine, [(t, samples(t))])
    assert [w.start_ms for w in closed] == [T0]
    late = np.array([T0 + 30_500], dtype=np.int64)
    accepted = engine.add("gw", "site", "b1", late, samples(late))
    assert accepted.late == 1 and accepted.kept == 0


def test_state_round_trip_continues_identically() -> None:
    params = WindowParams()
    t = np.arange(T0, T0 + 300_000, 1000, dtype=np.int64)
    chunks = [(t[i : i + 3], samples(t[i : i + 3], supply=60 + i % 7)) for i in range(0, t.size, 3)]
    straight = run(WindowEngine(params), chunks)
    first = WindowEngine(params)
    half = len(chunks) // 2 + 1
    resumed = run(first, chunks[:half])
    second = WindowEngine.from_state(params, first.to_state())
    resumed += run(second, chunks[half:])
    assert resumed == straight


def test_a_clock_jumping_years_ahead_does_not_fill_the_gap_with_empty_windows() -> None:
    engine = WindowEngine(WindowParams())
    t = np.arange(T0, T0 + 30_000, 1000, dtype=np.int64)
    engine.add("gw", "site", "b1", t, samples(t))
    engine.advance("gw", int(t.max()))
    far = np.array([T0 + 20 * 365 * 86_400_000], dtype=np.int64)  # twenty years later
    closed = run(engine, [(far, samples(far))])
    assert [w.start_ms for w in closed] == [T0]  # the data's own window, then no padding


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_whole_frame_added_at_once_equals_one_add_per_boiler(data: st.DataObject) -> None:
    """`add_frame` (one pass for a live frame) against `add` boiler by boiler: same
    late counts, same windows, same saved state, whether or not samples are late."""
    boilers = ["b1", "b2", "b3"]
    by_one, at_once = WindowEngine(WindowParams()), WindowEngine(WindowParams())
    out_one: list = []
    out_once: list = []
    starts = data.draw(st.lists(st.integers(0, 400), min_size=1, max_size=12), label="frame starts")
    for k, start_s in enumerate(starts):
        counts = data.draw(st.lists(st.integers(0, 3), min_size=3, max_size=3), label=f"counts {k}")
        if not sum(counts):
            continue
        bounds = [0, *itertools.accumulate(counts)]
        t = np.concatenate(
            [T0 + start_s * 1000 + np.arange(c, dtype=np.int64) * 1000 for c in counts]
        )
        v = samples(t, supply=60.0 + k)
        late_one = []
        for b, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            if hi > lo:
                accepted = by_one.add("gw", "site", boilers[b], t[lo:hi], v[:, lo:hi])
                late_one += [(accepted.boiler, accepted.late)] if accepted.late else []
        present = [b for b, c in zip(boilers, counts, strict=True) if c]
        cut = [0, *itertools.accumulate(c for c in counts if c)]
        late = at_once.add_frame("gw", "site", present, cut, t, v)
        assert [(a.boiler, a.late) for a in late] == late_one
        for engine, out in ((by_one, out_one), (at_once, out_once)):
            engine.advance("gw", int(t.max()))
            out.extend(engine.close_ready())
    assert out_once == out_one
    assert at_once.to_state() == by_one.to_state()
    assert _appended_by_boiler(at_once) == _appended_by_boiler(by_one)


def test_frames_out_of_order_into_an_emptied_buffer_are_summed_in_time_order() -> None:
    """Found by the property test above: b2's window [120 s, 180 s) closes and empties
    its buffer, then its frames of 181 s and 180 s wait together for the next flush,
    which joins them into one chunk in frame order. That chunk used to be taken as
    sorted: the window [180 s, 240 s) then came out with no heat and no means."""
    by_one, at_once = WindowEngine(WindowParams()), WindowEngine(WindowParams())
    out_one: list = []
    out_once: list = []
    frames = [("b3", 220), ("b2", 120), ("b2", 181), ("b2", 180), ("b3", 300), ("b3", 301)]
    for k, (boiler, second) in enumerate(frames):
        t = np.array([T0 + second * 1000], dtype=np.int64)
        v = samples(t, supply=60.0 + k)
        by_one.add("gw", "site", boiler, t, v)
        at_once.add_frame("gw", "site", [boiler], [0, 1], t, v)
        for engine, out in ((by_one, out_one), (at_once, out_once)):
            engine.advance("gw", int(t.max()))
            out.extend(engine.close_ready())
    (window,) = [w for w in out_once if w.boiler == "b2" and w.start_ms == T0 + 180_000]
    assert window.samples == 2
    assert window.supply_temp_mean_c == pytest.approx(62.5)  # 63 °C at 180 s, 62 °C at 181 s
    assert window.heat_kwh > 0
    assert out_once == out_one
    assert at_once.to_state() == by_one.to_state()


def _appended_by_boiler(engine: WindowEngine) -> dict[str, list[int]]:
    """The times appended to each boiler since the owner last took them, in order."""
    out: dict[str, list[int]] = {}
    for runs in engine.appended.values():
        for run in runs:
            ends = list(itertools.accumulate(run.counts))
            for boiler, lo, hi in zip(run.boilers, [0, *ends[:-1]], ends, strict=True):
                out.setdefault(boiler, []).extend(run.times[lo:hi].tolist())
    return out


def test_close_phases_are_fixed_per_gateway_and_spread_over_the_interval() -> None:
    phases = [close_phase_ms(f"gw-{i:03d}", 20_000) for i in range(200)]
    assert phases == [close_phase_ms(f"gw-{i:03d}", 20_000) for i in range(200)]
    assert all(0 <= p <= 20_000 for p in phases)
    # Spread, not bunched: every fifth of the interval holds some of them.
    assert {p * 5 // 20_001 for p in phases} == {0, 1, 2, 3, 4}
    assert close_phase_ms("gw-001", 0) == 0
    # CRC-32 of the id, scaled: the same in every process (Python's hash() is not).
    assert close_phase_ms("gw-001", 20_000) == zlib.crc32(b"gw-001") * 20_001 >> 32


@pytest.mark.parametrize("spread_ms", [0, 7_000, 20_000])
def test_a_window_closes_its_gateways_phase_after_the_watermark_allows_it(spread_ms: int) -> None:
    params = WindowParams(allowed_lateness_ms=10_000, max_gap_ms=5_000, close_spread_ms=spread_ms)
    phase = close_phase_ms("gw", spread_ms)
    # Window [T0, T0 + 60 s) may close once the newest sample is 60 + 5 + 10 s + phase in.
    due = T0 + 75_000 + phase
    engine = WindowEngine(params)
    closed_at = None
    for t in range(T0, due + 3_000, 1000):
        engine.add("gw", "site", "b1", np.array([t]), samples(np.array([t])))
        engine.advance("gw", t)
        if engine.close_ready() and closed_at is None:
            closed_at = t
    assert closed_at == -(-due // 1000) * 1000  # the first sample at or after `due`


def test_a_sample_is_late_only_once_its_window_closed_with_the_phase() -> None:
    # A gateway with a phase: a sample older than the lateness alone allows, arriving
    # before the phased close, is folded into its window; after the close it is late.
    params = WindowParams(allowed_lateness_ms=10_000, max_gap_ms=5_000, close_spread_ms=20_000)
    gateway = next(g for g in (f"gw-{i}" for i in range(100)) if close_phase_ms(g, 20_000) > 5_000)
    phase = close_phase_ms(gateway, 20_000)
    engine = WindowEngine(params)
    t = np.arange(T0, T0 + 75_000 + phase - 1000, 1000, dtype=np.int64)
    engine.add(gateway, "site", "b1", t, samples(t))
    engine.advance(gateway, int(t.max()))
    assert engine.close_ready() == []
    straggler = np.array([T0 + 59_500])  # 16 s older than the newest: past the lateness
    assert engine.add(gateway, "site", "b1", straggler, samples(straggler)).late == 0
    t2 = np.array([T0 + 75_000 + phase])
    engine.add(gateway, "site", "b1", t2, samples(t2))
    engine.advance(gateway, int(t2[0]))
    (window,) = engine.close_ready()
    assert window.samples == 61  # 60 in time + the straggler
    again = np.array([T0 + 59_600])
    assert engine.add(gateway, "site", "b1", again, samples(again)).late == 1
