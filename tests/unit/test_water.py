"""Water properties and thermal power against reference values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from heatstream.streams.water import (
    T_MAX_C,
    T_MIN_C,
    _interp,
    density_at,
    density_kg_m3,
    heat_capacity_at,
    heat_capacity_kj_kgk,
    thermal_power_kw,
)


@pytest.mark.parametrize(
    ("temp_c", "rho", "cp"),
    [(20.0, 998.2, 4.184), (45.0, 990.3, 4.180), (65.0, 980.6, 4.187)],
)
def test_reference_properties(temp_c: float, rho: float, cp: float) -> None:
    # DESIGN.md reference values (IAPWS, 2 bar); 998.25 at 20 °C is quoted there as 998.2.
    assert float(density_kg_m3(temp_c)) == pytest.approx(rho, abs=0.06)
    assert float(heat_capacity_kj_kgk(temp_c)) == pytest.approx(cp, abs=0.0005)


def test_thermal_power_of_the_reference_loop() -> None:
    # 10 L/min metered at 45 °C, 45 -> 65 °C:
    # ṁ = 990.256 kg/m³ x 10 L/min / 60000 = 0.165043 kg/s
    # c_p at 55 °C (IAPWS-95) = 4.18283 kJ/(kg K);  P = 0.165043 x 4.18283 x 20 = 13.807 kW
    p = thermal_power_kw(np.array([65.0]), np.array([45.0]), np.array([10.0]))
    assert float(p[0]) == pytest.approx(13.807, abs=0.002)
    # Assuming 1000 kg/m³ would overstate it by about 1 %.
    assert 1000.0 / float(density_kg_m3(45.0)) - 1 == pytest.approx(0.0098, abs=0.0002)


@given(
    st.floats(5, 95),
    st.floats(0.1, 40),
    st.floats(0.1, 500),
)
def test_power_scales_with_flow_and_sign_of_delta(
    t_return: float, delta: float, flow: float
) -> None:
    p = thermal_power_kw(np.array([t_return + delta]), np.array([t_return]), np.array([flow]))
    p2 = thermal_power_kw(np.array([t_return + delta]), np.array([t_return]), np.array([2 * flow]))
    assert p[0] > 0
    assert p2[0] == pytest.approx(2 * p[0])
    reverse = thermal_power_kw(
        np.array([t_return]),
        np.array([t_return + delta]),
        np.array([flow]),
        metered_at_c=np.array([t_return]),
    )
    assert reverse[0] < 0


def _same(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or a == b


@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(T_MIN_C - 2, T_MAX_C + 2),
        st.integers(int(T_MIN_C) - 1, int(T_MAX_C) + 1).map(float),  # grid points, ends
    )
)
def test_one_temperature_gives_numpys_value_bit_for_bit(temp_c: float) -> None:
    assert _same(density_at(temp_c), float(density_kg_m3(temp_c)))
    assert _same(heat_capacity_at(temp_c), float(heat_capacity_kj_kgk(temp_c)))


@given(
    st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=8, unique=True).map(sorted),
    st.lists(st.floats(allow_nan=False, allow_infinity=True), min_size=8, max_size=8),
    st.floats(allow_nan=True, allow_infinity=True),
)
@example([0.0, 1.0], [np.inf, 1.0], 0.5)  # inf - inf: numpy's second formula gives inf
@example([0.0, 1.0], [1.0, np.inf], 0.0)  # on a grid point: fp there, not inf * 0
def test_the_scalar_interpolation_is_numpys_on_any_table(xp, fp, x) -> None:
    """Uneven grids and infinite values too (the cases of numpy's NaN fallback)."""
    fp = fp[: len(xp)]
    assert _same(_interp(x, xp, fp), float(np.interp(x, xp, fp)))
