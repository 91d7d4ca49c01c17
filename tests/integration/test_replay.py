"""Live equals replay: the worker and sink's results are rebuilt identically from the log.

A live run with out-of-order, duplicate, late and malformed messages goes through
the real worker and sink; `replay` then rebuilds every derived topic (under
another prefix) and every measurement (into another database) with fresh state.
Derived events must be identical byte for byte after ordering, and InfluxDB
must answer the same queries with the same rows.

A replay reads the log as it stands when it starts: it returns once it has read
that much, without waiting for the topic to fall silent, and a log that keeps
growing does not keep it running.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from heatstream.influxql import execute, query
from heatstream.inventory import inventory_toml
from heatstream.schemas import topics
from heatstream.settings import KafkaSettings, Settings
from heatstream.stack import EmbeddedStack
from heatstream.stack.provision import create_topics
from heatstream.streams import replay as replay_module
from heatstream.streams.replay import ReplayStats, replay
from tests.integration.test_worker import INV, PARTITIONS, messages, produce
from tests.integration.worker_support import read_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DERIVED = (
    topics.HEAT_WINDOWS,
    topics.ANOMALIES,
    topics.LEAKS,
    topics.DATA_QUALITY,
    topics.DEAD_LETTERS,
    topics.LATE_EVENTS,
)
MEASUREMENTS = (
    "heat_window",
    "anomaly",
    "leak",
    "data_quality",
    "dead_letter",
    "late_event",
    "telemetry",
)


def hostile_log() -> list[tuple[bytes, bytes]]:
    msgs = messages(seconds=300)
    out = list(msgs)
    out[40], out[43] = out[43], out[40]  # out of order, within the lateness
    out.insert(100, msgs[90])  # a duplicate
    out.append(msgs[20])  # a duplicate long after
    out.insert(500, (b"gw-02", b"{not json"))  # malformed
    late = orjson.loads(msgs[30][1])  # gw-01's frame at T0 + 15 s ...
    late.update(seq=300, event_id="gw-01:300")  # ... sent again as a new event, 5 min late
    out.append((b"gw-01", orjson.dumps(late)))
    out.insert(200, (b"gw-01", msgs[30][1].replace(b'"seq":15', b'"seq":77')))  # id/seq mismatch
    return out


async def read_all(bootstrap: str, names: list[str]) -> dict[str, list[bytes]]:
    """The values of every record of these topics, by topic."""
    out: dict[str, list[bytes]] = {n: [] for n in names}
    for record in await read_topics(bootstrap, names, idle_polls=5):  # 2 s without records
        out[record.topic].append(record.value)
    return out


def test_replay_rebuilds_identical_topics_and_measurements(
    stack, tmp_path: Path, unique_name
) -> None:
    prefix = unique_name("r") + "."
    kafka = KafkaSettings(bootstrap=stack.bootstrap, topic_prefix=prefix, partitions=PARTITIONS)
    asyncio.run(create_topics(stack.bootstrap, kafka))
    asyncio.run(
        create_topics(
            stack.bootstrap, kafka.model_copy(update={"topic_prefix": "replay." + prefix})
        )
    )
    live_db, replay_db = prefix.replace(".", "") + "_live", prefix.replace(".", "") + "_replay"
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(inventory_toml(INV))
    settings = stack.settings.model_copy(
        update={
            "app_id": prefix.rstrip("."),
            "inventory": inventory,
            "kafka": kafka,
            "influxdb": stack.settings.influxdb.model_copy(update={"database": live_db}),
            "streams": stack.settings.streams.model_copy(
                update={"allowed_lateness_s": 10, "max_gap_s": 5, "session_timeout_s": 6}
            ),
        }
    )
    execute(settings.influxdb, f'CREATE DATABASE "{live_db}"')
    execute(settings.influxdb, f'CREATE DATABASE "{replay_db}"')
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HEATSTREAM_")},
        "HEATSTREAM_KAFKA__BOOTSTRAP": stack.bootstrap,
        "HEATSTREAM_KAFKA__TOPIC_PREFIX": prefix,
        "HEATSTREAM_KAFKA__PARTITIONS": str(PARTITIONS),
        "HEATSTREAM_APP_ID": settings.app_id,
        "HEATSTREAM_INVENTORY": str(inventory),
        "HEATSTREAM_INFLUXDB__URL": stack.influx_url,
        "HEATSTREAM_INFLUXDB__DATABASE": live_db,
        "HEATSTREAM_STREAMS__SESSION_TIMEOUT_S": "6",
        "HEATSTREAM_STREAMS__ALLOWED_LATENESS_S": "10",
        "HEATSTREAM_STREAMS__MAX_GAP_S": "5",
        # The wall-clock liveness check is live-only, outside the replayable projection.
        "HEATSTREAM_STREAMS__LIVENESS_CHECK_S": "0",
    }
    log = tmp_path / "live.log"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "heatstream", "worker", "--datadir", str(tmp_path / "w")],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "heatstream", "sink", "--flush-interval", "0.5"],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        ),
    ]
    names = [prefix + s.name for s in DERIVED]
    try:
        asyncio.run(produce(stack.bootstrap, prefix + topics.RAW_EVENTS.name, hostile_log()))
        # Wait for the live run to settle: derived topics and InfluxDB stop growing.
        previous, stable, deadline = None, 0, time.monotonic() + 180
        while stable < 3 and time.monotonic() < deadline:
            time.sleep(3)
            counts = {t: len(v) for t, v in asyncio.run(read_all(stack.bootstrap, names)).items()}
            landed = query(settings.influxdb, "SELECT count(heat_kwh) FROM heat_window")
            snapshot = (counts, landed[0].values if landed else None)
            stable = stable + 1 if snapshot == previous and counts[names[0]] else 0
            previous = snapshot
        assert stable >= 3, log.read_text()[-3000:]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    live = asyncio.run(read_all(stack.bootstrap, names))
    assert live[prefix + topics.LATE_EVENTS.name] and live[prefix + topics.DEAD_LETTERS.name], {
        k: len(v) for k, v in live.items()
    }

    replay_settings = settings.model_copy(
        update={"influxdb": settings.influxdb.model_copy(update={"database": replay_db})}
    )
    stats = asyncio.run(replay(replay_settings, INV, output_prefix="replay." + prefix))
    assert stats.messages == len(hostile_log())
    rebuilt = asyncio.run(read_all(stack.bootstrap, ["replay." + n for n in names]))
    for name in names:
        assert sorted(rebuilt["replay." + name]) == sorted(live[name]), name

    for measurement in MEASUREMENTS:
        q = f"SELECT * FROM {measurement} GROUP BY * ORDER BY time"
        a = query(settings.influxdb, q)
        b = query(replay_settings.influxdb, q)
        assert [(s.tags, s.values) for s in a] == [(s.tags, s.values) for s in b], measurement
    assert query(settings.influxdb, "SELECT count(heat_kwh) FROM heat_window")[0].values[0][1] > 20


def _raw_only(stack: EmbeddedStack, unique_name: Callable[[str], str]) -> tuple[Settings, str]:
    """Settings whose raw topic is new and empty, and that topic's name."""
    prefix = unique_name("e") + "."
    kafka = KafkaSettings(bootstrap=stack.bootstrap, topic_prefix=prefix, partitions=PARTITIONS)
    asyncio.run(create_topics(stack.bootstrap, kafka, [topics.RAW_EVENTS]))
    return stack.settings.model_copy(update={"kafka": kafka}), prefix + topics.RAW_EVENTS.name


def test_replay_of_an_empty_raw_topic_reads_nothing(stack, unique_name) -> None:
    settings, _ = _raw_only(stack, unique_name)
    stats = asyncio.run(replay(settings, INV, to_topics=False, to_influx=False))
    assert (stats.messages, stats.derived, stats.points) == (0, 0, 0)


def test_replay_reads_a_last_batch_split_between_fetches_to_its_end(
    stack, unique_name, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tansu reports a partition's end as its last batch's base offset + 1: the
    position passes that "end" inside the last batch, and with few records a
    fetch, the rest of the batch is still to be read. It is read all the same."""
    settings, raw = _raw_only(stack, unique_name)
    log = messages(seconds=60)  # sent at once: a few batches of many records
    asyncio.run(produce(stack.bootstrap, raw, log))
    monkeypatch.setattr(replay_module, "FETCH_MAX_RECORDS", 7)
    stats = asyncio.run(replay(settings, INV, to_topics=False, to_influx=False))
    assert stats.messages == len(log)


def test_replay_stops_at_the_end_it_started_with_while_the_log_grows(stack, unique_name) -> None:
    """Frames keep arriving throughout: the replay returns while they still do,
    having read at least every message acknowledged before it started."""
    settings, raw = _raw_only(stack, unique_name)
    log = messages(seconds=600)
    first, later = log[:120], log[120:]
    asyncio.run(produce(stack.bootstrap, raw, first))

    async def run() -> tuple[ReplayStats, int, bool, list[int]]:
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", linger_ms=5)
        await producer.start()
        stop, sent = asyncio.Event(), 0

        async def keep_producing() -> None:
            nonlocal sent
            deadline = time.monotonic() + 120  # one waiting for silence would return after this
            for key, value in itertools.cycle(later):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                await (await producer.send(raw, value, key=key))
                sent += 1
                await asyncio.sleep(0.01)

        growing = asyncio.create_task(keep_producing())
        totals: list[int] = []
        try:
            while sent < 5 and not growing.done():  # the log grows when the replay starts
                await asyncio.sleep(0.01)
            before = sent
            stats = await replay(
                settings,
                INV,
                to_topics=False,
                to_influx=False,
                on_progress=lambda _stats, total, _done: totals.append(total),
            )
            still_growing = not growing.done()
        finally:
            stop.set()
            await growing
            await producer.stop()
        return stats, len(first) + before, still_growing, totals

    stats, at_start, still_growing, totals = asyncio.run(run())
    assert still_growing, "the replay waited for the log to stop growing"
    assert stats.messages >= at_start
    assert totals and len(set(totals)) == 1, totals  # progress against the starting ends


def test_replay_that_stops_getting_records_short_of_the_end_fails_with_the_partitions(
    stack, unique_name, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ends that no record reaches (here: announced 10 past the real ones) stand for a
    broker that stops serving a partition: the replay fails instead of hanging."""
    settings, raw = _raw_only(stack, unique_name)
    asyncio.run(produce(stack.bootstrap, raw, messages(seconds=5)))

    class Overstated(replay_module.AIOKafkaConsumer):  # type: ignore[misc]
        async def end_offsets(self, partitions):  # type: ignore[no-untyped-def]
            ends = await super().end_offsets(partitions)
            return {tp: end + 10 if end else 0 for tp, end in ends.items()}

    monkeypatch.setattr(replay_module, "AIOKafkaConsumer", Overstated)
    monkeypatch.setattr(replay_module, "STALL_S", 1.0)
    with pytest.raises(replay_module.ReplayStalled, match=r"partition \d+ at offset \d+ of \d+"):
        asyncio.run(replay(settings, INV, to_topics=False, to_influx=False))
