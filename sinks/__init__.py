"""Consumers that land results outside Kafka: the InfluxDB sink (`heatstream sink`).

Flow: Kafka (derived topics, dead letters, raw telemetry) -> `points.py` /
`downsample.py` (pure: events to points) -> `batcher.py` -> `lineprotocol.py`
(pure encoder) -> `writers/` (v1 `/write` or v2 influxdb-client) with
`retry.py` and `isolate.py`, run by `consumer.py`. `build_sink(settings,
options)` builds one.
"""
