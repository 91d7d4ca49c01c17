"""Store-and-forward on a real broker that dies and comes back, and a gateway
process killed with SIGKILL mid-stream: after de-duplication by event id, every
accepted event arrives exactly once, and no sequence number is reused.

Each test runs a Tansu of its own (the session broker must stay up for the
others). Tansu keeps its log in memory, so a restarted broker is empty: the
tests create the topic again and only count on events accepted after the
broker went down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from heatstream.ingest.gateway import Gateway, GatewayConfig
from heatstream.schemas.serde import decode_raw
from heatstream.schemas.telemetry import TelemetryFrame
from heatstream.settings import KafkaSettings
from tests.integration import gateway_child as child
from tests.integration.gateway_support import (
    Outage,
    Record,
    TansuBroker,
    create_topic,
    read_topic,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow]

T0 = 1_700_000_000_000
TOPIC = "heatstream.raw.events"
CHILD = Path(child.__file__)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TansuBroker]:
    tansu = TansuBroker(tmp_path / "tansu")
    tansu.start()
    try:
        yield tansu
    finally:
        tansu.stop()


def _config(state_dir: Path, **overrides: object) -> GatewayConfig:
    values: dict[str, object] = {
        "gateway": "gw-01",
        "site": "site-01",
        "state_dir": state_dir,
        "topic": TOPIC,
        "frame_max_samples": 50,
        "linger_ms": None,
        "send_timeout_ms": 1500,
        "retry_backoff_ms": 50,
        "retry_backoff_max_ms": 400,
    }
    return GatewayConfig(**{**values, **overrides})


async def _frames(gw: Gateway, first_step: int, steps: int) -> None:
    for step in range(first_step, first_step + steps):
        for b in range(5):
            await gw.add_sample(
                f"b{b}", T0 + step * 100, {"flow_lpm": 10.0 + b, "pressure_bar": 1.5}
            )


async def test_spool_rides_through_a_broker_outage(tmp_path: Path) -> None:
    """The broker becomes unreachable (connections refused and cut) and comes back."""
    outage = Outage(target_port=0)
    tansu = TansuBroker(tmp_path / "tansu", advertised_port=outage.port)
    outage.target_port = tansu.port
    tansu.start()
    await outage.up()
    try:
        await create_topic(tansu.bootstrap, TOPIC)
        kafka = KafkaSettings(bootstrap=tansu.bootstrap)
        async with Gateway(_config(tmp_path / "state"), kafka) as gw:
            await _frames(gw, 0, 20)
            await gw.flush()
            assert gw.counters.sent == 2 and gw.counters.spooled == 0

            await outage.down()
            await _frames(gw, 20, 200)  # 20 frames while the broker is unreachable
            await gw.send_compute(
                "compute.power_cap_set", boiler="b1", event_time_ms=T0 + 30_000, cap_kw=40.0,
                reason="grid",
            )  # fmt: skip
            await gw.flush()  # returns once durably spooled: the broker is unreachable
            down = gw.counters
            assert down.accepted == 23 and down.spooled >= 21 and down.spool_bytes > 0
            assert not down.broker_reachable and down.send_errors >= 1

            await outage.up()
            assert await gw.wait_drained(60), gw.counters
            up = gw.counters
        assert up.sent >= up.accepted == 23 and up.spooled == 0 and up.dropped == 0
        assert up.drop_policy is None and up.broker_reachable

        records = await read_topic(tansu.bootstrap, TOPIC, until=23)
        # Every accepted event arrived, first occurrences in sequence order.
        assert _first_seen_seqs(records) == list(range(23))
    finally:
        await outage.down()
        tansu.stop()


async def test_spool_survives_a_broker_kill_and_restart(
    broker: TansuBroker, tmp_path: Path
) -> None:
    """The broker process dies; the gateway stops with its spool full of unsent
    events; the broker restarts (empty: Tansu's log is in memory) and a new
    gateway process on the same state sends the recovered spool."""
    await create_topic(broker.bootstrap, TOPIC)
    kafka = KafkaSettings(bootstrap=broker.bootstrap)
    config = _config(tmp_path / "state", close_timeout_ms=500)
    async with Gateway(config, kafka) as gw:
        await _frames(gw, 0, 20)
        await gw.flush()
        assert gw.counters.sent == 2
        broker.kill()
        await _frames(gw, 20, 150)
        await gw.flush()
        down = gw.counters
    assert down.accepted == 17 and down.spooled == 15 and not down.broker_reachable

    broker.start()
    # Before any gateway reaches it (see gateway_support on Tansu restarts).
    await create_topic(broker.bootstrap, TOPIC)
    async with Gateway(config, kafka) as gw:
        assert gw.counters.recovered == 15
        assert gw.next_seq == 17  # numbers continue, none reused
        await _frames(gw, 170, 30)
        assert await gw.wait_drained(60), gw.counters
        up = gw.counters
    assert up.sent == 15 + 3 and up.spooled == 0 and up.dropped == 0
    records = await read_topic(broker.bootstrap, TOPIC, until=18)
    assert _first_seen_seqs(records) == list(range(2, 20))


async def test_gateway_starts_and_accepts_before_the_broker_exists(tmp_path: Path) -> None:
    tansu = TansuBroker(tmp_path / "tansu")  # port chosen, nothing listening yet
    kafka = KafkaSettings(bootstrap=tansu.bootstrap)
    try:
        async with Gateway(_config(tmp_path / "state"), kafka) as gw:
            await _frames(gw, 0, 30)
            await gw.flush()
            assert gw.counters.accepted == 3 and gw.counters.sent == 0
            # The producer never had metadata: its first request for the topic makes
            # Tansu create it, so no explicit creation (which would race with it).
            tansu.start()
            assert await gw.wait_drained(60), gw.counters
        records = await read_topic(tansu.bootstrap, TOPIC, until=3)
        assert _first_seen_seqs(records) == [0, 1, 2]
    finally:
        tansu.stop()


def _first_seen_seqs(records: list[Record]) -> list[int]:
    first_seen: dict[str, int] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = decode_raw(r.value)
        first_seen.setdefault(event.event_id, event.seq)
    return list(first_seen.values())


# -- SIGKILL ------------------------------------------------------------------------


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def _child(
    bootstrap: str, state: Path, accepted: Path, steps: int
) -> Iterator[subprocess.Popen[bytes]]:
    log = (state.parent / "child.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), bootstrap, TOPIC, str(state), str(accepted), str(steps)],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
        cwd=Path(__file__).parents[2],
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()


def _accepted(path: Path) -> list[tuple[str, str]]:
    """(event_id, sha256 of its bytes) of every event the child saw accepted."""
    return [(fields[0], fields[1]) for fields in child.accepted_lines(path)]


def _wait_for_lines(
    path: Path, n: int, proc: subprocess.Popen[bytes], timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    while len(_accepted(path)) < n:
        assert proc.poll() is None, f"child exited early with {proc.returncode}"
        assert time.monotonic() < deadline, f"child accepted only {len(_accepted(path))}"
        time.sleep(0.05)


def _run_to_completion(
    proc: subprocess.Popen[bytes], accepted: Path, timeout_s: float = 120
) -> None:
    assert proc.wait(timeout=timeout_s) == 0, (accepted.parent / "child.log").read_text()[-3000:]
    assert accepted.read_text().splitlines()[-1] == "DONE"


async def _check_exactly_once(
    bootstrap: str, accepted_runs: list[list[tuple[str, str]]], steps: int
) -> None:
    accepted = [pair for run in accepted_runs for pair in run]
    digest_of: dict[str, str] = {}
    for event_id, digest in accepted:
        # A sequence number reused for different content would show up here.
        assert digest_of.setdefault(event_id, digest) == digest, f"{event_id} reused"
    seqs = [[int(i.split(":")[1]) for i, _ in run] for run in accepted_runs]
    for earlier, later in itertools.pairwise(seqs):
        if earlier and later:
            assert min(later) > max(earlier), "sequence numbers went backwards after restart"

    records = await read_topic(bootstrap, TOPIC, until=len(digest_of), timeout_s=60)
    arrived: dict[str, set[str]] = {}
    events = {}
    for r in records:
        event = decode_raw(r.value)
        assert r.key == b"gw-kill"
        arrived.setdefault(event.event_id, set()).add(hashlib.sha256(r.value).hexdigest())
        events[event.event_id] = event
    # After de-duplication by event id, each accepted event is there exactly once,
    # with the bytes that were accepted; no id carries two different contents.
    assert all(len(d) == 1 for d in arrived.values())
    missing = sorted(set(digest_of) - set(arrived), key=lambda i: int(i.split(":")[1]))
    assert not missing, f"{len(missing)} accepted events never arrived: {missing[:5]}"
    assert all(arrived[i] == {d} for i, d in digest_of.items())
    # And the stream itself is complete: readings of a frame open at the kill were
    # never accepted, and the restarted child sent them again.
    readings = {
        (f.boilers[bi], f.event_time_ms + dt)
        for f in events.values()
        if isinstance(f, TelemetryFrame)
        for bi, dt in zip(f.boiler_idx, f.dt_ms, strict=True)
    }
    expected = {(b, T0 + s * child.STEP_MS) for b in child.BOILERS for s in range(steps)}
    assert expected <= readings


async def test_sigkill_mid_stream_loses_nothing_accepted(
    broker: TansuBroker, tmp_path: Path
) -> None:
    await create_topic(broker.bootstrap, TOPIC)
    state, accepted, steps = tmp_path / "state", tmp_path / "accepted.txt", 800
    with _child(broker.bootstrap, state, accepted, steps) as proc:
        _wait_for_lines(accepted, 25, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    first_run = _accepted(accepted)
    with _child(broker.bootstrap, state, accepted, steps) as proc:
        _run_to_completion(proc, accepted)
    second_run = _accepted(accepted)[len(first_run) :]
    assert first_run and second_run
    await _check_exactly_once(broker.bootstrap, [first_run, second_run], steps)


async def test_sigkill_while_the_broker_is_down_keeps_the_spool(tmp_path: Path) -> None:
    tansu = TansuBroker(tmp_path / "tansu")  # not started: the child spools everything
    state, accepted, steps = tmp_path / "state", tmp_path / "accepted.txt", 500
    try:
        with _child(tansu.bootstrap, state, accepted, steps) as proc:
            _wait_for_lines(accepted, 20, proc)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        first_run = _accepted(accepted)
        tansu.start()
        await create_topic(tansu.bootstrap, TOPIC)
        with _child(tansu.bootstrap, state, accepted, steps) as proc:
            _run_to_completion(proc, accepted)
        second_run = _accepted(accepted)[len(first_run) :]
        await _check_exactly_once(tansu.bootstrap, [first_run, second_run], steps)
    finally:
        tansu.stop()


async def test_a_second_process_on_the_same_state_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    kafka = KafkaSettings(bootstrap="127.0.0.1:9")
    async with Gateway(_config(state, gateway="gw-kill"), kafka):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c",
            "import asyncio, sys; from pathlib import Path;"
            "from heatstream.ingest.gateway import Gateway, GatewayConfig;"
            "from heatstream.settings import KafkaSettings;"
            f"c = GatewayConfig(gateway='gw-kill', site='s', state_dir=Path({str(state)!r}));"
            "asyncio.run(Gateway(c, KafkaSettings()).start())",
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
    assert proc.returncode != 0 and b"StateLockedError" in err
