"""The processor core: intake, dead letters, de-duplication, lateness, determinism."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heatstream.inventory import synthetic_inventory
from heatstream.schemas import topics
from heatstream.schemas.compute import JobStarted
from heatstream.schemas.deadletter import DeadLetter
from heatstream.schemas.derived import DataQualityIssue, HeatWindow
from heatstream.schemas.serde import encode
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.streams.processor import Emit, Origin, Processor, ProcessorParams
from heatstream.streams.windows import WindowParams

T0 = 1_768_435_200_000
INV = synthetic_inventory(boilers=4, sites=2)  # gw-01: boiler-0001, -0003; gw-02: -0002, -0004
PARAMS = ProcessorParams(windows=WindowParams(window_ms=60_000, allowed_lateness_ms=20_000, max_gap_ms=5_000))


def frame_bytes(seq: int, t0: int, gateway: str = "gw-01", n: int = 2, supply: float = 65.0, **extra) -> bytes:
    site = INV.gateway_by_id[gateway].site
    boilers = list(INV.gateway_by_id[gateway].boilers)
    idx = [b for _ in range(n) for b in range(len(boilers))]
    dt = [i * 1000 for i in range(n) for _ in boilers]
    count = len(idx)
    data = {
        "gateway": gateway, "seq": seq, "site": site, "event_time_ms": t0, "ingest_time_ms": t0 + 100,
        "boilers": boilers, "boiler_idx": idx, "dt_ms": dt,
        "supply_temp_c": [supply] * count, "return_temp_c": [45.0] * count, "flow_lpm": [10.0] * count,
        "it_power_kw": [15.0] * count, "aux_power_kw": [0.3] * count, "pressure_bar": [1.8] * count,
    }
    data.update(extra)
    return encode(TelemetryFrame.model_validate(data))


def stream(gateway: str = "gw-01", seconds: int = 300, per_frame: int = 2) -> list[tuple[bytes, bytes]]:
    msgs = []
    for i, t in enumerate(range(T0, T0 + seconds * 1000, per_frame * 1000)):
        msgs.append((gateway.encode(), frame_bytes(i, t, gateway, n=per_frame)))
    return msgs


def feed(proc: Processor, msgs: list[tuple[bytes | None, bytes]]) -> list[Emit]:
    out = []
    for offset, (key, raw) in enumerate(msgs):
        out.extend(proc.process(raw, key, Origin("heatstream.raw.events", 0, offset, T0 + offset)))
    return out


def of(out: list[Emit], kind: type) -> list:
    return [e.event for e in out if isinstance(e.event, kind)]


def test_windows_come_out_for_every_boiler_with_exact_heat() -> None:
    out = feed(Processor(INV, PARAMS), stream(seconds=300))
    windows = [w for w in of(out, HeatWindow) if w.resolution == "1m"]
    assert {w.boiler for w in windows} == {"boiler-0001", "boiler-0003"}
    full = [w for w in windows if w.coverage == 1.0]
    assert len(full) >= 6
    # 10 L/min, 45 -> 65 °C metered on the return: 13.8067 kW -> 0.230111 kWh a minute.
    assert full[0].heat_kwh == pytest.approx(13.8067 / 60, rel=1e-4)
    assert full[0].erf == pytest.approx(full[0].heat_kwh / ((15.0 + 0.3) / 60), rel=1e-9)
    # Site 1 displaces a gas boiler (0.9, 0.227 kg/kWh).
    assert full[0].co2_avoided_kg == pytest.approx(full[0].heat_kwh / 0.9 * 0.227)
    assert all(e.topic is topics.HEAT_WINDOWS and e.key == e.event.boiler for e in out if isinstance(e.event, HeatWindow))


@pytest.mark.parametrize(
    ("key", "raw", "reason", "text"),
    [
        (b"gw-01", b"{broken", "decode_error", "not valid JSON"),
        (b"gw-01", b'{"schema_name": "telemetry.frame", "schema_version": 9}', "unknown_schema", "newer"),
        (b"gw-01", frame_bytes(0, T0)[:-30] + b"}", "decode_error", "not valid JSON"),
        (b"gw-01", frame_bytes(0, T0).replace(b'"flow_lpm":[10.0', b'"flow_lpm":["x"'),
         "schema_violation", "flow_lpm[0] = 'x'"),
        (b"gw-02", frame_bytes(0, T0), "key_mismatch", "does not match gateway = 'gw-01'"),
        (None, frame_bytes(0, T0), "key_mismatch", "Kafka key missing"),
    ],
)
def test_rejected_messages_become_dead_letters_with_origin(key, raw, reason, text) -> None:
    out = Processor(INV, PARAMS).process(raw, key, Origin("heatstream.raw.events", 3, 77, T0))
    assert len(out) == 1 and out[0].topic is topics.DEAD_LETTERS
    dl = out[0].event
    assert isinstance(dl, DeadLetter)
    assert (dl.reason, dl.original, dl.source_partition, dl.source_offset) == (reason, raw, 3, 77)
    assert text in dl.error


def test_foreign_boiler_is_unauthorised() -> None:
    data = orjson.loads(frame_bytes(0, T0))
    data["boilers"] = ["boiler-0001", "boiler-0002"]  # boiler-0002 belongs to gw-02
    out = Processor(INV, PARAMS).process(orjson.dumps(data), b"gw-01", Origin("t", 0, 0, T0))
    dl = out[0].event
    assert dl.reason == "unauthorised"
    assert "boiler = 'boiler-0002', which is owned by gateway 'gw-02'" in dl.error


def test_duplicates_change_nothing() -> None:
    msgs = stream(seconds=240)
    doubled = [m for m in msgs for _ in range(2)]
    a, b = Processor(INV, PARAMS), Processor(INV, PARAMS)
    assert [encode(e.event) for e in feed(a, msgs)] == [encode(e.event) for e in feed(b, doubled)]
    assert b.counters.duplicates == len(msgs)


def test_out_of_range_readings_are_quarantined_and_reported() -> None:
    msgs = stream(seconds=200)
    bad = orjson.loads(msgs[5][1])
    bad["supply_temp_c"][0] = 400.0
    msgs[5] = (msgs[5][0], orjson.dumps(bad))
    out = feed(Processor(INV, PARAMS), msgs)
    issues = [i for i in of(out, DataQualityIssue) if i.kind == "out_of_range"]
    assert len(issues) == 1
    assert issues[0].boiler == "boiler-0001" and issues[0].channel == "supply_temp_c"
    assert "400.0" in issues[0].detail
    windows = [w for w in of(out, HeatWindow) if w.resolution == "1m" and w.boiler == "boiler-0001"]
    assert sum(w.quarantined for w in windows) == 1
    assert all(w.heat_kwh < 0.24 for w in windows)  # 400 °C never reached the totals


def test_late_frames_are_routed_not_folded_in() -> None:
    msgs = stream(seconds=200)
    late = (b"gw-01", frame_bytes(1000, T0 + 10_000))  # 190 s behind: its window closed long ago
    out = feed(Processor(INV, PARAMS), [*msgs, late])
    late_out = [e for e in out if e.topic is topics.LATE_EVENTS]
    assert len(late_out) == 1
    assert late_out[0].event.reason == "late_event"
    assert late_out[0].event.original == late[1]
    assert "4 of 4 samples arrived after their window closed" in late_out[0].event.error


def _derived(out: list[Emit]) -> list[bytes]:
    return sorted(encode(e.event) for e in out if e.topic is not topics.DATA_QUALITY or e.event.kind != "late_event")


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=150, max_size=150))
def test_arrival_order_within_lateness_changes_no_result(delays: list[int]) -> None:
    # Frames of 2 s; a delay of up to 3 frames is 6 s, well inside the 20 s lateness.
    msgs = stream(seconds=300) + stream("gw-02", seconds=300)
    order = sorted(range(len(msgs)), key=lambda i: (i % 150 + delays[i % 150], i))
    shuffled = [msgs[i] for i in order]
    assert _derived(feed(Processor(INV, PARAMS), msgs)) == _derived(feed(Processor(INV, PARAMS), shuffled))


def test_gateway_state_export_and_import_continue_identically() -> None:
    msgs = stream(seconds=400)
    msgs.insert(20, (b"gw-01", encode(JobStarted(
        gateway="gw-01", seq=500, site="site-01", event_time_ms=T0 + 30_000, ingest_time_ms=T0 + 30_000,
        boiler="boiler-0001", job_id="j1", workload="rendering", nodes=2,
    ))))
    straight = feed(Processor(INV, PARAMS), msgs)
    first = Processor(INV, PARAMS)
    cut = 90
    part1 = feed(first, msgs[:cut])
    blob = first.export_gateway("gw-01")
    second = Processor(INV, PARAMS)
    second.import_gateway("gw-01", blob)
    part2 = []
    for offset, (key, raw) in enumerate(msgs[cut:], start=cut):
        part2.extend(second.process(raw, key, Origin("heatstream.raw.events", 0, offset, T0 + offset)))
    assert [encode(e.event) for e in part1 + part2] == [encode(e.event) for e in straight]
    windows = [w for w in of(straight, HeatWindow) if w.boiler == "boiler-0001" and w.heat_by_workload_kwh]
    assert windows and set(windows[0].heat_by_workload_kwh) == {"rendering"}
