"""What one boiler did in one closed event-time window: the input of every detector.

`summarise` turns the sorted samples around a window into a `WindowStats`;
heat windows, rollups and the efficiency, leak and data-quality detectors all
read these, never raw samples, so detectors cost one call per boiler-minute.
The window engine calls `summarise_many`, which gives the same results for all
the windows a gateway's boilers close together, in one set of array operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from heatstream.schemas.telemetry import CHANNEL_NAMES
from heatstream.streams.heat import MS_PER_HOUR, integrate_many, trapezoids
from heatstream.streams.water import thermal_power_kw


@dataclass(frozen=True, slots=True)
class WindowStats:
    boiler: str
    gateway: str
    site: str
    start_ms: int
    end_ms: int
    samples: int
    quarantined: int
    heat_kwh: float
    it_kwh: float
    aux_kwh: float
    coverage: float  # fraction of the window where heat could be computed
    it_coverage: float
    supply_temp_mean_c: float | None
    return_temp_mean_c: float | None
    flow_mean_lpm: float | None
    supply_flow_mean_lpm: float | None
    pressure_mean_bar: float | None
    pressure_first_bar: float | None
    pressure_last_bar: float | None
    makeup_l: float  # make-up water volume fed in the window, litres
    moisture_max_pct: float | None
    outdoor_temp_mean_c: float | None
    it_power_mean_kw: float | None
    aux_power_mean_kw: float | None
    spread: dict[str, float] = field(default_factory=dict)  # max - min per channel present
    last_values: dict[str, float] = field(default_factory=dict)

    @property
    def duration_h(self) -> float:
        return (self.end_ms - self.start_ms) / 3_600_000.0

    @property
    def total_kwh(self) -> float:
        return self.it_kwh + self.aux_kwh

    @property
    def loop_temp_mean_c(self) -> float | None:
        if self.supply_temp_mean_c is None or self.return_temp_mean_c is None:
            return None
        return (self.supply_temp_mean_c + self.return_temp_mean_c) / 2.0


# Channels integrated over time: their window mean, and for power and make-up
# flow also their energy or volume. One row each in a single `integrate_many`.
_MEAN_CHANNELS = (
    "supply_temp_c",
    "return_temp_c",
    "flow_lpm",
    "supply_flow_lpm",
    "pressure_bar",
    "outdoor_temp_c",
    "it_power_kw",
    "aux_power_kw",
)
_TIMED_CHANNELS = (*_MEAN_CHANNELS, "makeup_flow_lpm")


def _mean(integral_h: float, covered_ms: float) -> float | None:
    # Same expression as `time_weighted_mean`, so the rounding is the same.
    if covered_ms <= 0:
        return None
    return integral_h * MS_PER_HOUR / covered_ms


def summarise(
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
    """Summarise sorted samples (which may extend up to max_gap beyond the window).

    All channels go through one `integrate_many` call and one pass over the
    samples inside the window: this runs once per boiler-minute, so it is on
    the stream processor's hot path.
    """
    length = float(end_ms - start_ms)
    n = t_ms.size
    nan = np.full(n, np.nan)
    supply = cols.get("supply_temp_c", nan)
    ret = cols.get("return_temp_c", nan)
    power = thermal_power_kw(
        supply, ret, cols.get("flow_lpm", nan), metered_at_c=supply if meter_on_supply else ret
    )

    timed = [name for name in _TIMED_CHANNELS if name in cols]
    rows = np.empty((1 + len(timed), n))
    rows[0] = power
    for k, name in enumerate(timed, start=1):
        rows[k] = cols[name]
    integrals, covered = integrate_many(t_ms, rows, start_ms, end_ms, max_gap_ms)
    heat_kwh, heat_cov = float(integrals[0]), float(covered[0])
    by_name = {
        name: (integral_h, covered_ms)
        for name, integral_h, covered_ms in zip(
            timed, integrals[1:].tolist(), covered[1:].tolist(), strict=True
        )
    }
    it_kwh, it_cov = by_name.get("it_power_kw", (0.0, 0.0))
    aux_kwh = by_name.get("aux_power_kw", (0.0, 0.0))[0]
    makeup_lpm_h = by_name.get("makeup_flow_lpm", (0.0, 0.0))[0]
    means = {name: _mean(*by_name[name]) for name in _MEAN_CHANNELS if name in by_name}

    # Samples are sorted, so the ones inside [start, end) are one slice.
    lo, hi = np.searchsorted(t_ms, (start_ms, end_ms), side="left").tolist()
    names = list(cols)
    spread: dict[str, float] = {}
    last: dict[str, float] = {}
    p_first: float | None = None
    p_last: float | None = None
    moisture_max: float | None = None
    if names and hi > lo:
        inner = np.array([cols[name][lo:hi] for name in names], dtype=np.float64)
        finite = np.isfinite(inner)
        counts = np.count_nonzero(finite, axis=1).tolist()
        top = np.where(finite, inner, -np.inf).max(axis=1).tolist()
        bottom = np.where(finite, inner, np.inf).min(axis=1).tolist()
        rows_at = np.arange(len(names))
        first = inner[rows_at, finite.argmax(axis=1)].tolist()
        final = inner[rows_at, hi - lo - 1 - finite[:, ::-1].argmax(axis=1)].tolist()
        for k, name in enumerate(names):
            if counts[k]:
                spread[name] = top[k] - bottom[k]
                last[name] = final[k]
        if "pressure_bar" in last:
            p_first, p_last = first[names.index("pressure_bar")], last["pressure_bar"]
        if "moisture_pct" in last:
            moisture_max = top[names.index("moisture_pct")]
    return WindowStats(
        boiler=boiler,
        gateway=gateway,
        site=site,
        start_ms=start_ms,
        end_ms=end_ms,
        samples=hi - lo,
        quarantined=quarantined,
        heat_kwh=heat_kwh,
        it_kwh=it_kwh,
        aux_kwh=aux_kwh,
        coverage=min(1.0, heat_cov / length),
        it_coverage=min(1.0, it_cov / length),
        supply_temp_mean_c=means.get("supply_temp_c"),
        return_temp_mean_c=means.get("return_temp_c"),
        flow_mean_lpm=means.get("flow_lpm"),
        supply_flow_mean_lpm=means.get("supply_flow_lpm"),
        pressure_mean_bar=means.get("pressure_bar"),
        pressure_first_bar=p_first,
        pressure_last_bar=p_last,
        makeup_l=makeup_lpm_h * 60.0,  # (L/min)·h -> L
        moisture_max_pct=moisture_max,
        outdoor_temp_mean_c=means.get("outdoor_temp_c"),
        it_power_mean_kw=means.get("it_power_kw"),
        aux_power_mean_kw=means.get("aux_power_kw"),
        spread=spread,
        last_values=last,
    )


@dataclass(frozen=True, slots=True)
class WindowInput:
    """One boiler's samples around one window, as `summarise_many` takes them.

    `values` holds one row per channel in CHANNEL_NAMES order (NaN: missing or
    quarantined) over the sorted `t_ms`, which may extend up to max_gap beyond
    the window; a channel is present when it has a finite value there (the
    `cols` that `summarise` takes). Extra rows after the channels are ignored.
    """

    boiler: str
    gateway: str
    site: str
    start_ms: int
    end_ms: int
    t_ms: np.ndarray
    values: np.ndarray
    quarantined: int
    meter_on_supply: bool = False


_CHANNELS = tuple(CHANNEL_NAMES)
_N = len(_CHANNELS)
_ROW = {name: i for i, name in enumerate(_CHANNELS)}
# Rows integrated by `summarise_many`: thermal power, then _TIMED_CHANNELS.
_TIMED_ROWS = np.array([_ROW[name] for name in _TIMED_CHANNELS])
_PRESSURE, _MOISTURE = _ROW["pressure_bar"], _ROW["moisture_pct"]
# Their rows in the integrals: 0 is thermal power, then _TIMED_CHANNELS in order.
_IT_ROW, _AUX_ROW, _MAKEUP_ROW = (
    1 + _TIMED_CHANNELS.index(name) for name in ("it_power_kw", "aux_power_kw", "makeup_flow_lpm")
)


def summarise_many(windows: list[WindowInput], max_gap_ms: float) -> list[WindowStats]:
    """`summarise` of many boiler-windows at once, with results equal bit for bit.

    A gateway's boilers close their windows together; here the arithmetic over
    their samples (thermal power, the trapezoids of every channel, presence,
    spread, first and last values) runs as one set of array operations over all
    of them, and only the per-window sums and the `WindowStats` themselves are
    made one window at a time. Each sum runs over the same elements in the same
    order as in `integrate_many`, so that results equal those of `summarise`.
    """
    if not windows:
        return []
    k_n = len(windows)
    counts = np.fromiter((w.t_ms.size for w in windows), np.int64, k_n)
    off = np.zeros(k_n + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    n = int(off[-1])
    if n == 0:
        return [_summarise_one(w, max_gap_ms) for w in windows]
    t_int = np.concatenate([w.t_ms for w in windows]).astype(np.int64, copy=False)
    x = np.concatenate([w.values[:_N] for w in windows], axis=1)
    starts = np.fromiter((w.start_ms for w in windows), np.int64, k_n)
    ends = np.fromiter((w.end_ms for w in windows), np.int64, k_n)
    start_at = np.repeat(starts, counts)
    end_at = np.repeat(ends, counts)
    finite = np.isfinite(x)
    # Per window: which channels are present (finite anywhere in its samples)
    # and where its samples inside [start, end) begin and end (they are sorted).
    csum = np.zeros((_N + 2, n + 1), dtype=np.int64)
    np.cumsum(finite, axis=1, out=csum[:_N, 1:])
    np.cumsum(t_int < start_at, out=csum[_N, 1:])
    np.cumsum(t_int < end_at, out=csum[_N + 1, 1:])
    per_window = csum[:, off[1:]] - csum[:, off[:-1]]
    inside_lo = off[:-1] + per_window[_N]
    inside_hi = off[:-1] + per_window[_N + 1]

    # -- integrals: thermal power, then the timed channels, all windows at once --
    supply, ret = x[_ROW["supply_temp_c"]], x[_ROW["return_temp_c"]]
    on_supply = np.fromiter((w.meter_on_supply for w in windows), bool, k_n)
    metered_at = np.where(np.repeat(on_supply, counts), supply, ret) if on_supply.any() else ret
    rows = np.empty((1 + _TIMED_ROWS.size, n))
    rows[0] = thermal_power_kw(supply, ret, x[_ROW["flow_lpm"]], metered_at_c=metered_at)
    rows[1:] = x[_TIMED_ROWS]
    t = t_int.astype(np.float64)
    t1, t2 = t[:-1], t[1:]
    edge_lo = start_at[:-1].astype(np.float64)
    edge_hi = end_at[:-1].astype(np.float64)
    a = np.minimum(np.maximum(t1, edge_lo), edge_hi)
    b = np.minimum(np.maximum(t2, edge_lo), edge_hi)
    joined = np.ones(n - 1, dtype=bool)  # segment i joins samples i, i + 1 of one window
    ends_at = off[1:-1] - 1  # last sample of each window but the final one
    joined[ends_at[(ends_at >= 0) & (ends_at < n - 1)]] = False
    seg = (joined & ((t2 - t1) <= max_gap_ms) & (b > a)).nonzero()[0]
    t1, a, b = t1[seg], a[seg], b[seg]
    span = t[seg + 1] - t1
    width = b - a
    rfinite = np.isfinite(rows)
    # Zeros stand in for NaN (as in `integrate_many`); segments touching one
    # are dropped from the rows that have it.
    values = np.where(rfinite, rows, 0.0)
    terms = trapezoids(values, seg, t1, span, a, b)
    ok = np.take(rfinite, seg, axis=1) & np.take(rfinite, seg + 1, axis=1)
    seg_off = np.searchsorted(seg, off)  # window k: segments seg_off[k]:seg_off[k+1]
    # Absent channels count as nothing (`summarise` leaves them out of its sums).
    absent = ~(per_window[_TIMED_ROWS] > 0)
    wanted = np.vstack([np.ones((1, k_n), dtype=bool), ~absent])
    integral_h, covered = _window_sums(terms, width, ok, seg_off, wanted)
    integral_h[1:][absent] = 0.0
    covered[1:][absent] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        means = integral_h * MS_PER_HOUR / covered  # `_mean`, where covered > 0
    mean_rows = [
        [None if c <= 0 else m for m, c in zip(mr, cr, strict=True)]
        for mr, cr in zip(means[1:9].tolist(), covered[1:9].tolist(), strict=True)
    ]
    heat, heat_cov = integral_h[0].tolist(), covered[0].tolist()
    it_kwh, it_cov = integral_h[_IT_ROW].tolist(), covered[_IT_ROW].tolist()
    aux_kwh = integral_h[_AUX_ROW].tolist()
    makeup_l = (integral_h[_MAKEUP_ROW] * 60.0).tolist()  # (L/min)·h -> L
    samples = (inside_hi - inside_lo).tolist()

    # -- inside each window: counts, spread, first and last finite values --------
    inner: dict[int, tuple[list[int], list[float], list[float], list[float], list[float]]] = {}
    with_inside = (inside_hi > inside_lo).nonzero()[0]
    if with_inside.size:
        lengths = (inside_hi - inside_lo)[with_inside]
        run_starts = np.zeros(with_inside.size, dtype=np.int64)
        np.cumsum(lengths[:-1], out=run_starts[1:])
        take = np.repeat(inside_lo[with_inside] - run_starts, lengths) + np.arange(
            int(lengths.sum())
        )
        ix, fx = x[:, take], finite[:, take]
        cnt = np.add.reduceat(fx, run_starts, axis=1, dtype=np.int64)
        top = np.maximum.reduceat(np.where(fx, ix, -np.inf), run_starts, axis=1)
        bottom = np.minimum.reduceat(np.where(fx, ix, np.inf), run_starts, axis=1)
        pos = np.arange(take.size)
        first_at = np.minimum.reduceat(np.where(fx, pos, take.size - 1), run_starts, axis=1)
        last_at = np.maximum.reduceat(np.where(fx, pos, 0), run_starts, axis=1)
        channel = np.arange(_N)[:, None]
        columns = zip(
            (cnt > 0).T.tolist(),
            (top - bottom).T.tolist(),
            top.T.tolist(),
            ix[channel, first_at].T.tolist(),
            ix[channel, last_at].T.tolist(),
            strict=True,
        )
        inner = dict(zip(with_inside.tolist(), columns, strict=True))

    out: list[WindowStats] = []
    lengths_ms = (ends - starts).astype(np.float64).tolist()
    for k, w in enumerate(windows):
        length = lengths_ms[k]
        spread: dict[str, float] = {}
        last: dict[str, float] = {}
        p_first: float | None = None
        p_last: float | None = None
        moisture_max: float | None = None
        got = inner.get(k)
        if got is not None:
            seen, spread_k, top_k, first_k, last_k = got
            spread = {name: v for name, v, c in zip(_CHANNELS, spread_k, seen, strict=True) if c}
            last = {name: v for name, v, c in zip(_CHANNELS, last_k, seen, strict=True) if c}
            if seen[_PRESSURE]:
                p_first, p_last = first_k[_PRESSURE], last_k[_PRESSURE]
            if seen[_MOISTURE]:
                moisture_max = top_k[_MOISTURE]
        out.append(
            WindowStats(
                boiler=w.boiler,
                gateway=w.gateway,
                site=w.site,
                start_ms=w.start_ms,
                end_ms=w.end_ms,
                samples=samples[k],
                quarantined=w.quarantined,
                heat_kwh=heat[k],
                it_kwh=it_kwh[k],
                aux_kwh=aux_kwh[k],
                coverage=min(1.0, heat_cov[k] / length),
                it_coverage=min(1.0, it_cov[k] / length),
                supply_temp_mean_c=mean_rows[0][k],
                return_temp_mean_c=mean_rows[1][k],
                flow_mean_lpm=mean_rows[2][k],
                supply_flow_mean_lpm=mean_rows[3][k],
                pressure_mean_bar=mean_rows[4][k],
                pressure_first_bar=p_first,
                pressure_last_bar=p_last,
                makeup_l=makeup_l[k],
                moisture_max_pct=moisture_max,
                outdoor_temp_mean_c=mean_rows[5][k],
                it_power_mean_kw=mean_rows[6][k],
                aux_power_mean_kw=mean_rows[7][k],
                spread=spread,
                last_values=last,
            )
        )
    return out


def _window_sums(
    terms: np.ndarray, width: np.ndarray, ok: np.ndarray, seg_off: np.ndarray, wanted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per window and row: the integral (value·hours) and the covered ms
    (exact only where `wanted`: rows with holes elsewhere are left unfixed).

    Window k owns segments seg_off[k]:seg_off[k+1]. Windows with the same number
    of segments are summed together, each (row, window) over its own contiguous
    run, so every sum is pairwise over the same elements in the same order as
    `integrate_many`'s; rows with holes sum only their own segments, as there.
    """
    rows, k_n = terms.shape[0], seg_off.size - 1
    integral_ms = np.zeros((rows, k_n))
    covered = np.zeros((rows, k_n))
    n_seg = np.diff(seg_off)
    for size in np.unique(n_seg[n_seg > 0]).tolist():
        ks = (n_seg == size).nonzero()[0]
        idx = seg_off[ks][:, None] + np.arange(size)  # (windows, size)
        # Each run contiguous in a C-ordered copy (fancy indexing may lay its
        # result out otherwise), so that numpy sums it pairwise, as there.
        runs = np.ascontiguousarray(terms[:, idx]).reshape(-1, size)
        integral_ms[:, ks] = runs.sum(axis=1).reshape(rows, ks.size)
        covered[:, ks] = np.ascontiguousarray(width[idx]).sum(axis=1)
    bad = np.zeros((rows, ok.shape[1] + 1), dtype=np.int64)
    np.cumsum(~ok, axis=1, out=bad[:, 1:])
    holes = bad[:, seg_off[1:]] - bad[:, seg_off[:-1]]
    for r, k in zip(*((holes > 0) & wanted).nonzero(), strict=True):
        p0, p1 = seg_off[k], seg_off[k + 1]
        keep = ok[r, p0:p1]
        integral_ms[r, k] = terms[r, p0:p1][keep].sum()
        covered[r, k] = np.where(keep, width[p0:p1], 0.0).sum()
    return integral_ms / MS_PER_HOUR, covered


def _summarise_one(w: WindowInput, max_gap_ms: float) -> WindowStats:
    cols = {name: w.values[i] for i, name in enumerate(_CHANNELS) if np.isfinite(w.values[i]).any()}
    return summarise(
        w.boiler,
        w.gateway,
        w.site,
        w.start_ms,
        w.end_ms,
        w.t_ms,
        cols,
        w.quarantined,
        max_gap_ms,
        meter_on_supply=w.meter_on_supply,
    )
