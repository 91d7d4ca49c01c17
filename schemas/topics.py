"""The topic registry: every Kafka topic heatstream reads or writes.

Partition key choice (see `telemetry.py` for the frame shape): raw events are
keyed by **gateway id**. A gateway owns its boilers, and a frame carries one
short instant of all of them, so keying by gateway keeps every event of a boiler
(telemetry *and* compute events, in the order the gateway sent them) on one
partition, where that boiler's window and detector state live. Workers scale out
by partitions, i.e. by gateways; a site with one huge gateway is the unit that
cannot be split, which matches how sites are wired. Derived topics are keyed by
boiler id so consumers can compact and join per boiler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: its name, what it holds, how it is keyed and kept."""

    name: str
    purpose: str
    key: str
    value: str
    partitions: int | None = None  # None: the configured default (settings.kafka.partitions)
    retention_ms: int = -1  # -1: keep forever (the raw log is the source of truth)
    cleanup_policy: Literal["delete", "compact"] = "delete"

    def configs(self) -> dict[str, str]:
        """Topic configs to set at creation (some brokers report only what was set then)."""
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy}


RAW_EVENTS = TopicSpec(
    name="heatstream.raw.events",
    purpose="immutable event log: telemetry frames and compute events from gateways",
    key="gateway id",
    value="telemetry.frame | compute.*",
)
HEAT_WINDOWS = TopicSpec(
    name="heatstream.derived.heat-windows",
    purpose="heat recovery per boiler per window (1 min) and rollups (1 h, 1 d)",
    key="boiler id",
    value="heat.window",
    retention_ms=400 * DAY_MS,
)
ANOMALIES = TopicSpec(
    name="heatstream.derived.anomalies",
    purpose="efficiency anomalies and pump failures, start and end",
    key="boiler id",
    value="anomaly.efficiency",
    retention_ms=400 * DAY_MS,
)
LEAKS = TopicSpec(
    name="heatstream.derived.leaks",
    purpose="suspected leaks with evidence, confidence and estimated rate",
    key="boiler id",
    value="leak.suspected",
    retention_ms=400 * DAY_MS,
)
DATA_QUALITY = TopicSpec(
    name="heatstream.derived.data-quality",
    purpose="quarantined readings, silent gateways, stuck sensors, clock skew, sequence gaps",
    key="boiler id, or gateway id when no boiler applies",
    value="dq.issue",
    retention_ms=90 * DAY_MS,
)
LATE_EVENTS = TopicSpec(
    name="heatstream.late-events",
    purpose="raw events that arrived after their window closed, with the reason",
    key="gateway id",
    value="dead_letter (reason=late_event)",
    retention_ms=90 * DAY_MS,
)
DEAD_LETTERS = TopicSpec(
    name="heatstream.dead-letters",
    purpose="every rejected message with its original bytes, origin and reason",
    key="original key",
    value="dead_letter",
    retention_ms=90 * DAY_MS,
)
HEALTH = TopicSpec(
    name="heatstream.health",
    purpose="health samples of the workers, landed by the sink in pipeline_health",
    key="process id",
    value="pipeline.health",
    partitions=1,
    retention_ms=7 * DAY_MS,
)

TOPICS: tuple[TopicSpec, ...] = (
    RAW_EVENTS,
    HEAT_WINDOWS,
    ANOMALIES,
    LEAKS,
    DATA_QUALITY,
    LATE_EVENTS,
    DEAD_LETTERS,
    HEALTH,
)


def topic_name(spec: TopicSpec, prefix: str = "") -> str:
    """The topic's name on a cluster whose topics carry `prefix`."""
    return f"{prefix}{spec.name}"
