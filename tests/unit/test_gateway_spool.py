"""The spool keeps messages durably, in order, within its byte bound, and applies
its full policy explicitly; the sequence allocator never reuses a number."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from heatstream.ingest.errors import SpoolFullError
from heatstream.ingest.sequence import SequenceAllocator
from heatstream.ingest.spool import Spool, SpoolRow


def _row(i: int, size: int = 100) -> SpoolRow:
    return SpoolRow(event_id=f"gw:{i}", key=b"gw", value=bytes([i % 256]) * (size - 2))


def _ids(rows) -> list[str | None]:
    return [r.event_id for r in rows]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "gw.spool.sqlite3"


def test_rows_leave_in_insertion_order(path: Path) -> None:
    spool = Spool(path, max_bytes=10_000)
    spool.append([_row(0), _row(1)])
    spool.append([_row(2)])
    claimed = spool.claim(max_rows=10, max_bytes=10**6)
    assert _ids(claimed) == ["gw:0", "gw:1", "gw:2"]
    assert claimed[0].key == b"gw" and claimed[0].value == _row(0).value
    assert spool.ack([claimed[0].pos, claimed[2].pos]) == 2  # partial ack: gw:1 failed
    assert _ids(spool.claim(10, 10**6)) == ["gw:1"]
    assert (spool.count, spool.bytes) == (1, 100)


def test_claim_is_bounded_but_always_makes_progress(path: Path) -> None:
    spool = Spool(path, max_bytes=10_000)
    spool.append([_row(i, size=1000) for i in range(5)])
    assert len(spool.claim(max_rows=3, max_bytes=10**6)) == 3
    assert len(spool.claim(max_rows=10, max_bytes=2500)) == 2
    assert len(spool.claim(max_rows=10, max_bytes=10)) == 1  # one row even if bigger


def test_reject_new_refuses_and_keeps_everything_accepted(path: Path) -> None:
    spool = Spool(path, max_bytes=1000, policy="reject_new")
    spool.append([_row(i) for i in range(10)])  # exactly full
    with pytest.raises(SpoolFullError, match="policy reject_new") as info:
        spool.append([_row(10)])
    assert info.value.spool_bytes == 1000 and info.value.max_bytes == 1000
    assert _ids(spool.claim(100, 10**6)) == [f"gw:{i}" for i in range(10)]


def test_drop_oldest_discards_the_oldest_not_in_flight(path: Path) -> None:
    spool = Spool(path, max_bytes=1000, policy="drop_oldest")
    spool.append([_row(i) for i in range(10)])
    in_flight = spool.claim(max_rows=2, max_bytes=10**6)  # gw:0, gw:1 being sent
    result = spool.append([_row(10), _row(11), _row(12)])
    assert result.dropped == ("gw:2", "gw:3", "gw:4")
    assert result.dropped_bytes == 300
    assert (spool.count, spool.bytes) == (10, 1000)
    spool.ack(r.pos for r in in_flight)
    assert _ids(spool.claim(100, 10**6)) == [f"gw:{i}" for i in range(5, 13)]


def test_drop_oldest_cannot_drop_what_is_in_flight(path: Path) -> None:
    spool = Spool(path, max_bytes=1000, policy="drop_oldest")
    spool.append([_row(i) for i in range(10)])
    spool.claim(max_rows=100, max_bytes=10**6)
    with pytest.raises(SpoolFullError):
        spool.append([_row(10)])


def test_a_batch_larger_than_the_spool_never_fits(path: Path) -> None:
    spool = Spool(path, max_bytes=1000, policy="drop_oldest")
    spool.append([_row(0)])
    with pytest.raises(SpoolFullError, match="can never fit"):
        spool.append([_row(1, size=1001)])
    assert spool.count == 1  # nothing dropped for a batch that cannot fit anyway


def test_reopen_after_close_keeps_rows_order_and_gauges(path: Path) -> None:
    spool = Spool(path, max_bytes=10_000)
    spool.append([_row(i) for i in range(5)])
    spool.ack([spool.claim(1, 10**6)[0].pos])
    spool.close()
    again = Spool(path, max_bytes=10_000)
    assert (again.count, again.bytes) == (4, 400)
    assert _ids(again.claim(100, 10**6)) == ["gw:1", "gw:2", "gw:3", "gw:4"]
    # Positions are never reused, so order holds across restarts even when emptied.
    last = again.claim(100, 10**6)[-1].pos
    again.ack(r.pos for r in again.claim(100, 10**6))
    assert again.head() is None
    assert again.append([_row(9)]).last_pos > last


def test_uncommitted_rows_of_a_killed_writer_are_not_visible(path: Path) -> None:
    spool = Spool(path, max_bytes=10_000)
    spool.append([_row(0)])
    # A writer that dies mid-transaction (simulated: began, never committed).
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO spool (event_id, key, value, size) VALUES ('x', NULL, x'00', 1)")
    other.close()  # closing without COMMIT rolls back, as a crash does
    spool.close()
    assert _ids(Spool(path, max_bytes=10_000).claim(100, 10**6)) == ["gw:0"]


def test_raw_rows_have_no_event_id_and_no_key(path: Path) -> None:
    spool = Spool(path, max_bytes=10_000)
    spool.append([SpoolRow(event_id=None, key=None, value=b"{not json")])
    (row,) = spool.claim(10, 10**6)
    assert (row.event_id, row.key, row.value, row.size) == (None, None, b"{not json", 9)


# -- sequence numbers ---------------------------------------------------------------


def test_sequence_persists_across_clean_restarts_without_gaps(path: Path) -> None:
    seq = SequenceAllocator(path, "gw-01", block=64)
    assert [seq.allocate() for _ in range(5)] == [0, 1, 2, 3, 4]
    seq.close()
    again = SequenceAllocator(path, "gw-01", block=64)
    assert again.peek == 5 and again.allocate() == 5


def test_sequence_is_never_reused_after_a_crash(path: Path) -> None:
    seq = SequenceAllocator(path, "gw-01", block=16)
    used = [seq.allocate() for _ in range(20)]  # crosses a block boundary
    # Crash: the process dies without close(); a new one opens the same database.
    after_crash = SequenceAllocator(path, "gw-01", block=16)
    first = after_crash.allocate()
    assert first > max(used)
    assert first - max(used) - 1 < 16  # the gap is bounded by the block


def test_sequence_block_of_one_leaves_no_gap_even_after_a_crash(path: Path) -> None:
    seq = SequenceAllocator(path, "gw-01", block=1)
    assert [seq.allocate() for _ in range(3)] == [0, 1, 2]
    assert SequenceAllocator(path, "gw-01", block=1).allocate() == 3


def test_sequences_of_gateways_sharing_a_database_are_independent(path: Path) -> None:
    a, b = SequenceAllocator(path, "gw-a"), SequenceAllocator(path, "gw-b")
    assert (a.allocate(), a.allocate(), b.allocate()) == (0, 1, 0)


def test_sequence_and_spool_share_the_database(path: Path) -> None:
    spool = Spool(path, max_bytes=10_000)
    seq = SequenceAllocator(path, "gw-01", block=4)
    spool.append([_row(seq.allocate())])
    seq.close()
    spool.close()
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert {"spool", "sequence"} <= tables


# -- the hot path: no read-back, range deletes ----------------------------------------


def _statements(spool: Spool) -> list[str]:
    seen: list[str] = []
    spool._db.set_trace_callback(seen.append)
    return seen


def test_a_healthy_gateway_never_reads_a_message_back(path: Path) -> None:
    spool = Spool(path, max_bytes=10**6, memory_bytes=10_000)
    sql = _statements(spool)
    for i in range(0, 30, 3):
        spool.append([_row(i), _row(i + 1), _row(i + 2)])
        claimed = spool.claim(max_rows=500, max_bytes=10**6)
        assert _ids(claimed) == [f"gw:{j}" for j in range(i, i + 3)]
        assert spool.ack(r.pos for r in claimed) == 3
        assert spool.head() is None
    assert not [s for s in sql if s.lstrip().upper().startswith("SELECT")]
    deletes = [s for s in sql if s.startswith("DELETE")]
    assert len(deletes) == 10 and all("BETWEEN" in s for s in deletes)  # one per batch
    assert (spool.count, spool.bytes) == (0, 0)


def test_a_backlog_beyond_memory_is_read_back_in_order(path: Path) -> None:
    spool = Spool(path, max_bytes=10**6, memory_bytes=350)  # the 3 newest rows fit
    for i in range(10):
        spool.append([_row(i)])
    sql = _statements(spool)
    first = spool.claim(max_rows=4, max_bytes=10**6)
    assert _ids(first) == ["gw:0", "gw:1", "gw:2", "gw:3"]
    assert any("SELECT pos, event_id, key, value" in s for s in sql)  # from disk
    spool.ack(r.pos for r in first)
    second = spool.claim(max_rows=100, max_bytes=10**6)
    assert _ids(second) == [f"gw:{i}" for i in range(4, 10)]
    assert [r.value for r in second] == [_row(i).value for i in range(4, 10)]
    spool.ack(r.pos for r in second)
    sql.clear()
    spool.append([_row(10)])
    assert _ids(spool.claim(10, 10**6)) == ["gw:10"]  # all in memory again
    assert not [s for s in sql if s.startswith("SELECT")]


def test_a_partial_ack_deletes_only_the_acknowledged_runs(path: Path) -> None:
    spool = Spool(path, max_bytes=10**6)
    spool.append([_row(i) for i in range(6)])
    claimed = spool.claim(10, 10**6)
    acked = [claimed[i].pos for i in (0, 1, 3, 5)]  # gw:2 and gw:4 failed
    assert spool.ack(acked) == 4
    assert (spool.count, spool.bytes) == (2, 200)
    assert _ids(spool.claim(10, 10**6)) == ["gw:2", "gw:4"]
    spool.close()
    assert _ids(Spool(path, max_bytes=10**6).claim(10, 10**6)) == ["gw:2", "gw:4"]


@pytest.mark.parametrize("memory_bytes", [0, 250, 10**6])
def test_the_spool_behaves_like_a_fifo_whatever_it_keeps_in_memory(
    path: Path, memory_bytes: int
) -> None:
    """Random appends, claims, partial acks, releases, drops and restarts against a
    plain list: the same rows leave in the same order, gauges agree."""
    rng = random.Random(memory_bytes)
    policy = "drop_oldest"
    spool = Spool(path, max_bytes=2_000, policy=policy, memory_bytes=memory_bytes)
    model: list[SpoolRow] = []
    n = 0
    for _ in range(400):
        op = rng.random()
        if op < 0.45:
            rows = [_row(n + k, size=rng.choice((50, 100, 300))) for k in range(rng.randint(1, 3))]
            n += len(rows)
            try:
                result = spool.append(rows)
            except SpoolFullError:
                continue
            dropped = set(result.dropped)
            model = [r for r in model if r.event_id not in dropped] + rows
        elif op < 0.9:
            claimed = spool.claim(rng.randint(1, 5), rng.choice((150, 10**6)))
            assert _ids(claimed) == _ids(model[: len(claimed)])
            assert [r.value for r in claimed] == [r.value for r in model[: len(claimed)]]
            if rng.random() < 0.2:
                spool.release()
                continue
            acked = {r.pos for r in claimed if rng.random() < 0.8}
            assert spool.ack(acked) == len(acked)
            gone = {r.event_id for r in claimed if r.pos in acked}
            model = [r for r in model if r.event_id not in gone]
        else:
            spool.close()
            spool = Spool(path, max_bytes=2_000, policy=policy, memory_bytes=memory_bytes)
        assert spool.count == len(model)
        assert spool.bytes == sum(r.size for r in model)
        assert (spool.head() is None) == (not model)
    assert _ids(spool.claim(1000, 10**9)) == _ids(model)
