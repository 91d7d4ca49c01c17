"""The simulator through the real gateway SDK, without a broker: bytes, faults on the wire, CLI."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from typer.testing import CliRunner

from heatstream.ingest.simulator import SimConfig, Simulation, parse_fault_spec
from heatstream.ingest.simulator.lockstep import Lockstep
from heatstream.ingest.simulator.publish import Publisher, PublishOptions, PublishReport
from heatstream.schemas.errors import DecodeError, SchemaValidationError, UnknownSchemaError
from heatstream.schemas.serde import decode_raw
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.settings import load_settings

MIN = 60_000


def publish(sim: Simulation, **options: Any) -> PublishReport:
    return asyncio.run(Publisher(sim, load_settings().kafka, PublishOptions(**options)).run())


def simulation(*faults: str, **config: Any) -> Simulation:
    base: dict[str, Any] = {
        "boilers": 6,
        "sites": 3,
        "duration_ms": 10 * MIN,
        "seed": 5,
        "frame_span_ms": 5000,
    }
    base.update(config)
    return Simulation(SimConfig(faults=tuple(parse_fault_spec(f) for f in faults), **base))


def messages(path: Path) -> list[tuple[str, bytes]]:
    out = []
    for line in path.read_bytes().splitlines():
        entry = orjson.loads(line)
        out.append((entry["key"], entry["value"].encode()))
    return out


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    faults = (
        "slow_leak",
        "duplicates@1m",
        "out_of_order@2m",
        "malformed@1m",
        "gateway_offline@3m+2m",
    )
    paths = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        path = tmp_path / f"{name}.jsonl"
        sim = simulation(*faults, seed=seed)
        report = publish(sim, dry_run=True, output=path)
        assert report.sent + report.raw_sent == len(path.read_bytes().splitlines())
        paths.append(path)
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b
    assert a != c


def test_every_message_went_through_the_sdk_with_sequences_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sim = simulation()
    report = publish(sim, dry_run=True, output=path)
    by_key: dict[str, list[int]] = defaultdict(list)
    for key, value in messages(path):
        event = decode_raw(value)
        assert event.gateway == key
        by_key[key].append(event.seq)
    assert sorted(by_key) == list(sim.fleet.gateway_ids)
    for seqs in by_key.values():
        assert seqs == list(range(len(seqs)))  # no faults: in order, no gap, no copy
    assert report.frames == sim.fleet.n_gateways * 10 * 60 // 5
    assert report.accepted == report.sent == report.frames + report.compute_events


def test_transport_faults_are_visible_on_the_wire(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sim = simulation(
        "duplicates:gw-01@0+10m:prob=0.3,max_delay_frames=2",
        "out_of_order:gw-02@0+10m:prob=0.3,max_delay_frames=4",
        "malformed:gw-03@1m:subkind=broken_json,count=2",
        "malformed:gw-03@1m:subkind=wrong_types,count=2",
        "malformed:gw-03@1m:subkind=unknown_version,count=2",
        "malformed:gw-01@1m:subkind=foreign_boiler,count=2",
        "malformed:gw-02@1m:subkind=out_of_range,count=2",
    )
    report = publish(sim, dry_run=True, output=path)
    errors: dict[str, int] = defaultdict(int)
    seen: dict[str, bytes] = {}
    copies = 0
    seqs: dict[str, list[int]] = defaultdict(list)
    foreign: list[str] = []
    out_of_range = 0
    for key, value in messages(path):
        try:
            event = decode_raw(value)
        except (DecodeError, SchemaValidationError, UnknownSchemaError) as exc:
            errors[exc.reason] += 1
            assert key == "gw-03"
            continue
        if event.event_id in seen:
            assert seen[event.event_id] == value  # a copy is identical
            copies += 1
            continue
        seen[event.event_id] = value
        seqs[key].append(event.seq)
        if isinstance(event, TelemetryFrame):
            foreign.extend(b for b in event.boilers if not sim.inventory.owns(key, b))
            out_of_range += len(event.range_violations())
    assert dict(errors) == {"decode_error": 2, "schema_violation": 2, "unknown_schema": 2}
    assert copies == report.duplicates > 0
    assert seqs["gw-02"] != sorted(seqs["gw-02"])  # held back frames arrive late
    assert seqs["gw-01"] == sorted(seqs["gw-01"])
    # The replaced frames' numbers are used by the bad messages: no gap on gw-03.
    assert len(seqs["gw-03"]) + 6 == max(seqs["gw-03"]) + 1
    truth = {r["params"]["subkind"]: r for r in sim.truth() if r["kind"] == "malformed"}
    assert foreign == [truth["foreign_boiler"]["boiler"]] * 2
    assert out_of_range == 2


class Recorder:
    """A producer that records the order in which every gateway really sent."""

    log: ClassVar[list[tuple[str, int]]] = []

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> Any:
        data = orjson.loads(value)
        Recorder.log.append((self.gateway, data["event_time_ms"]))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def test_an_offline_gateway_spools_and_sends_its_backlog_when_back(tmp_path: Path) -> None:
    Recorder.log = []
    sim = simulation("gateway_offline:gw-02@3m+5m", frame_span_ms=1000)
    report = publish(sim, producer_factory=Recorder)
    outage = next(f for f in sim.faults if f.kind == "gateway_offline")
    order = Recorder.log
    backlog = [
        i
        for i, (g, t) in enumerate(order)
        if g == "gw-02" and outage.start_ms + 5000 <= t < outage.end_ms
    ]
    assert backlog
    late_others = [
        i
        for i, (g, t) in enumerate(order)
        if g != "gw-02" and t >= outage.start_ms + 0.75 * (outage.end_ms - outage.start_ms)
    ]
    # The backlog went out after the others had moved well into the outage...
    assert min(backlog) > min(late_others)
    # ... in one burst, and nothing was lost.
    assert report.per_gateway["gw-02"]["send_errors"] > 0
    assert report.per_gateway["gw-02"]["sent"] == report.per_gateway["gw-02"]["accepted"]
    assert report.sent == len(order)


def test_lockstep_floor_counts_acks_and_an_offline_gateway_by_what_it_handed() -> None:
    async def send(gw: Any) -> None:
        await gw.may_send()
        gw.sent()

    async def scenario() -> None:
        down = [False, False]
        lockstep = Lockstep(0, lead_ms=20)
        a, b = (lockstep.join(lambda i=i: down[i]) for i in range(2))
        for gw in (a, b):  # period [0, 10): two messages each, one acknowledged
            gw.handing(10, 2)
            await send(gw)
            await send(gw)
            gw.acked()
        assert lockstep.floor_ms == 0
        a.acked()
        assert (a.acked_ms, lockstep.floor_ms) == (10, 0)  # b still has one in flight
        a.handing(20, 1)
        a.handing(30, 1)
        await send(a)  # [10, 20) may go at floor 0
        sending = asyncio.create_task(send(a))  # [20, 30) waits for floor 10
        await asyncio.sleep(0)
        assert not sending.done()
        down[1] = True  # b's uplink goes down: it counts with what it handed (10)
        b.poke()
        await asyncio.sleep(0)
        assert sending.done() and lockstep.floor_ms == 10
        b.handing(20, 1)  # spooled, never sent: b holds nobody back
        a.acked()
        assert lockstep.floor_ms == 20
        down[1] = False  # back: its backlog (from [0, 10) on) is not acknowledged yet
        b.poke()
        assert lockstep.floor_ms == 0
        b.failed()  # a send failed: the next one sent is the oldest not acknowledged
        for _ in range(2):
            await send(b)
            b.acked()
        assert (b.acked_ms, lockstep.floor_ms) == (20, 20)

    asyncio.run(scenario())


class SlowUplink:
    """Acknowledges at once, except gw-02's messages: ACK_DELAY_S after each send."""

    ACK_DELAY_S = 0.01
    acks: ClassVar[list[tuple[str, int]]] = []  # (gateway, ingest time) in ack order

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> Any:
        t = orjson.loads(value)["ingest_time_ms"]  # the end of the period it was sealed for
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def ack() -> None:
            future.set_result(None)
            SlowUplink.acks.append((self.gateway, t))

        loop.call_later(self.ACK_DELAY_S if self.gateway == "gw-02" else 0, ack)
        return future


def _leads(sim: Simulation, acks: list[tuple[str, int]], behind: str) -> list[int]:
    """After each acknowledgement, how far the furthest gateway's acknowledged time was
    ahead of gateway `behind`'s."""
    latest = dict.fromkeys(sim.fleet.gateway_ids, sim.start_ms)
    leads = []
    for gateway, t in acks:
        latest[gateway] = max(latest[gateway], t)
        leads.append(max(latest.values()) - latest[behind])
    return leads


@pytest.mark.parametrize("lockstep_ms", [20_000, 10**12], ids=["lockstep", "off"])
def test_no_gateway_runs_ahead_of_a_slow_one_by_more_than_the_lockstep(lockstep_ms: int) -> None:
    SlowUplink.acks = []
    sim = simulation("gateway_offline:gw-03@2m+3m", duration_ms=8 * MIN)
    report = publish(sim, producer_factory=SlowUplink, lockstep_ms=lockstep_ms)
    assert report.sent == len(SlowUplink.acks) == report.accepted
    slow = _leads(sim, SlowUplink.acks, "gw-02")
    if lockstep_ms > 20_000:
        # The slow uplink falls behind (by 55-100 s seen): what the lockstep prevents.
        assert max(slow) > 20_000
        return
    assert max(slow) <= 20_000
    assert max(_leads(sim, SlowUplink.acks, "gw-01")) <= 20_000
    # gw-03's outage holds nobody back (it would never end otherwise: the outage is on
    # gw-03's own clock, which the lockstep would stop): the others go on for about as
    # long as it lasts...
    outage = next(f for f in sim.faults if f.kind == "gateway_offline")
    offline = _leads(sim, SlowUplink.acks, "gw-03")
    assert max(offline) >= outage.end_ms - outage.start_ms - 20_000
    # ... and once back, from the first message after its backlog, it is waited for.
    back = next(i for i, (g, t) in enumerate(SlowUplink.acks) if g == "gw-03" and t > outage.end_ms)
    assert max(offline[back:]) <= 20_000


def test_clock_skew_shows_as_event_time_away_from_ingest_time(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sim = simulation("clock_skew:gw-01@2m:offset_ms=120000")
    publish(sim, dry_run=True, output=path)
    lag = defaultdict(list)
    for key, value in messages(path):
        event = decode_raw(value)
        if isinstance(event, TelemetryFrame):
            lag[key].append(event.ingest_time_ms - event.event_time_ms)
    assert max(lag["gw-02"]) <= 5000 and min(lag["gw-02"]) >= 0
    assert min(lag["gw-01"]) < -100_000  # measured "in the future"


@pytest.fixture
def cli() -> Any:
    from heatstream.cli import _register, app

    if not any(c.name == "simulate" for c in app.registered_commands):
        _register()
    return app


def test_cli_lists_the_fault_kinds(cli: Any) -> None:
    result = CliRunner().invoke(cli, ["simulate", "--faults"])
    assert result.exit_code == 0, result.output
    assert "slow_leak (aliases: leak)" in result.output and "foreign_boiler" in result.output
    result = CliRunner().invoke(cli, ["simulate", "--faults", "--seed", "3"])
    assert result.exit_code == 0 and "pump_failure" in result.output


def test_cli_dry_run_writes_identical_truth_totals_and_messages(cli: Any, tmp_path: Path) -> None:
    outputs = []
    for run in ("1", "2"):
        args = [
            "simulate",
            "--boilers",
            "4",
            "--sites",
            "2",
            "--duration",
            "5m",
            "--seed",
            "9",
            "--faults",
            "leak,pump_failure,duplicates",
            "--fault",
            "fouling:boiler-0002@1m",
            "--dry-run",
            "--output",
            str(tmp_path / f"out{run}.jsonl"),
            "--truth",
            str(tmp_path / f"truth{run}.jsonl"),
            "--totals",
            str(tmp_path / f"totals{run}.json"),
        ]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert "fleet" in result.output and "ERF" in result.output
        outputs.append(
            [
                (tmp_path / f"{name}{run}{ext}").read_bytes()
                for name, ext in (("out", ".jsonl"), ("truth", ".jsonl"), ("totals", ".json"))
            ]
        )
    assert outputs[0] == outputs[1]
    truth = [orjson.loads(line) for line in outputs[0][1].splitlines()]
    assert {r["kind"] for r in truth} == {"slow_leak", "pump_failure", "duplicates", "fouling"}
    totals = orjson.loads(outputs[0][2])
    assert totals["run"]["frame_span_ms"] == 60_000  # auto at --speed max
    assert set(totals["boilers"]) == {f"boiler-{i:04d}" for i in range(1, 5)}
    assert totals["fleet"]["heat_kwh"] == pytest.approx(
        sum(b["heat_kwh"] for b in totals["boilers"].values()), abs=0.01
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "sprinkler"], "unknown fault kind"),
        (["--fault", "fouling:boiler-0042"], "no boiler or gateway"),
        (["--speed", "fast"], "use 'max' or a factor"),
        (["--duration", "a while"], "not understood"),
        (["--boilers", "2", "--sites", "3"], "at least one boiler per site"),
    ],
)
def test_cli_refuses_bad_options_with_a_reason(cli: Any, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["simulate", "--dry-run", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_cli_runs_a_duration_that_ends_inside_a_physics_step(cli: Any, tmp_path: Path) -> None:
    """The physics steps every 10 s; 25 s of 5 s frames used to crash on the cut step."""
    args = ["simulate", "--boilers", "4", "--sites", "2", "--duration", "25s"]
    args += ["--frame-span", "5s", "--dry-run", "--totals", str(tmp_path / "t.json")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    totals = orjson.loads((tmp_path / "t.json").read_bytes())
    assert totals["messages"]["frames"] == 2 * 5
    assert totals["run"]["end"] - totals["run"]["start"] == 25_000


def test_cli_says_when_the_duration_is_cut_to_whole_frames(cli: Any) -> None:
    args = ["simulate", "--boilers", "2", "--sites", "1", "--duration", "95s", "--dry-run"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "--duration 95s is not a whole number of 1m frames: simulating 1m" in said
