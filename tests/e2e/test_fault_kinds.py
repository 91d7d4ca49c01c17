"""Every kind of injected fault, through `heatstream up`, is reported for the right
boiler or gateway within the delay docs/detections.md states.

One run (issue #4: "each injected fault kind is detected for the right boiler within a
delay you state and justify in the docs"): 16 boilers behind 8 gateways (one gateway
per site, two boilers each), 6 simulated hours from a fixed winter night, seed 11. The
fleet runs healthy for 3.5-4 h so that every baseline has learned (a fault during the
first ~3 steady hours is partly learned as normal, see the limits in the docs), then
each fault hits its own boiler or gateway; the other boilers stay healthy.

`tests/e2e/test_pipeline.py` covers slow leaks and pump failures; this module covers
the other kinds. Delays are measured from the fault's start in the truth file to the
moment the pipeline emitted the event, not to the event's `start_ms` (which dates the
evidence back to its onset). After the run the raw log is read back from the broker
and fed, partition by partition, to the same `Processor` the worker runs; an event's
detection time is the ingest time of the raw message whose processing emitted it (the
gateway's uplink clock: true time, even for a gateway whose measurement clock is
skewed). Each event judged must also have landed in InfluxDB from the live run (same
kind, target and start), so the delays are those of the live pipeline.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from heatstream.influxql import query
from heatstream.ingest.simulator.timeparse import parse_instant_ms
from heatstream.inventory import parse_inventory
from heatstream.schemas.errors import EventError
from heatstream.schemas.serde import decode_raw
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.schemas.topics import RAW_EVENTS, topic_name
from heatstream.settings import StreamSettings, load_settings
from heatstream.streams.app import processor_params
from heatstream.streams.detectors import SkewParams
from heatstream.streams.detectors.quality import QualityParams
from heatstream.streams.processor import Origin, Processor, ProcessorParams
from heatstream.streams.windows import close_phase_ms
from tests.e2e.test_pipeline import _env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

START = "2026-01-15T00:00Z"
DURATION_H = 6
SEED = 11
BOILERS, SITES = 16, 8  # gw-0k owns boiler-000k and boiler-00(k+8)

# The raw topic has 8 partitions keyed by gateway: gw-01+gw-06, gw-02+gw-04,
# gw-03+gw-08 and gw-05+gw-07 share one each. A silence is seen in event time only
# when another gateway on the partition keeps advancing it (gw-01 for gw-06).
FAULTS = (
    # boiler faults, after the baselines have learned
    "burst_leak:boiler-0001@4h+20m:rate_lpm=12,moisture_pct=80",
    "stuck_sensor:boiler-0003@4h+60m:channel=supply_temp_c",
    "drifting_sensor:boiler-0011@3h30m+end:channel=return_temp_c,rate_per_h=2",
    "fouling:boiler-0005@3h30m+end:loss=0.4,ramp_h=2",
    "drifting_sensor:boiler-0013@3h30m+end:channel=flow_lpm,rate_per_h=-5",
    # gateway faults, on gateways whose boilers are healthy
    "duplicates:gw-02@3h+60m:prob=0.1,max_delay_frames=5",
    "out_of_order:gw-04@3h+60m:prob=0.1,max_delay_frames=10",
    "gateway_offline:gw-06@4h+15m",
    "clock_skew:gw-07@4h+end:offset_ms=600000",  # ahead by 10 min: silent_ms is 5
    "clock_skew:gw-08@4h+end:offset_ms=-180000",  # behind by 3 min
)

MIN = 60_000
WINDOW_MS = MIN
FRAME_MS = 10_000  # `heatstream up --speed max` publishes 10-second frames
# A window is closed, and judged, once its gateway's watermark (event time minus the
# allowed lateness 30 s) has passed its end plus the max gap 10 s plus the gateway's
# close phase (0-20 s, fixed per gateway): the frame that carries the watermark there
# arrives up to one frame later.
CLOSE_SPREAD_MS = int(StreamSettings().close_spread_s * 1000)


def close_ms(d: Detected) -> int:
    phase = close_phase_ms(d.by_gateway, CLOSE_SPREAD_MS) if d.by_gateway else CLOSE_SPREAD_MS
    return 30_000 + 10_000 + phase + FRAME_MS


@dataclass(frozen=True)
class Detected:
    """A derived event the pipeline raised, with when it was raised."""

    measurement: str  # anomaly | leak | data_quality
    kind: str
    boiler: str | None
    gateway: str | None
    channel: str | None
    start_ms: int
    detected_ms: int  # ingest time of the raw message whose processing emitted it
    by_gateway: str  # gateway of that raw message
    by_frame_ahead: bool  # that message's event time ran ahead of its ingest time
    evidence: dict[str, float]
    # gateway_silent: how far the partition's event time was ahead of the gateway's own
    # when its last frame arrived (silence is counted from that arrival)
    lead_ms: int = 0

    @property
    def key(self) -> tuple[str, str, str | None, str | None, int]:
        return (
            self.measurement,
            self.kind,
            self.boiler or self.gateway,
            self.channel,
            self.start_ms,
        )


def _run_up(root: Path, env: dict[str, str]) -> tuple[Path, Path]:
    summary, truth = root / "summary.json", root / "truth.jsonl"
    # --fault pins each fault (`--faults` would let the seed pick targets and times, and
    # might start a fault while the baselines still learn).
    cmd = [
        sys.executable, "-m", "heatstream", "up",
        "--boilers", str(BOILERS), "--sites", str(SITES),
        "--duration", f"{DURATION_H}h", "--start", START, "--speed", "max",
        *(arg for spec in FAULTS for arg in ("--fault", spec)), "--seed", str(SEED),
        "--truth", str(truth), "--summary-json", str(summary), "--timeout", "240",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return summary, truth


async def _read_raw_log(bootstrap: str, topic: str) -> dict[int, list[Any]]:
    """Every record of the raw topic, per partition, in log order."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        await consumer.topics()
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        await consumer.seek_to_beginning(*parts)
        log: dict[int, list[Any]] = {tp.partition: [] for tp in parts}

        def add(batch: dict[Any, list[Any]]) -> None:
            for tp, records in batch.items():
                log[tp.partition].extend(records)

        # The topic no longer grows. The embedded broker may report a partition's end
        # as the base offset of its last record batch + 1, short of the true end: read
        # up to the larger of that and the high watermark the fetches carry, then take
        # what the consumer already holds (the rest of a batch split by max_records).
        def behind(tp: Any) -> bool:
            return positions[tp] < max(ends[tp], consumer.highwater(tp) or 0)

        positions = {tp: await consumer.position(tp) for tp in parts}
        while any(behind(tp) for tp in parts):
            add(await consumer.getmany(timeout_ms=1000, max_records=20_000))
            positions = {tp: await consumer.position(tp) for tp in parts}
        add(await consumer.getmany(timeout_ms=0))
        return log
    finally:
        await consumer.stop()


def _replay_detections(settings: Any, inventory: Any, log: dict[int, list[Any]]) -> list[Detected]:
    """Feed the live log to the worker's own Processor; time every anomaly, leak and issue."""
    topic = topic_name(RAW_EVENTS, settings.kafka.topic_prefix)
    ahead_ms = SkewParams().max_ahead_ms
    out: list[Detected] = []
    for partition, records in sorted(log.items()):
        proc = Processor(inventory, processor_params(settings))
        partition_max = -1
        lead: dict[str, int] = {}
        for r in records:
            raw = r.value or b""
            try:
                event = decode_raw(raw)
            except EventError:
                event = None
            emits = proc.process(raw, r.key, Origin(topic, partition, r.offset, r.timestamp))
            if event is None:
                continue
            top = event.event_time_ms + (
                max(event.dt_ms) if isinstance(event, TelemetryFrame) else 0
            )
            partition_max = max(partition_max, top)
            lead[event.gateway] = partition_max - top
            for emit in emits:
                e = emit.event
                measurement = {
                    "anomaly.efficiency": "anomaly",
                    "leak.suspected": "leak",
                    "dq.issue": "data_quality",
                }.get(getattr(e, "schema_name", ""))
                if measurement is None or getattr(e, "phase", "start") != "start":
                    continue
                if measurement == "data_quality" and e.end_ms is not None:
                    continue  # the end of an issue (same start_ms as its start)
                out.append(
                    Detected(
                        measurement=measurement,
                        kind=getattr(e, "kind", "leak"),
                        boiler=e.boiler,
                        gateway=getattr(e, "gateway", None),
                        channel=getattr(e, "channel", None),
                        start_ms=e.start_ms,
                        detected_ms=event.ingest_time_ms,
                        by_gateway=event.gateway,
                        by_frame_ahead=top - event.ingest_time_ms > ahead_ms,
                        evidence=dict(getattr(e, "evidence", None) or {})
                        if measurement == "anomaly"
                        else {},
                        lead_ms=lead.get(e.gateway, 0) if e.schema_name == "dq.issue" else 0,
                    )
                )
    return out


def _landed_keys(influx: Any, start_ms: int, end_ms: int) -> set[tuple[Any, ...]]:
    """(measurement, kind, target, channel, start_ms) of every start landed in InfluxDB."""
    where = f"time >= {start_ms}ms AND time < {end_ms}ms"
    keys: set[tuple[Any, ...]] = set()
    for s in query(influx, f"SELECT start_ms, kind, boiler, phase FROM anomaly WHERE {where}"):
        keys |= {
            ("anomaly", r["kind"], r["boiler"], None, int(r["start_ms"]))
            for r in s.rows()
            if r["phase"] == "start"
        }
    for s in query(influx, f"SELECT start_ms, boiler, phase FROM leak WHERE {where}"):
        keys |= {
            ("leak", "leak", r["boiler"], None, int(r["start_ms"]))
            for r in s.rows()
            if r["phase"] == "start"
        }
    dq = "SELECT start_ms, kind, boiler, gateway, channel FROM data_quality"
    for s in query(influx, f"{dq} WHERE {where}"):
        for r in s.rows():
            boiler = None if r["boiler"] == "-" else r["boiler"]
            channel = None if r["channel"] == "-" else r["channel"]
            keys.add(
                ("data_quality", r["kind"], boiler or r["gateway"], channel, int(r["start_ms"]))
            )
    return keys


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("fault_kinds")
    data_dir = root / "stack"
    env = _env(data_dir)
    started = time.monotonic()
    try:
        summary_path, truth_path = _run_up(root, env)
        up_s = time.monotonic() - started
        status = json.loads(
            subprocess.run(
                [sys.executable, "-m", "heatstream", "stack", "status", "--json"],
                env=env, capture_output=True, text=True, check=True,
            ).stdout
        )  # fmt: skip
        settings = load_settings(
            kafka={"bootstrap": status["kafka"]["bootstrap"]},
            influxdb={"url": status["influxdb"]["url"], "database": status["influxdb"]["database"]},
        )
        inventory = parse_inventory((data_dir / "run" / "inventory.toml").read_text())
        raw_topic = topic_name(RAW_EVENTS, settings.kafka.topic_prefix)
        log = asyncio.run(_read_raw_log(settings.kafka.bootstrap, raw_topic))
        detections = _replay_detections(settings, inventory, log)
        run_start = parse_instant_ms(START)
        landed = _landed_keys(settings.influxdb, run_start, run_start + DURATION_H * 3_600_000)
        partitions: dict[str, set[int]] = defaultdict(set)
        for partition, records in log.items():
            for r in records:
                if r.key:
                    partitions[r.key.decode()].add(partition)
        yield {
            "summary": json.loads(summary_path.read_text()),
            "truth": [json.loads(line) for line in truth_path.read_text().splitlines() if line],
            "detections": [d for d in detections if d.start_ms >= run_start],
            "landed": landed,
            "partitions": partitions,
            "up_s": up_s,
            "replay_s": time.monotonic() - started - up_s,
        }
    finally:
        subprocess.run(
            [sys.executable, "-m", "heatstream", "stack", "down", "--purge"],
            env=env, capture_output=True, timeout=120,
        )  # fmt: skip


def _fault(run: Any, kind: str, **match: Any) -> dict[str, Any]:
    found = [
        t
        for t in run["truth"]
        if t["kind"] == kind
        and all(t.get(k) == v or t["params"].get(k) == v for k, v in match.items())
    ]
    assert len(found) == 1, (kind, match, run["truth"])
    return found[0]


def _first_detection(
    run: Any, measurement: str, kind: str, fault: dict[str, Any], *, channel: str | None = None
) -> Detected:
    target = fault["boiler"] if measurement != "data_quality" or channel else None
    hits = [
        d
        for d in run["detections"]
        if d.measurement == measurement
        and d.kind == kind
        and (d.boiler == target if target else d.gateway == fault["gateway"] and d.boiler is None)
        and (channel is None or d.channel == channel)
        and d.detected_ms >= fault["start"]
    ]
    assert hits, f"{fault} not reported as {measurement}/{kind}: {run['detections']}"
    first = min(hits, key=lambda d: d.detected_ms)
    assert first.key in run["landed"], f"{first} was not landed in InfluxDB by the live run"
    return first


# -- bounds (docs/detections.md, "Delays" of each detector) ------------------------


def _burst(fault: dict[str, Any], d: Detected) -> int:
    # Leaks, burst: moisture, <= 2 windows (max of the window, 2 of 3).
    return 2 * WINDOW_MS + close_ms(d)


def _stuck(fault: dict[str, Any], d: Detected) -> int:
    # Stuck sensors: 5 windows (`stuck_windows`) of one exact value.
    return QualityParams().stuck_windows * WINDOW_MS + close_ms(d)


def _silent(fault: dict[str, Any], d: Detected) -> int:
    # Silent gateways: `silent_ms` of partition event time since the gateway's last
    # frame arrived, advanced frame by frame. At --speed max the partner gateway can
    # run ahead of the offline one in the log (by up to the simulator's lockstep bound,
    # LOCKSTEP_MS, plus what was in flight when the uplink went down); what it was ahead
    # when the last frame arrived counts too (0 to a frame for gateways sending in real
    # time).
    assert d.lead_ms < ProcessorParams().gateway_silent_ms, d
    return ProcessorParams().gateway_silent_ms + FRAME_MS + d.lead_ms


def _skew_ahead(fault: dict[str, Any], d: Detected) -> int:
    # Clock skew, ahead: the first frame.
    return FRAME_MS


def _skew_behind(fault: dict[str, Any], d: Detected) -> int:
    # Clock skew, behind: a lag constant within 5 s for `behind_hold_ms` 5 min.
    return SkewParams().behind_hold_ms + FRAME_MS


def _fouling(fault: dict[str, Any], d: Detected) -> int:
    # Gradual fouling: the loop 3 K hotter at the same load + 4 of 6 judged windows;
    # measured 42-107 % into a 2 h ramp of loss 0.4 over 16 boilers.
    return int(1.1 * fault["params"]["ramp_h"] * 3_600_000)


def _thermometer(fault: dict[str, Any], d: Detected) -> int:
    # Thermometer drift: time to drift 1.2 K + 6 of 8 judged windows; measured up to
    # 18 min beyond the time to drift 1.2 K where no planned throttling intervened.
    return int(1.2 / abs(fault["params"]["rate_per_h"]) * 3_600_000) + 18 * MIN


def _flow_meter(fault: dict[str, Any], d: Detected) -> int:
    # Flow meter drift: time for the recovery to fall 8 % + 4 of 6 judged windows;
    # measured up to 38 min beyond the time the reading was 8 % below its baseline.
    low_8pct_h = 0.08 * d.evidence["baseline_flow_lpm"] / abs(fault["params"]["rate_per_h"])
    return int(low_8pct_h * 3_600_000) + 38 * MIN


CASES = [
    pytest.param("burst_leak", {}, "leak", "leak", None, _burst, id="burst_leak"),
    pytest.param("fouling", {}, "anomaly", "efficiency_drop", None, _fouling, id="fouling"),
    pytest.param(
        "stuck_sensor", {}, "data_quality", "sensor_stuck", "supply_temp_c", _stuck,
        id="stuck_sensor",
    ),
    pytest.param(
        "drifting_sensor", {"channel": "return_temp_c"}, "anomaly", "sensor_drift", None,
        _thermometer, id="drifting_sensor-return_temp_c",
    ),
    pytest.param(
        "drifting_sensor", {"channel": "flow_lpm"}, "anomaly", "sensor_drift", None,
        _flow_meter, id="drifting_sensor-flow_lpm",
    ),
    pytest.param(
        "gateway_offline", {}, "data_quality", "gateway_silent", None, _silent,
        id="gateway_offline",
    ),
    pytest.param(
        "clock_skew", {"offset_ms": 600_000}, "data_quality", "clock_skew", None, _skew_ahead,
        id="clock_skew-ahead",
    ),
    pytest.param(
        "clock_skew", {"offset_ms": -180_000}, "data_quality", "clock_skew", None, _skew_behind,
        id="clock_skew-behind",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "match", "measurement", "reported_as", "channel", "bound"), CASES)
def test_fault_is_reported_for_its_target_within_the_documented_delay(
    run: Any,
    kind: str,
    match: dict[str, Any],
    measurement: str,
    reported_as: str,
    channel: str | None,
    bound: Callable[[dict[str, Any], Detected], int],
    request: pytest.FixtureRequest,
) -> None:
    fault = _fault(run, kind, **match)
    detected = _first_detection(run, measurement, reported_as, fault, channel=channel)
    delay_ms = detected.detected_ms - fault["start"]
    limit_ms = bound(fault, detected)
    # Shown in --junitxml reports (record_property warns under junit_family xunit2).
    request.node.user_properties += [
        ("delay_min", round(delay_ms / MIN, 2)),
        ("documented_min", round(limit_ms / MIN, 2)),
    ]
    assert delay_ms <= limit_ms, (
        f"{kind} {match or ''} on {fault['boiler'] or fault['gateway']}: reported as "
        f"{reported_as} {delay_ms / MIN:.1f} min after it began, documented <= "
        f"{limit_ms / MIN:.1f} min ({detected})"
    )


def test_no_healthy_boiler_raises_an_alert_and_no_faulty_one_before_its_fault(run: Any) -> None:
    allowed = {
        "burst_leak": {"leak", "pump_failure"},  # a drained loop also stops the pump (docs)
        "fouling": {"efficiency_drop"},
        "drifting_sensor": {"sensor_drift"},
        "stuck_sensor": set(),
    }
    faults = {t["boiler"]: t for t in run["truth"] if t["kind"] in allowed}
    assert len(faults) == 5
    alerts = [d for d in run["detections"] if d.measurement in ("anomaly", "leak")]
    assert alerts
    false_alarms = [a for a in alerts if a.boiler not in faults]
    assert false_alarms == []
    for a in alerts:
        fault = faults[a.boiler]
        assert a.detected_ms >= fault["start"], (a, fault)
        assert a.kind in allowed[fault["kind"]], (a, fault)
    # ... and the live summary (InfluxDB) shows the same alerts, no others.
    summary_boilers = {a["boiler"] for a in run["summary"]["alerts"]}
    assert summary_boilers == {a.boiler for a in alerts}


def test_data_quality_issues_name_only_the_faulty_sensor_and_clocks(run: Any) -> None:
    truth = run["truth"]
    issues = [d for d in run["detections"] if d.measurement == "data_quality"]
    stuck = {(t["boiler"], t["params"]["channel"]) for t in truth if t["kind"] == "stuck_sensor"}
    assert {(d.boiler, d.channel) for d in issues if d.kind == "sensor_stuck"} == stuck
    skewed = {t["gateway"]: t["start"] for t in truth if t["kind"] == "clock_skew"}
    for d in (d for d in issues if d.kind == "clock_skew"):
        assert d.gateway in skewed and d.detected_ms >= skewed[d.gateway], d
    # Late samples only where events really came late: held back by the out-of-order
    # gateway beyond the allowed lateness, or from a clock set back by its skew.
    late = {t["gateway"] for t in truth if t["kind"] == "out_of_order"}
    late |= {
        t["gateway"] for t in truth if t["kind"] == "clock_skew" and t["params"]["offset_ms"] < 0
    }
    assert {d.gateway for d in issues if d.kind == "late_event"} <= late
    assert not [d for d in issues if d.kind in ("out_of_range", "sequence_gap")]
    assert run["summary"]["dead_letters"] == 0


def test_only_the_offline_gateway_is_reported_silent(run: Any) -> None:
    # At --speed max each gateway's SDK sends on its own; the simulator keeps them in
    # loose lockstep (ingest/simulator/lockstep.py: no gateway's acknowledged event time
    # runs more than LOCKSTEP_MS ahead of the slowest healthy one's), as real gateways
    # paced by real time are. Without it, gateways sharing a partition drifted minutes
    # apart in the log, and about 30 healthy ones per run were "silent".
    offline = _fault(run, "gateway_offline")
    silent = [d for d in run["detections"] if d.kind == "gateway_silent"]
    assert [d.gateway for d in silent] == [offline["gateway"]], silent
    assert offline["start"] <= silent[0].detected_ms <= offline["end"], (silent, offline)


def test_a_clock_running_ahead_makes_no_other_gateway_silent(run: Any) -> None:
    # gw-07 jumps 10 min ahead; gw-05 shares its partition. Attributed precisely: a
    # silence declared while processing a frame whose event time is ahead of its ingest
    # time was caused by that skewed clock.
    skewed = {t["gateway"] for t in run["truth"] if t["kind"] == "clock_skew"}
    assert run["partitions"]["gw-07"] == run["partitions"]["gw-05"]
    caused = [
        d
        for d in run["detections"]
        if d.kind == "gateway_silent" and d.by_frame_ahead and d.by_gateway in skewed
    ]
    assert caused == []


def test_duplicates_and_out_of_order_count_nothing_twice(run: Any) -> None:
    summary = run["summary"]
    closed = (DURATION_H * 60 - 1) / (DURATION_H * 60)  # the last minute is still open
    site_of = {t["gateway"]: "site-" + t["gateway"].removeprefix("gw-") for t in run["truth"]}
    dup = site_of[_fault(run, "duplicates")["gateway"]]
    row, sim = summary["sites"][dup], summary["simulator"][dup]
    assert row["coverage"] == pytest.approx(1.0, abs=1e-6)
    assert row["windows"] == 2 * (DURATION_H * 60 - 1)
    assert row["heat_kwh"] == pytest.approx(sim["heat_kwh"] * closed, rel=2e-3)
    # Out of order: frames held beyond the allowed lateness are routed as late, never
    # folded in twice: what is missing is what the coverage says is missing.
    ooo = site_of[_fault(run, "out_of_order")["gateway"]]
    row, sim = summary["sites"][ooo], summary["simulator"][ooo]
    assert row["windows"] == 2 * (DURATION_H * 60 - 1)
    assert row["heat_kwh"] <= sim["heat_kwh"] * closed * (1 + 2e-3)
    assert row["heat_kwh"] == pytest.approx(sim["heat_kwh"] * closed * row["coverage"], rel=5e-3)
    assert summary["late_events"] > 0
