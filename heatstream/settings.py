"""The one settings object of every heatstream deployable.

Built once in `main()` from, in order of precedence: explicit overrides,
`HEATSTREAM_*` environment variables (nested with `__`, e.g.
`HEATSTREAM_KAFKA__BOOTSTRAP=host:9092`), an optional TOML file (given by
`--config FILE` or `HEATSTREAM_CONFIG`), then the defaults below. Everything
else receives it as an argument; no module reads the environment on its own,
except `heatstream.streams.water` for `HEATSTREAM_CACHE_DIR`, the location of its
re-derivable table cache (not a setting: it changes no result).
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from heatstream.schemas.health import PROCESS_PATTERN

_config_file: ContextVar[Path | None] = ContextVar("heatstream_config_file", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    """How every heatstream process reaches Kafka."""

    bootstrap: str = Field("127.0.0.1:9092", description="host:port[,host:port...] of the brokers")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    topic_prefix: str = Field(
        "", description="prepended to every topic name (multi-tenant clusters)"
    )
    partitions: int = Field(
        8, ge=1, description="partitions of keyed topics when heatstream creates them"
    )
    replication_factor: int = Field(1, ge=1)


class InfluxSettings(_Section):
    """Where results land. `api = "v1"` talks to InfluxDB 1.x `/write`;
    `api = "v2"` to InfluxDB 1.8+, 2.x, 3.x and Cloud through influxdb-client."""

    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    database: str = Field("heatstream", description="v1 database (also the DBRP database on v2)")
    retention_policy: str = "autogen"
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    org: str = "heatstream"
    bucket: str = "heatstream"


class StackSettings(_Section):
    """The embedded development stack started by `heatstream stack up`."""

    data_dir: Path = Field(
        Path(".heatstream"), description="state, logs and pid files of the stack"
    )
    host: str = "127.0.0.1"
    kafka_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    influx_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    start_timeout_s: float = Field(30.0, gt=0)
    influx_gogc: int = Field(
        400,
        ge=1,
        description="GOGC of the embedded influxd: Go collects garbage when its heap has grown"
        " by this percentage since the last collection. InfluxDB's write path allocates per"
        " point; at 10,000 points/s, 400 instead of Go's 100 took its CPU from ~0.65 to"
        " ~0.5 of a core (BENCHMARKS.md) for a larger heap",
    )


class StreamSettings(_Section):
    """Event-time processing parameters of the worker."""

    window_s: int = Field(60, ge=1, description="tumbling heat-window length")
    allowed_lateness_s: int = Field(
        30, ge=0, description="how far behind the watermark an event may arrive"
    )
    max_gap_s: float = Field(10.0, gt=0, description="longer gaps between samples are not bridged")
    close_spread_s: float = Field(
        20.0,
        ge=0,
        description="a gateway's windows close up to this much later than allowed_lateness +"
        " max_gap after their end (a fixed share per gateway, from a hash of its id), so that"
        " a fleet's windows, which all end on the same minutes, do not all close in the same"
        " second; for that gateway the share adds to the allowed lateness. 0: all at once",
    )
    gateway_silent_s: int = Field(
        300, ge=1, description="event-time silence before 'gateway_silent'"
    )
    nice: int = Field(
        10,
        ge=0,
        le=19,
        description="CPU priority of the worker: its Unix nice value is raised to this at start"
        " (never lowered). Its results wait for windows to close (40-60 s) anyway; on a shared"
        " machine the live path (broker, sink, InfluxDB) then goes first in the seconds when"
        " the worker closes a fleet's windows, and the worker catches up after. An idle core"
        " still goes to the worker. 0: the priority it was started with",
    )
    offline_hold_s: int = Field(
        3600, ge=0, description="how long windows of a silent gateway wait for its backlog"
    )
    liveness_check_s: float = Field(
        30.0,
        ge=0,
        description="how often the worker checks gateways against the wall clock (0: never, "
        "for simulated or historical data)",
    )
    session_timeout_s: float = Field(
        10.0, gt=0, description="consumer-group session timeout (how fast a dead worker is noticed)"
    )
    producer_batch_kib: int = Field(
        900,
        ge=16,
        le=976,
        description="largest record batch the worker's producer builds, in KiB (Faust's default "
        "is 16). After each batch of messages the worker waits until its changelog rows are "
        "acknowledged: bigger record batches, less waiting (at most 976, under the producer's "
        "1,000,000-byte request limit)",
    )
    health_interval_s: float = Field(
        5.0,
        ge=0,
        description="how often the worker publishes its health sample (counters, consumer lag, "
        "latency) to the health topic, which the sink lands in pipeline_health (0: never)",
    )
    process_name: str | None = Field(
        None,
        pattern=PROCESS_PATTERN,
        description="`process` tag of the worker's pipeline_health points (default: the host "
        "name); give each worker sharing a host its own",
    )


class Settings(BaseSettings):
    """Effective configuration; `heatstream config show` prints it."""

    model_config = SettingsConfigDict(
        env_prefix="HEATSTREAM_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    app_id: str = Field("heatstream", description="Faust app id and consumer-group prefix")
    inventory: Path | None = Field(
        None, description="inventory TOML (sites, boilers, gateways); the bundled example if unset"
    )
    kafka: KafkaSettings = KafkaSettings()
    influxdb: InfluxSettings = InfluxSettings()
    stack: StackSettings = StackSettings()
    streams: StreamSettings = StreamSettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("app_id")
    @classmethod
    def _app_id_is_topic_safe(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "._-" for c in value):
            raise ValueError(f"app_id={value!r}: use letters, digits, '.', '_' or '-'")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return (*sources, file_secret_settings)


class ConfigFileError(ValueError):
    """The configuration file named by --config or HEATSTREAM_CONFIG is unusable."""


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings once. `config_file` falls back to `HEATSTREAM_CONFIG`."""
    path_text = config_file if config_file is not None else os.environ.get("HEATSTREAM_CONFIG")
    path = Path(path_text) if path_text else None
    if path is not None and not path.is_file():
        raise ConfigFileError(f"configuration file {str(path)!r} does not exist")
    token = _config_file.set(path)
    try:
        return Settings(**overrides)
    finally:
        _config_file.reset(token)


def masked(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every secret shown as '**********'."""
    return settings.model_dump(mode="json")  # SecretStr dumps as '**********' in json mode
