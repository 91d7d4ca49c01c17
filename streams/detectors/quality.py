"""Data-quality detectors: stuck sensors per boiler window, plus the per-frame intake checks.

`QualityDetector` (per boiler, per closed window) reports `sensor_stuck`: a
channel that normally varies has read one identical value (spread within a
tiny per-channel epsilon, and the same value, within that epsilon, from window
to window) for
`stuck_windows` consecutive windows. "Normally varies" means the channel has
been seen varying in at least `arm_windows` windows; a reading of exactly 0
(a stopped pump, servers off) and IT power pinned at a planned cap are
legitimately flat and never count. An issue is emitted when it starts (start
at the first stuck window) and again, with `end_ms`, when the channel has
varied for `clear_windows` consecutive windows.

The intake helpers live in their own modules and are re-exported here:
`clock_skew` / `ClockSkewTracker` (`clock.py`) and `GatewayLiveness`
(`liveness.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from heatstream.schemas.derived import DataQualityIssue
from heatstream.streams.detectors.clock import ClockSkewTracker, SkewParams, clock_skew
from heatstream.streams.detectors.context import WindowContext
from heatstream.streams.detectors.liveness import GatewayLiveness
from heatstream.streams.stats import WindowStats

__all__ = [
    "ClockSkewTracker",
    "GatewayLiveness",
    "QualityDetector",
    "QualityParams",
    "SkewParams",
    "clock_skew",
]

STATE_VERSION = 1

#: Analog measurements that carry noise when healthy. Left out on purpose: make-up
#: flow (0 all the time in a sound loop), pump speed (a command, constant by design),
#: IT utilisation (saturates at 100 %), moisture (a dry floor may read flat).
NOISY_CHANNELS: tuple[str, ...] = (
    "supply_temp_c",
    "return_temp_c",
    "flow_lpm",
    "supply_flow_lpm",
    "pressure_bar",
    "it_power_kw",
    "aux_power_kw",
    "outdoor_temp_c",
)


@dataclass(frozen=True, slots=True)
class QualityParams:
    channels: tuple[str, ...] = NOISY_CHANNELS
    epsilon: float = 1e-9  # spread at or below this is "flat"
    channel_epsilon: tuple[tuple[str, float], ...] = ()  # per-channel overrides
    stuck_windows: int = 5
    clear_windows: int = 2
    arm_windows: int = 3  # seen varying this often before it can be called stuck
    min_samples: int = 5  # fewer samples in the window: not assessed

    def eps(self, channel: str) -> float:
        return dict(self.channel_epsilon).get(channel, self.epsilon)


@lru_cache(maxsize=8)
def _epsilons(params: QualityParams) -> dict[str, float]:
    """`params.eps` of each channel: asked for ~8 times a window."""
    return {c: params.eps(c) for c in params.channels}


def _fresh() -> dict[str, Any]:
    return {
        "varied": 0,
        "run": 0,
        "start": None,
        "value": None,
        "active": False,
        "clear": 0,
        "clear_start": None,
    }


class QualityDetector:
    """Stuck-sensor detection for one boiler (see the module docstring)."""

    def __init__(self, boiler: str, site: str, params: QualityParams = QualityParams()) -> None:
        self.boiler, self.site, self.params = boiler, site, params
        self._ch: dict[str, dict[str, Any]] = {c: _fresh() for c in params.channels}
        self._eps = _epsilons(params)  # one dict for every detector with these parameters

    def update(self, w: WindowStats, ctx: WindowContext) -> list[DataQualityIssue]:
        p = self.params
        out: list[DataQualityIssue] = []
        if w.samples < p.min_samples:
            return out
        for channel in p.channels:
            spread, value = w.spread.get(channel), w.last_values.get(channel)
            if spread is None or value is None:
                continue  # channel absent this window: neither stuck nor varying
            st, eps = self._ch[channel], self._eps[channel]
            flat = spread <= eps
            if st["active"]:
                same = abs(value - st["value"]) <= eps
                self._while_stuck(w, channel, st, flat and same, out)
                continue
            at_cap = (
                channel == "it_power_kw"
                and ctx.cap_kw is not None
                and abs(value - ctx.cap_kw) <= 1e-6 * max(1.0, ctx.cap_kw)
            )
            if not flat:
                st["varied"] = min(p.arm_windows, st["varied"] + 1)
                st["run"] = 0
                continue
            if value == 0.0 or at_cap or st["varied"] < p.arm_windows:
                st["run"] = 0
                continue
            if st["run"] and abs(value - st["value"]) <= eps:
                st["run"] += 1
            else:
                st["run"], st["start"], st["value"] = 1, w.start_ms, value
            if st["run"] >= p.stuck_windows:
                st["active"], st["clear"], st["clear_start"] = True, 0, None
                minutes = (w.end_ms - st["start"]) / 60_000.0
                out.append(
                    self._issue(
                        w.gateway,
                        channel,
                        st,
                        None,
                        f"{channel} has read exactly {value!r} in every sample for {st['run']} "
                        f"consecutive windows ({minutes:.0f} min) although it normally varies: "
                        "the sensor or its transmitter is stuck; its readings are not to "
                        "be trusted.",
                    )
                )
        return out

    def _while_stuck(
        self,
        w: WindowStats,
        channel: str,
        st: dict[str, Any],
        still: bool,
        out: list[DataQualityIssue],
    ) -> None:
        if still:
            st["run"] += 1
            st["clear"], st["clear_start"] = 0, None
            return
        st["clear"] += 1
        if st["clear"] == 1:
            st["clear_start"] = w.start_ms
        if st["clear"] < self.params.clear_windows:
            return
        minutes = (st["clear_start"] - st["start"]) / 60_000.0
        out.append(
            self._issue(
                w.gateway,
                channel,
                st,
                st["clear_start"],
                f"{channel} varies again after reading {st['value']!r} for {st['run']} windows "
                f"(about {minutes:.0f} min).",
            )
        )
        st.update(_fresh(), varied=self.params.arm_windows)

    def _issue(
        self, gateway: str, channel: str, st: dict[str, Any], end_ms: int | None, detail: str
    ) -> DataQualityIssue:
        return DataQualityIssue(
            kind="sensor_stuck",
            gateway=gateway,
            site=self.site,
            boiler=self.boiler,
            channel=channel,
            start_ms=int(st["start"]),
            end_ms=end_ms,
            count=int(st["run"]),
            detail=detail[:1000],
        )

    def to_state(self) -> dict[str, Any]:
        return {"v": STATE_VERSION, "channels": {c: dict(s) for c, s in self._ch.items()}}

    @classmethod
    def from_state(
        cls, boiler: str, site: str, state: dict[str, Any], params: QualityParams = QualityParams()
    ) -> QualityDetector:
        if state.get("v") != STATE_VERSION:
            raise ValueError(
                f"quality detector state version {state.get('v')!r} is not {STATE_VERSION}"
            )
        d = cls(boiler, site, params)
        for channel, st in state["channels"].items():
            if channel in d._ch:
                d._ch[channel] = dict(st)
        return d
