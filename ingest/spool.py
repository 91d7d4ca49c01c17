"""The store-and-forward spool: a bounded, durable FIFO of encoded Kafka messages.

Every event the gateway accepts is committed here first and deleted only after
the broker acknowledged it (acks=all), so a crash, a power cut (with
`synchronous=FULL`) or a broker outage loses nothing that was accepted; the
price is at-least-once delivery, which downstream de-duplication by event id
turns into exactly-once.

SQLite in WAL mode: readers never block the writer, and a commit is one append
to the WAL file. `synchronous`:

* FULL (default): the WAL is fsynced at every commit, so an accepted event
  survives a power cut. The gateway commits once per frame (about once a
  second), so the fsync costs nothing that matters.
* NORMAL: the WAL is fsynced only at checkpoints. A commit is still in the OS
  page cache when the call returns, so it survives the gateway *process* being
  killed (SIGKILL, OOM) but not the machine losing power. For simulators.

Rows leave in insertion order (`pos`, never reused thanks to AUTOINCREMENT),
which is sequence order unless the caller deliberately sent events out of
order. The bound counts message bytes (value + key); the file itself is a bit
larger and keeps its high-water size after draining (SQLite reuses free pages).

Cheap on the hot path, because a healthy gateway writes every message once and
then deletes it: the most recent rows are also kept in memory (`memory_bytes`,
a suffix of the spool), so the sender claims them without reading them back
from disk, and acknowledged rows are deleted by position range, one statement
per run of consecutive rows, with sizes already known. Only a backlog larger
than `memory_bytes`, or rows left by an earlier process, are read from SQLite.

When a new batch does not fit, the policy decides, explicitly:

* `reject_new`: the batch is refused with SpoolFullError; nothing already
  accepted is ever lost.
* `drop_oldest`: the oldest rows not currently in flight are deleted, in the
  same transaction as the insert, and reported to the caller (who counts and
  logs them).

Not thread-safe: the gateway calls it from one dedicated thread.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from heatstream.ingest.config import SpoolFullPolicy
from heatstream.ingest.errors import SpoolFullError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT,          -- NULL for raw (unvalidated) messages
    key BLOB,
    value BLOB NOT NULL,
    size INTEGER NOT NULL   -- len(value) + len(key): what the bound counts
)
"""


@dataclass(frozen=True, slots=True)
class SpoolRow:
    """One Kafka message waiting to be sent."""

    event_id: str | None
    key: bytes | None
    value: bytes

    @property
    def size(self) -> int:
        return len(self.value) + (len(self.key) if self.key else 0)


@dataclass(frozen=True, slots=True)
class StoredRow:
    pos: int
    event_id: str | None
    key: bytes | None
    value: bytes
    size: int


@dataclass(frozen=True, slots=True)
class AppendResult:
    last_pos: int
    dropped: tuple[str | None, ...] = ()  # event ids (None: raw) discarded by drop_oldest
    dropped_bytes: int = 0


class Spool:
    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        policy: SpoolFullPolicy = "reject_new",
        synchronous: Literal["NORMAL", "FULL"] = "FULL",
        memory_bytes: int = 16 * 2**20,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.policy = policy
        self.memory_bytes = memory_bytes
        # check_same_thread=False: opened by the event loop's thread, then used only
        # by the gateway's single spool thread.
        self._db = sqlite3.connect(
            path, isolation_level=None, timeout=30.0, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute(_SCHEMA)
        count, total = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM spool"
        ).fetchone()
        self.count: int = int(count)
        self.bytes: int = int(total)
        self._claimed_upto = 0  # rows with pos <= this are in flight
        self._claimed: dict[int, StoredRow] = {}  # the rows of the current claim
        # The newest rows, also in memory: always a suffix of the spool (every row
        # with pos >= _tail[0].pos is in it), so len(_tail) == count means all of it.
        self._tail: deque[StoredRow] = deque()
        self._tail_bytes = 0
        self._closed = False

    # -- writing ------------------------------------------------------------------

    def append(self, rows: Sequence[SpoolRow]) -> AppendResult:
        """Commit `rows` durably, in order (one transaction), or raise SpoolFullError."""
        if not rows:
            raise ValueError("append() needs at least one row")
        needed = sum(r.size for r in rows)
        if needed > self.max_bytes:
            raise SpoolFullError(
                f"{len(rows)} message(s) of {needed} bytes can never fit a spool of"
                f" {self.max_bytes} bytes",
                spool_bytes=self.bytes,
                max_bytes=self.max_bytes,
            )
        victims: list[tuple[int, str | None, int]] = []
        if self.bytes + needed > self.max_bytes:
            if self.policy == "reject_new":
                raise self._full(needed)
            victims = self._oldest_unclaimed(self.bytes + needed - self.max_bytes)
            if self.bytes - sum(v[2] for v in victims) + needed > self.max_bytes:
                raise self._full(needed)  # the rest is in flight; cannot make room now
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if victims:
                db.executemany("DELETE FROM spool WHERE pos = ?", [(v[0],) for v in victims])
            stored = []
            for r in rows:
                cursor = db.execute(
                    "INSERT INTO spool (event_id, key, value, size) VALUES (?, ?, ?, ?)",
                    (r.event_id, r.key, r.value, r.size),
                )
                assert cursor.lastrowid is not None
                stored.append(StoredRow(cursor.lastrowid, r.event_id, r.key, r.value, r.size))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        last_pos = stored[-1].pos
        dropped_bytes = sum(v[2] for v in victims)
        self.count += len(rows) - len(victims)
        self.bytes += needed - dropped_bytes
        if victims:
            self._forget({v[0] for v in victims})
        self._remember(stored)
        return AppendResult(
            last_pos=last_pos,
            dropped=tuple(v[1] for v in victims),
            dropped_bytes=dropped_bytes,
        )

    def _remember(self, rows: list[StoredRow]) -> None:
        tail = self._tail
        tail.extend(rows)
        self._tail_bytes += sum(r.size for r in rows)
        while tail and self._tail_bytes > self.memory_bytes:
            self._tail_bytes -= tail.popleft().size  # still on disk, read back when due

    def _forget(self, positions: set[int]) -> None:
        """Drop deleted rows from the in-memory tail (it stays a suffix of the spool)."""
        tail = self._tail
        while tail and tail[0].pos in positions:
            self._tail_bytes -= tail.popleft().size
        if tail and any(p >= tail[0].pos for p in positions):
            kept = [r for r in tail if r.pos not in positions]
            self._tail = deque(kept)
            self._tail_bytes = sum(r.size for r in kept)

    def _full(self, needed: int) -> SpoolFullError:
        return SpoolFullError(
            f"spool full: {self.bytes} of {self.max_bytes} bytes used, {needed} more needed"
            f" (policy {self.policy}); the broker has been unreachable or slow for a while",
            spool_bytes=self.bytes,
            max_bytes=self.max_bytes,
        )

    def _oldest_unclaimed(self, to_free: int) -> list[tuple[int, str | None, int]]:
        victims: list[tuple[int, str | None, int]] = []
        freed = 0
        cursor = self._db.execute(
            "SELECT pos, event_id, size FROM spool WHERE pos > ? ORDER BY pos",
            (self._claimed_upto,),
        )
        for pos, event_id, size in cursor:
            victims.append((pos, event_id, size))
            freed += size
            if freed >= to_free:
                break
        cursor.close()
        return victims

    # -- draining -----------------------------------------------------------------

    def claim(self, max_rows: int, max_bytes: int) -> list[StoredRow]:
        """The oldest rows (at least one if any), marked in flight until ack or release."""
        rows: list[StoredRow] = []
        total = 0
        in_memory = bool(self._tail) and len(self._tail) == self.count
        cursor = None
        if in_memory:
            source: Iterable[Any] = self._tail
        else:
            cursor = self._db.execute(
                "SELECT pos, event_id, key, value, size FROM spool ORDER BY pos LIMIT ?",
                (max_rows,),
            )
            source = cursor
        try:
            for item in source:
                row = item if in_memory else StoredRow(*item)
                if len(rows) >= max_rows or (rows and total + row.size > max_bytes):
                    break
                rows.append(row)
                total += row.size
        finally:
            if cursor is not None:
                cursor.close()
        self._claimed = {r.pos: r for r in rows}
        self._claimed_upto = rows[-1].pos if rows else 0
        return rows

    def ack(self, positions: Iterable[int]) -> int:
        """Delete the acknowledged rows and end the claim; returns how many were deleted."""
        acked = sorted(set(positions))
        deleted = 0
        if acked:
            claimed = self._claimed
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                before = db.total_changes
                if all(p in claimed for p in acked):
                    # Claimed rows are consecutive in the spool: a run of acknowledged
                    # ones is a position range holding no other row.
                    freed = sum(claimed[p].size for p in acked)
                    db.executemany(
                        "DELETE FROM spool WHERE pos BETWEEN ? AND ?", _runs(acked, claimed)
                    )
                else:  # not from the current claim: look each row up
                    freed = sum(
                        row[0]
                        for p in acked
                        for row in db.execute("SELECT size FROM spool WHERE pos = ?", (p,))
                    )
                    db.executemany("DELETE FROM spool WHERE pos = ?", [(p,) for p in acked])
                deleted = db.total_changes - before
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self.count -= deleted
            self.bytes -= freed
            self._forget(set(acked))
        self._claimed = {}
        self._claimed_upto = 0
        return deleted

    def release(self) -> None:
        """End the claim without deleting anything (the send failed)."""
        self._claimed = {}
        self._claimed_upto = 0

    def head(self) -> int | None:
        """Position of the oldest row, None when empty."""
        if self.count == 0:
            return None
        if self._tail and len(self._tail) == self.count:
            return self._tail[0].pos
        row = self._db.execute("SELECT min(pos) FROM spool").fetchone()
        return None if row[0] is None else int(row[0])

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()


def _runs(acked: list[int], claimed: dict[int, StoredRow]) -> list[tuple[int, int]]:
    """(first, last) positions of each run of acknowledged rows consecutive in the claim."""
    order = sorted(claimed)
    rank = {p: i for i, p in enumerate(order)}
    runs: list[tuple[int, int]] = []
    for p in acked:
        if runs and rank[p] == rank[runs[-1][1]] + 1:
            runs[-1] = (runs[-1][0], p)
        else:
            runs.append((p, p))
    return runs
