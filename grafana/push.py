"""Upload the provisioning files to a running Grafana through its HTTP API, idempotently.

For a Grafana that does not mount ``grafana/provisioning`` (a managed or shared one),
``heatstream grafana push`` creates or updates, in order: the InfluxDB datasource (by
uid), the folder, the dashboards, the alert rules and their groups' interval, then the
contact point and the notification policy tree. Every object is read first and written
only if it differs from the files, so a second push makes no write at all.

Endpoints used (Grafana 11 HTTP API, through grafana-client):

- ``GET/POST /api/datasources``, ``GET/PUT /api/datasources/uid/{uid}``
- ``GET /api/folders/{uid}``, ``POST /api/folders``, ``PUT /api/folders/{uid}``
- ``GET /api/dashboards/uid/{uid}``, ``POST /api/dashboards/db``
- ``GET/POST /api/v1/provisioning/alert-rules``, ``GET/PUT /api/v1/provisioning/alert-rules/{uid}``
- ``GET/PUT /api/v1/provisioning/folder/{folderUid}/rule-groups/{group}``
- ``GET/POST /api/v1/provisioning/contact-points``, ``PUT .../contact-points/{uid}``
- ``GET/PUT /api/v1/provisioning/policies``

Secrets (InfluxDB token, webhook URL and token) come from the caller, fill the
``$VARIABLES`` of the files exactly as Grafana fills them from its environment, and are
never part of a report. Grafana never returns secrets (it answers ``secureJsonFields``
and ``[REDACTED]``), so a changed secret is only sent with ``update_secrets``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from heatstream.grafana.files import Json, Provisioning
from heatstream.grafana.payloads import (
    PushOptions,
    contact_point_payloads,
    contains,
    dashboard_unchanged,
    datasource_payload,
    policy_payload,
    rule_payload,
    rule_unchanged,
    seconds,
    settings_unchanged,
)

__all__ = ["Change", "PushError", "PushOptions", "push"]

Action = Literal["created", "updated", "unchanged", "skipped"]


class PushError(RuntimeError):
    """Grafana refused or could not be reached; the message says which object and why."""


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    action: Action
    detail: str = ""

    def line(self, dry_run: bool = False) -> str:
        verb = (
            {"created": "would create", "updated": "would update"}.get(self.action, self.action)
            if dry_run
            else self.action
        )
        return f"{verb:<13} {self.kind:<14} {self.name}" + (
            f"  ({self.detail})" if self.detail else ""
        )


# -- the shell: talking to Grafana -----------------------------------------------------------


def _missing(exc: GrafanaException) -> bool:
    return isinstance(exc, GrafanaClientError) and exc.status_code == 404


class _Pusher:
    def __init__(self, api: GrafanaApi, prov: Provisioning, options: PushOptions) -> None:
        self.api, self.prov, self.options = api, prov, options
        self.changes: list[Change] = []

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GrafanaException as exc:
            raise PushError(
                f"{what}: Grafana answered {exc.status_code or ''} {exc.message}".strip()
            ) from exc

    def get(self, what: str, fn: Callable[..., Any], *args: Any) -> Any | None:
        """GET; None when Grafana answers 404."""
        try:
            return fn(*args)
        except GrafanaException as exc:
            if _missing(exc):
                return None
            raise PushError(
                f"{what}: Grafana answered {exc.status_code or ''} {exc.message}".strip()
            ) from exc

    def write(
        self, kind: str, name: str, action: Action, fn: Callable[[], Any], detail: str = ""
    ) -> None:
        if not self.options.dry_run:
            self.call(f"{kind} {name}", fn)
        self.changes.append(Change(kind, name, action, detail))

    def same(self, kind: str, name: str, detail: str = "") -> None:
        self.changes.append(Change(kind, name, "unchanged", detail))

    # -- objects --

    def datasources(self) -> None:
        ds_api = self.api.datasource
        for source in self.prov.datasources:
            ours = datasource_payload(source, self.options)
            name = ours["uid"]
            remote = self.get(f"datasource {name}", ds_api.get_datasource_by_uid, name)
            if remote is None:
                self.write("datasource", name, "created", partial(ds_api.create_datasource, ours))
                continue
            plain = {k: v for k, v in ours.items() if k != "secureJsonData"}
            secure_known = set((remote.get("secureJsonFields") or {}).keys())
            secure_same = (
                set(ours.get("secureJsonData", {})) <= secure_known
                and not self.options.update_secrets
            )
            if contains(remote, plain) and secure_same:
                self.same("datasource", name)
            elif remote.get("readOnly"):
                raise PushError(
                    f"datasource {name} differs but is read-only in Grafana (provisioned from a "
                    "file): change grafana/provisioning/datasources there instead of pushing"
                )
            else:
                self.write(
                    "datasource",
                    name,
                    "updated",
                    partial(ds_api.update_datasource_by_uid, name, ours),
                )

    def folder(self) -> None:
        uid, title = self.options.folder_uid, self.prov.folder
        remote = self.get(f"folder {uid}", self.api.folder.get_folder, uid)
        if remote is None:
            self.write(
                "folder",
                uid,
                "created",
                lambda: self.api.folder.create_folder(title, uid=uid),
                title,
            )
        elif remote.get("title") != title:
            self.write(
                "folder",
                uid,
                "updated",
                lambda: self.api.folder.update_folder(uid, title=title, overwrite=True),
                title,
            )
        else:
            self.same("folder", uid, title)

    def dashboards(self) -> None:
        dash_api = self.api.dashboard
        for board in self.prov.dashboards.values():
            uid = board["uid"]
            remote = self.get(f"dashboard {uid}", dash_api.get_dashboard, uid)
            if remote is not None and dashboard_unchanged(remote, board, self.options.folder_uid):
                self.same("dashboard", uid, board["title"])
                continue
            if remote is not None and remote.get("meta", {}).get("provisioned"):
                raise PushError(
                    f"dashboard {uid} differs but Grafana provisions it from a file: update the "
                    "mounted grafana/dashboards instead of pushing"
                )
            body = {
                "dashboard": {k: v for k, v in board.items() if k != "id"},
                "folderUid": self.options.folder_uid,
                "overwrite": True,
                "message": "heatstream grafana push",
            }
            action: Action = "created" if remote is None else "updated"
            self.write(
                "dashboard",
                uid,
                action,
                partial(dash_api.update_dashboard, body),
                board["title"],
            )

    def rules(self) -> None:
        prov_api = self.api.alertingprovisioning
        flag = self.options.editable
        for group, rule in self.prov.rules():
            ours = rule_payload(group, rule, self.options)
            uid = ours["uid"]
            remote = self.get(f"alert rule {uid}", prov_api.get_alertrule, uid)
            if remote is None:
                self.write(
                    "alert rule",
                    uid,
                    "created",
                    partial(prov_api.create_alertrule, ours, disable_provenance=flag),
                    ours["title"],
                )
            elif rule_unchanged(remote, ours):
                self.same("alert rule", uid, ours["title"])
            else:
                self.write(
                    "alert rule",
                    uid,
                    "updated",
                    partial(prov_api.update_alertrule, uid, ours, disable_provenance=flag),
                    ours["title"],
                )
        for group in self.prov.rule_groups:
            self.group_interval(group)

    def group_interval(self, group: Json) -> None:
        prov_api = self.api.alertingprovisioning
        name, folder = group["name"], self.options.folder_uid
        interval = int(seconds(group.get("interval", "1m")))
        remote = self.get(f"rule group {name}", prov_api.get_rule_group, folder, name)
        if remote is None:
            # Only in a dry run: the rules above would have created the group.
            self.changes.append(Change("rule group", name, "created", f"every {interval} s"))
            return
        if int(remote.get("interval", 0)) == interval:
            self.same("rule group", name, f"every {interval} s")
            return
        body = {**remote, "interval": interval}
        self.write(
            "rule group",
            name,
            "updated",
            lambda: prov_api.update_rule_group(
                folder, name, body, disable_provenance=self.options.editable
            ),
            f"every {interval} s",
        )

    def contact_points(self) -> bool:
        """Push contact points; False if one was skipped for a missing secret."""
        prov_api = self.api.alertingprovisioning
        complete = True
        for point in self.prov.contact_points:
            receivers, missing = contact_point_payloads(point, self.options)
            if missing:
                complete = False
                self.changes.append(
                    Change(
                        "contact point",
                        point["name"],
                        "skipped",
                        "no value for " + ", ".join(sorted(set(missing))),
                    )
                )
                continue
            existing = (
                self.call(
                    f"contact point {point['name']}", prov_api.get_contactpoints, point["name"]
                )
                or []
            )
            by_uid = {cp.get("uid"): cp for cp in existing}
            for ours in receivers:
                remote = by_uid.get(ours["uid"])
                label = f"{ours['name']}/{ours['uid']}"
                if remote is None:
                    self.write(
                        "contact point",
                        label,
                        "created",
                        partial(
                            prov_api.create_contactpoint,
                            ours,
                            disable_provenance=self.options.editable,
                        ),
                    )
                elif all(
                    remote.get(k) == ours[k] for k in ("name", "type", "disableResolveMessage")
                ) and settings_unchanged(
                    remote.get("settings") or {}, ours["settings"], self.options.update_secrets
                ):
                    self.same("contact point", label)
                else:
                    self.write(
                        "contact point",
                        label,
                        "updated",
                        partial(
                            prov_api.update_contactpoint,
                            ours["uid"],
                            ours,
                            disable_provenance=self.options.editable,
                        ),
                    )
        return complete

    def policies(self) -> None:
        prov_api = self.api.alertingprovisioning
        for policy in self.prov.policies:
            ours = policy_payload(policy)
            remote = self.call("notification policies", prov_api.get_notification_policy_tree)
            if contains(remote, ours):
                self.same("policy tree", ours["receiver"])
            else:
                self.write(
                    "policy tree",
                    ours["receiver"],
                    "updated",
                    partial(
                        prov_api.set_notification_policy_tree,
                        ours,
                        disable_provenance=self.options.editable,
                    ),
                )

    def run(self) -> list[Change]:
        self.call("connect", self.api.health.check)
        self.datasources()
        self.folder()
        self.dashboards()
        self.rules()
        if self.contact_points():
            self.policies()
        else:
            for policy in self.prov.policies:
                self.changes.append(
                    Change(
                        "policy tree",
                        policy["receiver"],
                        "skipped",
                        "its contact point was skipped",
                    )
                )
        return self.changes


def push(api: GrafanaApi, provisioning: Provisioning, options: PushOptions) -> list[Change]:
    """Bring the Grafana behind `api` in line with `provisioning`; what changed, in order."""
    return _Pusher(api, provisioning, options).run()
