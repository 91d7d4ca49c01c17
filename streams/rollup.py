"""Hourly and daily rollups of closed 1-minute heat windows.

A rollup bucket is emitted when the first window of the next bucket arrives
(event time, deterministic), so the rollups replay identically. Sums add;
means are weighted by the time they cover; coverage is covered time over the
bucket's length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from heatstream.schemas.derived import HeatWindow, Resolution

RESOLUTION_MS: dict[str, int] = {"1h": 3_600_000, "1d": 86_400_000}


@dataclass(slots=True)
class Bucket:
    start_ms: int
    heat_kwh: float = 0.0
    it_kwh: float = 0.0
    aux_kwh: float = 0.0
    co2_avoided_kg: float = 0.0
    covered_ms: float = 0.0
    supply_sum: float = 0.0
    return_sum: float = 0.0
    flow_sum: float = 0.0
    temp_ms: float = 0.0
    flow_ms: float = 0.0
    samples: int = 0
    quarantined: int = 0
    throttled: bool = False
    workload: dict[str, float] = field(default_factory=dict)

    def add(self, w: HeatWindow) -> None:
        covered = w.coverage * (w.window_end_ms - w.window_start_ms)
        self.heat_kwh += w.heat_kwh
        self.it_kwh += w.it_kwh
        self.aux_kwh += w.aux_kwh
        self.co2_avoided_kg += w.co2_avoided_kg
        self.covered_ms += covered
        if w.supply_temp_mean_c is not None and w.return_temp_mean_c is not None:
            self.supply_sum += w.supply_temp_mean_c * covered
            self.return_sum += w.return_temp_mean_c * covered
            self.temp_ms += covered
        if w.flow_mean_lpm is not None:
            self.flow_sum += w.flow_mean_lpm * covered
            self.flow_ms += covered
        self.samples += w.samples
        self.quarantined += w.quarantined
        self.throttled = self.throttled or w.throttled
        for kind, kwh in w.heat_by_workload_kwh.items():
            self.workload[kind] = self.workload.get(kind, 0.0) + kwh

    def window(self, boiler: str, site: str, resolution: Resolution) -> HeatWindow:
        length = RESOLUTION_MS[resolution]
        total = self.it_kwh + self.aux_kwh
        return HeatWindow(
            boiler=boiler,
            site=site,
            resolution=resolution,
            window_start_ms=self.start_ms,
            window_end_ms=self.start_ms + length,
            heat_kwh=self.heat_kwh,
            it_kwh=self.it_kwh,
            aux_kwh=self.aux_kwh,
            total_kwh=total,
            erf=self.heat_kwh / total if total > 0 else None,
            supply_temp_mean_c=self.supply_sum / self.temp_ms if self.temp_ms else None,
            return_temp_mean_c=self.return_sum / self.temp_ms if self.temp_ms else None,
            flow_mean_lpm=self.flow_sum / self.flow_ms if self.flow_ms else None,
            coverage=min(1.0, self.covered_ms / length),
            co2_avoided_kg=self.co2_avoided_kg,
            samples=self.samples,
            quarantined=self.quarantined,
            heat_by_workload_kwh=dict(sorted(self.workload.items())),
            throttled=self.throttled,
        )


class Rollups:
    """Hour and day buckets of one boiler."""

    def __init__(self, boiler: str, site: str) -> None:
        self.boiler = boiler
        self.site = site
        self.open: dict[str, Bucket] = {}

    def add(self, w: HeatWindow) -> list[HeatWindow]:
        done: list[HeatWindow] = []
        for resolution, length in RESOLUTION_MS.items():
            start = w.window_start_ms // length * length
            bucket = self.open.get(resolution)
            if bucket is not None and bucket.start_ms != start:
                done.append(bucket.window(self.boiler, self.site, resolution))
                bucket = None
            if bucket is None:
                bucket = self.open[resolution] = Bucket(start_ms=start)
            bucket.add(w)
        return done

    def to_state(self) -> dict[str, Any]:
        return {r: {k: getattr(b, k) for k in Bucket.__slots__} for r, b in self.open.items()}

    @classmethod
    def from_state(cls, boiler: str, site: str, state: dict[str, Any]) -> Rollups:
        r = cls(boiler, site)
        r.open = {res: Bucket(**fields) for res, fields in state.items()}
        return r
