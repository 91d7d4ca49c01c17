"""Watch points become queryable in InfluxDB: when did each bucket's points appear?

Polls `SELECT count(field) ... GROUP BY time(bucket)` over the buckets not yet
complete; every increase of a bucket's count between two polls is that many
points first seen at the later poll. Latency of a point = first seen minus the
event time it stands for, so the polling period (`POLL_S`) is part of the
resolution of every figure: an arrival is dated halfway between the poll
that first saw it and the one before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx
import numpy as np

POLL_S = 0.2


@dataclass
class BucketWatch:
    measurement: str
    field_name: str
    bucket_ms: int
    expected: int  # points per bucket when complete
    first_ms: int  # first bucket start
    where: str = ""  # an InfluxQL condition on tags: watch only the series it selects
    seen: dict[int, int] = field(default_factory=dict)  # bucket start -> count
    last_poll_ms: float | None = None
    arrivals: list[tuple[int, int, float]] = field(default_factory=list)  # (bucket, n, wall ms)

    def lowest_open(self) -> int:
        b = self.first_ms
        while self.seen.get(b, 0) >= self.expected:
            b += self.bucket_ms
        return b

    def complete_through(self, last_bucket: int) -> bool:
        return self.lowest_open() > last_bucket

    def query(self) -> str:
        lo = self.lowest_open()
        tags = f" AND ({self.where})" if self.where else ""
        return (
            f'SELECT count("{self.field_name}") FROM "{self.measurement}" WHERE time >= {lo}ms'
            f"{tags} GROUP BY time({self.bucket_ms}ms) fill(none)"
        )

    def update(self, rows: list[list[object]], asked_ms: float) -> None:
        """Counts as of a query sent at `asked_ms`: new points appeared since the last poll."""
        prev = self.last_poll_ms if self.last_poll_ms is not None else asked_ms
        now_ms = (prev + asked_ms) / 2
        self.last_poll_ms = asked_ms
        for t, count in rows:
            b = int(t)  # type: ignore[call-overload]
            n = int(count)  # type: ignore[call-overload]
            before = self.seen.get(b, 0)
            if n > before:
                self.arrivals.append((b, n - before, now_ms))
                self.seen[b] = n

    def latencies(self, event_offset_ms: float) -> tuple[np.ndarray, np.ndarray]:
        """Latency of each arrival (ms after bucket start + offset) and its point count."""
        if not self.arrivals:
            return np.empty(0), np.empty(0)
        a = np.array(self.arrivals, dtype=float)
        return a[:, 2] - (a[:, 0] + event_offset_ms), a[:, 1]


def poll_once(client: httpx.Client, database: str, watches: list[BucketWatch]) -> None:
    q = ";".join(w.query() for w in watches)
    asked_ms = time.time() * 1000
    r = client.get("/query", params={"db": database, "q": q, "epoch": "ms"})
    r.raise_for_status()
    for w, result in zip(watches, r.json().get("results", []), strict=False):
        rows = [row for series in result.get("series", []) or [] for row in series["values"]]
        w.update(rows, asked_ms)
