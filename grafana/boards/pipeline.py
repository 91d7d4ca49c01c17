"""Pipeline health: consumer lag, throughput, dead letters, late events, sink writes.

``pipeline_health`` holds counts per reporting interval (``interval_s`` long), so a
rate is ``sum(count) / sum("interval_s")`` over a bucket, exact whatever the reporting
period; ``consumer_lag`` and ``in_flight_points`` are gauges.
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
PER_PROCESS = 'GROUP BY time($__interval), "process" fill(none)'
PER_REASON = 'GROUP BY time($__interval), "reason", "stage" fill(none)'


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
            "Kafka messages read and points landed in InfluxDB per second, per process "
            "(counts of each reporting interval over the time they cover).",
            [
                target(
                    'SELECT sum("messages") / sum("interval_s") AS "messages", '
                    f'sum("points_written") / sum("interval_s") AS "points" {HEALTH} {PER_PROCESS}',
                    alias="$tag_process $col",
                )
            ],
            unit="cps",
            min_interval="1m",
            min_=0,
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
                    'SELECT sum("retries") AS "retries", sum("rejected_points") AS "rejected", '
                    f'sum("commit_failures") AS "commit_failures" {SINK} {PER_PROCESS}',
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
                    'SELECT sum("late_samples") AS "late_samples", sum("duplicates") AS '
                    '"duplicates", sum("skipped_messages") AS "skipped" '
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
        description="Consumer lag, throughput, dead letters, late events, sink write latency "
        "and retries.",
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
