"""Dead letters of the sink: what InfluxDB refused, and derived messages it could not read.

Each record names the Kafka message the point came from (topic, partition,
offset, key) and InfluxDB's own message; `original` is the refused line. Its
`rejected_at_ms` is the source message's Kafka timestamp (for telemetry, the
bucket start), not the wall clock, so a rejection repeated after a replay or a
redelivery lands on the same `dead_letter` point in InfluxDB.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from heatstream.schemas.deadletter import DeadLetter
from heatstream.schemas.serde import encode
from heatstream.sinks.retry import RetryPolicy

STAGE = "sink"


@dataclass(frozen=True, slots=True)
class Origin:
    """The Kafka message a point was computed from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int


def dead_letter(
    origin: Origin | None, original: bytes, reason: str, error: str, now_ms: int
) -> DeadLetter:
    return DeadLetter(
        source_topic=origin.topic if origin else "",
        source_partition=origin.partition if origin else -1,
        source_offset=origin.offset if origin else -1,
        key=origin.key if origin else None,
        original=original,
        reason=reason,
        error=error,
        stage=STAGE,
        rejected_at_ms=origin.timestamp_ms if origin else now_ms,
    )


def rejected(line: bytes, origin: Origin | None, message: str, now_ms: int) -> DeadLetter:
    """A line InfluxDB refused."""
    return dead_letter(origin, line, "influx_rejected", message, now_ms)


def unencodable(point: object, origin: Origin | None, error: str, now_ms: int) -> DeadLetter:
    """A point line protocol cannot represent (see lineprotocol.LineProtocolError)."""
    return dead_letter(origin, repr(point).encode(), "unencodable_point", error, now_ms)


class DeadLetterSender:
    """Produces dead letters with acks=all, retrying while Kafka is unreachable.

    Idempotence stays off: the embedded broker refuses InitProducerId, and a
    duplicate dead letter is harmless (it maps to the same InfluxDB point).
    """

    def __init__(self, producer: AIOKafkaProducer, topic: str, policy: RetryPolicy) -> None:
        self._producer = producer
        self._topic = topic
        self._policy = policy
        self.sent = 0

    async def send(self, records: list[DeadLetter]) -> None:
        for record in records:
            attempt = 0
            while True:
                try:
                    await self._producer.send_and_wait(self._topic, encode(record), key=record.key)
                    break
                except KafkaError:
                    if self._policy.max_retries is not None and attempt >= self._policy.max_retries:
                        raise
                    await asyncio.sleep(self._policy.delay(attempt))
                    attempt += 1
            self.sent += 1
