"""Gateway liveness on a partition, in event time (replayable) and in wall time (live only).

`observe` is fed every frame of the partition in log order. A gateway is
*silent* when the partition's event time has advanced more than `silent_ms`
since that gateway's last frame arrived: for a live gateway with a sound clock
this is exactly "its last event time is more than silent_ms behind the
partition's maximum". Measuring from the partition maximum *at arrival*
rather than from the gateway's own event time means a gateway draining a
backlog (old event times, but frames arriving) counts as alive, so its silence
ends on its first frame back and does not flap while it catches up. Issues:
`gateway_silent` at the start (start_ms = the gateway's last event time) and
again with `end_ms` (the event time of the first frame back). This depends
only on the log's order, so a replay reproduces it.

Frames flagged by `clock_skew` are passed with `advances_clock=False` (and a
`partition_max_ms`, if given, should exclude them): a clock far ahead would
otherwise make every other gateway look silent. A gateway alone on its
partition can never be seen silent in event time: nothing else advances the
clock. `check_wall(now_ms)`, called by a timer,
covers that case with `gateway_offline` issues judged against the wall clock.
It is NOT part of the replayable projection: its flags are not in `to_state`
and `observe` never looks at them.
"""

from __future__ import annotations

from typing import Any

from heatstream.schemas.derived import DataQualityIssue

STATE_VERSION = 1


class GatewayLiveness:
    def __init__(self, silent_ms: int = 300_000) -> None:
        if silent_ms <= 0:
            raise ValueError(f"silent_ms must be positive, got {silent_ms}")
        self.silent_ms = silent_ms
        self._max: int | None = None
        # gateway -> [site, last event time, partition max when its last frame arrived, silent]
        self._gw: dict[str, list[Any]] = {}
        self._next_due: int | None = None  # lower bound of the next silence; an optimisation only
        self._offline: set[str] = set()  # wall-clock flags, transient

    def observe(
        self,
        gateway: str,
        site: str,
        event_time_ms: int,
        partition_max_ms: int | None = None,
        advances_clock: bool = True,
    ) -> list[DataQualityIssue]:
        """One frame of `gateway`, in partition order; returns silences started or ended.

        `advances_clock=False` for a frame whose clock is suspect (flagged by
        `clock_skew`): it proves its gateway alive but does not move the partition's
        event time, so a clock jumping ahead does not make every other gateway silent.
        """
        top = event_time_ms if advances_clock else -1
        if partition_max_ms is not None:
            top = max(top, partition_max_ms)
        if top >= 0:
            self._max = top if self._max is None else max(self._max, top)
        if self._max is None:
            self._max = event_time_ms
        out: list[DataQualityIssue] = []
        g = self._gw.get(gateway)
        if g is not None and g[3]:
            waited = self._max - g[2]
            out.append(
                self._issue(
                    "gateway_silent",
                    gateway,
                    g[0],
                    g[1],
                    event_time_ms,
                    f"gateway {gateway} reports again (event time {event_time_ms}) after the "
                    f"partition advanced {waited / 1000:.0f} s of event time without it.",
                )
            )
        last = event_time_ms if g is None else max(g[1], event_time_ms)
        self._gw[gateway] = [site, last, self._max, False]
        due = self._max + self.silent_ms
        self._next_due = due if self._next_due is None else min(self._next_due, due)
        out.extend(self._sweep())
        return out

    def _sweep(self) -> list[DataQualityIssue]:
        if self._max is None or self._next_due is None or self._max <= self._next_due:
            return []
        out: list[DataQualityIssue] = []
        next_due: int | None = None
        for gateway in sorted(self._gw):
            g = self._gw[gateway]
            if g[3]:
                continue
            due = g[2] + self.silent_ms
            if self._max > due:
                g[3] = True
                out.append(
                    self._issue(
                        "gateway_silent",
                        gateway,
                        g[0],
                        g[1],
                        None,
                        f"gateway {gateway} has sent nothing while the partition's event time "
                        f"advanced {(self._max - g[2]) / 1000:.0f} s "
                        f"(limit {self.silent_ms / 1000:.0f} s); "
                        f"its last event time is {g[1]}.",
                    )
                )
            else:
                next_due = due if next_due is None else min(next_due, due)
        self._next_due = next_due
        return out

    def check_wall(self, now_ms: int) -> list[DataQualityIssue]:
        """Wall-clock liveness for a timer: `gateway_offline` when nothing was measured
        for silent_ms of wall time. Live only; not replayable, not in the state."""
        out: list[DataQualityIssue] = []
        for gateway in sorted(self._gw):
            site, last = self._gw[gateway][0], self._gw[gateway][1]
            offline = now_ms - last > self.silent_ms
            if offline and gateway not in self._offline:
                self._offline.add(gateway)
                detail = (
                    f"no data from gateway {gateway} measured in the last "
                    f"{(now_ms - last) / 1000:.0f} s "
                    f"of wall time (limit {self.silent_ms / 1000:.0f} s)."
                )
                out.append(self._issue("gateway_offline", gateway, site, last, None, detail))
            elif not offline and gateway in self._offline:
                self._offline.discard(gateway)
                detail = f"gateway {gateway} is sending current data again (event time {last})."
                out.append(self._issue("gateway_offline", gateway, site, last, last, detail))
        return out

    @staticmethod
    def _issue(
        kind: str, gateway: str, site: str, start_ms: int, end_ms: int | None, detail: str
    ) -> DataQualityIssue:
        return DataQualityIssue(
            kind=kind,
            gateway=gateway,
            site=site,
            start_ms=start_ms,
            end_ms=end_ms,
            detail=detail,
        )

    def to_state(self) -> dict[str, Any]:
        """The replayable part only (the wall-clock flags are deliberately left out)."""
        return {
            "v": STATE_VERSION,
            "max": self._max,
            "gateways": {g: list(v) for g, v in self._gw.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], silent_ms: int = 300_000) -> GatewayLiveness:
        if state.get("v") != STATE_VERSION:
            raise ValueError(f"liveness state version {state.get('v')!r} is not {STATE_VERSION}")
        t = cls(silent_ms)
        t._max = state["max"]
        t._gw = {g: list(v) for g, v in state["gateways"].items()}
        dues = [v[2] + silent_ms for v in t._gw.values() if not v[3]]
        t._next_due = min(dues) if dues else None
        return t
