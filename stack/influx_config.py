"""The influxd configuration file of the embedded InfluxDB 1.6.

influxd takes its listen addresses and directories only from a config file, so the
stack writes one per start: loopback ports, everything under the data directory,
quiet logs, and no service the stack does not use (reporting, monitor store,
subscriber, pprof), so a development stack neither phones home nor fills a disk.
"""

from __future__ import annotations

import json
from pathlib import Path


def _q(value: str | Path) -> str:
    # TOML basic strings and JSON strings escape the same way.
    return json.dumps(str(value))


def render_influx_config(
    data_dir: Path, host: str, http_port: int, rpc_port: int, *, auth_enabled: bool = False
) -> str:
    """The TOML text of an influxd config for one embedded instance.

    `auth_enabled`: every request needs a user's credentials; the first user must be
    created, as an admin (`CREATE USER ... WITH ALL PRIVILEGES`), before anything else.
    """
    return f"""\
# Written by `heatstream stack`; regenerated at every start.
# Upstream 1.x reads reporting-disabled; Debian's build reads reporting-enabled.
reporting-disabled = true
reporting-enabled = false
bind-address = {_q(f"{host}:{rpc_port}")}

[meta]
  dir = {_q(data_dir / "meta")}
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = {_q(data_dir / "data")}
  wal-dir = {_q(data_dir / "wal")}
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  log-enabled = false

[http]
  enabled = true
  bind-address = {_q(f"{host}:{http_port}")}
  auth-enabled = {"true" if auth_enabled else "false"}
  log-enabled = false
  pprof-enabled = false
  unix-socket-enabled = false

[logging]
  level = "warn"
  suppress-logo = true
"""


def write_influx_config(
    path: Path,
    data_dir: Path,
    host: str,
    http_port: int,
    rpc_port: int,
    *,
    auth_enabled: bool = False,
) -> Path:
    """Write the config next to the data it describes and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_influx_config(data_dir, host, http_port, rpc_port, auth_enabled=auth_enabled)
    path.write_text(text, encoding="utf-8")
    return path
