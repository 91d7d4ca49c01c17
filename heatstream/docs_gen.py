"""Generate docs/configuration.md, the configuration reference, from the code.

    python -m heatstream.docs_gen            # rewrite docs/configuration.md
    python -m heatstream.docs_gen --check    # exit 1 if it is stale (tests/unit/test_docs.py)
    python -m heatstream.docs_gen --output -  # print it

Everything in the reference comes from `heatstream.settings.Settings` (its sections,
field types, defaults, constraints and descriptions, secrets, the `HEATSTREAM_*`
variable of each field) and from `heatstream.sinks.options.SinkOptions` together
with the options `heatstream sink` maps onto it; the water-property cache section
names the variable `heatstream.streams.water` reads. A field whose code carries no
`description=` takes its text from `FALLBACK_DESCRIPTIONS` below until the code
gets one (the test refuses a fallback the code has made redundant, and a field
with no description at all).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from heatstream.settings import Settings
from heatstream.sinks.options import SinkOptions
from heatstream.streams import water

#: Where the generated reference lives, relative to the repository root.
OUTPUT = Path("docs/configuration.md")
ENV_PREFIX = str(Settings.model_config.get("env_prefix", "HEATSTREAM_"))
ENV_DELIMITER = str(Settings.model_config.get("env_nested_delimiter", "__"))
GENERATOR = "python -m heatstream.docs_gen"

#: Descriptions of fields whose code has none yet, by dotted path ("kafka.sasl_username",
#: "sink.gzip_level"). Move each into the field's `description=` and delete it here.
FALLBACK_DESCRIPTIONS: dict[str, str] = {
    "log_level": "log level of `heatstream sink` (its `--loglevel` overrides it; the worker's"
    " Faust log level is the worker's own `--loglevel`)",
    "kafka.security_protocol": "how clients talk to the brokers: plaintext, TLS, SASL, or SASL over"
    " TLS",
    "kafka.sasl_mechanism": "SASL mechanism; required with the SASL_* protocols",
    "kafka.sasl_username": "SASL user name",
    "kafka.sasl_password": "SASL password",
    "kafka.ssl_cafile": "CA bundle (PEM) that signed the brokers' certificates; the system CAs"
    " when unset",
    "kafka.ssl_certfile": "client certificate (PEM), for mutual TLS",
    "kafka.ssl_keyfile": "private key of the client certificate (PEM), for mutual TLS",
    "kafka.replication_factor": "replication factor of the topics heatstream creates (at least 3"
    " on a production cluster)",
    "influxdb.url": "base URL of InfluxDB's HTTP API",
    "influxdb.api": "`v1`: InfluxDB 1.x `/write` and `/query` with database and retention policy;"
    " `v2`: `/api/v2/write` with org, bucket and token (InfluxDB 1.8+, 2.x, 3.x, Cloud)",
    "influxdb.retention_policy": "retention policy of v1 writes and of InfluxQL queries (the DBRP"
    " mapping's on InfluxDB 2.x)",
    "influxdb.username": 'user name when InfluxDB 1.x has authentication on (with `api = "v2"`'
    " and no token, InfluxDB 1.8 gets `username:password` as its token)",
    "influxdb.password": "password of `username`",
    "influxdb.token": "API token: v2 writes, and `Authorization: Token` on InfluxQL queries"
    " (InfluxDB 2.x/3.x); on InfluxDB 1.8's v2 API, `user:password`",
    "influxdb.org": "v2 organization",
    "influxdb.bucket": "v2 bucket written to (on InfluxDB 1.8: `database/retention_policy`)",
    "stack.host": "loopback address the embedded broker and InfluxDB listen on",
    "stack.start_timeout_s": "seconds `heatstream stack up` waits for both servers to be healthy",
    "sink.backoff_multiplier": "each retry delay is the previous one times this",
}


# -- reading the code ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldDoc:
    """One configuration field, as the reference shows it."""

    path: str  # dotted: "kafka.bootstrap"
    key: str  # the TOML key inside its table
    type: str
    default: str
    description: str
    secret: bool
    env: str | None  # HEATSTREAM_* variable; None for SinkOptions


def _union_args(annotation: Any) -> tuple[Any, ...] | None:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return None


def is_secret(annotation: Any) -> bool:
    args = _union_args(annotation)
    if args is not None:
        return any(is_secret(a) for a in args)
    return annotation is SecretStr


_SIMPLE = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "string",
}


def type_text(annotation: Any) -> str:
    """A reader's name for a field type: 'integer', '`v1` or `v2`', 'path, optional'."""
    args = _union_args(annotation)
    if args is not None:
        present = [a for a in args if a is not type(None)]
        text = " or ".join(type_text(a) for a in present)
        return f"{text}, optional" if len(present) < len(args) else text
    if get_origin(annotation) is Literal:
        values = [f"`{v}`" for v in get_args(annotation)]
        return "one of " + ", ".join(values) if len(values) > 2 else " or ".join(values)
    if annotation in _SIMPLE:
        return _SIMPLE[annotation]
    return f"`{getattr(annotation, '__name__', annotation)}`"


def constraint_text(info: FieldInfo) -> str:
    parts = []
    for item in info.metadata:
        for cls, sign, attr in (
            (annotated_types.Ge, "≥", "ge"),
            (annotated_types.Gt, ">", "gt"),
            (annotated_types.Le, "≤", "le"),
            (annotated_types.Lt, "<", "lt"),
        ):
            if isinstance(item, cls):
                parts.append(f"{sign} {getattr(item, attr)}")
    return ", ".join(parts)


def default_text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, Path):
        return f"`{value}`"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""` (empty)'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int):
        return f"`{value:_}`".replace("_", ",") if abs(value) >= 10_000 else f"`{value}`"
    return f"`{value!r}`"


def _description(path: str, info: FieldInfo) -> str:
    text = info.description or FALLBACK_DESCRIPTIONS.get(path, "")
    return " ".join(text.split())


def _field(path: str, key: str, info: FieldInfo, env: str | None) -> FieldDoc:
    kind = type_text(info.annotation)
    limits = constraint_text(info)
    secret = is_secret(info.annotation)
    return FieldDoc(
        path=path,
        key=key,
        type=kind + (f", {limits}" if limits else "") + (", **secret**" if secret else ""),
        default=default_text(info.default),
        description=_description(path, info),
        secret=secret,
        env=env,
    )


def env_name(*parts: str) -> str:
    return ENV_PREFIX + ENV_DELIMITER.join(p.upper() for p in parts)


def settings_sections() -> list[tuple[str | None, type[BaseModel] | None, list[FieldDoc]]]:
    """(table name or None for top level, section model, fields) in declaration order."""
    top: list[FieldDoc] = []
    sections: list[tuple[str | None, type[BaseModel] | None, list[FieldDoc]]] = []
    for name, info in Settings.model_fields.items():
        model = info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            fields = [
                _field(f"{name}.{sub}", sub, sub_info, env_name(name, sub))
                for sub, sub_info in model.model_fields.items()
            ]
            sections.append((name, model, fields))
        else:
            top.append(_field(name, name, info, env_name(name)))
    return [(None, None, top), *sections]


def settings_fields() -> Iterator[FieldDoc]:
    for _, _, fields in settings_sections():
        yield from fields


@dataclass(frozen=True, slots=True)
class SinkOption:
    """How one SinkOptions field is set from `heatstream sink`."""

    flag: str | None  # "--batch-size"; None when the CLI does not expose the field
    default_from: str | None  # a setting the CLI falls back to, e.g. "streams.session_timeout_s"
    cli_default: Any = None  # the option's own default, when it has one


def _sink_cli_params() -> dict[str, Any]:
    import typer

    from heatstream.sinks.cli import sink

    holder = typer.Typer()
    holder.command()(sink)
    command = typer.main.get_command(holder)
    return {p.name: p for p in command.params if p.name}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    if isinstance(node, ast.Name):
        return node.id
    return None


def sink_cli_mapping() -> tuple[dict[str, SinkOption], list[Any]]:
    """SinkOptions field -> CLI option, read from the `SinkOptions(...)` call in `sink()`;
    and the CLI options that are not SinkOptions fields."""
    from heatstream.sinks.cli import sink

    params = _sink_cli_params()
    tree = ast.parse(textwrap.dedent(inspect.getsource(sink)))
    mapping: dict[str, SinkOption] = {}
    used: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _dotted(node.func) == "SinkOptions"):
            continue
        for kw in node.keywords:
            if kw.arg is None:
                continue
            value = kw.value
            fallback = None
            if isinstance(value, ast.BoolOp) and isinstance(value.op, ast.Or):
                rest = _dotted(value.values[-1]) or ""
                fallback = rest.removeprefix("settings.") if rest.startswith("settings.") else None
                value = value.values[0]
            name = value.id if isinstance(value, ast.Name) else None
            if name in params:
                used.add(name)
                param = params[name]
                mapping[kw.arg] = SinkOption(
                    flag=param.opts[0], default_from=fallback, cli_default=param.default
                )
    if not mapping:
        raise RuntimeError("no SinkOptions(...) call found in heatstream.sinks.cli.sink")
    others = [
        p
        for name, p in params.items()
        if name not in used and name not in ("install_completion", "show_completion")
    ]
    return mapping, others


def sink_fields() -> list[tuple[FieldDoc, SinkOption]]:
    mapping, _ = sink_cli_mapping()
    out = []
    for name, info in SinkOptions.model_fields.items():
        doc = _field(f"sink.{name}", name, info, None)
        out.append((doc, mapping.get(name, SinkOption(flag=None, default_from=None))))
    return out


# -- rendering -------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _toml_value(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    return json.dumps(value)


def _example_toml() -> list[str]:
    lines = []
    for table, model, fields in settings_sections():
        if table is not None:
            lines += ["", f"[{table}]"]
        source = model if model is not None else Settings
        for doc in fields:
            default = source.model_fields[doc.key].default
            if default is None:
                lines.append(f"# {doc.key} = ...  # unset by default")
            else:
                lines.append(f"{doc.key} = {_toml_value(default)}")
    return lines


def render() -> str:
    out: list[str] = []
    add = out.append
    add("# Configuration reference")
    add("")
    add(f"<!-- Generated by `{GENERATOR}` from heatstream/settings.py and sinks/options.py:")
    add("     do not edit by hand; tests/unit/test_docs.py fails when this file is stale. -->")
    add("")
    add(
        "Every heatstream process (`heatstream worker`, `sink`, `replay`, `report`, `up`, the "
        "gateway SDK through `load_settings()`) builds one `Settings` object. Each value comes "
        "from, highest first:"
    )
    add("")
    add(
        f"1. an environment variable: `{ENV_PREFIX}` followed by the key, sections nested with "
        f"`{ENV_DELIMITER}` (`{env_name('kafka', 'bootstrap')}=kafka-1:9092`); a whole section "
        f"can also be given as JSON (`{env_name('streams')}='{{\"window_s\": 30}}'`);"
    )
    add(
        "2. a TOML file named by `--config FILE` (before the subcommand: "
        "`heatstream --config prod.toml worker`) or by `HEATSTREAM_CONFIG`; top-level keys "
        "first, then one table per section;"
    )
    add("3. the defaults below.")
    add("")
    add(
        "Unknown keys are refused: a misspelt key in the file, or a misspelt key of a section "
        f"in a variable (`{env_name('kafka', 'bootstrapp')}`), is an error that names it, not "
        "a silently ignored setting. (Other variables that merely start with "
        f"`{ENV_PREFIX}`, such as the Grafana webhook's or `{water.CACHE_DIR_ENV}` (see "
        "[below](#water-property-cache)), are not settings and are ignored.) "
        "`heatstream config show` prints the effective values (`--json` for JSON)."
    )
    add("")
    add(
        "**Secrets** (marked **secret** below) are `SecretStr`: `heatstream config show` prints "
        "them as `**********` and their `repr` never shows the value. Set them in the "
        "environment of the service, or in a configuration file only its account can read; "
        "the reference deployment passes them from `.env` (see [deployment.md](deployment.md))."
    )
    add("")
    add(
        "Sections: "
        + ", ".join(
            f"[`{table}`](#{table})" if table else "[top level](#top-level)"
            for table, _, _ in settings_sections()
        )
        + "; and the [sink options](#heatstream-sink-options)."
    )
    for table, model, fields in settings_sections():
        add("")
        if table is None:
            add("## Top level")
            add("")
            add(inspect.cleandoc(Settings.__doc__ or ""))
        else:
            add(f"## {table}")
            add("")
            name = model.__name__ if model is not None else "?"
            add(f"TOML table `[{table}]`, class `{name}` in `heatstream/settings.py`.")
            if model is not None and model.__doc__:
                add("")
                add(" ".join(inspect.cleandoc(model.__doc__).split()))
        add("")
        add("| key | type | default | environment variable | description |")
        add("|---|---|---|---|---|")
        for doc in fields:
            add(
                f"| `{doc.key}` | {_cell(doc.type)} | {_cell(doc.default)} | `{doc.env}` "
                f"| {_cell(doc.description)} |"
            )
    add("")
    add("## Example file")
    add("")
    add(
        "Every setting at its default (the unset ones commented out); save it, change what you "
        "need, delete the rest, and pass it with `--config FILE` or `HEATSTREAM_CONFIG`."
    )
    add("")
    add("```toml")
    out.extend(_example_toml())
    add("```")
    add("")
    add("## heatstream sink options")
    add("")
    add(
        "Where the sink reads and writes comes from the settings above (`kafka.*`, "
        "`influxdb.*`); how it batches, retries, downsamples and applies backpressure comes "
        "from `SinkOptions` (`sinks/options.py`), built once from the command-line options of "
        "`heatstream sink`. Fields without an option keep their default (change them in code, "
        "e.g. when embedding the sink)."
    )
    add("")
    add("| option | `SinkOptions` field | type | default | description |")
    add("|---|---|---|---|---|")
    for doc, option in sink_fields():
        flag = f"`{option.flag}`" if option.flag else "—"
        default = doc.default
        if option.default_from:
            default = f"the setting `{option.default_from}`"
        elif option.cli_default is not None:
            default = default_text(option.cli_default)
        add(
            f"| {flag} | `{doc.key}` | {_cell(doc.type)} | {_cell(default)} "
            f"| {_cell(doc.description)} |"
        )
    _, others = sink_cli_mapping()
    for param in others:
        help_text = " ".join((param.help or "").split())
        add(f"| `{param.opts[0]}` | — | | | {_cell(help_text)} |")
    add("")
    add(
        "The options are checked together: `backoff_max_s` ≥ `backoff_initial_s`, "
        "`max_in_flight_points` ≥ `batch_size`, and with downsampling on, `idle_close_s` ≥ "
        "`downsample_s` + `lateness_s`; `heatstream sink` exits with status 2 and names the "
        "option otherwise."
    )
    add("")
    add("## Water-property cache")
    add("")
    add(
        "The first heat computation of a process needs a table of the density and heat "
        "capacity of water from IAPWS-95 (`heatstream/streams/water.py`, through the `iapws` "
        "package). Computing it costs about 1.2 s of CPU, so it is computed once per machine "
        "and kept in a file of a few KB, `water-iapws95-….npz`, in the directory named by "
        f"`{water.CACHE_DIR_ENV}`, else `$XDG_CACHE_HOME/heatstream`, else "
        "`~/.cache/heatstream`; later processes load it in milliseconds. Its name holds "
        "everything the values depend on (the versions of iapws, scipy and numpy, the "
        "pressure, the temperature grid, the file format), so an upgrade writes a new file; "
        "old files, or the whole directory, can be deleted at any time. A damaged file is "
        "recomputed and replaced. When the directory cannot be created or written (a "
        "read-only home), each process computes the table in memory, as it would without a "
        f"cache. `{water.CACHE_DIR_ENV}` is read by that module, not by `Settings`: it changes "
        "no result, only whether the table is reused; in a container, point it at a writable "
        "directory that outlives the container to keep the saving across restarts."
    )
    add("")
    add("## Other options")
    add("")
    add(
        "Options that only concern one command (the worker's `--datadir`, the replay's "
        "`--in-place`, the report's `--month`, …) are listed by `heatstream COMMAND --help`. "
        "The gateway SDK's own options (frames, spool, retries) are `GatewayConfig`, documented "
        "in [gateway-sdk.md](gateway-sdk.md#configuration-reference-gatewayconfig); the "
        "reference deployment's `.env` variables are explained in `.env.example` and "
        "[deployment.md](deployment.md)."
    )
    return "\n".join(out) + "\n"


# -- command line ----------------------------------------------------------------


def repo_root() -> Path:
    """The source checkout this module lives in (docs/ sits next to heatstream/)."""
    return Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=GENERATOR, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the file differs from what the code generates",
    )
    parser.add_argument(
        "--output",
        default=None,
        help=f"file to write or check (default: {OUTPUT} in the checkout); - prints",
    )
    args = parser.parse_args(argv)
    text = render()
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.output) if args.output else repo_root() / OUTPUT
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            state = "missing" if current is None else "stale"
            print(f"{path} is {state}: run `{GENERATOR}` and commit the result", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    if not path.parent.is_dir():
        print(
            f"{path.parent} does not exist (not a source checkout?): use --output", file=sys.stderr
        )
        return 2
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
