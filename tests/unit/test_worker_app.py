"""The Faust app's wiring that no integration test sees: options of its table store."""

from __future__ import annotations

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
