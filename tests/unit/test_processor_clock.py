"""Clock skew and gateway silence as the processor wires them, on a two-gateway partition.

Two defects these pin: compute events restarted the hold of a clock running
behind (their lag to the reference differs from the frames'), and a gateway
whose clock runs ahead moved the partition's event time, so its partner was
reported silent while it kept reporting.
"""

from __future__ import annotations

from typing import Any

from heatstream.schemas.derived import DataQualityIssue
from heatstream.streams.processor import Emit, Processor
from tests.unit.test_reliability_fuzz import INV, PARAMS, T0, frame_data, job_data, origin, wire

SECOND = 1000
MINUTE = 60 * SECOND


def _issues(out: list[Emit], kind: str) -> list[DataQualityIssue]:
    return [e.event for e in out if isinstance(e.event, DataQualityIssue) and e.event.kind == kind]


def _frame(gateway: str, seq: int, t0: int, *, lag_ms: int = 50) -> bytes:
    data: dict[str, Any] = frame_data(gateway, seq, t0, n=10)
    data["ingest_time_ms"] = t0 + 9 * SECOND + lag_ms  # sent when its 10 s span ends
    return wire(data)


def test_a_clock_behind_is_reported_after_the_hold_even_with_compute_events_in_between() -> None:
    proc = Processor(INV, PARAMS)
    behind = 60 * SECOND  # a clock 60 s behind: each frame's lag is 60 s, constant
    out: list[Emit] = []
    seq = 0
    first_frame_ingest = T0 + 9 * SECOND + behind
    for i in range(60):  # 10 minutes of 10 s frames
        t = T0 + i * 10 * SECOND
        out += proc.process(_frame("gw-02", seq, t, lag_ms=behind), b"gw-02", origin(seq))
        seq += 1
        if i % 3 == 0:
            # A job event stamped at the start of the span travels with the frame:
            # its lag is 9 s longer than the frame's.
            job = job_data("gw-02", seq, t)
            job["ingest_time_ms"] = t + 9 * SECOND + behind
            out += proc.process(wire(job), b"gw-02", origin(seq))
            seq += 1
    skew = _issues(out, "clock_skew")
    assert len(skew) == 1
    # The hold is 5 minutes of constant lag from the first frame that showed it.
    assert skew[0].start_ms == first_frame_ingest
    assert skew[0].end_ms is None


def test_a_clock_running_ahead_makes_no_other_gateway_silent() -> None:
    proc = Processor(INV, PARAMS)
    out: list[Emit] = []
    for i in range(120):  # 20 minutes, both gateways sound for the first 5
        t = T0 + i * 10 * SECOND
        out += proc.process(_frame("gw-01", i, t), b"gw-01", origin(2 * i))
        # gw-02's clock jumps 10 minutes ahead after 5 minutes; its ingest time stays right.
        ahead = 10 * MINUTE if t >= T0 + 5 * MINUTE else 0
        out += proc.process(
            _frame("gw-02", i, t + ahead, lag_ms=50 - ahead), b"gw-02", origin(2 * i + 1)
        )
    skew = _issues(out, "clock_skew")
    assert [(s.gateway, s.end_ms) for s in skew] == [("gw-02", None)]
    assert _issues(out, "gateway_silent") == []


def test_a_gateway_that_stops_is_still_reported_silent_by_its_partner() -> None:
    # The fix above must not blind the check: a sound partner's clock still moves it.
    proc = Processor(INV, PARAMS)
    out: list[Emit] = []
    for i in range(60):
        t = T0 + i * 10 * SECOND
        out += proc.process(_frame("gw-01", i, t), b"gw-01", origin(2 * i))
        if t < T0 + 2 * MINUTE:
            out += proc.process(_frame("gw-02", i, t), b"gw-02", origin(2 * i + 1))
    silent = _issues(out, "gateway_silent")
    assert [s.gateway for s in silent] == ["gw-02"]
