"""The building blocks of the detectors: hysteresis latch, learned baselines, expansion curve."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from heatstream.streams.detectors.baseline import DecayedMean, LoadModel
from heatstream.streams.detectors.expansion import (
    ExpansionModel,
    expansion_coefficient,
    position,
)
from heatstream.streams.detectors.hysteresis import Latch


def test_latch_starts_on_k_of_n_and_dates_the_start_from_the_first_evidence() -> None:
    latch = Latch(on_k=3, on_n=5, off_n=2)
    pattern = [False, True, False, True, True]
    got = [latch.step(t, e, not e) for t, e in enumerate(pattern)]
    assert got == [None, None, None, None, "start"]
    assert latch.started_ms == 1


def test_latch_needs_off_n_consecutive_clear_windows() -> None:
    latch = Latch(on_k=1, on_n=1, off_n=3)
    assert latch.step(0, True, False) == "start"
    seq = [(1, True), (2, True), (3, False), (4, True), (5, True), (6, True)]
    got = [latch.step(t, False, clear) for t, clear in seq]
    assert got == [None, None, None, None, None, "end"]
    assert latch.clear_start_ms == 4


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=200))
def test_latch_alternates_start_and_end(steps: list[tuple[bool, bool]]) -> None:
    latch = Latch(on_k=2, on_n=3, off_n=2)
    seen = [x for t, (e, c) in enumerate(steps) if (x := latch.step(t, e, c))]
    assert seen == ["start", "end"] * (len(seen) // 2) + ["start"] * (len(seen) % 2)


def test_latch_validates() -> None:
    with pytest.raises(ValueError):
        Latch(on_k=4, on_n=3, off_n=1)


def test_decayed_mean_is_a_plain_mean_at_first_then_forgets() -> None:
    m = DecayedMean()
    for x in (1.0, 2.0, 3.0):
        m.update(x, alpha=0.0)
    assert m.mean == pytest.approx(2.0) and m.value(3) == pytest.approx(2.0) and m.value(4) is None
    for _ in range(2000):
        m.update(10.0, alpha=0.01)
    assert m.mean == pytest.approx(10.0, abs=1e-6)
    assert DecayedMean.from_state(json.loads(json.dumps(m.to_state()))) == m


def test_load_model_learns_fixed_losses() -> None:
    model = LoadModel()
    rng = np.random.default_rng(0)
    for _ in range(500):
        x = float(rng.uniform(0.2, 1.0))
        model.update(x, 0.95 * x - 0.02, alpha=1 / 720)  # 2 % of nominal lost whatever the load
    # the ridge pulls the intercept a little towards 0: within half a percent
    assert model.expected_ratio(1.0, 5.0, 30) == pytest.approx(0.93, abs=5e-3)
    assert model.expected_ratio(0.25, 5.0, 30) == pytest.approx(0.87, abs=1e-2)


def test_load_model_seen_at_one_load_predicts_its_ratio() -> None:
    model = LoadModel()
    for _ in range(100):
        model.update(0.8, 0.8 * 0.93, alpha=1 / 720)
    assert model.expected_ratio(0.8, 5.0, 30) == pytest.approx(0.93)
    assert model.expected_ratio(0.75, 5.0, 30) == pytest.approx(0.93)  # no line through noise
    # far from anything learned: no prediction rather than an extrapolation
    assert model.expected_ratio(0.3, 5.0, 30, max_leverage=0.05) is None
    assert model.expected_ratio(0.75, 5.0, 30, max_leverage=0.05) is not None
    assert LoadModel().expected_ratio(0.8, 5.0, 30) is None


def test_expansion_coefficient_of_water() -> None:
    assert expansion_coefficient(20.0) == pytest.approx(2.07e-4, rel=0.03)
    assert expansion_coefficient(60.0) == pytest.approx(5.2e-4, rel=0.03)


def test_expansion_curve_learns_a_non_linear_slope_per_bin() -> None:
    model = ExpansionModel()
    temps = np.linspace(20, 65, 46)
    pressure = 1.8 + 0.0005 * (temps - 20) ** 2  # slope 0.001 (T - 20) bar/K
    for a, b, pa, pb in zip(temps[:-1], temps[1:], pressure[:-1], pressure[1:], strict=True):
        model.learn(float(a), float(b), float(pb - pa))
    slope, _ = model.slopes()
    assert slope[5] == pytest.approx(0.0075, rel=0.05)  # 25-30 °C
    assert slope[12] == pytest.approx(0.0425, rel=0.05)  # 60-65 °C
    curve = model.curve()
    # compensated pressure is flat along the learned curve ...
    pcs = [curve.compensated(float(p), float(t)) for t, p in zip(temps, pressure, strict=True)]
    assert max(pcs) - min(pcs) < 0.02
    # ... and unlearned bins carry a wide uncertainty
    assert curve.uncertainty(80.0, 90.0) == pytest.approx(0.5)
    assert curve.uncertainty(60.0, 65.0) < 0.15
    litres, learned = curve.compliance_l_per_bar(62.0, 500.0)
    assert learned and litres == pytest.approx(500 * expansion_coefficient(62.0) / slope[12])
    restored = ExpansionModel.from_state(json.loads(json.dumps(model.to_state())), model.params)
    assert restored.sxx == model.sxx and restored.sxy == model.sxy


@given(
    pairs=st.lists(
        st.tuples(st.floats(-20.0, 120.0), st.floats(-20.0, 120.0), st.floats(-0.5, 0.5)),
        max_size=30,
    ),
    ring=st.lists(st.tuples(st.floats(0.0, 4.0), st.floats(-20.0, 120.0)), min_size=1, max_size=32),
)
def test_compensated_with_width_is_compensated_and_width_at_of_each_entry(
    pairs: list[tuple[float, float, float]], ring: list[tuple[float, float]]
) -> None:
    """From positions looked up once, the pressure evidence gets exactly the per-entry
    numbers, below 0 °C, inside every bin, on its edges and above 100 °C."""
    model = ExpansionModel()
    for t_from, t_to, dp in pairs:
        model.learn(t_from, t_to, dp)
    curve = model.curve()
    entries = [[0, bar, temp, 0.0] for bar, temp in ring]
    pc, width = curve.compensated_with_width(entries, [position(temp) for _, temp in ring])
    assert pc == [curve.compensated(bar, temp) for bar, temp in ring]
    assert width == [curve.width_at(temp) for _, temp in ring]
