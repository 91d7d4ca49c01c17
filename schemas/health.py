"""The health sample: one process's report about itself, on the topic `heatstream.health`.

A worker publishes one every `streams.health_interval_s`; the sink lands it in
InfluxDB as a `pipeline_health` point tagged with its component and process
(docs/measurements.md). Unlike derived events it is not a projection of the raw
log: its time is the wall clock and its numbers describe the running process,
so a replay does not rebuild it. It is still deterministic as a point: the same
sample always gives the same point, so a redelivery overwrites itself.

Counters are cumulative since the process started (`started_ms`), like
Prometheus counters: a lost sample loses nothing, and a restart shows as a
reset. Latencies are over the interval since the previous sample; consumer lag
is the value at the time of the sample.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, model_validator

#: Host names and container ids, with '.', '_', ':' and '-' (an InfluxDB tag value).
PROCESS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$"
#: Counter and latency names become InfluxDB field names as they are.
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
#: Field names a sample writes itself, which counters and latencies must not take.
RESERVED_FIELDS = frozenset({"consumer_lag", "interval_s", "started_ms"})
LAG_FIELD_PREFIX = "consumer_lag_p"

Component = Literal["worker", "sink"]


class HealthSample(BaseModel):
    """What one process did since it started and how far behind it is, at one instant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_name: Literal["pipeline.health"] = "pipeline.health"
    schema_version: Literal[1] = 1
    component: Component = Field(description="which kind of process reports")
    process: str = Field(
        pattern=PROCESS_PATTERN,
        description="the reporting process: its host name or configured process name",
    )
    started_ms: int = Field(description="wall-clock time the process started; counters count since")
    time_ms: int = Field(description="wall-clock time of the sample, ms since epoch UTC")
    interval_s: NonNegativeFloat = Field(
        description="seconds since the previous sample (since the start for the first)"
    )
    counters: dict[str, NonNegativeInt] = Field(
        description="cumulative counts since started_ms, by field name (worker: messages,"
        " frames, readings, dead_letters, late_events, ...)"
    )
    latencies_ms: dict[str, NonNegativeFloat] = Field(
        default_factory=dict,
        description="durations over the interval, ms, by field name (worker:"
        " processing_latency_ms and processing_latency_max_ms); empty when nothing was measured",
    )
    consumer_lag: dict[int, NonNegativeInt] = Field(
        default_factory=dict,
        description="messages behind the end of each consumed partition, by partition number;"
        " partitions whose end or committed offset is not known yet are absent",
    )

    @model_validator(mode="after")
    def _names_are_field_names(self) -> HealthSample:
        names = [*self.counters, *self.latencies_ms]
        for name in names:
            if not _NAME_RE.match(name):
                raise ValueError(f"{name!r} is not a field name (lowercase letters, digits, _)")
            if name in RESERVED_FIELDS or name.startswith(LAG_FIELD_PREFIX):
                raise ValueError(f"{name!r} is a field the sample writes itself")
        if len(set(names)) != len(names):
            raise ValueError("a name is both a counter and a latency")
        return self

    @property
    def key(self) -> str:
        return self.process

    @property
    def id(self) -> str:
        return f"{self.component}:{self.process}:{self.time_ms}"
