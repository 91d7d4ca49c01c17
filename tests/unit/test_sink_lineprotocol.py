"""Line protocol encoder: exact lines, refusals, and a parse-back property."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heatstream.sinks.lineprotocol import (
    LineProtocolError,
    Point,
    encode_point,
    encode_points,
    precision_for,
)

T_MS = 1_768_435_200_000


def test_a_plain_point() -> None:
    p = Point.at_ms("heat_window", {"site": "s1", "boiler": "b1"}, {"heat_kwh": 1.5, "n": 3}, T_MS)
    assert encode_point(p) == b"heat_window,boiler=b1,site=s1 heat_kwh=1.5,n=3i 1768435200000"


def test_types_and_precision() -> None:
    fields = {"f": 0.1, "i": -7, "t": True, "b": False, "s": 'a "q" \\ z', "big": 1e16}
    line = encode_point(Point.at_ms("m", {}, fields, T_MS), "ns")
    assert line == (
        b'm f=0.1,i=-7i,t=true,b=false,s="a \\"q\\" \\\\ z",big=1e+16 1768435200000000000'
    )


def test_escaping_of_names_and_tags() -> None:
    p = Point.at_ms("my m,x", {"a b": "c,d=e"}, {"f k=,": 1.0}, 0)
    assert encode_point(p) == b"my\\ m\\,x,a\\ b=c\\,d\\=e f\\ k\\=\\,=1.0 0"


def test_floats_keep_full_precision() -> None:
    value = 0.1 + 0.2
    line = encode_point(Point.at_ms("m", {}, {"x": value}, 0))
    assert line is not None
    assert float(line.split(b"=")[1].split(b" ")[0]) == value


def test_non_finite_fields_are_left_out() -> None:
    p = Point.at_ms("m", {}, {"a": math.nan, "b": 2.0, "c": math.inf}, 0)
    assert encode_point(p) == b"m b=2.0 0"
    assert encode_point(Point.at_ms("m", {}, {"a": math.nan}, 0)) is None
    assert encode_points([Point.at_ms("m", {}, {"a": -math.inf}, 0)]) == []


@pytest.mark.parametrize(
    "point",
    [
        Point.at_ms("", {}, {"a": 1}, 0),
        Point.at_ms("#m", {}, {"a": 1}, 0),
        Point.at_ms("m", {"t": ""}, {"a": 1}, 0),
        Point.at_ms("m", {"t": "a\\"}, {"a": 1}, 0),
        Point.at_ms("m\nx", {}, {"a": 1}, 0),
        Point.at_ms("m", {}, {"time": 1}, 0),
        Point.at_ms("m", {}, {"a": 2**63}, 0),
        Point.at_ms("m", {}, {"a": "two\nlines"}, 0),
        Point.at_ms("m", {}, {"a": [1]}, 0),
        Point.at_ms(["m"], {}, {"a": 1}, 0),  # type: ignore[arg-type]
        Point.at_ms("m", {"t": ["x"]}, {"a": 1}, 0),  # type: ignore[dict-item]
        Point.at_ms("m", {("t",): "x"}, {"a": 1}, 0),  # type: ignore[dict-item]
        Point.at_ms("m", {}, {("a",): 1.0}, 0),  # type: ignore[dict-item]
        Point("m", {}, {"a": 1}, 1),  # not a whole millisecond
    ],
)
def test_what_cannot_be_encoded_is_refused(point: Point) -> None:
    # Twice: names are checked once and cached, errors must not be.
    for _ in range(2):
        with pytest.raises(LineProtocolError):
            encode_point(point)


def test_precision_is_ms_unless_a_point_needs_ns() -> None:
    a = Point.at_ms("m", {}, {"a": 1}, T_MS)
    b = Point("m", {}, {"a": 1}, T_MS * 1_000_000 + 7)
    assert precision_for([a]) == "ms"
    assert precision_for([a, b]) == "ns"
    assert encode_points([a, b]) == [b"m a=1i 1768435200000000000", b"m a=1i 1768435200000000007"]


# -- parse back ------------------------------------------------------------


def _scan(text: str, i: int, stops: str) -> tuple[str, int]:
    out = []
    while i < len(text) and text[i] not in stops:
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out), i


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, object], int]:
    """A small line-protocol reader with InfluxDB's escaping rules."""
    measurement, i = _scan(line, 0, ", ")
    tags: dict[str, str] = {}
    while line[i] == ",":
        key, i = _scan(line, i + 1, "=")
        tags[key], i = _scan(line, i + 1, ", ")
    assert line[i] == " "
    fields: dict[str, object] = {}
    while True:
        key, i = _scan(line, i + 1, "=")
        i += 1
        if line[i] == '"':
            i += 1
            chars = []
            while line[i] != '"':
                if line[i] == "\\" and line[i + 1] in '"\\':
                    i += 1
                chars.append(line[i])
                i += 1
            fields[key] = "".join(chars)
            i += 1
        else:
            raw, i = _scan(line, i, ", ")
            if raw in ("true", "false"):
                fields[key] = raw == "true"
            elif raw.endswith("i"):
                fields[key] = int(raw[:-1])
            else:
                fields[key] = float(raw)
        if line[i] == " ":
            break
    return measurement, tags, fields, int(line[i + 1 :])


_name = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\\\n\r"), min_size=1
).filter(lambda s: s != "time" and not s.startswith("#"))
_value = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\n\r")),
)


@given(
    measurement=_name,
    tags=st.dictionaries(_name, _name, max_size=4),
    fields=st.dictionaries(_name, _value, min_size=1, max_size=5),
    time_ms=st.integers(0, 4_102_444_800_000),
)
def test_encoded_lines_parse_back(
    measurement: str, tags: dict[str, str], fields: dict[str, object], time_ms: int
) -> None:
    point = Point.at_ms(measurement, tags, fields, time_ms)
    line = encode_point(point)
    finite = {
        k: v for k, v in fields.items() if not (isinstance(v, float) and not math.isfinite(v))
    }
    if not finite:
        assert line is None
        return
    assert line is not None
    assert b"\n" not in line
    assert parse_line(line.decode("utf-8")) == (measurement, tags, finite, time_ms)
