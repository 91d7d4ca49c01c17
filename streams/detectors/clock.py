"""Clock skew of a gateway, judged per frame at intake against a reference clock.

`event_time_ms` is stamped by the gateway (or its sensors) when a sample is
measured; the reference is the time the event reached Kafka: the record's
broker timestamp (LogAppendTime) where the topic is configured for it, else the
envelope's `ingest_time_ms`. (A reference stamped by the very clock that is
skewed cannot reveal the skew; that is why the broker's clock is preferred.)

* **Ahead** is always wrong: nothing can be measured after it was sent. An
  event time more than `max_skew_ms` ahead of the reference is skew, on the
  first frame (`clock_skew`).
* **Behind** is usually not skew: a gateway draining its store-and-forward
  spool after an outage sends hours-old frames. What tells the two apart is
  the *shape* of the lag: a backlog drains faster than real time, so its lag
  shrinks frame after frame; a clock that runs behind gives a lag that stays
  constant (within `behind_jitter_ms`) while event time advances at the pace
  of the reference. `ClockSkewTracker` calls it skew after a constant lag
  above `behind_ms` (30 s: a live frame is at most a few seconds old) has
  lasted `behind_hold_ms` (5 min). A gateway whose uplink queue holds a
  constant delay above 30 s for 5 minutes would be reported too: its data is
  as late as a skewed clock's, which is worth knowing either way.

`ClockSkewTracker` also turns per-frame verdicts into episodes (one issue at
the start, one with `end_ms` after `clear_frames` sound frames), so a skewed
gateway sending a frame a second yields two issues, not thousands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from heatstream.schemas.derived import DataQualityIssue

STATE_VERSION = 1


def clock_skew(
    event_time_ms: int, ingest_time_ms: int, gateway: str, site: str, max_skew_ms: int = 5_000
) -> DataQualityIssue | None:
    """A `clock_skew` issue if the event time is ahead of the reference by more than max_skew_ms."""
    ahead = event_time_ms - ingest_time_ms
    if ahead <= max_skew_ms:
        return None
    return DataQualityIssue(
        kind="clock_skew",
        gateway=gateway,
        site=site,
        start_ms=ingest_time_ms,
        detail=(
            f"event time {event_time_ms} is {ahead / 1000:.1f} s ahead of the time it reached "
            f"Kafka ({ingest_time_ms}), tolerance {max_skew_ms / 1000:.1f} s: the gateway's "
            "clock runs ahead; its windows would close early and other data look late."
        ),
    )


@dataclass(frozen=True, slots=True)
class SkewParams:
    max_ahead_ms: int = 5_000
    behind_ms: int = 30_000
    behind_hold_ms: int = 300_000
    behind_jitter_ms: int = 5_000
    clear_frames: int = 10


class ClockSkewTracker:
    """Clock-skew episodes per gateway, from every frame's event and reference times."""

    def __init__(self, params: SkewParams = SkewParams()) -> None:
        self.params = params
        self._gw: dict[str, dict[str, Any]] = {}

    def observe(
        self, gateway: str, site: str, event_time_ms: int, ingest_time_ms: int
    ) -> list[DataQualityIssue]:
        p = self.params
        st = self._gw.setdefault(
            gateway,
            {
                "active": None,
                "start": 0,
                "worst": 0,
                "frames": 0,
                "ok": 0,
                "ok_start": 0,
                "run": None,
            },
        )
        lag = ingest_time_ms - event_time_ms
        ahead = -lag > p.max_ahead_ms
        constant_behind = False
        if lag > p.behind_ms:
            run = st["run"]
            if run is None or max(run[2], lag) - min(run[1], lag) > p.behind_jitter_ms:
                st["run"] = run = [ingest_time_ms, lag, lag]
            else:
                run[1], run[2] = min(run[1], lag), max(run[2], lag)
            constant_behind = ingest_time_ms - run[0] >= p.behind_hold_ms
        else:
            st["run"] = None
        if st["active"] is None:
            if not (ahead or constant_behind):
                return []
            direction = "ahead" if ahead else "behind"
            start = ingest_time_ms if ahead else st["run"][0]
            st.update(active=direction, start=start, worst=abs(lag), frames=1, ok=0)
            return [self._issue(gateway, site, st, None, lag)]
        if not ahead and lag <= p.behind_ms:
            st["ok"] += 1
            if st["ok"] == 1:
                st["ok_start"] = ingest_time_ms
            if st["ok"] >= p.clear_frames:
                issue = self._issue(gateway, site, st, st["ok_start"], lag)
                st.update(active=None, ok=0, run=None)
                return [issue]
            return []
        st["ok"] = 0
        st["frames"] += 1
        st["worst"] = max(st["worst"], abs(lag))
        return []

    def is_ahead(self, gateway: str) -> bool:
        """Whether the gateway's clock is currently flagged as running ahead."""
        st = self._gw.get(gateway)
        return st is not None and st["active"] == "ahead"

    def _issue(
        self, gateway: str, site: str, st: dict[str, Any], end_ms: int | None, lag: int
    ) -> DataQualityIssue:
        direction, worst = st["active"], st["worst"] / 1000
        if end_ms is None:
            p = self.params
            why = (
                "nothing can be measured after it was sent"
                if direction == "ahead"
                else f"the lag stayed constant within {p.behind_jitter_ms / 1000:.0f} s for "
                f"{p.behind_hold_ms / 60_000:.0f} min, which a draining backlog never does"
            )
            relation = "ahead of" if direction == "ahead" else "behind"
            detail = (
                f"gateway clock runs {direction}: event time {abs(lag) / 1000:.1f} s "
                f"{relation} the time the frame reached Kafka; {why}."
            )
        else:
            detail = (
                f"gateway clock back within tolerance for {self.params.clear_frames} frames after "
                f"{st['frames']} skewed frames (worst offset {worst:.1f} s {direction})."
            )
        return DataQualityIssue(
            kind="clock_skew",
            gateway=gateway,
            site=site,
            start_ms=int(st["start"]),
            end_ms=end_ms,
            count=int(st["frames"]),
            detail=detail,
        )

    def to_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "gateways": {
                g: dict(s, run=None if s["run"] is None else list(s["run"]))
                for g, s in self._gw.items()
            },
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any], params: SkewParams = SkewParams()
    ) -> ClockSkewTracker:
        if state.get("v") != STATE_VERSION:
            raise ValueError(f"clock skew state version {state.get('v')!r} is not {STATE_VERSION}")
        t = cls(params)
        t._gw = {
            g: dict(s, run=None if s["run"] is None else list(s["run"]))
            for g, s in state["gateways"].items()
        }
        return t
