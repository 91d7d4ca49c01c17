"""The Faust app's wiring that no integration test sees: options of its table store."""

from __future__ import annotations

import gc
from pathlib import Path

from heatstream.inventory import synthetic_inventory
from heatstream.settings import load_settings
from heatstream.streams.app import build_app


def test_state_store_memtables_are_small(tmp_path: Path) -> None:
    # Faust's default memtables (3 x 64 MiB per partition) take half an hour to fill
    # with live delta rows, and the worker's memory grows all that time.
    settings = load_settings(stack={"data_dir": tmp_path, "kafka_port": 0, "influx_port": 0})
    app = build_app(settings, synthetic_inventory(boilers=4, sites=2), datadir=tmp_path)
    (table,) = app.tables.values()
    options = table._new_store().rocksdb_options
    assert options.write_buffer_size == 2 * 2**20
    assert options.max_write_buffer_number == 2


def test_producer_record_batches_follow_the_setting(tmp_path: Path) -> None:
    # Faust's 16 KiB default made waiting for changelog acknowledgements a fifth of
    # the worker's time; the batch size is a setting, 900 KiB unless changed.
    inventory = synthetic_inventory(boilers=4, sites=2)
    stack = {"data_dir": tmp_path, "kafka_port": 0, "influx_port": 0}
    default = build_app(load_settings(stack=stack), inventory, datadir=tmp_path)
    assert default.conf.producer_max_batch_size == 900 * 1024
    smaller = load_settings(stack=stack, streams={"producer_batch_kib": 256})
    assert (
        build_app(smaller, inventory, datadir=tmp_path).conf.producer_max_batch_size == 256 * 1024
    )


def _logged_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.log"))


def test_state_store_writes_no_write_ahead_log_and_keeps_rows_on_close(tmp_path: Path) -> None:
    # The changelog is the table's durable copy; RocksDB's own log was a third copy of
    # every row written in the agent's thread (streams/store.py).
    settings = load_settings(stack={"data_dir": tmp_path, "kafka_port": 0, "influx_port": 0})
    inventory = synthetic_inventory(boilers=4, sites=2)
    row = bytes(range(256)) * 1024  # 256 KiB, well inside one 2 MiB memtable

    (faust_table,) = build_app(settings, inventory, datadir=tmp_path / "f").tables.values()
    shipped = faust_table._new_store_by_url("rocksdb://")  # Faust's store, as the premise
    shipped._db_for_partition(0).put(b"row", row)
    assert _logged_bytes(shipped.partition_path(0)) >= len(row)

    (table,) = build_app(settings, inventory, datadir=tmp_path / "h").tables.values()
    ours = table._new_store()
    # The same directory as Faust's store: a worker's existing data stays in use.
    assert ours.partition_path(0).name == shipped.partition_path(0).name
    db = ours._db_for_partition(0)
    db.put(b"row", row)
    assert _logged_bytes(ours.partition_path(0)) < 4096
    # Faust drops its databases on stop and revocation; closing flushes the memtable.
    del db
    ours._dbs.clear()
    gc.collect()
    assert ours._db_for_partition(0).get(b"row") == row
