"""Fixtures shared by every test tier.

`stack` starts the embedded development stack (Tansu + InfluxDB 1.6, the same
`EmbeddedStack` as `heatstream stack up`) once per test session on free loopback
ports in a temporary directory, and stops it at the end; it starts lazily, so unit
tests that do not ask for it never pay for it.

Every test session keeps the water-property table (`heatstream.streams.water`) in a
cache directory of its own, so that no test depends on the cache in the user's home
or writes into it. Child processes inherit the directory, except those started with
every `HEATSTREAM_*` variable stripped (benchmarks/procs.py, the integration helpers),
which use the default location like any heatstream process.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import pytest

from heatstream.settings import load_settings
from heatstream.stack import EmbeddedStack
from heatstream.streams import water


@pytest.fixture(scope="session", autouse=True)
def water_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """HEATSTREAM_CACHE_DIR -> an empty per-session directory (see the module docstring)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(water.CACHE_DIR_ENV, str(tmp_path_factory.mktemp("cache")))
        water._table.cache_clear()
        yield
    water._table.cache_clear()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """A running, provisioned stack: `.bootstrap`, `.influx_url`, `.database`, `.settings`.

    `.settings` is a full `Settings` pointing at it (kafka.bootstrap, influxdb.url with
    api v1, stack ports); pass it to whatever you build (`build_app(stack.settings)`).
    Against this broker, never enable producer idempotence or transactions, and give
    consumer groups short session timeouts (see docs/DESIGN facts).
    """
    settings = load_settings(
        # Explicit so that a developer's exported HEATSTREAM_* (e.g. a fixed port of
        # their own `stack up`) cannot collide with the test stack.
        stack={"data_dir": tmp_path_factory.mktemp("stack"), "kafka_port": 0, "influx_port": 0},
    )
    with EmbeddedStack(settings) as running:
        yield running


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Make names no other test uses: `unique_name("topic")` -> "topic_test_x_1a2b3c4d".

    Letters, digits and underscores only, so the result is a valid Kafka topic,
    consumer group, InfluxDB database or measurement name without quoting.
    """
    test = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)[:60].strip("_")

    def make(prefix: str = "t") -> str:
        return f"{prefix}_{test}_{uuid.uuid4().hex[:8]}"

    return make
