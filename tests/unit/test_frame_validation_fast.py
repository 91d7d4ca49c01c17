"""The frame's whole-list validation fast path says exactly what the value-by-value loop said.

`TelemetryFrame._check_structure` checks whole lists in C and walks the values
only when something fails. A reference copy of the loop it replaced is kept
here, as are the old `columns` and `range_violations` and the old boiler
ownership loop of `decode_and_authorise`: for random frames, valid or with
injected defects, the outcome and the message must be those of the reference.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError, model_validator

from heatstream.inventory import synthetic_inventory
from heatstream.schemas.envelope import ID_PATTERN, is_identifier
from heatstream.schemas.errors import EventError
from heatstream.schemas.serde import format_validation_error
from heatstream.schemas.telemetry import (
    CHANNEL_BY_NAME,
    CHANNEL_NAMES,
    MAX_SPAN_MS,
    RangeViolation,
    TelemetryFrame,
)
from heatstream.streams.intake import decode_and_authorise

T0 = 1_768_435_200_000


class _ReferenceFrame(TelemetryFrame):
    """TelemetryFrame with the structure check as it was before the fast path."""

    @model_validator(mode="after")
    def _check_structure(self) -> _ReferenceFrame:
        n = len(self.dt_ms)
        if len(self.boiler_idx) != n:
            raise ValueError(f"boiler_idx has {len(self.boiler_idx)} values, dt_ms has {n}")
        if len(set(self.boilers)) != len(self.boilers):
            dupes = sorted({b for b in self.boilers if self.boilers.count(b) > 1})
            raise ValueError(f"boilers lists {reprlib.repr(dupes[0])} more than once")
        for i, boiler in enumerate(self.boilers):
            if not is_identifier(boiler):
                raise ValueError(
                    f"boilers[{i}] = {reprlib.repr(boiler)} is not a valid id ({ID_PATTERN})"
                )
        n_boilers = len(self.boilers)
        for i, b in enumerate(self.boiler_idx):
            if not 0 <= b < n_boilers:
                raise ValueError(f"boiler_idx[{i}] = {b} outside [0, {n_boilers - 1}]")
        for i, dt in enumerate(self.dt_ms):
            if not 0 <= dt <= MAX_SPAN_MS:
                raise ValueError(f"dt_ms[{i}] = {dt} outside [0, {MAX_SPAN_MS}]")
        present = 0
        for name in CHANNEL_NAMES:
            values = getattr(self, name)
            if values is None:
                continue
            present += 1
            if len(values) != n:
                raise ValueError(f"{name} has {len(values)} values, dt_ms has {n}")
            for i, v in enumerate(values):
                if v is not None and not math.isfinite(v):
                    raise ValueError(f"{name}[{i}] = {v!r} is not a finite number")
        if present == 0:
            raise ValueError("frame carries no channel")
        return self


def _reference_columns(frame: TelemetryFrame) -> dict[str, np.ndarray]:
    return {
        name: np.array(
            [math.nan if v is None else v for v in getattr(frame, name)], dtype=np.float64
        )
        for name in frame.channels_present
    }


def _reference_range_violations(frame: TelemetryFrame) -> list[RangeViolation]:
    found: list[RangeViolation] = []
    t_ms = np.asarray(frame.dt_ms, dtype=np.int64) + frame.event_time_ms
    for name, values in _reference_columns(frame).items():
        spec = CHANNEL_BY_NAME[name]
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero((values < spec.low) | (values > spec.high))
        for i in bad.tolist():
            found.append(
                RangeViolation(
                    field=name,
                    index=i,
                    value=float(values[i]),
                    low=spec.low,
                    high=spec.high,
                    boiler=frame.boilers[frame.boiler_idx[i]],
                    t_ms=int(t_ms[i]),
                )
            )
    return found


# -- frames --------------------------------------------------------------------------

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
# Not ids, or ids only by a quirk of `$` (a final "\n" is accepted): both must be judged alike.
odd_ids = st.sampled_from(
    [
        "",
        "-x",
        ".x",
        "a" * 64,
        "a" * 65,
        "a b",
        "a,b",
        "a,",
        ",a",
        "b\n",
        "b\n\n",
        "\nb",
        "é",
        "x" * 500,
    ]
) | st.text(max_size=8)
# Readings as JSON brings them (floats, ints) and as Python callers may (bools: lax only).
readings = (
    st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
    | st.integers(-1000, 1000)
    | st.just(1e308)  # finite, but a sum of two overflows: the walk must then pass
)
non_finite = st.sampled_from([math.inf, -math.inf, math.nan])
DEFECTS = (
    "none",
    "boiler_idx_range",
    "boiler_idx_huge",
    "dt_negative",
    "dt_too_large",
    "channel_length",
    "non_finite",
    "duplicate_boiler",
    "bad_id",
    "idx_length",
    "no_channel",
    "bool_reading",
)


@st.composite
def frame_data(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    boilers = draw(st.lists(ids, min_size=1, max_size=6, unique=True))
    n = draw(st.integers(min_value=1, max_value=40))
    channels = sorted(draw(st.sets(st.sampled_from(CHANNEL_NAMES), min_size=1)))
    data: dict[str, Any] = {
        "gateway": "gw-01",
        "seq": 7,
        "site": "site-01",
        "event_time_ms": T0,
        "ingest_time_ms": T0 + 150,
        "boilers": boilers,
        "boiler_idx": draw(st.lists(st.integers(0, len(boilers) - 1), min_size=n, max_size=n)),
        "dt_ms": draw(st.lists(st.integers(0, MAX_SPAN_MS), min_size=n, max_size=n)),
    }
    for name in channels:
        data[name] = draw(st.lists(st.none() | readings, min_size=n, max_size=n))
    # Mostly one defect (or "none"), sometimes several: the first in check order must be named.
    defects = draw(st.lists(st.sampled_from(DEFECTS), min_size=1, max_size=3))
    for defect in defects:
        _inject(draw, data, defect)
    return data, defects


def _inject(draw: st.DrawFn, data: dict[str, Any], defect: str) -> None:
    n_boilers = len(data["boilers"])
    channels = [name for name in CHANNEL_NAMES if name in data]

    def at(values: list[Any]) -> int:  # a position in values (earlier defects may resize it)
        return draw(st.integers(0, len(values) - 1))

    if defect == "boiler_idx_range":
        idx = data["boiler_idx"]
        idx[at(idx)] = draw(st.integers(-3, -1) | st.integers(n_boilers, n_boilers + 3))
    elif defect == "boiler_idx_huge":
        idx = data["boiler_idx"]
        idx[at(idx)] = draw(st.sampled_from([2**63, 2**70, -(2**70)]))
    elif defect == "dt_negative":
        data["dt_ms"][at(data["dt_ms"])] = draw(st.integers(-(2**40), -1))
    elif defect == "dt_too_large":
        data["dt_ms"][at(data["dt_ms"])] = draw(st.integers(MAX_SPAN_MS + 1, 2**66))
    elif defect == "channel_length" and channels:
        values = data[draw(st.sampled_from(channels))]
        if len(values) > 1 and draw(st.booleans()):
            values.pop()
        else:
            values.append(draw(st.none() | readings))
    elif defect == "non_finite" and channels:
        values = data[draw(st.sampled_from(channels))]
        for _ in range(draw(st.integers(1, 3))):
            values[at(values)] = draw(non_finite)
    elif defect == "duplicate_boiler":
        data["boilers"].append(draw(st.sampled_from(data["boilers"])))
    elif defect == "bad_id":
        data["boilers"][at(data["boilers"])] = draw(odd_ids)
    elif defect == "idx_length":
        data["boiler_idx"] = data["boiler_idx"][:-1] or [0, 0]
    elif defect == "no_channel":
        for name in channels:
            del data[name]
    elif defect == "bool_reading" and channels:
        values = data[draw(st.sampled_from(channels))]
        values[at(values)] = draw(st.booleans())


def _outcome(model: type[TelemetryFrame], data: dict[str, Any], strict: bool) -> Any:
    try:
        frame = model.model_validate(data, strict=strict)
    except ValidationError as exc:
        errors = [(e["type"], e["loc"], e["msg"]) for e in exc.errors(include_url=False)]
        return "rejected", errors, format_validation_error(exc)
    return "accepted", frame.model_dump()


@settings(max_examples=300, deadline=None)
@given(frame_data(), st.booleans())
def test_validation_outcome_and_message_match_the_value_by_value_loop(
    case: tuple[dict[str, Any], list[str]], strict: bool
) -> None:
    data, _ = case
    expected = _outcome(_ReferenceFrame, data, strict)
    assert _outcome(TelemetryFrame, data, strict) == expected


@settings(max_examples=200, deadline=None)
@given(frame_data())
def test_helpers_match_their_reference(case: tuple[dict[str, Any], list[str]]) -> None:
    data, _ = case
    try:
        frame = TelemetryFrame.model_validate(data)
    except ValidationError:
        return
    columns = frame.columns
    expected = _reference_columns(frame)
    assert list(columns) == list(expected)
    for name, column in expected.items():
        assert columns[name].dtype == column.dtype
        assert np.array_equal(columns[name], column, equal_nan=True)
    assert frame.t_ms.dtype == np.int64
    assert frame.t_ms.tolist() == [frame.event_time_ms + dt for dt in frame.dt_ms]
    assert frame.range_violations() == _reference_range_violations(frame)
    assert frame.matrix.shape == (len(expected), frame.n_samples)
    assert not frame.matrix.flags.writeable
    for row, column in zip(frame.matrix, expected.values(), strict=True):
        assert np.array_equal(row, column, equal_nan=True)


@settings(max_examples=100, deadline=None)
@given(frame_data(), st.data())
def test_frames_are_equal_by_their_fields_whatever_they_cached(
    case: tuple[dict[str, Any], list[str]], data: st.DataObject
) -> None:
    fields, _ = case
    try:
        frame = TelemetryFrame.model_validate(fields)
    except ValidationError:
        return
    frame.range_violations()  # caches arrays on one side only
    assert frame == TelemetryFrame.model_validate(fields)
    name = data.draw(st.sampled_from(frame.channels_present))
    changed = [*fields[name]]
    i = data.draw(st.integers(0, len(changed) - 1))
    changed[i] = 5.5 if changed[i] != 5.5 else 6.5
    other = TelemetryFrame.model_validate({**fields, name: changed})
    assert frame != other
    assert other != frame


@pytest.mark.parametrize(
    ("boilers", "accepted"),
    [
        (["b-1", "b-2"], True),
        (["b-1", "b\n"], True),  # `$` matches before a final newline: `is_identifier` agrees
        (["b-1", "b\n\n"], False),
        (["b-1", "b,2"], False),
        (["b-1,b-2"], False),  # a "," must not split one id into two valid ones
        (["b-1", ""], False),
        (["a" * 64], True),
        (["a" * 65], False),
    ],
)
def test_boiler_ids_are_judged_one_by_one(boilers: list[str], accepted: bool) -> None:
    assert _ids_accepted(boilers) is accepted


def _ids_accepted(boilers: list[str]) -> bool:
    """Whether a one-sample frame naming `boilers` is accepted, checked to be judged (and
    explained) exactly as the reference judges it."""
    data = {
        "gateway": "gw-01",
        "seq": 7,
        "site": "site-01",
        "event_time_ms": T0,
        "ingest_time_ms": T0,
        "boilers": boilers,
        "boiler_idx": [0],
        "dt_ms": [0],
        "flow_lpm": [1.0],
    }
    outcome = _outcome(TelemetryFrame, data, True)
    assert outcome == _outcome(_ReferenceFrame, data, True)
    return bool(outcome[0] == "accepted")


def test_a_sum_that_overflows_is_not_taken_for_an_infinite_reading() -> None:
    data = {
        "gateway": "gw-01",
        "seq": 7,
        "site": "site-01",
        "event_time_ms": T0,
        "ingest_time_ms": T0,
        "boilers": ["b-1"],
        "boiler_idx": [0, 0],
        "dt_ms": [0, 1],
        "flow_lpm": [1e308, 1e308],
    }
    assert TelemetryFrame.model_validate(data).flow_lpm == [1e308, 1e308]


# -- boiler ownership in decode_and_authorise -----------------------------------------

INVENTORY = synthetic_inventory(8, 2)  # gw-01 owns the odd-numbered boilers


def _reference_ownership(boilers: list[str]) -> str | None:
    gw = INVENTORY.gateway_by_id["gw-01"]
    for boiler in boilers:
        owner = INVENTORY.owner_of.get(boiler)
        if owner != gw.id:
            whose = f"owned by gateway {owner!r}" if owner else "not in the inventory"
            return f"gateway {gw.id!r} published for boiler = {boiler!r}, which is {whose}"
    return None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from([b.id for b in INVENTORY.boilers] + ["boiler-0099", "stranger"]),
        min_size=1,
        max_size=8,
        unique=True,
    )
)
def test_ownership_message_matches_the_loop(boilers: list[str]) -> None:
    raw = orjson.dumps(
        {
            "schema_name": "telemetry.frame",
            "schema_version": 2,
            "gateway": "gw-01",
            "seq": 1,
            "site": "site-01",
            "event_time_ms": T0,
            "ingest_time_ms": T0,
            "boilers": boilers,
            "boiler_idx": list(range(len(boilers))),
            "dt_ms": [0] * len(boilers),
            "flow_lpm": [1.0] * len(boilers),
        }
    )
    expected = _reference_ownership(boilers)
    if expected is None:
        assert decode_and_authorise(raw, b"gw-01", INVENTORY).boilers == boilers
    else:
        with pytest.raises(EventError) as info:
            decode_and_authorise(raw, b"gw-01", INVENTORY)
        assert str(info.value) == expected
        assert info.value.reason == "unauthorised"


@pytest.mark.parametrize("bad", [None, "b,x", "b\n\n"])
def test_long_boiler_lists_are_judged_too(bad: str | None) -> None:
    # Over 16 KiB of ids: matched without the cache of recent boiler lists.
    boilers = [f"boiler-{i:05d}" for i in range(2_000)]
    if bad is not None:
        boilers[1_234] = bad
    assert len(",".join(boilers)) > 16_384
    assert _ids_accepted(boilers) is (bad is None)
