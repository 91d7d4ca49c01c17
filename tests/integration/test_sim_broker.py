"""The simulator against the real (embedded) broker, through the real gateway SDK.

What the issue asks to prove on the broker: the same seed gives the same bytes;
each injected fault is visible in the raw data where the physics says it should
be; and the simulator's own heat totals agree with an independent integration
of the frames the broker holds.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from typer.testing import CliRunner

from heatstream.ingest.simulator import SimConfig, Simulation, parse_fault_spec
from heatstream.ingest.simulator.publish import Publisher, PublishOptions, PublishReport
from heatstream.schemas.errors import EventError
from heatstream.schemas.serde import decode_raw
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.stack import EmbeddedStack
from heatstream.streams.water import thermal_power_kw

pytestmark = pytest.mark.integration

MIN = 60_000
PARTITIONS = 4


async def _create(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=PARTITIONS,
                    replication_factor=1,
                    topic_configs={"retention.ms": "-1", "cleanup.policy": "delete"},
                )
            ]
        )
    finally:
        await admin.close()


async def _read(bootstrap: str, topic: str, expected: int, timeout_s: float) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 2**20,
        fetch_max_bytes=64 * 2**20,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            records.extend(r for batch in batches.values() for r in batch)
    finally:
        await consumer.stop()
    return records


def _per_partition(records: list[Any]) -> str:
    """Records, last offset and holes per partition: what tells a broker that lost
    acknowledged records (holes, or fewer records than acknowledged) from a consumer
    that stopped short of records the broker holds."""
    offsets: dict[int, list[int]] = defaultdict(list)
    for r in records:
        offsets[r.partition].append(r.offset)
    parts = []
    for p in range(PARTITIONS):
        got = sorted(offsets.get(p, []))
        holes = (got[-1] + 1 - len(set(got))) if got else 0
        parts.append(
            f"p{p}: {len(got)} records, last offset {got[-1] if got else None}, {holes} holes"
        )
    return "; ".join(parts)


async def _consume(bootstrap: str, topic: str, expected: int) -> list[Any]:
    """Every record of `topic` (`expected` of them: what the gateways had acknowledged).

    A consumer that stops short is followed by a fresh one before failing, and the
    failure says what each saw per partition."""
    records = await _read(bootstrap, topic, expected, timeout_s=60)
    if len(records) == expected:
        return records
    first = _per_partition(records)
    again = await _read(bootstrap, topic, expected, timeout_s=30)
    assert len(again) == expected, (
        f"{expected} records acknowledged to the gateways; a first consumer read"
        f" {len(records)} ({first}), a fresh one {len(again)} ({_per_partition(again)})"
    )
    warnings.warn(
        f"{topic}: the first consumer stopped at {len(records)} of {expected} records"
        f" ({first}); a fresh consumer read them all",
        stacklevel=1,
    )
    return again


def publish_to_broker(
    stack: EmbeddedStack, topic: str, sim: Simulation, **options: Any
) -> tuple[PublishReport, list[Any]]:
    async def go() -> tuple[PublishReport, list[Any]]:
        await _create(stack.bootstrap, topic)
        report = await Publisher(
            sim, stack.settings.kafka, PublishOptions(topic=topic, **options)
        ).run()
        return report, await _consume(stack.bootstrap, topic, report.sent + report.raw_sent)

    return asyncio.run(go())


def by_key(records: list[Any]) -> dict[bytes, list[bytes]]:
    """Per key (= per gateway = one partition), the values in log order."""
    out: dict[bytes, list[bytes]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out[r.key].append(r.value)
    return dict(out)


def series(records: list[Any]) -> dict[str, dict[str, np.ndarray]]:
    """What a pipeline would see: valid frames, de-duplicated by event id, per boiler."""
    seen: set[str] = set()
    acc: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        try:
            event = decode_raw(r.value)
        except EventError:
            continue
        if event.event_id in seen or not isinstance(event, TelemetryFrame):
            continue
        seen.add(event.event_id)
        idx = np.asarray(event.boiler_idx)
        for j, boiler in enumerate(event.boilers):
            rows = idx == j
            acc[boiler]["t"].append(event.t_ms[rows])
            for name, values in event.columns.items():
                acc[boiler][name].append(values[rows])
    out = {}
    for boiler, columns in acc.items():
        t = np.concatenate(columns.pop("t"))
        order = np.argsort(t, kind="stable")
        out[boiler] = {"t": t[order], **{k: np.concatenate(v)[order] for k, v in columns.items()}}
    return out


def simulation(*faults: str, **config: Any) -> Simulation:
    base: dict[str, Any] = {
        "boilers": 6,
        "sites": 3,
        "duration_ms": 60 * MIN,
        "seed": 21,
        "frame_span_ms": 10_000,
    }
    base.update(config)
    return Simulation(SimConfig(faults=tuple(parse_fault_spec(f) for f in faults), **base))


TRANSPORT_FAULTS = (
    "duplicates:gw-01@5m+20m:prob=0.2",
    "out_of_order:gw-02@5m+20m:prob=0.2",
    "gateway_offline:gw-03@10m+10m",
    "malformed:gw-03@30m",  # one of each sub-kind
    "slow_leak@20m",
)


def test_same_seed_same_bytes_on_the_broker(
    stack: EmbeddedStack, unique_name, tmp_path: Path
) -> None:
    capture = tmp_path / "a.jsonl"
    runs = {}
    for name, seed in (("a", 21), ("b", 21), ("c", 22)):
        options = {"output": capture} if name == "a" else {}
        report, records = publish_to_broker(
            stack, unique_name(f"sim_{name}"), simulation(*TRANSPORT_FAULTS, seed=seed), **options
        )
        assert report.malformed > 0 and report.foreign > 0 and report.duplicates > 0
        runs[name] = by_key(records)
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]
    # --output holds exactly what the broker holds, gateway by gateway.
    captured: dict[bytes, list[bytes]] = defaultdict(list)
    for line in capture.read_bytes().splitlines():
        entry = orjson.loads(line)
        captured[entry["key"].encode()].append(entry["value"].encode())
    assert dict(captured) == runs["a"]


@pytest.fixture(scope="module")
def with_and_without_faults(stack: EmbeddedStack) -> dict[str, Any]:
    import uuid

    faults = (
        "slow_leak:boiler-0002@15m:rate_lpm=0.3",
        "fouling:boiler-0003@10m:loss=0.35,ramp_h=0.5",
        "pump_failure:boiler-0004@20m+15m",
    )
    out: dict[str, Any] = {}
    for name, specs in (("base", ()), ("faulty", faults)):
        sim = simulation(*specs)
        report, records = publish_to_broker(
            stack, f"sim_physics_{name}_{uuid.uuid4().hex[:8]}", sim
        )
        out[name] = (sim, report, series(records))
    return out


def _window(s: dict[str, np.ndarray], start_ms: int, a_min: float, b_min: float) -> np.ndarray:
    t = s["t"] // 1000 * 1000 - start_ms
    return (t >= a_min * MIN) & (t < b_min * MIN)


def test_each_fault_is_visible_where_the_physics_says(with_and_without_faults) -> None:
    base_sim, _, base = with_and_without_faults["base"]
    sim, _, faulty = with_and_without_faults["faulty"]
    start = sim.start_ms

    # Slow leak: pressure decays (no thermal cause: same temperatures as without the leak).
    b, f = base["boiler-0002"], faulty["boiler-0002"]
    leak = _window(f, start, 15, 40)
    assert (b["pressure_bar"][leak] - f["pressure_bar"][leak]).max() > 0.5
    assert np.abs(f["supply_temp_c"][leak] - b["supply_temp_c"][leak]).max() < 0.01
    assert f["makeup_flow_lpm"][_window(f, start, 15, 60)].max() > 3

    # Fouling: the loop comes back hotter.
    b, f = base["boiler-0003"], faulty["boiler-0003"]
    late = _window(f, start, 45, 60)
    assert f["return_temp_c"][late].mean() > b["return_temp_c"][late].mean() + 5

    # Pump failure: flow near zero while IT power was on.
    b, f = base["boiler-0004"], faulty["boiler-0004"]
    down = _window(f, start, 21, 35)
    assert f["flow_lpm"][down].max() < 0.05 * b["flow_lpm"].mean()
    assert f["it_power_kw"][_window(f, start, 20, 21)].min() > 20

    # Nothing else moved.
    for boiler in ("boiler-0001", "boiler-0005", "boiler-0006"):
        assert np.array_equal(faulty[boiler]["supply_temp_c"], base[boiler]["supply_temp_c"])
    assert base_sim.config == sim.config.__class__(**{**sim.config.__dict__, "faults": ()})


def test_simulator_totals_agree_with_an_independent_integration(with_and_without_faults) -> None:
    for name in ("base", "faulty"):
        sim, report, received = with_and_without_faults[name]
        assert report.sent == report.accepted
        totals = sim.totals.summary()["boilers"]
        for boiler, s in received.items():
            assert s["t"].size == sim.config.n_steps  # every sample arrived exactly once
            heat_kw = thermal_power_kw(s["supply_temp_c"], s["return_temp_c"], s["flow_lpm"])
            kwh = float(np.sum(0.5 * (heat_kw[1:] + heat_kw[:-1]) * np.diff(s["t"]))) / 3.6e6
            # Stated tolerance: 0.3 % over an hour of 1 Hz samples (noise averages out).
            assert kwh == pytest.approx(totals[boiler]["heat_kwh"], rel=3e-3), (name, boiler)


def test_the_cli_publishes_to_the_broker(stack: EmbeddedStack, unique_name, tmp_path: Path) -> None:
    from heatstream.cli import _register, app

    if not any(c.name == "simulate" for c in app.registered_commands):
        _register()
    topic = unique_name("sim_cli")
    asyncio.run(_create(stack.bootstrap, topic))
    truth, totals = tmp_path / "truth.jsonl", tmp_path / "totals.json"
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--boilers",
            "6",
            "--sites",
            "2",
            "--duration",
            "30m",
            "--seed",
            "4",
            "--faults",
            "leak,pump_failure,gateway_offline",
            "--topic",
            topic,
            "--truth",
            str(truth),
            "--totals",
            str(totals),
        ],
        env={"HEATSTREAM_KAFKA__BOOTSTRAP": stack.bootstrap},
    )
    assert result.exit_code == 0, result.output
    document = orjson.loads(totals.read_bytes())
    sent = document["messages"]["sent"] + document["messages"]["raw_sent"]
    records = asyncio.run(_consume(stack.bootstrap, topic, sent))
    assert {r.key for r in records} == {b"gw-01", b"gw-02"}
    assert [orjson.loads(line)["kind"] for line in truth.read_bytes().splitlines()] != []
