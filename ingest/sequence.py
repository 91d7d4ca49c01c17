"""Per-gateway sequence numbers that never go backwards, even across crashes.

An event's id is `<gateway>:<seq>`, and downstream de-duplicates on it, so a
number reused for different content would silently discard a real event. The
allocator therefore *reserves* numbers durably before handing them out: it
commits "next free = n + block" to the gateway's SQLite database, then serves
n .. n + block - 1 from memory. A clean `close()` gives the unused rest back;
a crash loses it, leaving a gap of fewer than `block` numbers, which downstream
reports as a gap (the honest outcome: it cannot tell unused numbers from lost
events). Reuse is impossible because nothing is served before its reservation
is committed.

It uses its own connection (to the spool's database file): allocation happens
synchronously when an event is sealed, while the spool's connection works in
its own thread.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sequence (
    gateway TEXT PRIMARY KEY,
    next_free INTEGER NOT NULL  -- every number below it may have been used
)
"""


class SequenceAllocator:
    def __init__(self, path: Path, gateway: str, *, block: int = 64) -> None:
        if block < 1:
            raise ValueError(f"block = {block} must be >= 1")
        self.gateway = gateway
        self.block = block
        # Autocommit mode: every statement below is its own durable transaction.
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a reservation must be on disk before any number of it is used.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        row = self._db.execute(
            "SELECT next_free FROM sequence WHERE gateway = ?", (gateway,)
        ).fetchone()
        self._next = 0 if row is None else int(row[0])
        self._reserved_until = self._next  # numbers in [_next, _reserved_until) are ours
        self._closed = False

    @property
    def peek(self) -> int:
        """The number the next `allocate()` returns."""
        return self._next

    def allocate(self) -> int:
        if self._next >= self._reserved_until:
            self._persist(self._next + self.block)
            self._reserved_until = self._next + self.block
        seq = self._next
        self._next += 1
        return seq

    def close(self) -> None:
        """Give back the unused part of the reservation (no gap after a clean stop)."""
        if self._closed:
            return
        self._persist(self._next)
        self._db.close()
        self._closed = True

    def _persist(self, next_free: int) -> None:
        self._db.execute(
            "INSERT INTO sequence (gateway, next_free) VALUES (?, ?)"
            " ON CONFLICT (gateway) DO UPDATE SET next_free = excluded.next_free",
            (self.gateway, next_free),
        )
