"""Transport faults: which events go twice, which are held back, which are replaced.

Pure decisions, carried out by the publisher with the gateway SDK:

* duplicates: an event (frame or compute event) of the gateway is sent again,
  identical, `0..max_delay_frames` frame spans later;
* out_of_order: a frame is held back `1..max_delay_frames` frame spans and sent
  after the frames that followed it (compute events are sent as they happen);
* malformed broken_json / wrong_types / unknown_version: the frame sealed at
  that instant is published corrupted instead of intact (its seq is used by
  the bad message, so nothing is renumbered);
* malformed foreign_boiler: an extra frame, published by this gateway, naming a
  boiler another gateway owns.

Gateway outages and clock skew are not decided here: the first is a real
outage of the SDK's uplink (see `publish.py`), the second shifts event times in
the engine. Every decision draws from its fault's DELIVERY stream, a fixed
number of draws per event considered, so decisions for one gateway never
depend on other gateways.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from heatstream.ingest.simulator.plan import REPLACING, PlannedFault
from heatstream.ingest.simulator.rng import Purpose, stream


@dataclass(frozen=True, slots=True)
class FrameFate:
    replace_with: str | None = None  # malformed subkind to publish instead of the frame
    replace_fault: int | None = None  # index of that fault (keys its MALFORMED stream)
    hold_frames: int = 0  # out of order: send this many frame spans later
    duplicate_after: int | None = None  # send a copy this many frame spans later (0: at once)


SEND = FrameFate()


class Delivery:
    def __init__(self, faults: list[PlannedFault], seed: int) -> None:
        self._dups: dict[int, list[PlannedFault]] = defaultdict(list)
        self._holds: dict[int, list[PlannedFault]] = defaultdict(list)
        self._replace: dict[tuple[int, int], PlannedFault] = {}
        self._foreign: dict[tuple[int, int], list[PlannedFault]] = defaultdict(list)
        self._rngs: dict[int, np.random.Generator] = {}
        for fault in faults:
            if fault.kind == "duplicates":
                self._dups[fault.gateway].append(fault)
            elif fault.kind == "out_of_order":
                self._holds[fault.gateway].append(fault)
            elif fault.subkind in REPLACING:
                for t in fault.params["times_ms"]:
                    self._replace[(fault.gateway, int(t))] = fault  # one per frame (plan.py)
            elif fault.subkind == "foreign_boiler":
                for t in fault.params["times_ms"]:
                    self._foreign[(fault.gateway, int(t))].append(fault)
            else:
                continue
            self._rngs[fault.index] = stream(seed, Purpose.DELIVERY, fault.index)

    def frame(self, gateway: int, period_start_ms: int) -> FrameFate:
        """What happens to the frame gateway `gateway` seals for the span starting then."""
        bad = self._replace.get((gateway, period_start_ms))
        if bad is not None:
            return FrameFate(replace_with=bad.subkind, replace_fault=bad.index)
        hold = 0
        for fault in self._holds.get(gateway, ()):
            if fault.start_ms <= period_start_ms < fault.end_ms:
                u = self._rngs[fault.index].uniform(size=2)
                if u[0] < float(fault.params["prob"]):
                    hold = max(hold, 1 + int(u[1] * int(fault.params["max_delay_frames"])))
        return FrameFate(
            hold_frames=hold, duplicate_after=self._duplicate(gateway, period_start_ms)
        )

    def event(self, gateway: int, period_start_ms: int) -> int | None:
        """For a compute event: send a copy this many frame spans later (None: no copy)."""
        return self._duplicate(gateway, period_start_ms)

    def foreign(self, gateway: int, period_start_ms: int) -> list[PlannedFault]:
        """foreign_boiler faults that publish an extra frame now."""
        return self._foreign.get((gateway, period_start_ms), [])

    def _duplicate(self, gateway: int, t: int) -> int | None:
        after: int | None = None
        for fault in self._dups.get(gateway, ()):
            if fault.start_ms <= t < fault.end_ms:
                u = self._rngs[fault.index].uniform(size=2)
                if u[0] < float(fault.params["prob"]) and after is None:
                    after = int(u[1] * (int(fault.params["max_delay_frames"]) + 1))
        return after
