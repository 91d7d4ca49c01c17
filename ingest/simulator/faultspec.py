"""Parsing what the user asks for: `--faults KIND,KIND` and `--fault SPEC`.

A spec names a kind and optionally pins the target, the time and parameters;
anything left out is chosen by the planner from the seed:

    KIND[:TARGET][@START[+DURATION]][:NAME=VALUE[,NAME=VALUE...]]

    slow_leak                                  everything random
    slow_leak:boiler-0003@2h:rate_lpm=0.5      boiler-0003, 2 h after --start
    pump_failure@30m+10m                       random boiler, from 30 min for 10 min
    fouling:boiler-0007@0:loss=0.4,ramp_h=3
    gateway_offline:gw-02@1h+15m
    malformed:gw-01@10m:subkind=broken_json,count=2
    drifting_sensor@1h+end:channel=supply_temp_c,rate_per_h=-1.5

START and DURATION are offsets such as 90s, 30m, 2h, 1h30m; `+end` lasts until
the end of the run. TARGET is a boiler id (boiler faults; for gateway faults it
means that boiler's gateway) or a gateway id (gateway faults). `all` stands for
one fault of every kind, and a `malformed` spec without `subkind` for one of
each sub-kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from heatstream.ingest.simulator.catalogue import KINDS, MALFORMED_SUBKINDS, resolve_kind
from heatstream.ingest.simulator.timeparse import parse_duration_ms

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

#: The help of `--fault SPEC`, in `heatstream simulate` and `heatstream up` alike.
FAULT_HELP = (
    "One fault pinned down: KIND[:TARGET][@START[+DURATION]][:NAME=VALUE,...],"
    " e.g. slow_leak:boiler-0003@2h:rate_lpm=0.5. Repeatable."
)


@dataclass(frozen=True)
class FaultSpec:
    """One requested fault; None fields are chosen by the planner."""

    kind: str
    target: str | None = None
    start_offset_ms: int | None = None
    duration_ms: int | None = None
    until_end: bool = False
    params: dict[str, float | int | str] = field(default_factory=dict, hash=False)

    def __str__(self) -> str:
        text = self.kind
        if self.target:
            text += f":{self.target}"
        if self.start_offset_ms is not None:
            text += f"@{self.start_offset_ms}ms"
            if self.until_end:
                text += "+end"
            elif self.duration_ms is not None:
                text += f"+{self.duration_ms}ms"
        if self.params:
            text += ":" + ",".join(f"{k}={v}" for k, v in self.params.items())
        return text


class FaultSpecError(ValueError):
    """A --fault / --faults value that cannot be understood; the message says why."""


def parse_fault_spec(text: str) -> FaultSpec:
    """Parse one `--fault` value (see the module docstring)."""
    raw = text.strip()
    if not raw:
        raise FaultSpecError("empty fault spec")
    parts = re.split(r"[:,]", raw)
    head = parts[0]
    kind_text, _, when = head.partition("@")
    try:
        kind, implied = resolve_kind(kind_text.strip())
    except ValueError as exc:
        raise FaultSpecError(f"{text!r}: {exc}") from None
    target: str | None = None
    params: dict[str, float | int | str] = {}
    raw_params: dict[str, str] = dict(implied)
    seen_params = False
    for part in parts[1:]:
        part = part.strip()
        if not part:
            raise FaultSpecError(f"{text!r}: empty field between separators")
        if "=" in part:
            name, _, value = part.partition("=")
            raw_params[name.strip()] = value.strip()
            seen_params = True
            continue
        if target is not None or when or seen_params:
            raise FaultSpecError(
                f"{text!r}: {part!r} is out of place; expected"
                " KIND[:TARGET][@START[+DURATION]][:NAME=VALUE,...]"
            )
        target, _, when = part.partition("@")
        target = target.strip() or None
        if target is not None and not _ID.match(target):
            raise FaultSpecError(f"{text!r}: target {target!r} is not a boiler or gateway id")
    for name, value in raw_params.items():
        try:
            params[name] = kind.param(name).parse(value)
        except (KeyError, ValueError) as exc:
            message = exc.args[0] if exc.args else str(exc)
            raise FaultSpecError(f"{text!r}: {message}") from None

    start: int | None = None
    duration: int | None = None
    until_end = False
    if when:
        start_text, plus, dur_text = when.partition("+")
        try:
            start = parse_duration_ms(start_text)
            if plus:
                if dur_text.strip().lower() == "end":
                    until_end = True
                else:
                    duration = parse_duration_ms(dur_text)
                    if duration <= 0:
                        raise ValueError(f"duration {dur_text!r} must be positive")
        except ValueError as exc:
            raise FaultSpecError(f"{text!r}: {exc}") from None
    return FaultSpec(
        kind=kind.name,
        target=target,
        start_offset_ms=start,
        duration_ms=duration,
        until_end=until_end,
        params=params,
    )


def parse_fault_list(text: str) -> list[FaultSpec]:
    """Parse `--faults leak,fouling,pump_failure` (kinds or aliases only; 'all' for every kind)."""
    specs: list[FaultSpec] = []
    for item in text.split(","):
        name = item.strip()
        if not name:
            continue
        if name == "all":
            specs.extend(FaultSpec(k.name) for k in KINDS)
            continue
        if any(c in name for c in ":@="):
            raise FaultSpecError(
                f"--faults takes kind names only ({name!r}); pin targets, times and"
                " parameters with --fault SPEC"
            )
        try:
            kind, implied = resolve_kind(name)
        except ValueError as exc:
            raise FaultSpecError(str(exc)) from None
        specs.append(FaultSpec(kind.name, params=dict(implied)))
    return specs


def expand(specs: list[FaultSpec]) -> list[FaultSpec]:
    """A malformed spec without a subkind becomes one spec per sub-kind."""
    out: list[FaultSpec] = []
    for spec in specs:
        if spec.kind == "malformed" and "subkind" not in spec.params:
            out.extend(
                replace(spec, params={**spec.params, "subkind": s}) for s in MALFORMED_SUBKINDS
            )
        else:
            out.append(spec)
    return out
