"""What the compute side was doing: jobs by workload kind and planned power caps.

Compute events are intervals in event time. For a window, `workload_shares`
gives each workload kind's share of the node-time that ran in it (heat is
attributed in proportion), and `throttled` says whether a planned cap or a
throttle explains lower output. State is bounded: intervals ending before the
boiler's close cursor are pruned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from heatstream.schemas.compute import JobFinished, JobStarted, NodeState, PowerCapSet

OPEN = 2**62


@dataclass(slots=True)
class ComputeLedger:
    """Job and cap intervals of one boiler."""

    jobs: dict[str, list[Any]] = field(default_factory=dict)  # id -> [workload, nodes, start, end]
    caps: list[list[Any]] = field(default_factory=list)  # [start, end, cap_kw, planned]
    throttled_nodes: dict[str, int] = field(default_factory=dict)  # node -> since (ms)
    throttle_spans: list[list[int]] = field(default_factory=list)  # [start, end]

    def apply(self, event: JobStarted | JobFinished | NodeState | PowerCapSet) -> None:
        t = event.event_time_ms
        if isinstance(event, JobStarted):
            self.jobs[event.job_id] = [event.workload, event.nodes, t, OPEN]
        elif isinstance(event, JobFinished):
            job = self.jobs.get(event.job_id)
            if job is None:  # finished without a start seen: nothing to attribute
                return
            job[3] = max(job[2], t)
        elif isinstance(event, PowerCapSet):
            for cap in self.caps:
                if cap[1] == OPEN and cap[0] <= t:
                    cap[1] = t
            if event.cap_kw is not None:
                self.caps.append([t, OPEN, event.cap_kw, event.planned])
        elif isinstance(event, NodeState):
            if event.state == "throttled":
                self.throttled_nodes.setdefault(event.node, t)
            elif event.node in self.throttled_nodes:
                self.throttle_spans.append([self.throttled_nodes.pop(event.node), t])

    def workload_shares(self, start_ms: int, end_ms: int) -> dict[str, float]:
        node_ms: dict[str, float] = {}
        for workload, nodes, s, e in self.jobs.values():
            overlap = min(e, end_ms) - max(s, start_ms)
            if overlap > 0:
                node_ms[workload] = node_ms.get(workload, 0.0) + nodes * overlap
        total = sum(node_ms.values())
        return {k: v / total for k, v in sorted(node_ms.items())} if total > 0 else {}

    def throttled(self, start_ms: int, end_ms: int) -> tuple[bool, float | None]:
        """(a planned cap or a throttle overlaps the window, the lowest cap in it)."""
        caps = [c for c in self.caps if c[3] and c[0] < end_ms and c[1] > start_ms]
        spans = [s for s in self.throttle_spans if s[0] < end_ms and s[1] > start_ms]
        open_throttle = any(since < end_ms for since in self.throttled_nodes.values())
        lowest = min((c[2] for c in caps), default=None)
        return bool(caps or spans or open_throttle), lowest

    def prune(self, before_ms: int) -> None:
        self.jobs = {k: j for k, j in self.jobs.items() if j[3] > before_ms}
        self.caps = [c for c in self.caps if c[1] > before_ms]
        self.throttle_spans = [s for s in self.throttle_spans if s[1] > before_ms]

    def to_state(self) -> dict[str, Any]:
        return {
            "j": self.jobs,
            "c": self.caps,
            "n": self.throttled_nodes,
            "s": self.throttle_spans,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ComputeLedger:
        return cls(
            jobs={k: list(v) for k, v in state["j"].items()},
            caps=[list(c) for c in state["c"]],
            throttled_nodes=dict(state["n"]),
            throttle_spans=[list(s) for s in state["s"]],
        )
