"""Frame building: samples are checked at the gateway, frames seal by size, by
event-time span and on demand, and the result is a valid, deterministic frame."""

from __future__ import annotations

import math

import pytest

from heatstream.ingest.errors import SampleError
from heatstream.ingest.frames import FrameBuilder, check_sample
from heatstream.schemas.serde import decode_raw, encode
from heatstream.schemas.telemetry import CHANNEL_NAMES

T0 = 1_700_000_000_000


def _builder(
    max_samples: int = 100, max_span_ms: int = 1000, max_bytes: int = 10**6
) -> FrameBuilder:
    return FrameBuilder(max_samples, max_span_ms, max_bytes)


def _seal(builder: FrameBuilder, seq: int = 0):
    return builder.seal(gateway="gw-01", site="site-01", seq=seq, ingest_time_ms=T0 + 5000)


def test_samples_become_a_long_form_frame() -> None:
    b = _builder()
    b.add("b1", T0 + 10, check_sample("b1", T0 + 10, {"supply_temp_c": 64.2, "flow_lpm": 10}))
    b.add("b2", T0 + 20, check_sample("b2", T0 + 20, {"supply_temp_c": 61.0}))
    b.add("b1", T0 + 30, check_sample("b1", T0 + 30, {"pressure_bar": 1.5, "flow_lpm": None}))
    frame = _seal(b, seq=7)
    assert frame is not None
    assert frame.event_id == "gw-01:7"
    assert frame.event_time_ms == T0 + 10
    assert frame.boilers == ["b1", "b2"]
    assert frame.boiler_idx == [0, 1, 0]
    assert frame.dt_ms == [0, 10, 20]
    # A channel a sample did not report is a missing reading (null), not an error.
    assert frame.supply_temp_c == [64.2, 61.0, None]
    assert frame.flow_lpm == [10.0, None, None]
    assert frame.pressure_bar == [None, None, 1.5]
    assert frame.channels_present == ("supply_temp_c", "flow_lpm", "pressure_bar")
    assert b.empty and _seal(b) is None


def test_seals_by_size() -> None:
    b = _builder(max_samples=3)
    for i in range(3):
        assert not b.full
        b.add("b1", T0 + i, {"flow_lpm": 1.0})
    assert b.full
    assert _seal(b).n_samples == 3
    assert not b.full


def test_seals_by_estimated_bytes_before_the_message_limit() -> None:
    b = _builder(max_samples=100_000, max_bytes=20_000)
    values = {name: 123.456789012345 for name in CHANNEL_NAMES}
    while not b.full:
        b.add("boiler-0001", T0 + b.n_samples % 1000, values)
    estimate = b.estimated_bytes
    frame = _seal(b)
    assert frame is not None and frame.n_samples < 100
    # The estimate is an upper bound of the real size, and not a wild one.
    assert len(encode(frame)) <= estimate < 1.5 * len(encode(frame))


def test_span_is_event_time_not_arrival() -> None:
    b = _builder(max_span_ms=1000)
    b.add("b1", T0 + 500, {"flow_lpm": 1.0})
    assert b.fits(T0 + 1499)
    assert not b.fits(T0 + 1500)  # t >= start + span: belongs to the next frame
    # A sample slightly older than the first one is fine while the span holds.
    assert b.fits(T0 + 1)
    b.add("b1", T0 + 1, {"flow_lpm": 2.0})
    assert not b.fits(T0 + 1001)
    frame = _seal(b)
    assert frame is not None
    assert frame.event_time_ms == T0 + 1 and frame.dt_ms == [499, 0]


def test_equal_input_gives_equal_bytes() -> None:
    def build() -> bytes:
        b = _builder()
        b.add("b2", T0, {"flow_lpm": 3.0, "supply_temp_c": 60.0})
        b.add("b1", T0 + 5, {"supply_temp_c": 61.0, "flow_lpm": 4.0})
        frame = _seal(b)
        assert frame is not None
        return encode(frame)

    first = build()
    assert first == build()
    assert decode_raw(first).event_id == "gw-01:0"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"supply_tmp_c": 64.2},
            ["boiler 'b-7'", "'supply_tmp_c'", "64.2", "not a telemetry channel"],
        ),
        ({"supply_temp_c": math.nan}, ["boiler 'b-7'", "supply_temp_c", "nan", "finite"]),
        ({"flow_lpm": math.inf}, ["boiler 'b-7'", "flow_lpm", "inf", "finite"]),
        ({"flow_lpm": "10.1"}, ["boiler 'b-7'", "flow_lpm", "'10.1'", "not a number"]),
        ({"flow_lpm": True}, ["boiler 'b-7'", "flow_lpm", "True", "not a number"]),
        ({}, ["boiler 'b-7'", "no channel"]),
    ],
)
def test_bad_samples_name_boiler_channel_and_value(values: dict, expected: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        check_sample("b-7", T0, values)
    assert isinstance(info.value, SampleError)
    for part in expected:
        assert part in str(info.value)


def test_bad_boiler_or_time_is_refused() -> None:
    with pytest.raises(SampleError, match="boiler id 'b 7'"):
        check_sample("b 7", T0, {"flow_lpm": 1.0})
    with pytest.raises(SampleError, match="seconds instead of milliseconds"):
        check_sample("b7", T0 // 1000, {"flow_lpm": 1.0})
    with pytest.raises(SampleError, match="not an integer"):
        check_sample("b7", float(T0), {"flow_lpm": 1.0})


def test_numbers_are_normalised_to_float() -> None:
    import numpy as np

    assert check_sample("b1", T0, {"flow_lpm": 10, "pressure_bar": np.float32(1.5)}) == {
        "flow_lpm": 10.0,
        "pressure_bar": 1.5,
    }
