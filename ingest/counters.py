"""What a gateway operator can read: the gateway's counters, as one snapshot.

Counts are of this process's lifetime, except the spool gauges (`spooled`,
`spool_bytes`), which describe the spool as it is, including events recovered
from a previous run (`recovered`). So, at any moment:

    recovered + accepted + raw_accepted == sent + raw_sent + spooled + (drop_oldest drops)

`dropped` stays 0 unless the full-spool policy fired; `drop_policy` then names
it ("reject_new": new events were refused with SpoolFullError; "drop_oldest":
spooled events were discarded to make room).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

_LATENCY_WINDOW = 2048  # the percentiles describe the most recent sends


@dataclass(frozen=True, slots=True)
class GatewayCounters:
    accepted: int  # events durably recorded (committed to the spool)
    sent: int  # events acknowledged by the broker (acks=all)
    spooled: int  # messages in the spool now, waiting for the broker
    spool_bytes: int  # their bytes (the quantity spool_max_bytes bounds)
    dropped: int  # messages refused or discarded by the full-spool policy
    drop_policy: str | None  # which policy fired, None while dropped == 0
    raw_accepted: int  # send_raw messages spooled (no sequence number, not validated)
    raw_sent: int  # send_raw messages acknowledged
    recovered: int  # messages found in the spool at start (left by an earlier run)
    send_errors: int  # failed send attempts (each retried; nothing is lost)
    last_error: str | None  # the latest send failure, for the operator
    broker_reachable: bool  # False while sends fail and the spool is filling
    send_latency_ms_p50: float | None  # produce round trip, None before the first ack
    send_latency_ms_p99: float | None


class CounterBook:
    """The mutable side: the gateway records, `snapshot()` reads."""

    def __init__(self) -> None:
        self.accepted = 0
        self.sent = 0
        self.spooled = 0
        self.spool_bytes = 0
        self.dropped = 0
        self.drop_policy: str | None = None
        self.raw_accepted = 0
        self.raw_sent = 0
        self.recovered = 0
        self.send_errors = 0
        self.last_error: str | None = None
        self.broker_reachable = False
        self._latencies: deque[float] = deque(maxlen=_LATENCY_WINDOW)

    def record_latency(self, ms: float) -> None:
        self._latencies.append(ms)

    def record_drop(self, n: int, policy: str) -> None:
        self.dropped += n
        self.drop_policy = policy

    def snapshot(self) -> GatewayCounters:
        p50 = p99 = None
        if self._latencies:
            values = np.fromiter(self._latencies, dtype=np.float64)
            p50, p99 = (float(x) for x in np.percentile(values, [50, 99]))
        return GatewayCounters(
            accepted=self.accepted,
            sent=self.sent,
            spooled=self.spooled,
            spool_bytes=self.spool_bytes,
            dropped=self.dropped,
            drop_policy=self.drop_policy,
            raw_accepted=self.raw_accepted,
            raw_sent=self.raw_sent,
            recovered=self.recovered,
            send_errors=self.send_errors,
            last_error=self.last_error,
            broker_reachable=self.broker_reachable,
            send_latency_ms_p50=p50,
            send_latency_ms_p99=p99,
        )
