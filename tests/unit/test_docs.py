"""The documentation stays true to the code.

* docs/configuration.md is what `python -m heatstream.docs_gen` generates from the
  settings and the sink options (regenerate it when they change);
* every relative link in README.md and docs/*.md points to a file that exists, and
  every `#anchor` to a heading of its target;
* every `heatstream <command> [<subcommand>] [--option]` written in code in the docs
  is a real command (as `heatstream --help` lists it) with that option.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from heatstream import docs_gen
from heatstream.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]

FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\".*\")?\s*$")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
#: Fenced blocks in these languages are not shell: `heatstream` there is a name, not a command.
NOT_SHELL = {"python", "py", "toml", "sql", "json", "yaml", "yml", "ini", "jsonl"}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# -- reading Markdown -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """A line of prose (code spans blanked) or a fenced code block."""

    line: int
    text: str
    lang: str | None  # None: prose


def blocks(text: str) -> Iterator[Block]:
    fence: tuple[str, str, int, list[str]] | None = None  # marker, lang, first line, lines
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is not None:
            if (
                m
                and m.group(2).startswith(fence[0][0])
                and len(m.group(2)) >= len(fence[0])
                and not m.group(3)
            ):
                yield Block(fence[2], "\n".join(fence[3]), fence[1])
                fence = None
            else:
                fence[3].append(line)
            continue
        if m:
            fence = (m.group(2), m.group(3).lower(), n + 1, [])
            continue
        yield Block(n, line, None)
    assert fence is None, f"unclosed code fence opened at line {fence[2] - 1}"


def prose_without_code(line: str) -> str:
    return INLINE_CODE.sub(lambda m: "code", line)


def slugify(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for block in blocks(path.read_text(encoding="utf-8")):
        if block.lang is not None:
            continue
        m = HEADING.match(block.text)
        if not m:
            continue
        slug = slugify(m.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def links(path: Path) -> Iterator[tuple[int, str]]:
    for block in blocks(path.read_text(encoding="utf-8")):
        if block.lang is not None:
            continue
        line = prose_without_code(block.text)
        for m in LINK.finditer(line):
            yield block.line, m.group(1)
        ref = REFERENCE_LINK.match(line)
        if ref:
            yield block.line, ref.group(1)


# -- (a) the generated configuration reference ---------------------------------------


def test_configuration_reference_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    status = docs_gen.main(["--check"])
    assert status == 0, (
        "docs/configuration.md is stale: run `python -m heatstream.docs_gen` "
        f"({capsys.readouterr().err.strip()})"
    )


def test_every_setting_and_sink_option_is_documented() -> None:
    fields = [*docs_gen.settings_fields(), *(doc for doc, _ in docs_gen.sink_fields())]
    undocumented = [f.path for f in fields if not f.description]
    assert not undocumented, (
        f"give these fields a Field(description=...) in the code: {undocumented}"
    )
    by_path = {f.path: f for f in fields}
    for path in docs_gen.FALLBACK_DESCRIPTIONS:
        assert path in by_path, f"FALLBACK_DESCRIPTIONS names {path!r}, which is no field"
    code_described = {
        **{f"{name}": info for name, info in Settings.model_fields.items()},
        **{
            f"{section}.{name}": info
            for section, sinfo in Settings.model_fields.items()
            if isinstance(sinfo.annotation, type) and hasattr(sinfo.annotation, "model_fields")
            for name, info in sinfo.annotation.model_fields.items()
        },
        **{f"sink.{name}": info for name, info in docs_gen.SinkOptions.model_fields.items()},
    }
    redundant = [p for p in docs_gen.FALLBACK_DESCRIPTIONS if code_described[p].description]
    assert not redundant, f"the code now describes {redundant}: delete their fallbacks in docs_gen"


def test_secrets_are_marked_and_env_names_follow_the_settings_rules() -> None:
    by_path = {f.path: f for f in docs_gen.settings_fields()}
    secrets = {p for p, f in by_path.items() if f.secret}
    assert secrets == {"kafka.sasl_password", "influxdb.password", "influxdb.token"}
    assert all("**secret**" in by_path[p].type for p in secrets)
    assert by_path["kafka.bootstrap"].env == "HEATSTREAM_KAFKA__BOOTSTRAP"
    assert by_path["app_id"].env == "HEATSTREAM_APP_ID"


def test_the_sink_options_map_onto_the_cli() -> None:
    mapping, others = docs_gen.sink_cli_mapping()
    assert mapping["batch_size"].flag == "--batch-size"
    assert mapping["session_timeout_s"].default_from == "streams.session_timeout_s"
    assert [p.opts[0] for p in others] == ["--loglevel"]


def test_each_documented_environment_variable_sets_its_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("HEATSTREAM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HEATSTREAM_KAFKA__PARTITIONS", "3")
    monkeypatch.setenv("HEATSTREAM_STREAMS__ALLOWED_LATENESS_S", "45")
    monkeypatch.setenv("HEATSTREAM_LOG_LEVEL", "DEBUG")
    settings = load_settings()
    assert (settings.kafka.partitions, settings.streams.allowed_lateness_s) == (3, 45)
    assert settings.log_level == "DEBUG"


def test_the_example_file_in_the_reference_loads_as_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("HEATSTREAM_"):
            monkeypatch.delenv(name)
    text = (ROOT / docs_gen.OUTPUT).read_text(encoding="utf-8")
    example = next(b.text for b in blocks(text) if b.lang == "toml")
    path = tmp_path / "heatstream.toml"
    path.write_text(example, encoding="utf-8")
    assert load_settings(path) == Settings()


# -- (b) links -----------------------------------------------------------------------


def broken_links(page: Path) -> list[str]:
    broken: list[str] = []
    for line, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        where = f"{_rel(page) if page.is_relative_to(ROOT) else page.name}:{line}"
        if not dest.exists():
            broken.append(f"{where}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{where}: {target} (no heading #{anchor} in {dest.name})")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_point_to_existing_files_and_headings(page: Path) -> None:
    broken = broken_links(page)
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_checker_finds_broken_links_and_anchors(tmp_path: Path) -> None:
    assert slugify("Configuration reference (`GatewayConfig`)") == (
        "configuration-reference-gatewayconfig"
    )
    assert slugify("`heat_window`: heat recovery per boiler and window") == (
        "heat_window-heat-recovery-per-boiler-and-window"
    )
    (tmp_path / "other.md").write_text("# Other page\n\n## A section\n\n## A section\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md#a-section) [second](other.md#a-section-1) [self](#page)\n"
        "[gone](missing.md) [no anchor](other.md#nowhere) [web](https://example.com/x.md)\n"
        "`[in code](missing-too.md)`\n\n"
        "```md\n[in a block](missing-three.md)\n```\n"
        "[ref]: ./missing-four.md\n"
    )
    assert broken_links(page) == [
        "page.md:4: missing.md (no such file)",
        "page.md:4: other.md#nowhere (no heading #nowhere in other.md)",
        "page.md:10: ./missing-four.md (no such file)",
    ]


# -- (c) commands --------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli() -> Any:
    """The click group of `heatstream` (typer vendors its own click: duck-typed here)."""
    from heatstream import cli as heatstream_cli

    if not heatstream_cli.app.registered_commands:
        heatstream_cli._register()
    group = typer.main.get_command(heatstream_cli.app)
    assert _is_group(group)
    return group


def _is_group(command: Any) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def _help_commands(args: list[str]) -> set[str]:
    """The command names a `--help` screen lists under Commands."""
    from heatstream import cli as heatstream_cli

    result = CliRunner().invoke(heatstream_cli.app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    names: set[str] = set()
    in_commands = False
    for line in result.output.splitlines():
        if "Commands" in line and line.lstrip().startswith(("╭", "+", "Commands")):
            in_commands = True
            continue
        if in_commands:
            m = re.match(r"^\s*[│|]?\s{1,2}([a-z][a-z-]*)\s{2,}\S", line)
            if m:
                names.add(m.group(1))
            elif line.lstrip().startswith(("╰", "+-")):
                in_commands = False
    return names


@dataclass(frozen=True, slots=True)
class Mention:
    page: str
    line: int
    text: str
    tokens: tuple[str, ...]  # after "heatstream", up to a shell separator


def _code_snippets(page: Path) -> Iterator[tuple[int, str]]:
    for block in blocks(page.read_text(encoding="utf-8")):
        if block.lang is None:
            for m in INLINE_CODE.finditer(block.text):
                yield block.line, m.group(2)
        elif block.lang not in NOT_SHELL:
            logical = block.text.replace("\\\n", " ")
            for offset, line in enumerate(logical.splitlines()):
                yield block.line + offset, line


def shell_words(snippet: str) -> list[str]:
    """Words and separators of a shell line; `$(...)` opens a command of its own."""
    snippet = re.sub(r"\"?\$\(([^)]*)\)\"?", r" ; \1 ; ", snippet)
    lexer = shlex.shlex(snippet, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:  # unbalanced quotes in a fragment: split on blanks
        return snippet.split()


def _is_separator(word: str) -> bool:
    return word == "$" or (bool(word) and all(c in "|&;()<>" for c in word))


def mentions_in(snippet: str) -> Iterator[tuple[str, ...]]:
    """The words after each `heatstream` in command position, up to a shell separator
    (so `influx -database heatstream` or `mypy heatstream schemas` are not commands)."""
    words = shell_words(snippet)
    command_position = True
    for i, word in enumerate(words):
        if _is_separator(word):
            command_position = True
            continue
        if command_position and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word):
            continue  # NAME=value before the command
        if command_position and (word == "heatstream" or word.endswith("/heatstream")):
            tokens: list[str] = []
            for following in words[i + 1 :]:
                if _is_separator(following):
                    break
                tokens.append(following.strip("[]"))
            yield tuple(tokens)
        command_position = False


def mentions(page: Path) -> Iterator[Mention]:
    for line, snippet in _code_snippets(page):
        for tokens in mentions_in(snippet):
            yield Mention(_rel(page), line, snippet.strip(), tokens)


def _option_names(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names


def check_mention(group: Any, mention: Mention) -> str | None:
    """None when the mention names a real command with real options, else the problem."""
    tokens = list(mention.tokens)
    root_options = _option_names(group)
    while tokens and tokens[0].startswith("-"):  # options of the root: --config FILE
        option = tokens.pop(0)
        if option.split("=")[0] not in root_options:
            return f"`heatstream {option}` is no option of heatstream"
        if option in ("--config", "-c") and tokens:
            tokens.pop(0)
    if not tokens or not re.fullmatch(r"[a-z][a-z-]*", tokens[0]):
        return None  # `heatstream --help`, `heatstream COMMAND`: nothing to check
    path = [tokens.pop(0)]
    command: Any = group.commands.get(path[0])
    if command is None:
        return f"`heatstream {path[0]}` is no command (heatstream --help)"
    if _is_group(command):
        if tokens and re.fullmatch(r"[a-z][a-z-]*", tokens[0]):
            path.append(tokens.pop(0))
            sub = command.commands.get(path[-1])
            if sub is None:
                return f"`heatstream {' '.join(path)}` is no command (heatstream {path[0]} --help)"
            command = sub
        else:
            return None
    options = _option_names(command)
    for token in tokens:
        if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", token) and token.split("=")[0] not in options:
            return f"`heatstream {' '.join(path)}` has no option {token.split('=')[0]}"
    return None


def all_mentions() -> list[Mention]:
    return [m for page in PAGES for m in mentions(page)]


def test_the_command_list_is_what_heatstream_help_shows(cli: Any) -> None:
    assert _help_commands([]) == set(cli.commands)
    for name, command in cli.commands.items():
        if _is_group(command):
            assert _help_commands([name]) == set(command.commands), name


def test_commands_in_the_docs_exist(cli: Any) -> None:
    found = all_mentions()
    assert len(found) > 20, "the scanner found almost no `heatstream ...` in the docs"
    problems = [
        f"{m.page}:{m.line}: {problem}\n    {m.text}"
        for m in found
        if (problem := check_mention(cli, m)) is not None
    ]
    assert not problems, "commands in the docs that heatstream does not have:\n" + "\n".join(
        problems
    )


def test_the_command_checker_catches_what_it_should(cli: Any) -> None:
    def check(text: str) -> str | None:
        (tokens,) = list(mentions_in(text))
        return check_mention(cli, Mention("x.md", 1, text, tokens))

    assert check("heatstream stack down --purge") is None
    assert check("heatstream --config prod.toml worker --datadir /var/lib/w1") is None
    assert check("heatstream replay --no-topics --in-place") is None
    assert check("heatstream COMMAND --help") is None
    assert check("heatstream stack purge") is not None
    assert check("heatstream workers") is not None
    assert check("heatstream sink --batch 10") is not None
    assert check("HEATSTREAM_KAFKA__BOOTSTRAP=k:9092 .venv/bin/heatstream topics create") is None
    assert check('eval "$(heatstream stack env)"') is None
    assert check('eval "$(heatstream stack environment)"') is not None
    assert check("kcat -b k:9092 -L && heatstream topics make") is not None
    assert list(mentions_in("influx -database heatstream -precision rfc3339")) == []
    assert list(mentions_in("mypy heatstream schemas streams")) == []
