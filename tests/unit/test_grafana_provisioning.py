"""Every file under grafana/ is a valid Grafana object and keeps heatstream's contracts.

Grafana cannot run here, so these checks stand in for "Grafana loads it": the
dashboard JSON model (schemaVersion 39), the alerting file-provisioning format
(apiVersion 1: groups/rules, contactPoints, policies) and the datasource file, checked
by structure and cross-reference: panel ids and grid, datasource uids, raw InfluxQL
targets, template variables, rule refIds and conditions, uids, runbook anchors in
docs/ops.md, and measurement/tag/field names against docs/measurements.md.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from heatstream.grafana import boards, generate, queries
from heatstream.grafana.files import Json, load
from heatstream.grafana.panels import DATASOURCE, DATASOURCE_UID, GRID_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
OPS_DOC = ROOT / "docs" / "ops.md"
MEASUREMENTS_DOC = ROOT / "docs" / "measurements.md"
PROV = load()
UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
QUERY_PANELS = {"timeseries", "stat", "table", "barchart", "state-timeline"}
KNOWN_PANELS = QUERY_PANELS | {"alertlist", "text", "row"}
# Grafana unit ids used here (from Grafana's unit catalogue).
UNITS = {
    "kwatth",
    "kwatt",
    "percentunit",
    "percent",
    "masskg",
    "celsius",
    "flowlpm",
    "pressurebar",
    "none",
    "short",
    "ms",
    "cps",
    "dateTimeAsIso",
}
REDUCERS = {"last", "mean", "min", "max", "sum", "count"}
EVALUATORS = {"gt", "lt", "within_range", "outside_range"}


def _query_panels(board: Json) -> list[Json]:
    return [p for p in board["panels"] if p["type"] in QUERY_PANELS]


def _defined_variables(board: Json) -> set[str]:
    return {v["name"] for v in board["templating"]["list"]} | queries.BUILTINS


def _time_bounded(query: str) -> bool:
    return "$timeFilter" in query or re.search(r"time > now\(\) - \d+[smhdw]", query) is not None


@pytest.fixture(params=sorted(PROV.dashboards), ids=lambda name: name)
def board(request: pytest.FixtureRequest) -> Json:
    return PROV.dashboards[request.param]


# -- dashboards --------------------------------------------------------------------------


def test_generated_files_are_up_to_date() -> None:
    assert generate.stale() == [], (
        "run `python -m heatstream.grafana.generate` and commit the result"
    )


def test_dashboard_model_has_what_grafana_requires(board: Json) -> None:
    for key in (
        "uid",
        "title",
        "schemaVersion",
        "panels",
        "templating",
        "annotations",
        "time",
        "tags",
    ):
        assert key in board, key
    assert UID.match(board["uid"])
    assert board["schemaVersion"] >= 36 and isinstance(board["schemaVersion"], int)
    assert board["editable"] is False, "dashboards are code: edit the Python, not the UI"
    assert "heatstream" in board["tags"]
    assert board["time"]["to"] == "now"
    assert "id" not in board or board["id"] is None


def test_dashboard_uids_and_titles_are_unique() -> None:
    uids = [b["uid"] for b in PROV.dashboards.values()]
    titles = [b["title"] for b in PROV.dashboards.values()]
    assert len(set(uids)) == len(uids) == 4
    assert len(set(titles)) == len(titles)


def test_panels_have_unique_ids_titles_and_fit_the_grid_without_overlap(board: Json) -> None:
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids)
    titles = [p["title"] for p in panels]
    assert len(set(titles)) == len(titles), "alert rules link to panels by title"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        assert panel["type"] in KNOWN_PANELS, panel["type"]
        assert panel["title"] and panel.get("description"), panel["title"]
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= grid.keys()
        assert all(isinstance(grid[k], int) for k in "xywh")
        assert grid["x"] >= 0 and grid["y"] >= 0 and grid["w"] >= 1 and grid["h"] >= 1
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_every_target_is_a_raw_influxql_query_on_the_heatstream_datasource(board: Json) -> None:
    defined = _defined_variables(board)
    for panel in _query_panels(board):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        refs = [t["refId"] for t in targets]
        assert len(set(refs)) == len(refs)
        for target in targets:
            where = f"{board['uid']}/{panel['title']}/{target['refId']}"
            assert target["datasource"]["uid"] == DATASOURCE_UID, where
            assert target["rawQuery"] is True, where
            assert target["resultFormat"] in {"time_series", "table"}, where
            query = target["query"]
            assert query.startswith("SELECT "), where
            assert _time_bounded(query), f"{where}: no $timeFilter nor explicit time bound"
            undefined = queries.variables_in(query) - defined
            assert not undefined, f"{where}: undefined variables {undefined}"
            if panel["type"] == "timeseries":
                assert "GROUP BY time(" in query, f"{where}: a time series needs GROUP BY time()"


def test_panels_declare_known_units(board: Json) -> None:
    for panel in _query_panels(board):
        defaults = panel["fieldConfig"]["defaults"]
        if panel["type"] != "table":
            assert defaults["unit"] in UNITS, (panel["title"], defaults["unit"])
        for override in panel["fieldConfig"]["overrides"]:
            for prop in override["properties"]:
                if prop["id"] == "unit":
                    assert prop["value"] in UNITS, (panel["title"], prop["value"])


def test_interval_is_never_finer_than_the_data(board: Json) -> None:
    """$__interval below a window's length would show empty buckets between windows."""
    finest = {"'1m'": 60_000, "'1h'": 3_600_000}
    for panel in _query_panels(board):
        for target in panel["targets"]:
            query = target["query"]
            if "$__interval" not in query:
                continue
            floor = 10_000 if '"telemetry"' in query else 60_000
            for literal, ms in finest.items():
                if f'"resolution" = {literal}' in query:
                    floor = ms
            assert "interval" in panel, panel["title"]
            assert queries.duration_ms(panel["interval"]) >= floor, panel["title"]


def test_heat_window_queries_always_pick_one_resolution() -> None:
    for where, query in queries.all_queries(PROV):
        if '"heat_window"' in query and not query.startswith("SHOW"):
            assert query.count('"resolution" = ') >= 1, f"{where}: 1m+1h+1d would triple-count"


def test_template_variables_are_influxql_tag_queries(board: Json) -> None:
    seen: set[str] = set(queries.BUILTINS)
    for var in board["templating"]["list"]:
        assert var["type"] == "query" and UID.match(var["name"])
        assert var["datasource"] == DATASOURCE
        assert var["query"].startswith("SHOW TAG VALUES FROM ")
        assert queries.variables_in(var["query"]) <= seen, f"{var['name']} uses a later variable"
        seen.add(var["name"])
    used = set().union(*(queries.variables_in(q) for _, q in queries.all_queries(PROV) if q))
    assert {v["name"] for v in board["templating"]["list"]} <= used, "every variable is used"


def test_annotations_read_influxdb_with_a_time_filter(board: Json) -> None:
    annotations = board["annotations"]["list"]
    assert annotations[0]["builtIn"] == 1
    for ann in annotations[1:]:
        assert ann["datasource"] == DATASOURCE
        assert ann["target"]["query"] == ann["query"] and ann["target"]["rawQuery"] is True
        assert "$timeFilter" in ann["query"]
        assert queries.variables_in(ann["query"]) <= _defined_variables(board)
        assert ann["textColumn"] and ann["textColumn"] in ann["query"]


def test_data_links_point_at_existing_dashboards_and_variables(board: Json) -> None:
    by_uid = {b["uid"]: b for b in PROV.dashboards.values()}
    for panel in board["panels"]:
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override["properties"]:
                for link in prop["value"] if prop["id"] == "links" else []:
                    uid = re.match(r"^/d/([^/]+)/", link["url"]).group(1)  # type: ignore[union-attr]
                    assert uid in by_uid, link["url"]
                    wanted = set(re.findall(r"var-(\w+)=", link["url"]))
                    assert wanted <= {v["name"] for v in by_uid[uid]["templating"]["list"]}


def test_requested_dashboards_and_panels_exist() -> None:
    titles = {b["uid"]: {p["title"] for p in b["panels"]} for b in PROV.dashboards.values()}
    assert {
        "Heat delivered by site and day",
        "ERF by site and day",
        "CO2 avoided by site and day",
        "Firing alerts",
    } <= titles[boards.FLEET_UID]
    assert {
        "Supply and return temperature",
        "Flow",
        "Loop pressure",
        "IT power against thermal power",
        "Energy Reuse Factor over time",
    } <= titles[boards.BOILER_UID]
    assert {v["name"] for v in PROV.dashboard(boards.BOILER_UID)["templating"]["list"]} == {
        "site",
        "boiler",
    }
    assert {a["name"] for a in PROV.dashboard(boards.BOILER_UID)["annotations"]["list"]} >= {
        "Anomalies",
        "Leaks",
    }
    assert {
        "Firing alerts",
        "Active leaks",
        "Leak history with evidence",
        "Anomaly history with evidence",
    } <= titles[boards.ALERTS_UID]
    assert {
        "Consumer lag",
        "Dead letters by reason",
        "Late events by reason",
        "Sink write latency",
        "Sink retries and rejected points",
    } <= titles[boards.PIPELINE_UID]


# -- queries against the documented measurements ---------------------------------------------


def _backticked(cell: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", cell))


def documented_schema() -> dict[str, tuple[set[str], set[str]]]:
    """measurement -> (tags, fields), from the tables of docs/measurements.md: a `###`
    section per measurement (or two sharing a table) whose rows `| tag | ...` and
    `| field | ...` name them in the second column."""
    schema: dict[str, tuple[set[str], set[str]]] = {}
    current: list[str] = []
    for row in MEASUREMENTS_DOC.read_text().splitlines():
        if row.startswith("## "):
            current = []
        elif row.startswith("### "):
            current = sorted(_backticked(row.split(":")[0]))
            for name in current:
                schema[name] = (set(), set())
        elif current and row.startswith(("| tag |", "| field |")):
            kind, names = (c.strip() for c in row.strip("|").split("|")[:2])
            for name in current:
                schema[name][0 if kind == "tag" else 1].update(_backticked(names))
    return schema


def test_queries_use_only_documented_measurements_tags_and_fields() -> None:
    schema = documented_schema()
    assert {
        "heat_window",
        "anomaly",
        "leak",
        "data_quality",
        "telemetry",
        "dead_letter",
        "late_event",
        "pipeline_health",
    } <= schema.keys()
    for where, query in queries.all_queries(PROV):
        measurements = set(re.findall(r'FROM ((?:"\w+"(?:, )?)+)', query))
        names = {m for group in measurements for m in re.findall(r'"(\w+)"', group)}
        assert names and names <= schema.keys(), f"{where}: unknown measurement in {names}"
        known = set(names)
        for m in names:
            known |= schema[m][0] | schema[m][1]
        aliases = set(re.findall(r'AS "(\w+)"', query))
        for ident in set(re.findall(r'"(\w+)"', query)) - aliases - known:
            prefixed = any(
                f.endswith(">") and ident.startswith(f.split("<")[0])
                for m in names
                for f in schema[m][1]
            )
            assert prefixed, f"{where}: {ident!r} is not a documented tag or field of {names}"
        for tag in re.findall(r"GROUP BY (.*?)(?: fill| ORDER|\)|$)", query):
            for name in re.findall(r'"(\w+)"', tag):
                assert any(name in schema[m][0] for m in names), (
                    f"{where}: GROUP BY non-tag {name!r}"
                )


# -- alert rules -------------------------------------------------------------------------------


def _rules() -> list[tuple[Json, Json]]:
    return PROV.rules()


def test_rules_file_is_alerting_provisioning_v1() -> None:
    document = yaml.safe_load((ROOT / "grafana" / generate.RULES_FILE).read_text())
    assert document["apiVersion"] == 1
    names = [g["name"] for g in document["groups"]]
    assert len(set(names)) == len(names)
    for group in document["groups"]:
        assert group["orgId"] == 1 and group["rules"]
        assert group["folder"] == PROV.folder, "rules live next to the dashboards"
        assert queries.duration_ms(group["interval"]) >= 10_000


def test_alert_rules_are_well_formed() -> None:
    uids = [r["uid"] for _, r in _rules()]
    assert len(set(uids)) == len(uids) == 5
    assert {r["title"] for _, r in _rules()} == {
        "Leak suspected",
        "Pump failure",
        "Efficiency drop",
        "Gateway silent",
        "Dead-letter spike",
    }
    for _, rule in _rules():
        uid = rule["uid"]
        assert UID.match(uid), uid
        refs = [n["refId"] for n in rule["data"]]
        assert len(set(refs)) == len(refs), uid
        assert rule["condition"] in refs, uid
        seen: set[str] = set()
        for node in rule["data"]:
            model = node["model"]
            assert model["refId"] == node["refId"], uid
            if node["datasourceUid"] == DATASOURCE_UID:
                assert model["datasource"] == DATASOURCE and model["rawQuery"] is True, uid
                assert "$timeFilter" in model["query"], uid
                assert queries.variables_in(model["query"]) <= {"timeFilter"}, (
                    "no dashboard variables in rules"
                )
                span = node["relativeTimeRange"]
                assert span["from"] > span["to"] >= 0, uid
            else:
                assert node["datasourceUid"] == "__expr__", uid
                assert model["datasource"] == {"type": "__expr__", "uid": "__expr__"}
                assert model["expression"] in seen, (
                    f"{uid}: {node['refId']} reads a later or missing refId"
                )
                if model["type"] == "reduce":
                    assert model["reducer"] in REDUCERS
                elif model["type"] == "threshold":
                    (condition,) = model["conditions"]
                    assert condition["evaluator"]["type"] in EVALUATORS
                    assert all(
                        isinstance(p, (int, float)) for p in condition["evaluator"]["params"]
                    )
                else:
                    pytest.fail(f"{uid}: expression type {model['type']}")
            seen.add(node["refId"])
        assert rule["noDataState"] in {"NoData", "Alerting", "OK", "KeepLast"}
        assert rule["execErrState"] in {"Error", "Alerting", "OK", "KeepLast"}
        queries.duration_ms(rule["for"])
        assert rule["labels"]["app"] == "heatstream"
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert not any("$" in v for v in rule["labels"].values()), (
            "Grafana interpolates labels from env"
        )
        assert {"summary", "description", "runbook"} <= rule["annotations"].keys()


def test_rules_link_to_existing_dashboard_panels() -> None:
    for _, rule in _rules():
        board = PROV.dashboard(rule["dashboardUid"])
        assert rule["panelId"] in {p["id"] for p in board["panels"]}, rule["uid"]


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors."""
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_every_rule_has_a_runbook_in_ops_md() -> None:
    anchors = _anchors(OPS_DOC.read_text())
    for _, rule in _rules():
        path, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert path == "docs/ops.md" and anchor in anchors, (rule["uid"], anchor)


def test_ops_md_describes_every_dashboard_and_rule() -> None:
    text = OPS_DOC.read_text()
    for model in PROV.dashboards.values():
        assert model["title"].split(" / ")[1] in text, model["title"]
    for _, rule in _rules():
        assert rule["title"] in text and rule["uid"] in text


# -- contact point, policy, datasource --------------------------------------------------------


def _env_refs(node: Any) -> set[str]:
    if isinstance(node, str):
        return {a or b for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)", node)}
    if isinstance(node, dict):
        return set().union(*(_env_refs(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_env_refs(v) for v in node)) if node else set()
    return set()


def test_contact_point_takes_its_secrets_from_the_environment() -> None:
    (point,) = PROV.contact_points
    (receiver,) = point["receivers"]
    assert UID.match(receiver["uid"]) and receiver["type"] == "webhook"
    settings = receiver["settings"]
    assert settings["url"] == "$HEATSTREAM_ALERT_WEBHOOK_URL"
    assert settings["authorization_credentials"] == "$HEATSTREAM_ALERT_WEBHOOK_TOKEN"
    assert not re.search(r"https?://", yaml.safe_dump(point)), "no literal endpoint in the file"


def test_policy_routes_to_the_contact_point_on_labels_the_rules_set() -> None:
    names = {p["name"] for p in PROV.contact_points}
    (policy,) = PROV.policies
    assert policy["receiver"] in names
    rule_labels = {(k, v) for _, r in _rules() for k, v in r["labels"].items()}
    for route in policy["routes"]:
        assert route["receiver"] in names
        for key, op, value in route["object_matchers"]:
            assert op in {"=", "!=", "=~", "!~"}
            assert (key, value) in rule_labels, f"route on {key}={value} matches no rule"
    for duration in ("group_wait", "group_interval", "repeat_interval"):
        queries.duration_ms(policy[duration])


def test_datasource_keeps_its_uid_and_influxql() -> None:
    (source,) = PROV.datasources
    assert source["uid"] == DATASOURCE_UID and source["jsonData"]["version"] == "InfluxQL"


def test_package_data_ships_every_provisioning_file() -> None:
    """`grafana push` reads the files from the installed package: a wheel must carry them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"]["heatstream.grafana"] == "grafana"
    patterns = config["package-data"]["heatstream.grafana"]
    base = ROOT / "grafana"
    shipped = [p for p in base.rglob("*") if p.suffix in {".json", ".yaml", ".yml"}]
    assert len(shipped) >= 8
    for path in shipped:
        rel = path.relative_to(base).as_posix()
        assert any(fnmatch.fnmatch(rel, pattern) for pattern in patterns), rel
    for init in base.rglob("__init__.py"):
        package = ".".join(["heatstream", *init.parent.relative_to(ROOT).parts])
        assert package in config["packages"], (
            f"{package} is missing from [tool.setuptools] packages"
        )


def test_compose_gives_grafana_every_variable_the_provisioning_files_use() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["services"]["grafana"]["environment"]
    files = [*(ROOT / "grafana" / "provisioning").rglob("*.yaml")]
    used = set().union(
        *(_env_refs(yaml.safe_load(f.read_text())) for f in files if "rules" not in f.name)
    )
    assert used <= set(env), f"not set for grafana: {sorted(used - set(env))}"


def test_image_build_context_has_every_package_folder() -> None:
    ignored = {
        line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
    }
    pyproject = (ROOT / "pyproject.toml").read_text()
    folders = set(re.findall(r'^"heatstream[.\w]*" = "(\w+)"$', pyproject, re.MULTILINE))
    assert "grafana" in folders
    assert not folders & ignored, f"excluded from the image build: {sorted(folders & ignored)}"
