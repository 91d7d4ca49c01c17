"""The processor core: intake, dead letters, de-duplication, lateness, determinism."""

from __future__ import annotations

import pickle
from dataclasses import replace

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heatstream.inventory import Inventory, synthetic_inventory
from heatstream.schemas import topics
from heatstream.schemas.compute import JobFinished, JobStarted
from heatstream.schemas.deadletter import DeadLetter
from heatstream.schemas.derived import DataQualityIssue, HeatWindow
from heatstream.schemas.serde import encode
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.streams.detectors import EfficiencyDetector
from heatstream.streams.processor import (
    MAX_DELTAS,
    MAX_ROW_BYTES,
    Emit,
    Origin,
    Processor,
    ProcessorParams,
)
from heatstream.streams.windows import MAX_APPENDED_RUNS, WindowParams

T0 = 1_768_435_200_000
INV = synthetic_inventory(boilers=4, sites=2)  # gw-01: boiler-0001, -0003; gw-02: -0002, -0004
PARAMS = ProcessorParams(
    windows=WindowParams(window_ms=60_000, allowed_lateness_ms=20_000, max_gap_ms=5_000)
)


CHANNELS = (
    "supply_temp_c",
    "return_temp_c",
    "flow_lpm",
    "it_power_kw",
    "aux_power_kw",
    "pressure_bar",
)


def frame_bytes(
    seq: int, t0: int, gateway: str = "gw-01", n: int = 2, supply: float = 65.0, **extra
) -> bytes:
    site = INV.gateway_by_id[gateway].site
    boilers = list(INV.gateway_by_id[gateway].boilers)
    idx = [b for _ in range(n) for b in range(len(boilers))]
    dt = [i * 1000 for i in range(n) for _ in boilers]
    count = len(idx)
    data = {
        "gateway": gateway,
        "seq": seq,
        "site": site,
        "event_time_ms": t0,
        "ingest_time_ms": t0 + 100,
        "boilers": boilers,
        "boiler_idx": idx,
        "dt_ms": dt,
        "supply_temp_c": [supply] * count,
        "return_temp_c": [45.0] * count,
        "flow_lpm": [10.0] * count,
        "it_power_kw": [15.0] * count,
        "aux_power_kw": [0.3] * count,
        "pressure_bar": [1.8] * count,
    }
    data.update(extra)
    return encode(TelemetryFrame.model_validate(data))


def stream(
    gateway: str = "gw-01", seconds: int = 300, per_frame: int = 2
) -> list[tuple[bytes, bytes]]:
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
    assert all(
        e.topic is topics.HEAT_WINDOWS and e.key == e.event.boiler
        for e in out
        if isinstance(e.event, HeatWindow)
    )


@pytest.mark.parametrize(
    ("key", "raw", "reason", "text"),
    [
        (b"gw-01", b"{broken", "decode_error", "not valid JSON"),
        (
            b"gw-01",
            b'{"schema_name": "telemetry.frame", "schema_version": 9}',
            "unknown_schema",
            "newer",
        ),
        (b"gw-01", frame_bytes(0, T0)[:-30] + b"}", "decode_error", "not valid JSON"),
        (
            b"gw-01",
            frame_bytes(0, T0).replace(b'"flow_lpm":[10.0', b'"flow_lpm":["x"'),
            "schema_violation",
            "flow_lpm[0] = 'x'",
        ),
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
    return sorted(
        encode(e.event)
        for e in out
        if e.topic is not topics.DATA_QUALITY or e.event.kind != "late_event"
    )


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=150, max_size=150))
def test_arrival_order_within_lateness_changes_no_result(delays: list[int]) -> None:
    # Frames of 2 s; a delay of up to 3 frames is 6 s, well inside the 20 s lateness.
    msgs = stream(seconds=300) + stream("gw-02", seconds=300)
    order = sorted(range(len(msgs)), key=lambda i: (i % 150 + delays[i % 150], i))
    shuffled = [msgs[i] for i in order]
    assert _derived(feed(Processor(INV, PARAMS), msgs)) == _derived(
        feed(Processor(INV, PARAMS), shuffled)
    )


def _job(
    seq: int, t: int, boiler: str = "boiler-0001", inv=INV, finished: bool = False, job: str = ""
):
    gateway = inv.owner_of[boiler]
    common = dict(
        gateway=gateway,
        seq=seq,
        site=inv.boiler_by_id[boiler].site,
        event_time_ms=t,
        ingest_time_ms=t,
        boiler=boiler,
        job_id=job or f"j{seq}",
        workload="rendering",
    )
    event = JobFinished(**common) if finished else JobStarted(**common, nodes=2)
    return (gateway.encode(), encode(event))


class Table(dict):
    """The Faust table as the worker uses it: rows written after each batch."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write_back(self, proc: Processor) -> list[bytes]:
        rows = proc.dirty_rows()
        self.update(rows)
        self.writes += len(rows)
        return [k for k, _ in rows]


def run_worker_like(
    proc: Processor,
    msgs: list[tuple[bytes, bytes]],
    table: Table,
    start: int = 0,
    batch: int = 7,
    write_last: bool = True,
) -> list[Emit]:
    """What streams/app.py does with a processor: lazy import, process, write back
    per batch (and after the last message unless `write_last` is false)."""
    out = []
    for offset, (key, raw) in enumerate(msgs[start:], start=start):
        gateway = proc.gateway_of(key, raw)
        if gateway is not None and proc.needs_import(gateway):
            proc.import_rows(gateway, table.get)
        out.extend(proc.process(raw, key, Origin("heatstream.raw.events", 0, offset, T0 + offset)))
        if (offset + 1) % batch == 0:
            table.write_back(proc)
    if write_last:
        table.write_back(proc)
    return out


def _slotless(keys) -> set[bytes]:
    """Row keys without the slot of boiler rows: b"b:boiler-0001.1" -> b"b:boiler-0001"."""
    return {k.rsplit(b".", 1)[0] if k.startswith(b"b:") else k for k in keys}


def _restart_matches(inv, params, msgs, cut: int, batch: int) -> None:
    straight = feed(Processor(inv, params), msgs)
    table = Table()
    first = Processor(inv, params)
    part1 = run_worker_like(first, msgs[:cut], table, batch=batch)
    # Killed after the write-back of the batch holding message cut - 1: a new
    # processor resumes from the table and the next message.
    second = Processor(inv, params)
    part2 = run_worker_like(second, msgs, table, start=cut, batch=batch)
    assert [encode(e.event) for e in part1 + part2] == [encode(e.event) for e in straight]
    # Not vacuous: windows closed after the restart, nothing was late.
    assert of(part2, HeatWindow)
    assert not [e for e in straight if e.topic is topics.LATE_EVENTS]


PARAMS1 = replace(PARAMS, boilers_per_row=1)  # a row per boiler


def two_gateways(seconds: int = 400) -> list[tuple[bytes, bytes]]:
    msgs = stream(seconds=seconds) + stream("gw-02", seconds=seconds)
    msgs.sort(key=lambda m: orjson.loads(m[1])["event_time_ms"])  # interleaved gateways
    msgs.insert(20, _job(500, T0 + 30_000))
    msgs.insert(120, _job(501, T0 + 100_000, finished=True))
    return msgs


@pytest.mark.parametrize("params", [PARAMS, PARAMS1], ids=["grouped", "per_boiler"])
@pytest.mark.parametrize(("cut", "batch"), [(90, 1), (90, 7), (37, 5), (141, 3)])
def test_rows_exported_and_imported_continue_identically(cut: int, batch: int, params) -> None:
    msgs = two_gateways()
    _restart_matches(INV, params, msgs, cut, batch)
    straight = feed(Processor(INV, params), msgs)
    windows = [
        w for w in of(straight, HeatWindow) if w.boiler == "boiler-0001" and w.heat_by_workload_kwh
    ]
    assert windows and set(windows[0].heat_by_workload_kwh) == {"rendering"}


@pytest.mark.parametrize("params", [PARAMS, PARAMS1], ids=["grouped", "per_boiler"])
@pytest.mark.parametrize(("committed", "killed"), [(140, 161), (150, 152)], ids=["rows", "deltas"])
def test_a_write_back_cut_short_leaves_a_state_the_replay_completes(
    params, committed: int, killed: int
) -> None:
    """Killed while writing a batch's rows back: the table holds any prefix of them,
    the consumer resumes at the batch's first message. What was emitted before
    the kill and what the replay emits must be exactly what the uninterrupted run
    emitted from that message on: nothing missing, nothing different (a gateway
    whose rows all landed drops the replayed messages as duplicates)."""
    # rows: a window of each boiler closes in between; deltas: two frames, no
    # window closes, only delta rows and gateway rows are written.
    msgs = two_gateways()
    straight = Processor(INV, params)
    tail = [
        straight.process(raw, key, Origin("heatstream.raw.events", 0, i, T0 + i))
        for i, (key, raw) in enumerate(msgs)
    ]
    expected = {encode(e.event) for out in tail[committed:] for e in out}
    first = Processor(INV, params)
    table = Table()
    run_worker_like(first, msgs[:committed], table, batch=10)
    before = run_worker_like(
        first, msgs[:killed], table, start=committed, batch=1000, write_last=False
    )
    torn = first.dirty_rows()
    assert len(torn) >= 2 and any(k.startswith(b"g:") for k, _ in torn)
    if killed - committed < 5:
        assert {k[:2] for k, _ in torn} == {b"d:", b"g:"}
    for written in range(len(torn) + 1):
        partial = Table()
        partial.update(table)
        partial.update(torn[:written])
        second = Processor(INV, params)
        replayed = {
            encode(e.event) for e in run_worker_like(second, msgs, partial, start=committed)
        }
        assert replayed <= expected, f"{written} of {len(torn)} rows written"
        assert replayed | {encode(e.event) for e in before} == expected


INV150 = synthetic_inventory(boilers=150, sites=1)  # one gateway, 150 boilers


def gateway_frames(
    inv, seconds: int, span_s: int = 5, start: int = T0, seq0: int = 0
) -> list[tuple[bytes, bytes]]:
    """Frames of every boiler of each gateway of `inv`, 1 Hz samples, `span_s` per frame."""
    out = []
    for k, t0 in enumerate(range(start, start + seconds * 1000, span_s * 1000)):
        for gw in inv.gateways:
            n = len(gw.boilers)
            idx = [b for _ in range(span_s) for b in range(n)]
            count = len(idx)
            wobble = [(k * 7 + i) % 11 / 10 for i in range(count)]
            frame = TelemetryFrame(
                gateway=gw.id,
                seq=seq0 + k,
                site=gw.site,
                event_time_ms=t0,
                ingest_time_ms=t0 + span_s * 1000,
                boilers=list(gw.boilers),
                boiler_idx=idx,
                dt_ms=[s * 1000 for s in range(span_s) for _ in range(n)],
                supply_temp_c=[62.0 + w for w in wobble],
                return_temp_c=[45.0] * count,
                flow_lpm=[10.0 + w for w in wobble],
                it_power_kw=[15.0] * count,
                aux_power_kw=[0.3] * count,
                pressure_bar=[1.8] * count,
            )
            out.append((gw.id.encode(), encode(frame)))
    return out


def test_rows_of_a_150_boiler_gateway_continue_identically_after_a_restart() -> None:
    msgs = gateway_frames(INV150, seconds=300)
    msgs.insert(10, _job(100, T0 + 40_000, "boiler-0077", inv=INV150))
    _restart_matches(INV150, PARAMS, msgs, cut=33, batch=4)


def _largest_rows(inv, msgs) -> tuple[Processor, list[int]]:
    """Feed `msgs` (default parameters), writing back after each; the largest row
    written, per message."""
    proc = Processor(inv)
    largest = []
    for offset, (key, raw) in enumerate(msgs):
        proc.process(raw, key, Origin("t", 0, offset, T0))
        largest.append(max((len(v) for _, v in proc.dirty_rows()), default=0))
    return proc, largest


def test_rows_of_a_150_boiler_gateway_stay_small() -> None:
    # 10 minutes of 1 Hz data: buffers are in steady state after 2 (lateness +
    # window + gaps); the old single value passed 1 MiB at 100 boilers.
    msgs = gateway_frames(INV150, seconds=600, span_s=10)
    proc, largest = _largest_rows(INV150, msgs)
    assert proc.counters.windows >= 150 * 8
    assert max(largest) < 256 * 1024
    assert max(largest) < MAX_ROW_BYTES / 4
    # Bounded: the second five minutes need no bigger rows than the first.
    half = len(largest) // 2
    assert max(largest[half:]) <= max(largest[:half]) * 1.05
    rows = dict(proc.rows_of("gw-01"))
    assert len(rows) == 1 + 150 // 8 + 1  # the gateway, groups of 8 boilers
    assert max(map(len, rows.values())) < 256 * 1024


@pytest.mark.slow
def test_rows_of_a_150_boiler_gateway_stay_small_for_hours() -> None:
    msgs = gateway_frames(INV150, seconds=3 * 3600, span_s=60)
    _, largest = _largest_rows(INV150, msgs)
    assert max(largest) < 256 * 1024
    assert max(largest[len(largest) // 2 :]) <= max(largest[: len(largest) // 2]) * 1.05


def test_a_boiler_row_is_bounded_over_a_day_of_windows() -> None:
    inv = synthetic_inventory(boilers=1, sites=1)
    msgs = gateway_frames(inv, seconds=24 * 3600, span_s=60)
    # Jobs start and finish every 20 minutes: the ledger must not keep them all.
    for k in range(0, 72):
        t = T0 + k * 1_200_000 + 30_000
        msgs.append(_job(1440 + 2 * k, t, inv=inv, job=f"d{k}"))  # frames hold seq 0..1439
        msgs.append(_job(1441 + 2 * k, t + 600_000, inv=inv, finished=True, job=f"d{k}"))
    msgs.sort(key=lambda m: orjson.loads(m[1])["event_time_ms"])
    proc, largest = _largest_rows(inv, msgs)
    assert proc.counters.windows >= 1438
    (row,) = [v for k, v in proc.rows_of("gw-01") if k.startswith(b"b:boiler-0001.")]
    hour = len(msgs) // 24
    assert max(largest) < 64 * 1024
    # After the first hour (baselines warm, first hourly rollup), no growth.
    assert len(row) <= max(largest[hour : 2 * hour]) * 1.05
    assert max(largest[2 * hour :]) <= max(largest[hour : 2 * hour]) * 1.05


def test_only_rows_changed_by_a_batch_are_written_back() -> None:
    proc = Processor(INV, PARAMS1)
    both = stream(seconds=100) + stream("gw-02", seconds=100)
    feed(proc, both)
    first = {k for k, _ in proc.dirty_rows()}
    assert first == {
        b"b:boiler-0001.0",
        b"b:boiler-0002.0",
        b"b:boiler-0003.0",
        b"b:boiler-0004.0",
        b"g:gw-01",
        b"g:gw-02",
    }
    assert proc.dirty_rows() == []  # nothing happened since
    # One gw-01 frame, no window closing: gw-02's rows are not written again;
    # gw-01's boilers only took samples: one delta row of the gateway, then the
    # gateway row that counts it.
    feed(proc, [(b"gw-01", frame_bytes(50, T0 + 100_000))])
    keys = [k for k, _ in proc.dirty_rows()]
    assert keys == [b"d:gw-01.0.0", b"g:gw-01"]
    # A frame with one boiler only: the other boiler's row is untouched (no window
    # of it closes: the watermark stays inside the same minute).
    data = orjson.loads(frame_bytes(51, T0 + 102_000))
    data.update(boilers=["boiler-0001"], boiler_idx=[0], dt_ms=[0])
    for c in (
        "supply_temp_c",
        "return_temp_c",
        "flow_lpm",
        "it_power_kw",
        "aux_power_kw",
        "pressure_bar",
    ):
        data[c] = data[c][:1]
    feed(proc, [(b"gw-01", orjson.dumps(data))])
    assert [k for k, _ in proc.dirty_rows()] == [b"d:gw-01.0.1", b"g:gw-01"]
    assert pickle.loads(proc.rows_of("gw-02")[-1][1])["deltas"] is None  # rows_of: whole
    # A window closes: the boilers' rows are written whole, to their other slot;
    # they hold every delta, which start again in the other generation.
    feed(proc, [(b"gw-01", frame_bytes(52, T0 + 140_000, n=10))])
    rows = proc.dirty_rows()
    assert [k for k, _ in rows] == [b"b:boiler-0001.1", b"b:boiler-0003.1", b"g:gw-01"]
    assert pickle.loads(rows[-1][1])["deltas"] == {"gen": 1, "n": 0, "since": {}}
    feed(proc, [(b"gw-01", frame_bytes(53, T0 + 150_000))])
    assert [k for k, _ in proc.dirty_rows()] == [b"d:gw-01.1.0", b"g:gw-01"]
    # A rejected message changes nothing.
    feed(proc, [(b"gw-01", b"{broken")])
    assert proc.dirty_rows() == []


def test_group_rows_are_written_whole_again_after_max_deltas() -> None:
    # Windows of 10 minutes: after the first (empty, before the data) is
    # skipped at 25 s, none closes in the next minutes of 1 s frames.
    params = ProcessorParams(
        windows=WindowParams(window_ms=600_000, allowed_lateness_ms=20_000, max_gap_ms=5_000)
    )
    proc = Processor(INV, params)
    msgs = stream(seconds=30 + MAX_DELTAS + 2, per_frame=1)
    feed(proc, msgs[:30])
    manifest = pickle.loads(dict(proc.dirty_rows())[b"g:gw-01"])
    gen, (slot,) = manifest["deltas"]["gen"], manifest["rows"].values()  # one group of 2
    keys = []
    for msg in msgs[30:]:
        feed(proc, [msg])
        keys.append([k for k, _ in proc.dirty_rows()])
    assert keys[:MAX_DELTAS] == [
        [b"d:gw-01.%d.%d" % (gen, i), b"g:gw-01"] for i in range(MAX_DELTAS)
    ]
    # The next write-back: every group row whole, to its other slot, no delta.
    assert keys[MAX_DELTAS] == [b"b:boiler-0001.%d" % (1 - slot), b"g:gw-01"]
    assert keys[MAX_DELTAS + 1] == [b"d:gw-01.%d.0" % (1 - gen), b"g:gw-01"]


@pytest.mark.parametrize("params", [PARAMS, PARAMS1], ids=["grouped", "per_boiler"])
@pytest.mark.parametrize("cut", [61, 75, 99])
def test_rows_with_deltas_continue_identically_after_a_restart(params, cut: int) -> None:
    """Written back after every 1 s frame, as a live worker does: most writes are
    deltas, and a restart reads them back (the manifest counts some at every cut)."""
    msgs = [*stream(seconds=240, per_frame=1), _job(900, T0 + 70_000)]
    msgs.sort(key=lambda m: orjson.loads(m[1])["event_time_ms"])
    table = Table()
    run_worker_like(Processor(INV, params), msgs[:cut], table, batch=1)
    manifest = pickle.loads(table[b"g:gw-01"])["deltas"]
    assert manifest["n"] > 0
    assert any(k.startswith(b"d:gw-01.") for k in table)
    _restart_matches(INV, params, msgs, cut, batch=1)


def test_samples_never_taken_by_a_write_back_stay_bounded() -> None:
    """A processor whose rows are never written (a replay) must not keep every
    sample it saw: past MAX_APPENDED_RUNS frames, its boilers are marked changed
    as a whole instead."""
    proc = Processor(INV, PARAMS)
    feed(proc, stream(seconds=10 * 60, per_frame=1))
    assert all(len(runs) <= MAX_APPENDED_RUNS for runs in proc.engine.appended.values())
    assert {"boiler-0001", "boiler-0003"} <= proc.engine.changed


@pytest.mark.parametrize("batch", [1, MAX_APPENDED_RUNS + 36])
def test_long_batches_write_whole_rows_and_continue_identically(batch: int) -> None:
    msgs = stream(seconds=400, per_frame=1)
    _restart_matches(INV, PARAMS, msgs, cut=250, batch=batch)


def test_a_group_row_too_large_to_write_leaves_the_manifest(monkeypatch, caplog) -> None:
    """A row over the record limit is not written: the group leaves the manifest
    (its boilers start afresh after a restart, as the error says) and the deltas
    still start again after MAX_DELTAS instead of growing for ever."""
    params = ProcessorParams(
        windows=WindowParams(window_ms=600_000, allowed_lateness_ms=20_000, max_gap_ms=5_000),
        boilers_per_row=1,
    )
    original = Processor._group_row
    grown: set[str] = set()

    def oversized(self, members):
        row = original(self, members)
        return row + b"x" * MAX_ROW_BYTES if members[0] in grown and row else row

    monkeypatch.setattr(Processor, "_group_row", oversized)
    proc = Processor(INV, params)
    msgs = stream(seconds=30 + 3 * MAX_DELTAS, per_frame=1)
    feed(proc, msgs[:30])
    assert "boiler-0003" in pickle.loads(dict(proc.dirty_rows())[b"g:gw-01"])["rows"]
    grown.add("boiler-0003")  # from now on its row is too large to write
    counts = []
    for msg in msgs[30:]:
        feed(proc, [msg])
        manifest = pickle.loads(dict(proc.dirty_rows())[b"g:gw-01"])
        counts.append(manifest["deltas"]["n"])
    assert "boiler-0003" not in manifest["rows"]
    assert max(counts) == MAX_DELTAS  # reached, then started again
    assert counts[-1] < MAX_DELTAS
    assert "over the" in caplog.text and "boiler-0003" in caplog.text


def test_rows_of_the_previous_version_are_read_and_newer_ones_refused() -> None:
    msgs = two_gateways()
    straight = feed(Processor(INV, PARAMS), msgs)
    table = Table()
    part1 = run_worker_like(Processor(INV, PARAMS), msgs[:141], table, batch=141)
    # As the previous version wrote them: version 2, no delta rows, no count.
    old = Table()
    for key, value in table.items():
        if key.startswith(b"g:"):
            state = pickle.loads(value)
            assert state["deltas"]["n"] == 0  # a write-back after windows closed
            state["v"] = 2
            del state["deltas"]
            old[key] = pickle.dumps(state)
        elif key.startswith(b"b:"):
            old[key] = pickle.dumps((2, pickle.loads(value)[1]))
    part2 = run_worker_like(Processor(INV, PARAMS), msgs, old, start=141)
    assert [encode(e.event) for e in part1 + part2] == [encode(e.event) for e in straight]
    newer = Table()
    state = pickle.loads(table[b"g:gw-01"])
    newer[b"g:gw-01"] = pickle.dumps({**state, "v": 4})
    with pytest.raises(ValueError, match=r"version 4; this worker reads versions \[2, 3\]"):
        Processor(INV, PARAMS).import_rows("gw-01", newer.get)


def test_boilers_share_rows_in_groups() -> None:
    inv = synthetic_inventory(boilers=20, sites=1)  # one gateway: groups of 8, 8 and 4
    proc = Processor(inv, PARAMS)
    frames = gateway_frames(inv, seconds=10)
    feed(proc, frames)
    rows = dict(proc.dirty_rows())
    assert list(rows) == [b"b:boiler-0001.0", b"b:boiler-0009.0", b"b:boiler-0017.0", b"g:gw-01"]
    assert sorted(pickle.loads(rows[b"b:boiler-0017.0"])[1]) == [
        "boiler-0017",
        "boiler-0018",
        "boiler-0019",
        "boiler-0020",
    ]
    assert pickle.loads(rows[b"g:gw-01"])["rows"] == {
        "boiler-0001": 0,
        "boiler-0009": 0,
        "boiler-0017": 0,
    }


def test_detector_state_is_encoded_again_only_when_it_changes(monkeypatch) -> None:
    calls: list[str] = []
    original = EfficiencyDetector.to_state

    def counting(self):
        calls.append(self.boiler)
        return original(self)

    monkeypatch.setattr(EfficiencyDetector, "to_state", counting)
    proc = Processor(INV, PARAMS1)
    msgs = stream(seconds=200)
    feed(proc, msgs[:50])  # t = 0..98 s: windows of the first minute closed at t = 85 s
    proc.dirty_rows()
    calls.clear()
    # Frames inside the next minute: buffers take samples, no window closes.
    out = feed(proc, msgs[50:55])
    assert not of(out, HeatWindow)
    rows = [k for k, _ in proc.dirty_rows()]
    assert rows == [b"d:gw-01.0.0", b"g:gw-01"] and calls == []
    # A window closes for both boilers: each is encoded once, however many exports.
    out = feed(proc, msgs[55:75])
    closed = {w.boiler for w in of(out, HeatWindow)}
    assert closed == {"boiler-0001", "boiler-0003"}
    proc.dirty_rows()
    proc.rows_of("gw-01")
    assert sorted(calls) == ["boiler-0001", "boiler-0003"]
    # A compute event changes the ledger: that boiler only.
    calls.clear()
    feed(proc, [_job(900, T0 + 160_000, "boiler-0003")])
    assert _slotless(k for k, _ in proc.dirty_rows()) == {b"g:gw-01", b"b:boiler-0003"}
    assert calls == ["boiler-0003"]


def test_windows_of_a_silent_gateway_closed_by_another_are_written_back() -> None:
    # gw-02 stops; gw-01 goes on past the offline hold: gw-02's windows close on
    # gw-01's messages, and gw-02's boiler rows must follow.
    params = ProcessorParams(
        windows=WindowParams(
            window_ms=60_000, allowed_lateness_ms=20_000, max_gap_ms=5_000, offline_hold_ms=120_000
        )
    )
    proc = Processor(INV, params)
    feed(proc, stream("gw-02", seconds=90))
    proc.dirty_rows()
    out = feed(proc, stream("gw-01", seconds=400))
    closed_02 = {w.boiler for w in of(out, HeatWindow) if w.site == "site-02"}
    assert closed_02 == {"boiler-0002", "boiler-0004"}
    keys = _slotless(k for k, _ in proc.dirty_rows())
    assert {b"b:boiler-0002", b"g:gw-02"} <= keys  # gw-02's group, and its gateway row


@pytest.mark.parametrize(
    ("reordered", "firsts"),
    [
        # rows [2, 1] [4, 3]: none of the old keys
        (
            ("boiler-0002", "boiler-0001", "boiler-0004", "boiler-0003"),
            ("boiler-0002", "boiler-0004"),
        ),
        # rows [1, 4] [3, 2]: the same keys, other members
        (
            ("boiler-0001", "boiler-0004", "boiler-0003", "boiler-0002"),
            ("boiler-0001", "boiler-0003"),
        ),
    ],
    ids=["new_keys", "same_keys"],
)
def test_rows_written_before_the_inventory_regrouped_boilers_still_load(
    reordered: tuple[str, ...], firsts: tuple[str, ...]
) -> None:
    # One gateway of 4 boilers in rows of 2: [1, 2] [3, 4]; the inventory then
    # lists them in another order.
    params = replace(PARAMS, boilers_per_row=2)
    inv = synthetic_inventory(boilers=4, sites=1)
    (gw,) = inv.gateways
    regrouped = Inventory(
        sites=inv.sites,
        boilers=inv.boilers,
        gateways=(gw.model_copy(update={"boilers": reordered}),),
    )
    msgs = gateway_frames(inv, seconds=400, span_s=2)
    # At 180 s, a frame of boiler-0001 alone: after the restart, the only change.
    only = orjson.loads(msgs[90][1])
    only.update(seq=1000, event_time_ms=T0 + 179_000, boilers=["boiler-0001"])
    for name in ("boiler_idx", "dt_ms", *CHANNELS):
        only[name] = only[name][:1]
    msgs.insert(90, (b"gw-01", orjson.dumps(only)))
    straight = feed(Processor(inv, params), msgs)
    table = Table()
    part1 = run_worker_like(Processor(inv, params), msgs[:90], table)
    assert set(pickle.loads(table[b"g:gw-01"])["rows"]) == {"boiler-0001", "boiler-0003"}
    part2 = run_worker_like(Processor(regrouped, params), msgs[:91], table, start=90)
    manifest = pickle.loads(table[b"g:gw-01"])
    assert set(manifest["rows"]) == set(firsts)
    assert manifest["deltas"]["n"] == 0  # every row written whole in its new group
    part3 = run_worker_like(Processor(regrouped, params), msgs, table, start=91)
    assert [encode(e.event) for e in part1 + part2 + part3] == [encode(e.event) for e in straight]


def test_a_table_of_the_first_layout_is_still_read() -> None:
    """Rows of the previous layout (one value per gateway, keyed by its id) load,
    and are written back as rows at the next batch."""
    msgs = stream(seconds=400)
    msgs.insert(20, _job(500, T0 + 30_000))
    straight = feed(Processor(INV, PARAMS), msgs)
    first = Processor(INV, PARAMS)
    part1 = feed(first, msgs[:90])
    table = Table()
    table[b"gw-01"] = _v1_value(first, "gw-01")
    second = Processor(INV, PARAMS)
    part2 = run_worker_like(second, msgs, table, start=90, batch=1000)
    assert [encode(e.event) for e in part1 + part2] == [encode(e.event) for e in straight]
    assert {b"g:gw-01", b"b:boiler-0001.0"} <= set(table)


def _v1_value(proc: Processor, gateway: str) -> bytes:
    """What `Processor.export_gateway` wrote before the table was split into rows."""
    owned = INV.gateway_by_id[gateway].boilers
    liveness = proc.liveness.to_state()
    state = {
        "v": 1,
        "engine": proc.engine.to_state(gateway),
        "seq": proc.sequences[gateway].to_state(),
        "boilers": {
            b: {
                "ledger": st.ledger.to_state(),
                "rollups": st.rollups.to_state(),
                "efficiency": st.efficiency.to_state(),
                "leaks": st.leaks.to_state(),
                "quality": st.quality.to_state(),
            }
            for b in owned
            if (st := proc.boilers.get(b)) is not None
        },
        "liveness": {"max": liveness["max"], "row": liveness["gateways"].get(gateway)},
        "clock": proc.clocks[gateway].to_state() if gateway in proc.clocks else None,
    }
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
