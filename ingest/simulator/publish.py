"""The thin shell: hand a Simulation's frames and events to one gateway SDK per gateway.

Every message goes through `heatstream.ingest.gateway.Gateway` (sequence numbers,
spool, producer), on a simulated clock so that `ingest_time_ms`, and with it
every byte, is deterministic. Each gateway's SDK state lives under a fresh
directory (or `state_dir`), so sequences start at 0.

Pacing: `speed=None` publishes as fast as the SDK and broker accept (with
backpressure on the spool), `speed=x` keeps simulated time x times faster than
wall time. Either way the gateways keep a loose lockstep (`lockstep.py`): a
gateway's messages go to the broker only once the slowest gateway's broker has
acknowledged what it was handed up to `lockstep_ms` earlier, so gateways
sharing a partition advance its event time together, as real ones do.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heatstream.errors import HeatstreamError
from heatstream.ingest.config import Compression, GatewayConfig
from heatstream.ingest.gateway import EncodedFrame, Gateway, Publishable
from heatstream.ingest.producer import build_producer, kafka_security_kwargs
from heatstream.ingest.simulator.delivery import Delivery
from heatstream.ingest.simulator.engine import FrameData, Period, Simulation
from heatstream.ingest.simulator.lockstep import LOCKSTEP_MS, Lockstep
from heatstream.ingest.simulator.malformed import corrupt
from heatstream.ingest.simulator.plan import PlannedFault
from heatstream.ingest.simulator.rng import Purpose, stream
from heatstream.ingest.simulator.transport import (
    AckTap,
    CaptureLog,
    CaptureProducer,
    NullProducer,
    OutageProducer,
)
from heatstream.settings import KafkaSettings

MIB = 2**20
BACKPRESSURE_BYTES = 32 * MIB  # per gateway spool, before the simulation waits for the broker
COUNTER_CHECK_S = 2.0  # a counters snapshot computes latency percentiles: not too often
PROGRESS_EVERY_S = 0.2
QUEUE_PERIODS = 16  # frame spans a gateway may lag behind the simulation
DRAIN_POLL_S = 1.0
DRAIN_STALL_S = 30.0  # give up when the backlog has not shrunk for this long at the end
CONNECT_TIMEOUT_S = 10.0


@dataclass
class PublishOptions:
    speed: float | None = None  # None: as fast as possible
    dry_run: bool = False  # no broker: the SDK runs, messages are only captured (if output)
    output: Path | None = None  # JSON lines {"key", "value"} of every message, per gateway
    state_dir: Path | None = None  # SDK state (spool, sequences); a temporary dir if None
    topic: str | None = None  # raw topic; None: the SDK's default under the topic prefix
    compression: Compression | None = None  # Kafka codec; the embedded broker is local
    frame_max_bytes: int = 900 * 1024
    # How far (simulated ms) one gateway's acknowledged event time may run ahead of
    # the slowest healthy gateway's; at least one frame span (see lockstep.py).
    lockstep_ms: int = LOCKSTEP_MS
    # Builds the producer of gateway <id> instead of aiokafka (tests, custom transports);
    # outages and --output still wrap it.
    producer_factory: Callable[[str], Any] | None = None


@dataclass
class PublishReport:
    periods: int = 0
    frames: int = 0
    compute_events: int = 0
    duplicates: int = 0
    held_back: int = 0
    malformed: int = 0
    foreign: int = 0
    accepted: int = 0
    sent: int = 0
    raw_sent: int = 0
    wall_s: float = 0.0
    per_gateway: dict[str, dict[str, Any]] = field(default_factory=dict)


class SimulationError(HeatstreamError, RuntimeError):
    """The run cannot go on (broker unreachable, backlog that never drains)."""


class SimClock:
    """A simulated clock: what one gateway stamps ingest times with."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


class _Uplink:
    """Whether a gateway's uplink is up, on that gateway's simulated clock."""

    def __init__(self, faults: Sequence[PlannedFault], gateway: int, clock: SimClock) -> None:
        self._windows = [
            (f.start_ms, f.end_ms)
            for f in faults
            if f.kind == "gateway_offline" and f.gateway == gateway
        ]
        self._clock = clock
        self.restored = False  # at the end of the run every outage ends

    def offline(self) -> bool:
        now = self._clock.now_ms
        return not self.restored and any(a <= now < b for a, b in self._windows)


class Publisher:
    """Runs a Simulation through one gateway SDK instance per gateway."""

    def __init__(
        self,
        sim: Simulation,
        kafka: KafkaSettings,
        options: PublishOptions,
        on_progress: Callable[[Period, PublishReport], None] | None = None,
    ) -> None:
        self.sim = sim
        self.kafka = kafka
        self.options = options
        self.on_progress = on_progress
        self.report = PublishReport()
        self._capture: CaptureLog | None = None

    async def run(self) -> PublishReport:
        started = time.monotonic()
        if not self.options.dry_run and self.options.producer_factory is None:
            await self._check_broker()
        if self.options.output is not None:
            self._capture = CaptureLog(self.options.output, self.sim.fleet.n_gateways)
        try:
            with contextlib.ExitStack() as cleanup:
                state_dir = self.options.state_dir
                if state_dir is None:
                    state_dir = Path(
                        cleanup.enter_context(tempfile.TemporaryDirectory(prefix="heatstream-sim-"))
                    )
                await self._run(state_dir)
        except BaseException:
            if self._capture is not None:
                self._capture.discard()
            raise
        if self._capture is not None:
            self._capture.write_out()
        self.report.wall_s = time.monotonic() - started
        return self.report

    async def _check_broker(self) -> None:
        """Fail fast on a wrong bootstrap: the SDK itself would spool forever, by design."""
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        producer = AIOKafkaProducer(**kafka_security_kwargs(self.kafka), request_timeout_ms=5000)
        try:
            await asyncio.wait_for(producer.start(), CONNECT_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise SimulationError(
                f"cannot reach Kafka at {self.kafka.bootstrap} ({exc!r}): start a broker"
                " (`heatstream stack up`), set HEATSTREAM_KAFKA__BOOTSTRAP, or use --dry-run"
            ) from None
        finally:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await producer.stop()

    async def _run(self, state_dir: Path) -> None:
        sim, fleet = self.sim, self.sim.fleet
        delivery = Delivery(sim.faults, sim.config.seed)
        lockstep = Lockstep(sim.start_ms, max(self.options.lockstep_ms, sim.config.frame_span_ms))
        workers = [
            _GatewayWorker(self, g, state_dir, delivery, lockstep) for g in range(fleet.n_gateways)
        ]
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker.gateway)
                worker.progress.discount(worker.gateway.counters.recovered)
            async with asyncio.TaskGroup() as group:
                for worker in workers:
                    group.create_task(worker.run(), name=f"simulate-{worker.gateway_id}")
                group.create_task(self._feed(workers), name="simulate-feed")
        for worker in workers:
            c = worker.counters
            self.report.accepted += c.accepted
            self.report.sent += c.sent
            self.report.raw_sent += c.raw_sent
            self.report.per_gateway[worker.gateway_id] = {
                "accepted": c.accepted,
                "sent": c.sent,
                "raw_sent": c.raw_sent,
                "spooled": c.spooled,
                "send_errors": c.send_errors,
            }

    async def _feed(self, workers: list[_GatewayWorker]) -> None:
        """Simulate, pace, and hand every period to every gateway's worker."""
        speed = self.options.speed
        wall0 = time.monotonic()
        last_report = wall0
        period: Period | None = None
        async for period in self._periods():
            if speed is not None:
                delay = (
                    wall0 + (period.end_ms - self.sim.start_ms) / 1000.0 / speed - time.monotonic()
                )
                if delay > 0:
                    await asyncio.sleep(delay)
            for worker in workers:
                # Bounded: waits when a gateway lags (its broker, or the lockstep).
                await worker.queue.put(period)
            self.report.periods += 1
            now = time.monotonic()
            if self.on_progress is not None and now - last_report >= PROGRESS_EVERY_S:
                last_report = now
                self.on_progress(period, self.report)
            await asyncio.sleep(0)
        for worker in workers:
            await worker.queue.put(None)
        await asyncio.gather(*(w.done.wait() for w in workers))
        if self.on_progress is not None and period is not None:
            self.on_progress(period, self.report)

    async def _periods(self) -> AsyncIterator[Period]:
        """The simulation's periods; the next chunk is computed in a thread meanwhile
        (numpy releases the GIL), so the event loop keeps the gateways and the broker
        busy instead of stalling for each chunk. One generator, one chunk at a time:
        the same periods in the same order."""
        chunks = self.sim.chunks()
        loop = asyncio.get_running_loop()
        # One worker: a FIFO, so the generator never runs in two threads at once.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="heatstream-sim") as pool:
            nxt = loop.run_in_executor(pool, next, chunks, None)
            try:
                while (chunk := await nxt) is not None:
                    nxt = loop.run_in_executor(pool, next, chunks, None)
                    for period in chunk:
                        yield period
            finally:
                nxt.cancel()  # stopped early: the thread finishes its chunk, unread


# What a gateway hands its SDK for one period, in order: sealed events (spooled in
# one transaction) or a raw message (a malformed one, in place of a frame).
_Step = list[Publishable] | bytes


class _GatewayWorker:
    """One gateway: its SDK instance, simulated clock, uplink and delivery faults."""

    def __init__(
        self, pub: Publisher, g: int, state_dir: Path, delivery: Delivery, lockstep: Lockstep
    ) -> None:
        sim = pub.sim
        fleet, cfg = sim.fleet, sim.config
        self.pub, self.g, self.delivery = pub, g, delivery
        self.fleet = fleet
        self.gateway_id = fleet.gateway_ids[g]
        self.clock = SimClock(sim.start_ms)
        self.uplink = _Uplink(sim.faults, g, self.clock)
        self.lockstep = lockstep
        self.progress = lockstep.join(self.uplink.offline)
        self.queue: asyncio.Queue[Period | None] = asyncio.Queue(maxsize=QUEUE_PERIODS)
        self.done = asyncio.Event()
        self._malformed = {
            f.index: stream(cfg.seed, Purpose.MALFORMED, f.index)
            for f in sim.faults
            if f.kind == "malformed" and f.gateway == g
        }
        # frame span index -> events to send then (held back frames and copies).
        self._later: dict[int, list[Publishable]] = defaultdict(list)
        options = pub.options
        samples = cfg.steps_per_frame * len(fleet.gateway_boilers[g])
        config = GatewayConfig(
            gateway=self.gateway_id,
            site=fleet.site_ids[int(fleet.gateway_site[g])],
            state_dir=state_dir,
            topic=options.topic,
            frame_max_samples=max(samples, 2),
            frame_max_span_ms=cfg.frame_span_ms + cfg.sample_ms,
            frame_max_bytes=options.frame_max_bytes,
            linger_ms=None,  # frames are sealed on simulated time, never by wall time
            spool_max_bytes=1024 * MIB,
            spool_memory_bytes=BACKPRESSURE_BYTES,  # a backlog up to it is never read back
            spool_synchronous="NORMAL",
            compression=options.compression,
            retry_backoff_ms=50,
            retry_backoff_max_ms=1000,
            max_message_bytes=2 * MIB,
            seq_block=4096,  # fewer synchronous reservations on the event loop's thread
        )
        self.gateway = Gateway(
            config,
            pub.kafka,
            clock_ms=self.clock,
            producer_factory=lambda: self._producer(config),
        )
        self.counters = self.gateway.counters
        self._key = self.gateway_id.encode()
        self._span_ms = cfg.frame_span_ms

    def _producer(self, config: GatewayConfig) -> Any:
        pub = self.pub
        if pub.options.producer_factory is not None:
            inner: Any = pub.options.producer_factory(self.gateway_id)
        elif pub.options.dry_run:
            inner = None
        else:
            inner = build_producer(config, pub.kafka)
        if pub._capture is not None:
            inner = CaptureProducer(pub._capture, self.g, inner)
        elif inner is None:
            inner = NullProducer()
        return AckTap(OutageProducer(inner, self.uplink.offline), self.progress)

    async def run(self) -> None:
        gw = self.gateway
        last_check = time.monotonic()
        while (period := await self.queue.get()) is not None:
            self.clock.now_ms = period.end_ms  # the gateway seals each frame as its span ends
            self.progress.poke()  # the uplink may have gone down or come back
            steps = self._seal_period(period)  # while the broker still has the last one
            # Spooled one period ahead of what may be sent (AckTap holds it until then).
            await self.lockstep.wait(period.end_ms, ahead_ms=self._span_ms)
            await self._spool(period.end_ms, steps)
            now = time.monotonic()
            if now - last_check >= COUNTER_CHECK_S:
                last_check = now
                if gw.counters.spool_bytes > BACKPRESSURE_BYTES:
                    await gw.flush()  # returns early while the uplink is (simulated) down
        # Held-back frames and copies still due go now, and the uplink comes back.
        for index in sorted(self._later):
            await self._spool(self.pub.sim.end_ms, [self._later.pop(index)])
        self.uplink.restored = True
        # flush() returns early while the sender backs off after a failure; wait it out,
        # as long as the backlog keeps shrinking.
        left, since = gw.counters.spooled, time.monotonic()
        while not await gw.wait_drained(DRAIN_POLL_S):
            now_left = gw.counters.spooled
            if now_left < left:
                left, since = now_left, time.monotonic()
            elif time.monotonic() - since > DRAIN_STALL_S:
                raise SimulationError(
                    f"gateway {self.gateway_id}: {now_left} messages still spooled after"
                    f" {DRAIN_STALL_S:.0f} s without progress ({gw.counters.last_error})"
                )
        self.counters = gw.counters
        self.done.set()

    async def _spool(self, end_ms: int, steps: list[_Step]) -> None:
        self.progress.handing(end_ms, sum(1 if isinstance(s, bytes) else len(s) for s in steps))
        for step in steps:
            if isinstance(step, bytes):
                await self.gateway.send_raw(step, key=self._key)
            elif step:
                await self.gateway.send_many(step)

    def _seal_period(self, period: Period) -> list[_Step]:
        """One frame span of this gateway: its compute events, its frame (or the bad
        message replacing it), foreign frames and what is due from earlier spans,
        sealed in that order, to be spooled in one transaction (`send_many`) each side
        of a bad message."""
        gw, g, report = self.gateway, self.g, self.pub.report
        fleet = self.fleet
        start = period.start_ms
        out: list[Publishable] = []
        for ev in period.events[g]:
            event = gw.seal_compute(
                ev.schema_name,
                boiler=fleet.boiler_ids[ev.boiler],
                event_time_ms=ev.t_ms,
                **ev.fields,
            )
            out.append(event)
            report.compute_events += 1
            after = self.delivery.event(g, start)
            if after is not None:
                self._later[period.index + after].append(event)
                report.duplicates += 1

        steps: list[_Step] = [out]
        fate = self.delivery.frame(g, start)
        frame = self._seal(period.frames[g])
        report.frames += 1
        if fate.replace_with is not None:
            assert fate.replace_fault is not None
            rng = self._malformed[fate.replace_fault]
            # The bad message takes the frame's place in the log.
            steps.append(corrupt(frame.value, fate.replace_with, rng))
            out = []
            steps.append(out)
            report.malformed += 1
        elif fate.hold_frames:
            self._later[period.index + fate.hold_frames].append(frame)
            report.held_back += 1
        else:
            out.append(frame)
        if fate.duplicate_after is not None and fate.replace_with is None:
            self._later[period.index + fate.hold_frames + fate.duplicate_after].append(frame)
            report.duplicates += 1

        for fault in self.delivery.foreign(g, start):
            assert fault.boiler is not None
            owner = int(fleet.gateway[fault.boiler])
            out.append(self._seal_foreign(period.frames[owner], fault.boiler))
            report.foreign += 1

        out.extend(self._later.pop(period.index, []))
        return steps

    def _seal(self, data: FrameData) -> EncodedFrame:
        """The frame, sealed by the SDK from the simulation's arrays (next seq, and
        ingest time = this gateway's simulated clock), not yet sent."""
        return self.gateway.seal_columns(data.boilers, data.boiler_idx, data.t_ms, data.columns)

    def _seal_foreign(self, owner_frame: FrameData, boiler: int) -> EncodedFrame:
        boiler_id = self.fleet.boiler_ids[boiler]
        times, values = owner_frame.samples_of(boiler_id)
        return self.gateway.seal_columns([boiler_id], np.zeros(times.size, np.int64), times, values)
