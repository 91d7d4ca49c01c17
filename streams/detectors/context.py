"""What a detector knows about a boiler besides its window: inventory and compute plans.

Built by the stream processor per boiler and per closed window, from the
inventory (`nominal_it_kw`, `loop_volume_l`, whether a second flow meter is
fitted) and from the compute ledger (`throttled`, `cap_kw`: a planned power
cap or low-heat-demand throttle active in the window).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WindowContext:
    nominal_it_kw: float
    loop_volume_l: float
    throttled: bool = False
    cap_kw: float | None = None
    has_supply_flow_meter: bool = False

    def __post_init__(self) -> None:
        if self.nominal_it_kw <= 0 or self.loop_volume_l <= 0:
            raise ValueError(f"nominal_it_kw and loop_volume_l must be positive: {self}")
