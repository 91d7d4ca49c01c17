"""Loose lockstep of the simulated gateways: how far one may run ahead of the others.

Real gateways are paced by real time, so gateways sharing a Kafka partition
advance its event time together. The simulator's gateways, each an SDK
instance sending as fast as its spool and the broker take it, are not: at
`--speed max` two gateways of a partition drifted up to half an hour apart in
event time in the log, and the worker's event-time silence check (a gateway is
silent once the partition's event time has advanced `gateway_silent_s` since its
last frame arrived) reported healthy gateways as silent.

So the producer under a gateway's SDK sends a message of period p (simulated
time up to `end_ms`) only once the *floor* has reached `end_ms - lead_ms`, where
`lead_ms` is `max(LOCKSTEP_MS, frame span)` (a frame cannot be split) and the
floor is the slowest gateway's progress:

* a gateway whose uplink is up counts with what its broker acknowledged: the
  end of the latest period whose messages are all in the log. So no gateway's
  acknowledged event time runs more than `lead_ms` ahead of the slowest healthy
  gateway's;
* a gateway whose uplink is down (an injected `gateway_offline` fault) counts
  with what it handed to its SDK, never with its acknowledgements: it spools by
  design, and the burst of its backlog is the point of the fault, so it holds
  nobody back, yet its simulated clock stays with the others'. Once its uplink
  is back it counts with its acknowledgements again, so the others wait while it
  drains its backlog, as a real gateway drains it in seconds of real time while
  the others advance only as much.

Pacing only: which messages are sent, in which order per gateway, and their
bytes do not depend on it. Each gateway seals and spools up to one period
beyond what it may send (`wait(end_ms, ahead_ms=frame span)`), so encoding
and spooling overlap the broker's round trip, and a gateway's simulated clock,
which decides when its uplink goes down, stays with the others'.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

#: How far (simulated ms) a gateway's acknowledged event time may run ahead of the
#: slowest healthy gateway's (at least one frame span). Well under the worker's
#: `gateway_silent_s` (300 s), and several of `heatstream up --speed max`'s 10 s
#: frames, so that the broker has some in flight.
LOCKSTEP_MS = 60_000


class Lockstep:
    """The floor of all gateways' progress, and waiting for it."""

    def __init__(self, start_ms: int, lead_ms: int) -> None:
        if lead_ms <= 0:
            raise ValueError(f"lead_ms must be positive, got {lead_ms}")
        self.lead_ms = lead_ms
        self.floor_ms = start_ms
        self._gateways: list[GatewayProgress] = []
        self._at_floor = 0  # gateways whose progress equals the floor
        self._rose = asyncio.Event()

    def join(self, offline: Callable[[], bool]) -> GatewayProgress:
        """A gateway; `offline()` says whether its uplink is down now."""
        gateway = GatewayProgress(self, self.floor_ms, offline)
        self._gateways.append(gateway)
        self._at_floor += 1
        return gateway

    async def wait(self, end_ms: int, ahead_ms: int = 0) -> None:
        """Until the period ending at `end_ms` may be sent (`ahead_ms` earlier)."""
        until = end_ms - self.lead_ms - ahead_ms
        while self.floor_ms < until:
            await self._rose.wait()

    def _moved(self, old: int, new: int) -> None:
        # O(1) unless the last gateway on the floor leaves it: a floor rise costs
        # one pass over the gateways, not one per gateway.
        floor = self.floor_ms
        if new < old:  # an uplink came back: its backlog is not acknowledged yet
            if new < floor:
                self.floor_ms, self._at_floor = new, 1
            elif new == floor:
                self._at_floor += 1
        elif old == floor:
            self._at_floor -= 1
            if self._at_floor == 0:
                self._recompute()

    def _recompute(self) -> None:
        values = [g.progress_ms for g in self._gateways]
        floor = min(values)
        self._at_floor = values.count(floor)
        if floor > self.floor_ms:
            self.floor_ms = floor
            # Wake every waiter; each re-checks against its own period.
            self._rose.set()
            self._rose = asyncio.Event()


class GatewayProgress:
    """One gateway's progress in simulated time, as the lockstep counts it.

    The publisher announces each period's messages before it hands them to the
    SDK (`handing(end_ms, n)`) and calls `poke()` when the gateway's clock moved
    (its uplink may have gone down or come back). The producer under the SDK
    awaits `may_send()` before each message and reports `sent()`, `acked()` and
    `failed()`. The SDK sends its spool in order, so the n-th message it sends is
    the n-th handed, and once the acknowledgements reach a period's count,
    everything up to that period is in the log: `acked_ms` is then its end.
    """

    def __init__(self, lockstep: Lockstep, start_ms: int, offline: Callable[[], bool]) -> None:
        self._lockstep = lockstep
        self._offline = offline
        self._up = not offline()
        self._handed = 0
        self._sent = 0
        self._acked = 0
        self._marks: deque[tuple[int, int]] = deque()  # (handed after a period, its end)
        self.handed_ms = start_ms  # end of the latest period handed to the SDK
        self.acked_ms = start_ms  # end of the latest period entirely acknowledged

    @property
    def progress_ms(self) -> int:
        return self.acked_ms if self._up else self.handed_ms

    def discount(self, n: int) -> None:
        """`n` messages left in the spool by an earlier run go first: not this run's."""
        self._sent -= n
        self._acked -= n

    def handing(self, end_ms: int, n: int) -> None:
        """The gateway is about to hand its SDK `n` messages for the period ending then."""
        old = self.progress_ms
        self._handed += n
        self.handed_ms = end_ms
        self._marks.append((self._handed, end_ms))
        self._take_acks()
        self._report(old)

    async def may_send(self) -> None:
        """Until the next message the SDK sends may go (the lockstep allows its period)."""
        for handed, end_ms in self._marks:
            if handed > self._sent:
                await self._lockstep.wait(end_ms)
                return
        # A message announced by no period: left by an earlier run (`discount`).

    def sent(self) -> None:
        self._sent += 1

    def failed(self) -> None:
        """A sent message was not acknowledged: the SDK sends again from the oldest one
        not acknowledged. (Exact unless a later one was acknowledged meanwhile; then
        the pacing is off by that much, the messages are not.)"""
        self._sent = self._acked

    def acked(self) -> None:
        self._acked += 1
        if self._marks and self._marks[0][0] <= self._acked:
            old = self.progress_ms
            self._take_acks()
            self._report(old)

    def poke(self) -> None:
        up = not self._offline()
        if up != self._up:
            old = self.progress_ms
            self._up = up
            self._report(old)

    def _take_acks(self) -> None:
        marks = self._marks
        while marks and marks[0][0] <= self._acked:
            self.acked_ms = marks.popleft()[1]

    def _report(self, old: int) -> None:
        new = self.progress_ms
        if new != old:
            self._lockstep._moved(old, new)
