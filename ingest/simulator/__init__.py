"""The fleet simulator: physics-based digital boilers, fault injection, ground truth.

`heatstream simulate` (see `cli.py` and docs/simulator.md). The core is pure
and deterministic under its seed: `engine.Simulation` turns a `SimConfig` into
per-gateway frame payloads and compute events, one frame span at a time, plus
the ground truth of the injected faults and its own energy totals.
`publish.py` is the thin shell that hands them to the gateway SDK.
"""

from heatstream.ingest.simulator.config import SimConfig, SimConfigError
from heatstream.ingest.simulator.engine import FrameData, Period, Simulation
from heatstream.ingest.simulator.faultspec import (
    FaultSpec,
    FaultSpecError,
    parse_fault_list,
    parse_fault_spec,
)

__all__ = [
    "FaultSpec",
    "FaultSpecError",
    "FrameData",
    "Period",
    "SimConfig",
    "SimConfigError",
    "Simulation",
    "parse_fault_list",
    "parse_fault_spec",
]
