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
rewritten at all: the samples the gateway's boilers took go in one delta row
per write-back (live: one per frame, the frame's own arrays, instead of every
group's buffers, ~90 KB each).
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
from heatstream.schemas.telemetry import CHANNEL_BY_NAME, TelemetryFrame, channel_rows
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
    Appended,
    WindowEngine,
    WindowParams,
)

log = logging.getLogger(__name__)

#: A table row (one Kafka changelog record) must stay under the producer's
#: max_request_size (Faust: 1,000,000 bytes). Rows are far smaller by
#: construction: a boiler holds at most lateness + window + 2 x max gap of its
#: samples and bounded detector state, a row at most `boilers_per_row` boilers.
MAX_ROW_BYTES = 900 * 1024
#: Version of the rows written. 3 added delta rows and the manifest's count of
#: them: code that knows only 2 would silently ignore them (and lose samples),
#: so it must refuse these rows instead. Rows of version 2 are still read.
ROW_VERSION = 3
READABLE_VERSIONS = frozenset({2, 3})
#: Delta rows a gateway may have before its group rows are all written whole
#: again. Windows closing (once a minute) usually rewrite them first; this bounds
#: the rows read back on a restart when they do not (a boiler gone silent closes
#: no window, so its group's row is not rewritten).
MAX_DELTAS = 64


def gateway_key(gateway: str) -> bytes:
    return b"g:" + gateway.encode()


def boilers_key(first: str, slot: int) -> bytes:
    """The row of the boiler group whose first member is `first`, in one of its two slots."""
    return f"b:{first}.{slot}".encode()


def delta_key(gateway: str, generation: int, index: int) -> bytes:
    """The `index`-th delta row of a gateway's boilers, in one of two generations."""
    return f"d:{gateway}.{generation}.{index}".encode()


@dataclass(slots=True)
class DeltaLog:
    """A gateway's delta rows: `count` of them in `generation`; the samples of a
    group's boilers in delta i belong to its state only if i >= since[group]
    (the group's row, written later, already holds those before)."""

    generation: int = 0
    count: int = 0
    since: dict[str, int] = field(default_factory=dict)  # first boiler of a group -> index

    def to_state(self) -> dict[str, Any]:
        return {"gen": self.generation, "n": self.count, "since": dict(self.since)}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> DeltaLog:
        if not state:
            return cls()
        return cls(state["gen"], state["n"], dict(state["since"]))


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
        self._deltas: dict[str, DeltaLog] = {}  # gateway -> its delta rows
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

        max_t = _event_max_t(event)
        clock = self.clocks.get(event.gateway)
        if clock is None:
            clock = self.clocks[event.gateway] = ClockSkewTracker(self.params.skew)
        if isinstance(event, TelemetryFrame):
            # Judged on frames only: a compute event is stamped when the job
            # changed and may travel with the next frame, so its lag to the
            # reference differs from the frames' by up to a frame span, which
            # would restart the "constant lag" hold of a clock running behind.
            for issue in clock.observe(event.gateway, event.site, max_t, event.ingest_time_ms):
                out.append(self._dq(issue))

        if isinstance(event, TelemetryFrame):
            out.extend(self._frame(event, raw, key, origin))
        else:
            out.extend(self._compute(event, raw, key, origin))

        for issue in self.liveness.observe(
            event.gateway,
            event.site,
            max_t,
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
        values[channel_rows(frame.channels_present)] = frame.matrix
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
        if (idx[1:] < idx[:-1]).any():  # else already grouped (a frame of one sample each)
            order = np.argsort(idx, kind="stable")
            t, values, idx = t[order], values[:, order], idx[order]
        per_boiler = np.bincount(idx, minlength=len(frame.boilers))
        present = per_boiler.nonzero()[0]
        bounds = [0, *np.cumsum(per_boiler[present]).tolist()]
        # Usually every boiler of the frame has samples in it.
        names = (
            frame.boilers
            if present.size == len(frame.boilers)
            else [frame.boilers[b] for b in present.tolist()]
        )
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
    # b"d:<gateway>.<generation>.<n>": the samples the gateway's boilers took
    #     since the last write-back, for boilers whose group row is not
    #     written whole in it (no window of theirs closed, no sample dropped,
    #     no compute event). The manifest counts the deltas and, per group, the
    #     first delta its row does not already hold. When every group row
    #     holds every delta, or after MAX_DELTAS (then every group row is
    #     written whole), the count starts again at 0 in the other generation.
    # A group's row is written to the slot its current row is not in, a delta
    # to the index after the last one counted, and the gateway row, written
    # after them, names the new slots and count: a write cut short (a worker
    # killed mid-batch) leaves the manifest naming the consistent set of rows
    # of the previous complete write-back, so that replaying the batch from
    # the committed offset stays exact. Rows are versioned (ROW_VERSION). All the rows of a processor belong to its
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
        if state.get("v") not in READABLE_VERSIONS:
            raise ValueError(
                f"gateway row of {gateway!r} has version {state.get('v')!r}; this worker "
                f"reads versions {sorted(READABLE_VERSIONS)}"
            )
        self.sequences[gateway] = SequenceTracker.from_state(state["seq"])
        self.liveness = _with_liveness_row(
            self.liveness, gateway, state["liveness"], self.params.gateway_silent_ms
        )
        if state["clock"] is not None:
            self.clocks[gateway] = ClockSkewTracker.from_state(state["clock"], self.params.skew)
        self.engine.load_clock(gateway, state["engine"])
        loaded: list[str] = []
        deltas = DeltaLog.from_state(state.get("deltas"))
        row_of: dict[str, str] = {}  # boiler -> first boiler of the row it was loaded from
        groups = {members[0]: set(members) for members in self._groups[gateway]}
        regrouped = bool(set(state["rows"]) - set(groups))
        for first, slot in state["rows"].items():
            row = get(boilers_key(first, slot))
            if row is None:
                continue
            version, boilers = pickle.loads(row)
            if version not in READABLE_VERSIONS:
                raise ValueError(
                    f"row of boilers from {first!r} has version {version!r}; this worker "
                    f"reads versions {sorted(READABLE_VERSIONS)}"
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
            row_of.update(dict.fromkeys(mine, first))
            # A group that kept its first boiler may still have changed members.
            regrouped = regrouped or not set(mine) <= groups.get(first, set())
        for index in range(deltas.count):
            self._import_delta(gateway, deltas, index, row_of, get)
        self._slots[gateway] = {f: s for f, s in state["rows"].items() if f in groups}
        deltas.since = {f: i for f, i in deltas.since.items() if f in groups}
        self._deltas[gateway] = deltas
        if regrouped:
            # The inventory regrouped the gateway's boilers since: write them all
            # again in their new groups (the manifest then forgets the old rows).
            self._dirty_boilers.update(loaded)
        return True

    def _import_delta(
        self,
        gateway: str,
        deltas: DeltaLog,
        index: int,
        row_of: dict[str, str],
        get: Callable[[bytes], bytes | None],
    ) -> None:
        row = get(delta_key(gateway, deltas.generation, index))
        if row is None:
            # The manifest is written after its deltas: only a table that lost
            # rows gets here. Go on with what there is, loudly.
            log.error(
                "delta row %d of gateway %s is missing: its boilers' windows lack the "
                "samples it held",
                index,
                gateway,
            )
            return
        version, names, counts, t_bytes, v_bytes = pickle.loads(row)
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"delta row {index} of gateway {gateway!r} has version {version!r}; this "
                f"worker reads versions {sorted(READABLE_VERSIONS)}"
            )
        times = np.frombuffer(t_bytes, dtype=np.int64)
        values = np.frombuffer(v_bytes, dtype=np.float64).reshape(N_ROWS, times.size)
        ends = np.cumsum(counts).tolist()
        for boiler, lo, hi in zip(names, [0, *ends[:-1]], ends, strict=True):
            first = row_of.get(boiler)
            if first is None or index < deltas.since.get(first, 0):
                continue  # not this gateway's any more, or its row holds them
            if not self.engine.load_appended(boiler, times[lo:hi], values[:, lo:hi]):
                log.error(
                    "delta row %d of gateway %s holds samples of %s, whose row has no "
                    "window buffer: they are not restored",
                    index,
                    gateway,
                    boiler,
                )

    def dirty_rows(self) -> list[tuple[bytes, bytes]]:
        """The rows changed since the last call, as (key, value), to write back in this
        order (boiler groups and the gateway's delta, then the gateway rows that name
        them)."""
        # gateway -> groups (by index) whose row must be written whole
        groups: dict[str, set[int]] = {}
        for boiler in self._dirty_boilers | self.engine.changed:
            where = self._group_of.get(boiler)
            if where is not None:
                groups.setdefault(where[0], set()).add(where[1])
        appended, self.engine.appended = self.engine.appended, {}
        self._dirty_boilers.clear()
        self.engine.changed.clear()
        rows: list[tuple[bytes, bytes]] = []
        for gateway in sorted(groups.keys() | appended.keys()):
            if gateway not in self.sequences:
                continue  # nothing of it has been processed: nothing to save
            slots = self._slots.setdefault(gateway, {})
            deltas = self._deltas.setdefault(gateway, DeltaLog())
            whole = groups.get(gateway, set())
            samples = appended.get(gateway)
            if samples and deltas.count >= MAX_DELTAS:
                whole = set(range(len(self._groups[gateway])))
            rewritten = [
                members
                for members in (self._groups[gateway][index] for index in sorted(whole))
                if self._write_group(gateway, members, slots, rows)
            ]
            if samples:
                delta = _delta_row(samples, {b for members in rewritten for b in members})
                if delta is not None:
                    rows.append((delta_key(gateway, deltas.generation, deltas.count), delta))
                    deltas.count += 1
            for members in rewritten:
                deltas.since[members[0]] = deltas.count
            if deltas.count and all(deltas.since.get(f, 0) >= deltas.count for f in slots):
                # Every row holds every delta: start again, in the other generation.
                self._deltas[gateway] = DeltaLog(generation=1 - deltas.generation)
            self._dirty_gateways.add(gateway)
        for gateway in sorted(self._dirty_gateways):
            if gateway in self.sequences:
                rows.append((gateway_key(gateway), self._gateway_row(gateway)))
        self._dirty_gateways.clear()
        return rows

    def _write_group(
        self,
        gateway: str,
        members: tuple[str, ...],
        slots: dict[str, int],
        rows: list[tuple[bytes, bytes]],
    ) -> bool:
        """Append a group's row, whole, to `rows`, in its other slot; whether it was."""
        row = self._group_row(members)
        if row is None:
            return False
        if len(row) > MAX_ROW_BYTES:
            # Cannot happen with sane parameters (see MAX_ROW_BYTES). Rather than
            # kill the producer, the group is left out of the manifest: after a
            # restart its boilers start afresh (and its stale row and deltas do
            # not hold back the deltas' reset).
            log.error(
                "state row of gateway %s, boilers %s, is %d bytes, over the %d-byte "
                "limit of a changelog record: not written, their state will not "
                "survive a restart (lower streams boilers_per_row)",
                gateway,
                ", ".join(members),
                len(row),
                MAX_ROW_BYTES,
            )
            slots.pop(members[0], None)
            self._deltas[gateway].since.pop(members[0], None)
            return False
        first = members[0]
        slots[first] = 1 - slots[first] if first in slots else 0
        rows.append((boilers_key(first, slots[first]), row))
        return True

    def rows_of(self, gateway: str) -> list[tuple[bytes, bytes]]:
        """Every row of a gateway as it stands (changed or not), whole (no deltas),
        without marking anything written: for inspection and measurement. Not a
        table to continue from with `dirty_rows`, whose next deltas would follow
        rows this does not write."""
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
            "deltas": None if whole else self._deltas.get(gateway, DeltaLog()).to_state(),
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


def _delta_row(samples: list[Appended], skip: set[str]) -> bytes | None:
    """One delta row: the samples appended to boilers not in `skip`, as (version,
    boilers, samples of each, times, values), runs end to end; None if empty."""
    names: list[str] = []
    counts: list[int] = []
    times: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for run in samples:
        if skip and not skip.isdisjoint(run.boilers):
            keep = [b not in skip for b in run.boilers]
            mask = np.repeat(keep, run.counts)
            names += [b for b, k in zip(run.boilers, keep, strict=True) if k]
            counts += [c for c, k in zip(run.counts, keep, strict=True) if k]
            times.append(run.times[mask])
            values.append(run.values[:, mask])
        else:
            names += run.boilers
            counts += run.counts
            times.append(run.times)
            values.append(run.values)
    if not names:
        return None
    t = times[0] if len(times) == 1 else np.concatenate(times)
    v = values[0] if len(values) == 1 else np.concatenate(values, axis=1)
    return pickle.dumps(
        (
            ROW_VERSION,
            names,
            counts,
            t.astype(np.int64, copy=False).tobytes(),
            v.astype(np.float64, copy=False).tobytes(),
        ),
        protocol=pickle.HIGHEST_PROTOCOL,
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
