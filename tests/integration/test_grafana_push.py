"""`heatstream grafana push` against a STAND-IN for a recorded Grafana HTTP exchange.

Grafana cannot run on these machines, so `GrafanaApiStandIn` plays Grafana 11's side of
the exchange: an in-memory HTTP server whose routes, status codes and response bodies
are written from Grafana's published HTTP API reference (not captured from a live
server), including the behaviours push must cope with:

- ``GET /api/frontend/settings`` -> ``{"buildInfo": {"version": ...}}`` (grafana-client's
  health check) and ``GET /api/health``; 401 without valid credentials;
- datasources (``/api/datasources``, ``/api/datasources/uid/{uid}``): secrets are stored,
  never returned; the answer lists them in ``secureJsonFields`` and adds ``id``,
  ``orgId``, ``version``, ``readOnly``...;
- folders (``/api/folders``, ``/api/folders/{uid}``): 404 ``{"message": "folder not found"}``;
- dashboards (``GET /api/dashboards/uid/{uid}`` -> ``{"dashboard", "meta"}``,
  ``POST /api/dashboards/db``): Grafana adds ``id`` and bumps ``version`` on each save;
- alert rules (``/api/v1/provisioning/alert-rules[/{uid}]``): 404 with an empty body
  when missing; Grafana adds ``id``, ``updated``, ``provenance`` ("api", or "" with
  ``X-Disable-Provenance``), defaults ``intervalMs``/``maxDataPoints`` into every query
  model, and renders ``for`` as a duration string; a new rule group gets the default
  60 s interval (``/api/v1/provisioning/folder/{f}/rule-groups/{g}``);
- contact points (``/api/v1/provisioning/contact-points``): secure settings come back
  as ``"[REDACTED]"``; the default ``grafana-default-email`` exists;
- notification policies (``/api/v1/provisioning/policies``): PUT answers 202 and
  rejects a route to an unknown receiver with 400.

Every request is logged, so the tests assert exactly which writes a push makes.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from grafana_client import GrafanaApi
from pydantic import SecretStr

from heatstream.grafana import boards
from heatstream.grafana.files import Provisioning, load
from heatstream.grafana.push import Change, PushError, PushOptions, push

pytestmark = pytest.mark.integration

TOKEN = "glsa_test_service_account_token"
INFLUX_TOKEN = "influx-read-token-5f2c"
WEBHOOK_URL = "https://hooks.example.invalid/heatstream/T0KENINURL"
WEBHOOK_TOKEN = "webhook-bearer-9e1d"
SECURE_SETTINGS = {"webhook": {"password", "authorization_credentials"}}


def _prom_duration(text: str) -> str:
    """Grafana answers `for` as a Prometheus duration: '5m', '2m', '0s', '1h30m'."""
    seconds = 0
    number = ""
    for char in text:
        if char.isdigit():
            number += char
        else:
            seconds += int(number) * {"s": 1, "m": 60, "h": 3600}[char]
            number = ""
    if not seconds:
        return "0s"
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out


class GrafanaApiStandIn:
    """In-memory Grafana 11 HTTP API (see module docstring); `.writes` lists non-GET calls."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.datasources: dict[str, dict[str, Any]] = {}
        self.secure: dict[str, dict[str, str]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.rules: dict[str, dict[str, Any]] = {}
        self.group_intervals: dict[tuple[str, str], int] = {}
        self.contact_points: list[dict[str, Any]] = [
            {
                "uid": "default-email",
                "name": "grafana-default-email",
                "type": "email",
                "settings": {"addresses": "<example@email.com>"},
                "disableResolveMessage": False,
            }
        ]
        self.policies: dict[str, Any] = {
            "receiver": "grafana-default-email",
            "group_by": ["grafana_folder", "alertname"],
        }
        self.next_id = 1
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, _, _ in self.requests if method != "GET"]

    def __enter__(self) -> GrafanaApiStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    # -- routing ---------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        grafana = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                parsed = urlparse(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                grafana.requests.append((method, parsed.path, headers, body))
                if not grafana._authorised(headers.get("authorization", "")):
                    status, answer = 401, {"message": "Unauthorized"}
                else:
                    status, answer = grafana.route(
                        method, parsed.path, parse_qs(parsed.query), headers, body
                    )
                data = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                if answer is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

        return Handler

    @staticmethod
    def _authorised(header: str) -> bool:
        if header == f"Bearer {TOKEN}":
            return True
        if header.startswith("Basic "):
            return base64.b64decode(header[6:]).decode() == "admin:admin-password"
        return False

    def route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        provenance = "" if headers.get("x-disable-provenance") else "api"
        match method, parts:
            case "GET", ["api", "health"]:
                return 200, {"commit": "0123abc", "database": "ok", "version": "11.6.1"}
            case "GET", [
                "api",
                "frontend",
                "settings",
            ]:  # what grafana-client's health.check() reads
                return 200, {
                    "buildInfo": {
                        "version": "11.6.1",
                        "commit": "0123abc",
                        "edition": "Open Source",
                        "env": "production",
                    },
                    "unifiedAlertingEnabled": True,
                }
            case "GET", ["api", "datasources", "uid", uid]:
                if uid not in self.datasources:
                    return 404, {"message": "Data source not found"}
                return 200, self.datasources[uid]
            case "POST", ["api", "datasources"]:
                if any(d["name"] == body["name"] for d in self.datasources.values()):
                    return 409, {"message": "data source with the same name already exists"}
                stored = self._store_datasource(body, self._id(), 1)
                return 200, {
                    "datasource": stored,
                    "id": stored["id"],
                    "message": "Datasource added",
                    "name": stored["name"],
                }
            case "PUT", ["api", "datasources", "uid", uid]:
                if uid not in self.datasources:
                    return 404, {"message": "Data source not found"}
                old = self.datasources[uid]
                if old["readOnly"]:
                    return 403, {"message": "Cannot update read-only data source"}
                stored = self._store_datasource(body, old["id"], old["version"] + 1)
                return 200, {
                    "datasource": stored,
                    "id": stored["id"],
                    "message": "Datasource updated",
                    "name": stored["name"],
                }
            case "GET", ["api", "folders", uid]:
                if uid not in self.folders:
                    return 404, {"message": "folder not found", "status": "not-found"}
                return 200, self.folders[uid]
            case "POST", ["api", "folders"]:
                uid = body.get("uid") or f"f{self._id()}"
                self.folders[uid] = {
                    "id": self._id(),
                    "uid": uid,
                    "title": body["title"],
                    "url": f"/dashboards/f/{uid}/",
                    "hasAcl": False,
                    "canSave": True,
                    "canEdit": True,
                    "canAdmin": True,
                    "version": 1,
                }
                return 200, self.folders[uid]
            case "GET", ["api", "dashboards", "uid", uid]:
                if uid not in self.dashboards:
                    return 404, {"message": "Dashboard not found"}
                return 200, self.dashboards[uid]
            case "POST", ["api", "dashboards", "db"]:
                return self._save_dashboard(body)
            case "GET", ["api", "v1", "provisioning", "alert-rules", uid]:
                return (200, self.rules[uid]) if uid in self.rules else (404, None)
            case "POST", ["api", "v1", "provisioning", "alert-rules"]:
                if body["folderUID"] not in self.folders:
                    return 400, {"message": "invalid alert rule: folder does not exist"}
                if body["uid"] in self.rules:
                    return 409, {"message": "a rule with this UID already exists"}
                self.group_intervals.setdefault((body["folderUID"], body["ruleGroup"]), 60)
                return 201, self._store_rule(body, provenance)
            case "PUT", ["api", "v1", "provisioning", "alert-rules", uid]:
                if uid not in self.rules:
                    return 404, None
                return 200, self._store_rule({**body, "uid": uid}, provenance)
            case "GET", ["api", "v1", "provisioning", "folder", folder, "rule-groups", group]:
                if (folder, group) not in self.group_intervals:
                    return 404, {"message": "rule group not found"}
                rules = [
                    r
                    for r in self.rules.values()
                    if r["folderUID"] == folder and r["ruleGroup"] == group
                ]
                return 200, {
                    "title": group,
                    "folderUid": folder,
                    "interval": self.group_intervals[(folder, group)],
                    "rules": rules,
                }
            case "PUT", ["api", "v1", "provisioning", "folder", folder, "rule-groups", group]:
                self.group_intervals[(folder, group)] = int(body["interval"])
                return 200, {**body, "title": group, "folderUid": folder}
            case "GET", ["api", "v1", "provisioning", "contact-points"]:
                wanted = query.get("name", [None])[0]
                return 200, [
                    self._redacted(cp) for cp in self.contact_points if wanted in (None, cp["name"])
                ]
            case "POST", ["api", "v1", "provisioning", "contact-points"]:
                if body["type"] == "webhook" and not body["settings"].get("url"):
                    return 400, {
                        "message": "failed to validate integration: "
                        "required field 'url' is not specified"
                    }
                stored = {**copy.deepcopy(body), "provenance": provenance}
                self.contact_points.append(stored)
                return 202, self._redacted(stored)
            case "PUT", ["api", "v1", "provisioning", "contact-points", uid]:
                for index, cp in enumerate(self.contact_points):
                    if cp["uid"] == uid:
                        self.contact_points[index] = {
                            **copy.deepcopy(body),
                            "provenance": provenance,
                        }
                        return 202, {"message": "contactpoint updated"}
                return 404, {"message": "contact point not found"}
            case "GET", ["api", "v1", "provisioning", "policies"]:
                return 200, self.policies
            case "PUT", ["api", "v1", "provisioning", "policies"]:
                names = {cp["name"] for cp in self.contact_points}
                receivers = [body["receiver"], *(r.get("receiver") for r in body.get("routes", []))]
                if any(r and r not in names for r in receivers):
                    return 400, {"message": "invalid object specification: receiver does not exist"}
                self.policies = {**copy.deepcopy(body), "provenance": provenance}
                return 202, {"message": "policies updated"}
        return 404, {"message": "Not found"}

    def _store_datasource(self, body: dict[str, Any], ds_id: int, version: int) -> dict[str, Any]:
        uid = body["uid"]
        secure = {**self.secure.get(uid, {}), **(body.get("secureJsonData") or {})}
        self.secure[uid] = secure
        stored = {
            "id": ds_id,
            "uid": uid,
            "orgId": 1,
            "name": body["name"],
            "type": body["type"],
            "typeLogoUrl": "public/app/plugins/datasource/influxdb/img/influxdb_logo.svg",
            "access": body.get("access", "proxy"),
            "url": body.get("url", ""),
            "user": body.get("user", ""),
            "database": body.get("database", ""),
            "basicAuth": body.get("basicAuth", False),
            "basicAuthUser": "",
            "withCredentials": False,
            "isDefault": body.get("isDefault", False),
            "jsonData": copy.deepcopy(body.get("jsonData", {})),
            "secureJsonFields": dict.fromkeys(secure, True),
            "version": version,
            "readOnly": False,
        }
        self.datasources[uid] = stored
        return stored

    def _save_dashboard(self, body: dict[str, Any]) -> tuple[int, Any]:
        model = copy.deepcopy(body["dashboard"])
        uid = model["uid"]
        old = self.dashboards.get(uid)
        if old and not body.get("overwrite"):
            return 412, {
                "message": "The dashboard has been changed by someone else",
                "status": "version-mismatch",
            }
        if old and old["meta"]["provisioned"]:
            return 400, {"message": "Cannot save provisioned dashboard"}
        folder = body.get("folderUid") or ""
        if folder and folder not in self.folders:
            return 400, {"message": "folder not found"}
        version = old["dashboard"]["version"] + 1 if old else 1
        model["id"] = old["dashboard"]["id"] if old else self._id()
        model["version"] = version
        slug = model["title"].lower().replace(" / ", "-").replace(" ", "-")
        self.dashboards[uid] = {
            "dashboard": model,
            "meta": {
                "type": "db",
                "canSave": True,
                "canEdit": True,
                "slug": slug,
                "url": f"/d/{uid}/{slug}",
                "folderUid": folder,
                "folderTitle": self.folders.get(folder, {}).get("title", "General"),
                "provisioned": False,
                "version": version,
            },
        }
        return 200, {
            "id": model["id"],
            "uid": uid,
            "url": f"/d/{uid}/{slug}",
            "status": "success",
            "version": version,
            "slug": slug,
        }

    def _store_rule(self, body: dict[str, Any], provenance: str) -> dict[str, Any]:
        rule = copy.deepcopy(body)
        for node in rule["data"]:
            node["model"].setdefault("intervalMs", 1000)
            node["model"].setdefault("maxDataPoints", 43200)
        old = self.rules.get(rule["uid"])
        rule |= {
            "id": old["id"] if old else self._id(),
            "updated": "2026-01-01T00:00:00Z",
            "provenance": provenance,
            "for": _prom_duration(rule.get("for", "0s")),
            "orgID": 1,
            "isPaused": rule.get("isPaused", False),
        }
        self.rules[rule["uid"]] = rule
        return rule

    @staticmethod
    def _redacted(cp: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(cp)
        for key in SECURE_SETTINGS.get(out["type"], set()) & set(out["settings"]):
            out["settings"][key] = "[REDACTED]"
        return out


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def grafana() -> Iterator[GrafanaApiStandIn]:
    with GrafanaApiStandIn() as server:
        yield server


@pytest.fixture
def options() -> PushOptions:
    return PushOptions(
        secrets={
            "INFLUX_TOKEN": SecretStr(INFLUX_TOKEN),
            "HEATSTREAM_ALERT_WEBHOOK_URL": SecretStr(WEBHOOK_URL),
            "HEATSTREAM_ALERT_WEBHOOK_TOKEN": SecretStr(WEBHOOK_TOKEN),
        },
        datasource_url="http://influxdb.internal:8086",
    )


def api_for(server: GrafanaApiStandIn, credential: Any = TOKEN) -> GrafanaApi:
    return GrafanaApi.from_url(server.url, credential=credential, timeout=5)


def by_action(changes: list[Change]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for change in changes:
        out.setdefault(change.action, []).append(f"{change.kind} {change.name}")
    return out


# -- the tests --------------------------------------------------------------------------------


def test_first_push_creates_everything_and_second_push_writes_nothing(
    grafana: GrafanaApiStandIn, options: PushOptions
) -> None:
    prov = load()
    first = push(api_for(grafana), prov, options)
    created = by_action(first)["created"]
    assert created == [
        "datasource heatstream-influxdb",
        "folder heatstream",
        "dashboard heatstream-alerts",  # files in name order
        "dashboard heatstream-boiler",
        "dashboard heatstream-fleet",
        "dashboard heatstream-pipeline",
        "alert rule heatstream-leak-suspected",
        "alert rule heatstream-pump-failure",
        "alert rule heatstream-efficiency-drop",
        "alert rule heatstream-gateway-silent",
        "alert rule heatstream-dead-letter-spike",
        "contact point heatstream-ops/heatstream-ops-webhook",
    ]
    assert by_action(first)["updated"] == ["policy tree heatstream-ops"]
    assert grafana.writes == [
        ("POST", "/api/datasources"),
        ("POST", "/api/folders"),
        *[("POST", "/api/dashboards/db")] * 4,
        *[("POST", "/api/v1/provisioning/alert-rules")] * 5,
        ("POST", "/api/v1/provisioning/contact-points"),
        ("PUT", "/api/v1/provisioning/policies"),
    ]
    # What Grafana now holds is what the files say, secrets included.
    assert grafana.secure["heatstream-influxdb"] == {"httpHeaderValue1": f"Token {INFLUX_TOKEN}"}
    assert grafana.datasources["heatstream-influxdb"]["url"] == "http://influxdb.internal:8086"
    assert grafana.dashboards[boards.FLEET_UID]["meta"]["folderUid"] == "heatstream"
    leak = grafana.rules["heatstream-leak-suspected"]
    assert (
        leak["provenance"] == "api"
        and leak["folderUID"] == "heatstream"
        and leak["ruleGroup"] == "detections"
    )
    assert leak["annotations"]["__dashboardUid__"] == boards.ALERTS_UID
    webhook = next(cp for cp in grafana.contact_points if cp["uid"] == "heatstream-ops-webhook")
    assert webhook["settings"]["url"] == WEBHOOK_URL
    assert webhook["settings"]["authorization_credentials"] == WEBHOOK_TOKEN
    assert grafana.policies["receiver"] == "heatstream-ops"

    grafana.requests.clear()
    second = push(api_for(grafana), prov, options)
    assert grafana.writes == []
    assert {c.action for c in second} == {"unchanged"}
    assert len(second) == len(first)
    assert by_action(first)["unchanged"] == [
        "rule group detections",
        "rule group data",
        "rule group pipeline",  # created with the rules, at 60 s
    ]


def test_a_changed_dashboard_or_rule_is_the_only_write(
    grafana: GrafanaApiStandIn, options: PushOptions
) -> None:
    prov = load()
    push(api_for(grafana), prov, options)
    grafana.requests.clear()

    boards_changed = copy.deepcopy(prov.dashboards)
    boards_changed["pipeline-health.json"]["refresh"] = "1m"
    groups_changed = copy.deepcopy(prov.rule_groups)
    rule = next(
        r for g in groups_changed for r in g["rules"] if r["uid"] == "heatstream-dead-letter-spike"
    )
    rule["data"][2]["model"]["conditions"][0]["evaluator"]["params"] = [50]
    changed = replace(prov, dashboards=boards_changed, rule_groups=groups_changed)

    changes = push(api_for(grafana), changed, options)
    assert grafana.writes == [
        ("POST", "/api/dashboards/db"),
        ("PUT", "/api/v1/provisioning/alert-rules/heatstream-dead-letter-spike"),
    ]
    assert by_action(changes)["updated"] == [
        "dashboard heatstream-pipeline",
        "alert rule heatstream-dead-letter-spike",
    ]
    assert grafana.dashboards[boards.PIPELINE_UID]["dashboard"]["version"] == 2
    stored = grafana.rules["heatstream-dead-letter-spike"]["data"][2]["model"]["conditions"][0][
        "evaluator"
    ]
    assert stored["params"] == [50]


def test_a_rule_group_interval_is_set_when_grafana_defaulted_it(
    grafana: GrafanaApiStandIn, options: PushOptions
) -> None:
    prov = load()
    groups = copy.deepcopy(prov.rule_groups)
    groups[0]["interval"] = "30s"
    push(api_for(grafana), replace(prov, rule_groups=groups), options)
    assert (
        "PUT",
        f"/api/v1/provisioning/folder/heatstream/rule-groups/{groups[0]['name']}",
    ) in grafana.writes
    assert grafana.group_intervals[("heatstream", groups[0]["name"])] == 30
    grafana.requests.clear()
    push(api_for(grafana), replace(prov, rule_groups=groups), options)
    assert grafana.writes == []


def test_dry_run_reads_only(grafana: GrafanaApiStandIn, options: PushOptions) -> None:
    changes = push(api_for(grafana), load(), replace(options, dry_run=True))
    assert grafana.writes == []
    assert by_action(changes)["created"][:2] == [
        "datasource heatstream-influxdb",
        "folder heatstream",
    ]
    assert changes[0].line(dry_run=True).startswith("would create")


def test_without_a_webhook_url_the_contact_point_and_policy_are_skipped(
    grafana: GrafanaApiStandIn, options: PushOptions
) -> None:
    secrets = {"INFLUX_TOKEN": SecretStr(INFLUX_TOKEN)}
    changes = push(api_for(grafana), load(), replace(options, secrets=secrets))
    skipped = [c for c in changes if c.action == "skipped"]
    assert [(c.kind, c.detail) for c in skipped] == [
        ("contact point", "no value for HEATSTREAM_ALERT_WEBHOOK_URL"),
        ("policy tree", "its contact point was skipped"),
    ]
    assert not [w for w in grafana.writes if "contact-points" in w[1] or "policies" in w[1]]
    assert grafana.policies["receiver"] == "grafana-default-email"


def test_without_an_influx_token_the_datasource_sends_no_auth_header(
    grafana: GrafanaApiStandIn, options: PushOptions
) -> None:
    push(api_for(grafana), load(), replace(options, secrets={}))
    stored = grafana.datasources["heatstream-influxdb"]
    assert "httpHeaderName1" not in stored["jsonData"]
    assert stored["secureJsonFields"] == {}


def test_a_dashboard_provisioned_from_files_is_not_overwritten(
    grafana: GrafanaApiStandIn, options: PushOptions
) -> None:
    prov = load()
    push(api_for(grafana), prov, options)
    grafana.dashboards[boards.FLEET_UID]["meta"]["provisioned"] = True
    grafana.dashboards[boards.FLEET_UID]["dashboard"]["title"] = "edited elsewhere"
    with pytest.raises(PushError, match="provisions it from a file"):
        push(api_for(grafana), prov, options)


def test_basic_auth_works_and_bad_credentials_fail_clearly(
    grafana: GrafanaApiStandIn, options: PushOptions
) -> None:
    push(api_for(grafana, ("admin", "admin-password")), load(), options)
    assert grafana.writes
    with pytest.raises(PushError, match="401"):
        push(api_for(grafana, "not-the-token"), load(), options)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HEATSTREAM_", "GRAFANA_", "INFLUX_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "heatstream", "grafana", "push", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_cli_push_is_idempotent_and_never_prints_secrets(grafana: GrafanaApiStandIn) -> None:
    env = {
        "GRAFANA_TOKEN": TOKEN,
        "INFLUX_TOKEN": INFLUX_TOKEN,
        "HEATSTREAM_ALERT_WEBHOOK_URL": WEBHOOK_URL,
        "HEATSTREAM_ALERT_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
    }
    first = _cli("--url", grafana.url, env=env)
    assert first.returncode == 0, first.stderr
    assert "created       dashboard      heatstream-fleet" in first.stdout
    assert first.stdout.rstrip().endswith("12 created, 1 updated, 3 unchanged")
    second = _cli(
        "--url",
        grafana.url,
        "--runbook-base",
        "https://git.example.invalid/heatstream/blob/main",
        env=env,
    )
    assert second.returncode == 0, second.stderr
    # --runbook-base adds a runbook_url to every rule: those five are the only writes.
    assert second.stdout.rstrip().endswith("5 updated, 11 unchanged")
    rule = grafana.rules["heatstream-leak-suspected"]
    assert rule["annotations"]["runbook_url"] == (
        "https://git.example.invalid/heatstream/blob/main/docs/ops.md#leak-suspected"
    )
    bad = _cli("--url", grafana.url, "--dry-run", env={**env, "GRAFANA_TOKEN": "wrong-token"})
    assert bad.returncode == 1 and "Unauthorized" in bad.stderr
    for run in (first, second, bad):
        for secret in (TOKEN, INFLUX_TOKEN, WEBHOOK_URL, WEBHOOK_TOKEN, "wrong-token"):
            assert secret not in run.stdout + run.stderr


def test_cli_reads_the_influx_token_from_heatstream_settings(grafana: GrafanaApiStandIn) -> None:
    env = {"GRAFANA_TOKEN": TOKEN, "HEATSTREAM_INFLUXDB__TOKEN": "from-settings-token"}
    result = _cli("--url", grafana.url, env=env)
    assert result.returncode == 0, result.stderr
    assert "skipped       contact point  heatstream-ops" in result.stdout
    assert grafana.secure["heatstream-influxdb"] == {
        "httpHeaderValue1": "Token from-settings-token"
    }


def test_the_stand_in_answers_like_grafana_to_the_raw_client(grafana: GrafanaApiStandIn) -> None:
    """Sanity of the stand-in itself: grafana-client's own calls get Grafana's shapes."""
    api = api_for(grafana)
    assert api.health.check()["version"] == "11.6.1"
    assert (
        api.alertingprovisioning.get_notification_policy_tree()["receiver"]
        == "grafana-default-email"
    )
    assert [cp["name"] for cp in api.alertingprovisioning.get_contactpoints()] == [
        "grafana-default-email"
    ]
    from grafana_client.client import GrafanaClientError

    with pytest.raises(GrafanaClientError) as missing:
        api.alertingprovisioning.get_alertrule("nope")
    assert missing.value.status_code == 404


def test_provisioning_is_what_push_uploads() -> None:
    prov: Provisioning = load()
    assert {b["uid"] for b in prov.dashboards.values()} == {
        boards.FLEET_UID,
        boards.BOILER_UID,
        boards.ALERTS_UID,
        boards.PIPELINE_UID,
    }
    assert [d["uid"] for d in prov.datasources] == ["heatstream-influxdb"]
    assert prov.folder == "heatstream"
