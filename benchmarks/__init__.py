"""heatstream's benchmark harness: `python -m benchmarks` from the repository root.

Throughput of every stage next to its ceiling, the worker end to end on the
embedded broker, memory, table recovery, live latency into InfluxDB, replay
speed and the frame-shape trade-off. Results print as a table and, with
`--json FILE`, are saved for CI; BENCHMARKS.md records a full run. Not
installed with the package: it lives beside it, like the tests.
"""
