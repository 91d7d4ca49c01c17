"""Water properties and thermal power against reference values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from heatstream.streams.water import density_kg_m3, heat_capacity_kj_kgk, thermal_power_kw


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
