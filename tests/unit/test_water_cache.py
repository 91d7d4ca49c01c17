"""The on-disk cache of the IAPWS-95 water table: computed once per machine, loaded
bit for bit without importing iapws or scipy, never trusted when damaged, never
needed (an unwritable cache directory only costs the computation)."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heatstream.settings import Settings, load_settings
from heatstream.streams import water

Table = tuple[np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def reference() -> Table:
    """The table as IAPWS-95 gives it, computed afresh (not through any cache)."""
    temps = water._grid()
    rho, cp = water._compute(temps, water.NOMINAL_PRESSURE_MPA)
    return temps, rho, cp


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "cache"
    monkeypatch.setenv(water.CACHE_DIR_ENV, str(directory))
    water._table.cache_clear()
    yield directory
    water._table.cache_clear()


@pytest.fixture
def cache_file(cache_dir: Path) -> Path:
    path = water.cache_path()
    assert path is not None
    assert path.parent == cache_dir
    return path


@pytest.fixture
def computations(monkeypatch: pytest.MonkeyPatch, reference: Table) -> list[float]:
    """Replace the IAPWS computation by the reference values; returns the list of the
    pressures it was asked for."""
    calls: list[float] = []

    def compute(temps: np.ndarray, pressure_mpa: float) -> tuple[np.ndarray, np.ndarray]:
        assert np.array_equal(temps, reference[0])
        calls.append(pressure_mpa)
        return reference[1].copy(), reference[2].copy()

    monkeypatch.setattr(water, "_compute", compute)
    return calls


def forbid_computing(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, computing the table, or importing iapws or scipy, fails."""

    def compute(temps: np.ndarray, pressure_mpa: float) -> tuple[np.ndarray, np.ndarray]:
        raise AssertionError("the table was computed instead of loaded")

    monkeypatch.setattr(water, "_compute", compute)
    # None in sys.modules makes `import iapws` (and `import scipy.anything`) raise ImportError.
    for name in [m for m in sys.modules if m.split(".")[0] in ("iapws", "scipy")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "iapws", None)
    monkeypatch.setitem(sys.modules, "scipy", None)


def assert_exactly(table: Table, expected: Table) -> None:
    for got, want in zip(table, expected, strict=True):
        assert got.dtype == np.float64
        assert np.array_equal(got, want)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_the_cache_holds_exactly_the_computed_table_and_is_loaded_without_iapws(
    cache_file: Path, reference: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not cache_file.exists()
    computed = water._table()  # cold: IAPWS-95 through iapws, written to the cache
    assert_exactly(computed, reference)
    assert cache_file.is_file()
    assert sorted(p.name for p in cache_file.parent.iterdir()) == [cache_file.name]

    water._table.cache_clear()  # as a new process would
    forbid_computing(monkeypatch)
    assert_exactly(water._table(), reference)
    assert float(water.density_kg_m3(20.0)) == pytest.approx(998.2, abs=0.06)


def test_the_file_name_holds_everything_the_values_depend_on(
    cache_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = cache_file.name
    assert name.endswith(".npz")
    for part in (
        "iapws95",
        f"iapws{version('iapws')}",
        f"scipy{version('scipy')}",
        f"numpy{version('numpy')}",
        "p0.2MPa",
        "t1.0_130.0_1.0C",
        f"f{water.CACHE_FORMAT}",
    ):
        assert part in name
    assert water.cache_path(0.3) != cache_file
    for constant in ("T_MIN_C", "T_MAX_C", "STEP_C", "CACHE_FORMAT"):
        with monkeypatch.context() as mp:
            mp.setattr(water, constant, getattr(water, constant) + 1)
            assert water.cache_path() != cache_file, constant
    assert water.cache_path() == cache_file


def test_other_pressures_have_their_own_file(
    cache_dir: Path, computations: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    water._table(0.2)
    water._table(0.3)
    assert computations == [0.2, 0.3]
    assert len(list(cache_dir.iterdir())) == 2
    water._table.cache_clear()
    forbid_computing(monkeypatch)
    water._table(0.3)


def _truncated(good: bytes) -> bytes:
    return good[: len(good) // 2]


def _bit_flipped(good: bytes) -> bytes:
    # The middle of the archive is inside rho: still a plausible table, refused only
    # because the archive's CRC no longer matches.
    data = bytearray(good)
    data[len(data) // 2] ^= 0x01
    return bytes(data)


CORRUPTIONS: dict[str, Callable[[Table], bytes]] = {
    "empty": lambda t: b"",
    "garbage": lambda t: b"not a numpy file at all\n" * 10,
    "truncated": lambda t: _truncated(npz_bytes(temps=t[0], rho=t[1], cp=t[2])),
    "one bit flipped": lambda t: _bit_flipped(npz_bytes(temps=t[0], rho=t[1], cp=t[2])),
    "plain npy": lambda t: _npy(np.stack(t)),
    "pickled objects": lambda t: _npy(np.array([object()] * 3, dtype=object), pickle=True),
    "missing array": lambda t: npz_bytes(temps=t[0], rho=t[1]),
    "wrong shape": lambda t: npz_bytes(temps=t[0][:-1], rho=t[1][:-1], cp=t[2][:-1]),
    "float32": lambda t: npz_bytes(temps=t[0], rho=t[1].astype(np.float32), cp=t[2]),
    "big-endian": lambda t: npz_bytes(temps=t[0], rho=t[1].astype(">f8"), cp=t[2]),
    "other grid": lambda t: npz_bytes(temps=t[0] + 0.5, rho=t[1], cp=t[2]),
    "nan": lambda t: npz_bytes(temps=t[0], rho=np.where(t[0] == 50.0, np.nan, t[1]), cp=t[2]),
    "infinite": lambda t: npz_bytes(temps=t[0], rho=t[1], cp=np.full_like(t[2], np.inf)),
    "zeros": lambda t: npz_bytes(temps=t[0], rho=np.zeros_like(t[1]), cp=t[2]),
}


def _npy(array: np.ndarray, pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=pickle)
    return buffer.getvalue()


@pytest.mark.parametrize("damage", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_a_damaged_cache_is_recomputed_and_replaced(
    damage: str,
    cache_file: Path,
    reference: Table,
    computations: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache_file.parent.mkdir(parents=True)
    cache_file.write_bytes(CORRUPTIONS[damage](reference))

    assert_exactly(water._table(), reference)
    assert computations == [water.NOMINAL_PRESSURE_MPA]
    assert sorted(p.name for p in cache_file.parent.iterdir()) == [cache_file.name]

    water._table.cache_clear()
    forbid_computing(monkeypatch)
    assert_exactly(water._table(), reference)  # the replacement is good


def test_a_directory_in_place_of_the_cache_file_is_survived(
    cache_file: Path, reference: Table, computations: list[float]
) -> None:
    cache_file.mkdir(parents=True)  # unreadable as a file, and os.replace onto it fails
    assert_exactly(water._table(), reference)
    assert computations == [water.NOMINAL_PRESSURE_MPA]
    assert [p.name for p in cache_file.parent.iterdir()] == [cache_file.name]  # no temp left


def test_an_unusable_cache_dir_means_computing_in_memory(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reference: Table,
    computations: list[float],
) -> None:
    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("not a directory")
    # A path under a regular file cannot be created, even by root (unlike a chmod).
    monkeypatch.setenv(water.CACHE_DIR_ENV, str(blocker / "heatstream"))
    water._table.cache_clear()
    try:
        assert_exactly(water._table(), reference)
        water._table.cache_clear()
        assert_exactly(water._table(), reference)
    finally:
        water._table.cache_clear()
    assert computations == [water.NOMINAL_PRESSURE_MPA] * 2  # nothing was kept
    assert blocker.read_text() == "not a directory"


def test_a_read_only_cache_dir_means_computing_in_memory(
    cache_dir: Path,
    reference: Table,
    computations: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a read-only directory answers (simulated: root could write there anyway).
    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(cache_dir))

    cache_dir.mkdir()
    monkeypatch.setattr(water.tempfile, "mkstemp", denied)
    assert_exactly(water._table(), reference)
    assert computations == [water.NOMINAL_PRESSURE_MPA]
    assert list(cache_dir.iterdir()) == []


def test_a_failed_write_leaves_neither_a_file_nor_a_temporary(
    cache_file: Path, reference: Table, computations: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(file: object, **arrays: np.ndarray) -> None:
        assert hasattr(file, "write")
        file.write(b"PK\x03\x04 half an archive")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(water.np, "savez", full_disk)
    assert_exactly(water._table(), reference)
    assert list(cache_file.parent.iterdir()) == []


def test_the_default_location_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(water.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert water.cache_dir() == tmp_path / "xdg" / "heatstream"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert water.cache_dir() == tmp_path / "home" / ".cache" / "heatstream"
    monkeypatch.setenv(water.CACHE_DIR_ENV, str(tmp_path / "mine"))
    assert water.cache_dir() == tmp_path / "mine"


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_damaged_file_is_never_taken_for_the_table(reference: Table, data: st.DataObject) -> None:
    # One byte changed anywhere in a good file: the file is refused, or (a byte nothing
    # depends on, such as a timestamp in the archive) it is still exactly the table.
    damaged = bytearray(npz_bytes(temps=reference[0], rho=reference[1], cp=reference[2]))
    at = data.draw(st.integers(0, len(damaged) - 1), label="offset")
    damaged[at] ^= data.draw(st.integers(1, 255), label="xor")
    loaded = water._decode(bytes(damaged), reference[0])
    assert loaded is None or all(
        np.array_equal(a, b) for a, b in zip(loaded, reference, strict=True)
    )


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_are_refused_without_an_error(reference: Table, data: bytes) -> None:
    assert water._decode(data, reference[0]) is None


def test_the_variable_is_not_refused_as_an_unknown_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("HEATSTREAM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(water.CACHE_DIR_ENV, str(tmp_path))
    assert load_settings() == Settings()  # extra="forbid" would refuse an unknown setting
