"""Live latency, end to end: event time -> point queryable in InfluxDB.

A fresh deployment runs `heatstream worker` and `heatstream sink` as child
processes; `benchmarks.pace` publishes the fleet in real time (gateway x 1 s
frames, event time = wall clock); InfluxDB is polled (`influxpoll`) to date
when every point first answers a query.

Two kinds of points land:

* `telemetry`: the sink's downsampled raw readings. Run with
  `--downsample 1 --lateness 0 --flush-interval 0.25`, the tightest the sink
  allows (its defaults, 10 s buckets closed 20 s late, put a floor of 30 s under
  this latency), and `--gzip-level 0`: InfluxDB is on the same host, where
  gzip only costs CPU at both ends (10,000 points took 0.48-0.61 s to write
  gzipped, 0.35-0.45 s plain). Each frame declares its span's end as its watermark
  (`watermark_ms`), so the sink closes a 1 s bucket as soon as the frame
  completing it arrives. The fleet polls its boilers at the start of each second
  (all within 75 ms) and a frame goes as soon as its samples are taken, so the
  floor is that poll plus the hand-off, the sink and InfluxDB's write. Until
  2026-12-08 the harness sent a frame only once its second was over, which added
  up to a second (p50 1.4-1.6 s then, against 0.5-0.6 s). Without the watermark
  (v2 frames) a bucket waits for the gateway's next frame: one more span.
* `heat_window` (from the worker): the latency from the window's *end*, which
  by design waits allowed lateness + max gap (40 s by default) before closing;
  only measured when the run is long enough for windows to close.

Telemetry latency is watched on a sample of the fleet: the gateways of every
k-th site, `WATCHED_BOILERS` boilers at most, spread over the partitions. The
watch is itself a load on InfluxDB: 1.6 answers a count over 10,000 series in
120-400 ms of its CPU (10 ms per 100), so polling the whole fleet five times a
second made the poller the largest consumer of InfluxDB, and each poll took
longer than the polling period. At the end, one count over every series gives
the share of all points that landed.

The first `WARMUP_S` seconds are left out (processes joining their groups).
The fleet starts at second `START_SECOND` of a minute, so that the window
closes of the minute (40-60 s after it: lateness, gap and each gateway's close
phase) are measured in every run.
Whether the worker keeps up is reported too: its lag when the fleet stops.
The CPU of every process of the run (worker, sink, publisher, broker, InfluxDB)
is sampled each second: `cpu.csv`, and the mean cores of each before and during
the closes in the note of the p99 figure.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from benchmarks.broker import Committed, provision
from benchmarks.influxpoll import POLL_S, BucketWatch, poll_once
from benchmarks.live import Pacer, percentile
from benchmarks.procs import Children, CpuSampler, Deployment, log_times
from benchmarks.results import Figure
from benchmarks.worker import crashes
from benchmarks.workload import GATEWAY_1S, Fleet
from heatstream.schemas.topics import RAW_EVENTS, topic_name
from heatstream.settings import StreamSettings
from heatstream.stack.provision import create_database

WARMUP_S = 10
#: The fleet starts at this second of a minute. Windows are aligned to clock
#: minutes and close 40-60 s after their end (allowed lateness 30 s + max gap
#: 10 s + each gateway's close phase, 0-20 s): a run starting at :59 sees the
#: first closes 41 s in and the last 61 s in, all but the last second of them
#: inside the measured span, in every run. Until 2026-12-07 a run started as
#: soon as the processes were ready, and the closes (then all in one second)
#: fell inside in some runs (p99 3.25 s in one) and after the end in others
#: (1.82 s in the next).
START_SECOND = 59


def start_at(now_s: float, second: int | None = START_SECOND, ahead_s: float = 2.0) -> int:
    """The first whole second at least `ahead_s` from `now_s` that is `second` of a
    minute (any second if None), epoch ms."""
    earliest = int(now_s + ahead_s) + 1
    if second is None:
        return earliest * 1000
    return (earliest + (second - earliest) % 60) * 1000


JITTER_MS = 25  # mean sampling delay of the simulator's gateways after the nominal second
SINK_ARGS = (
    "--downsample",
    "1",
    "--lateness",
    "0",
    "--flush-interval",
    "0.25",
    "--gzip-level",
    "0",
)
WATCHED_BOILERS = 1_000


def watched_sites(fleet: Fleet, most: int = WATCHED_BOILERS) -> tuple[list[str], int]:
    """Every k-th site, holding at most `most` boilers, and how many boilers they hold."""
    sites: dict[str, int] = {}
    for b in fleet.inventory.boilers:
        sites[b.site] = sites.get(b.site, 0) + 1
    names = sorted(sites)
    step = max(1, -(-fleet.boilers // most))
    chosen = names[::step]
    return chosen, sum(sites[s] for s in chosen)


def run_latency(
    bootstrap: str,
    influx_url: str,
    fleet: Fleet,
    recording: Path,
    seconds: int,
    partitions: int,
    workdir: Path,
    children: Children,
    run_id: str,
    warmup_s: int = WARMUP_S,
    key: str = "live",
    stack_pids: dict[str, int] | None = None,
) -> tuple[list[Figure], list[str]]:
    """The live run; `stack_pids` (name -> pid: the broker, InfluxDB) are sampled for
    CPU with the worker, the sink and the publisher."""
    dep = Deployment(
        bootstrap,
        f"bll{run_id}{fleet.boilers}.",
        partitions,
        fleet.inventory,
        workdir / f"live-{fleet.boilers}",
        influx_url=influx_url,
        database=f"bench_{run_id}_live{fleet.boilers}",
    )
    asyncio.run(provision(bootstrap, dep.prefix, partitions))
    asyncio.run(create_database(influx_url, dep.database or ""))
    topic = topic_name(RAW_EVENTS, dep.prefix)
    log = dep.workdir / "worker.log"
    wall0 = time.time()
    worker = children.worker(dep, dep.workdir / "state", log)
    sink = children.sink(dep, dep.workdir / "sink.log", *SINK_ARGS)
    deadline = time.monotonic() + 60
    while not log_times(log, "Worker ready", after=wall0 - 1):
        if time.monotonic() > deadline or worker.poll() is not None:
            raise RuntimeError(f"worker not ready: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    time.sleep(2.0)  # the sink joins its group meanwhile

    # Runs too short to reach the close (--quick) start at once.
    start_ms = start_at(time.time(), START_SECOND if seconds >= 60 else None)
    time.sleep(max(0.0, start_ms / 1000 - time.time() - 1.0))
    pacer = Pacer(
        recording, bootstrap, topic, fleet.boilers, GATEWAY_1S, seconds, dep.workdir / "pace.log"
    )
    pacer.start(children, start_ms)
    pids = {"worker": worker.pid, "sink": sink.pid, "publisher": pacer.proc.pid}
    cpu = CpuSampler({**pids, **(stack_pids or {})}).start()
    sites, watched = watched_sites(fleet)
    where = " OR ".join(f"\"site\" = '{site}'" for site in sites)
    telemetry = BucketWatch("telemetry", "samples", 1000, watched, start_ms, where=where)
    window_ms = 60_000
    first_window = -(-start_ms // window_ms) * window_ms  # first window fully inside the run
    windows = BucketWatch("heat_window", "heat_kwh", window_ms, fleet.boilers, first_window)
    # A 1 s bucket closes when the frame completing it arrives (its watermark): the last too.
    last_bucket = start_ms + (seconds - 1) * 1000
    last_window = (start_ms + seconds * 1000) // window_ms * window_ms - window_ms
    lag_at_end: int | None = None
    slow_polls = 0
    poll_s: list[float] = []
    with httpx.Client(base_url=influx_url, timeout=20.0) as client:
        end_by = start_ms / 1000 + seconds + 30
        while time.time() < end_by:
            asked = time.monotonic()
            try:
                poll_once(client, dep.database or "", [telemetry, windows])
            except httpx.TimeoutException:
                slow_polls += 1  # InfluxDB too busy to answer: what it shows, it shows later
                continue
            poll_s.append(time.monotonic() - asked)
            if lag_at_end is None and pacer.proc.poll() is not None:
                lag_at_end = _lag(bootstrap, dep.app_id, topic, partitions)
            if telemetry.complete_through(last_bucket) and (
                last_window < first_window
                or windows.complete_through(last_window)
                or time.time() > start_ms / 1000 + seconds + 20
            ):
                break
            if worker.poll() is not None or sink.poll() is not None:
                raise RuntimeError("worker or sink exited during the live run")
            time.sleep(POLL_S)
        landed = _count(client, dep.database or "", start_ms, last_bucket)
    cpu.stop()
    cpu.save(dep.workdir / "cpu.csv")
    sent = pacer.result(timeout_s=30)
    children.stop(sink)
    children.stop(worker)
    if lag_at_end is None:
        lag_at_end = _lag(bootstrap, dep.app_id, topic, partitions)

    # Points that never became queryable count with the latency they had reached when
    # the watch ended (censored): the percentiles are then lower bounds, and say so.
    ended_ms = time.time() * 1000
    first_kept = start_ms + warmup_s * 1000
    missing = 0
    for b in range(first_kept, last_bucket + 1, 1000):
        gap = watched - telemetry.seen.get(b, 0)
        if gap > 0:
            telemetry.arrivals.append((b, gap, ended_ms))
            missing += gap
    _save_arrivals(dep.workdir / "telemetry-arrivals.csv", telemetry)
    lat, n = telemetry.latencies(JITTER_MS)
    keep = [i for i, (b, _, _) in enumerate(telemetry.arrivals) if first_kept <= b <= last_bucket]
    lat, n = lat[keep], n[keep]
    expected = fleet.boilers * seconds
    censored = (
        f"; {missing:,} points not queryable when the watch ended count as censored "
        "(the percentiles are lower bounds)"
        if missing
        else ""
    )
    note = (
        f"{fleet.boilers:,} boilers x 12 channels at 1 Hz for {seconds} s "
        f"({fleet.readings_per_second:,} readings/s); sink {' '.join(SINK_ARGS)}; "
        f"latency watched on {watched:,} boilers ({len(sites)} of "
        f"{len(fleet.inventory.sites)} sites), polls took {_median_ms(poll_s)} ms (median); "
        f"{landed:,} of {expected:,} telemetry points landed; "
        f"sender at worst {sent['worst_behind_ms']:,.0f} ms behind; "
        f"{slow_polls} InfluxDB polls timed out (20 s){censored}"
    )
    figures: list[Figure] = []
    if len(lat):
        figures += [
            Figure(
                f"{key}_telemetry_latency_p50_ms",
                percentile(lat, n, 50),
                "ms",
                f"live {fleet.boilers:,} boilers: event -> telemetry point queryable, p50",
                note=note,
            ),
            Figure(
                f"{key}_telemetry_latency_p99_ms",
                percentile(lat, n, 99),
                "ms",
                f"live {fleet.boilers:,} boilers: event -> telemetry point queryable, p99",
                note=_cpu_note(cpu, start_ms, seconds, warmup_s),
            ),
        ]
    wlat, wn = windows.latencies(window_ms)  # from the window's end
    if len(wlat):
        figures += [
            Figure(
                f"{key}_heat_window_latency_p50_ms",
                percentile(wlat, wn, 50),
                "ms",
                "live: window end -> heat_window queryable, p50",
                note=f"{int(wn.sum()):,} windows; includes the designed wait "
                "(allowed lateness 30 s + max gap 10 s)",
            ),
            Figure(
                f"{key}_heat_window_latency_p99_ms",
                percentile(wlat, wn, 99),
                "ms",
                "live: window end -> heat_window queryable, p99",
            ),
        ]
    figures.append(
        Figure(
            f"{key}_telemetry_landed_share",
            landed / expected if expected else 0.0,
            "share",
            f"live {fleet.boilers:,} boilers: telemetry points queryable by the end",
        )
    )
    figures.append(
        Figure(
            f"{key}_worker_lag_messages",
            float(lag_at_end),
            "messages",
            f"live {fleet.boilers:,} boilers: worker lag when the fleet stopped",
            note="raw messages not yet committed by the worker (commit interval 1 s)",
        )
    )
    return figures, crashes(log)


def _cpu_note(cpu: CpuSampler, start_ms: int, seconds: int, warmup_s: int) -> str:
    """Mean cores of each process before the minute's window closes and while they
    run (lateness + gap after the minute, for the spread of the gateways' close phases)."""
    streams = StreamSettings()  # the worker runs with the defaults
    window_s = streams.window_s
    begin, end = start_ms / 1000 + warmup_s, start_ms / 1000 + seconds
    # The first window boundary in the run, plus the wait before a gateway closes.
    closes: float = -(-start_ms // (window_s * 1000)) * window_s
    closes += streams.allowed_lateness_s + streams.max_gap_s
    parts = []
    for label, since, until in (
        ("before the closes", begin, min(closes, end)),
        ("during the closes", max(closes, begin), min(closes + streams.close_spread_s, end)),
    ):
        cores = cpu.cores(since, until)
        if cores:
            used = ", ".join(f"{name} {c:.2f}" for name, c in cores.items())
            parts.append(
                f"{label} ({until - since:.0f} s): {used} (total {sum(cores.values()):.2f})"
            )
    return "CPU, mean cores: " + "; ".join(parts) + " (cpu.csv: each second)" if parts else ""


def _count(client: httpx.Client, database: str, first_ms: int, last_ms: int) -> int:
    """Telemetry points of every boiler from bucket `first_ms` to `last_ms`, landed."""
    q = (
        f'SELECT count("samples") FROM "telemetry" '
        f"WHERE time >= {first_ms}ms AND time <= {last_ms}ms"
    )
    r = client.get("/query", params={"db": database, "q": q}, timeout=120.0)
    r.raise_for_status()
    series = r.json()["results"][0].get("series") or []
    return int(series[0]["values"][0][1]) if series else 0


def _save_arrivals(path: Path, watch: BucketWatch) -> None:
    """The data behind the percentiles: when each bucket's points were first seen."""
    rows = ["bucket_ms,points,seen_ms", *(f"{b},{n},{t:.0f}" for b, n, t in watch.arrivals)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _median_ms(values: list[float]) -> str:
    return f"{sorted(values)[len(values) // 2] * 1000:,.0f}" if values else "-"


def _lag(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    from benchmarks.broker import end_offsets

    async def lag() -> int:
        ends = await end_offsets(bootstrap, topic)
        async with Committed(bootstrap, group, topic, partitions) as c:
            return max(0, sum(ends.values()) - await c.total())

    return asyncio.run(lag())
