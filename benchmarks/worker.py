"""`heatstream worker` end to end on the embedded broker: throughput, memory, recovery.

The raw topic of a fresh deployment (own topic prefix and app id) is loaded
first, then one worker process is started; its consumer group's committed
offsets are polled until the lag is zero. Its CPU time over the same span gives the rate per CPU-second, which
the other processes on a shared machine do not distort as much.

Timing runs from the worker's "Worker ready" log line (the log is loaded before
it starts) to the timestamp of the last table row it wrote (it writes rows back
after every batch, the last once the last message is processed), read once the
group's committed offsets show no lag. The offsets alone would end it up to
1.25 s late (Faust commits once a second, polled every 0.25 s).

Recovery: the worker is SIGKILLed, a new one starts on an empty data directory
(its table must come back from the changelog topic, as on another machine),
and a few more seconds of frames are sent. Faust logs when it starts and ends
reading the changelog; the time between the two is the table recovery, and
the time from spawn until the new frames are committed is the restart as a
whole (process start, the broker expiring the killed member's session,
recovery, catching up).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.broker import Committed, last_record_ms, produce, provision
from benchmarks.procs import Children, Deployment, cpu_s, log_times, rss_mb
from benchmarks.results import Figure
from benchmarks.workload import GATEWAY_1S, Fleet, Shape
from heatstream.schemas.topics import RAW_EVENTS, topic_name
from heatstream.streams.app import STATE_TABLE

POLL_S = 0.25


class WorkerFailed(RuntimeError):
    pass


@dataclass
class Sample:
    t: float  # epoch seconds (comparable with Faust's log timestamps)
    done: int
    cpu: float
    rss: float


def crashes(log: Path) -> list[str]:
    """Faust agent crashes in a worker log (the supervisor restarts the agent, so the
    process lives on and its offsets still advance: the figures are then suspect)."""
    if not log.exists():
        return []
    return sorted(
        {
            "worker " + line.split("]: ", 1)[-1].strip()
            for line in log.read_text(errors="replace").splitlines()
            if "Crashed reason=" in line
        }
    )


def _tail(log: Path, n: int = 3000) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else ""


def watch(
    bootstrap: str,
    group: str,
    topic: str,
    partitions: int,
    target: int,
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout_s: float,
) -> list[Sample]:
    """Poll the group's committed offsets until they sum to `target`."""

    async def loop() -> list[Sample]:
        async with Committed(bootstrap, group, topic, partitions) as offsets:
            return await poll(offsets)

    async def poll(offsets: Committed) -> list[Sample]:
        samples: list[Sample] = []
        deadline = time.monotonic() + timeout_s
        while True:
            done = await offsets.total()
            samples.append(Sample(time.time(), done, cpu_s(proc.pid), rss_mb(proc.pid)))
            if done >= target:
                return samples
            if proc.poll() is not None:
                raise WorkerFailed(f"worker exited with {proc.returncode}; log tail:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise WorkerFailed(
                    f"worker committed {done} of {target} messages in {timeout_s:.0f} s; "
                    f"log tail:\n{_tail(log)}"
                )
            await asyncio.sleep(POLL_S)

    return asyncio.run(loop())


def run_worker(
    bootstrap: str,
    fleet: Fleet,
    seconds: int,
    partitions: int,
    workdir: Path,
    children: Children,
    run_id: str,
    *,
    shape: Shape = GATEWAY_1S,
    recovery: bool = True,
    tail_s: int = 5,
    timeout_s: float = 900.0,
    key_prefix: str = "worker",
) -> tuple[list[Figure], list[str]]:
    dep = Deployment(bootstrap, f"bw{run_id}.", partitions, fleet.inventory, workdir / "worker")
    asyncio.run(provision(bootstrap, dep.prefix, partitions))
    topic = topic_name(RAW_EVENTS, dep.prefix)
    messages, total = fleet.messages(shape, seconds)
    per_message = total / len(messages)
    tail = tail_s * len(messages) // fleet.spans(shape, seconds) if recovery else 0
    main, rest = messages[: len(messages) - tail], messages[len(messages) - tail :]
    asyncio.run(produce(bootstrap, topic, main))

    log = dep.workdir / "worker.log"
    t_spawn = time.time()
    proc = children.worker(dep, dep.workdir / "state-1", log)
    samples = watch(bootstrap, dep.app_id, topic, partitions, len(main), proc, log, timeout_s)
    # The log is loaded before the worker starts: it consumes from "Worker ready" on.
    ready = (log_times(log, "Worker ready", after=t_spawn - 1) or [t_spawn])[0]
    last = samples[-1]
    # The worker writes its table rows back after every batch, its last ones once
    # it has processed the last message: their timestamp ends the run, where the
    # committed offsets (Faust commits once a second, polled every 0.25 s) would
    # end it up to 1.25 s late, 8 % of a 16 s run.
    changelog = f"{dep.app_id}-{STATE_TABLE}-changelog"
    written_ms = asyncio.run(last_record_ms(bootstrap, changelog))
    end = written_ms / 1000 if written_ms is not None and ready < written_ms / 1000 else last.t
    end = min(end, last.t)
    span = max(end - ready, 1e-9)
    at_ready = [s for s in samples if s.t <= ready]
    cpu = max(last.cpu - (at_ready[-1].cpu if at_ready else 0.0), 1e-9)
    n = last.done
    readings = n * per_message
    figures = [
        Figure(
            f"{key_prefix}_readings_per_s",
            readings / span,
            "readings/s",
            f"worker end to end ({fleet.boilers:,} boilers, {shape.label} frames)",
            "aiokafka_consume_readings_per_s",
            note=f"{n:,} messages in {span:.1f} s from 'Worker ready' ({ready - t_spawn:.1f} s "
            f"after spawn) to its last table row written ({last.t - end:.2f} s before the "
            f"committed offsets showed lag 0); {partitions} partitions",
        ),
        Figure(
            f"{key_prefix}_readings_per_cpu_s",
            readings / cpu,
            "readings/CPU-s",
            "worker per CPU-second (its own user+sys time)",
            "aiokafka_consume_readings_per_s",
            note=f"worker CPU {cpu:.1f} s over {span:.1f} s wall",
        ),
        Figure(
            f"{key_prefix}_rss_mb",
            last.rss,
            "MiB",
            f"worker RSS holding {fleet.boilers:,} boilers' state",
            note=f"peak {max(s.rss for s in samples):,.0f} MiB; {seconds - tail_s} s of samples "
            "buffered per boiler (steady state buffers up to ~100 s)",
        ),
    ]
    if not recovery:
        children.stop(proc)
        return figures, crashes(log)

    # -- SIGKILL, restart on an empty data directory, send the tail ---------------
    children.kill(proc)
    t_spawn = time.time()
    proc = children.worker(dep, dep.workdir / "state-2", log)
    asyncio.run(produce(bootstrap, topic, rest))
    samples = watch(bootstrap, dep.app_id, topic, partitions, len(messages), proc, log, timeout_s)
    resumed = samples[-1].t - t_spawn
    restoring = log_times(log, "Restoring state from changelog topics", after=t_spawn - 1)
    recovered = log_times(log, "Recovery complete", after=t_spawn - 1)
    children.stop(proc)
    if restoring and recovered:
        figures.append(
            Figure(
                "table_recovery_s",
                max(recovered[-1] - restoring[0], 1e-3),
                "s",
                "table recovery from the changelog after SIGKILL (empty datadir)",
                note=f"state of {fleet.boilers:,} boilers; from Faust's log "
                "'Restoring state...' to 'Recovery complete'",
            )
        )
    figures.append(
        Figure(
            "restart_to_resumed_s",
            resumed,
            "s",
            "SIGKILL -> new worker has processed new frames",
            note="process start + session expiry of the killed member (6 s) + recovery + catch-up",
        )
    )
    return figures, crashes(log)
