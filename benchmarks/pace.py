"""A live fleet: publish frames in real time, as gateways would (run as a subprocess).

    python -m benchmarks.pace RECORDING.npz BOOTSTRAP TOPIC BOILERS SHAPE SECONDS START_MS

Event times are the wall clock: span `k` of the recording is stamped
`START_MS + k * span` and sent as soon as its last sample is taken (the fleet polls
every boiler at the start of each second, within 75 ms): a gateway seals a frame
when it holds every sample of its span, and promises the span's end as its
watermark, since its next poll comes after that end. Prints one JSON line at the
end: messages sent, readings, and how far behind schedule the sender fell at worst.
"""

from __future__ import annotations

import asyncio
import sys
import time

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer

from benchmarks.workload import N_CHANNELS, SHAPES, Fleet, Recording, Shape

SEND_DELAY_MS = 30  # sealing + SDK hand-off after the span's last sample


async def run(
    path: str, bootstrap: str, topic: str, boilers: int, shape_key: str, seconds: int, start_ms: int
) -> dict[str, float]:
    data = np.load(path)
    fleet = Fleet(Recording(t_ms=data["t_ms"], values=data["values"]), boilers)
    shape = next(s for s in SHAPES if s.key == shape_key)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=2,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
    )
    await producer.start()
    sent = readings = 0
    worst_behind_ms = 0.0
    try:
        spans = fleet.spans(shape, seconds)
        stream = fleet.iter_messages(shape, spans * shape.span_s, start_ms=start_ms)
        per_span = len(fleet.inventory.gateways) * _messages_per_gateway(fleet, shape)
        for k in range(spans):
            due_ms = fleet.last_sample_ms(shape, k, start_ms=start_ms) + SEND_DELAY_MS
            wait = due_ms / 1000 - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            worst_behind_ms = max(worst_behind_ms, time.time() * 1000 - due_ms)
            for _ in range(per_span):
                key, value, n = next(stream)
                await producer.send(topic, value, key=key)
                sent += 1
                readings += n
        await producer.flush()
    finally:
        await producer.stop()
    return {"sent": sent, "readings": readings, "worst_behind_ms": worst_behind_ms}


def _messages_per_gateway(fleet: Fleet, shape: Shape) -> int:
    boilers = fleet.per_gateway if shape.boilers is None else shape.boilers
    groups = -(-fleet.per_gateway // boilers)
    return groups * (N_CHANNELS if shape.one_channel else 1)


def main() -> None:
    path, bootstrap, topic, boilers, shape, seconds, start_ms = sys.argv[1:8]
    result = asyncio.run(
        run(path, bootstrap, topic, int(boilers), shape, int(seconds), int(start_ms))
    )
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
