"""Water properties for heat metering: density and isobaric heat capacity.

Values come from IAPWS-95, the scientific formulation (the `iapws` package),
tabulated every 1 °C over the liquid range a heating loop sees, and
interpolated vectorially with numpy, so a frame of thousands of samples costs
two `np.interp` calls. IAPWS-95 rather than the industrial IF97: IF97's c_p is
0.05 % low at 45-65 °C, where every heating loop lives. The table is at the
loop's nominal pressure; between 1 and 4 bar the properties change by less than
0.02 %, far below flow-meter accuracy. Linear interpolation over 1 °C steps is
exact to 1e-5 relative.

Tabulating costs about 1.2 s of CPU (importing iapws and scipy, then one
`fsolve` per point), too much to pay in every process (a replay must finish in
seconds), so the table is computed once per machine and kept on disk: a small
`.npz` in `HEATSTREAM_CACHE_DIR`, else `$XDG_CACHE_HOME/heatstream`, else
`~/.cache/heatstream`. Its name holds everything the values depend on (the
formulation, the versions of iapws, scipy and numpy, the pressure, the grid, the
file format), so an upgrade or a new grid simply makes a new file. Loading it
imports neither iapws nor scipy. A file that does not hold exactly the expected
table (unreadable, truncated, bad CRC, wrong shape, dtype, grid or values) is
recomputed and replaced; a cache directory that cannot be written only means
computing in memory, as before.
"""

from __future__ import annotations

import io
import logging
import math
import os
import tempfile
from bisect import bisect_right
from contextlib import suppress
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np

T_MIN_C = 1.0
T_MAX_C = 130.0
STEP_C = 1.0
NOMINAL_PRESSURE_MPA = 0.2  # 2 bar absolute
KELVIN = 273.15

#: Environment variable naming the directory of the water-property table cache.
CACHE_DIR_ENV = "HEATSTREAM_CACHE_DIR"
#: Bumped whenever the layout of the cache file changes, so old files are never misread.
CACHE_FORMAT = 1
#: The table is about 3 KB; anything much larger is not ours and is not read.
_MAX_CACHE_BYTES = 1 << 20
#: Distributions whose versions decide the numbers (iapws' equations, scipy's fsolve).
_VERSIONED = ("iapws", "scipy", "numpy")
_ARRAYS = ("temps", "rho", "cp")

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _table(pressure_mpa: float = NOMINAL_PRESSURE_MPA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(temps °C, ρ kg/m³, c_p kJ/(kg·K)) at `pressure_mpa`, from the disk cache if valid."""
    temps = _grid()
    path = cache_path(pressure_mpa)
    if path is not None:
        cached = _load(path, temps)
        if cached is not None:
            return cached
    rho, cp = _compute(temps, pressure_mpa)
    if path is not None:
        _store(path, (temps, rho, cp))
    return temps, rho, cp


def _grid() -> np.ndarray:
    return np.arange(T_MIN_C, T_MAX_C + STEP_C / 2, STEP_C)


def _compute(temps: np.ndarray, pressure_mpa: float) -> tuple[np.ndarray, np.ndarray]:
    from iapws import IAPWS95  # imports scipy: paid only when the table is not on disk

    rho = np.empty_like(temps)
    cp = np.empty_like(temps)
    for i, t in enumerate(temps):
        state = IAPWS95(T=float(t) + KELVIN, P=pressure_mpa)
        rho[i] = state.rho
        cp[i] = state.cp
    return rho, cp


# -- the disk cache ----------------------------------------------------------------


def cache_dir() -> Path | None:
    """Where the table is kept: `$HEATSTREAM_CACHE_DIR`, else `$XDG_CACHE_HOME/heatstream`,
    else `~/.cache/heatstream`; None when there is no home directory to put it in."""
    # Read here, not from Settings: this is a pure module called deep in the core
    # (detectors, simulator, replay, report) where no Settings object is at hand, and the
    # location of a re-derivable cache changes no result, only whether it is reused.
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative value is ignored
        return Path(xdg) / "heatstream"
    try:
        return Path.home() / ".cache" / "heatstream"
    except RuntimeError:  # no HOME and no passwd entry (some containers)
        return None


def cache_path(pressure_mpa: float = NOMINAL_PRESSURE_MPA) -> Path | None:
    """The cache file of the table at `pressure_mpa`; None when it cannot be named."""
    directory = cache_dir()
    if directory is None:
        return None
    try:
        # Distribution metadata only: neither iapws nor scipy is imported to read it.
        versions = "-".join(f"{name}{metadata.version(name)}" for name in _VERSIONED)
    except metadata.PackageNotFoundError:
        return None
    grid = f"t{T_MIN_C!r}_{T_MAX_C!r}_{STEP_C!r}C"
    name = f"water-iapws95-{versions}-p{float(pressure_mpa)!r}MPa-{grid}-f{CACHE_FORMAT}.npz"
    return directory / name


def _load(path: Path, temps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The table in `path` if it is exactly what `_compute` would give on `temps`, else None."""
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_CACHE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.debug("water table cache %s unreadable, recomputing: %s", path, exc)
        return None
    table = _decode(data, temps)
    if table is None:
        log.debug("water table cache %s damaged or not the expected table, recomputing", path)
    return table


def _decode(data: bytes, temps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    if len(data) > _MAX_CACHE_BYTES:
        return None
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return None
        with loaded:
            # Reading a member to its end checks the archive's CRC-32 of it.
            temps_c, rho, cp = (loaded[key] for key in _ARRAYS)
    except Exception:
        # Whatever is wrong with a cache file (numpy and zipfile raise a dozen kinds of
        # error on damaged input), the remedy is the same and loses nothing: recompute.
        return None
    if not _is_table(temps, temps_c, rho, cp):
        return None
    return temps, rho, cp


def _is_table(temps: np.ndarray, temps_c: np.ndarray, rho: np.ndarray, cp: np.ndarray) -> bool:
    arrays = (temps_c, rho, cp)
    return (
        all(a.dtype == np.float64 and a.shape == temps.shape for a in arrays)
        and np.array_equal(temps_c, temps)
        and bool(np.isfinite(rho).all() and np.isfinite(cp).all())
        and bool((rho > 0).all() and (cp > 0).all())
    )


def _store(path: Path, table: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Write the table to `path` atomically: readers see the old file, none, or all of it."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            temps, rho, cp = table
            np.savez(f, temps=temps, rho=rho, cp=cp)  # the names in _ARRAYS
            f.flush()
            os.fsync(f.fileno())
        # Physical constants, no secret: readable by other accounts sharing a cache dir.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        log.debug("water table not cached in %s (computed in memory): %s", path.parent, exc)
    finally:
        if tmp is not None:
            with suppress(OSError):
                os.unlink(tmp)


# -- properties ----------------------------------------------------------------------


def density_kg_m3(temp_c: np.ndarray | float) -> np.ndarray:
    """ρ(T) of liquid water in kg/m³ (temperatures clipped to the table)."""
    temps, rho, _ = _table()
    return np.interp(temp_c, temps, rho)


def heat_capacity_kj_kgk(temp_c: np.ndarray | float) -> np.ndarray:
    """c_p(T) of liquid water in kJ/(kg·K)."""
    temps, _, cp = _table()
    return np.interp(temp_c, temps, cp)


def density_at(temp_c: float) -> float:
    """`density_kg_m3` of one temperature, equal to it bit for bit, for the
    detectors' per-window arithmetic: ~0.3 us instead of numpy's ~2.5 us a call."""
    temps, rho, _ = _scalar_table()
    return _interp(temp_c, temps, rho)


def heat_capacity_at(temp_c: float) -> float:
    """`heat_capacity_kj_kgk` of one temperature, equal to it bit for bit."""
    temps, _, cp = _scalar_table()
    return _interp(temp_c, temps, cp)


@lru_cache(maxsize=1)
def _scalar_table() -> tuple[list[float], list[float], list[float]]:
    temps, rho, cp = _table()
    return temps.tolist(), rho.tolist(), cp.tolist()


def _interp(x: float, xp: list[float], fp: list[float]) -> float:
    """np.interp(x, xp, fp) of one float, by numpy's own arithmetic: the interval
    found by binary search, the ends held, the slope and the NaN fallback as
    there (numpy/_core/src/multiarray/compiled_base.c, arr_interp)."""
    if math.isnan(x):
        return math.nan
    j = bisect_right(xp, x) - 1
    if j < 0:
        return fp[0]
    if j >= len(xp) - 1 or xp[j] == x:
        return fp[j]
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    result = slope * (x - xp[j]) + fp[j]
    if math.isnan(result):
        result = slope * (x - xp[j + 1]) + fp[j + 1]
        if math.isnan(result) and fp[j] == fp[j + 1]:
            result = fp[j]
    return result


def thermal_power_kw(
    supply_c: np.ndarray,
    return_c: np.ndarray,
    flow_lpm: np.ndarray,
    metered_at_c: np.ndarray | None = None,
) -> np.ndarray:
    """P_th = ρ(T_meter) · V̇ · c_p(T_mean) · (T_supply − T_return), in kW.

    `metered_at_c` is the water temperature at the flow meter (the return side
    by default, as in most heat meters); c_p is taken at the mean of supply and
    return, which is exact to well under 0.1 % over a 20 K difference.
    """
    supply_c = np.asarray(supply_c, dtype=np.float64)
    return_c = np.asarray(return_c, dtype=np.float64)
    at = return_c if metered_at_c is None else np.asarray(metered_at_c, dtype=np.float64)
    mass_flow_kg_s = density_kg_m3(at) * np.asarray(flow_lpm, dtype=np.float64) / 60_000.0
    cp = heat_capacity_kj_kgk((supply_c + return_c) / 2.0)
    return mass_flow_kg_s * cp * (supply_c - return_c)
