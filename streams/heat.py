"""Time integration of power over irregular samples, split exactly at window edges.

A boiler's samples define segments between consecutive timestamps. A segment
longer than `max_gap_ms` is a hole in the data and is not bridged. Power is
taken as linear along a segment (the trapezoid rule); a segment that straddles
a window edge is cut there by linear interpolation, so the energy of a window
equals the sum of the energies of any split of it, exactly up to rounding.

Everything here is vectorised over the samples of one boiler; no Kafka, no
Faust, no I/O.
"""

from __future__ import annotations

import numpy as np

MS_PER_HOUR = 3_600_000.0


def segment_overlap(
    t_ms: np.ndarray, start_ms: int, end_ms: int, max_gap_ms: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For sorted sample times, the part of each bridgeable segment inside [start, end).

    Returns (i, a, b, ok): segment i runs from sample i to i+1; [a, b) is its
    overlap with the window (a == b when none); ok marks segments not longer
    than max_gap_ms.
    """
    if t_ms.size < 2:
        empty = np.empty(0)
        return np.empty(0, dtype=np.int64), empty, empty, np.empty(0, dtype=bool)
    t = t_ms.astype(np.float64)
    t1, t2 = t[:-1], t[1:]
    a = np.clip(t1, start_ms, end_ms)
    b = np.clip(t2, start_ms, end_ms)
    ok = (t2 - t1) <= max_gap_ms
    return np.arange(t1.size), a, b, ok


def integrate(
    t_ms: np.ndarray, values: np.ndarray, start_ms: int, end_ms: int, max_gap_ms: float
) -> tuple[float, float]:
    """∫ values dt over [start, end) in value·hours, and the covered duration in ms.

    `t_ms` must be sorted. Segments touching a NaN value are holes, like gaps.
    """
    i, a, b, ok = segment_overlap(t_ms, start_ms, end_ms, max_gap_ms)
    if i.size == 0:
        return 0.0, 0.0
    t = t_ms.astype(np.float64)
    v1, v2 = values[:-1], values[1:]
    ok = ok & np.isfinite(v1) & np.isfinite(v2) & (b > a)
    if not ok.any():
        return 0.0, 0.0
    t1, t2 = t[:-1][ok], t[1:][ok]
    v1, v2, a, b = v1[ok], v2[ok], a[ok], b[ok]
    span = t2 - t1
    slope = np.where(span > 0, (v2 - v1) / np.where(span > 0, span, 1.0), 0.0)
    va = v1 + slope * (a - t1)
    vb = v1 + slope * (b - t1)
    integral_ms = float(np.sum((va + vb) * 0.5 * (b - a)))
    return integral_ms / MS_PER_HOUR, float(np.sum(b - a))


def time_weighted_mean(
    t_ms: np.ndarray, values: np.ndarray, start_ms: int, end_ms: int, max_gap_ms: float
) -> float | None:
    """Mean of a signal over the covered part of [start, end); None when nothing is covered."""
    integral_h, covered_ms = integrate(t_ms, values, start_ms, end_ms, max_gap_ms)
    if covered_ms <= 0:
        return None
    return integral_h * MS_PER_HOUR / covered_ms


def trapezoids(
    values: np.ndarray,
    seg: np.ndarray,
    t1: np.ndarray,
    span: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
) -> np.ndarray:
    """Per row of `values` (channels, samples) and per segment i in `seg` (from sample
    i to i + 1, starting at t1 and lasting span ms): the trapezoid of the part [a, b)
    inside the window, in value·ms, as a C-contiguous (rows, segments) array.

    `take` along axis 1 keeps rows contiguous, so each row's sum is pairwise over
    the same elements in the same order as in `integrate` (a column-major copy
    would sum them in another order). `values` must be finite where used.
    """
    v1, v2 = np.take(values, seg, axis=1), np.take(values, seg + 1, axis=1)
    slope = (v2 - v1) / span
    va = v1 + slope * (a - t1)
    vb = v1 + slope * (b - t1)
    return np.ascontiguousarray((va + vb) * 0.5 * (b - a))


def integrate_many(
    t_ms: np.ndarray, values: np.ndarray, start_ms: int, end_ms: int, max_gap_ms: float
) -> tuple[np.ndarray, np.ndarray]:
    """`integrate` of every row of a (channels, samples) array over one shared time axis.

    Returns (integrals in value·hours, covered ms), one entry per row; for
    float64 values each pair equals `integrate(t_ms, values[k], ...)` bit for
    bit. The window geometry is computed once for all rows, which is what
    makes a window summary cheap.
    """
    values = np.asarray(values, dtype=np.float64)
    rows = values.shape[0]
    zeros = np.zeros(rows)
    if t_ms.size < 2 or rows == 0:
        return zeros, zeros.copy()
    t = t_ms.astype(np.float64)
    t1, t2 = t[:-1], t[1:]
    # np.clip's results, without its per-call overhead (this runs per boiler-minute).
    a = np.minimum(np.maximum(t1, start_ms), end_ms)
    b = np.minimum(np.maximum(t2, start_ms), end_ms)
    seg = (((t2 - t1) <= max_gap_ms) & (b > a)).nonzero()[0]
    if seg.size == 0:
        return zeros, zeros.copy()
    t1, a, b = t1[seg], a[seg], b[seg]
    span = t[seg + 1] - t1  # > 0, since b > a
    width = b - a
    finite = np.isfinite(values)
    holes = not finite.all()
    if holes:
        # Zeros stand in for NaN so no invalid-value arithmetic happens; the
        # segments they touch are dropped below.
        values = np.where(finite, values, 0.0)
    terms = trapezoids(values, seg, t1, span, a, b)
    integral_ms = terms.sum(axis=1)
    if not holes:  # the usual window: every channel complete
        return integral_ms / MS_PER_HOUR, np.full(rows, width.sum())
    ok = np.take(finite, seg, axis=1) & np.take(finite, seg + 1, axis=1)
    for k in (~ok.all(axis=1)).nonzero()[0].tolist():
        integral_ms[k] = terms[k, ok[k]].sum()  # only its own segments, as `integrate`
    return integral_ms / MS_PER_HOUR, np.where(ok, width, 0.0).sum(axis=1)
