"""Per-boiler learned baselines, bounded state: decayed means, a load model, linear models.

All forget with a factor (1 - alpha) per update, so they weigh like a running
mean at first (the first n updates count equally: an unbiased warm-up) and like
an exponentially weighted mean with time constant 1/alpha later. State is a few
floats, whatever the boiler's age.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class DecayedMean:
    mean: float = 0.0
    weight: float = 0.0

    def update(self, x: float, alpha: float) -> None:
        self.weight = self.weight * (1.0 - alpha) + 1.0
        self.mean += (x - self.mean) / self.weight

    def value(self, min_weight: float) -> float | None:
        """The mean once at least `min_weight` updates back it, else None."""
        return self.mean if self.weight >= min_weight else None

    def to_state(self) -> list[float]:
        return [self.mean, self.weight]

    @classmethod
    def from_state(cls, state: list[float]) -> DecayedMean:
        return cls(mean=float(state[0]), weight=float(state[1]))


@dataclass(slots=True)
class LoadModel:
    """Heat as a linear function of IT load, y = a*x + c, learned by decayed ridge regression.

    x = IT power / nominal, y = heat power / nominal. A healthy boiler loses a
    roughly fixed few kW through its casing and pipes, so its recovery ratio is
    lower at low load; a line through the data captures that where a single
    ratio would not. The ridge term (`ridge` windows' worth) pulls the intercept
    c towards 0, so the fit stays defined when the boiler was only seen at one
    load; a load far from those learned has a high leverage and gets no
    prediction at all (it is learned instead): nothing is judged by extrapolation.
    """

    s0: float = 0.0
    sx: float = 0.0
    sy: float = 0.0
    sxx: float = 0.0
    sxy: float = 0.0

    def update(self, x: float, y: float, alpha: float) -> None:
        k = 1.0 - alpha
        self.s0 = self.s0 * k + 1.0
        self.sx = self.sx * k + x
        self.sy = self.sy * k + y
        self.sxx = self.sxx * k + x * x
        self.sxy = self.sxy * k + x * y

    def coefficients(self, ridge: float) -> tuple[float, float]:
        det = self.sxx * (self.s0 + ridge) - self.sx * self.sx
        if det <= 0.0:
            return 0.0, 0.0
        a = (self.sxy * (self.s0 + ridge) - self.sx * self.sy) / det
        c = (self.sxx * self.sy - self.sx * self.sxy) / det
        return a, c

    def predict(self, x: float, ridge: float, min_weight: float) -> tuple[float, float] | None:
        """(expected heat/IT at load x, leverage of x), or None until `min_weight`
        windows were learned. The leverage says how far x is from the learned loads."""
        if self.s0 < min_weight or x <= 0.0:
            return None
        det = self.sxx * (self.s0 + ridge) - self.sx * self.sx
        if det <= 0.0:
            return None
        leverage = ((self.s0 + ridge) * x * x - 2.0 * self.sx * x + self.sxx) / det
        a, c = self.coefficients(ridge)
        ratio = a + c / x
        return (ratio, leverage) if ratio > 0.0 else None

    def expected_ratio(
        self, x: float, ridge: float, min_weight: float, max_leverage: float = 1.0
    ) -> float | None:
        """Expected heat/IT at load x, or None where not learned or not supported."""
        found = self.predict(x, ridge, min_weight)
        return found[0] if found is not None and found[1] <= max_leverage else None

    def to_state(self) -> list[float]:
        return [self.s0, self.sx, self.sy, self.sxx, self.sxy]

    @classmethod
    def from_state(cls, state: list[float]) -> LoadModel:
        return cls(*(float(v) for v in state))


@dataclass(slots=True)
class LinearModel:
    """One target as a linear function of a few features, by decayed least squares.

    Used for the loop temperatures (see `efficiency.py`): features come from
    other instruments than the thermometers (IT power, outdoor temperature), so a
    drifting thermometer shows as a residual of its own. A prediction comes with
    its leverage x'(X'X)^-1 x, which says how well the learned windows support
    it: the caller judges only well-supported points and never extrapolates.
    """

    n: int
    xx: list[float] = field(default_factory=list)
    xy: list[float] = field(default_factory=list)
    weight: float = 0.0

    def __post_init__(self) -> None:
        if not self.xx:
            self.xx = [0.0] * (self.n * self.n)
            self.xy = [0.0] * self.n

    def update(self, x: list[float], y: float, alpha: float) -> None:
        k, n = 1.0 - alpha, self.n
        for i in range(n):
            self.xy[i] = self.xy[i] * k + x[i] * y
            for j in range(n):
                self.xx[i * n + j] = self.xx[i * n + j] * k + x[i] * x[j]
        self.weight = self.weight * k + 1.0

    def predict(
        self, x: list[float], ridge: float, min_weight: float
    ) -> tuple[float, float] | None:
        """(expected value, leverage) at x; None until `min_weight` windows were learned.

        `ridge` regularises every coefficient but the intercept (the first feature).
        Every coefficient but the intercept is physically non-negative (a higher IT
        load or a colder day never cools the loop), and the fit keeps it so: a
        feature whose coefficient would come out negative is left out of the fit
        (but not out of the leverage: a point new in that feature is still new). Otherwise a
        slow fault that happens to coincide with the weather (an exchanger fouling
        through a warming afternoon) could be explained away by a backwards weather
        effect.
        """
        if self.weight < min_weight:
            return None
        n = self.n
        keep = list(range(n))
        leverage: float | None = None  # of the full model: novelty in any feature counts
        while True:
            m = [
                [self.xx[i * n + j] + (ridge if i == j and i > 0 else 0.0) for j in keep]
                for i in keep
            ]
            solved = _solve(m, [[self.xy[i], x[i]] for i in keep])
            if solved is None:
                return None
            if leverage is None:
                leverage = sum(x[i] * c[1] for i, c in zip(keep, solved, strict=True))
            negative = [(c[0], i) for c, i in zip(solved[1:], keep[1:], strict=True) if c[0] < 0]
            if not negative:
                break
            keep.remove(min(negative)[1])
        value = sum(x[i] * c[0] for i, c in zip(keep, solved, strict=True))
        return value, leverage

    def to_state(self) -> list[float]:
        return [*self.xx, *self.xy, self.weight]

    @classmethod
    def from_state(cls, n: int, state: list[float]) -> LinearModel:
        values = [float(v) for v in state]
        return cls(n=n, xx=values[: n * n], xy=values[n * n : n * n + n], weight=values[-1])


def _solve(m: list[list[float]], rhs: list[list[float]]) -> list[list[float]] | None:
    """Solve m X = rhs for a few columns by Gauss-Jordan with partial pivoting; None if
    singular. Plain Python: for 2x2 and 3x3 systems it is ten times faster than numpy."""
    n = len(m)
    a = [row[:] + r[:] for row, r in zip(m, rhs, strict=True)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) < 1e-12:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        inv = 1.0 / a[col][col]
        a[col] = [v * inv for v in a[col]]
        for r in range(n):
            if r != col and a[r][col] != 0.0:
                f = a[r][col]
                a[r] = [v - f * w for v, w in zip(a[r], a[col], strict=True)]
    return [row[n:] for row in a]
