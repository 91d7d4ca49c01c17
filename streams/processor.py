"""The stream processor's core: raw message in, derived events out. No Faust here.

`Processor` holds the state of one Kafka partition of the raw topic and is fed
its messages in log order. For each message it returns what to publish: dead
letters, late events, data-quality issues, closed heat windows and rollups,
anomalies and leaks. Its output depends only on the messages and their order
in the partition, never on the wall clock, which is what makes a replay from
offset 0 produce the same derived events as the live run. The Faust app, the
replay command, the benchmarks and the tests all drive this same class.

State is saved as table rows (see "state rows" below): one small row per
gateway and one per group of at most `boilers_per_row` of its boilers, each
well under a Kafka record's size whatever the fleet behind a gateway. The
processor keeps track of the boilers a message changed, so that only their
rows are written back (`dirty_rows`), and keeps the slow-changing part of a
boiler (ledger, rollups, detectors: they change only when one of its windows
closes or a compute event arrives) encoded, so that it is not encoded again
while it does not change. Between two such changes a group's row is not
rewritten at all: the samples its boilers took go in a small delta row (live,
one per frame: about a kilobyte instead of the ~90 KB of a group's buffers).
"""

from __future__ import annotations

import logging
import pickle
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel

from heatstream.inventory import Inventory
from heatstream.schemas import topics
from heatstream.schemas.compute import JobFinished, JobStarted, NodeState, PowerCapSet
from heatstream.schemas.deadletter import DeadLetter
from heatstream.schemas.derived import DataQualityIssue, HeatWindow, resolution_label
from heatstream.schemas.errors import EventError
from heatstream.schemas.serde import RawEvent
from heatstream.schemas.telemetry import CHANNEL_BY_NAME, TelemetryFrame
from heatstream.schemas.topics import TopicSpec
from heatstream.streams.attribution import ComputeLedger
from heatstream.streams.detectors import (
    ClockSkewTracker,
    EfficiencyDetector,
    GatewayLiveness,
    LeakDetector,
    QualityDetector,
    SkewParams,
    WindowContext,
)
from heatstream.streams.intake import SequenceTracker, decode_and_authorise
from heatstream.streams.rollup import Rollups
from heatstream.streams.stats import WindowStats
from heatstream.streams.windows import (
    CHANNEL_INDEX,
    N_ROWS,
    QUARANTINE_ROW,
    WindowEngine,
    WindowParams,
)

log = logging.getLogger(__name__)

#: A table row (one Kafka changelog record) must stay under the producer's
#: max_request_size (Faust: 1,000,000 bytes). Rows are far smaller by
#: construction: a boiler holds at most lateness + window + 2 x max gap of its
#: samples and bounded detector state, a row at most `boilers_per_row` boilers.
MAX_ROW_BYTES = 900 * 1024
ROW_VERSION = 2
#: Delta rows a group's row may have before it is written whole again. A window
#: closing (once a minute per boiler) rewrites it anyway; this bounds the rows
#: read back per group on a restart when frames come faster than that.
MAX_DELTAS = 64


def gateway_key(gateway: str) -> bytes:
    return b"g:" + gateway.encode()


def boilers_key(first: str, slot: int) -> bytes:
    """The row of the boiler group whose first member is `first`, in one of its two slots."""
    return f"b:{first}.{slot}".encode()


def delta_key(first: str, slot: int, index: int) -> bytes:
    """The `index`-th delta row of the group row `boilers_key(first, slot)`."""
    return f"d:{first}.{slot}.{index}".encode()


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a raw message was read: dead letters point back to it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # the message's Kafka timestamp: deterministic on replay


@dataclass(frozen=True, slots=True)
class Emit:
    topic: TopicSpec
    key: str
    event: BaseModel


@dataclass(frozen=True, slots=True)
class ProcessorParams:
    windows: WindowParams = field(default_factory=WindowParams)
    skew: SkewParams = field(default_factory=SkewParams)
    gateway_silent_ms: int = 300_000
    sequence_horizon: int = 4096
    #: Boilers per state row. One changelog record has a fixed cost in Faust
    #: (about 0.2-0.5 ms here), and a gateway's frames change all its boilers:
    #: grouping keeps records per message few, and rows far below the limit.
    boilers_per_row: int = 8

    def __post_init__(self) -> None:
        if self.boilers_per_row < 1:
            raise ValueError(f"boilers_per_row must be at least 1, got {self.boilers_per_row}")


@dataclass(slots=True)
class Counters:
    messages: int = 0
    frames: int = 0
    compute_events: int = 0
    readings: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    late_events: int = 0
    late_samples: int = 0
    quarantined: int = 0
    windows: int = 0
    anomalies: int = 0
    leaks: int = 0
    dq_issues: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class BoilerState:
    ledger: ComputeLedger
    rollups: Rollups
    efficiency: EfficiencyDetector
    leaks: LeakDetector
    quality: QualityDetector


class Processor:
    """State and logic of one raw-topic partition."""

    def __init__(self, inventory: Inventory, params: ProcessorParams = ProcessorParams()) -> None:
        self.inventory = inventory
        self.params = params
        meter_on_supply = frozenset(
            b.id for b in inventory.boilers if b.flow_meter_side == "supply"
        )
        self.engine = WindowEngine(params.windows, meter_on_supply)
        self.sequences: dict[str, SequenceTracker] = {}
        self.boilers: dict[str, BoilerState] = {}
        self.liveness = GatewayLiveness(silent_ms=params.gateway_silent_ms)
        self.clocks: dict[str, ClockSkewTracker] = {}
        self.counters = Counters()
        self.resolution = resolution_label(params.windows.window_ms)
        k = params.boilers_per_row
        # gateway -> its boilers cut in groups, one row each (inventory order)
        self._groups = {
            g.id: [g.boilers[i : i + k] for i in range(0, len(g.boilers), k)]
            for g in inventory.gateways
        }
        self._group_of = {  # boiler -> (gateway, index of its group)
            b: (g, i)
            for g, groups in self._groups.items()
            for i, grp in enumerate(groups)
            for b in grp
        }
        # gateway -> {first boiler of a group: slot holding its last written row}
        self._slots: dict[str, dict[str, int]] = {}
        # gateway -> {first boiler of a group: delta rows written after its row}
        self._deltas: dict[str, dict[str, int]] = {}
        self._dirty_gateways: set[str] = set()
        self._dirty_boilers: set[str] = set()  # ledger/rollups/detectors changed
        # boiler -> its ledger, rollups and detectors encoded, while they do not change
        self._cores: dict[str, bytes] = {}
        self._loaded: set[str] = set()  # gateways whose saved rows were looked up
        #: the event decoded from the last message `process` took (None: refused),
        #: so that a caller needing it too does not decode it again
        self.last_event: RawEvent | None = None

    # -- the one entry point ------------------------------------------------

    def process(self, raw: bytes, key: bytes | None, origin: Origin) -> list[Emit]:
        self.counters.messages += 1
        self.last_event = None
        out: list[Emit] = []
        try:
            event = decode_and_authorise(raw, key, self.inventory)
        except EventError as exc:
            out.append(self._dead_letter(raw, key, origin, exc.reason, str(exc)))
            return out
        self.last_event = event

        self._dirty_gateways.add(event.gateway)
        tracker = self.sequences.get(event.gateway)
        if tracker is None:
            tracker = self.sequences[event.gateway] = SequenceTracker(self.params.sequence_horizon)
        verdict, gaps = tracker.observe(event.seq)
        if verdict == "duplicate":
            self.counters.duplicates += 1
            return out
        if verdict == "too_old":
            out.append(
                self._late(
                    raw,
                    key,
                    origin,
                    f"seq {event.seq} of gateway {event.gateway!r} is older "
                    f"than the de-duplication horizon ({self.params.sequence_horizon} events)",
                )
            )
            return out
        for first, last in gaps:
            out.append(
                self._dq(
                    DataQualityIssue(
                        kind="sequence_gap",
                        gateway=event.gateway,
                        site=event.site,
                        start_ms=event.event_time_ms,
                        count=last - first + 1,
                        detail=f"gateway {event.gateway} sequence numbers {first}..{last} never arrived",
                    )
                )
            )

        clock = self.clocks.get(event.gateway)
        if clock is None:
            clock = self.clocks[event.gateway] = ClockSkewTracker(self.params.skew)
        if isinstance(event, TelemetryFrame):
            # Judged on frames only: a compute event is stamped when the job
            # changed and may travel with the next frame, so its lag to the
            # reference differs from the frames' by up to a frame span, which
            # would restart the "constant lag" hold of a clock running behind.
            for issue in clock.observe(
                event.gateway, event.site, _event_max_t(event), event.ingest_time_ms
            ):
                out.append(self._dq(issue))

        if isinstance(event, TelemetryFrame):
            out.extend(self._frame(event, raw, key, origin))
        else:
            out.extend(self._compute(event, raw, key, origin))

        for issue in self.liveness.observe(
            event.gateway,
            event.site,
            _event_max_t(event),
            # A clock flagged ahead proves its gateway alive but must not move
            # the partition's event time: every other gateway would look silent.
            advances_clock=not clock.is_ahead(event.gateway),
        ):
            # A silence found by the sweep changes the silent gateway's row.
            self._dirty_gateways.add(issue.gateway)
            out.append(self._dq(issue))
        for stats in self.engine.close_ready():
            out.extend(self._closed(stats))
        return out

    # -- raw events ---------------------------------------------------------

    def _frame(
        self, frame: TelemetryFrame, raw: bytes, key: bytes | None, origin: Origin
    ) -> list[Emit]:
        out: list[Emit] = []
        self.counters.frames += 1
        self.counters.readings += frame.n_readings
        n = frame.n_samples
        values = np.full((N_ROWS, n), np.nan)
        values[QUARANTINE_ROW] = 0.0
        for name, column in frame.columns.items():
            values[CHANNEL_INDEX[name]] = column
        violations = frame.range_violations()
        if violations:
            self.counters.quarantined += len(violations)
            by_key: dict[tuple[str, str], list[Any]] = {}
            for v in violations:
                values[CHANNEL_INDEX[v.field], v.index] = np.nan
                values[QUARANTINE_ROW, v.index] += 1
                by_key.setdefault((v.boiler, v.field), []).append(v)
            for (boiler, channel), found in sorted(by_key.items()):
                spec = CHANNEL_BY_NAME[channel]
                out.append(
                    self._dq(
                        DataQualityIssue(
                            kind="out_of_range",
                            gateway=frame.gateway,
                            site=frame.site,
                            boiler=boiler,
                            channel=channel,
                            start_ms=found[0].t_ms,
                            end_ms=found[-1].t_ms,
                            count=len(found),
                            detail=f"{len(found)} reading(s) outside [{spec.low}, {spec.high}] {spec.unit}, "
                            f"first {found[0]}; quarantined, kept out of heat totals",
                        )
                    )
                )
        t = frame.t_ms
        # One stable sort splits the samples by boiler (in frame order within
        # each), instead of one mask per boiler over all samples.
        idx = np.asarray(frame.boiler_idx, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        present, starts = np.unique(idx[order], return_index=True)
        bounds = [*starts.tolist(), n]
        t, values = t[order], values[:, order]
        names = [frame.boilers[b] for b in present.tolist()]
        late = self.engine.add_frame(frame.gateway, frame.site, names, bounds, t, values)
        for boiler in names:
            if boiler not in self.boilers:
                self._boiler(boiler, frame.site)
        late_total = sum(a.late for a in late)
        late_boilers = [a.boiler for a in late]
        self.engine.advance(frame.gateway, int(t.max()))
        if late_total:
            self.counters.late_samples += late_total
            out.append(
                self._late(
                    raw,
                    key,
                    origin,
                    f"{late_total} of {n} samples arrived after their window closed "
                    f"(allowed lateness {self.params.windows.allowed_lateness_ms} ms) for "
                    f"{', '.join(late_boilers[:5])}{' ...' if len(late_boilers) > 5 else ''}; "
                    "not folded into heat totals",
                )
            )
            out.append(
                self._dq(
                    DataQualityIssue(
                        kind="late_event",
                        gateway=frame.gateway,
                        site=frame.site,
                        boiler=late_boilers[0] if len(late_boilers) == 1 else None,
                        start_ms=frame.event_time_ms,
                        count=late_total,
                        detail=f"frame {frame.event_id}: {late_total} late samples routed to the late-events topic",
                    )
                )
            )
        return out

    def _compute(
        self,
        event: JobStarted | JobFinished | NodeState | PowerCapSet,
        raw: bytes,
        key: bytes | None,
        origin: Origin,
    ) -> list[Emit]:
        self.counters.compute_events += 1
        buf = self.engine.boilers.get(event.boiler)
        if buf is not None and event.event_time_ms < buf.cursor:
            self.counters.late_samples += 1
            return [
                self._late(
                    raw,
                    key,
                    origin,
                    f"{event.schema_name} at {event.event_time_ms} is older than the last "
                    f"closed window of {event.boiler} (ends {buf.cursor})",
                )
            ]
        self._boiler(event.boiler, event.site).ledger.apply(event)
        self._changed(event.boiler)
        self.engine.advance(event.gateway, event.event_time_ms)
        return []

    # -- closed windows -----------------------------------------------------

    def _closed(self, stats: WindowStats) -> list[Emit]:
        out: list[Emit] = []
        state = self._boiler(stats.boiler, stats.site)
        self._changed(stats.boiler)
        boiler = self.inventory.boiler_by_id[stats.boiler]
        site = self.inventory.site_by_id[stats.site]
        throttled, cap_kw = state.ledger.throttled(stats.start_ms, stats.end_ms)
        shares = state.ledger.workload_shares(stats.start_ms, stats.end_ms)
        total = stats.total_kwh
        window = HeatWindow(
            boiler=stats.boiler,
            site=stats.site,
            resolution=self.resolution,
            window_start_ms=stats.start_ms,
            window_end_ms=stats.end_ms,
            heat_kwh=stats.heat_kwh,
            it_kwh=stats.it_kwh,
            aux_kwh=stats.aux_kwh,
            total_kwh=total,
            erf=stats.heat_kwh / total if total > 0 else None,
            supply_temp_mean_c=stats.supply_temp_mean_c,
            return_temp_mean_c=stats.return_temp_mean_c,
            flow_mean_lpm=stats.flow_mean_lpm,
            coverage=stats.coverage,
            co2_avoided_kg=site.displaced_heat.co2_avoided_kg(max(stats.heat_kwh, 0.0)),
            samples=stats.samples,
            quarantined=stats.quarantined,
            heat_by_workload_kwh={k: stats.heat_kwh * s for k, s in shares.items()},
            throttled=throttled,
        )
        self.counters.windows += 1
        out.append(Emit(topics.HEAT_WINDOWS, window.key, window))
        for rollup in state.rollups.add(window):
            out.append(Emit(topics.HEAT_WINDOWS, rollup.key, rollup))
        ctx = WindowContext(
            nominal_it_kw=boiler.nominal_it_kw,
            loop_volume_l=boiler.loop_volume_l,
            throttled=throttled,
            cap_kw=cap_kw,
            has_supply_flow_meter="supply_flow_lpm" in stats.spread,
        )
        for anomaly in state.efficiency.update(stats, ctx):
            self.counters.anomalies += 1
            out.append(Emit(topics.ANOMALIES, anomaly.key, anomaly))
        for leak in state.leaks.update(stats, ctx):
            self.counters.leaks += 1
            out.append(Emit(topics.LEAKS, leak.key, leak))
        for issue in state.quality.update(stats, ctx):
            out.append(self._dq(issue))
        state.ledger.prune(stats.end_ms)
        return out

    # -- state, per gateway (the Faust table's unit) ---------------------------

    def gateway_of(self, key: bytes | None, raw: bytes) -> str | None:
        """The gateway whose state a message needs: its key, when that is a known gateway."""
        if key is None:
            return None
        try:
            gateway = key.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return gateway if gateway in self.inventory.gateway_by_id else None

    def has_gateway(self, gateway: str) -> bool:
        return gateway in self.sequences

    # -- state rows (the Faust table's unit) -----------------------------------
    #
    # b"g:<gateway>": sequence tracker, liveness row, clock-skew tracker, the
    #     window engine's clock of the gateway (and the partition's maxima), and
    #     the manifest: which slot holds the current row of each boiler group.
    # b"b:<first boiler of the group>.<slot>": for each boiler of the group, its
    #     window buffer and its ledger, rollups and detectors (encoded apart,
    #     encoded again only when they change).
    # b"d:<first boiler>.<slot>.<n>": the samples the group's boilers took
    #     after row <slot> (and its deltas 0..n-1) was written, when nothing
    #     else of them changed: no window closed, no sample dropped, no compute
    #     event. The manifest counts a group's deltas; its row is written whole
    #     (to the other slot, deltas counted from 0 again) when more changed or
    #     after MAX_DELTAS of them.
    # A group's row is written to the slot its current row is not in, a delta
    # to the index after the last one counted, and the gateway row, written
    # after them, names the new slot and count: a write cut short (a worker
    # killed mid-batch) leaves the manifest pointing at rows of one batch,
    # never at a mix of batches, so that replaying the batch from the
    # committed offset stays exact. All the rows of a processor belong to its
    # partition: boilers go with the gateway that owns them, which keys the raw
    # messages.

    def needs_import(self, gateway: str) -> bool:
        """Whether the saved rows of `gateway` must be loaded before its next message."""
        return gateway not in self._loaded and gateway not in self.sequences

    def import_rows(self, gateway: str, get: Callable[[bytes], bytes | None]) -> bool:
        """Load the saved rows of a gateway and of the boilers it owns, read with `get`
        (a table lookup: row key -> value, None when absent); whether any was found."""
        self._loaded.add(gateway)
        blob = get(gateway_key(gateway))
        if blob is None:
            legacy = get(gateway.encode())
            if legacy is None:
                return False
            self._import_v1(gateway, legacy)
            return True
        state = pickle.loads(blob)
        if state.get("v") != ROW_VERSION:
            raise ValueError(
                f"gateway row of {gateway!r} has version {state.get('v')!r}, not {ROW_VERSION}"
            )
        self.sequences[gateway] = SequenceTracker.from_state(state["seq"])
        self.liveness = _with_liveness_row(
            self.liveness, gateway, state["liveness"], self.params.gateway_silent_ms
        )
        if state["clock"] is not None:
            self.clocks[gateway] = ClockSkewTracker.from_state(state["clock"], self.params.skew)
        self.engine.load_clock(gateway, state["engine"])
        loaded: list[str] = []
        deltas = state.get("deltas", {})
        for first, slot in state["rows"].items():
            row = get(boilers_key(first, slot))
            if row is None:
                continue
            version, boilers = pickle.loads(row)
            if version != ROW_VERSION:
                raise ValueError(
                    f"row of boilers from {first!r} has version {version!r}, not {ROW_VERSION}"
                )
            mine = []
            for boiler, (buffer, core) in boilers.items():
                if self.inventory.owner_of.get(boiler) != gateway:
                    continue  # moved to another gateway since
                if buffer is not None:
                    self.engine.load_boiler(boiler, buffer)
                if core is not None:
                    self.boilers[boiler] = self._boiler_from_state(boiler, pickle.loads(core))
                    self._cores[boiler] = core
                mine.append(boiler)
            loaded.extend(mine)
            for index in range(deltas.get(first, 0)):
                self._import_delta(gateway, first, slot, index, set(mine), get)
        current = {members[0] for members in self._groups[gateway]}
        self._slots[gateway] = {f: s for f, s in state["rows"].items() if f in current}
        self._deltas[gateway] = {f: n for f, n in deltas.items() if f in current}
        if set(state["rows"]) - current:
            # The inventory regrouped the gateway's boilers since: write them all
            # again in their new groups (the manifest then forgets the old rows).
            self._dirty_boilers.update(loaded)
        return True

    def _import_delta(
        self,
        gateway: str,
        first: str,
        slot: int,
        index: int,
        members: set[str],
        get: Callable[[bytes], bytes | None],
    ) -> None:
        row = get(delta_key(first, slot, index))
        if row is None:
            # The manifest is written after its deltas: only a table that lost
            # rows gets here. Go on with what there is, loudly.
            log.error(
                "delta row %d of the boilers from %s (gateway %s) is missing: their "
                "windows lack the samples it held",
                index,
                first,
                gateway,
            )
            return
        version, *delta = pickle.loads(row)
        if version != ROW_VERSION:
            raise ValueError(
                f"delta row {index} of boilers from {first!r} has version {version!r}, "
                f"not {ROW_VERSION}"
            )
        names, counts, t_bytes, v_bytes = delta
        times = np.frombuffer(t_bytes, dtype=np.int64)
        values = np.frombuffer(v_bytes, dtype=np.float64).reshape(N_ROWS, times.size)
        ends = np.cumsum(counts).tolist()
        for boiler, lo, hi in zip(names, [0, *ends[:-1]], ends, strict=True):
            if boiler in members:
                self.engine.load_appended(boiler, times[lo:hi], values[:, lo:hi])

    def dirty_rows(self) -> list[tuple[bytes, bytes]]:
        """The rows changed since the last call, as (key, value), to write back in this
        order (boiler groups and their deltas, then the gateway rows that name them)."""
        # gateway -> {index of a group: whether its row must be written whole}
        groups: dict[str, dict[int, bool]] = {}
        for boiler in self._dirty_boilers | self.engine.changed:
            where = self._group_of.get(boiler)
            if where is not None:
                groups.setdefault(where[0], {})[where[1]] = True
        for boiler in self.engine.appended:
            where = self._group_of.get(boiler)
            if where is not None:
                groups.setdefault(where[0], {}).setdefault(where[1], False)
        appended, self.engine.appended = self.engine.appended, {}
        self._dirty_boilers.clear()
        self.engine.changed.clear()
        rows: list[tuple[bytes, bytes]] = []
        for gateway in sorted(groups):
            if gateway not in self.sequences:
                continue  # nothing of it has been processed: nothing to save
            slots = self._slots.setdefault(gateway, {})
            deltas = self._deltas.setdefault(gateway, {})
            for index, whole in sorted(groups[gateway].items()):
                members = self._groups[gateway][index]
                first = members[0]
                count = deltas.get(first, 0)
                if not whole and first in slots and count < MAX_DELTAS:
                    row = _delta_row(members, appended)
                    if len(row) <= MAX_ROW_BYTES:
                        rows.append((delta_key(first, slots[first], count), row))
                        deltas[first] = count + 1
                        continue
                row = self._group_row(members)
                if row is None:
                    continue
                if len(row) > MAX_ROW_BYTES:
                    # Cannot happen with sane parameters (see MAX_ROW_BYTES); the
                    # group keeps its previous row rather than kill the producer.
                    log.error(
                        "state row of gateway %s, boilers %s, is %d bytes, over the %d-byte "
                        "limit of a changelog record: not written, their state will not "
                        "survive a restart (lower streams boilers_per_row)",
                        gateway,
                        ", ".join(members),
                        len(row),
                        MAX_ROW_BYTES,
                    )
                    continue
                slot = 1 - slots[first] if first in slots else 0
                slots[first] = slot
                deltas[first] = 0
                rows.append((boilers_key(first, slot), row))
            self._dirty_gateways.add(gateway)
        for gateway in sorted(self._dirty_gateways):
            if gateway in self.sequences:
                rows.append((gateway_key(gateway), self._gateway_row(gateway)))
        self._dirty_gateways.clear()
        return rows

    def rows_of(self, gateway: str) -> list[tuple[bytes, bytes]]:
        """Every row of a gateway as it stands (changed or not), whole (no deltas),
        without marking anything written: for inspection and measurement."""
        slots = self._slots.get(gateway, {})
        rows = []
        for members in self._groups[gateway]:
            row = self._group_row(members)
            if row is not None:
                rows.append((boilers_key(members[0], slots.get(members[0], 0)), row))
        if gateway in self.sequences:
            rows.append((gateway_key(gateway), self._gateway_row(gateway, whole=True)))
        return rows

    # Internal state of our own table, never read from outside: pickle is the
    # fastest faithful encoding of numpy buffers and nested dicts.

    def _gateway_row(self, gateway: str, whole: bool = False) -> bytes:
        state = {
            "v": ROW_VERSION,
            "seq": self.sequences[gateway].to_state(),
            "liveness": _liveness_row(self.liveness, gateway),
            "clock": self.clocks[gateway].to_state() if gateway in self.clocks else None,
            "engine": self.engine.clock_state(gateway),
            "rows": dict(self._slots.get(gateway, {})),
            "deltas": {} if whole else dict(self._deltas.get(gateway, {})),
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def _group_row(self, members: tuple[str, ...]) -> bytes | None:
        boilers = {}
        for boiler in members:
            core = self._cores.get(boiler)
            if core is None and (st := self.boilers.get(boiler)) is not None:
                core = self._cores[boiler] = pickle.dumps(
                    {
                        "ledger": st.ledger.to_state(),
                        "rollups": st.rollups.to_state(),
                        "efficiency": st.efficiency.to_state(),
                        "leaks": st.leaks.to_state(),
                        "quality": st.quality.to_state(),
                    },
                    protocol=pickle.HIGHEST_PROTOCOL,
                )
            buffer = self.engine.boiler_state(boiler)
            if core is not None or buffer is not None:
                boilers[boiler] = (buffer, core)
        if not boilers:
            return None
        return pickle.dumps((ROW_VERSION, boilers), protocol=pickle.HIGHEST_PROTOCOL)

    def _boiler_from_state(self, boiler: str, b: dict[str, Any]) -> BoilerState:
        site = self.inventory.boiler_by_id[boiler].site
        return BoilerState(
            ledger=ComputeLedger.from_state(b["ledger"]),
            rollups=Rollups.from_state(boiler, site, b["rollups"]),
            efficiency=EfficiencyDetector.from_state(boiler, site, b["efficiency"]),
            leaks=LeakDetector.from_state(boiler, site, b["leaks"]),
            quality=QualityDetector.from_state(boiler, site, b["quality"]),
        )

    def _import_v1(self, gateway: str, blob: bytes) -> None:
        """A whole-gateway value of the table's first layout (key: the bare gateway id).
        Everything loaded is marked changed, so that it is written back as rows."""
        state = pickle.loads(blob)
        self.engine.load_state(state["engine"])
        self.sequences[gateway] = SequenceTracker.from_state(state["seq"])
        for boiler, b in state["boilers"].items():
            self.boilers[boiler] = self._boiler_from_state(boiler, b)
            self._changed(boiler)
        self.liveness = _with_liveness_row(
            self.liveness, gateway, state["liveness"], self.params.gateway_silent_ms
        )
        if state["clock"] is not None:
            self.clocks[gateway] = ClockSkewTracker.from_state(state["clock"], self.params.skew)
        self.engine.changed.update(state["engine"]["boilers"])
        self._dirty_gateways.add(gateway)

    # -- helpers ------------------------------------------------------------

    def _boiler(self, boiler: str, site: str) -> BoilerState:
        state = self.boilers.get(boiler)
        if state is None:
            state = self.boilers[boiler] = BoilerState(
                ledger=ComputeLedger(),
                rollups=Rollups(boiler, site),
                efficiency=EfficiencyDetector(boiler, site),
                leaks=LeakDetector(boiler, site),
                quality=QualityDetector(boiler, site),
            )
            self._changed(boiler)
        return state

    def _changed(self, boiler: str) -> None:
        """A boiler's ledger, rollups or detectors changed: re-encode and write its row."""
        self._dirty_boilers.add(boiler)
        self._cores.pop(boiler, None)

    def _dq(self, issue: DataQualityIssue) -> Emit:
        self.counters.dq_issues += 1
        return Emit(topics.DATA_QUALITY, issue.key, issue)

    def _dead_letter(
        self, raw: bytes, key: bytes | None, origin: Origin, reason: str, error: str
    ) -> Emit:
        self.counters.dead_letters += 1
        self.counters.by_reason[reason] += 1
        record = DeadLetter(
            source_topic=origin.topic,
            source_partition=origin.partition,
            source_offset=origin.offset,
            key=key,
            original=raw,
            reason=reason,
            error=error,
            stage="intake",
            rejected_at_ms=origin.timestamp_ms,
        )
        return Emit(topics.DEAD_LETTERS, (key or b"").decode("utf-8", "replace"), record)

    def _late(self, raw: bytes, key: bytes | None, origin: Origin, error: str) -> Emit:
        self.counters.late_events += 1
        record = DeadLetter(
            source_topic=origin.topic,
            source_partition=origin.partition,
            source_offset=origin.offset,
            key=key,
            original=raw,
            reason="late_event",
            error=error,
            stage="windows",
            rejected_at_ms=origin.timestamp_ms,
        )
        return Emit(topics.LATE_EVENTS, (key or b"").decode("utf-8", "replace"), record)


def _delta_row(
    members: tuple[str, ...], appended: dict[str, list[tuple[np.ndarray, np.ndarray]]]
) -> bytes:
    """The samples the members of a group took since their row (or last delta) was
    written: (version, boilers, samples per boiler, times, values), the times and
    values of all of them end to end, in one array each."""
    names: list[str] = []
    counts: list[int] = []
    times: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for boiler in members:
        chunks = appended.get(boiler)
        if chunks:
            names.append(boiler)
            counts.append(sum(t.size for t, _ in chunks))
            times.extend(t for t, _ in chunks)
            values.extend(v for _, v in chunks)
    t = np.concatenate(times).astype(np.int64, copy=False)
    v = np.concatenate(values, axis=1).astype(np.float64, copy=False)
    return pickle.dumps(
        (ROW_VERSION, names, counts, t.tobytes(), v.tobytes()), protocol=pickle.HIGHEST_PROTOCOL
    )


def _event_max_t(event: TelemetryFrame | JobStarted | JobFinished | NodeState | PowerCapSet) -> int:
    if isinstance(event, TelemetryFrame):
        return event.event_time_ms + max(event.dt_ms)
    return event.event_time_ms


def _liveness_row(liveness: GatewayLiveness, gateway: str) -> dict[str, Any]:
    state = liveness.to_state()
    return {"max": state["max"], "row": state["gateways"].get(gateway)}


def _with_liveness_row(
    liveness: GatewayLiveness, gateway: str, saved: dict[str, Any], silent_ms: int
) -> GatewayLiveness:
    """Liveness with one gateway's saved row merged in (the tracker is per partition)."""
    state = liveness.to_state()
    if saved["max"] is not None:
        state["max"] = saved["max"] if state["max"] is None else max(state["max"], saved["max"])
    if saved["row"] is not None:
        state["gateways"][gateway] = saved["row"]
    return GatewayLiveness.from_state(state, silent_ms)
