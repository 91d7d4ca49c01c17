"""Pure detectors of the stream processor: plain Python and numpy, no Faust, Kafka or I/O.

Per boiler, called once per closed event-time window in window order, each
detector turns `WindowStats` (+ a `WindowContext`) into derived events and
keeps bounded, JSON-able state (`to_state` / `from_state`) that the processor
stores in a table; a restored detector continues exactly as if it had never
stopped. Nothing reads the wall clock or draws random numbers, so a replay of
the log reproduces every event. Thresholds and delays: docs/detections.md.

* `EfficiencyDetector` -> `EfficiencyAnomaly` (efficiency_drop, bypass_open,
  sensor_drift, pump_failure)
* `LeakDetector` -> `LeakSuspected`
* `QualityDetector` -> `DataQualityIssue` (sensor_stuck)
* per-frame intake checks: `clock_skew`, `ClockSkewTracker`, `GatewayLiveness`
"""

from heatstream.streams.detectors.context import WindowContext
from heatstream.streams.detectors.efficiency import EfficiencyDetector, EfficiencyParams
from heatstream.streams.detectors.expansion import ExpansionParams
from heatstream.streams.detectors.leaks import LeakDetector, LeakParams
from heatstream.streams.detectors.quality import (
    ClockSkewTracker,
    GatewayLiveness,
    QualityDetector,
    QualityParams,
    SkewParams,
    clock_skew,
)

__all__ = [
    "ClockSkewTracker",
    "EfficiencyDetector",
    "EfficiencyParams",
    "ExpansionParams",
    "GatewayLiveness",
    "LeakDetector",
    "LeakParams",
    "QualityDetector",
    "QualityParams",
    "SkewParams",
    "WindowContext",
    "clock_skew",
]
