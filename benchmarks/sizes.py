"""How big each benchmark runs: the full suite (a few minutes) and `--quick` (CI smoke)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    base_boilers: int  # simulated for real; larger fleets tile them (see workload.py)
    partitions: int  # of the raw topic, as settings.kafka.partitions defaults to
    stage_boilers: int
    stage_seconds: int
    # untimed first seconds of the stages: > allowed lateness + window + max gap
    # (100 s), after which every boiler closes one window a minute, as in a long
    # run; the timed rest is a whole number of minutes (one window per boiler each)
    stage_warmup_s: int
    influx_points: int
    worker_boilers: int
    worker_seconds: int
    worker_recovery: bool
    frame_boilers: int
    frame_seconds: int
    frame_max_messages: int
    frame_live_seconds: int  # 0: latency per shape implied only
    live_boilers: tuple[int, ...]  # one live run each; the last is the fleet
    live_seconds: int
    live_warmup_s: int
    replay_boilers: int
    replay_seconds: int
    # Boilers per gateway (= per frame) of the worker + sink replay fleet: 100, the
    # realistic size used everywhere else.
    replay_per_gateway: int = 100

    @property
    def record_seconds(self) -> int:
        return max(
            self.stage_seconds,
            self.worker_seconds,
            self.frame_seconds,
            self.frame_live_seconds,
            self.live_seconds,
            self.replay_seconds,
        )


FULL = Sizes(
    base_boilers=100,
    partitions=8,
    stage_boilers=1_000,
    stage_seconds=220,
    stage_warmup_s=100,
    influx_points=40_000,
    worker_boilers=10_000,
    # Long enough for a steady state: windows close from 100 s of event time on,
    # and buffers hold their ~100 s of samples (35 s until 2026-12, before any closed;
    # 150 s until 2026-12-07, when every boiler closed one window in the run, not two).
    worker_seconds=240,
    worker_recovery=True,
    frame_boilers=1_000,
    frame_seconds=120,
    frame_max_messages=10_000,
    frame_live_seconds=15,
    live_boilers=(1_000, 10_000),
    live_seconds=60,
    live_warmup_s=10,
    replay_boilers=1_000,
    replay_seconds=240,
)

QUICK = Sizes(
    base_boilers=20,
    partitions=4,
    stage_boilers=200,
    stage_seconds=160,
    stage_warmup_s=100,
    influx_points=10_000,
    worker_boilers=200,
    worker_seconds=20,
    worker_recovery=True,
    frame_boilers=200,
    frame_seconds=20,
    frame_max_messages=1_000,
    frame_live_seconds=0,
    live_boilers=(200,),
    live_seconds=8,
    live_warmup_s=2,
    replay_boilers=200,
    replay_seconds=110,
)
