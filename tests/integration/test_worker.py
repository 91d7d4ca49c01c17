"""The Faust worker on the real broker: derived events, dead letters, SIGKILL recovery.

The reference for every comparison is the pure `Processor` fed the same
messages in the same order: the worker must produce exactly its output, once
duplicates from a restart are removed by key.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
import rocksdict
from aiokafka import AIOKafkaProducer
from faust.stores.rocksdb import Store as RocksDBStore

from heatstream.inventory import Inventory, synthetic_inventory
from heatstream.schemas import topics
from heatstream.schemas.derived import HeatWindow
from heatstream.schemas.serde import decode_derived, encode
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.streams.app import STATE_TABLE
from heatstream.streams.processor import Origin, Processor, ProcessorParams
from heatstream.streams.windows import WindowParams
from tests.integration.worker_support import read_topics, start_worker, stop_worker, worker_app

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow]

T0 = 1_768_435_200_000
INV = synthetic_inventory(boilers=6, sites=2)
PARTITIONS = 4
OFFSET_KEY = RocksDBStore.offset_key


def messages(seconds: int, inventory: Inventory = INV) -> list[tuple[bytes, bytes]]:
    """One frame a second per gateway, of all its boilers (INV: two gateways of three)."""
    out = []
    for i in range(seconds):
        for gw in inventory.gateways:
            n = len(gw.boilers)
            t = T0 + i * 1000
            frame = TelemetryFrame(
                gateway=gw.id,
                seq=i,
                site=gw.site,
                event_time_ms=t,
                ingest_time_ms=t + 80,
                boilers=list(gw.boilers),
                boiler_idx=list(range(n)),
                dt_ms=[7 * b for b in range(n)],
                supply_temp_c=[60.0 + (i % 37) / 5 + b for b in range(n)],
                return_temp_c=[45.0] * n,
                flow_lpm=[10.0 + b for b in range(n)],
                it_power_kw=[15.0] * n,
                aux_power_kw=[0.4] * n,
                pressure_bar=[1.8] * n,
            )
            out.append((gw.id.encode(), encode(frame)))
    return out


def reference(
    msgs: list[tuple[bytes, bytes]], params: ProcessorParams, inventory: Inventory = INV
) -> dict[str, bytes]:
    by_gateway: dict[bytes, Processor] = {}
    out: dict[str, bytes] = {}
    for offset, (key, raw) in enumerate(msgs):
        proc = by_gateway.setdefault(key, Processor(inventory, params))
        for emit in proc.process(raw, key, Origin("x", 0, offset, T0)):
            if isinstance(emit.event, HeatWindow):
                out[emit.event.id] = encode(emit.event)
    return out


async def produce(bootstrap: str, topic: str, msgs: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in msgs]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def collect(
    bootstrap: str, topic: str, want: int, timeout_s: float
) -> tuple[dict[str, bytes], int]:
    """The first record of each event id on `topic`, and how many records it holds,
    once it holds `want` ids or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = await read_topics(bootstrap, [topic])
        seen: dict[str, bytes] = {}
        for record in records:
            seen.setdefault(decode_derived(record.value).id, record.value)
        if len(seen) >= want or time.monotonic() >= deadline:
            return seen, len(records)
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("restart_on", ["its data directory", "an empty data directory"])
def test_worker_killed_mid_window_loses_nothing_and_counts_nothing_twice(
    stack, tmp_path: Path, unique_name, restart_on: str
) -> None:
    """Restarted on an empty data directory, the worker rebuilds its state from the
    changelog alone, whose last record batch holds several rows: on the embedded
    broker, whose listed end offsets fall short, this needs fix_recovery_ends."""
    app = worker_app(
        stack.bootstrap,
        unique_name("w") + ".",
        PARTITIONS,
        INV,
        tmp_path,
        allowed_lateness_s="10",
        max_gap_s="5",
        liveness_check_s="1",
    )
    params = ProcessorParams(windows=WindowParams(allowed_lateness_ms=10_000, max_gap_ms=5_000))
    msgs = messages(seconds=420)
    poison = (b"gw-01", b'{"schema_name": "telemetry.frame", "schema_version": 2, "seq": "x"}')
    expected = reference(msgs, params)
    assert len(expected) == 36  # 6 boilers x 6 closed 1m windows (the 7th is still open)
    raw_topic, windows_topic = app.raw, app.topic(topics.HEAT_WINDOWS)
    log = tmp_path / "worker.log"
    datadir = tmp_path / "worker-state"

    first = start_worker(app.env, datadir, log)
    try:
        half = len(msgs) // 2
        asyncio.run(produce(stack.bootstrap, raw_topic, [*msgs[:half], poison]))
        got, _ = asyncio.run(collect(stack.bootstrap, windows_topic, want=6, timeout_s=90))
        assert len(got) >= 6, log.read_text()[-3000:]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)

    if restart_on == "an empty data directory":
        datadir = tmp_path / "new-worker-state"
    else:
        # The table's RocksDB writes no log (streams/store.py): what its memtables
        # held died with the process, offsets included, and the changelog alone
        # must bring it back. (With RocksDB's log, these offsets survive.)
        assert persisted_offsets(datadir) == {}
    second = start_worker(app.env, datadir, log)
    try:
        asyncio.run(produce(stack.bootstrap, raw_topic, msgs[half:]))
        got, total = asyncio.run(
            collect(stack.bootstrap, windows_topic, want=len(expected), timeout_s=150)
        )
    finally:
        stop_worker(second)
    assert set(got) == set(expected), log.read_text()[-3000:]
    assert got == expected  # byte for byte: nothing lost, nothing counted twice
    assert total >= len(expected)

    letters, _ = asyncio.run(
        collect(stack.bootstrap, app.topic(topics.DEAD_LETTERS), want=1, timeout_s=20)
    )
    (letter,) = (decode_derived(v) for v in letters.values()) if len(letters) == 1 else (None,)
    assert letter is not None and letter.reason == "schema_violation"  # type: ignore[union-attr]
    assert letter.original == poison[1]  # type: ignore[union-attr]

    # The wall-clock liveness check: this data is months old, so both gateways
    # are offline by the wall clock, reported once each (not part of replay).
    issues, _ = asyncio.run(
        collect(stack.bootstrap, app.topic(topics.DATA_QUALITY), want=2, timeout_s=20)
    )
    offline = {
        e.gateway for e in map(decode_derived, issues.values()) if e.kind == "gateway_offline"
    }
    assert offline == {"gw-01", "gw-02"}


def persisted_offsets(datadir: Path) -> dict[str, int]:
    """The changelog offsets that the table's databases in `datadir` hold (Faust
    records the last one written back with the rows), by database directory."""
    found = sorted(datadir.rglob(f"{STATE_TABLE}-*.db"))
    assert found, f"no database of the table under {datadir}"
    offsets = {}
    for path in found:
        db = rocksdict.Rdict(
            str(path),
            options=rocksdict.Options(raw_mode=True),
            access_type=rocksdict.AccessType.read_only(),
        )
        try:
            offset = db.get(OFFSET_KEY)
        finally:
            db.close()
        if offset is not None:
            offsets[path.name] = int(offset)
    return offsets


def test_worker_holds_a_gateway_of_130_boilers_across_a_sigkill(
    stack, tmp_path: Path, unique_name
) -> None:
    """A gateway whose whole state passes 1 MiB: it used to be one table value, one
    changelog record, and the worker died on MessageSizeTooLargeError. Now rows."""
    big = synthetic_inventory(boilers=130, sites=1)
    app = worker_app(
        stack.bootstrap,
        unique_name("wb") + ".",
        2,
        big,
        tmp_path,
        allowed_lateness_s="10",
        max_gap_s="5",
    )
    params = ProcessorParams(windows=WindowParams(allowed_lateness_ms=10_000, max_gap_ms=5_000))
    msgs = messages(seconds=150, inventory=big)
    expected = reference(msgs, params, big)
    assert len(expected) == 260  # 130 boilers x 2 closed 1m windows
    # The scenario is the one that crashed: the gateway's state, whole, is too
    # big for one record; each of its rows is small.
    proc, whole = Processor(big, params), 0
    for offset, (key, raw) in enumerate(msgs[:100]):
        proc.process(raw, key, Origin("x", 0, offset, T0))
        whole = max(whole, sum(len(v) for _, v in proc.rows_of("gw-01")))
    assert whole > 1_048_576
    assert max(len(v) for _, v in proc.rows_of("gw-01")) < 256 * 1024

    raw_topic, windows_topic = app.raw, app.topic(topics.HEAT_WINDOWS)
    log = tmp_path / "worker.log"
    datadir = tmp_path / "worker-state"
    first = start_worker(app.env, datadir, log)
    try:
        asyncio.run(produce(stack.bootstrap, raw_topic, msgs[:100]))  # first windows close at 75 s
        got, _ = asyncio.run(collect(stack.bootstrap, windows_topic, want=130, timeout_s=60))
        assert len(got) == 130, log.read_text()[-3000:]
        assert first.poll() is None, log.read_text()[-3000:]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)

    second = start_worker(app.env, datadir, log)
    try:
        asyncio.run(produce(stack.bootstrap, raw_topic, msgs[100:]))
        got, _ = asyncio.run(
            collect(stack.bootstrap, windows_topic, want=len(expected), timeout_s=60)
        )
        assert second.poll() is None, log.read_text()[-3000:]
    finally:
        stop_worker(second)
    text = log.read_text(errors="replace")
    assert "MessageSizeTooLarge" not in text and "Crashed reason" not in text, text[-3000:]
    assert "byte limit of a changelog record" not in text  # no row hit the size guard
    assert got == expected  # byte for byte, across the kill: the boiler rows came back
