"""Figures: what every benchmark returns, how they print and how they are saved.

A `Figure` is one measured number with its unit, the stage it belongs to and,
when it has one, the key of its ceiling (a figure measured in the same run that
the stage cannot exceed); the ratio figure / ceiling is derived at output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Figure:
    key: str  # JSON key; throughput keys end in _readings_per_s
    value: float
    unit: str
    label: str  # what the table shows
    ceiling: str | None = None  # key of the figure this one is compared with
    note: str = ""


@dataclass
class Results:
    figures: dict[str, Figure] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)

    def add(self, *figures: Figure) -> None:
        for f in figures:
            self.figures[f.key] = f

    def ratio(self, figure: Figure) -> float | None:
        if figure.ceiling is None or figure.ceiling not in self.figures:
            return None
        ceiling = self.figures[figure.ceiling].value
        return figure.value / ceiling if ceiling > 0 else None

    # -- output ----------------------------------------------------------------

    def as_json(self) -> dict[str, Any]:
        """Figures flat at the top level; ratios as `<key>_vs_ceiling`; the rest under meta."""
        out: dict[str, Any] = {k: _round(f.value) for k, f in self.figures.items()}
        for key, f in self.figures.items():
            r = self.ratio(f)
            if r is not None:
                out[f"{key}_vs_ceiling"] = round(r, 4)
        out["meta"] = {
            **self.meta,
            "units": {k: f.unit for k, f in self.figures.items()},
            "labels": {k: f.label for k, f in self.figures.items()},
            "ceilings": {k: f.ceiling for k, f in self.figures.items() if f.ceiling},
            "notes": {k: f.note for k, f in self.figures.items() if f.note},
        }
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Results:
        """The figures of a saved run (to print or tabulate it again)."""
        meta = data.get("meta", {})
        results = cls(meta=meta)
        for key, value in data.items():
            if key == "meta" or key.endswith("_vs_ceiling"):
                continue
            results.add(
                Figure(
                    key,
                    float(value),
                    meta.get("units", {}).get(key, ""),
                    meta.get("labels", {}).get(key, key),
                    meta.get("ceilings", {}).get(key),
                    meta.get("notes", {}).get(key, ""),
                )
            )
        return results

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_json(), indent=2, sort_keys=False) + "\n")

    def table(self) -> Table:
        table = Table(title="heatstream benchmarks", show_lines=False)
        for name, justify in (
            ("stage", "left"),
            ("figure", "right"),
            ("unit", "left"),
            ("ceiling", "right"),
            ("ratio", "right"),
            ("key", "left"),
        ):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for key, f in self.figures.items():
            r = self.ratio(f)
            ceiling = self.figures.get(f.ceiling) if f.ceiling else None
            table.add_row(
                f.label,
                human(f.value),
                f.unit,
                human(ceiling.value) if ceiling else "",
                f"{r:.2f}" if r is not None else "",
                key,
            )
        return table

    def markdown(self) -> str:
        """The table as GitHub markdown (for BENCHMARKS.md)."""
        lines = [
            "| stage | figure | unit | ceiling | ratio | key |",
            "|---|---:|---|---:|---:|---|",
        ]
        for key, f in self.figures.items():
            r = self.ratio(f)
            ceiling = self.figures.get(f.ceiling) if f.ceiling else None
            lines.append(
                f"| {f.label} | {human(f.value)} | {f.unit} | "
                f"{human(ceiling.value) if ceiling else ''} | "
                f"{f'{r:.2f}' if r is not None else ''} | `{key}` |"
            )
        return "\n".join(lines)

    def print(self, console: Console | None = None) -> None:
        console = console or Console()
        console.print(self.table())
        for key, f in self.figures.items():
            if f.note:
                console.print(f"[dim]{key}: {f.note}[/dim]")


def human(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _round(value: float) -> float:
    return float(f"{value:.6g}")
