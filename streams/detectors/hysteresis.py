"""A start/stop latch with hysteresis, shared by every window detector.

A condition *starts* when at least `on_k` of the last `on_n` assessed windows
carry evidence (k-of-n, so one noisy window neither raises an alert nor, during
onset, resets the count), and *ends* only after `off_n` consecutive assessed
windows pass a stricter "clear" test (a narrower band than the one that raised
it), so a fault oscillating around its threshold stays one episode. Windows
that cannot be assessed are simply not fed: they count neither way, so an
outage or a planned throttle neither ends an ongoing fault nor starts one.

The latch also remembers where the evidence began (the start of the oldest
evidence window among the last `on_n`), which becomes the episode's start time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Transition = Literal["start", "end"] | None


@dataclass(slots=True)
class Latch:
    on_k: int
    on_n: int
    off_n: int
    votes: list[int | None] = field(default_factory=list)  # window start if evidence, else None
    active: bool = False
    started_ms: int | None = None
    clear_run: int = 0
    clear_start_ms: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.on_k <= self.on_n or self.off_n < 1:
            raise ValueError(f"latch needs 1 <= on_k <= on_n and off_n >= 1: {self}")

    def step(self, t_ms: int, evidence: bool, clear: bool) -> Transition:
        """Feed one assessed window starting at `t_ms`; report a transition."""
        if not self.active:
            self.votes.append(t_ms if evidence else None)
            del self.votes[: -self.on_n]
            hits = [v for v in self.votes if v is not None]
            if len(hits) >= self.on_k:
                self.active, self.started_ms = True, min(hits)
                self.clear_run, self.clear_start_ms = 0, None
                return "start"
            return None
        if not clear:
            self.clear_run, self.clear_start_ms = 0, None
            return None
        self.clear_run += 1
        if self.clear_run == 1:
            self.clear_start_ms = t_ms
        if self.clear_run >= self.off_n:
            self.active, self.votes, self.clear_run = False, [], 0
            return "end"
        return None

    @property
    def pending(self) -> bool:
        """Some evidence is counting towards a start."""
        return any(v is not None for v in self.votes)

    def to_state(self) -> dict[str, Any]:
        return {
            "votes": list(self.votes),
            "active": self.active,
            "started": self.started_ms,
            "clear_run": self.clear_run,
            "clear_start": self.clear_start_ms,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.votes = list(state["votes"])
        self.active = bool(state["active"])
        self.started_ms = state["started"]
        self.clear_run = int(state["clear_run"])
        self.clear_start_ms = state["clear_start"]
