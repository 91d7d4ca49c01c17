"""heatstream: event-sourced telemetry for digital boilers.

Gateways publish telemetry frames to Kafka (`heatstream.ingest`), the Faust
application turns them into heat-recovery windows and detections
(`heatstream.streams`), and sinks land the results in InfluxDB
(`heatstream.sinks`). Event contracts live in `heatstream.schemas`; the embedded
development stack (broker plus InfluxDB) lives in `heatstream.stack`.
"""

__version__ = "0.1.0"
