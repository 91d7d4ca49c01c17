"""Configuration (env, TOML, masking) and the inventory data file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from heatstream.inventory import (
    EXAMPLE_PATH,
    InventoryError,
    load_inventory,
    parse_inventory,
    synthetic_inventory,
)
from heatstream.settings import ConfigFileError, load_settings, masked


def test_environment_overrides_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "heatstream.toml"
    config.write_text('[kafka]\nbootstrap = "file:1"\npartitions = 3\n[influxdb]\napi = "v2"\n')
    monkeypatch.setenv("HEATSTREAM_KAFKA__BOOTSTRAP", "env:2")
    s = load_settings(config)
    assert s.kafka.bootstrap == "env:2"
    assert s.kafka.partitions == 3
    assert s.influxdb.api == "v2"


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text('app_id = "plant-7"\n')
    monkeypatch.setenv("HEATSTREAM_CONFIG", str(config))
    assert load_settings().app_id == "plant-7"


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"nope\.toml"):
        load_settings(tmp_path / "nope.toml")


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[kafka]\nbootstrapp = 'x'\n")
    with pytest.raises(ValueError, match="bootstrapp"):
        load_settings(config)


def test_secrets_are_masked() -> None:
    s = load_settings(kafka={"sasl_password": "hunter2"}, influxdb={"token": "tok-123"})
    text = json.dumps(masked(s))
    assert "hunter2" not in text and "tok-123" not in text
    assert masked(s)["influxdb"]["token"] == "**********"
    assert s.influxdb.token is not None and s.influxdb.token.get_secret_value() == "tok-123"


def test_config_show_masks_secrets_in_the_cli() -> None:
    env = {"HEATSTREAM_INFLUXDB__PASSWORD": "s3cret-pw", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "heatstream", "config", "show"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert "s3cret-pw" not in out
    assert 'password = "**********"' in out
    assert "[kafka]" in out


def test_bad_config_value_exits_2_naming_the_field() -> None:
    env = {"HEATSTREAM_KAFKA__PARTITIONS": "zero", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "heatstream", "config", "show"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2
    assert "kafka.partitions" in proc.stderr


def test_example_inventory_loads() -> None:
    inv = load_inventory(EXAMPLE_PATH)
    assert inv.owns("gw-lyon-1", "boiler-lyon-01")
    assert not inv.owns("gw-nantes-1", "boiler-lyon-01")
    pool = inv.site_by_id["pool-lyon"].displaced_heat
    # 900 kWh of heat replaces 1000 kWh of gas at 90 %: 227 kg CO2e.
    assert pool.co2_avoided_kg(900.0) == pytest.approx(227.0)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'site = "pool-lyon"\nnominal_it_kw = 120.0\n',
            'site = "mars"\nnominal_it_kw = 120.0\n',
            "boilers[1].site = 'mars' is not a site id",
        ),
        (
            'boilers = ["boiler-nantes-01"]',
            'boilers = ["boiler-lyon-01"]',
            "gateways[1].boilers[0] = 'boiler-lyon-01' is already owned by gateway 'gw-lyon-1'",
        ),
        ("efficiency = 0.85", "efficiency = 0", "efficiency = 0"),
        (
            "emission_factor_kg_per_kwh = 0.227",
            "emission_factor_kg_per_kwh = 'lots'",
            "emission_factor_kg_per_kwh = 'lots'",
        ),
    ],
)
def test_inventory_errors_name_field_and_value(old: str, new: str, message: str) -> None:
    text = EXAMPLE_PATH.read_text()
    assert old in text
    with pytest.raises(InventoryError) as info:
        parse_inventory(text.replace(old, new, 1), "inv.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("inv.toml: ")


def test_unreadable_inventory_is_named(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"cannot read inventory .*missing\.toml"):
        load_inventory(tmp_path / "missing.toml")


def test_synthetic_inventory_is_consistent() -> None:
    inv = synthetic_inventory(boilers=10, sites=3)
    assert len(inv.boilers) == 10 and len(inv.gateways) == 3
    assert sum(len(g.boilers) for g in inv.gateways) == 10
    assert {s.kind for s in inv.sites} == {"swimming_pool", "residential", "district_heating"}
    for gw in inv.gateways:
        assert all(inv.boiler_by_id[b].site == gw.site for b in gw.boilers)


def test_inventory_toml_round_trips() -> None:
    from heatstream.inventory import inventory_toml

    for inv in (load_inventory(EXAMPLE_PATH), synthetic_inventory(boilers=7, sites=3)):
        assert parse_inventory(inventory_toml(inv)) == inv
