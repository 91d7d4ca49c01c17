"""The monthly report against the real InfluxDB 1.6 (session `stack`).

Points are written straight into a database of this test, exactly as
docs/measurements.md describes them (line protocol by hand, ms timestamps),
for one site over a few days of January 2026 plus decoys: another site,
the neighbouring months, hourly and daily rollups. The report's figures are
checked against totals computed here from the same points.
"""

from __future__ import annotations

import base64
import random
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from heatstream.inventory import load_inventory
from heatstream.report.cli import report
from heatstream.report.data import NoDataError, build_report
from heatstream.report.model import ReportData
from heatstream.settings import Settings
from heatstream.stack import EmbeddedStack

pytestmark = pytest.mark.integration

SITE, OTHER = "pool-test", "res-test"
EFFICIENCY, FACTOR = 0.9, 0.227
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
JAN = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
FEB = int(datetime(2026, 2, 1, tzinfo=UTC).timestamp() * 1000)
MINUTES_IN_JAN = 31 * 1440

INVENTORY = f"""
[[sites]]
id = "{SITE}"
name = "Piscine test"
kind = "swimming_pool"
timezone = "Europe/Paris"
  [sites.displaced_heat]
  source = "gas_boiler"
  efficiency = {EFFICIENCY}
  emission_factor_kg_per_kwh = {FACTOR}
  factor_source = "test factor: natural gas (ADEME Base Empreinte, example)"

[[sites]]
id = "{OTHER}"
kind = "residential"
  [sites.displaced_heat]
  source = "oil_boiler"
  efficiency = 0.85
  emission_factor_kg_per_kwh = 0.324
  factor_source = "test factor: heating oil"

[[gateways]]
id = "gw-pool"
site = "{SITE}"
boilers = ["boiler-t1", "boiler-t2", "boiler-t3"]

[[gateways]]
id = "gw-res"
site = "{OTHER}"
boilers = ["boiler-r1"]

[[boilers]]
id = "boiler-t1"
site = "{SITE}"
nominal_it_kw = 100

[[boilers]]
id = "boiler-t2"
site = "{SITE}"
nominal_it_kw = 100

[[boilers]]
id = "boiler-t3"
site = "{SITE}"
nominal_it_kw = 100

[[boilers]]
id = "boiler-r1"
site = "{OTHER}"
nominal_it_kw = 100
"""


# -- line protocol, by hand (docs/measurements.md) ---------------------------------------


def _tag(v: str) -> str:
    return v.replace(",", r"\,").replace(" ", r"\ ").replace("=", r"\=")


def _field(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def line(measurement: str, tags: dict[str, str], fields: dict[str, object], ms: int) -> str:
    t = ",".join(f"{k}={_tag(v)}" for k, v in sorted(tags.items()))
    f = ",".join(f"{k}={_field(v)}" for k, v in fields.items() if v is not None)
    return f"{measurement},{t} {f} {ms}"


@dataclass
class Window:
    boiler: str
    site: str
    start: int
    heat: float
    it: float
    aux: float
    coverage: float
    supply: float | None
    ret: float | None
    resolution: str = "1m"

    @property
    def total(self) -> float:
        return self.it + self.aux

    @property
    def co2(self) -> float:
        # what the pipeline stores (streams/processor.py): negative heat avoids nothing
        return max(self.heat, 0.0) / EFFICIENCY * FACTOR

    def point(self) -> str:
        fields: dict[str, object] = {
            "heat_kwh": self.heat,
            "it_kwh": self.it,
            "aux_kwh": self.aux,
            "total_kwh": self.total,
            "erf": self.heat / self.total if self.total > 0 else None,
            "supply_temp_c": self.supply,
            "return_temp_c": self.ret,
            "flow_lpm": 12.5 if self.supply is not None else None,
            "coverage": self.coverage,
            "co2_avoided_kg": self.co2,
            "samples": round(60 * self.coverage),
            "quarantined": 0,
            "throttled": False,
        }
        tags = {"boiler": self.boiler, "site": self.site, "resolution": self.resolution}
        return line("heat_window", tags, fields, self.start)


def make_windows(rng: random.Random) -> list[Window]:
    out: list[Window] = []

    def run(boiler: str, site: str, start: int, minutes: int, unmetered_every: int = 0) -> None:
        for i in range(minutes):
            t = start + i * MIN
            roll = rng.random()
            if roll < 0.03:  # an empty window: the gateway was silent for that minute
                out.append(Window(boiler, site, t, 0.0, 0.0, 0.0, 0.0, None, None))
                continue
            coverage = 1.0 if roll < 0.85 else round(rng.uniform(0.05, 0.99), 3)
            heat = rng.uniform(0.8, 1.6) * coverage
            if rng.random() < 0.01:
                heat = -rng.uniform(0.01, 0.2)  # return warmer than supply
            metered = not (unmetered_every and i % unmetered_every == 0)
            out.append(
                Window(
                    boiler,
                    site,
                    t,
                    heat,
                    rng.uniform(1.3, 1.7) * coverage,
                    rng.uniform(0.05, 0.12) * coverage,
                    coverage,
                    rng.uniform(58.0, 70.0) if metered else None,
                    rng.uniform(38.0, 48.0) if metered else None,
                )
            )

    run("boiler-t1", SITE, JAN + 2 * DAY + 6 * HOUR, int(2.5 * 1440))
    run("boiler-t2", SITE, JAN + 3 * DAY, 17 * 60, unmetered_every=50)
    run("boiler-t2", SITE, JAN + 3 * DAY + 19 * HOUR, 29 * 60, unmetered_every=50)  # 2 h gap
    run("boiler-r1", OTHER, JAN + 3 * DAY, 600)
    run("boiler-t1", SITE, JAN - 30 * MIN, 30)  # December
    run("boiler-t1", SITE, FEB, 30)  # February
    return out


def rollups() -> list[Window]:
    """Hourly and daily rollups of the site: the report must not add them to the 1m sums."""
    return [
        Window("boiler-t1", SITE, JAN + 3 * DAY, 1500.0, 1000.0, 50.0, 1.0, 64.0, 44.0, "1d"),
        Window("boiler-t1", SITE, JAN + 3 * DAY, 60.0, 50.0, 2.0, 1.0, 64.0, 44.0, "1h"),
    ]


def alert_points() -> list[str]:
    def anomaly(
        boiler: str, site: str, kind: str, severity: str, start: int, end: int | None, reason: str
    ) -> list[str]:
        tags = {"boiler": boiler, "site": site, "kind": kind, "severity": severity}
        pts = [
            line(
                "anomaly",
                {**tags, "phase": "start"},
                {"active": 1, "start_ms": start, "reason": reason, "ev_ratio": 0.71},
                start,
            )
        ]
        if end is not None:
            pts.append(
                line(
                    "anomaly",
                    {**tags, "phase": "end"},
                    {
                        "active": 0,
                        "start_ms": start,
                        "end_ms": end,
                        "reason": reason + " (recovered)",
                        "ev_ratio": 0.95,
                    },
                    end,
                )
            )
        return pts

    pts = [
        *anomaly(
            "boiler-t1",
            SITE,
            "efficiency_drop",
            "warning",
            JAN - 2 * DAY,
            JAN + DAY + 3 * HOUR,
            "recovery 15 % under baseline",
        ),
        *anomaly(
            "boiler-t1",
            SITE,
            "pump_failure",
            "critical",
            JAN + 3 * DAY + 10 * HOUR,
            JAN + 3 * DAY + 11 * HOUR + 30 * MIN,
            "IT on, flow 0.2 L/min",
        ),
        *anomaly(
            "boiler-t2",
            SITE,
            "sensor_drift",
            "info",
            JAN + 4 * DAY + 5 * HOUR,
            None,
            'supply sensor drifting, "+0.4 K/day"',
        ),
        *anomaly(
            "boiler-t2",
            SITE,
            "bypass_open",
            "warning",
            JAN - 20 * DAY,
            JAN - 19 * DAY,
            "December only",
        ),
        *anomaly(
            "boiler-t1",
            SITE,
            "efficiency_drop",
            "warning",
            FEB - HOUR,
            FEB + HOUR,
            "crosses into February",
        ),
        *anomaly(
            "boiler-t1", SITE, "efficiency_drop", "warning", FEB + 2 * DAY, None, "February only"
        ),
        *anomaly("boiler-r1", OTHER, "pump_failure", "critical", JAN + 3 * DAY, None, "other site"),
    ]
    leak_tags = {"boiler": "boiler-t2", "site": SITE, "severity": "critical"}
    start, detected = JAN + 3 * DAY + 20 * HOUR, JAN + 3 * DAY + 22 * HOUR
    end = JAN + 4 * DAY + 3 * HOUR
    common = {
        "confidence": 0.9,
        "leak_rate_lpm": 0.8,
        "start_ms": start,
        "detected_ms": detected,
        "evidence": "makeup_water,pressure_decay",
        "ev_makeup_water": 1,
        "ev_pressure_decay": 1,
        "ev_flow_imbalance": 0,
        "ev_moisture": 0,
        "reason": "make-up water flowing while pressure decays",
    }
    pts.append(line("leak", {**leak_tags, "phase": "start"}, {"active": 1, **common}, detected))
    pts.append(
        line("leak", {**leak_tags, "phase": "end"}, {"active": 0, **common, "end_ms": end}, end)
    )
    return pts


QUALITY = [  # (site, boiler, kind, channel, count, start)
    (SITE, "boiler-t1", "out_of_range", "supply_temp_c", 5, JAN + 2 * DAY + 8 * HOUR),
    (SITE, "boiler-t2", "out_of_range", "flow_lpm", 2, JAN + 3 * DAY + 9 * HOUR),
    (SITE, "-", "sequence_gap", "-", 3, JAN + 3 * DAY + 17 * HOUR),
    (SITE, "-", "gateway_silent", "-", 1, JAN + 3 * DAY + 17 * HOUR + MIN),
    (SITE, "boiler-t1", "out_of_range", "supply_temp_c", 100, FEB + HOUR),  # February
    (OTHER, "-", "sequence_gap", "-", 7, JAN + 3 * DAY),  # other site
]


def quality_points() -> list[str]:
    return [
        line(
            "data_quality",
            {
                "site": site,
                "gateway": "gw-pool" if site == SITE else "gw-res",
                "boiler": boiler,
                "kind": kind,
                "channel": channel,
            },
            {"count": count, "start_ms": start, "end_ms": start + MIN, "detail": f"{kind} test"},
            start,
        )
        for site, boiler, kind, channel, count, start in QUALITY
    ]


# -- fixtures ------------------------------------------------------------------------------


@dataclass
class Loaded:
    settings: Settings
    inventory_path: Path
    windows: list[Window]

    def january(self, site: str = SITE) -> list[Window]:
        return [
            w
            for w in self.windows
            if w.site == site and w.resolution == "1m" and JAN <= w.start < FEB
        ]


@pytest.fixture(scope="module")
def loaded(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    database = f"report_{random.Random().getrandbits(32):08x}"
    url = stack.influx_url
    response = httpx.post(f"{url}/query", data={"q": f'CREATE DATABASE "{database}"'})
    assert response.status_code == 200, response.text
    windows = make_windows(random.Random(20260101))
    lines = [w.point() for w in windows + rollups()] + alert_points() + quality_points()
    response = httpx.post(
        f"{url}/write",
        params={"db": database, "precision": "ms"},
        content="\n".join(lines).encode(),
        timeout=60,
    )
    assert response.status_code == 204, response.text
    inventory_path = tmp_path_factory.mktemp("report") / "inventory.toml"
    inventory_path.write_text(INVENTORY)
    settings = stack.settings.model_copy(
        update={
            "influxdb": stack.settings.influxdb.model_copy(update={"database": database}),
            "inventory": inventory_path,
        }
    )
    return Loaded(settings, inventory_path, windows)


@pytest.fixture(scope="module")
def data(loaded: Loaded) -> ReportData:
    inv = load_inventory(loaded.inventory_path)
    return build_report(loaded.settings.influxdb, SITE, "2026-01", inv, str(loaded.inventory_path))


# -- figures against independent totals -----------------------------------------------------


def test_month_totals_match_the_points(loaded: Loaded, data: ReportData) -> None:
    jan = loaded.january()
    approx: Callable[[float], object] = lambda x: pytest.approx(x, rel=1e-9, abs=1e-9)  # noqa: E731
    heat = sum(w.heat for w in jan)
    total = sum(w.total for w in jan)
    assert data.windows == len(jan)
    assert data.heat_kwh == approx(heat)
    assert data.it_kwh == approx(sum(w.it for w in jan))
    assert data.aux_kwh == approx(sum(w.aux for w in jan))
    assert data.total_kwh == approx(total)
    assert data.erf == approx(heat / total)
    assert data.heat_positive_kwh == approx(sum(w.heat for w in jan if w.heat > 0))


def test_temperatures_are_coverage_weighted(loaded: Loaded, data: ReportData) -> None:
    temp = [
        (w.supply, w.ret, w.coverage)
        for w in loaded.january()
        if w.supply is not None and w.ret is not None
    ]
    weight = sum(c for _, _, c in temp)
    assert data.supply_temp_c == pytest.approx(sum(s * c for s, _, c in temp) / weight)
    assert data.return_temp_c == pytest.approx(sum(r * c for _, r, c in temp) / weight)
    assert data.temp_covered_minutes == pytest.approx(weight)


def test_co2_stored_and_rederived_agree(loaded: Loaded, data: ReportData) -> None:
    jan = loaded.january()
    assert data.co2_avoided_kg == pytest.approx(sum(w.co2 for w in jan), rel=1e-9)
    rederived = sum(w.heat for w in jan if w.heat > 0) / EFFICIENCY * FACTOR
    assert data.co2_derived_kg == pytest.approx(rederived, rel=1e-9)
    assert data.co2_agrees
    assert data.co2_implied_factor == pytest.approx(FACTOR)
    assert data.site.factor_source.startswith("test factor: natural gas")


def test_coverage_and_downtime_over_boiler_minutes(loaded: Loaded, data: ReportData) -> None:
    jan = loaded.january()
    boiler_minutes = 2 * MINUTES_IN_JAN  # t1 and t2 reported; t3 never did
    assert data.boiler_minutes == boiler_minutes
    assert data.coverage == pytest.approx(sum(w.coverage for w in jan) / boiler_minutes)
    good = sum(1 for w in jan if w.coverage >= 0.5)
    assert data.downtime_h == pytest.approx((boiler_minutes - good) / 60)
    assert data.boilers_without_data == ("boiler-t3",)
    by_boiler = {b.boiler: b for b in data.boilers}
    for name in ("boiler-t1", "boiler-t2"):
        mine = [w for w in jan if w.boiler == name]
        assert by_boiler[name].windows == len(mine)
        assert by_boiler[name].heat_kwh == pytest.approx(sum(w.heat for w in mine))
        good_b = sum(1 for w in mine if w.coverage >= 0.5)
        assert by_boiler[name].downtime_h == pytest.approx((MINUTES_IN_JAN - good_b) / 60)


def test_days_are_utc_days(loaded: Loaded, data: ReportData) -> None:
    per_day: dict[str, float] = defaultdict(float)
    for w in loaded.january():
        per_day[datetime.fromtimestamp(w.start / 1000, tz=UTC).strftime("%Y-%m-%d")] += w.heat
    assert len(data.days) == 31
    assert [d.date for d in data.days][:2] == ["2026-01-01", "2026-01-02"]
    for day in data.days:
        assert day.heat_kwh == pytest.approx(per_day.get(day.date, 0.0), abs=1e-9)
    assert sum(d.heat_kwh for d in data.days) == pytest.approx(data.heat_kwh)
    assert {d.date for d in data.days if d.windows} == set(per_day)


def test_alerts_overlapping_the_month(data: ReportData) -> None:
    got = {(a.kind, a.boiler, a.start_ms, a.end_ms) for a in data.alerts}
    assert got == {
        ("efficiency_drop", "boiler-t1", JAN - 2 * DAY, JAN + DAY + 3 * HOUR),
        (
            "pump_failure",
            "boiler-t1",
            JAN + 3 * DAY + 10 * HOUR,
            JAN + 3 * DAY + 11 * HOUR + 30 * MIN,
        ),
        ("sensor_drift", "boiler-t2", JAN + 4 * DAY + 5 * HOUR, None),
        ("efficiency_drop", "boiler-t1", FEB - HOUR, None),  # its end is after the month
        ("leak", "boiler-t2", JAN + 3 * DAY + 20 * HOUR, JAN + 4 * DAY + 3 * HOUR),
    }
    leak = next(a for a in data.alerts if a.kind == "leak")
    assert "makeup_water,pressure_decay" in leak.detail and leak.severity == "critical"
    pump = next(a for a in data.alerts if a.kind == "pump_failure")
    assert pump.reason == "IT on, flow 0.2 L/min" and pump.severity == "critical"


def test_data_quality_counts(data: ReportData) -> None:
    assert {(q.kind, q.issues, q.count) for q in data.quality} == {
        ("out_of_range", 2, 7),
        ("sequence_gap", 1, 3),
        ("gateway_silent", 1, 1),
    }


def test_no_data_names_the_site_the_month_and_the_sites_that_have_some(loaded: Loaded) -> None:
    inv = load_inventory(loaded.inventory_path)
    with pytest.raises(NoDataError) as err:
        build_report(loaded.settings.influxdb, "pool-nowhere", "2026-01", inv, "inv")
    assert err.value.sites_with_data == [SITE, OTHER]  # sorted, and the decoy site is listed
    assert "pool-nowhere" in str(err.value) and "2026-01" in str(err.value)
    with pytest.raises(NoDataError, match="no site has data in 2026-03"):
        build_report(loaded.settings.influxdb, SITE, "2026-03", inv, "inv")


# -- the command: md, html, pdf ---------------------------------------------------------------


def _app(settings: Settings) -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = settings

    app.command("report")(report)
    return app


def test_command_renders_the_three_formats(
    loaded: Loaded, data: ReportData, tmp_path: Path
) -> None:
    app, runner = _app(loaded.settings), CliRunner()
    out = {}
    for fmt in ("md", "html", "pdf"):
        path = tmp_path / f"jan.{fmt}"
        result = runner.invoke(
            app,
            [
                "report",
                "--site",
                SITE,
                "--month",
                "2026-01",
                "--format",
                fmt,
                "--output",
                str(path),
            ],
        )
        assert result.exit_code == 0, result.output
        assert str(path) in result.output
        out[fmt] = path.read_bytes()

    md = out["md"].decode()
    for text in (
        f"{data.heat_kwh:,.1f} kWh",
        f"{data.total_kwh:,.1f} kWh",
        f"{data.erf:.3f}",
        f"{data.supply_temp_c:.1f} °C",
        f"{data.co2_avoided_kg:,.1f} kg CO2e",
        f"{100 * data.coverage:.1f} %",
        f"{data.downtime_h:,.1f} h",
        "0.227 kg CO2e/kWh",
        "test factor: natural gas",
        "Europe/Paris",
        "pump_failure",
        "open at month end",
        "out_of_range",
        "```sql",
    ):
        assert text in md, text
    assert md.count("```sql") == len(data.queries)

    html = out["html"].decode()
    src = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert src is not None
    assert base64.b64decode(src.group(1)).startswith(b"\x89PNG\r\n\x1a\n")
    assert f"{data.heat_kwh:,.1f} kWh" in html

    pdf = out["pdf"]
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) > 1


def test_command_exits_2_for_a_site_without_data(loaded: Loaded, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        _app(loaded.settings),
        [
            "report",
            "--site",
            "pool-nowhere",
            "--month",
            "2026-01",
            "--output",
            str(tmp_path / "x.md"),
        ],
    )
    assert result.exit_code == 2
    assert "pool-nowhere" in result.output and "2026-01" in result.output
    assert SITE in result.output and OTHER in result.output
    assert not (tmp_path / "x.md").exists()
