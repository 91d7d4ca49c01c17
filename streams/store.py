"""The worker's table store: Faust's RocksDB store, writing without RocksDB's log.

The state table's durable copy is its changelog topic; the RocksDB database in
the worker's data directory is a local cache of it, which lets a worker that
restarts on its own directory replay only the changelog written since. RocksDB
also logs every write to a write-ahead log before it reaches the memtable, so
that an unflushed memtable survives a crash. For this cache that log is a third
copy of every row (the changelog has it, and a flush writes it again), written
in the agent's thread. 50,000 puts of 0.3-40 KB rows took 75-110 us of CPU each
with the log and 50-65 us without (flushes included); in the worker benchmark
(10,000 boilers, three interleaved pairs) the worker's readings per CPU-second
rose from 1.21-1.26 M to 1.30-1.31 M and its table recovery fell from 3.6-3.7 s
to 2.8-3.1 s.

Without the log, a worker killed before a memtable is flushed loses what the
memtable held, and only that: a database has one column family, whose
memtables are flushed in the order they were written, so what survives is a
prefix of the writes. Faust records a changelog partition's persisted offset in
the same database, after the row it names (when the broker acknowledges the
row, which is written to the store before it is sent), so the surviving offset
never names a row the database lost: recovery replays the changelog from there,
rewriting the rows lost with it. A clean stop loses nothing (RocksDB flushes
unlogged memtables when a database is closed).
"""

from __future__ import annotations

from typing import Any

from faust.stores import STORES
from faust.stores.rocksdb import Store as RocksDBStore
from rocksdict import WriteOptions

SCHEME = "heatstream-rocksdb"


def store_url(table: str) -> str:
    """The `store=` URL of a table kept in `TableStore`: its path is the table's name,
    as Faust's own store makes it, so the database directories keep their names.
    (A URL without a path, "heatstream-rocksdb://", is false to yarl, and Faust
    then takes the app's store instead.)"""
    return f"{SCHEME}:{table}"


def _unlogged() -> Any:
    options = WriteOptions()
    # A setter in rocksdict, declared as a method in its stub.
    options.disable_wal = True  # type: ignore[method-assign, assignment]
    return options


class TableStore(RocksDBStore):
    """`faust.stores.rocksdb.Store` whose databases write without a write-ahead log."""

    def _open_for_partition(self, partition: int) -> Any:
        db = super()._open_for_partition(partition)
        if self.use_rocksdict:  # python-rocksdb, if Faust were told to use it, keeps its log
            db.set_write_options(_unlogged())
        return db


STORES.aliases.setdefault(SCHEME, f"{__name__}:TableStore")
