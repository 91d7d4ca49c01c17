"""A gateway process publishing a known stream, for the SIGKILL tests.

    python gateway_child.py BOOTSTRAP TOPIC STATE_DIR ACCEPTED_FILE STEPS

Step k is one reading of each of 4 boilers at event time T0 + 100 k ms (values
derived from (boiler, k)), plus a compute event every 25 steps. Readings go in
blocks of 10 steps: even blocks sample by sample (`add_sample`), odd blocks as
one columnar frame (`publish_columns`), so both paths are killed mid-stream. Every event the
SDK reports as accepted is appended to ACCEPTED_FILE as
"event_id sha256 max_event_time kind" (kind: frame or compute; written with
os.write on an O_APPEND descriptor, so in the kernel before the callback
returns and safe from SIGKILL). A restarted child resumes readings after the
latest accepted *frame*: readings of a frame still open at the kill were never
accepted, so it sends them again (a compute event accepted meanwhile is not
repeated).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from heatstream.ingest.gateway import EncodedFrame, Gateway, GatewayConfig, Publishable
from heatstream.schemas.serde import encode
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.settings import KafkaSettings

T0 = 1_700_000_000_000
STEP_MS = 100
BOILERS = ("boiler-0001", "boiler-0002", "boiler-0003", "boiler-0004")


def reading(boiler: int, step: int) -> dict[str, float]:
    return {"supply_temp_c": 60.0 + boiler + (step % 50) / 10, "flow_lpm": 10.0 + step % 7}


def max_event_time(event: Publishable) -> int:
    if isinstance(event, EncodedFrame):
        event = event.decode()
    if isinstance(event, TelemetryFrame):
        return event.event_time_ms + max(event.dt_ms)
    return event.event_time_ms


def digest(event: Publishable) -> str:
    return hashlib.sha256(
        event.value if isinstance(event, EncodedFrame) else encode(event)
    ).hexdigest()


def columnar(step: int) -> bool:
    return (step // 10) % 2 == 1


async def publish_block(gw: Gateway, steps: list[int]) -> None:
    """The readings of `steps` as one frame sealed from columns."""
    n = len(BOILERS)
    names = list(reading(0, 0))
    await gw.publish_columns(
        BOILERS,
        np.tile(np.arange(n), len(steps)),
        np.repeat(np.array([T0 + s * STEP_MS for s in steps], dtype=np.int64), n),
        {c: np.array([reading(b, s)[c] for s in steps for b in range(n)]) for c in names},
    )


def accepted_lines(accepted_file: Path) -> list[list[str]]:
    """The accepted records [event_id, sha256, max_event_time, kind] in the file."""
    if not accepted_file.exists():
        return []
    return [
        f for f in (line.split() for line in accepted_file.read_text().splitlines()) if len(f) == 4
    ]


def resume_steps(accepted_file: Path) -> tuple[int, int]:
    """(first step whose readings to send, first step whose compute event to send)."""
    lines = accepted_lines(accepted_file)
    frames = [int(f[2]) for f in lines if f[3] == "frame"]
    computes = [int(f[2]) for f in lines if f[3] == "compute"]
    return (
        0 if not frames else (max(frames) - T0) // STEP_MS + 1,
        0 if not computes else (max(computes) - T0) // STEP_MS + 1,
    )


async def main(
    bootstrap: str, topic: str, state_dir: Path, accepted_file: Path, steps: int
) -> None:
    fd = os.open(accepted_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def record(events: Sequence[Publishable]) -> None:
        lines = "".join(
            f"{e.event_id} {digest(e)} {max_event_time(e)}"
            f" {'frame' if isinstance(e, TelemetryFrame | EncodedFrame) else 'compute'}\n"
            for e in events
        )
        os.write(fd, lines.encode())

    config = GatewayConfig(
        gateway="gw-kill",
        site="site-01",
        state_dir=state_dir,
        topic=topic,
        frame_max_samples=40,  # a frame every 10 steps
        linger_ms=150,
        send_timeout_ms=2000,
        retry_backoff_ms=50,
        retry_backoff_max_ms=500,
        close_timeout_ms=30_000,
    )
    start, compute_start = resume_steps(accepted_file)
    async with Gateway(config, KafkaSettings(bootstrap=bootstrap), on_accepted=record) as gw:
        block: list[int] = []
        for step in range(min(start, compute_start), steps):
            t = T0 + step * STEP_MS
            if step >= start and columnar(step):
                block.append(step)
                if step % 10 == 9 or step == steps - 1:
                    await publish_block(gw, block)
                    block = []
            elif step >= start:
                for b, boiler in enumerate(BOILERS):
                    await gw.add_sample(boiler, t, reading(b, step))
            if step % 25 == 0 and step >= compute_start:
                await gw.send_compute(
                    "compute.job_started", boiler=BOILERS[step % 4], event_time_ms=t,
                    job_id=f"job-{step}", workload="rendering", nodes=2,
                )  # fmt: skip
            await asyncio.sleep(0.004)
        await gw.flush()
        drained = await gw.wait_drained(30)
    os.write(fd, b"DONE\n" if drained else b"NOT-DRAINED\n")
    os.close(fd)


if __name__ == "__main__":
    bootstrap_arg, topic_arg, state_arg, accepted_arg, steps_arg = sys.argv[1:6]
    asyncio.run(main(bootstrap_arg, topic_arg, Path(state_arg), Path(accepted_arg), int(steps_arg)))
