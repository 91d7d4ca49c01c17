"""Find and read the provisioning files shipped with the package.

The files are package data of ``heatstream.grafana`` (``dashboards/*.json``,
``provisioning/*/*.yaml``), found through ``importlib.resources`` so that an editable
checkout and a wheel install read the same thing. What Grafana loads from its mounts
is exactly what ``push`` uploads and what the query tests run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

Json = dict[str, Any]


def package_root() -> Traversable:
    return files("heatstream.grafana")


@dataclass(frozen=True)
class Provisioning:
    """Everything under grafana/, parsed."""

    datasources: list[Json]
    dashboards: dict[str, Json]  # file name -> dashboard model
    folder: str  # the folder title the dashboards provider puts them in
    rule_groups: list[Json]
    contact_points: list[Json]
    policies: list[Json]

    def dashboard(self, uid: str) -> Json:
        for board in self.dashboards.values():
            if board["uid"] == uid:
                return board
        raise KeyError(uid)

    def rules(self) -> list[tuple[Json, Json]]:
        """(group, rule) for every alert rule."""
        return [(group, rule) for group in self.rule_groups for rule in group.get("rules", [])]


def _children(directory: Traversable, suffixes: tuple[str, ...]) -> list[Traversable]:
    if not directory.is_dir():
        return []
    return sorted(
        (c for c in directory.iterdir() if c.is_file() and c.name.endswith(suffixes)),
        key=lambda c: c.name,
    )


def _yaml(entry: Traversable) -> Json:
    data = yaml.safe_load(entry.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{entry.name}: expected a YAML mapping")
    return data


def load(root: Traversable | Path | None = None) -> Provisioning:
    """Parse the provisioning tree at `root` (default: the installed package's)."""
    base = package_root() if root is None else root
    provisioning = base / "provisioning"
    datasources: list[Json] = []
    for entry in _children(provisioning / "datasources", (".yaml", ".yml")):
        datasources.extend(_yaml(entry).get("datasources", []))
    dashboards = {
        entry.name: json.loads(entry.read_text(encoding="utf-8"))
        for entry in _children(base / "dashboards", (".json",))
    }
    providers: list[Json] = []
    for entry in _children(provisioning / "dashboards", (".yaml", ".yml")):
        providers.extend(_yaml(entry).get("providers", []))
    folder = providers[0].get("folder", "heatstream") if providers else "heatstream"
    groups: list[Json] = []
    contact_points: list[Json] = []
    policies: list[Json] = []
    for entry in _children(provisioning / "alerting", (".yaml", ".yml")):
        data = _yaml(entry)
        groups.extend(data.get("groups", []))
        contact_points.extend(data.get("contactPoints", []))
        policies.extend(data.get("policies", []))
    return Provisioning(datasources, dashboards, folder, groups, contact_points, policies)
