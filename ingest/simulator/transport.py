"""What sits under each simulated gateway's SDK instead of (or around) a plain producer.

* `OutageProducer` fails every send while its gateway's simulated uplink is down
  (a `gateway_offline` fault), exactly as a broker out of reach does, so the
  SDK's own store-and-forward spools the events and sends the backlog when the
  simulated outage ends.
* `CaptureProducer` records every message the SDK hands over (key and value
  bytes), for `--output`, and forwards it to a real producer unless the run
  is a dry run.
* `CaptureLog` keeps one temporary file per gateway (each in send order) and
  writes them out gateway by gateway: the only order that is deterministic,
  since gateways send concurrently.
* `AckTap` holds each message until the lockstep of the gateways lets it go, and
  reports what the broker acknowledged (`lockstep.py`).
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka.errors import KafkaConnectionError

from heatstream.ingest.simulator.lockstep import GatewayProgress


class CaptureLog:
    def __init__(self, path: Path, n_gateways: int) -> None:
        self.path = path
        self._dir = Path(tempfile.mkdtemp(prefix="heatstream-capture-"))
        self._files: list[IO[bytes]] = [
            open(self._dir / f"{g:05d}.jsonl", "wb")  # noqa: SIM115 - closed in write_out
            for g in range(n_gateways)
        ]
        self.messages = 0

    def record(self, gateway: int, key: bytes | None, value: bytes) -> None:
        entry: dict[str, Any] = {"key": None if key is None else key.decode()}
        try:
            entry["value"] = value.decode("utf-8")
        except UnicodeDecodeError:
            entry["value_b64"] = base64.b64encode(value).decode()
        self._files[gateway].write(orjson.dumps(entry) + b"\n")
        self.messages += 1

    def write_out(self) -> None:
        """Concatenate the per-gateway files into `path` and remove them."""
        for f in self._files:
            f.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "wb") as out:
            for g in range(len(self._files)):
                with open(self._dir / f"{g:05d}.jsonl", "rb") as part:
                    shutil.copyfileobj(part, out)
        shutil.rmtree(self._dir, ignore_errors=True)

    def discard(self) -> None:
        for f in self._files:
            f.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


class CaptureProducer:
    """Records messages; forwards them to `inner` (a real producer) when there is one."""

    def __init__(self, log: CaptureLog, gateway: int, inner: Any | None) -> None:
        self._log, self._gateway, self._inner = log, gateway, inner

    async def start(self) -> None:
        if self._inner is not None:
            await self._inner.start()

    async def stop(self) -> None:
        if self._inner is not None:
            await self._inner.stop()

    async def send(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> Any:
        future = (
            _done() if self._inner is None else await self._inner.send(topic, value, key=key, **kw)
        )
        self._log.record(self._gateway, key, value)
        return future


class NullProducer:
    """A dry run without --output: the SDK runs fully, messages go nowhere."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> Any:
        return _done()


class OutageProducer:
    """Raises KafkaConnectionError while `offline()` says the uplink is down."""

    def __init__(self, inner: Any, offline: Callable[[], bool]) -> None:
        self._inner, self._offline = inner, offline

    async def start(self) -> None:
        await self._inner.start()

    async def stop(self) -> None:
        await self._inner.stop()

    async def send(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> Any:
        if self._offline():
            raise KafkaConnectionError("simulated gateway outage (gateway_offline fault)")
        return await self._inner.send(topic, value, key=key, **kw)


class AckTap:
    """Paces and counts the messages the producer below sends, for the lockstep."""

    def __init__(self, inner: Any, progress: GatewayProgress) -> None:
        self._inner, self._progress = inner, progress

    async def start(self) -> None:
        await self._inner.start()

    async def stop(self) -> None:
        await self._inner.stop()

    async def send(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> Any:
        progress = self._progress
        await progress.may_send()
        future = await self._inner.send(topic, value, key=key, **kw)
        progress.sent()
        future.add_done_callback(self._done)
        return future

    def _done(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._progress.acked()
        else:
            self._progress.failed()
