"""Derived events: the projections the stream processor computes from the raw log.

Every derived event is a deterministic function of raw events, so replaying the
log rebuilds identical ones. Each has a `key` (the Kafka key: the boiler, or the
gateway when no boiler applies) and a deterministic `id` so consumers can
de-duplicate redeliveries.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from heatstream.schemas.envelope import ID_PATTERN

#: A window length: '1m' (the default heat window), '1h' and '1d' rollups, or '<n>s|m|h|d'.
Resolution = str
RESOLUTION_PATTERN = r"^[1-9][0-9]*[smhd]$"


def resolution_label(window_ms: int) -> str:
    """'1m' for 60 000 ms, '30s', '2h', '1d'..."""
    for unit, ms in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if window_ms % ms == 0:
            return f"{window_ms // ms}{unit}"
    raise ValueError(f"window length {window_ms} ms is not a whole number of seconds")


Severity = Literal["info", "warning", "critical"]


class Derived(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_name: str
    schema_version: int = 1

    @property
    def key(self) -> str:
        raise NotImplementedError

    @property
    def id(self) -> str:
        raise NotImplementedError


class HeatWindow(Derived):
    """Heat recovery of one boiler over one event-time window."""

    schema_name: Literal["heat.window"] = "heat.window"
    schema_version: Literal[1] = 1
    boiler: str = Field(pattern=ID_PATTERN)
    site: str = Field(pattern=ID_PATTERN)
    resolution: Resolution = Field(
        pattern=RESOLUTION_PATTERN, description="window length: '1m' windows, '1h' and '1d' rollups"
    )
    window_start_ms: int
    window_end_ms: int
    heat_kwh: float = Field(description="heat handed to the heating loop, kWh")
    it_kwh: float = Field(description="IT electrical energy, kWh")
    aux_kwh: float = Field(description="auxiliary electrical energy (pumps, fans), kWh")
    total_kwh: float = Field(description="IT + auxiliary energy, kWh")
    erf: float | None = Field(description="Energy Reuse Factor heat/total; null when total is 0")
    supply_temp_mean_c: float | None
    return_temp_mean_c: float | None
    flow_mean_lpm: float | None
    coverage: float = Field(ge=0, le=1, description="fraction of the window covered by data")
    co2_avoided_kg: float = Field(description="heat / displaced efficiency x emission factor")
    samples: int = Field(ge=0)
    quarantined: int = Field(0, ge=0, description="readings kept out for being out of range")
    heat_by_workload_kwh: dict[str, float] = Field(
        default_factory=dict, description="heat attributed to the workload kinds that ran"
    )
    throttled: bool = Field(False, description="a planned power cap was active in the window")

    @property
    def key(self) -> str:
        return self.boiler

    @property
    def id(self) -> str:
        return f"{self.boiler}:{self.resolution}:{self.window_start_ms}"


class EfficiencyAnomaly(Derived):
    """An efficiency anomaly (or pump failure) started or ended on a boiler."""

    schema_name: Literal["anomaly.efficiency"] = "anomaly.efficiency"
    schema_version: Literal[1] = 1
    boiler: str = Field(pattern=ID_PATTERN)
    site: str = Field(pattern=ID_PATTERN)
    kind: Literal["efficiency_drop", "pump_failure", "sensor_drift", "bypass_open"]
    phase: Literal["start", "end"]
    start_ms: int
    end_ms: int | None = Field(None, description="set when phase is 'end'")
    severity: Severity
    evidence: dict[str, float] = Field(description="the numbers that triggered the detection")
    reason: str = Field(max_length=500)

    @property
    def key(self) -> str:
        return self.boiler

    @property
    def id(self) -> str:
        return f"{self.boiler}:{self.kind}:{self.start_ms}:{self.phase}"


LeakEvidence = Literal["makeup_water", "pressure_decay", "flow_imbalance", "moisture"]


class LeakSuspected(Derived):
    """A leak in a boiler's closed loop is suspected (or the suspicion cleared)."""

    schema_name: Literal["leak.suspected"] = "leak.suspected"
    schema_version: Literal[1] = 1
    boiler: str = Field(pattern=ID_PATTERN)
    site: str = Field(pattern=ID_PATTERN)
    phase: Literal["start", "end"] = "start"
    start_ms: int = Field(description="estimated time the leak started")
    detected_ms: int = Field(description="event time at which the evidence crossed the threshold")
    end_ms: int | None = None
    evidence: list[LeakEvidence] = Field(min_length=1)
    confidence: float = Field(ge=0, le=1)
    leak_rate_lpm: float = Field(ge=0, description="estimated loss of loop water, L/min")
    severity: Severity = "critical"
    reason: str = Field(max_length=500)

    @property
    def key(self) -> str:
        return self.boiler

    @property
    def id(self) -> str:
        return f"{self.boiler}:leak:{self.start_ms}:{self.phase}"


DataQualityKind = Literal[
    "out_of_range",
    "gateway_silent",
    "gateway_offline",
    "sensor_stuck",
    "clock_skew",
    "sequence_gap",
    "late_event",
]


class DataQualityIssue(Derived):
    """Something is wrong with the data rather than with the boiler."""

    schema_name: Literal["dq.issue"] = "dq.issue"
    schema_version: Literal[1] = 1
    kind: DataQualityKind
    gateway: str = Field(pattern=ID_PATTERN)
    site: str = Field(pattern=ID_PATTERN)
    boiler: str | None = Field(None, pattern=ID_PATTERN)
    channel: str | None = None
    start_ms: int
    end_ms: int | None = None
    count: int = Field(1, ge=0, description="readings or events concerned")
    detail: str = Field(max_length=1000)

    @property
    def key(self) -> str:
        return self.boiler or self.gateway

    @property
    def id(self) -> str:
        # An issue that opens and later closes is published twice (without,
        # then with end_ms): the two records must not share an id.
        span = self.start_ms if self.end_ms is None else f"{self.start_ms}-{self.end_ms}"
        return f"{self.key}:{self.kind}:{self.channel or '-'}:{span}"
