"""Frames sealed from columns (`seal_columns`, `publish_columns`) and events sent in one
transaction (`send_many`, `seal_compute`): the same bytes as the model path, sequence
numbers taken in order and never burnt by a rejected frame, and every contract
violation named."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from heatstream.ingest.columns import EncodedFrame
from heatstream.ingest.errors import EventRejectedError, SampleError, SpoolFullError
from heatstream.ingest.gateway import Gateway
from heatstream.schemas import signing
from heatstream.schemas.serde import decode_raw, encode
from heatstream.schemas.telemetry import MAX_SPAN_MS, TelemetryFrame
from tests.unit.test_gateway_sdk import T0, FakeBroker, FakeClock, _config, _gateway

BOILERS = ["boiler-0001", "boiler-0002", "boiler-0003"]


def _body(steps: int = 4) -> dict[str, Any]:
    """3 boilers x `steps` samples, 100 ms apart with jitter, one reading missing."""
    n = len(BOILERS)
    idx = np.tile(np.arange(n), steps)
    t = T0 + 100 * np.repeat(np.arange(steps), n) + np.tile([3, 0, 7], steps)
    flow = 10.0 + np.arange(n * steps) / 8
    flow[4] = np.nan
    return {
        "boilers": BOILERS,
        "boiler_idx": idx,
        "t_ms": t.astype(np.int64),
        # Not in contract order on purpose: the frame puts them in contract order.
        "columns": {
            "pressure_bar": np.full(n * steps, 1.55),
            "flow_lpm": flow,
            "supply_temp_c": 60.0 + np.arange(n * steps) * 0.01,
        },
    }


def _model_bytes(
    frame: EncodedFrame, body: dict[str, Any], watermark_ms: int | None = None
) -> bytes:
    """What the model path writes for the same readings."""
    t = np.asarray(body["t_ms"])
    t0 = int(t.min())
    columns = {
        k: [None if math.isnan(v) else float(v) for v in values]
        for k, values in body["columns"].items()
    }
    model = TelemetryFrame.model_validate(
        {
            "gateway": frame.gateway,
            "seq": frame.seq,
            "site": frame.site,
            "event_time_ms": t0,
            "ingest_time_ms": frame.ingest_time_ms,
            "boilers": list(body["boilers"]),
            "boiler_idx": [int(i) for i in body["boiler_idx"]],
            "dt_ms": [int(x) - t0 for x in t],
            **columns,
            "watermark_ms": watermark_ms,
        }
    )
    return encode(model)


async def test_a_columnar_frame_is_byte_for_byte_the_model_frame(tmp_path: Path) -> None:
    broker = FakeBroker()
    clock = FakeClock()
    async with _gateway(_config(tmp_path), broker, clock_ms=clock) as gw:
        body = _body()
        frame = gw.seal_columns(**body)
        assert (frame.seq, frame.event_id, frame.n_samples) == (0, "gw-01:0", 12)
        assert frame.event_time_ms == T0 and frame.ingest_time_ms == clock.now
        assert frame.value == _model_bytes(frame, body)
        decoded = frame.decode()
        assert decoded.channels_present == ("supply_temp_c", "flow_lpm", "pressure_bar")
        assert decoded.flow_lpm is not None and decoded.flow_lpm[4] is None
        # Python lists (None = missing) give the same bytes as arrays.
        as_lists = {
            "boilers": tuple(BOILERS),
            "boiler_idx": body["boiler_idx"].tolist(),
            "t_ms": body["t_ms"].tolist(),
            "columns": {
                k: [None if math.isnan(x) else x for x in v.tolist()]
                for k, v in body["columns"].items()
            },
        }
        again = gw.seal_columns(**as_lists)
        assert again.seq == 1 and again.value == _model_bytes(again, body)
        assert gw.counters.accepted == 0  # sealed, not sent
        await gw.send(frame)
        await gw.send(frame)  # a duplicate delivery: same id, same bytes
        await gw.flush()
    assert [v for _, _, v in broker.messages] == [frame.value, frame.value]
    assert broker.messages[0][1] == b"gw-01"


async def test_a_watermark_goes_on_the_wire_as_the_model_writes_it(tmp_path: Path) -> None:
    broker = FakeBroker()
    async with _gateway(_config(tmp_path), broker) as gw:
        body = _body()
        end = T0 + 400  # the span the four 100 ms steps complete
        frame = await gw.publish_columns(**body, watermark_ms=np.int64(end))
        assert frame.value == _model_bytes(frame, body, watermark_ms=end)
        assert frame.decode().watermark_ms == end
        await gw.add_sample("boiler-0001", T0 + 400, {"supply_temp_c": 61.0})
        sealed = gw.seal(watermark_ms=T0 + 1400)
        assert sealed is not None and sealed.watermark_ms == T0 + 1400
        assert decode_raw(encode(sealed)) == sealed
        await gw.flush()
    assert broker.events()[0].watermark_ms == end


@pytest.mark.parametrize(
    ("watermark", "message"),
    [
        (T0 - 1, f"watermark_ms = {T0 - 1} is outside [{T0}, {T0 + MAX_SPAN_MS}]"),
        (T0 + MAX_SPAN_MS + 1, f"watermark_ms = {T0 + MAX_SPAN_MS + 1} is outside"),
        (True, "watermark_ms = True is not an integer"),
        (float(T0), f"watermark_ms = {float(T0)!r} is not an integer"),
    ],
)
async def test_a_watermark_that_cannot_go_with_the_frame_is_named(
    tmp_path: Path, watermark: Any, message: str
) -> None:
    async with _gateway(_config(tmp_path), FakeBroker()) as gw:
        with pytest.raises(SampleError) as info:
            gw.seal_columns(**_body(), watermark_ms=watermark)
        assert message in str(info.value)
        await gw.add_sample("boiler-0001", T0, {"supply_temp_c": 61.0})
        with pytest.raises(SampleError) as info:
            gw.seal(watermark_ms=watermark)
        assert message in str(info.value)
        assert gw.next_seq == 0  # no number burnt
        assert gw.seal(watermark_ms=T0) is not None


async def test_publish_columns_keeps_the_order_readings_were_handed_over(tmp_path: Path) -> None:
    broker = FakeBroker()
    accepted: list[Any] = []
    async with _gateway(_config(tmp_path), broker, on_accepted=accepted.extend) as gw:
        await gw.add_sample("b0", T0, {"supply_temp_c": 61.0})  # an open frame
        frame = await gw.publish_columns(**_body())
        await gw.add_sample("b0", T0 + 500, {"supply_temp_c": 62.0})
        await gw.flush()
    assert broker.seqs() == [0, 1, 2]  # the open frame was sealed first
    assert accepted[1] is frame and isinstance(frame, EncodedFrame)
    events = broker.events()
    assert events[1].n_samples == 12 and events[0].n_samples == events[2].n_samples == 1


async def test_hmac_signs_a_columnar_frame_when_sealed(tmp_path: Path) -> None:
    key = "k" * 40
    broker = FakeBroker()
    async with _gateway(_config(tmp_path, hmac_key=key), broker) as gw:
        frame = await gw.publish_columns(**_body())
        await gw.flush()
    (value,) = [v for _, _, v in broker.messages]
    assert value == frame.value
    assert signing.verify(value, [SecretStr(key)])
    assert frame.decode().hmac is not None


def _bad(**change: Any) -> dict[str, Any]:
    body = _body()
    columns = {**body["columns"], **change.pop("columns", {})}
    return {**body, **change, "columns": columns}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_bad(boilers=["boiler-0001", "bad id", "x"]), "boilers[1] = 'bad id' is not a valid id"),
        (_bad(boilers=["a", "b", "a"]), "boilers lists 'a' more than once"),
        (_bad(boilers=[]), "boilers lists 0 ids"),
        (_bad(boilers=[["a"], "b", "c"]), "not a valid id"),
        (_bad(boiler_idx=np.array([0, 1, 3] * 4)), "boiler_idx[2] = 3 outside [0, 2]"),
        (_bad(boiler_idx=np.zeros(12)), "boiler_idx must hold integers, not float64"),
        (_bad(boiler_idx=np.zeros((3, 4), dtype=int)), "boiler_idx must be one-dimensional"),
        (_bad(t_ms=np.arange(11) + T0), "t_ms has 11 values, boiler_idx has 12"),
        (_bad(t_ms=np.full(12, T0 // 1000)), "t_ms[0] = 1700000000 (boiler 'boiler-0001')"),
        (
            _bad(t_ms=np.array([T0] * 11 + [T0 + MAX_SPAN_MS + 1])),
            f"spans {MAX_SPAN_MS + 1} ms of event time",
        ),
        (_bad(columns={"temperature": np.zeros(12)}), "channel 'temperature' is not a telemetry"),
        (_bad(columns={"flow_lpm": np.zeros(11)}), "flow_lpm has shape (11,), the frame has 12"),
        (
            _bad(columns={"flow_lpm": np.array([1.0] * 5 + [np.inf] + [1.0] * 6)}),
            "flow_lpm[5] = inf (boiler 'boiler-0003') is not a finite number",
        ),
        (
            _bad(columns={"flow_lpm": np.ones(12, dtype=bool)}),
            "flow_lpm must hold numbers, not bool",
        ),
        (_bad(columns={"flow_lpm": [1.0] * 7 + ["64.2"] + [1.0] * 4}), "flow_lpm[7] = '64.2'"),
        (_bad(columns={"flow_lpm": [1.0] * 11 + [True]}), "flow_lpm[11] = True is not a number"),
        ({**_body(), "columns": {}}, "the frame carries no channel"),
    ],
)
async def test_contract_violations_are_named_and_burn_no_number(
    tmp_path: Path, body: dict[str, Any], message: str
) -> None:
    async with _gateway(_config(tmp_path), FakeBroker()) as gw:
        with pytest.raises(SampleError) as info:
            gw.seal_columns(**body)
        assert message in str(info.value)
        assert isinstance(info.value, ValueError)
        assert gw.next_seq == 0
        assert gw.seal_columns(**_body()).seq == 0


async def test_a_frame_above_the_message_limit_is_rejected_without_a_number(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, max_message_bytes=8192, frame_max_bytes=4096, frame_max_samples=10)
    async with _gateway(config, FakeBroker()) as gw:
        with pytest.raises(EventRejectedError, match="above max_message_bytes = 8192"):
            gw.seal_columns(**_body(steps=200))
        assert gw.next_seq == 0


async def test_send_many_is_one_transaction_in_order(tmp_path: Path) -> None:
    broker = FakeBroker()
    accepted: list[list[Any]] = []
    async with _gateway(_config(tmp_path), broker, on_accepted=accepted.append) as gw:
        job = gw.seal_compute(
            "compute.job_started", boiler="b1", event_time_ms=T0, job_id="j1",
            workload="rendering", nodes=2,
        )  # fmt: skip
        frame = gw.seal_columns(**_body())
        cap = gw.seal_compute(
            "compute.power_cap_set", boiler="b1", event_time_ms=T0, cap_kw=5.0, reason="grid"
        )
        await gw.send_many([job, frame, cap])
        await gw.send_many([])
        await gw.flush()
        assert gw.counters.accepted == 3
    assert [len(batch) for batch in accepted] == [3]  # one commit
    assert broker.seqs() == [0, 1, 2]
    assert [type(e).__name__ for e in broker.events()] == [
        "JobStarted",
        "TelemetryFrame",
        "PowerCapSet",
    ]


async def test_seal_compute_validates_before_taking_a_number(tmp_path: Path) -> None:
    async with _gateway(_config(tmp_path), FakeBroker()) as gw:
        with pytest.raises(EventRejectedError, match="nodes"):
            gw.seal_compute(
                "compute.job_started", boiler="b1", event_time_ms=T0, job_id="j1",
                workload="rendering", nodes=-1,
            )  # fmt: skip
        assert gw.next_seq == 0
        with pytest.raises(EventRejectedError, match="gw-02:0: gateway = 'gw-02'"):
            await gw.send_many([gw.seal_columns(**_body()), FOREIGN])
        assert gw.counters.accepted == 0  # nothing of a refused batch is spooled


FOREIGN = EncodedFrame("gw-02:0", "gw-02", "site-01", 0, T0, T0, 1, b"{}")


async def test_a_full_spool_refuses_the_whole_batch(tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.up = False
    config = _config(
        tmp_path, spool_max_bytes=8192 * 2, max_message_bytes=8192, frame_max_bytes=4096
    )
    async with _gateway(config, broker) as gw:
        frames = [gw.seal_columns(**_body(steps=60)) for _ in range(6)]
        with pytest.raises(SpoolFullError) as info:
            await gw.send_many(frames)
        assert info.value.events == tuple(frames)
        assert gw.counters.accepted == 0 and gw.counters.dropped == 6
        assert gw.counters.drop_policy == "reject_new"


async def test_decode_round_trips_what_the_pipeline_reads(tmp_path: Path) -> None:
    async with _gateway(_config(tmp_path), FakeBroker()) as gw:
        frame = gw.seal_columns(**_body())
    model = decode_raw(frame.value)
    assert isinstance(model, TelemetryFrame) and model == frame.decode()
    np.testing.assert_array_equal(model.t_ms, _body()["t_ms"])


def test_gateway_exports_the_frame_type() -> None:
    from heatstream.ingest import gateway

    assert "EncodedFrame" in gateway.__all__ and gateway.Gateway is Gateway
