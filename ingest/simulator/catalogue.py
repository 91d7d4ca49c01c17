"""The fault kinds the simulator injects, their parameters and what each one does.

This table is the single source of `heatstream simulate --faults` (the listing),
of the spec parser's validation and of the planner's random defaults. A
parameter that is not given is drawn from its range with the fault's own
random stream; `duration` ranges likewise (None: the fault lasts until the end
of the run, like a leak nobody has found yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Level = Literal["boiler", "gateway"]

MALFORMED_SUBKINDS: tuple[str, ...] = (
    "broken_json",
    "wrong_types",
    "out_of_range",
    "unknown_version",
    "foreign_boiler",
)
SENSOR_CHANNELS: tuple[str, ...] = ("supply_temp_c", "return_temp_c", "flow_lpm", "pressure_bar")
#: Drift rate ranges per channel, in channel units per hour (sign drawn separately).
DRIFT_RATES: dict[str, tuple[float, float]] = {
    "supply_temp_c": (0.5, 2.0),
    "return_temp_c": (0.5, 2.0),
    "flow_lpm": (2.0, 6.0),
    "pressure_bar": (0.05, 0.2),
}
#: Absurd values used by out_of_range, per channel (outside CHANNELS' physical ranges).
OUT_OF_RANGE_VALUES: dict[str, tuple[float, ...]] = {
    "supply_temp_c": (250.0, -40.0, 1000.0),
    "return_temp_c": (180.0, -35.5),
    "flow_lpm": (-12.0, 99_999.0),
    "pressure_bar": (-3.2, 42.0),
    "it_power_kw": (-5.0, 80_000.0),
}


@dataclass(frozen=True)
class Param:
    """One parameter of a fault kind."""

    name: str
    unit: str
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    integer: bool = False

    def describe(self) -> str:
        if self.choices:
            rng = "one of " + "|".join(self.choices)
        elif self.integer:
            rng = f"{int(self.low or 0)}..{int(self.high or 0)}"
        elif self.low is not None and self.high is not None:
            rng = f"{self.low:g}..{self.high:g}"
        else:
            rng = "depends on other parameters"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name}{unit} (default: random {rng}): {self.doc}"

    def parse(self, text: str) -> float | int | str:
        if self.choices:
            if text not in self.choices:
                raise ValueError(f"{self.name}={text!r}: choose one of {', '.join(self.choices)}")
            return text
        try:
            return int(text) if self.integer else float(text)
        except ValueError:
            kind = "an integer" if self.integer else "a number"
            raise ValueError(f"{self.name}={text!r} is not {kind}") from None

    def draw(self, rng: np.random.Generator) -> float | int | str:
        if self.choices:
            return str(self.choices[int(rng.integers(len(self.choices)))])
        assert self.low is not None and self.high is not None
        if self.integer:
            return int(rng.integers(int(self.low), int(self.high) + 1))
        return round(float(rng.uniform(self.low, self.high)), 4)


@dataclass(frozen=True)
class FaultKind:
    name: str
    level: Level
    doc: str
    evidence: str
    params: tuple[Param, ...] = ()
    duration_s: tuple[float, float] | None = None  # None: until the end of the run
    aliases: tuple[str, ...] = field(default=())

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.params) or "none"
        raise KeyError(f"{self.name} has no parameter {name!r} (parameters: {known})")


KINDS: tuple[FaultKind, ...] = (
    FaultKind(
        "slow_leak",
        "boiler",
        "water escapes the closed loop slowly; the auto-fill tops it up when pressure falls"
        " to 1.2 bar and stops at 1.6 bar",
        "pressure decays faster than temperature explains, make-up flow in bursts, return"
        " flow a little below supply flow",
        (Param("rate_lpm", "L/min", "leak rate", 0.05, 0.2),),
        aliases=("leak",),
    ),
    FaultKind(
        "burst_leak",
        "boiler",
        "a pipe bursts inside the caisson: the leak outruns the auto-fill (4 L/min, locked out"
        " after 15 min), the floor gets wet, then the leak is isolated",
        "moisture jumps, pressure collapses towards 0 bar, make-up flow at its maximum",
        (
            Param("rate_lpm", "L/min", "leak rate", 8.0, 20.0),
            Param("moisture_pct", "%", "moisture the floor sensor settles at", 60.0, 95.0),
        ),
        duration_s=(600.0, 1800.0),
    ),
    FaultKind(
        "fouling",
        "boiler",
        "scale builds up in the site heat exchanger: its effectiveness falls linearly by"
        " `loss` over `ramp_h` hours, then stays there",
        "return (and supply) temperature rise for the same heat, recovery (heat / IT power)"
        " falls by a few percent as the hotter water captures less of the IT heat",
        (
            Param("loss", "", "fraction of the exchanger effectiveness lost", 0.2, 0.4),
            Param("ramp_h", "h", "hours from clean to fully fouled", 2.0, 6.0),
        ),
    ),
    FaultKind(
        "pump_failure",
        "boiler",
        "the circulation pump trips: flow falls to a few % within seconds while the speed"
        " command stays; the boiler's thermal protection caps IT power above 90 °C supply",
        "flow near zero with IT power on, aux power drops, supply temperature climbs, then a"
        " thermal power_cap_set (planned=false)",
        (Param("residual_pct", "%", "flow left (thermosiphon), % of normal", 0.0, 3.0),),
        duration_s=(600.0, 3600.0),
    ),
    FaultKind(
        "stuck_sensor",
        "boiler",
        "one sensor repeats its last reading exactly, without noise",
        "a channel constant to the last digit while the others move",
        (Param("channel", "", "which sensor", choices=SENSOR_CHANNELS),),
        duration_s=(1800.0, 10_800.0),
    ),
    FaultKind(
        "drifting_sensor",
        "boiler",
        "one sensor's calibration drifts linearly",
        "a channel departs from what the others imply (e.g. ΔT without IT power change)",
        (
            Param("channel", "", "which sensor", choices=SENSOR_CHANNELS),
            Param(
                "rate_per_h",
                "units/h",
                "drift, in the channel's unit per hour, signed (default range per channel:"
                " temperatures 0.5-2 K/h, flow 2-6 L/min/h, pressure 0.05-0.2 bar/h)",
            ),
        ),
    ),
    FaultKind(
        "gateway_offline",
        "gateway",
        "the gateway loses its uplink: it keeps measuring and spooling, then sends the"
        " backlog in a burst when it reconnects",
        "no events from the gateway, then a burst whose ingest_time_ms is far after event_time_ms",
        duration_s=(300.0, 1800.0),
    ),
    FaultKind(
        "clock_skew",
        "gateway",
        "the gateway's measurement clock jumps by `offset_ms`: sample and compute-event times"
        " are off by it; ingest_time_ms (the uplink's NTP clock) stays right",
        "event_time_ms - ingest_time_ms off by the offset (negative = in the future)",
        (
            Param(
                "offset_ms",
                "ms",
                "clock error, signed (positive: ahead)",
                -600_000,
                600_000,
                integer=True,
            ),
        ),
    ),
    FaultKind(
        "duplicates",
        "gateway",
        "redelivery: some events are sent again, a few frames later, identical (same event id)",
        "the same event_id twice",
        (
            Param("prob", "", "share of the gateway's events sent twice", 0.02, 0.1),
            Param(
                "max_delay_frames", "", "how many frames later the copy goes", 0, 5, integer=True
            ),
        ),
        duration_s=(1800.0, 7200.0),
    ),
    FaultKind(
        "out_of_order",
        "gateway",
        "some events are held back and sent after later ones",
        "seq and event time going backwards on the partition",
        (
            Param("prob", "", "share of the gateway's events held back", 0.02, 0.1),
            Param(
                "max_delay_frames", "", "how many frames an event may be held", 2, 10, integer=True
            ),
        ),
        duration_s=(1800.0, 7200.0),
    ),
    FaultKind(
        "malformed",
        "gateway",
        "bad messages: broken_json (truncated bytes), wrong_types (a reading as a string),"
        " unknown_version (schema_version 4), each replacing one frame of the gateway;"
        " out_of_range (one reading far outside its physical range, in a real frame);"
        " foreign_boiler (an extra frame naming a boiler another gateway owns)",
        "dead letters with reason decode_error / schema_violation / unknown_schema, a"
        " quarantined reading, a rejected foreign frame",
        (
            Param("subkind", "", "what is wrong", choices=MALFORMED_SUBKINDS),
            Param(
                "count",
                "",
                "how many such messages, spread over the fault's window",
                1,
                5,
                integer=True,
            ),
        ),
        duration_s=(600.0, 3600.0),
        aliases=MALFORMED_SUBKINDS,
    ),
)
KIND_BY_NAME: dict[str, FaultKind] = {k.name: k for k in KINDS}


def resolve_kind(name: str) -> tuple[FaultKind, dict[str, str]]:
    """A kind name or alias -> (kind, parameters the alias implies)."""
    if name in KIND_BY_NAME:
        return KIND_BY_NAME[name], {}
    for kind in KINDS:
        if name in kind.aliases:
            implied = {"subkind": name} if kind.name == "malformed" else {}
            return kind, implied
    known = ", ".join(k.name for k in KINDS)
    raise ValueError(
        f"unknown fault kind {name!r}; known kinds: {known} (aliases: leak,"
        f" {', '.join(MALFORMED_SUBKINDS)}); 'all' injects one of each"
    )


def describe_kinds() -> str:
    """The text `heatstream simulate --faults` (without a value) prints."""
    lines = []
    for kind in KINDS:
        dur = (
            "until the end of the run"
            if kind.duration_s is None
            else f"{kind.duration_s[0] / 60:g}-{kind.duration_s[1] / 60:g} min"
        )
        alias = f" (aliases: {', '.join(kind.aliases)})" if kind.aliases else ""
        lines.append(f"{kind.name}{alias} [{kind.level}, default duration {dur}]")
        lines.append(f"    {kind.doc}")
        lines.append(f"    evidence: {kind.evidence}")
        for p in kind.params:
            lines.append(f"    - {p.describe()}")
    return "\n".join(lines)
