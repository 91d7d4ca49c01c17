"""The benchmarks' machine speed gauge: a positive rate, and the collector left as it was."""

from __future__ import annotations

import gc

import pytest

from benchmarks.stages import GAUGE_SECONDS, gauge_workload, speed_gauge
from benchmarks.workload import Message, simulate
from heatstream.inventory import Inventory


@pytest.fixture(scope="module")
def workload() -> tuple[list[Message], int, Inventory]:
    return gauge_workload(simulate(100, GAUGE_SECONDS))


@pytest.mark.parametrize("enabled", [True, False])
def test_the_gauge_leaves_the_garbage_collector_as_it_found_it(
    workload: tuple[list[Message], int, Inventory], enabled: bool
) -> None:
    messages, readings, inventory = workload
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        rate = speed_gauge(messages, readings, inventory)
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
    assert rate > 0
    assert readings == GAUGE_SECONDS * 100 * 12  # every reading of 20 frames of 100 boilers
