"""Turning fault specs into concrete faults: target, window and parameters.

Everything a spec leaves open is drawn from the fault's own stream
(`Purpose.FAULT`, keyed by the spec's position), always in the same order and
whether or not it is then overridden, so pinning one fault or appending
another never changes the choices made for the others. Boiler faults go to
distinct boilers and gateway faults to distinct gateways while there are
enough of them, so that the ground truth stays unambiguous.

The planned faults are also the ground truth: `truth_record` is one line of
the `--truth` file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from heatstream.ingest.simulator.catalogue import (
    DRIFT_RATES,
    KIND_BY_NAME,
    OUT_OF_RANGE_VALUES,
)
from heatstream.ingest.simulator.faultspec import FaultSpec, FaultSpecError
from heatstream.ingest.simulator.fleet import Fleet
from heatstream.ingest.simulator.rng import Purpose, stream

REPLACING = ("broken_json", "wrong_types", "unknown_version")  # a bad message instead of a frame


@dataclass(frozen=True)
class PlannedFault:
    index: int  # position in the expanded spec list (keys its random streams)
    kind: str
    level: str
    boiler: int | None  # boiler index; for foreign_boiler the foreign boiler
    gateway: int  # the boiler's gateway, or the gateway at fault
    start_ms: int
    end_ms: int  # exclusive; clipped to the end of the run
    ongoing: bool  # still active when the run ended
    params: dict[str, Any] = field(hash=False)

    @property
    def subkind(self) -> str | None:
        value = self.params.get("subkind")
        return None if value is None else str(value)

    def active(self, t_ms: np.ndarray) -> np.ndarray:
        return (t_ms >= self.start_ms) & (t_ms < self.end_ms)


def _pick(order: np.ndarray, used: set[int]) -> int:
    for candidate in order.tolist():
        if candidate not in used:
            return int(candidate)
    return int(order[0])


def plan_faults(
    specs: list[FaultSpec],
    fleet: Fleet,
    seed: int,
    start_ms: int,
    end_ms: int,
    frame_span_ms: int,
) -> list[PlannedFault]:
    run_ms = end_ms - start_ms
    used_boilers: set[int] = set()
    used_gateways: set[int] = set()
    replaced: set[tuple[int, int]] = (
        set()
    )  # (gateway, frame start) already replaced by a bad message
    planned: list[PlannedFault] = []
    for i, spec in enumerate(specs):
        kind = KIND_BY_NAME[spec.kind]
        rng = stream(seed, Purpose.FAULT, i)
        boiler_order = rng.permutation(fleet.n_boilers)
        gateway_order = rng.permutation(fleet.n_gateways)
        u_start = float(rng.uniform())
        u_duration = float(rng.uniform())
        drawn = {
            p.name: p.draw(rng) if (p.choices or p.low is not None) else None for p in kind.params
        }
        extra = rng.uniform(size=8)  # reserved draws for kind-specific choices, fixed count
        params: dict[str, Any] = {**drawn, **spec.params}

        # -- target --------------------------------------------------------------
        boiler: int | None = None
        if spec.target is not None:
            if spec.target in fleet.boiler_ids:
                boiler = fleet.boiler_index(spec.target)
                gateway = int(fleet.gateway[boiler])
            elif spec.target in fleet.gateway_ids:
                if kind.level == "boiler":
                    raise FaultSpecError(
                        f"{spec}: {spec.kind} needs a boiler id, {spec.target!r} is a gateway"
                    )
                gateway = fleet.gateway_index(spec.target)
            else:
                raise FaultSpecError(f"{spec}: no boiler or gateway {spec.target!r} in this fleet")
        elif kind.level == "boiler":
            boiler = _pick(boiler_order, used_boilers)
            gateway = int(fleet.gateway[boiler])
        else:
            gateway = _pick(gateway_order, used_gateways)
        if kind.level == "boiler":
            assert boiler is not None
            used_boilers.add(boiler)
        else:
            used_gateways.add(gateway)
            if params.get("subkind") not in ("out_of_range", "foreign_boiler"):
                boiler = None  # a gateway-wide fault, even when named by one of its boilers

        # -- window --------------------------------------------------------------
        if kind.duration_s is None:
            duration = None
        else:
            low, high = kind.duration_s
            duration = round(low + (high - low) * u_duration) * 1000
        if spec.until_end:
            duration = None
        elif spec.duration_ms is not None:
            duration = spec.duration_ms
        if spec.start_offset_ms is not None:
            offset = spec.start_offset_ms
            if not 0 <= offset < run_ms:
                raise FaultSpecError(
                    f"{spec}: starts {offset} ms after --start, outside the run ({run_ms} ms)"
                )
        else:
            latest = (
                0.5 * run_ms if duration is None else max(0.1 * run_ms, 0.9 * run_ms - duration)
            )
            offset = round((0.1 * run_ms + (latest - 0.1 * run_ms) * u_start) / 1000) * 1000
        start = start_ms + offset
        wanted_end = end_ms if duration is None else start + duration
        end = min(wanted_end, end_ms)
        ongoing = wanted_end >= end_ms

        # -- kind-specific parameters -----------------------------------------------
        if spec.kind == "drifting_sensor" and params.get("rate_per_h") is None:
            lo, hi = DRIFT_RATES[str(params["channel"])]
            sign = 1.0 if extra[0] < 0.5 else -1.0
            params["rate_per_h"] = round(sign * (lo + (hi - lo) * float(extra[1])), 4)
        if spec.kind == "fouling":
            params["ramp_h"] = float(params["ramp_h"])
        if spec.kind == "malformed":
            boiler, params = _plan_malformed(
                fleet,
                gateway,
                boiler,
                params,
                start,
                end,
                start_ms,
                frame_span_ms,
                extra,
                rng,
                replaced,
            )
            if params["times_ms"]:
                start, end = params["times_ms"][0], params["times_ms"][-1] + frame_span_ms
                ongoing = False
        planned.append(
            PlannedFault(
                index=i,
                kind=spec.kind,
                level=kind.level,
                boiler=boiler,
                gateway=gateway,
                start_ms=start,
                end_ms=end,
                ongoing=ongoing,
                params=params,
            )
        )
    return planned


def _plan_malformed(
    fleet: Fleet,
    gateway: int,
    boiler: int | None,
    params: dict[str, Any],
    start: int,
    end: int,
    run_start: int,
    frame_span_ms: int,
    extra: np.ndarray,
    rng: np.random.Generator,
    replaced: set[tuple[int, int]],
) -> tuple[int | None, dict[str, Any]]:
    """Malformed messages hit whole frames: their times are frame starts in the window.

    A frame is replaced by at most one bad message (`replaced` remembers which).
    """
    subkind = str(params["subkind"])
    count = int(params["count"])
    first = run_start + -(-(start - run_start) // frame_span_ms) * frame_span_ms
    slots = [
        t
        for t in range(first, max(end, first + frame_span_ms), frame_span_ms)
        if subkind not in REPLACING or (gateway, t) not in replaced
    ]
    if not slots:
        raise FaultSpecError(f"malformed {subkind}: no frame left to replace on this gateway")
    picks = np.sort(rng.choice(len(slots), size=min(count, len(slots)), replace=False))
    times = [int(slots[p]) for p in picks.tolist()]
    if subkind in REPLACING:
        replaced.update((gateway, t) for t in times)
    params = {**params, "count": len(times), "times_ms": times}
    own = fleet.gateway_boilers[gateway]
    if subkind == "out_of_range":
        if boiler is None or int(fleet.gateway[boiler]) != gateway:
            boiler = int(own[int(extra[2] * own.size)])
        channel = params.get("channel")
        if channel is None:
            names = sorted(OUT_OF_RANGE_VALUES)
            channel = names[int(extra[3] * len(names))]
        values = OUT_OF_RANGE_VALUES[str(channel)]
        params["channel"] = channel
        params.setdefault("value", values[int(extra[4] * len(values))])
    elif subkind == "foreign_boiler":
        foreign = np.flatnonzero(fleet.gateway != gateway)
        if foreign.size == 0:
            raise FaultSpecError(
                "malformed foreign_boiler needs at least two gateways (use --sites 2 or more)"
            )
        if boiler is None or int(fleet.gateway[boiler]) == gateway:
            boiler = int(foreign[int(extra[5] * foreign.size)])
        params["owner"] = fleet.gateway_ids[int(fleet.gateway[boiler])]
    else:
        boiler = None
    return boiler, params


def truth_record(fault: PlannedFault, fleet: Fleet) -> dict[str, Any]:
    """One line of the ground-truth file (times in ms since epoch, UTC)."""
    params = {k: v for k, v in fault.params.items() if v is not None}
    return {
        "kind": fault.kind,
        "boiler": None if fault.boiler is None else fleet.boiler_ids[fault.boiler],
        "gateway": fleet.gateway_ids[fault.gateway],
        "site": fleet.site_ids[int(fleet.gateway_site[fault.gateway])],
        "start": fault.start_ms,
        "end": fault.end_ms,
        "ongoing": fault.ongoing,
        "params": params,
    }
