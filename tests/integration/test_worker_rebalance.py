"""A second worker joins a running one, then leaves: partitions (and the state of
their gateways) move twice, and the results do not change.

One worker processes a four-partition raw topic carrying eight gateways (two
per partition: gateways outnumber partitions in any real fleet); a second
worker of the same app id joins mid-run, takes some partitions over,
processes them, and leaves with SIGTERM while messages keep arriving, handing
its partitions back. Neither worker may crash.

The test judges behaviour only (what is on the derived topics), not how the
worker stores its state: every derived event of an uninterrupted processing of
the same raw log (fresh `Processor`s over each partition in offset order, as
`heatstream replay` does) is there, with the same bytes; nothing else is; and
an event seen more than once (a redelivery after a partition moved) carries
identical bytes each time, so de-duplication by its deterministic id is exact
(for data-quality issues: id and phase, see worker_support.py).

Two gateways per partition also means that every batch changes several state
rows of a partition at once. On the embedded broker, whose ListOffsets reports
the base offset of a partition's last record batch (+1) as its end, a worker
that keeps its partitions across the rebalance then finds its persisted
changelog offset past that "end", and Faust stops it (ConsistencyError) unless
recovery asks the partition for its real end (fix_recovery_ends,
streams/faust_fixes.py).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from heatstream.inventory import synthetic_inventory
from heatstream.schemas.derived import HeatWindow
from heatstream.schemas.serde import decode_derived, encode
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.streams.processor import ProcessorParams
from heatstream.streams.windows import WindowParams
from tests.integration.worker_support import (
    assert_running,
    by_id,
    conflicts,
    differences,
    heat_totals,
    read_topics,
    reference,
    start_worker,
    stop_worker,
    tail,
    wait_for_ids,
    worker_app,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.reliability,
    pytest.mark.slow,
    pytest.mark.timeout(180),
]

T0 = 1_768_435_200_000  # 2026-01-15T00:00Z
SECONDS = 720  # of event time: 12 one-minute windows per boiler
PARTITIONS = 4
INV = synthetic_inventory(boilers=16, sites=8)  # 8 gateways of 2 boilers
# Two gateways per partition, whatever the key hash says (it puts these ids on
# two partitions only): every partition carries data, so whichever partitions
# the group gives the second worker, state moves.
PARTITION_OF = {gw.id: i % PARTITIONS for i, gw in enumerate(INV.gateways)}
POISON_AT = {150, 430, 650}  # seconds after which a malformed message is sent


def second(i: int) -> list[tuple[str, bytes]]:
    """One frame per gateway for second `i` (two boilers each, varying heat)."""
    out = []
    for gw in INV.gateways:
        n, t = len(gw.boilers), T0 + i * 1000
        frame = TelemetryFrame(
            gateway=gw.id,
            seq=i,
            site=gw.site,
            event_time_ms=t,
            ingest_time_ms=t + 50,
            boilers=list(gw.boilers),
            boiler_idx=list(range(n)),
            dt_ms=[11 * b for b in range(n)],
            supply_temp_c=[61.0 + (i % 41) / 7 + b for b in range(n)],
            return_temp_c=[44.0 + (i % 13) / 10] * n,
            flow_lpm=[9.0 + b + (i % 5) / 10 for b in range(n)],
            it_power_kw=[14.0 + b for b in range(n)],
            aux_power_kw=[0.5] * n,
            pressure_bar=[1.8] * n,
        )
        out.append((gw.id, encode(frame)))
    if i in POISON_AT:
        victim = INV.gateways[i % len(INV.gateways)].id
        out.append((victim, b'{"schema_name": "telemetry.frame", "schema_version": 2, "seq": "x"'))
    return out


def windows_through(records_by_id: dict[str, set[bytes]], until_ms: int) -> set[str]:
    """Boilers with a 1m heat window starting at or after `until_ms`."""
    boilers = set()
    for values in records_by_id.values():
        event = decode_derived(next(iter(values)))
        if (
            isinstance(event, HeatWindow)
            and event.resolution == "1m"
            and event.window_start_ms >= until_ms
        ):
            boilers.add(event.boiler)
    return boilers


async def wait_for_log(path: Path, text: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in tail(path, 10**7):
            return True
        await asyncio.sleep(0.5)
    return False


def test_a_worker_joining_and_leaving_changes_no_result(stack, tmp_path: Path, unique_name) -> None:
    app = worker_app(
        stack.bootstrap,
        unique_name("rb") + ".",
        PARTITIONS,
        INV,
        tmp_path,
        allowed_lateness_s="10",
        max_gap_s="5",
        # Windows close as soon as lateness and gap allow: the checkpoints below wait
        # for the windows a given stretch of the log closes.
        close_spread_s="0",
    )
    env, raw_topic, derived = app.env, app.raw, app.derived
    params = ProcessorParams(windows=WindowParams(allowed_lateness_ms=10_000, max_gap_ms=5_000))
    log_a, log_b = tmp_path / "worker-a.log", tmp_path / "worker-b.log"

    async def scenario() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", linger_ms=5)
        await producer.start()

        async def send(begin: int, end: int, pace_s: float = 0.0) -> None:
            for i in range(begin, end):
                futures = [
                    await producer.send(raw_topic, value, key=gw.encode(), partition=PARTITION_OF[gw])
                    for gw, value in second(i)
                ]  # fmt: skip
                if pace_s:
                    await asyncio.gather(*futures)
                    await asyncio.sleep(pace_s)
            await producer.flush()

        first = start_worker(env, tmp_path / "state-a", log_a)
        joined = None
        try:
            try:
                await send(0, 240)
                # The first worker alone: it has closed windows of every boiler.
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    assert_running((first, log_a))
                    got = by_id(await read_topics(stack.bootstrap, derived[:1]))
                    if len(windows_through(got, T0)) == len(INV.boilers):
                        break
                    await asyncio.sleep(1)
                else:
                    pytest.fail("the first worker produced no windows:\n" + tail(log_a))

                # The second worker joins while messages keep coming.
                joined = start_worker(env, tmp_path / "state-b", log_b)
                await send(240, 420, pace_s=0.05)
                assert await wait_for_log(log_b, "Worker ready", 90), tail(log_b)
                assert_running((first, log_a), (joined, log_b))
                await send(420, 560, pace_s=0.02)
                # Both workers are processing: windows up to minute 8 for every boiler.
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    assert_running((first, log_a), (joined, log_b))
                    got = by_id(await read_topics(stack.bootstrap, derived[:1]))
                    if len(windows_through(got, T0 + 8 * 60_000)) == len(INV.boilers):
                        break
                    await asyncio.sleep(1)
                else:
                    pytest.fail("windows stopped after the join:\n" + tail(log_a) + tail(log_b))

                # ... and leaves (SIGTERM) while messages keep coming.
                leaving = asyncio.create_task(asyncio.to_thread(stop_worker, joined))
                await send(560, SECONDS, pace_s=0.03)
                assert await leaving == 0, tail(log_b)
                assert_running((first, log_a))
            finally:
                if joined is not None:
                    stop_worker(joined)
                await producer.stop()

            raw = await read_topics(stack.bootstrap, [raw_topic])
            assert len(raw) == SECONDS * len(INV.gateways) + len(POISON_AT)
            expected = reference(raw, INV, params)
            got = await wait_for_ids(
                stack.bootstrap, derived, set(expected), timeout_s=90, workers=((first, log_a),)
            )
        finally:
            code = stop_worker(first)
        assert code == 0, tail(log_a)
        check(expected, got)

    asyncio.run(scenario())
    # The group really moved partitions: the second worker was given some, and
    # the first one was reassigned when it joined and again when it left.
    assert tail(log_b, 10**7).count("Executing _on_partitions_assigned") >= 1
    assert tail(log_a, 10**7).count("Executing _on_partitions_assigned") >= 3, tail(log_a)


def check(expected: dict[str, set[bytes]], got: dict[str, set[bytes]]) -> None:
    # The reference itself names each event uniquely.
    assert not conflicts(expected), list(conflicts(expected).items())[:3]
    windows = {k for k in heat_totals(expected) if k[1] == "1m"}
    assert len(windows) >= len(INV.boilers) * (SECONDS // 60 - 1)
    # Nothing counted twice: an id seen more than once has identical bytes.
    assert not conflicts(got), list(conflicts(got).items())[:3]
    # Nothing lost, nothing extra: the same events, byte for byte.
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    assert not missing and not extra, (missing[:5], extra[:5])
    assert got == expected, differences(expected, got)
    assert heat_totals(got) == heat_totals(expected)
    letters = [i for i in got if i.startswith("intake:")]
    assert len(letters) == len(POISON_AT)
