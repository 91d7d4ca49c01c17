"""Event-time tumbling windows per boiler, closed by a per-gateway watermark.

Rules (see DESIGN.md, "Event sourcing, concretely"):

* Windows are aligned to multiples of `window_ms` since the epoch (UTC).
* Each gateway has a watermark: the highest event time it has sent minus the
  allowed lateness. Per gateway rather than per partition so that one gateway's
  backlog burst or slow clock never makes another gateway's data late. A silent
  gateway would hold its windows open forever, so its effective watermark is
  also pulled forward to the partition's highest event time minus
  `offline_hold_ms` (how long we wait for a backlog).
* A boiler's window [s, e) closes once the watermark passes e + max_gap + its
  gateway's close phase: by then every sample that can touch the window
  (including the one that bridges its end) has arrived, unless late. The phase
  (`close_phase_ms`: 0 to `close_spread_ms`, fixed per gateway by a hash of its
  id) spreads the closes of a fleet, whose windows all end on the same minutes,
  over that many milliseconds of event time instead of one message: closing
  10,000 boilers' windows at once took a worker core ~3 s and held up
  everything else on the machine. For a gateway the phase adds to the allowed
  lateness: a sample is late only once its window has closed.
* A sample older than the boiler's close cursor (the end of its last closed
  window) is late: it is not folded in; the caller routes it with a reason.
* Empty windows between data are emitted with coverage 0 (downtime shows);
  trailing silence emits nothing until data returns, at most one day of empty
  windows is filled in.

Everything depends only on the order of messages in the partition, so a live
run and a replay from offset 0 close the same windows with the same contents.

Cost: `close_ready` looks only at the boilers of gateways whose watermark may
have moved (or whose buffers took samples) since its last call, not at every
boiler of the partition. State is saved per boiler (`boiler_state`, its buffer
alone, small and bounded: samples of about lateness + window + 2 x max gap)
and per gateway (`clock_state`); `changed` names the boilers whose buffer
changed as a whole (created, a window closed, samples dropped) and `appended`
the samples others only took since, so that the owner writes back whole
buffers only when it must and otherwise just the new samples.
"""

from __future__ import annotations

import zlib
from bisect import insort
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from heatstream.schemas.telemetry import CHANNEL_NAMES
from heatstream.streams.stats import WindowInput, WindowStats, summarise_many

N_CHANNELS = len(CHANNEL_NAMES)
#: Buffers hold one row per channel plus one row counting quarantined readings per sample.
N_ROWS = N_CHANNELS + 1
QUARANTINE_ROW = N_CHANNELS
CHANNEL_INDEX = {name: i for i, name in enumerate(CHANNEL_NAMES)}
MAX_EMPTY_WINDOWS = 1440
#: Runs of appended samples kept per gateway for the owner (see `appended`).
#: Past this, they are dropped and their boilers marked changed as a whole: an
#: owner that never takes them (a replay) holds no more than this.
MAX_APPENDED_RUNS = 64


@dataclass(frozen=True, slots=True)
class WindowParams:
    window_ms: int = 60_000
    allowed_lateness_ms: int = 30_000
    max_gap_ms: int = 10_000
    offline_hold_ms: int = 3_600_000
    close_spread_ms: int = 0  # see `close_phase_ms`

    def __post_init__(self) -> None:
        if (
            self.window_ms <= 0
            or self.max_gap_ms <= 0
            or self.allowed_lateness_ms < 0
            or self.close_spread_ms < 0
        ):
            raise ValueError(f"invalid window parameters: {self}")


def close_phase_ms(gateway: str, spread_ms: int) -> int:
    """How long after its watermark first allows it a gateway's windows close: a
    fixed share of `spread_ms` (0 to `spread_ms` inclusive) from a hash of its id
    (CRC-32, the same in every process and every replay)."""
    if spread_ms <= 0:
        return 0
    return zlib.crc32(gateway.encode()) * (spread_ms + 1) >> 32


@dataclass(slots=True)
class BoilerBuffer:
    """Samples of one boiler not yet consumed by closed windows."""

    gateway: str
    site: str
    cursor: int  # start of the next window to close
    started: bool = False  # a window with data has been emitted (no leading empty windows)
    times: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)  # each (N_ROWS, n)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The samples in time order (frame order among equal times), as one chunk."""
        if not self.times:
            return np.empty(0, dtype=np.int64), np.empty((N_ROWS, 0))
        if len(self.times) == 1:
            t, v = self.times[0], self.values[0]
        else:
            t = np.concatenate(self.times)
            v = np.concatenate(self.values, axis=1)
        # Frames out of order, also inside one chunk: `WindowEngine._flush` joins a
        # gateway's pending frames into one chunk per boiler, in frame order.
        if (t[1:] < t[:-1]).any():
            order = np.argsort(t, kind="stable")
            t, v = t[order], v[:, order]
        self.times, self.values = [t], [v]
        return t, v


class Appended(NamedTuple):
    """Samples appended to the buffers of some boilers, boiler after boiler."""

    boilers: list[str]
    counts: list[int]
    times: np.ndarray
    values: np.ndarray  # (N_ROWS, n)


@dataclass(slots=True)
class GatewayClock:
    max_t: int = -1


@dataclass(frozen=True, slots=True)
class Accepted:
    """What became of a frame's samples for one boiler."""

    boiler: str
    kept: int
    late: int


class WindowEngine:
    """Buffers samples per boiler and closes windows as watermarks advance."""

    def __init__(self, params: WindowParams, meter_on_supply: frozenset[str] = frozenset()) -> None:
        self.params = params
        self.meter_on_supply = meter_on_supply
        self.boilers: dict[str, BoilerBuffer] = {}
        self.gateways: dict[str, GatewayClock] = {}
        self.partition_max_t = -1
        #: boilers whose buffer changed as a whole since the owner last took this set
        self.changed: set[str] = set()
        #: gateway -> samples appended to its boilers' buffers since the owner last
        #: took them, in order: (boilers, samples of each, times, values), the
        #: samples of boilers[k] being the k-th run of `counts[k]` columns. A
        #: buffer is its saved state plus its runs, in this order.
        self.appended: dict[str, list[Appended]] = {}
        self._by_gateway: dict[str, list[str]] = {}  # gateway -> its boilers, sorted
        #: gateway -> frames added in one pass and not yet split into their
        #: boilers' buffers (`_flush`, before anything reads or extends them):
        #: a live frame costs one append instead of one per boiler
        self._pending: dict[str, list[Appended]] = {}
        #: gateway -> (the boilers of its last fast frame, their buffers, the
        #: highest of their cursors: a frame whose oldest sample is not before it
        #: has nothing late); forgotten when one of them is replaced or closes a window
        self._frame_bufs: dict[str, tuple[list[str], list[BoilerBuffer], int]] = {}
        #: gateway -> the lowest watermark at which one of its boilers may close
        #: a window (min of cursor + window + max_gap), as its last scan left
        #: them; a buffer replaced or restored forgets it
        self._next_close: dict[str, int] = {}
        self._due: set[str] = set()  # gateways close_ready must look at
        self._pmax_seen = -1  # partition_max_t at the last close_ready
        self._phases: dict[str, int] = {}  # gateway -> close_phase_ms

    # -- input -------------------------------------------------------------

    def add(
        self,
        gateway: str,
        site: str,
        boiler: str,
        t_ms: np.ndarray,
        values: np.ndarray,
    ) -> Accepted:
        """Add one boiler's samples of a frame.

        `values` is (N_ROWS, n): one row per channel in CHANNEL_NAMES order (NaN =
        missing or quarantined), then the number of readings quarantined per sample.
        """
        w = self.params.window_ms
        buf = self.boilers.get(boiler)
        if buf is None:
            # No sample that is not late can be older than this frame's newest
            # minus the allowed lateness, so windows start there: an earlier
            # frame arriving out of order within the lateness is still folded in.
            oldest_possible = min(
                int(t_ms.min()), int(t_ms.max()) - self.params.allowed_lateness_ms
            )
            start = oldest_possible // w * w
            buf = BoilerBuffer(gateway=gateway, site=site, cursor=start)
            self._put(boiler, buf)
            self.changed.add(boiler)
        self._flush(buf.gateway)
        late_mask = t_ms < buf.cursor
        late = int(late_mask.sum())
        if late:
            keep = ~late_mask
            t_ms, values = t_ms[keep], values[:, keep]
        if t_ms.size:
            buf.times.append(t_ms)
            buf.values.append(values)
            # Under the gateway that sent them (the boiler's owner), even if the
            # buffer was opened under another before the inventory moved it.
            self._record(gateway, Appended([boiler], [t_ms.size], t_ms, values))
            # New samples can make a window closable under an unchanged
            # watermark (a boiler waiting for data after a silence).
            self._due.add(buf.gateway)
        return Accepted(boiler=boiler, kept=int(t_ms.size), late=late)

    def add_frame(
        self,
        gateway: str,
        site: str,
        boilers: list[str],
        bounds: list[int],
        t_ms: np.ndarray,
        values: np.ndarray,
    ) -> list[Accepted]:
        """Add a frame's samples grouped by boiler: those of `boilers[k]` are columns
        `bounds[k]:bounds[k + 1]` of `t_ms` and `values`. The same as one `add` per
        boiler, in one pass when every boiler has a buffer opened by this gateway
        and nothing is late (a live frame); returns what became of the boilers
        that had late samples."""
        cached = self._frame_bufs.get(gateway)
        if cached is not None and cached[0] == boilers:
            _, known, highest = cached  # same boilers, same buffers as its last frame
            fast = True
        else:
            found = [self.boilers.get(boiler) for boiler in boilers]
            known = [buf for buf in found if buf is not None]
            fast = len(known) == len(found) and {buf.gateway for buf in known} == {gateway}
            if fast:
                highest = max(buf.cursor for buf in known)
                self._frame_bufs[gateway] = (list(boilers), known, highest)
        if fast:
            counts = np.diff(bounds)
            # Nothing is late when the oldest sample is not before any cursor;
            # otherwise each boiler's samples against its own cursor.
            on_time = (
                int(t_ms.min()) >= highest
                or not (
                    t_ms < np.repeat(np.fromiter((b.cursor for b in known), np.int64), counts)
                ).any()
            )
            if counts.all() and on_time:
                lo, hi = bounds[0], bounds[-1]
                run = Appended(list(boilers), counts.tolist(), t_ms[lo:hi], values[:, lo:hi])
                self._pending.setdefault(gateway, []).append(run)
                self._record(gateway, run)
                self._due.add(gateway)
                return []
        out = []
        for k, boiler in enumerate(boilers):
            lo, hi = bounds[k], bounds[k + 1]
            accepted = self.add(gateway, site, boiler, t_ms[lo:hi], values[:, lo:hi])
            if accepted.late:
                out.append(accepted)
        return out

    def _record(self, gateway: str, run: Appended) -> None:
        runs = self.appended.setdefault(gateway, [])
        runs.append(run)
        if len(runs) > MAX_APPENDED_RUNS:
            for dropped in runs:
                self.changed.update(dropped.boilers)
            del self.appended[gateway]

    def _flush(self, gateway: str) -> None:
        """Split the gateway's pending frames into its boilers' buffers.

        Each boiler gets the samples of those frames as one chunk, in frame
        order: the same buffer contents as one chunk per frame, in fewer pieces.
        """
        frames = self._pending.pop(gateway, None)
        if not frames:
            return
        i = 0
        while i < len(frames):
            # A run of frames naming the same boilers in the same order (the
            # usual case: a gateway sends every boiler in every frame).
            j = i + 1
            while j < len(frames) and frames[j].boilers == frames[i].boilers:
                j += 1
            self._split(frames[i:j])
            i = j

    def _split(self, frames: list[Appended]) -> None:
        boilers = frames[0].boilers
        # Samples grouped by boiler (a stable sort keeps frame order within each).
        ids = np.concatenate([np.repeat(np.arange(len(boilers)), f.counts) for f in frames])
        order = np.argsort(ids, kind="stable")
        t = np.concatenate([f.times for f in frames])[order]
        v = np.concatenate([f.values for f in frames], axis=1)[:, order]
        bounds = np.zeros(len(boilers) + 1, dtype=np.int64)
        np.cumsum(np.bincount(ids, minlength=len(boilers)), out=bounds[1:])
        edges = bounds.tolist()
        for k, boiler in enumerate(boilers):
            buf = self.boilers[boiler]
            buf.times.append(t[edges[k] : edges[k + 1]])
            buf.values.append(v[:, edges[k] : edges[k + 1]])

    def _put(self, boiler: str, buf: BoilerBuffer) -> None:
        old = self.boilers.get(boiler)
        if old is not None:
            self._flush(old.gateway)  # its pending samples go to the buffer replaced
            self._frame_bufs.pop(old.gateway, None)
            self._next_close.pop(old.gateway, None)
        self._frame_bufs.pop(buf.gateway, None)
        self._next_close.pop(buf.gateway, None)
        if old is not None and old.gateway != buf.gateway:
            self._by_gateway[old.gateway].remove(boiler)
        self.boilers[boiler] = buf
        members = self._by_gateway.setdefault(buf.gateway, [])
        if old is None or old.gateway != buf.gateway:
            insort(members, boiler)
        self._due.add(buf.gateway)

    def advance(self, gateway: str, max_event_t: int) -> None:
        """Record the highest event time a gateway has sent (after its samples were added)."""
        clock = self.gateways.setdefault(gateway, GatewayClock())
        if max_event_t > clock.max_t:
            clock.max_t = max_event_t
            self._due.add(gateway)
        self.partition_max_t = max(self.partition_max_t, max_event_t)

    def watermark(self, gateway: str) -> int:
        clock = self.gateways.get(gateway)
        own = clock.max_t - self.params.allowed_lateness_ms if clock else -1
        held = self.partition_max_t - self.params.offline_hold_ms
        return max(own, held)

    # -- output ------------------------------------------------------------

    def close_ready(self) -> list[WindowStats]:
        """Close every window whose watermark has passed; in boiler then time order.

        Only gateways whose watermark may have moved, or whose boilers took
        samples, since the last call are looked at: no other boiler can have a
        window ready (its cursor, samples and watermark are as the last call
        left them). The order is that of a scan of every boiler. The windows
        found are summarised together (`summarise_many`): a gateway's boilers
        close theirs at the same watermark.
        """
        p = self.params
        due, self._due = self._due, set()
        if self.partition_max_t != self._pmax_seen:
            # The held watermark moved: it is the watermark of gateways whose
            # own is behind it (silent ones). Per gateway, not per boiler.
            self._pmax_seen = self.partition_max_t
            held = self.partition_max_t - p.offline_hold_ms
            due.update(g for g in self._by_gateway if self._own_watermark(g) < held)
        watermarks: dict[str, int] = {}  # no window closing moves a watermark
        scan: list[str] = []
        for g in due:
            phase = self._phases.get(g)
            if phase is None:
                phase = self._phases[g] = close_phase_ms(g, p.close_spread_ms)
            wm = watermarks[g] = self.watermark(g) - phase
            if wm >= self._next_close.get(g, wm):
                scan.append(g)
        if len(scan) == 1:
            boilers: list[str] = self._by_gateway.get(scan[0], [])
        else:
            boilers = sorted(b for g in scan for b in self._by_gateway.get(g, ()))
        ready: list[WindowInput] = []
        span = p.window_ms + p.max_gap_ms
        for boiler in boilers:
            buf = self.boilers[boiler]
            wm = watermarks[buf.gateway]  # _by_gateway files a boiler under its buffer's gateway
            if wm < buf.cursor + span:
                continue
            self._close_boiler(boiler, buf, wm, ready)
        for g in scan:
            members = self._by_gateway.get(g)
            if members:
                self._next_close[g] = min(self.boilers[b].cursor for b in members) + span
        return summarise_many(ready, p.max_gap_ms)

    def _own_watermark(self, gateway: str) -> int:
        clock = self.gateways.get(gateway)
        return clock.max_t - self.params.allowed_lateness_ms if clock else -1

    def _close_boiler(
        self, boiler: str, buf: BoilerBuffer, wm: int, ready: list[WindowInput]
    ) -> None:
        """Move the boiler's cursor past every window the watermark closes,
        appending to `ready` what each one needs to be summarised."""
        p, w = self.params, self.params.window_ms
        self._flush(buf.gateway)
        t, v = buf.arrays()
        if t.size == 0:
            return
        cursor = buf.cursor
        on_supply = boiler in self.meter_on_supply
        while wm >= buf.cursor + w + p.max_gap_ms:
            s, e = buf.cursor, buf.cursor + w
            nxt = int(np.searchsorted(t, s, side="left"))
            if nxt == t.size:
                break  # trailing silence: wait for data
            if int(t[nxt]) - s > MAX_EMPTY_WINDOWS * w:
                # A long silence (or a clock jumping far ahead): no more than a
                # day of empty windows, then straight to the next data.
                buf.cursor = int(t[nxt]) // w * w
                continue
            lo, inside_hi = np.searchsorted(t, (s - p.max_gap_ms, e), side="left").tolist()
            hi = int(np.searchsorted(t, e + p.max_gap_ms, side="right"))
            if not buf.started and inside_hi == nxt:
                buf.cursor = e  # before the boiler's first data: nothing to report
                continue
            buf.started = True
            ready.append(
                WindowInput(
                    boiler,
                    buf.gateway,
                    buf.site,
                    s,
                    e,
                    t[lo:hi],
                    v[:, lo:hi],
                    int(v[QUARANTINE_ROW, nxt:inside_hi].sum()),
                    on_supply,
                )
            )
            buf.cursor = e
        # Keep what the next window still needs: samples from cursor - max_gap.
        keep_from = np.searchsorted(t, buf.cursor - p.max_gap_ms, side="left")
        if keep_from:
            t, v = t[keep_from:], v[:, keep_from:]
            buf.times, buf.values = ([t], [v]) if t.size else ([], [])
        if keep_from or buf.cursor != cursor:
            self.changed.add(boiler)
        if buf.cursor != cursor:
            self._frame_bufs.pop(buf.gateway, None)  # its highest cursor moved

    # -- state -------------------------------------------------------------

    def boiler_state(self, boiler: str) -> dict[str, Any] | None:
        """Plain-data state of one boiler's buffer (None: no buffer)."""
        buf = self.boilers.get(boiler)
        if buf is None:
            return None
        self._flush(buf.gateway)
        t, v = buf.arrays()
        return {
            "g": buf.gateway,
            "s": buf.site,
            "c": buf.cursor,
            "st": buf.started,
            "t": t.astype(np.int64, copy=False).tobytes(),
            "v": v.astype(np.float64, copy=False).tobytes(),
        }

    def load_boiler(self, boiler: str, b: dict[str, Any]) -> None:
        """Restore one boiler's buffer saved by `boiler_state`."""
        t = np.frombuffer(b["t"], dtype=np.int64).copy()
        v = np.frombuffer(b["v"], dtype=np.float64).reshape(N_ROWS, t.size).copy()
        buf = BoilerBuffer(gateway=b["g"], site=b["s"], cursor=b["c"], started=b["st"])
        if t.size:
            buf.times, buf.values = [t], [v]
        self._put(boiler, buf)

    def load_appended(self, boiler: str, t: np.ndarray, v: np.ndarray) -> bool:
        """Append samples saved from `appended` to a restored buffer (False: no buffer).

        Equivalent to the `add` calls that appended them: the buffer gets the same
        chunks in the same order."""
        buf = self.boilers.get(boiler)
        if buf is None:
            return False
        self._flush(buf.gateway)
        if t.size:
            buf.times.append(np.array(t, dtype=np.int64))
            buf.values.append(np.array(v, dtype=np.float64).reshape(N_ROWS, t.size))
            self._due.add(buf.gateway)
        return True

    def clock_state(self, gateway: str) -> dict[str, Any]:
        """Plain-data state of one gateway's clock (and the partition's maximum)."""
        clock = self.gateways.get(gateway)
        return {"max_t": clock.max_t if clock else None, "pmax": self.partition_max_t}

    def load_clock(self, gateway: str, state: dict[str, Any]) -> None:
        if state["max_t"] is not None:
            self.gateways[gateway] = GatewayClock(max_t=state["max_t"])
            self._due.add(gateway)
        self.partition_max_t = max(self.partition_max_t, state["pmax"])

    def to_state(self, gateway: str | None = None) -> dict[str, Any]:
        """Plain-data state (of one gateway's boilers when `gateway` is given)."""
        boilers = {
            boiler: self.boiler_state(boiler)
            for boiler, buf in self.boilers.items()
            if gateway is None or buf.gateway == gateway
        }
        clocks = {g: c.max_t for g, c in self.gateways.items() if gateway in (None, g)}
        return {"boilers": boilers, "gateways": clocks, "pmax": self.partition_max_t}

    def load_state(self, state: dict[str, Any]) -> None:
        """Merge state produced by `to_state` (of the whole engine or of one gateway)."""
        for boiler, b in state["boilers"].items():
            self.load_boiler(boiler, b)
        for g, max_t in state["gateways"].items():
            self.load_clock(g, {"max_t": max_t, "pmax": state["pmax"]})
        self.partition_max_t = max(self.partition_max_t, state["pmax"])

    @classmethod
    def from_state(
        cls,
        params: WindowParams,
        state: dict[str, Any],
        meter_on_supply: frozenset[str] = frozenset(),
    ) -> WindowEngine:
        engine = cls(params, meter_on_supply)
        engine.load_state(state)
        return engine
