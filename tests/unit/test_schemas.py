"""Event contracts: round trips, validation messages, upcasting, registry."""

from __future__ import annotations

import base64
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heatstream.schemas.compute import JobStarted, PowerCapSet
from heatstream.schemas.deadletter import DeadLetter
from heatstream.schemas.derived import (
    DataQualityIssue,
    EfficiencyAnomaly,
    HeatWindow,
    LeakSuspected,
)
from heatstream.schemas.errors import DecodeError, SchemaValidationError, UnknownSchemaError
from heatstream.schemas.export import json_schemas
from heatstream.schemas.registry import RAW_VERSIONS, all_models
from heatstream.schemas.serde import decode_derived, decode_raw, encode
from heatstream.schemas.telemetry import CHANNEL_NAMES, M3H_TO_LPM, MAX_SPAN_MS, TelemetryFrame

T0 = 1_768_435_200_000  # 2026-01-15T00:00:00Z

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def frames(draw: st.DrawFn) -> TelemetryFrame:
    boilers = draw(st.lists(ids, min_size=1, max_size=5, unique=True))
    n = draw(st.integers(min_value=1, max_value=40))
    channels = draw(st.sets(st.sampled_from(CHANNEL_NAMES), min_size=1))
    gateway = draw(ids)
    seq = draw(st.integers(min_value=0, max_value=2**53))
    data = {
        "gateway": gateway,
        "seq": seq,
        "site": draw(ids),
        "event_time_ms": T0 + draw(st.integers(0, 10**10)),
        "ingest_time_ms": T0 + draw(st.integers(0, 10**10)),
        "boilers": boilers,
        "boiler_idx": draw(st.lists(st.integers(0, len(boilers) - 1), min_size=n, max_size=n)),
        "dt_ms": draw(st.lists(st.integers(0, 3_600_000), min_size=n, max_size=n)),
    }
    for name in channels:
        data[name] = draw(st.lists(st.none() | finite, min_size=n, max_size=n))
    watermark = draw(st.none() | st.integers(0, MAX_SPAN_MS))
    if watermark is not None:
        data["watermark_ms"] = data["event_time_ms"] + watermark
    return TelemetryFrame.model_validate(data)


def frame(**changes: object) -> TelemetryFrame:
    data: dict[str, object] = {
        "gateway": "gw-01",
        "seq": 7,
        "site": "site-01",
        "event_time_ms": T0,
        "ingest_time_ms": T0 + 150,
        "boilers": ["boiler-0001", "boiler-0002"],
        "boiler_idx": [0, 1, 0],
        "dt_ms": [0, 10, 1000],
        "supply_temp_c": [65.0, 64.5, None],
        "return_temp_c": [45.0, 44.8, 45.1],
        "flow_lpm": [10.0, 9.5, 10.1],
    }
    data.update(changes)
    return TelemetryFrame.model_validate(data)


@settings(max_examples=200, deadline=None)
@given(frames())
def test_frame_round_trips_through_bytes(f: TelemetryFrame) -> None:
    assert decode_raw(encode(f)) == f


@settings(max_examples=100, deadline=None)
@given(
    st.builds(
        HeatWindow,
        boiler=ids,
        site=ids,
        resolution=st.sampled_from(["1m", "1h", "1d"]),
        window_start_ms=st.integers(T0, T0 + 10**9),
        window_end_ms=st.integers(T0, T0 + 10**9),
        heat_kwh=finite,
        it_kwh=finite,
        aux_kwh=finite,
        total_kwh=finite,
        erf=st.none() | finite,
        supply_temp_mean_c=st.none() | finite,
        return_temp_mean_c=st.none() | finite,
        flow_mean_lpm=st.none() | finite,
        coverage=st.floats(0, 1),
        co2_avoided_kg=finite,
        samples=st.integers(0, 10**6),
        heat_by_workload_kwh=st.dictionaries(st.sampled_from(["rendering", "ai_training"]), finite),
    )
)
def test_heat_window_round_trips(w: HeatWindow) -> None:
    assert decode_derived(encode(w)) == w


@settings(max_examples=100, deadline=None)
@given(
    original=st.binary(max_size=300),
    key=st.none() | st.binary(max_size=20),
    error=st.text(max_size=200),
)
def test_dead_letter_keeps_original_bytes(original: bytes, key: bytes | None, error: str) -> None:
    dl = DeadLetter(
        source_topic="heatstream.raw.events",
        source_partition=3,
        source_offset=42,
        key=key,
        original=original,
        reason="decode_error",
        error=error,
        rejected_at_ms=T0,
    )
    wire = encode(dl)
    assert json.loads(wire)["original"] == base64.b64encode(original).decode()
    assert decode_derived(wire) == dl


def test_other_derived_events_round_trip() -> None:
    events = [
        EfficiencyAnomaly(
            boiler="b1",
            site="s1",
            kind="pump_failure",
            phase="start",
            start_ms=T0,
            severity="critical",
            evidence={"flow_lpm": 0.1, "it_power_kw": 90.0},
            reason="IT power on with no flow",
        ),
        LeakSuspected(
            boiler="b1",
            site="s1",
            start_ms=T0,
            detected_ms=T0 + 60_000,
            evidence=["makeup_water", "pressure_decay"],
            confidence=0.9,
            leak_rate_lpm=0.4,
            reason="make-up water 0.4 L/min for 10 min",
        ),
        DataQualityIssue(
            kind="sensor_stuck",
            gateway="gw",
            site="s1",
            boiler="b1",
            channel="supply_temp_c",
            start_ms=T0,
            detail="constant 64.2 for 600 s",
        ),
    ]
    for event in events:
        assert decode_derived(encode(event)) == event


def test_event_id_is_gateway_and_sequence() -> None:
    f = frame()
    assert f.event_id == "gw-01:7"
    with pytest.raises(SchemaValidationError, match="event_id='gw-01:8' does not match"):
        decode_raw(orjson.dumps({**orjson.loads(encode(f)), "event_id": "gw-01:8"}))


def test_absent_channels_stay_absent_on_the_wire() -> None:
    wire = orjson.loads(encode(frame()))
    assert "pressure_bar" not in wire
    assert wire["supply_temp_c"] == [65.0, 64.5, None]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"supply_temp_c": [65.0, "hot", 1.0]}, "supply_temp_c[1] = 'hot'"),
        ({"flow_lpm": [1.0, 2.0]}, "flow_lpm has 2 values, dt_ms has 3"),
        ({"boiler_idx": [0, 5, 0]}, "boiler_idx[1] = 5 outside [0, 1]"),
        ({"dt_ms": [0, -4, 3]}, "dt_ms[1] = -4 outside"),
        ({"boilers": ["a", "a"]}, "boilers lists 'a' more than once"),
        ({"boilers": ["ok", "bad id!"]}, "boilers[1] = 'bad id!' is not a valid id"),
        ({"event_time_ms": 12}, "event_time_ms = 12"),
        ({"colour": [1, 2, 3]}, "colour = [1, 2, 3]: Extra inputs are not permitted"),
    ],
)
def test_validation_errors_name_field_index_and_value(change: dict, message: str) -> None:
    data = {**orjson.loads(encode(frame())), **change}
    with pytest.raises(SchemaValidationError) as info:
        decode_raw(orjson.dumps(data))
    assert message in str(info.value)
    assert info.value.reason == "schema_violation"


def test_non_finite_values_are_rejected_with_their_position() -> None:
    with pytest.raises(ValueError, match=r"flow_lpm\[2\] = inf is not a finite number"):
        frame(flow_lpm=[1.0, 2.0, float("inf")])


def test_out_of_range_readings_are_reported_not_rejected() -> None:
    f = frame(supply_temp_c=[65.0, 180.0, None], flow_lpm=[10.0, 9.5, -3.0])
    found = {(v.field, v.index, v.value, v.boiler) for v in f.range_violations()}
    assert found == {
        ("supply_temp_c", 1, 180.0, "boiler-0002"),
        ("flow_lpm", 2, -3.0, "boiler-0001"),
    }
    assert "supply_temp_c[1] = 180.0 °C outside [-20.0, 130.0]" in str(
        next(v for v in f.range_violations() if v.field == "supply_temp_c")
    )


@pytest.mark.parametrize(
    ("raw", "error", "reason"),
    [
        (b"{not json", DecodeError, "decode_error"),
        (b"\xff\xfe{}", DecodeError, "decode_error"),
        (b"[1, 2]", DecodeError, "decode_error"),
        (
            b'{"schema_name": "telemetry.frame", "schema_version": 4}',
            UnknownSchemaError,
            "unknown_schema",
        ),
        (b'{"schema_name": "weather", "schema_version": 1}', UnknownSchemaError, "unknown_schema"),
        (
            b'{"schema_name": "telemetry.frame", "schema_version": "2"}',
            UnknownSchemaError,
            "unknown_schema",
        ),
    ],
)
def test_undecodable_messages_have_a_reason(raw: bytes, error: type, reason: str) -> None:
    with pytest.raises(error) as info:
        decode_raw(raw)
    assert info.value.reason == reason


def test_future_version_says_upgrade() -> None:
    with pytest.raises(UnknownSchemaError, match="newer than this release"):
        decode_raw(b'{"schema_name": "telemetry.frame", "schema_version": 4}')


def test_v1_frame_is_upcast_to_the_current_version() -> None:
    v1 = {
        "schema_name": "telemetry.frame",
        "schema_version": 1,
        "event_id": "gw-old:12",
        "gateway": "gw-old",
        "seq": 12,
        "site": "site-01",
        "event_time_ms": T0 + 1000,
        "ingest_time_ms": T0 + 5000,
        "boiler": "boiler-0001",
        "t_ms": [T0 + 2000, T0 + 1000, T0 + 3000],
        "supply_temp_c": [65.0, 64.0, 66.0],
        "return_temp_c": [45.0, 44.0, 46.0],
        "flow_m3h": [0.6, None, 0.9],
    }
    f = decode_raw(orjson.dumps(v1))
    assert isinstance(f, TelemetryFrame)
    assert f.schema_version == 3
    assert f.watermark_ms is None
    assert f.event_id == "gw-old:12"
    assert f.boilers == ["boiler-0001"]
    assert f.boiler_idx == [0, 0, 0]
    assert f.event_time_ms == T0 + 1000
    assert f.t_ms.tolist() == [T0 + 2000, T0 + 1000, T0 + 3000]
    # 0.6 m³/h = 600 L / 60 min = 10 L/min
    assert f.flow_lpm == [pytest.approx(10.0), None, pytest.approx(15.0)]
    assert pytest.approx(10.0) == 0.6 * M3H_TO_LPM


def test_v2_frame_is_read_as_v3_without_a_watermark() -> None:
    v3 = orjson.loads(encode(frame()))
    v2 = {**v3, "schema_version": 2}
    f = decode_raw(orjson.dumps(v2))
    assert f == frame()
    assert f.schema_version == 3
    assert f.watermark_ms is None
    # v2 never had the field: naming it is refused, as v2 refuses any unknown field.
    with pytest.raises(SchemaValidationError, match=r"telemetry\.frame v2: watermark_ms = 123"):
        decode_raw(orjson.dumps({**v2, "watermark_ms": 123}))
    # Other defects are named against the version the gateway wrote.
    with pytest.raises(SchemaValidationError) as info:
        decode_raw(orjson.dumps({**v2, "dt_ms": [0, 10, -5]}))
    assert str(info.value).startswith("telemetry.frame v2 (read as v3): dt_ms[2] = -5")


def test_watermark_is_written_last_and_round_trips() -> None:
    f = frame(watermark_ms=T0 + 2000)
    raw = encode(f)
    assert raw.endswith(b',"watermark_ms":%d}' % (T0 + 2000))
    assert decode_raw(raw).watermark_ms == T0 + 2000
    assert b"watermark_ms" not in encode(frame())  # absent: no promise, not null


@pytest.mark.parametrize(
    ("watermark", "message"),
    [
        (T0 - 1, f"watermark_ms = {T0 - 1} is outside \\[event_time_ms, "),
        (T0 + MAX_SPAN_MS + 1, f"watermark_ms = {T0 + MAX_SPAN_MS + 1} is outside"),
        (True, "watermark_ms = True"),
        ("2000", "watermark_ms = '2000'"),
    ],
)
def test_a_watermark_before_the_frame_or_far_after_it_is_refused(
    watermark: object, message: str
) -> None:
    good = orjson.loads(encode(frame()))
    with pytest.raises(SchemaValidationError, match=message):
        decode_raw(orjson.dumps({**good, "watermark_ms": watermark}))
    assert decode_raw(orjson.dumps({**good, "watermark_ms": T0})).watermark_ms == T0
    limit = T0 + MAX_SPAN_MS
    assert decode_raw(orjson.dumps({**good, "watermark_ms": limit})).watermark_ms == limit


def test_malformed_v1_frame_is_reported_against_v1() -> None:
    with pytest.raises(SchemaValidationError, match=r"telemetry.frame v1: .*flow_m3h\[0\]"):
        decode_raw(
            orjson.dumps(
                {
                    "schema_name": "telemetry.frame",
                    "schema_version": 1,
                    "gateway": "g",
                    "seq": 1,
                    "site": "s",
                    "event_time_ms": T0,
                    "ingest_time_ms": T0,
                    "boiler": "b",
                    "t_ms": [T0],
                    "flow_m3h": ["x"],
                }
            )
        )


def test_compute_events_round_trip_and_validate() -> None:
    job = JobStarted(
        gateway="gw-01",
        seq=8,
        site="site-01",
        event_time_ms=T0,
        ingest_time_ms=T0,
        boiler="boiler-0001",
        job_id="j-1",
        workload="rendering",
        nodes=4,
    )
    assert decode_raw(encode(job)) == job
    cap = PowerCapSet(
        gateway="gw-01",
        seq=9,
        site="site-01",
        event_time_ms=T0,
        ingest_time_ms=T0,
        boiler="boiler-0001",
        cap_kw=None,
        reason="operator",
    )
    assert decode_raw(encode(cap)) == cap
    bad = {**orjson.loads(encode(job)), "workload": "mining"}
    with pytest.raises(SchemaValidationError, match="workload = 'mining'"):
        decode_raw(orjson.dumps(bad))


def test_every_type_exports_a_json_schema() -> None:
    schemas = json_schemas()
    assert set(schemas) == set(all_models())
    for name in RAW_VERSIONS:
        assert f"{name}.v{max(RAW_VERSIONS[name])}" in schemas
    frame_schema = schemas["telemetry.frame.v3"]
    assert frame_schema["$schema"].endswith("2020-12/schema")
    assert "L/min" in frame_schema["properties"]["flow_lpm"]["description"]
    assert {"boilers", "boiler_idx", "dt_ms", "gateway", "seq"} <= set(frame_schema["required"])
    assert "watermark_ms" not in frame_schema["required"]
    assert "watermark_ms" not in schemas["telemetry.frame.v2"]["properties"]


def test_an_issue_that_opens_then_closes_gets_two_ids() -> None:
    # Published once when it opens and once when it closes (end_ms set): a
    # consumer de-duplicating derived events by id must keep both records.
    common = dict(
        kind="sensor_stuck",
        gateway="gw-01",
        site="site-01",
        boiler="b-001",
        channel="flow_lpm",
        start_ms=60_000,
        detail="flow constant",
    )
    opened = DataQualityIssue(**common)
    closed = DataQualityIssue(**common, end_ms=420_000)
    assert opened.id == "b-001:sensor_stuck:flow_lpm:60000"
    assert closed.id == "b-001:sensor_stuck:flow_lpm:60000-420000"
    assert opened.key == closed.key == "b-001"
