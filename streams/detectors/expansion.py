"""How a closed loop's pressure follows its temperature: a learned, binned expansion curve.

Heating a sealed loop expands its water into the expansion vessel and
compresses the vessel's gas: pressure rises with temperature, and not
linearly (water's expansion coefficient triples between 20 and 65 °C, and the
gas stiffens as it is compressed; a typical loop sees 0.01 bar/K cold and
0.05-0.08 bar/K hot). So the slope dp/dT is learned per 5 K temperature bin
from window-to-window changes (differences cancel the offset a top-up or a
leak adds), and the temperature-compensated pressure

    p_c = p - Φ(T),   Φ(T) = ∫ slope(τ) dτ  from 0 °C to T

moves only when the loop's water mass changes. The uncertainty of the slope
is carried along as a half-width per bin, so a decline is only called
unexplained when it exceeds what *any* plausible slope could explain.

The same slope gives the loop's compliance (litres of water per bar), because
the vessel that absorbs thermal expansion also absorbs a leak's loss:
C = V·γ(T) / slope(T), with γ the volumetric expansion coefficient of water.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from heatstream.streams.water import density_at

BIN_K = 5.0
N_BINS = 20  # 0-100 °C


@dataclass(frozen=True, slots=True)
class ExpansionParams:
    alpha: float = 1.0 / 2000  # forgetting per learned pair in a bin
    min_sxx_k2: float = 1.0  # Σ ΔT² a bin needs before its slope is trusted
    rel_uncertainty: float = 0.5  # half-width of a learned slope, relative ...
    abs_uncertainty_bar_k: float = 0.003  # ... plus absolute
    default_slope_bar_k: float = 0.05  # unlearned bins: 0.05 +- 0.05, i.e. anything in [0, 0.1]
    default_half_bar_k: float = 0.05


def expansion_coefficient(temp_c: float) -> float:
    """γ = -(1/ρ) dρ/dT of water, 1/K."""
    return -(density_at(temp_c + 0.5) - density_at(temp_c - 0.5)) / density_at(temp_c)


def _bin(temp_c: float) -> int:
    return int(min(N_BINS - 1, max(0, temp_c // BIN_K)))


@dataclass(slots=True)
class ExpansionModel:
    params: ExpansionParams = field(default_factory=ExpansionParams)
    sxx: list[float] = field(default_factory=lambda: [0.0] * N_BINS)
    sxy: list[float] = field(default_factory=lambda: [0.0] * N_BINS)

    def learn(self, t_from: float, t_to: float, dp_bar: float) -> None:
        """Learn from a pressure change `dp_bar` while the loop went from t_from to t_to."""
        dt = t_to - t_from
        i = _bin((t_from + t_to) / 2.0)
        k = 1.0 - self.params.alpha
        self.sxx[i] = self.sxx[i] * k + dt * dt
        self.sxy[i] = self.sxy[i] * k + dt * dp_bar

    def slopes(self) -> tuple[list[float], list[float]]:
        """Per bin: best slope and its half-width, bar/K."""
        p = self.params
        slope, half = [], []
        for sxx, sxy in zip(self.sxx, self.sxy, strict=True):
            if sxx >= p.min_sxx_k2:
                b = max(0.0, sxy / sxx)
                slope.append(b)
                half.append(p.rel_uncertainty * b + p.abs_uncertainty_bar_k)
            else:
                slope.append(p.default_slope_bar_k)
                half.append(p.default_half_bar_k)
        return slope, half

    def curve(self) -> Curve:
        slope, half = self.slopes()
        phi, width = [0.0], [0.0]
        for b, h in zip(slope, half, strict=True):
            phi.append(phi[-1] + b * BIN_K)
            width.append(width[-1] + h * BIN_K)
        learned = [sxx >= self.params.min_sxx_k2 for sxx in self.sxx]
        return Curve(phi=phi, width=width, slope=slope, half=half, learned=learned)

    def to_state(self) -> dict[str, Any]:
        return {"sxx": list(self.sxx), "sxy": list(self.sxy)}

    @classmethod
    def from_state(cls, state: dict[str, Any], params: ExpansionParams) -> ExpansionModel:
        return cls(
            params=params,
            sxx=[float(v) for v in state["sxx"]],
            sxy=[float(v) for v in state["sxy"]],
        )


def position(temp_c: float) -> tuple[int, float]:
    """The bin holding temp_c and how far into it (0..1), clipped to [0, 100] °C like
    np.interp. The same for every curve: the pressure evidence keeps it per window."""
    t = min(max(temp_c, 0.0), N_BINS * BIN_K)
    i = min(int(t // BIN_K), N_BINS - 1)
    return i, (t - i * BIN_K) / BIN_K


def _at_edges(values: list[float], temp_c: float) -> float:
    """Piecewise-linear interpolation of per-edge values (bins are uniform)."""
    i, frac = position(temp_c)
    return values[i] + frac * (values[i + 1] - values[i])


@dataclass(frozen=True, slots=True)
class Curve:
    """The learned curve, frozen for one evaluation."""

    phi: list[float]  # Φ at the bin edges
    width: list[float]  # ∫ half-width at the bin edges
    slope: list[float]
    half: list[float]
    learned: list[bool]

    def compensated(self, pressure_bar: float, temp_c: float) -> float:
        return pressure_bar - _at_edges(self.phi, temp_c)

    def width_at(self, temp_c: float) -> float:
        """∫ of the slope's half-width from 0 °C to temp_c, bar."""
        return _at_edges(self.width, temp_c)

    def compensated_with_width(
        self, readings: list[list[Any]], positions: list[tuple[int, float]]
    ) -> tuple[list[float], list[float]]:
        """For entries whose [1] is a pressure (bar), at the temperatures whose
        `position`s are given: each one's `compensated` pressure and `width_at` its
        temperature, the same numbers without looking up the bins again."""
        phi, width = self.phi, self.width
        pc, widths = [], []
        for entry, (i, frac) in zip(readings, positions, strict=True):
            pc.append(entry[1] - (phi[i] + frac * (phi[i + 1] - phi[i])))
            widths.append(width[i] + frac * (width[i + 1] - width[i]))
        return pc, widths

    def uncertainty(self, t_a: float, t_b: float) -> float:
        """Largest pressure change between t_a and t_b the slope uncertainty could hide, bar."""
        return abs(_at_edges(self.width, t_b) - _at_edges(self.width, t_a))

    def steepest(self, temp_c: float) -> float:
        """The largest plausible slope at temp_c, bar/K."""
        i = _bin(temp_c)
        return self.slope[i] + self.half[i]

    def compliance_l_per_bar(self, temp_c: float, volume_l: float) -> tuple[float, bool]:
        """Litres the loop gains or loses per bar at temp_c, and whether the slope was learned."""
        i = _bin(temp_c)
        slope = self.slope[i]
        if slope <= 1e-6:
            return float("inf"), self.learned[i]
        return volume_l * expansion_coefficient(temp_c) / slope, self.learned[i]
