"""The worker's health sample: counters summed over partitions and cumulative across
rebalances, consumer lag per partition, latency per interval (streams/health.py), and
the Faust probes that feed it (streams/probes.py), without a broker."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest
from faust.exceptions import ConsumerNotStarted
from faust.types import TP, Message
from pydantic import ValidationError

from heatstream.schemas.health import HealthSample
from heatstream.schemas.serde import decode_derived, encode
from heatstream.settings import load_settings
from heatstream.streams.health import (
    COUNTERS,
    Latency,
    WorkerHealth,
    partition_lag,
    total_counts,
)
from heatstream.streams.probes import LatencySensor, consumer_lag
from heatstream.streams.processor import Counters

T = 1_768_435_200_000
ZERO = dict.fromkeys(COUNTERS, 0)


def test_every_integer_counter_of_the_processor_is_reported() -> None:
    ints = {f.name for f in dataclasses.fields(Counters) if f.type == "int"}
    assert set(COUNTERS) == ints  # a new counter must be added here and documented


def test_a_sample_sums_the_partitions_counters_exactly() -> None:
    p0 = Counters(messages=40, frames=38, compute_events=2, readings=9_120, windows=6)
    p1 = Counters(messages=25, frames=23, readings=5_520, dead_letters=2, late_events=1)
    p1.late_samples, p1.quarantined, p1.duplicates, p1.dq_issues = 17, 3, 1, 4
    p1.by_reason["schema_violation"] += 2
    health = WorkerHealth("worker-1", started_ms=T, started_s=100.0)
    health.latency.observe(0.010)
    health.latency.observe(0.030)
    health.latency.observe(0.020)

    sample = health.sample([p0, p1], {0: 12, 1: 0}, time_ms=T + 5_000, now_s=105.25)

    assert sample == HealthSample(
        component="worker",
        process="worker-1",
        started_ms=T,
        time_ms=T + 5_000,
        interval_s=5.25,
        counters={
            **ZERO,
            "messages": 65,
            "frames": 61,
            "compute_events": 2,
            "readings": 14_640,
            "duplicates": 1,
            "dead_letters": 2,
            "late_events": 1,
            "late_samples": 17,
            "quarantined": 3,
            "windows": 6,
            "dq_issues": 4,
        },
        latencies_ms={"processing_latency_ms": 20.0, "processing_latency_max_ms": 30.0},
        consumer_lag={0: 12, 1: 0},
    )
    assert sample.key == "worker-1"
    assert decode_derived(encode(sample)) == sample  # through the health topic and back


def test_counters_are_cumulative_across_samples_and_rebalances() -> None:
    health = WorkerHealth("w", started_ms=T, started_s=0.0)
    p0, p1 = Counters(readings=100), Counters(readings=50)
    first = health.sample([p0, p1], {}, time_ms=T + 5_000, now_s=5.0)
    p0.readings += 10
    p1.readings += 7  # counted after the last sample, then its partition is revoked
    p1_again = Counters(readings=20)  # the partition comes back: a new processor re-reads
    second = health.sample([p0, p1_again], {}, time_ms=T + 10_000, now_s=10.0)
    assert first.counters["readings"] == 150
    assert second.counters["readings"] == 110 + 57 + 20  # never goes down
    assert (first.interval_s, second.interval_s) == (5.0, 5.0)
    assert total_counts([]) == ZERO


def test_latency_is_per_interval_and_absent_when_nothing_was_measured() -> None:
    latency = Latency()
    assert latency.take("processing_latency") == {}
    latency.observe(0.5)
    assert latency.take("processing_latency") == {
        "processing_latency_ms": 500.0,
        "processing_latency_max_ms": 500.0,
    }
    assert latency.take("processing_latency") == {}  # started over


def test_partition_lag_leaves_unknown_partitions_out_and_never_goes_negative() -> None:
    ends = {0: 1_000, 1: 50, 2: None, 3: 10}
    committed = {0: 990, 1: None, 2: 5, 3: 12}  # 3: a broker short of its real end
    assert partition_lag(ends, committed) == {0: 10, 3: 0}


@pytest.mark.parametrize(
    ("counters", "latencies"),
    [
        ({"Readings": 1}, {}),
        ({"consumer_lag": 1}, {}),
        ({"consumer_lag_p2": 1}, {}),
        ({"x": 1}, {"x": 1.0}),
        ({"x": -1}, {}),
    ],
)
def test_a_sample_refuses_names_that_are_not_its_own_fields(
    counters: dict[str, int], latencies: dict[str, float]
) -> None:
    with pytest.raises(ValidationError):
        HealthSample(
            component="worker",
            process="w",
            started_ms=T,
            time_ms=T,
            interval_s=0.0,
            counters=counters,
            latencies_ms=latencies,
        )


def test_health_interval_setting() -> None:
    assert load_settings().streams.health_interval_s == 5.0
    assert load_settings(streams={"health_interval_s": 0}).streams.health_interval_s == 0
    with pytest.raises(ValidationError):
        load_settings(streams={"health_interval_s": -1})
    with pytest.raises(ValidationError):
        load_settings(streams={"process_name": "two words"})


# -- the Faust probes -----------------------------------------------------------------


def _message(topic: str, offset: int) -> Message:
    return Message(topic, 0, offset, T / 1000, 0, None, b"gw", b"{}", None)


def test_the_sensor_measures_raw_messages_from_delivery_to_ack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([10.0, 10.25, 11.0])
    monkeypatch.setattr("heatstream.streams.probes.monotonic", lambda: next(clock))
    latency = Latency()
    sensor = LatencySensor(latency, "raw")
    raw, other = _message("raw", 1), _message("other", 2)
    sensor.on_message_in(TP("raw", 0), 1, raw)
    assert raw.time_in == 10.0  # or Faust's monitor's stamp, on the same clock
    sensor.on_message_out(TP("raw", 0), 1, raw)  # at 10.25
    other.time_in = 10.0
    sensor.on_message_out(TP("other", 0), 2, other)  # not the raw topic: ignored
    assert latency.take("processing_latency") == {
        "processing_latency_ms": 250.0,
        "processing_latency_max_ms": 250.0,
    }


def _app(assignment: Any, ends: dict[TP, int], committed: dict[TP, int]) -> Any:
    def assigned() -> set[TP]:
        if isinstance(assignment, Exception):
            raise assignment
        return assignment

    return SimpleNamespace(
        consumer=SimpleNamespace(assignment=assigned),
        monitor=SimpleNamespace(tp_end_offsets=ends, tp_committed_offsets=committed),
    )


def test_consumer_lag_reads_faust_monitor_for_assigned_raw_partitions() -> None:
    raw0, raw1, raw5, changelog = TP("raw", 0), TP("raw", 1), TP("raw", 5), TP("state", 0)
    ends = {raw0: 120, raw1: 40, raw5: 9, changelog: 1_000}
    committed = {raw0: 100, raw5: 9, changelog: 0}  # raw1: nothing committed yet
    app = _app({raw0, raw1, changelog}, ends, committed)  # raw5 was revoked
    assert consumer_lag(app, "raw") == {0: 20}
    assert consumer_lag(_app(ConsumerNotStarted("not yet"), ends, committed), "raw") == {}
