"""SinkOptions: every knob of `heatstream sink` in one frozen object.

Where InfluxDB and Kafka are comes from `Settings` (`influxdb.*`, `kafka.*`);
how the sink batches, retries, downsamples and applies backpressure comes from
here, built once by the CLI from its options (defaults below) and passed down.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SinkOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(5000, ge=1, description="points per InfluxDB write, at most")
    flush_interval_s: float = Field(
        1.0,
        gt=0,
        description="a non-empty batch is written at the latest this long after it opened, and"
        " as soon as the sink has read every message there is to read",
    )
    max_in_flight_points: int = Field(
        50_000,
        ge=1,
        description="points buffered or being written; above it consumption pauses (backpressure)",
    )
    write_concurrency: int = Field(
        2,
        ge=1,
        description="batches written to InfluxDB at once (InfluxDB writes them in parallel);"
        " offsets are still committed in order, and two batches holding derived events are"
        " never written together",
    )
    max_records: int = Field(500, ge=1, description="Kafka messages taken per poll")
    fetch_max_wait_ms: int = Field(
        50,
        ge=0,
        description="longest the broker may hold a fetch that found no new record. Apache Kafka"
        " answers as soon as one arrives; the embedded broker (Tansu) holds the fetch for about"
        " this long whatever arrives, so each record waited up to it (aiokafka's default,"
        " 500 ms: a median of ~0.1 s added). Idle, the sink sends 1000/this fetches a second",
    )
    max_retries: int | None = Field(
        None,
        ge=0,
        description="retries of one write before the sink stops; None: retry until InfluxDB is back"
        " (consumption stays paused meanwhile, nothing is lost)",
    )
    backoff_initial_s: float = Field(0.2, gt=0, description="first retry delay")
    backoff_max_s: float = Field(30.0, gt=0, description="retry delays grow up to this")
    backoff_multiplier: float = Field(2.0, ge=1)
    backoff_jitter: float = Field(
        0.5, ge=0, le=1, description="a delay d is drawn uniformly from [d*(1-jitter), d]"
    )
    request_timeout_s: float = Field(10.0, gt=0, description="one HTTP write, connect to response")
    gzip_level: int = Field(
        5,
        ge=0,
        le=9,
        description="gzip level of the HTTP write bodies; 0 sends them uncompressed, for an"
        " InfluxDB on the same host, where compressing costs both ends CPU and saves nothing"
        " (10,000 telemetry points: 0.35-0.45 s to write plain, 0.48-0.61 s gzipped)",
    )
    downsample_s: int = Field(
        10, ge=0, description="raw telemetry is landed as means over buckets this long; 0 disables"
    )
    lateness_s: int = Field(
        20,
        ge=0,
        description="a bucket is closed once its gateway's event time passed its end + this",
    )
    idle_close_s: int = Field(
        120,
        ge=1,
        description="a gateway this far behind its partition's event time has its open buckets"
        " closed",
    )
    warmup_messages: int = Field(
        10_000,
        ge=0,
        description="on (re)assignment, raw messages re-read before the committed offset to tell"
        " already-written buckets from open ones",
    )
    health_interval_s: float = Field(5.0, gt=0, description="period of pipeline_health points")
    process_name: str | None = Field(
        None, description="`process` tag of the sink's pipeline_health points (default: host name)"
    )
    session_timeout_s: float = Field(10.0, gt=0, description="consumer-group session timeout")
    close_timeout_s: float = Field(
        10.0, gt=0, description="on shutdown, how long to keep trying to write what is buffered"
    )

    @model_validator(mode="after")
    def _consistent(self) -> SinkOptions:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"backoff_max_s={self.backoff_max_s} is below "
                f"backoff_initial_s={self.backoff_initial_s}"
            )
        if self.max_in_flight_points < self.batch_size:
            raise ValueError(
                f"max_in_flight_points={self.max_in_flight_points} is below batch_size="
                f"{self.batch_size}: a full batch could never be formed"
            )
        if self.downsample_s and self.idle_close_s < self.downsample_s + self.lateness_s:
            raise ValueError(
                f"idle_close_s={self.idle_close_s} must be at least downsample_s + lateness_s "
                f"({self.downsample_s + self.lateness_s}), or live gateways count as idle"
            )
        return self

    @property
    def downsampling(self) -> bool:
        """Whether the raw topic is consumed at all."""
        return self.downsample_s > 0
