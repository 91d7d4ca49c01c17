"""`python -m benchmarks [--quick] [--json FILE] [--only STAGE ...]` from the repository root.

Runs, in order: the in-process stages (decode, windows, detectors, processor,
state export, line protocol, sink downsampling) with a profile; the ceilings
on a freshly started embedded stack (raw aiokafka consume, InfluxDB write);
the worker end to end with its memory and table recovery; the frame shapes;
live latency into InfluxDB; replay speed. Prints a table; `--json` saves the
figures (throughput keys end in `_readings_per_s`). No figure is checked
against a target: the targets are in BENCHMARKS.md, next to the measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from benchmarks import machine
from benchmarks.results import Figure, Results
from benchmarks.sizes import FULL, QUICK, Sizes

if TYPE_CHECKING:
    from benchmarks.workload import Fleet, Recording
    from heatstream.schemas.derived import HeatWindow
    from heatstream.stack import EmbeddedStack

STAGES = ("stages", "ceilings", "worker", "frames", "latency", "replay")
console = Console(stderr=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: seconds, for CI")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the figures as JSON")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=STAGES,
        metavar="STAGE",
        help=f"run only these ({', '.join(STAGES)})",
    )
    parser.add_argument(
        "--markdown", type=Path, metavar="FILE", help="write the table as markdown (BENCHMARKS.md)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="write the processor profile (cProfile text) here",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep logs and data here (default: a temp dir, removed)"
    )
    args = parser.parse_args(argv)
    # SIGTERM (CI timeouts) must still run the clean-up below: children, stack.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = QUICK if args.quick else FULL
    only = set(args.only or STAGES)
    results = Results(
        meta={
            "mode": "quick" if args.quick else "full",
            "sizes": sizes.__dict__,
            "machine": machine.describe(),
            "busy_at_start": machine.busy_processes(),
            "errors": {},
            "defects": {},
        }
    )
    started = time.perf_counter()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(sizes, only, results, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="heatstream-bench-") as tmp:
            run(sizes, only, results, Path(tmp))
    results.meta["wall_s"] = round(time.perf_counter() - started, 1)
    results.meta["loadavg_at_end"] = machine.describe()["loadavg"]
    from benchmarks.stages import WALL

    results.meta["stage_wall_s"] = {k: round(v, 3) for k, v in WALL.items()}
    results.print(Console(width=max(Console().width, 150)))
    gauge = results.meta.get("speed_gauge", {})
    if "at_end" in gauge:
        console.print(
            f"machine speed gauge ({gauge['what']}): {gauge['at_start']:,} at the start, "
            f"{gauge['at_end']:,} at the end; compare runs made at different times through it"
        )
    for name, error in results.meta["errors"].items():
        console.print(f"[red]harness error in {name}: {error}[/red]")
    for name, defect in results.meta["defects"].items():
        console.print(f"[yellow]defect seen in {name}: {defect}[/yellow]")
    if args.json:
        results.write_json(args.json)
    if args.markdown:
        args.markdown.write_text(results.markdown() + "\n")
    if args.profile and "processor" in results.profiles:
        args.profile.write_text(results.profiles["processor"])
    return 1 if results.meta["errors"] else 0


def run(sizes: Sizes, only: set[str], results: Results, workdir: Path) -> None:
    from benchmarks.procs import Children
    from benchmarks.workload import Fleet, simulate

    run_id = uuid.uuid4().hex[:6]
    results.meta["run_id"] = run_id
    console.print(f"simulating {sizes.base_boilers} boilers for {sizes.record_seconds} s ...")
    recording = simulate(sizes.base_boilers, sizes.record_seconds + 10)
    gauge = _speed_gauge(recording)
    results.meta["speed_gauge"] = {
        "what": "decode + validate of one gateway's 20 frames of 100 boilers, readings/CPU-s",
        "at_start": round(gauge()),
    }
    children = Children()
    stack = None
    emits: list[object] = []
    try:
        if "stages" in only:
            step(results, "stages", lambda: _stages(sizes, recording, results, emits))
        if only - {"stages"}:
            stack = _start_stack(workdir)
            results.meta["stack"] = {"bootstrap": stack.bootstrap, "influx_url": stack.influx_url}
        if "ceilings" in only and stack is not None:
            step(results, "ceilings", lambda: _ceilings(sizes, recording, stack, run_id, emits))
        if "worker" in only and stack is not None:
            from benchmarks.worker import run_worker

            fleet = Fleet(recording, sizes.worker_boilers)
            step(
                results,
                "worker",
                lambda: run_worker(
                    stack.bootstrap,
                    fleet,
                    sizes.worker_seconds,
                    sizes.partitions,
                    workdir,
                    children,
                    run_id,
                    recovery=sizes.worker_recovery,
                ),
            )
        if "frames" in only:
            from benchmarks import frames
            from benchmarks.live import save_recording

            fleet = Fleet(recording, sizes.frame_boilers)
            bootstrap = stack.bootstrap if stack is not None else None
            step(
                results,
                "frames",
                lambda: frames.throughput(
                    fleet,
                    sizes.frame_seconds,
                    sizes.frame_max_messages,
                    sizes.partitions,
                    bootstrap,
                    run_id,
                ),
            )
            if sizes.frame_live_seconds and stack is not None:
                path = save_recording(recording, workdir / "recording.npz")
                step(
                    results,
                    "frames-live",
                    lambda: frames.latency(
                        fleet,
                        path,
                        sizes.frame_live_seconds,
                        sizes.partitions,
                        stack.bootstrap,
                        children,
                        workdir / "frames",
                        run_id,
                    ),
                )
        if "latency" in only and stack is not None:
            from benchmarks.latency import run_latency
            from benchmarks.live import save_recording

            path = save_recording(recording, workdir / "recording.npz")
            for i, boilers in enumerate(sizes.live_boilers):
                last = i == len(sizes.live_boilers) - 1
                step(
                    results,
                    f"latency-{boilers}",
                    partial(
                        run_latency,
                        stack.bootstrap,
                        stack.influx_url,
                        Fleet(recording, boilers),
                        path,
                        sizes.live_seconds,
                        sizes.partitions,
                        workdir,
                        children,
                        run_id,
                        warmup_s=sizes.live_warmup_s,
                        key="live" if last else f"live_{boilers}",
                        stack_pids=_stack_pids(stack),
                    ),
                )
        if "replay" in only and stack is not None:
            from benchmarks.replay import run_replay, run_replay_command

            # The command on the default gateway size; worker + sink on the sizes' own.
            for name, replay, fleet in (
                ("replay", run_replay_command, Fleet(recording, sizes.replay_boilers)),
                (
                    "replay-worker",
                    run_replay,
                    Fleet(recording, sizes.replay_boilers, per_gateway=sizes.replay_per_gateway),
                ),
            ):
                step(
                    results,
                    name,
                    partial(
                        replay,
                        stack.bootstrap,
                        stack.influx_url,
                        fleet,
                        sizes.replay_seconds,
                        sizes.partitions,
                        workdir,
                        children,
                        run_id,
                    ),
                )
    finally:
        children.stop_all()
        if stack is not None:
            stack.stop()
    results.meta["speed_gauge"]["at_end"] = round(gauge())


def _speed_gauge(recording: Recording) -> Callable[[], float]:
    """The machine's speed now (`benchmarks.stages.speed_gauge`), on messages made once."""
    from benchmarks.stages import gauge_workload, speed_gauge

    workload = gauge_workload(recording)
    return lambda: speed_gauge(*workload)


def step(results: Results, name: str, fn: Callable[[], object]) -> None:
    """Run one benchmark; a failure is recorded (and printed) without stopping the others."""
    console.print(f"[bold]{name}[/bold] ...")
    t = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:  # reported in the output and the exit code
        results.meta["errors"][name] = f"{type(exc).__name__}: {exc}"[:4000]
        console.print(traceback.format_exc(), style="red")
        return
    figures, defects = out if isinstance(out, tuple) else (out, [])
    results.add(*figures)
    if defects:
        # Defects of the code under test (a crashed agent, a failing command): the
        # figures were still taken, and say so; the lead decides what to fix.
        results.meta["defects"][name] = "; ".join(defects)
    console.print(f"  {name} done in {time.perf_counter() - t:.1f} s")


def _stages(
    sizes: Sizes, recording: Recording, results: Results, emits: list[object]
) -> list[Figure]:
    from benchmarks.stages import run_stages
    from benchmarks.workload import GATEWAY_1S, Fleet, check_encoding

    fleet = Fleet(recording, sizes.stage_boilers)
    messages, readings = fleet.messages(GATEWAY_1S, sizes.stage_seconds)
    check_encoding(messages)
    warm = sizes.stage_warmup_s * fleet.gateways
    run = run_stages(messages, readings, fleet.inventory, sizes.partitions, warm=warm)
    results.profiles["processor"] = run.profile
    results.meta["stages"] = {
        "messages": len(messages),
        "readings": readings,
        "boilers": fleet.boilers,
        "seconds": sizes.stage_seconds,
    }
    emits.extend(e.event for e in run.emits)
    return run.figures


def _start_stack(workdir: Path) -> EmbeddedStack:
    from heatstream.settings import load_settings
    from heatstream.stack import EmbeddedStack

    console.print("starting the embedded stack (Tansu + InfluxDB 1.6) ...")
    stack = EmbeddedStack(
        load_settings(stack={"data_dir": workdir / "stack", "kafka_port": 0, "influx_port": 0})
    )
    stack.start()
    return stack


def _stack_pids(stack: EmbeddedStack) -> dict[str, int]:
    """The embedded stack's processes, by name, for the live run's CPU samples."""
    servers = {"broker": stack.kafka, "influxd": stack.influxdb}
    return {name: server.pid for name, server in servers.items() if server is not None}


def _ceilings(
    sizes: Sizes, recording: Recording, stack: EmbeddedStack, run_id: str, emits: list[object]
) -> list[Figure]:
    from benchmarks.broker import influx_figures, kafka_ceilings
    from benchmarks.workload import GATEWAY_1S, Fleet
    from heatstream.schemas.derived import HeatWindow

    fleet = Fleet(recording, sizes.stage_boilers)
    messages, readings = fleet.messages(GATEWAY_1S, sizes.stage_seconds)
    figures = asyncio.run(
        kafka_ceilings(
            stack.bootstrap,
            f"bc{run_id}.",
            sizes.partitions,
            messages,
            readings,
        )
    )
    template = next((e for e in emits if isinstance(e, HeatWindow)), None)
    if template is None:
        template = _a_heat_window(fleet, sizes)
    figures += asyncio.run(
        influx_figures(
            stack.influx_url,
            run_id,
            template,
            sizes.influx_points,
        )
    )
    return figures


def _a_heat_window(fleet: Fleet, sizes: Sizes) -> HeatWindow:
    """One real heat window (when the stages were not run to provide them)."""
    from benchmarks.workload import GATEWAY_1S
    from heatstream.schemas.derived import HeatWindow
    from heatstream.streams.processor import Origin, Processor

    messages, _ = fleet.messages(GATEWAY_1S, min(sizes.stage_seconds, 110))
    proc = Processor(fleet.inventory)
    for i, (key, raw) in enumerate(messages):
        for emit in proc.process(raw, key, Origin("t", 0, i, 0)):
            if isinstance(emit.event, HeatWindow):
                return emit.event
    raise RuntimeError("no heat window closed: the recording is too short")


if __name__ == "__main__":
    sys.exit(main())
