"""Pure half of `grafana push`: the provisioning files turned into Grafana HTTP API
payloads, and the comparisons that decide whether Grafana already holds them.

Grafana adds ids, versions and defaults to what it stores and never returns secrets, so
"unchanged" means: everything we would send is already there (`contains`), secrets
excepted unless asked (`update_secrets`). No I/O here.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from heatstream.grafana.files import Json
from heatstream.grafana.queries import duration_ms

REDACTED = "[REDACTED]"
_ENV_REF = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class PushOptions:
    folder_uid: str = "heatstream"
    #: URL Grafana uses to reach InfluxDB; default: the one in the datasource file.
    datasource_url: str | None = None
    #: Values for the files' `$VARIABLES` (INFLUX_TOKEN, HEATSTREAM_ALERT_WEBHOOK_URL, ...).
    secrets: Mapping[str, SecretStr] = field(default_factory=dict)
    influx_user: str | None = None
    influx_password: SecretStr | None = None
    #: e.g. https://git.example.com/heatstream/blob/main: adds runbook_url to every rule.
    runbook_base: str | None = None
    #: Send X-Disable-Provenance: pushed alerting objects stay editable in the UI.
    editable: bool = False
    update_secrets: bool = False
    dry_run: bool = False


def fill(text: str, values: Mapping[str, SecretStr]) -> str | None:
    """`text` with `$VAR`/`${VAR}` replaced; None if a variable has no value."""
    missing = False

    def sub(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1) or match.group(2)
        if name not in values or not values[name].get_secret_value():
            missing = True
            return ""
        return values[name].get_secret_value()

    out = _ENV_REF.sub(sub, text)
    return None if missing else out


def datasource_payload(source: Json, options: PushOptions) -> Json:
    """The datasource of the provisioning file as the HTTP API takes it."""
    keys = ("name", "uid", "type", "access", "url", "database", "isDefault", "user", "basicAuth")
    payload: Json = {k: copy.deepcopy(source[k]) for k in keys if k in source}
    payload["jsonData"] = copy.deepcopy(source.get("jsonData", {}))
    if options.datasource_url:
        payload["url"] = options.datasource_url
    secure: Json = {}
    for key, raw in (source.get("secureJsonData") or {}).items():
        value = fill(str(raw), options.secrets)
        if value is not None:
            secure[key] = value
        elif key.startswith("httpHeaderValue"):
            # No token: do not send an "Authorization: Token " header with nothing in it.
            payload["jsonData"].pop(key.replace("Value", "Name"), None)
    if options.influx_user:
        payload["user"] = options.influx_user
        if options.influx_password is not None:
            secure["password"] = options.influx_password.get_secret_value()
    if secure:
        payload["secureJsonData"] = secure
    return payload


def contains(remote: Any, ours: Any) -> bool:
    """`remote` holds everything `ours` says (Grafana adds defaults and ids of its own)."""
    if isinstance(ours, dict):
        return isinstance(remote, dict) and all(
            k in remote and contains(remote[k], v) for k, v in ours.items()
        )
    if isinstance(ours, list):
        return (
            isinstance(remote, list)
            and len(remote) == len(ours)
            and all(map(contains, remote, ours))
        )
    if isinstance(ours, bool) or isinstance(remote, bool):
        return remote is ours
    if isinstance(ours, (int, float)) and isinstance(remote, (int, float)):
        return float(remote) == float(ours)
    return bool(remote == ours)


def settings_unchanged(remote: Json, ours: Json, update_secrets: bool) -> bool:
    for key, value in ours.items():
        if remote.get(key) == REDACTED and not update_secrets:
            continue
        if not contains(remote.get(key), value):
            return False
    return True


def seconds(duration: str) -> float:
    text = duration.strip() or "0s"
    total = 0
    for number, unit in re.findall(r"(\d+)(ms|s|m|h|d|w)", text):
        total += duration_ms(number + unit)
    return total / 1000


def dashboard_unchanged(remote: Json, ours: Json, folder_uid: str) -> bool:
    stored = {k: v for k, v in remote.get("dashboard", {}).items() if k not in ("id", "version")}
    wanted = {k: v for k, v in ours.items() if k not in ("id", "version")}
    return stored == wanted and remote.get("meta", {}).get("folderUid") == folder_uid


def rule_payload(group: Json, rule: Json, options: PushOptions) -> Json:
    """A rule of the provisioning file in the provisioning API's format."""
    annotations = dict(rule.get("annotations", {}))
    if rule.get("dashboardUid"):
        annotations["__dashboardUid__"] = rule["dashboardUid"]
        annotations["__panelId__"] = str(rule["panelId"])
    if options.runbook_base and "runbook" in annotations:
        annotations["runbook_url"] = options.runbook_base.rstrip("/") + "/" + annotations["runbook"]
    return {
        "uid": rule["uid"],
        "orgID": int(group.get("orgId", 1)),
        "folderUID": options.folder_uid,
        "ruleGroup": group["name"],
        "title": rule["title"],
        "condition": rule["condition"],
        "data": copy.deepcopy(rule["data"]),
        "noDataState": rule.get("noDataState", "NoData"),
        "execErrState": rule.get("execErrState", "Error"),
        "for": rule.get("for", "0s"),
        "labels": dict(rule.get("labels", {})),
        "annotations": annotations,
        "isPaused": bool(rule.get("isPaused", False)),
    }


def rule_unchanged(remote: Json, ours: Json) -> bool:
    exact = (
        "title",
        "condition",
        "folderUID",
        "ruleGroup",
        "noDataState",
        "execErrState",
        "labels",
        "annotations",
    )
    if any(
        (remote.get(k) or {} if k in ("labels", "annotations") else remote.get(k)) != ours[k]
        for k in exact
    ):
        return False
    if seconds(str(remote.get("for", "0s"))) != seconds(ours["for"]):
        return False
    return bool(remote.get("isPaused", False)) == ours["isPaused"] and contains(
        remote.get("data"), ours["data"]
    )


def contact_point_payloads(point: Json, options: PushOptions) -> tuple[list[Json], list[str]]:
    """(receivers as API contact points, names of variables with no value)."""
    out: list[Json] = []
    missing: list[str] = []
    for receiver in point.get("receivers", []):
        settings: Json = {}
        for key, raw in receiver.get("settings", {}).items():
            if not isinstance(raw, str):
                settings[key] = raw
                continue
            value = fill(raw, options.secrets)
            if value is not None:
                settings[key] = value
            elif key == "authorization_credentials":
                settings.pop("authorization_scheme", None)  # no token: no Authorization header
            else:
                missing.extend(m.group(1) or m.group(2) for m in _ENV_REF.finditer(raw))
        if (
            receiver.get("settings", {}).get("authorization_scheme")
            and "authorization_credentials" not in settings
        ):
            settings.pop("authorization_scheme", None)
        out.append(
            {
                "uid": receiver["uid"],
                "name": point["name"],
                "type": receiver["type"],
                "settings": settings,
                "disableResolveMessage": bool(receiver.get("disableResolveMessage", False)),
            }
        )
    return out, missing


def policy_payload(policy: Json) -> Json:
    return {k: copy.deepcopy(v) for k, v in policy.items() if k != "orgId"}
