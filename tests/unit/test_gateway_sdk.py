"""The Gateway end to end against an in-memory stand-in for the producer.

The stand-in can be "down" (start and send fail like aiokafka does when the
broker is unreachable), so store-and-forward, the full policies, counters and
sequence persistence are checked in milliseconds; tests/integration repeats
the important ones against a real broker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from heatstream.ingest.errors import (
    EventRejectedError,
    GatewayClosedError,
    GatewayConfigError,
    SampleError,
    SpoolFullError,
    StateLockedError,
)
from heatstream.ingest.gateway import Gateway, GatewayConfig, GatewayCounters
from heatstream.schemas.compute import JobStarted
from heatstream.schemas.serde import decode_raw
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.settings import KafkaSettings

T0 = 1_700_000_000_000


class FakeBroker:
    def __init__(self) -> None:
        self.up = True
        self.crash_with: BaseException | None = None
        self.messages: list[tuple[str, bytes | None, bytes]] = []

    def events(self) -> list[Any]:
        return [decode_raw(v) for _, _, v in self.messages]

    def seqs(self) -> list[int]:
        return [e.seq for e in self.events()]


class FakeProducer:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker

    async def start(self) -> None:
        if not self.broker.up:
            raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9)]")

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]:
        if self.broker.crash_with is not None:
            raise self.broker.crash_with
        if not self.broker.up:
            raise KafkaTimeoutError()
        self.broker.messages.append((topic, key, value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class FakeClock:
    def __init__(self) -> None:
        self.now = T0 + 10_000

    def __call__(self) -> int:
        self.now += 1
        return self.now


def _config(state_dir: Path, **overrides: Any) -> GatewayConfig:
    defaults: dict[str, Any] = {
        "gateway": "gw-01",
        "site": "site-01",
        "state_dir": state_dir,
        "topic": "raw",
        "frame_max_samples": 10,
        "frame_max_span_ms": 1000,
        "linger_ms": None,
        "retry_backoff_ms": 1,
        "retry_backoff_max_ms": 10,
        "close_timeout_ms": 2000,
    }
    return GatewayConfig(**{**defaults, **overrides})


def _gateway(config: GatewayConfig, broker: FakeBroker, **kwargs: Any) -> Gateway:
    return Gateway(
        config,
        KafkaSettings(bootstrap="127.0.0.1:9"),
        producer_factory=lambda: FakeProducer(broker),
        **kwargs,
    )


async def _samples(gw: Gateway, n: int, *, step_ms: int = 10, start: int = 0) -> None:
    for i in range(start, start + n):
        await gw.add_sample(f"b{i % 3}", T0 + i * step_ms, {"supply_temp_c": 60.0 + i % 5})


async def test_frames_seal_by_size_by_span_and_by_seal(tmp_path: Path) -> None:
    broker = FakeBroker()
    async with _gateway(_config(tmp_path), broker) as gw:
        await _samples(gw, 25)  # 10 + 10 sealed by size, 5 open
        assert gw.counters.accepted == 2
        frame = gw.seal()
        assert frame is not None and frame.n_samples == 5 and frame.seq == 2
        assert gw.seal() is None
        assert gw.counters.accepted == 2  # sealed, not sent
        await gw.send(frame)
        # Event time decides the span: 400 ms apart, the 3rd sample reaches 1000 ms.
        for k in range(3):
            await gw.add_sample("b1", T0 + 5000 + 500 * k, {"flow_lpm": 10.0})
        await gw.flush()
        counters = gw.counters
    events = broker.events()
    assert [e.seq for e in events] == [0, 1, 2, 3, 4]
    assert [e.n_samples for e in events] == [10, 10, 5, 2, 1]
    assert {key for _, key, _ in broker.messages} == {b"gw-01"}
    assert {topic for topic, _, _ in broker.messages} == {"raw"}
    assert counters.accepted == counters.sent == 5
    assert (counters.spooled, counters.spool_bytes, counters.dropped) == (0, 0, 0)
    assert counters.drop_policy is None
    assert counters.send_latency_ms_p50 is not None and counters.send_latency_ms_p99 is not None


async def test_sequence_numbers_continue_across_restarts(tmp_path: Path) -> None:
    broker = FakeBroker()
    async with _gateway(_config(tmp_path), broker) as gw:
        await _samples(gw, 20)
        assert gw.next_seq == 2
    async with _gateway(_config(tmp_path), broker) as gw:
        assert gw.next_seq == 2
        seq = await gw.send_compute(
            "compute.job_started", boiler="b1", event_time_ms=T0, job_id="j1",
            workload="rendering", nodes=4,
        )  # fmt: skip
        assert seq == 2
    assert broker.seqs() == [0, 1, 2]


async def test_one_process_per_gateway_state(tmp_path: Path) -> None:
    broker = FakeBroker()
    async with _gateway(_config(tmp_path), broker):
        with pytest.raises(StateLockedError, match="one running process"):
            await _gateway(_config(tmp_path), broker).start()
        # Another gateway id may share the directory.
        async with _gateway(_config(tmp_path, gateway="gw-02"), broker):
            pass


async def test_broker_down_events_wait_in_the_spool_then_drain_in_order(tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.up = False
    async with _gateway(_config(tmp_path), broker) as gw:  # starts although unreachable
        await _samples(gw, 50)
        await gw.send_compute(
            "compute.node_state", boiler="b2", event_time_ms=T0, node="n1", state="down"
        )
        await gw.flush()  # returns: everything is durably spooled
        down = gw.counters
        assert down.accepted == 6 and down.sent == 0
        assert down.spooled == 6 and down.spool_bytes > 0
        assert not down.broker_reachable and down.send_errors >= 1
        assert "KafkaConnectionError" in (down.last_error or "")
        broker.up = True
        assert await gw.wait_drained(5)
        up = gw.counters
    assert broker.seqs() == list(range(6))
    assert (up.sent, up.spooled, up.spool_bytes, up.dropped) == (6, 0, 0, 0)
    assert up.broker_reachable


async def test_spool_left_by_a_previous_run_is_sent_first(tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.up = False
    async with _gateway(_config(tmp_path, close_timeout_ms=0), broker) as gw:
        await _samples(gw, 30)
    assert broker.messages == []
    broker.up = True
    async with _gateway(_config(tmp_path), broker) as gw:
        assert gw.counters.recovered == 3
        await _samples(gw, 10, start=30)
        await gw.flush()
        counters = gw.counters
    assert broker.seqs() == [0, 1, 2, 3]
    assert counters.sent == 4 and counters.accepted == 1 and counters.recovered == 3


def _small_spool(tmp_path: Path, policy: str) -> GatewayConfig:
    # Frames of 100 samples of 12 channels are about 10 kB: the spool holds ~5.
    return _config(
        tmp_path,
        frame_max_samples=100,
        frame_max_bytes=16_000,
        max_message_bytes=20_000,
        spool_max_bytes=50_000,
        spool_full_policy=policy,
    )


async def _big_frames(gw: Gateway, n: int) -> None:
    values = {
        name: 12.345678
        for name in TelemetryFrame.model_fields
        if name.endswith(("_c", "_lpm", "_bar", "_kw", "_pct"))
    }
    for i in range(n * 100):
        await gw.add_sample("b1", T0 + i, values)


async def test_reject_new_refuses_with_backpressure_and_loses_nothing_accepted(
    tmp_path: Path,
) -> None:
    broker = FakeBroker()
    broker.up = False
    async with _gateway(_small_spool(tmp_path, "reject_new"), broker) as gw:
        with pytest.raises(SpoolFullError, match="spool full") as info:
            await _big_frames(gw, 20)
        refused = info.value.events
        assert len(refused) == 1 and isinstance(refused[0], TelemetryFrame)
        full = gw.counters
        assert full.dropped == 1 and full.drop_policy == "reject_new"
        assert full.spooled == full.accepted >= 3
        assert full.spool_bytes <= 50_000
        broker.up = True
        assert await gw.wait_drained(5)
        await gw.send(refused[0])  # the caller may retry what was refused
        await gw.flush()
        after = gw.counters
    delivered = broker.seqs()
    assert delivered == [*range(full.accepted), refused[0].seq]
    assert after.dropped == 1 and after.sent == full.accepted + 1


async def test_drop_oldest_discards_the_oldest_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = FakeBroker()
    broker.up = False
    async with _gateway(_small_spool(tmp_path, "drop_oldest"), broker) as gw:
        await _big_frames(gw, 12)
        full = gw.counters
        assert full.accepted == 12 and full.drop_policy == "drop_oldest"
        assert full.dropped > 0 and full.spooled + full.dropped == 12
        broker.up = True
        assert await gw.wait_drained(5)
    assert broker.seqs() == list(range(full.dropped, 12))
    assert "spool full (policy drop_oldest)" in caplog.text
    assert "gw-01:0" in caplog.text


async def test_duplicates_compute_events_and_raw_bytes(tmp_path: Path) -> None:
    broker = FakeBroker()
    accepted: list[str] = []
    async with _gateway(
        _config(tmp_path), broker, on_accepted=lambda evs: accepted.extend(e.event_id for e in evs)
    ) as gw:
        await _samples(gw, 3)
        frame = gw.seal()
        assert frame is not None
        await gw.send(frame)
        await gw.send(frame)  # a duplicate delivery, on purpose
        await gw.send_raw(b"{broken json", key=b"junk")
        await gw.send_raw(b"[]")
        seq = await gw.send_compute(
            "compute.job_started", boiler="b1", event_time_ms=T0, job_id="j1",
            workload="ai_training", nodes=8,
        )  # fmt: skip
        await gw.flush()
        counters = gw.counters
    assert seq == 1  # raw messages take no sequence number
    values = [v for _, _, v in broker.messages]
    assert values[2:4] == [b"{broken json", b"[]"]  # in order with the events
    assert [k for _, k, _ in broker.messages] == [b"gw-01", b"gw-01", b"junk", None, b"gw-01"]
    assert values[0] == values[1]
    job = decode_raw(values[4])
    assert isinstance(job, JobStarted) and job.nodes == 8 and job.event_id == "gw-01:1"
    assert accepted == ["gw-01:0", "gw-01:0", "gw-01:1"]
    assert (counters.accepted, counters.sent) == (3, 3)
    assert (counters.raw_accepted, counters.raw_sent) == (2, 2)


async def test_bad_input_is_refused_at_the_gateway_without_burning_numbers(
    tmp_path: Path,
) -> None:
    broker = FakeBroker()
    async with _gateway(_config(tmp_path), broker) as gw:
        with pytest.raises(SampleError, match=r"boiler 'b1'.*supply_temp_c = nan"):
            await gw.add_sample("b1", T0, {"supply_temp_c": float("nan")})
        with pytest.raises(ValueError, match="workload"):
            await gw.send_compute(
                "compute.job_started", boiler="b1", event_time_ms=T0, job_id="j", workload="x",
                nodes=1,
            )  # fmt: skip
        with pytest.raises(EventRejectedError, match="not a compute event"):
            await gw.send_compute("compute.reboot", boiler="b1", event_time_ms=T0)
        other = JobStarted(
            gateway="gw-99", seq=0, site="site-01", event_time_ms=T0, ingest_time_ms=T0,
            boiler="b1", job_id="j", workload="other", nodes=1,
        )  # fmt: skip
        with pytest.raises(EventRejectedError, match="gateway = 'gw-99'"):
            await gw.send(other)
        huge = TelemetryFrame(
            gateway="gw-01", seq=0, site="site-01", event_time_ms=T0, ingest_time_ms=T0,
            boilers=["b1"], boiler_idx=[0] * 100_000, dt_ms=list(range(100_000)),
            flow_lpm=[1.5] * 100_000,
        )  # fmt: skip
        with pytest.raises(EventRejectedError, match="above max_message_bytes"):
            await gw.send(huge)
        assert gw.next_seq == 0
        assert gw.counters.accepted == 0
    assert broker.messages == []


async def test_linger_seals_a_quiet_frame_in_the_background(tmp_path: Path) -> None:
    broker = FakeBroker()
    async with _gateway(_config(tmp_path, linger_ms=20), broker) as gw:
        await gw.add_sample("b1", T0, {"flow_lpm": 10.0})
        async with asyncio.timeout(5):
            while gw.counters.sent < 1:
                await asyncio.sleep(0.01)
    assert [e.n_samples for e in broker.events()] == [1]


async def test_a_simulated_clock_gives_deterministic_bytes(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        broker = FakeBroker()
        async with _gateway(_config(tmp_path / name), broker, clock_ms=FakeClock()) as gw:
            await _samples(gw, 35)
            await gw.send_compute(
                "compute.power_cap_set", boiler="b0", event_time_ms=T0, cap_kw=50.0,
                reason="grid",
            )  # fmt: skip
        runs.append([v for _, _, v in broker.messages])
    assert runs[0] == runs[1] and len(runs[0]) == 5
    assert decode_raw(runs[0][0]).ingest_time_ms == T0 + 10_001


async def test_a_sender_bug_surfaces_to_the_caller(tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.crash_with = RuntimeError("bug in the producer")
    gw = _gateway(_config(tmp_path), broker)
    await gw.start()
    await _samples(gw, 10)
    with pytest.raises(GatewayClosedError, match="bug in the producer"):
        await gw.flush()
    with pytest.raises(GatewayClosedError):
        await gw.close()
    # Nothing was lost: the event is still in the spool for the next run.
    broker.crash_with = None
    async with _gateway(_config(tmp_path), broker) as again:
        assert again.counters.recovered == 1
    assert broker.seqs() == [0]


async def test_a_broken_clock_is_refused_before_anything_is_lost(tmp_path: Path) -> None:
    broker = FakeBroker()
    gw = _gateway(_config(tmp_path), broker, clock_ms=lambda: 1_700_000_000)  # seconds!
    await gw.start()
    await gw.add_sample("b1", T0, {"flow_lpm": 1.0})
    with pytest.raises(GatewayConfigError, match="milliseconds since the epoch"):
        gw.seal()
    assert gw.next_seq == 0
    with pytest.raises(GatewayConfigError):
        await gw.close()  # still cannot seal: says so, and still shuts down
    assert broker.messages == []
    async with _gateway(_config(tmp_path), broker):  # the state was released
        pass


async def test_not_started_is_a_clear_error(tmp_path: Path) -> None:
    gw = _gateway(_config(tmp_path), FakeBroker())
    with pytest.raises(GatewayClosedError, match="not started"):
        await gw.add_sample("b1", T0, {"flow_lpm": 1.0})
    assert isinstance(gw.counters, GatewayCounters)
