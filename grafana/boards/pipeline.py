"""Pipeline health: consumer lag, throughput, dead letters, late events, sink writes.

``pipeline_health`` has one series per reporting process, keyed by ``component``
(``worker``, ``sink``) and ``process`` (a worker and a sink on one host share the host
name, so every query that spans components groups by both). Its counts are cumulative
since the process started (docs/measurements.md), so a panel takes the last value per
bucket and series and differences it: ``non_negative_difference(max(...))`` is the
count of each bucket, ``non_negative_derivative(max(...), 1s)`` the rate, and both skip
the reset of a restart (that bucket's counts are not shown, nor those of a process's
first bucket, which has nothing before it). ``consumer_lag`` and ``in_flight_points``
are gauges; latencies are per reporting interval.
"""

from __future__ import annotations

from heatstream.grafana.boards.common import PIPELINE_UID, PROCESS
from heatstream.grafana.panels import (
    Json,
    dashboard,
    query_variable,
    stat,
    table,
    target,
    timeseries,
)

HEALTH = f'FROM "pipeline_health" WHERE {PROCESS} AND $timeFilter'
SINK = f'FROM "pipeline_health" WHERE "component" = \'sink\' AND {PROCESS} AND $timeFilter'
WORKER = f'FROM "pipeline_health" WHERE "component" = \'worker\' AND {PROCESS} AND $timeFilter'
PER_PROCESS = 'GROUP BY time($__interval), "process" fill(none)'
PER_SERIES = 'GROUP BY time($__interval), "process", "component" fill(none)'
PER_REASON = 'GROUP BY time($__interval), "reason", "stage" fill(none)'


def per_bucket(*fields: str) -> str:
    """Counts per bucket of cumulative counters, one column per field."""
    return ", ".join(f'non_negative_difference(max("{f}")) AS "{f}"' for f in fields)


def per_second(*fields: str) -> str:
    """Rates of cumulative counters, per second, one column per field."""
    return ", ".join(f'non_negative_derivative(max("{f}"), 1s) AS "{f}"' for f in fields)


def _stats() -> list[Json]:
    return [
        stat(
            "Consumer lag now",
            "Messages not yet consumed, summed over the selected processes (latest report "
            "of each).",
            [
                target(
                    'SELECT sum("lag") AS "consumer_lag" FROM ('
                    f'SELECT last("consumer_lag") AS "lag" {HEALTH} '
                    'GROUP BY "process", "component")'
                )
            ],
            unit="short",
            thresholds=((None, "green"), (10_000, "orange"), (100_000, "red")),
        ),
        stat(
            "Dead letters",
            "Messages refused into the dead-letter topic over the period (nothing is dropped).",
            [target('SELECT sum("count") AS "dead_letters" FROM "dead_letter" WHERE $timeFilter')],
            no_value="0",
            unit="short",
            calc="sum",
            thresholds=((None, "green"), (1, "orange")),
        ),
        stat(
            "Late events",
            "Events later than the allowed lateness, routed to the late-events topic over "
            "the period.",
            [target('SELECT sum("count") AS "late_events" FROM "late_event" WHERE $timeFilter')],
            no_value="0",
            unit="short",
            calc="sum",
            thresholds=((None, "green"), (1, "orange")),
        ),
        stat(
            "Sink write latency p95",
            "95th percentile, over the period, of the sink's mean write latency per "
            "reporting interval (first attempt to acknowledgement, retries included).",
            [target(f'SELECT percentile("write_latency_ms", 95) AS "p95" {SINK}')],
            unit="ms",
            thresholds=((None, "green"), (500, "orange"), (2000, "red")),
        ),
    ]


def _refused(measurement: str, title: str, description: str, column: str) -> Json:
    return timeseries(
        title,
        description,
        [
            target(
                f'SELECT sum("count") AS "{column}" FROM "{measurement}" WHERE $timeFilter '
                + PER_REASON,
                alias="$tag_stage: $tag_reason",
            )
        ],
        unit="short",
        min_interval="1m",
        bars=True,
        stacked=True,
        min_=0,
        legend_calcs=("sum",),
    )


def pipeline_health() -> Json:
    panels = [
        *_stats(),
        timeseries(
            "Consumer lag",
            "Per process: messages behind the end of the partitions it consumes.",
            [
                target(
                    f'SELECT max("consumer_lag") AS "lag" {HEALTH} '
                    'GROUP BY time($__interval), "process", "component" fill(none)',
                    alias="$tag_component $tag_process",
                )
            ],
            unit="short",
            min_interval="1m",
            min_=0,
        ),
        timeseries(
            "Throughput",
            "Kafka messages read per second by each process (workers and sinks), and points "
            "each sink landed in InfluxDB per second.",
            [
                target(
                    f"SELECT {per_second('messages', 'points_written')} {HEALTH} {PER_SERIES}",
                    alias="$tag_component $tag_process $col",
                )
            ],
            unit="cps",
            min_interval="1m",
            min_=0,
        ),
        timeseries(
            "Worker throughput",
            "Readings (one value of one channel of one boiler) each worker processed per "
            "second: the unit of the sizing figures (docs/platform.md).",
            [
                target(
                    f"SELECT {per_second('readings')} {WORKER} {PER_PROCESS}",
                    alias="$tag_process $col",
                )
            ],
            unit="cps",
            min_interval="1m",
            min_=0,
        ),
        timeseries(
            "Worker processing latency",
            "Mean and worst time from a raw message reaching a worker's intake to its "
            "acknowledgement: waiting for its batch, processing the batch, and the broker "
            "acknowledging what it emitted. It grows when a worker falls behind.",
            [
                target(
                    'SELECT mean("processing_latency_ms") AS "mean", '
                    f'max("processing_latency_max_ms") AS "max" {WORKER} {PER_PROCESS}',
                    alias="$tag_process $col",
                )
            ],
            unit="ms",
            min_interval="1m",
            min_=0,
        ),
        timeseries(
            "Dead letters and late events by component",
            "Per interval, from the processes' own counters: messages the workers refused at "
            "intake and the sinks refused or could not read (dead letters), and events the "
            "workers routed as late. The reasons are in the panels below.",
            [
                target(
                    'SELECT sum("dead_letters") AS "dead_letters", sum("late_events") AS '
                    f'"late_events" FROM (SELECT {per_bucket("dead_letters", "late_events")} '
                    f'{HEALTH} {PER_SERIES}) GROUP BY time($__interval), "component" fill(none)',
                    alias="$tag_component $col",
                )
            ],
            unit="short",
            min_interval="1m",
            bars=True,
            min_=0,
            legend_calcs=("sum",),
        ),
        _refused(
            "dead_letter",
            "Dead letters by reason",
            "Refused messages per interval, by the stage that refused them and why.",
            "dead_letters",
        ),
        _refused(
            "late_event",
            "Late events by reason",
            "Events routed as late per interval, by stage and reason.",
            "late_events",
        ),
        timeseries(
            "Sink write latency",
            "Mean and worst time from a batch's first write attempt to InfluxDB's "
            "acknowledgement, retries included.",
            [
                target(
                    'SELECT mean("write_latency_ms") AS "mean", '
                    f'max("write_latency_max_ms") AS "max" {SINK} {PER_PROCESS}',
                    alias="$tag_process $col",
                )
            ],
            unit="ms",
            min_interval="1m",
            min_=0,
        ),
        timeseries(
            "Sink retries and rejected points",
            "Write attempts retried (InfluxDB slow or down: backpressure), points InfluxDB "
            "refused (dead-lettered) and offset commits that failed, per interval.",
            [
                target(
                    f"SELECT {per_bucket('retries', 'rejected_points', 'commit_failures')} "
                    f"{SINK} {PER_PROCESS}",
                    alias="$tag_process $col",
                )
            ],
            unit="short",
            min_interval="1m",
            bars=True,
            min_=0,
            legend_calcs=("sum",),
        ),
        timeseries(
            "Points in flight",
            "Points buffered or being written by the sink: a backlog that grows is "
            "InfluxDB not keeping up.",
            [
                target(
                    f'SELECT max("in_flight_points") AS "in_flight" {SINK} {PER_PROCESS}',
                    alias="$tag_process",
                )
            ],
            unit="short",
            min_interval="1m",
            min_=0,
        ),
        timeseries(
            "Late samples, duplicates and skipped messages",
            "Telemetry samples too late for their 10 s bucket, frames seen twice (counted "
            "once), and raw messages the sink did not land (the worker dead-letters them).",
            [
                target(
                    f"SELECT {per_bucket('late_samples', 'duplicates', 'skipped_messages')} "
                    f"{SINK} {PER_PROCESS}",
                    alias="$tag_process $col",
                )
            ],
            unit="short",
            min_interval="1m",
            bars=True,
            min_=0,
            legend_calcs=("sum",),
        ),
        table(
            "Recent dead letters",
            "The latest refused messages per reason: where they came from (topic, "
            "partition, offset) and the error, to find and replay them.",
            [
                target(
                    'SELECT "error", "source_partition", "source_offset" FROM "dead_letter" '
                    'WHERE $timeFilter GROUP BY "reason", "stage", "source_topic" '
                    "ORDER BY time DESC LIMIT 20",
                    table=True,
                )
            ],
            hide=(),
        ),
    ]
    return dashboard(
        uid=PIPELINE_UID,
        title="heatstream / Pipeline health",
        description="Consumer lag, throughput, dead letters, late events, worker processing "
        "latency, sink write latency and retries.",
        panels=panels,
        variables=[
            query_variable(
                "process",
                "Process",
                'SHOW TAG VALUES FROM "pipeline_health" WITH KEY = "process"',
                multi=True,
                include_all=True,
            )
        ],
        time_from="now-6h",
        refresh="30s",
    )
