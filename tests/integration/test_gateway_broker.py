"""The gateway SDK against the session's real broker: frames, compute and raw
messages arrive compressed, keyed by gateway, valid and in sequence order."""

from __future__ import annotations

from pathlib import Path

import pytest

from heatstream.ingest.gateway import Gateway, GatewayConfig
from heatstream.schemas.serde import decode_raw
from heatstream.schemas.telemetry import TelemetryFrame
from tests.integration.gateway_support import create_topic, read_topic

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000


async def test_publishes_frames_and_compute_events(stack, unique_name, tmp_path: Path) -> None:
    topic = unique_name("raw")
    await create_topic(stack.bootstrap, topic, partitions=4)
    config = GatewayConfig(
        gateway="gw-07",
        site="site-01",
        state_dir=tmp_path,
        topic=topic,
        frame_max_samples=200,
        frame_max_span_ms=1000,
        compression="gzip",
        linger_ms=None,  # frames seal by event-time span here, deterministically
    )
    async with Gateway(config, stack.settings.kafka) as gw:
        for step in range(50):  # 5 s of 10 boilers at 10 Hz
            for b in range(10):
                await gw.add_sample(
                    f"boiler-{b:04d}",
                    T0 + step * 100,
                    {
                        "supply_temp_c": 64.0 + b / 10,
                        "return_temp_c": 45.0,
                        "flow_lpm": 10.0 + step,
                    },
                )
        await gw.send_compute(
            "compute.job_finished", boiler="boiler-0003", event_time_ms=T0 + 4000, job_id="j9",
            workload="financial_simulation", outcome="preempted",
        )  # fmt: skip
        frame = gw.seal()  # the last 10 steps, still open: seal now, send after the raw bytes
        assert frame is not None and frame.seq == 5 and frame.n_samples == 100
        await gw.send_raw(b"not json at all")
        await gw.send(frame)
        await gw.flush()
        counters = gw.counters
    assert counters.accepted == counters.sent and counters.dropped == 0
    assert counters.raw_sent == 1 and counters.spooled == 0

    records = await read_topic(stack.bootstrap, topic, until=counters.sent + 1)
    assert len(records) == counters.sent + 1
    assert len({r.partition for r in records if r.key == b"gw-07"}) == 1  # keyed by gateway
    raw = [r for r in records if r.key is None]
    assert [r.value for r in raw] == [b"not json at all"]
    events = [decode_raw(r.value) for r in sorted(records, key=lambda r: r.offset) if r.key]
    assert [e.seq for e in events] == [0, 1, 2, 3, 4, 5]
    frames = [e for e in events if isinstance(e, TelemetryFrame)]
    assert [f.n_samples for f in frames] == [100] * 5
    assert all(max(f.dt_ms) < 1000 for f in frames)
    assert [f.event_time_ms for f in frames] == [T0 + k * 1000 for k in range(5)]
    assert events[4].schema_name == "compute.job_finished"
    assert counters.send_latency_ms_p50 is not None
