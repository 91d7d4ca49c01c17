"""When the live benchmark's fleet sends a span's frames, and the promise they carry.

The publisher (`benchmarks.pace`) sends a span's frames once its last sample is taken;
each frame promises the span's end as its watermark. Both must fit the recording: no
frame may go before a sample it holds was taken, and no later frame may hold a sample
from before the promised end.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from benchmarks.workload import GATEWAY_1S, GATEWAY_10S, N_CHANNELS, Fleet, Recording, Shape

START_MS = 1_700_000_000_000
SECONDS = 20
# Per base boiler, how long after the start of each second it is polled (ms); second 7
# has a late straggler.
JITTER = np.array([3, 70, 12, 41])


def recording() -> Recording:
    jitter = np.tile(JITTER, (SECONDS, 1))
    jitter[7, 2] = 999
    t_ms = np.arange(SECONDS)[:, np.newaxis] * 1000 + jitter
    return Recording(t_ms=t_ms, values=np.full((N_CHANNELS, SECONDS, JITTER.size), 50.0))


@pytest.mark.parametrize(
    ("shape", "span", "expected_ms"),
    [
        (GATEWAY_1S, 0, 70),
        (GATEWAY_1S, 3, 3_070),
        (GATEWAY_1S, 7, 7_999),  # the straggler holds the frames back
        (GATEWAY_10S, 0, 9_070),
        (GATEWAY_10S, 1, 19_070),
    ],
)
def test_a_span_is_sealed_when_its_last_sample_is_taken(
    shape: Shape, span: int, expected_ms: int
) -> None:
    fleet = Fleet(recording(), 200)
    assert fleet.last_sample_ms(shape, span, start_ms=START_MS) == START_MS + expected_ms


def test_only_the_boilers_of_the_fleet_count() -> None:
    # 100 boilers behind one gateway replay base boilers 0-3 alike; a fleet that used
    # only base boiler 0 would be sealed at its own poll.
    rec = recording()
    fleet = Fleet(rec, 100)
    fleet.columns = [np.zeros(100, dtype=np.int64)]
    assert fleet.last_sample_ms(GATEWAY_1S, 4, start_ms=0) == 4_003


@pytest.mark.parametrize("shape", [GATEWAY_1S, GATEWAY_10S])
def test_frames_sent_at_the_last_sample_keep_their_watermark_promise(shape: Shape) -> None:
    fleet = Fleet(recording(), 200)
    spans: dict[int, list[dict[str, Any]]] = {}
    for _, value, _ in fleet.iter_messages(shape, SECONDS, start_ms=START_MS):
        frame = orjson.loads(value)
        first = (frame["event_time_ms"] - START_MS) // (shape.span_s * 1000)
        spans.setdefault(first, []).append(frame)
    assert sorted(spans) == list(range(SECONDS // shape.span_s))
    for k, frames in spans.items():
        sent_at = fleet.last_sample_ms(shape, k, start_ms=START_MS)
        times = [f["event_time_ms"] + dt for f in frames for dt in f["dt_ms"]]
        assert max(times) == sent_at  # nothing sent before it was measured
        promised = {f.get("watermark_ms") for f in frames}
        assert promised == {START_MS + (k + 1) * shape.span_s * 1000}
        (end,) = promised
        assert sent_at < end  # sent before the span is over ...
        for later in range(k + 1, len(spans)):  # ... and no later sample breaks the promise
            assert min(f["event_time_ms"] for f in spans[later]) >= end
