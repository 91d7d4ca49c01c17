"""Compute events: what the servers inside a boiler are doing.

They explain the heat: a job's workload kind lets heat be attributed to the
work that produced it, and a planned power cap or throttle explains lower
output so that it never raises an efficiency alert. Published by the gateway on
the raw topic, keyed like telemetry (by gateway), so they stay in order with
the frames of the same boiler.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from heatstream.schemas.envelope import ID_PATTERN, Envelope

WorkloadKind = Literal["ai_training", "ai_inference", "rendering", "financial_simulation", "other"]
WORKLOAD_KINDS: tuple[str, ...] = (
    "ai_training",
    "ai_inference",
    "rendering",
    "financial_simulation",
    "other",
)


class _BoilerEvent(Envelope):
    boiler: str = Field(pattern=ID_PATTERN, description="boiler the event concerns")

    @property
    def boiler_ids(self) -> tuple[str, ...]:
        return (self.boiler,)


class JobStarted(_BoilerEvent):
    """A compute job started on the boiler's nodes."""

    schema_name: Literal["compute.job_started"] = "compute.job_started"
    schema_version: Literal[1] = 1
    job_id: str = Field(min_length=1, max_length=128)
    workload: WorkloadKind
    nodes: int = Field(ge=1, le=10_000, description="nodes the job occupies")


class JobFinished(_BoilerEvent):
    """A compute job ended (completed, failed or pre-empted)."""

    schema_name: Literal["compute.job_finished"] = "compute.job_finished"
    schema_version: Literal[1] = 1
    job_id: str = Field(min_length=1, max_length=128)
    workload: WorkloadKind
    outcome: Literal["completed", "failed", "preempted"] = "completed"


class NodeState(_BoilerEvent):
    """A node of the boiler changed state."""

    schema_name: Literal["compute.node_state"] = "compute.node_state"
    schema_version: Literal[1] = 1
    node: str = Field(min_length=1, max_length=128)
    state: Literal["up", "down", "throttled", "maintenance"]


class PowerCapSet(_BoilerEvent):
    """The boiler's IT power was capped (or uncapped with `cap_kw = null`)."""

    schema_name: Literal["compute.power_cap_set"] = "compute.power_cap_set"
    schema_version: Literal[1] = 1
    cap_kw: float | None = Field(ge=0, le=5_000, description="cap in kW; null removes the cap")
    reason: Literal["low_heat_demand", "grid", "operator", "thermal"]
    planned: bool = Field(True, description="planned caps explain lower heat: no efficiency alert")


ComputeEvent = JobStarted | JobFinished | NodeState | PowerCapSet
