"""Which event types exist, in which versions, and how old versions are upcast.

An event names its type and version (`schema_name`, `schema_version`). On read,
an event older than the current version is upcast step by step (v1 -> v2 -> ...)
by pure dict-to-dict functions, then validated against the current model, so a
log written years ago still replays into today's code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from heatstream.schemas.compute import JobFinished, JobStarted, NodeState, PowerCapSet
from heatstream.schemas.deadletter import DeadLetter
from heatstream.schemas.derived import (
    DataQualityIssue,
    EfficiencyAnomaly,
    HeatWindow,
    LeakSuspected,
)
from heatstream.schemas.envelope import Envelope
from heatstream.schemas.health import HealthSample
from heatstream.schemas.telemetry import (
    TelemetryFrame,
    TelemetryFrameV1,
    TelemetryFrameV2,
    upcast_frame_v1_to_v2,
    upcast_frame_v2_to_v3,
)

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

#: Raw event types: name -> version -> model. The highest version is current.
RAW_VERSIONS: dict[str, dict[int, type[Envelope]]] = {
    "telemetry.frame": {1: TelemetryFrameV1, 2: TelemetryFrameV2, 3: TelemetryFrame},
    "compute.job_started": {1: JobStarted},
    "compute.job_finished": {1: JobFinished},
    "compute.node_state": {1: NodeState},
    "compute.power_cap_set": {1: PowerCapSet},
}

#: (name, from_version) -> function producing the dict of version from_version + 1.
UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("telemetry.frame", 1): upcast_frame_v1_to_v2,
    ("telemetry.frame", 2): upcast_frame_v2_to_v3,
}

#: Derived event types, the dead-letter record and the processes' health samples (one
#: version each so far): what `decode_derived` reads.
DERIVED_TYPES: dict[str, type[BaseModel]] = {
    "heat.window": HeatWindow,
    "anomaly.efficiency": EfficiencyAnomaly,
    "leak.suspected": LeakSuspected,
    "dq.issue": DataQualityIssue,
    "dead_letter": DeadLetter,
    "pipeline.health": HealthSample,
}


def current_version(name: str) -> int:
    return max(RAW_VERSIONS[name])


def current_model(name: str) -> type[Envelope]:
    return RAW_VERSIONS[name][current_version(name)]


def all_models() -> dict[str, type[BaseModel]]:
    """Every event contract, keyed '<name>.v<version>' (used by schema export)."""
    out: dict[str, type[BaseModel]] = {}
    for name, versions in RAW_VERSIONS.items():
        for version, model in versions.items():
            out[f"{name}.v{version}"] = model
    for name, model in DERIVED_TYPES.items():
        version = model.model_fields["schema_version"].default
        out[f"{name}.v{version}"] = model
    return out


def _check_chain() -> None:
    # Every non-current version must have an upcaster, or old logs would not replay.
    for name, versions in RAW_VERSIONS.items():
        for version in versions:
            if version != max(versions) and (name, version) not in UPCASTERS:
                raise RuntimeError(f"{name} v{version} has no upcaster to v{version + 1}")


_check_chain()
