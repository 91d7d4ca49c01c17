"""What a monthly heat-reuse report says, as plain frozen data.

`data.py` fills a `ReportData` from InfluxDB; the renderers (`render_md`,
`render_html`, `render_pdf`) and `plots` only format it, so a test can build
one by hand and check every renderer without a database.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteInfo(_Frozen):
    """The site as the inventory describes it."""

    id: str
    name: str
    kind: str
    timezone: str
    heat_source: str
    efficiency: float
    emission_factor_kg_per_kwh: float
    factor_source: str


class Query(_Frozen):
    """One InfluxQL statement the report ran, and what for."""

    purpose: str
    text: str


class Day(_Frozen):
    """One UTC day of the month (all its boilers together)."""

    date: str  # YYYY-MM-DD, UTC
    windows: int  # 1-minute windows with data
    heat_kwh: float
    total_kwh: float
    co2_avoided_kg: float
    coverage: float  # sum of window coverage / (boilers reporting x minutes of the day counted)
    supply_temp_c: float | None
    return_temp_c: float | None

    @property
    def erf(self) -> float | None:
        return self.heat_kwh / self.total_kwh if self.total_kwh > 0 else None


class BoilerFigures(_Frozen):
    boiler: str
    windows: int
    heat_kwh: float
    total_kwh: float
    coverage: float
    downtime_h: float


class Alert(_Frozen):
    """An anomaly or a leak suspicion that overlaps the month."""

    measurement: str  # "anomaly" or "leak"
    kind: str  # anomaly kind, or "leak"
    boiler: str
    severity: str
    start_ms: int
    end_ms: int | None  # None: still open at the end of the month
    reason: str
    detail: str = ""  # leaks: evidence, estimated rate and confidence


class QualityCount(_Frozen):
    kind: str
    issues: int  # data_quality points
    count: int  # readings or events concerned (sum of the `count` field)


class ReportData(_Frozen):
    """Every figure of one site's monthly report, and how it was obtained."""

    site: SiteInfo
    month: str  # YYYY-MM (UTC calendar month)
    start_ms: int  # first instant of the month, UTC
    end_ms: int  # first instant of the next month, UTC
    period_end_ms: int  # end of the minutes counted for coverage (end_ms unless month-to-date)
    generated_ms: int
    source: str  # "InfluxDB <url>, database <db>" (never credentials)
    inventory: str  # which inventory file gave the site

    boilers: tuple[BoilerFigures, ...]
    boilers_without_data: tuple[str, ...]  # in the inventory, no window this month
    days: tuple[Day, ...]

    windows: int
    heat_kwh: float
    it_kwh: float
    aux_kwh: float
    total_kwh: float
    erf: float | None
    heat_positive_kwh: float  # sum over windows with heat > 0 (what CO2 is counted on)
    supply_temp_c: float | None
    return_temp_c: float | None
    temp_covered_minutes: float  # the weight behind the two averages
    co2_avoided_kg: float  # sum of the pipeline's co2_avoided_kg field
    co2_derived_kg: float  # heat_positive / efficiency x factor
    co2_agrees: bool
    co2_implied_factor: float | None  # the factor the stored CO2 implies
    boiler_minutes: int  # boilers reporting x minutes of the period
    coverage: float
    downtime_h: float

    alerts: tuple[Alert, ...]
    quality: tuple[QualityCount, ...]
    queries: tuple[Query, ...]

    @property
    def complete(self) -> bool:
        """False for a month not yet over: the figures are month-to-date."""
        return self.period_end_ms >= self.end_ms

    @property
    def days_in_month(self) -> int:
        return (self.end_ms - self.start_ms) // 86_400_000


def iso(ms: int | None) -> str:
    """'2026-01-04 13:05 UTC' (minutes: every figure here is minute-aligned)."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
