"""The vectorised window summary gives the results of the per-channel one it replaced.

`summarise` integrates every channel in one `integrate_many` call. Here
`_reference_summarise` keeps the earlier implementation (one `integrate` or
`time_weighted_mean` call per quantity, per-channel loops for spread and last
values) and hypothesis compares the two on awkward inputs: gaps longer and
shorter than max_gap, duplicate timestamps, NaN holes, absent and all-NaN
channels, samples on both sides of the window edges.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heatstream.schemas.telemetry import CHANNEL_NAMES
from heatstream.streams.heat import integrate, integrate_many, time_weighted_mean
from heatstream.streams.stats import WindowStats, summarise
from heatstream.streams.water import thermal_power_kw

T0 = 1_768_435_200_000  # a window boundary
WINDOW_MS = 60_000


def _reference_first_last(
    t: np.ndarray, v: np.ndarray, start: int, end: int
) -> tuple[float | None, float | None]:
    inside = (t >= start) & (t < end) & np.isfinite(v)
    if not inside.any():
        return None, None
    vals = v[inside]
    return float(vals[0]), float(vals[-1])


def _reference_summarise(
    boiler: str,
    gateway: str,
    site: str,
    start_ms: int,
    end_ms: int,
    t_ms: np.ndarray,
    cols: dict[str, np.ndarray],
    quarantined: int,
    max_gap_ms: float,
    meter_on_supply: bool = False,
) -> WindowStats:
    """The per-channel `summarise` as it was before `integrate_many`."""
    length = float(end_ms - start_ms)
    nan = np.full(t_ms.size, np.nan)

    def col(name: str) -> np.ndarray:
        return cols.get(name, nan)

    supply, ret, flow = col("supply_temp_c"), col("return_temp_c"), col("flow_lpm")
    metered_at = supply if meter_on_supply else ret
    power = thermal_power_kw(supply, ret, flow, metered_at_c=metered_at)
    heat_kwh, heat_cov = integrate(t_ms, power, start_ms, end_ms, max_gap_ms)
    it_kwh, it_cov = integrate(t_ms, col("it_power_kw"), start_ms, end_ms, max_gap_ms)
    aux_kwh, _ = integrate(t_ms, col("aux_power_kw"), start_ms, end_ms, max_gap_ms)
    makeup_lpm_h, _ = integrate(t_ms, col("makeup_flow_lpm"), start_ms, end_ms, max_gap_ms)

    def mean(name: str) -> float | None:
        if name not in cols:
            return None
        return time_weighted_mean(t_ms, cols[name], start_ms, end_ms, max_gap_ms)

    inside = (t_ms >= start_ms) & (t_ms < end_ms)
    spread: dict[str, float] = {}
    last: dict[str, float] = {}
    for name, values in cols.items():
        vals = values[inside]
        vals = vals[np.isfinite(vals)]
        if vals.size:
            spread[name] = float(vals.max() - vals.min())
            last[name] = float(vals[-1])
    p_first, p_last = _reference_first_last(t_ms, col("pressure_bar"), start_ms, end_ms)
    moisture = cols.get("moisture_pct")
    moisture_in = moisture[inside] if moisture is not None else np.empty(0)
    moisture_in = moisture_in[np.isfinite(moisture_in)]
    return WindowStats(
        boiler=boiler,
        gateway=gateway,
        site=site,
        start_ms=start_ms,
        end_ms=end_ms,
        samples=int(inside.sum()),
        quarantined=quarantined,
        heat_kwh=heat_kwh,
        it_kwh=it_kwh,
        aux_kwh=aux_kwh,
        coverage=min(1.0, heat_cov / length),
        it_coverage=min(1.0, it_cov / length),
        supply_temp_mean_c=mean("supply_temp_c"),
        return_temp_mean_c=mean("return_temp_c"),
        flow_mean_lpm=mean("flow_lpm"),
        supply_flow_mean_lpm=mean("supply_flow_lpm"),
        pressure_mean_bar=mean("pressure_bar"),
        pressure_first_bar=p_first,
        pressure_last_bar=p_last,
        makeup_l=makeup_lpm_h * 60.0,
        moisture_max_pct=float(moisture_in.max()) if moisture_in.size else None,
        outdoor_temp_mean_c=mean("outdoor_temp_c"),
        it_power_mean_kw=mean("it_power_kw"),
        aux_power_mean_kw=mean("aux_power_kw"),
        spread=spread,
        last_values=last,
    )


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _assert_same(got: WindowStats, want: WindowStats) -> None:
    for f in dataclasses.fields(WindowStats):
        g, w = getattr(got, f.name), getattr(want, f.name)
        if isinstance(w, dict):
            assert list(g) == list(w), f.name
            for key in w:
                assert _close(g[key], w[key]), (f.name, key, g[key], w[key])
        elif w is None or g is None:
            assert g is None and w is None, (f.name, g, w)
        elif isinstance(w, float):
            assert isinstance(g, float), (f.name, type(g))
            assert _close(g, w), (f.name, g, w)
        else:
            assert type(g) is type(w) and g == w, (f.name, g, w)


# Plausible magnitudes per channel, so that sums stay well-conditioned at the
# tolerance asked for (negative readings included: bad sensors send them).
_SCALE = {
    "supply_temp_c": (-20.0, 130.0),
    "return_temp_c": (-20.0, 130.0),
    "flow_lpm": (-10.0, 500.0),
    "supply_flow_lpm": (-10.0, 500.0),
    "pressure_bar": (0.0, 16.0),
    "it_power_kw": (-5.0, 500.0),
    "aux_power_kw": (-5.0, 100.0),
    "makeup_flow_lpm": (0.0, 50.0),
    "moisture_pct": (0.0, 100.0),
    "outdoor_temp_c": (-60.0, 60.0),
    "pump_speed_pct": (0.0, 100.0),
    "it_utilisation_pct": (0.0, 100.0),
}


_HEAT_INPUTS = ("supply_temp_c", "return_temp_c", "flow_lpm")


@st.composite
def windows(draw: st.DrawFn) -> dict:
    max_gap = draw(st.sampled_from([5_000.0, 10_000.0, 12_500.5]))
    n = draw(st.integers(0, 60))
    first = draw(st.integers(-3 * WINDOW_MS // 2, WINDOW_MS + 5_000))
    # Structure comes from hypothesis, readings and jitter from a seeded
    # generator: drawing hundreds of values one by one takes seconds.
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    typical = draw(st.sampled_from([0, 250, 1_000, 3_000, 6_000]))
    steps = rng.integers(0, 2 * typical + 1, max(n - 1, 0))
    gap = int(max_gap)
    special = st.sampled_from([0, gap - 1, gap, gap + 1, 20_000, 45_000])
    for at, step in draw(st.lists(st.tuples(st.integers(0, 59), special), max_size=6)):
        if steps.size:
            steps[at % steps.size] = step  # duplicates, gaps at and around max_gap, holes
    t = T0 + first + np.concatenate([[0], np.cumsum(steps)]).astype(np.int64)[:n]
    # Often every channel is complete (the usual window, a fast path of its own).
    complete = draw(st.booleans())
    kinds = ["absent", "full"] if complete else ["absent", "full", "holes", "holes", "nan"]
    cols: dict[str, np.ndarray] = {}
    for name in CHANNEL_NAMES:
        kind = "full" if complete and name in _HEAT_INPUTS else draw(st.sampled_from(kinds))
        if kind == "absent":
            continue
        lo, hi = _SCALE[name]
        values = rng.uniform(lo, hi, n)
        if draw(st.booleans()):
            values = np.round(values)  # ties and flat stretches
        if kind == "holes":
            values[rng.random(n) < draw(st.sampled_from([0.05, 0.3, 0.8]))] = np.nan
        elif kind == "nan":
            values[:] = np.nan
        cols[name] = values
    # Channels arrive in any order; the summary's dicts follow it.
    order = draw(st.permutations(list(cols)))
    return {
        "t_ms": t,
        "cols": {name: cols[name] for name in order},
        "max_gap_ms": max_gap,
        "meter_on_supply": draw(st.booleans()),
        "quarantined": draw(st.integers(0, 5)),
    }


def _both(case: dict) -> tuple[WindowStats, WindowStats]:
    args = ("b1", "gw", "site", T0, T0 + WINDOW_MS, case["t_ms"], case["cols"])
    kwargs = {"meter_on_supply": case["meter_on_supply"]}
    rest = (case["quarantined"], case["max_gap_ms"])
    return summarise(*args, *rest, **kwargs), _reference_summarise(*args, *rest, **kwargs)


@settings(max_examples=200, deadline=None)
@given(windows())
def test_summarise_matches_the_per_channel_reference(case: dict) -> None:
    got, want = _both(case)
    _assert_same(got, want)


@settings(max_examples=150, deadline=None)
@given(windows(), st.integers(-20_000, 20_000), st.integers(0, 90_000))
def test_integrate_many_is_integrate_per_row_bit_for_bit(
    case: dict, start_shift: int, length: int
) -> None:
    t = case["t_ms"]
    names = list(case["cols"])
    values = np.array([case["cols"][n] for n in names]).reshape(len(names), t.size)
    start, end = T0 + start_shift, T0 + start_shift + length
    integrals, covered = integrate_many(t, values, start, end, case["max_gap_ms"])
    assert integrals.shape == covered.shape == (len(names),)
    for k in range(len(names)):
        want = integrate(t, values[k], start, end, case["max_gap_ms"])
        assert (float(integrals[k]), float(covered[k])) == want


@pytest.mark.parametrize("flow_hole", [False, True])
def test_a_realistic_boiler_minute_is_unchanged(flow_hole: bool) -> None:
    # 1 Hz from 10 s before to 10 s after the window, every channel present.
    rng = np.random.default_rng(3)
    t = T0 - 10_000 + np.arange(80, dtype=np.int64) * 1_000
    base = {
        "supply_temp_c": 65.0,
        "return_temp_c": 55.0,
        "flow_lpm": 20.0,
        "supply_flow_lpm": 20.2,
        "pressure_bar": 2.1,
        "it_power_kw": 15.0,
        "aux_power_kw": 0.8,
        "makeup_flow_lpm": 0.05,
        "moisture_pct": 12.0,
        "outdoor_temp_c": 4.0,
        "pump_speed_pct": 60.0,
        "it_utilisation_pct": 70.0,
    }
    v = np.array([base[n] * (1 + 0.01 * rng.standard_normal(t.size)) for n in CHANNEL_NAMES])
    if flow_hole:
        v[CHANNEL_NAMES.index("flow_lpm"), 30:33] = np.nan
    cols = {name: v[i] for i, name in enumerate(CHANNEL_NAMES)}
    case = {
        "t_ms": t,
        "cols": cols,
        "max_gap_ms": 10_000.0,
        "meter_on_supply": False,
        "quarantined": 1,
    }
    got, want = _both(case)
    assert got == want  # identical, not merely close
    assert got.samples == 60 and got.it_coverage == 1.0
    assert (got.coverage < 1.0) is flow_hole
