"""Compute load: job arrivals per workload kind, a node scheduler, and job events.

Each boiler has `nodes` compute nodes. Jobs of four workload kinds arrive as
non-homogeneous Poisson processes (inference by day, financial batch runs by
night), sized so that the offered load keeps about 80 % of the nodes busy, and
start first-fit when enough nodes are free (a job waiting more than 6 h is
abandoned). A node draws `idle_fraction` of its power when idle and up to its
full power according to the workload's utilisation when busy.

The schedule does not depend on the loop's physics, so it is computed up front
per boiler (from its own JOBS stream, with a day of burn-in before `--start` so
the fleet starts busy) and turned into step functions of IT demand and busy
nodes, evaluated vectorially at sample times.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from heatstream.ingest.simulator.fleet import WORKLOADS, Fleet
from heatstream.ingest.simulator.rng import Purpose, stream

HOUR_MS = 3_600_000
BURN_IN_MS = 24 * HOUR_MS
MAX_WAIT_MS = 6 * HOUR_MS
TARGET_LOAD = 0.8
FAILED_SHARE = 0.02


@dataclass(frozen=True)
class WorkloadKind:
    name: str
    nodes_share: tuple[float, float] | None  # share of the boiler's nodes (uniform range)
    nodes_abs: tuple[int, int] | None  # or an absolute node count (inclusive range)
    median_min: float  # lognormal duration
    sigma: float
    utilisation: float  # power drawn by a busy node above idle, relative to full load
    profile: str  # "flat", "day" or "night"


KINDS: tuple[WorkloadKind, ...] = (
    WorkloadKind("ai_training", (0.15, 0.5), None, 180.0, 0.6, 0.97, "flat"),
    WorkloadKind("ai_inference", None, (1, 4), 150.0, 0.7, 0.55, "day"),
    WorkloadKind("rendering", (0.1, 0.35), None, 90.0, 0.5, 0.93, "flat"),
    WorkloadKind("financial_simulation", (0.2, 0.6), None, 40.0, 0.5, 0.88, "night"),
)
assert tuple(k.name for k in KINDS) == WORKLOADS


def _profile(kind: str, hour: np.ndarray) -> np.ndarray:
    """Relative arrival rate by hour of day (mean 1, at most 1.6)."""
    if kind == "day":
        return 1.0 + 0.5 * np.cos(2 * np.pi * (hour - 14.0) / 24.0)
    if kind == "night":
        return 1.0 + 0.6 * np.cos(2 * np.pi * (hour - 2.0) / 24.0)
    return np.ones_like(hour)


@dataclass(frozen=True, slots=True)
class ComputeEvent:
    """A compute event to publish: schema name, boiler index, time and fields."""

    t_ms: int
    boiler: int
    schema_name: str
    fields: dict[str, object] = field(hash=False)


@dataclass
class Schedule:
    """One boiler's IT demand and busy nodes as step functions, plus its job events."""

    times: np.ndarray  # int64 breakpoints, ascending
    it_kw: np.ndarray  # IT demand from the breakpoint on
    busy: np.ndarray  # busy nodes from the breakpoint on
    base_kw: float  # before the first breakpoint (all idle)
    events: list[ComputeEvent]

    def at(self, t_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """IT demand (kW) and busy nodes at times `t_ms`."""
        idx = np.searchsorted(self.times, t_ms, side="right") - 1
        safe = np.maximum(idx, 0)
        it = np.where(idx >= 0, self.it_kw[safe] if self.it_kw.size else 0.0, self.base_kw)
        busy = np.where(idx >= 0, self.busy[safe] if self.busy.size else 0, 0)
        return it, busy


def _arrivals(rng: np.random.Generator, rate_per_ms: float, profile: str, t0: int) -> np.ndarray:
    """Arrival times in the hour [t0, t0 + 1 h), by thinning a process at 1.6x the mean rate."""
    n = int(rng.poisson(rate_per_ms * 1.6 * HOUR_MS))
    times = np.sort(rng.uniform(t0, t0 + HOUR_MS, size=n))
    hour = np.mod(times, 86_400_000.0) / HOUR_MS
    keep = rng.uniform(0.0, 1.6, size=n) < _profile(profile, hour)
    return np.floor(times[keep]).astype(np.int64)


def build_schedule(fleet: Fleet, b: int, seed: int, start_ms: int, end_ms: int) -> Schedule:
    """The job schedule of boiler `b` between `start_ms - BURN_IN_MS` and `end_ms`."""
    rng = stream(seed, Purpose.JOBS, b)
    boiler_id = fleet.boiler_ids[b]
    nodes = int(fleet.nodes[b])
    node_kw = float(fleet.nominal_kw[b]) / nodes
    idle = float(fleet.idle_fraction[b])
    t0 = start_ms - BURN_IN_MS

    # Drawn hour by hour (every kind, every attribute), so that a shorter run sees
    # exactly the jobs of a longer one up to its end.
    rates = []
    for k, kind in enumerate(KINDS):
        if kind.nodes_share is not None:
            mean_nodes = nodes * sum(kind.nodes_share) / 2.0
        else:
            assert kind.nodes_abs is not None
            mean_nodes = min(nodes, sum(kind.nodes_abs) / 2.0)
        mean_ms = kind.median_min * 60_000.0 * np.exp(kind.sigma**2 / 2.0)
        rates.append(TARGET_LOAD * nodes * float(fleet.workload_mix[b, k]) / (mean_nodes * mean_ms))
    jobs: list[tuple[int, int, int, int, bool]] = []  # (arrive, kind, nodes, duration, failed)
    for hour_start in range(t0, end_ms, HOUR_MS):
        for k, kind in enumerate(KINDS):
            arrive = _arrivals(rng, rates[k], kind.profile, hour_start)
            m = arrive.size
            if kind.nodes_share is not None:
                size = np.ceil(nodes * rng.uniform(*kind.nodes_share, size=m)).astype(np.int64)
            else:
                assert kind.nodes_abs is not None
                size = rng.integers(kind.nodes_abs[0], kind.nodes_abs[1] + 1, size=m)
            size = np.clip(size, 1, nodes)
            duration = np.maximum(
                60_000, kind.median_min * 60_000.0 * rng.lognormal(0.0, kind.sigma, size=m)
            ).astype(np.int64)
            failed = rng.uniform(size=m) < FAILED_SHARE
            shorten = rng.uniform(0.05, 0.9, size=m)
            duration = np.where(failed, (duration * shorten).astype(np.int64) + 1, duration)
            for row in zip(
                arrive.tolist(),
                [k] * m,
                size.tolist(),
                duration.tolist(),
                failed.tolist(),
                strict=True,
            ):
                if row[0] < end_ms:
                    jobs.append(row)
    jobs.sort()

    free = nodes
    queue: list[tuple[int, int, int, int, bool, int]] = []  # waiting jobs, in arrival order
    running: list[tuple[int, int, int, int, bool]] = []  # heap (end, job_no, kind, nodes, failed)
    steps: list[tuple[int, float, int]] = []  # (t, Δkw, Δnodes)
    events: list[ComputeEvent] = []
    job_no = 0
    started_before: list[ComputeEvent] = []

    def emit(ev: ComputeEvent) -> None:
        if ev.t_ms >= start_ms:
            events.append(ev)

    def start_job(t: int, k: int, size: int, duration: int, failed: bool, no: int) -> None:
        nonlocal free
        free -= size
        kind = KINDS[k]
        heapq.heappush(running, (t + duration, no, k, size, failed))
        steps.append((t, size * node_kw * (1 - idle) * kind.utilisation, size))
        event = ComputeEvent(
            t,
            b,
            "compute.job_started",
            {"job_id": f"{boiler_id}-j{no:06d}", "workload": kind.name, "nodes": size},
        )
        if t >= start_ms:
            events.append(event)
        else:
            started_before.append(event)

    def finish_until(t: int) -> None:
        nonlocal free
        while running and running[0][0] <= t:
            end, no, k, size, failed = heapq.heappop(running)
            free += size
            steps.append((end, -size * node_kw * (1 - idle) * KINDS[k].utilisation, -size))
            emit(
                ComputeEvent(
                    end,
                    b,
                    "compute.job_finished",
                    {
                        "job_id": f"{boiler_id}-j{no:06d}",
                        "workload": KINDS[k].name,
                        "outcome": "failed" if failed else "completed",
                    },
                )
            )
            schedule_waiting(end)

    def schedule_waiting(t: int) -> None:
        kept = []
        for item in queue:
            arrive, k, size, duration, failed, no = item
            if t - arrive > MAX_WAIT_MS:
                continue
            if size <= free:
                start_job(t, k, size, duration, failed, no)
            else:
                kept.append(item)
        queue[:] = kept

    for job_no, (arrived, k, size, duration, failed) in enumerate(jobs, start=1):
        finish_until(arrived)
        queue.append((arrived, k, size, duration, failed, job_no))
        schedule_waiting(arrived)
    finish_until(end_ms - 1)

    # Jobs still running at --start are announced with their real start times.
    running_ids = {f"{boiler_id}-j{no:06d}" for _, no, _, _, _ in running}
    finished_ids = {e.fields["job_id"] for e in events if e.schema_name == "compute.job_finished"}
    carried = [e for e in started_before if e.fields["job_id"] in running_ids | finished_ids]
    events = carried + events
    events.sort(key=lambda e: (e.t_ms, e.schema_name != "compute.job_finished"))

    base_kw = nodes * node_kw * idle
    if steps:
        steps.sort(key=lambda s: s[0])
        times = np.array([s[0] for s in steps], dtype=np.int64)
        it_kw = base_kw + np.cumsum([s[1] for s in steps])
        busy = np.cumsum([s[2] for s in steps]).astype(np.int64)
        # Several steps at the same instant: keep the value after the last one.
        last = np.r_[times[1:] != times[:-1], True]
        times, it_kw, busy = times[last], it_kw[last], busy[last]
    else:
        times = np.empty(0, dtype=np.int64)
        it_kw = np.empty(0)
        busy = np.empty(0, dtype=np.int64)
    return Schedule(
        times=times, it_kw=np.maximum(it_kw, base_kw), busy=busy, base_kw=base_kw, events=events
    )
