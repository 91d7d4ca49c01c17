"""Fault specs, planning, ground truth and the contract of what the simulator emits."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from heatstream.ingest.simulator import (
    FaultSpec,
    FaultSpecError,
    SimConfig,
    Simulation,
    parse_fault_list,
    parse_fault_spec,
)
from heatstream.ingest.simulator.catalogue import KINDS, MALFORMED_SUBKINDS, describe_kinds
from heatstream.ingest.simulator.faultspec import expand
from heatstream.schemas.telemetry import TelemetryFrame

MIN = 60_000
HOUR = 60 * MIN


def test_a_spec_pins_target_time_and_parameters() -> None:
    spec = parse_fault_spec("slow_leak:boiler-0003@2h:rate_lpm=0.5")
    assert spec == FaultSpec("slow_leak", "boiler-0003", 2 * HOUR, None, False, {"rate_lpm": 0.5})
    spec = parse_fault_spec("pump_failure@30m+10m")
    assert (spec.kind, spec.target, spec.start_offset_ms, spec.duration_ms) == (
        "pump_failure",
        None,
        30 * MIN,
        10 * MIN,
    )
    spec = parse_fault_spec("drifting_sensor@1h+end:channel=supply_temp_c,rate_per_h=-1.5")
    assert spec.until_end and spec.params == {"channel": "supply_temp_c", "rate_per_h": -1.5}
    spec = parse_fault_spec("malformed:gw-01@10m:subkind=broken_json,count=2")
    assert spec.params == {"subkind": "broken_json", "count": 2}
    assert parse_fault_spec("leak").kind == "slow_leak"
    assert parse_fault_spec("foreign_boiler:gw-02").params == {"subkind": "foreign_boiler"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sprinkler", "unknown fault kind 'sprinkler'"),
        ("slow_leak:rate=1", "slow_leak has no parameter 'rate'"),
        ("slow_leak:rate_lpm=fast", "rate_lpm='fast' is not a number"),
        ("stuck_sensor:channel=humidity", "choose one of supply_temp_c"),
        ("fouling@soon", "duration 'soon' not understood"),
        ("pump_failure@1h+0s", "must be positive"),
        ("slow_leak:boiler 7", "not a boiler or gateway id"),
    ],
)
def test_bad_specs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message):
        parse_fault_spec(text)


def test_fault_lists_take_kinds_and_aliases() -> None:
    assert [s.kind for s in parse_fault_list("leak,fouling,pump_failure")] == [
        "slow_leak",
        "fouling",
        "pump_failure",
    ]
    assert len(parse_fault_list("all")) == len(KINDS)
    everything = expand(parse_fault_list("all"))
    assert sorted(s.params["subkind"] for s in everything if s.kind == "malformed") == sorted(
        MALFORMED_SUBKINDS
    )
    assert [s.params for s in parse_fault_list("broken_json")] == [{"subkind": "broken_json"}]
    with pytest.raises(FaultSpecError, match="--fault SPEC"):
        parse_fault_list("slow_leak@2h")


def test_the_listing_documents_every_kind_and_parameter() -> None:
    text = describe_kinds()
    for kind in KINDS:
        assert kind.name in text
        for p in kind.params:
            assert p.name in text
    for subkind in MALFORMED_SUBKINDS:
        assert subkind in text


def sim_with(*specs: str, **options: Any) -> Simulation:
    config: dict[str, Any] = {"boilers": 9, "sites": 3, "duration_ms": 2 * HOUR, "seed": 11}
    config.update(options)
    faults = tuple(
        f
        for s in specs
        for f in (parse_fault_list(s) if "," in s or s == "all" else [parse_fault_spec(s)])
    )
    return Simulation(SimConfig(faults=faults, **config))


def test_planning_is_deterministic_and_appending_a_fault_changes_nothing_else() -> None:
    a = sim_with("slow_leak,fouling,gateway_offline").truth()
    b = sim_with("slow_leak,fouling,gateway_offline").truth()
    c = sim_with("slow_leak,fouling,gateway_offline,pump_failure").truth()
    assert a == b
    assert all(record in c for record in a)
    assert a != sim_with("slow_leak,fouling,gateway_offline", seed=12).truth()


def test_boiler_faults_go_to_distinct_boilers_and_gateway_faults_to_distinct_gateways() -> None:
    sim = sim_with(
        "slow_leak,burst_leak,fouling,pump_failure,stuck_sensor,drifting_sensor,"
        "gateway_offline,clock_skew,duplicates"
    )
    boilers = [f.boiler for f in sim.faults if f.level == "boiler"]
    gateways = [f.gateway for f in sim.faults if f.level == "gateway"]
    assert len(set(boilers)) == len(boilers) == 6
    assert len(set(gateways)) == len(gateways) == 3


def test_pinned_values_are_kept() -> None:
    sim = sim_with(
        "pump_failure:boiler-0002@30m+10m:residual_pct=2", "gateway_offline:boiler-0004@1h+5m"
    )
    pump, offline = sim.faults
    assert (pump.boiler, pump.start_ms - sim.start_ms, pump.end_ms - pump.start_ms) == (
        1,
        30 * MIN,
        10 * MIN,
    )
    assert pump.params == {"residual_pct": 2.0}
    assert offline.boiler is None and sim.fleet.gateway_ids[offline.gateway] == "gw-01"
    with pytest.raises(FaultSpecError, match="needs a boiler id"):
        sim_with("fouling:gw-01")
    with pytest.raises(FaultSpecError, match="outside the run"):
        sim_with("fouling@3h")
    with pytest.raises(FaultSpecError, match="no boiler or gateway 'boiler-0099'"):
        sim_with("fouling:boiler-0099")
    with pytest.raises(FaultSpecError, match="at least two gateways"):
        sim_with("foreign_boiler", sites=1)


def test_truth_records_have_the_documented_shape() -> None:
    sim = sim_with("all")
    records = sim.truth()
    assert len(records) == len(KINDS) - 1 + len(MALFORMED_SUBKINDS)
    assert [r["start"] for r in records] == sorted(r["start"] for r in records)
    for r in records:
        assert list(r) == ["kind", "boiler", "gateway", "site", "start", "end", "ongoing", "params"]
        assert isinstance(r["start"], int) and isinstance(r["end"], int)
        assert sim.start_ms <= r["start"] < r["end"] <= sim.end_ms
        assert r["gateway"] in sim.fleet.gateway_ids and r["site"] in sim.fleet.site_ids
        assert (r["boiler"] is None) == (
            r["kind"] in ("gateway_offline", "clock_skew", "duplicates", "out_of_order")
            or r["params"].get("subkind") in ("broken_json", "wrong_types", "unknown_version")
        )
        orjson.dumps(r)
    malformed = [r for r in records if r["kind"] == "malformed"]
    for r in malformed:
        assert r["params"]["times_ms"] and r["params"]["count"] == len(r["params"]["times_ms"])
        # Bad messages replace whole frames, so they sit on the frame grid.
        assert all(
            (t - sim.start_ms) % sim.config.frame_span_ms == 0 for t in r["params"]["times_ms"]
        )
    foreign = next(r for r in malformed if r["params"]["subkind"] == "foreign_boiler")
    assert (
        sim.inventory.owner_of[foreign["boiler"]]
        == foreign["params"]["owner"]
        != foreign["gateway"]
    )


def test_every_frame_satisfies_the_contract_and_out_of_range_readings_stand_out() -> None:
    sim = sim_with("all", boilers=6, duration_ms=40 * MIN, frame_span_ms=5000)
    oor = next(f for f in sim.faults if f.subkind == "out_of_range")
    seq = 0
    violations = []
    for period in sim.periods():
        for frame in period.frames:
            gateway = sim.fleet.gateway_ids[frame.gateway]
            site = sim.fleet.site_ids[int(sim.fleet.gateway_site[frame.gateway])]
            model = TelemetryFrame.model_validate(
                {
                    "gateway": gateway,
                    "site": site,
                    "seq": seq,
                    "ingest_time_ms": period.end_ms,
                    **frame.payload(),
                }
            )
            seq += 1
            assert model.n_samples == 5 * len(frame.boilers)
            assert model.t_ms.max() - model.event_time_ms < sim.config.frame_span_ms
            violations.extend(model.range_violations())
    assert {(v.boiler, v.field, v.value) for v in violations} == {
        (sim.fleet.boiler_ids[oor.boiler], oor.params["channel"], oor.params["value"])
    }
    assert len(violations) == oor.params["count"]


def test_config_errors_say_what_to_change() -> None:
    from heatstream.ingest.simulator import SimConfigError

    with pytest.raises(SimConfigError, match="at least one boiler per site"):
        SimConfig(boilers=2, sites=3)
    with pytest.raises(SimConfigError, match="multiple of the sample period"):
        SimConfig(sample_ms=1000, frame_span_ms=1500)
