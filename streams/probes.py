"""What the worker learns about itself from Faust, for its health sample (streams/health.py).

* `LatencySensor`: for every raw message, the time from Faust handing it to the
  intake agent to its acknowledgement, which the agent gives once the batch
  holding it is processed and what it emitted is acknowledged by the broker:
  waiting for the batch to fill, processing it, and the broker's acks.
* `consumer_lag`: per assigned partition of the raw topic, the end offset Faust
  last saw in a fetch minus the offset it last committed (its monitor tracks
  both), as `kafka-consumer-groups` reports lag. Reading them costs nothing: no
  request to the broker.
"""

from __future__ import annotations

from time import monotonic

import faust
from faust.exceptions import ConsumerNotStarted
from faust.sensors import Sensor
from faust.types import TP, Message

from heatstream.streams.health import Latency, partition_lag


class LatencySensor(Sensor):
    """Feeds `latency` with the in-worker time of each message of `topic`."""

    def __init__(self, latency: Latency, topic: str) -> None:
        super().__init__()
        self._latency = latency
        self._topic = topic

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        # Faust's own monitor stamps `time_in` with the same clock; whichever
        # sensor runs first sets it.
        if message.time_in is None:
            message.time_in = monotonic()

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        if tp.topic == self._topic and message.time_in is not None:
            self._latency.observe(monotonic() - message.time_in)


def consumer_lag(app: faust.App, topic: str) -> dict[int, int]:
    """Messages behind per assigned partition of `topic`; empty before the consumer runs."""
    try:
        assigned = app.consumer.assignment()
    except ConsumerNotStarted:
        return {}
    monitor = app.monitor
    mine = [tp for tp in assigned if tp.topic == topic]
    return partition_lag(
        {tp.partition: monitor.tp_end_offsets.get(tp) for tp in mine},
        {tp.partition: monitor.tp_committed_offsets.get(tp) for tp in mine},
    )
