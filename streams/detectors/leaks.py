"""Leak suspicion for one boiler's closed loop, from four independent pieces of evidence.

* **makeup_water** (`makeup.py`): fills that come back, or one that never stops.
* **pressure_decay** (`pressure.py`): loop pressure falling more than the loop's
  temperature can explain, with the boiler's own learned expansion curve.
* **flow_imbalance** (`imbalance.py`): more water leaving than coming back,
  where supply and return are both metered; not counted while the compensated
  pressure shows no fall at all (water lost between the meters must come out
  of the loop: otherwise a meter has drifted).
* **moisture** (`moisture.py`): the floor/caisson moisture sensor well above its
  own dry baseline.

The leak *starts* when the first evidence fires: start_ms is the earliest
onset any firing evidence estimates (when the evidence began, not when it
crossed its threshold), detected_ms the end of the window in which it fired.
It *ends* after `off_n` consecutive windows that positively show no leak: no
evidence fires, no make-up water flows, every assessable evidence is clear and
the compensated pressure has stopped falling (where pressure is measured).
Confidence combines the evidences that fired, each with its own weight:
1 - Π(1 - w). The estimated rate comes from make-up water if any, else from the
flow imbalance (both measure the loss), else from the pressure decay times the
loop's compliance. The end event lists every evidence seen during the episode,
with the highest confidence and rate. Planned throttling does not suppress
leak detection: temperature is compensated, not ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from heatstream.schemas.derived import LeakEvidence, LeakSuspected, Severity
from heatstream.streams.detectors.context import WindowContext
from heatstream.streams.detectors.expansion import ExpansionParams
from heatstream.streams.detectors.imbalance import ImbalanceEvidence
from heatstream.streams.detectors.makeup import MakeupEvidence
from heatstream.streams.detectors.moisture import MoistureEvidence
from heatstream.streams.detectors.pressure import PressureEvidence
from heatstream.streams.detectors.verdict import Finding, Verdict
from heatstream.streams.stats import WindowStats

STATE_VERSION = 2
ORDER: tuple[LeakEvidence, ...] = ("makeup_water", "pressure_decay", "flow_imbalance", "moisture")
RATE_SOURCES: tuple[LeakEvidence, ...] = ("makeup_water", "flow_imbalance", "pressure_decay")


@dataclass(frozen=True, slots=True)
class LeakParams:
    # -- make-up water --------------------------------------------------------
    makeup_wet_l: float = 0.05  # a window with at least this much make-up is a fill window
    makeup_memory_ms: int = 6 * 3_600_000  # fill episodes remembered this long
    makeup_volume_l: float = 3.0  # repeated fills must total at least this
    makeup_long_windows: int = 10  # one uninterrupted fill this long is not a top-up ...
    makeup_topup_max_l: float = 20.0  # ... nor one this large
    # -- pressure decay -------------------------------------------------------
    pressure_horizon: int = 30  # windows looked back
    pressure_drop_bar: float = 0.1  # unexplained decline, beyond the uncertainty
    pressure_noise_bar: float = 0.02  # allowance for sensor noise in window means
    pressure_min_run: int = 3  # the decline spans at least this many window steps
    pressure_max_step_share: float = 0.6  # no single step may carry more of the decline
    pressure_quiet_windows: int = 30  # clear: the trend over this many windows ...
    pressure_quiet_bar_h: float = 0.1  # ... falls by less than this
    max_flow_change: float = 0.10  # a flow change beyond this is a pump regime change
    expansion_max_delta_change_k: float = 0.3  # learn the curve only while ΔT holds still
    expansion: ExpansionParams = field(default_factory=ExpansionParams)
    # -- flow imbalance -------------------------------------------------------
    imbalance_abs_lpm: float = 0.5
    imbalance_rel: float = 0.02  # of the flow
    imbalance_min_flow_lpm: float = 1.0
    imbalance_warmup: int = 10  # windows to learn the meters' relative offset
    imbalance_alpha: float = 1.0 / 720
    imbalance_on_k: int = 3
    imbalance_on_n: int = 4
    imbalance_off_n: int = 5
    # -- moisture ------------------------------------------------------------------
    moisture_rise_pct: float = 15.0  # points above the learned baseline
    moisture_floor_pct: float = 10.0  # never below this
    moisture_abs_pct: float = 80.0  # always a leak from this
    moisture_alpha: float = 0.02
    moisture_on_k: int = 2
    moisture_on_n: int = 3
    moisture_off_n: int = 5
    # -- combination ------------------------------------------------------------
    off_n: int = 15  # consecutive clear windows to end a leak
    weights: tuple[tuple[str, float], ...] = (
        ("makeup_water", 0.7),
        ("pressure_decay", 0.6),
        ("flow_imbalance", 0.5),
        ("moisture", 0.8),
    )
    critical_rate_lpm: float = 1.0


class LeakDetector:
    """Leak suspicion of one boiler (see the module docstring)."""

    def __init__(self, boiler: str, site: str, params: LeakParams = LeakParams()) -> None:
        self.boiler, self.site, self.params = boiler, site, params
        self._makeup = MakeupEvidence(params)
        self._pressure = PressureEvidence(params)
        self._imbalance = ImbalanceEvidence(params)
        self._moisture = MoistureEvidence(params)
        self._episode: dict[str, Any] | None = None

    # -- public -----------------------------------------------------------------

    def update(self, w: WindowStats, ctx: WindowContext) -> list[LeakSuspected]:
        if w.samples == 0:
            return []  # nothing measured: neither evidence nor its absence
        active = self._episode is not None
        verdicts: dict[LeakEvidence, Verdict] = {
            "makeup_water": self._makeup.update(w),
            "pressure_decay": self._pressure.update(w, ctx, active),
            "flow_imbalance": self._imbalance.update(w, ctx, active),
            "moisture": self._moisture.update(w),
        }
        if self._imbalance_unexplained(verdicts["flow_imbalance"]):
            verdicts["flow_imbalance"] = Verdict(None, False)
        found = {n: v.finding for n, v in verdicts.items() if v.finding is not None}
        quiet = (
            not found
            and w.makeup_l < self.params.makeup_wet_l
            and all(v.clear is not False for v in verdicts.values())
            and (w.pressure_mean_bar is None or verdicts["pressure_decay"].clear is True)
        )
        return self._combine(w, found, quiet)

    def to_state(self) -> dict[str, Any]:
        ep = self._episode
        return {
            "v": STATE_VERSION,
            "makeup": self._makeup.to_state(),
            "pressure": self._pressure.to_state(),
            "imbalance": self._imbalance.to_state(),
            "moisture": self._moisture.to_state(),
            "episode": None if ep is None else dict(ep, evidence=list(ep["evidence"])),
        }

    @classmethod
    def from_state(
        cls, boiler: str, site: str, state: dict[str, Any], params: LeakParams = LeakParams()
    ) -> LeakDetector:
        if state.get("v") != STATE_VERSION:
            raise ValueError(
                f"leak detector state version {state.get('v')!r} is not {STATE_VERSION}"
            )
        d = cls(boiler, site, params)
        d._makeup.load(state["makeup"])
        d._pressure.load(state["pressure"])
        d._imbalance.load(state["imbalance"])
        d._moisture.load(state["moisture"])
        ep = state["episode"]
        d._episode = None if ep is None else dict(ep, evidence=list(ep["evidence"]))
        return d

    def _imbalance_unexplained(self, verdict: Verdict) -> bool:
        """Water missing between the meters must come out of the loop. If the pressure
        has not fallen at all beyond what temperature and noise explain (over at least
        10 windows of one regime without make-up), the meters disagree, a meter has
        drifted: it is no leak evidence. (Only whether, not how much: a compliance
        inferred from thermal expansion is not precise enough to weigh litres.)"""
        return verdict.finding is not None and self._pressure.declining() is False

    # -- combination ----------------------------------------------------------------

    def _combine(
        self, w: WindowStats, found: dict[LeakEvidence, Finding], quiet: bool
    ) -> list[LeakSuspected]:
        p = self.params
        names = [n for n in ORDER if n in found]
        ep = self._episode
        if ep is None:
            if not names:
                return []
            start = min(found[n].start_ms for n in names)
            rate, source = self._rate(found)
            confidence = self._confidence(names)
            self._episode = ep = {
                "start": start,
                "detected": w.end_ms,
                "evidence": list(names),
                "confidence": confidence,
                "rate": rate,
                "severity": self._severity(names, rate),
                "clear_run": 0,
                "clear_start": None,
            }
            lead = (w.end_ms - start) / 60_000.0
            reason = (
                "Leak suspected in the closed loop: "
                + "; ".join(found[n].text for n in names)
                + f". Estimated loss {rate:.2f} L/min ({source}); began about {lead:.0f} min "
                f"before detection; confidence {confidence:.2f} from {len(names)} of 4 evidences."
            )
            return [self._event(ep, "start", None, reason)]
        if names:
            ep["evidence"] = [n for n in ORDER if n in ep["evidence"] or n in names]
            rate, _ = self._rate(found)
            ep["rate"] = max(ep["rate"], rate)
            ep["confidence"] = max(ep["confidence"], self._confidence(ep["evidence"]))
            ep["severity"] = max(ep["severity"], self._severity(names, rate), key=_rank)
        if not quiet:
            ep["clear_run"], ep["clear_start"] = 0, None
            return []
        ep["clear_run"] += 1
        if ep["clear_run"] == 1:
            ep["clear_start"] = w.start_ms
        if ep["clear_run"] < p.off_n:
            return []
        self._episode = None
        minutes = (ep["clear_start"] - ep["start"]) / 60_000.0
        reason = (
            f"Leak evidence cleared: no make-up water, no evidence and steady pressure for "
            f"{p.off_n} consecutive windows; it lasted about {minutes:.0f} min, evidence seen: "
            f"{', '.join(ep['evidence'])}, highest estimated loss {ep['rate']:.2f} L/min."
        )
        return [self._event(ep, "end", ep["clear_start"], reason)]

    @staticmethod
    def _rate(found: dict[LeakEvidence, Finding]) -> tuple[float, str]:
        # measured losses first (water fed, water missing between meters), then the
        # pressure-based estimate, which rests on the compliance inferred from expansion
        for name in RATE_SOURCES:
            finding = found.get(name)
            if finding is not None and finding.rate_lpm is not None:
                return max(0.0, finding.rate_lpm), f"from {name.replace('_', ' ')}"
        return 0.0, "rate unknown: no make-up, pressure or flow evidence"

    def _confidence(self, names: list[LeakEvidence]) -> float:
        weights = dict(self.params.weights)
        miss = 1.0
        for n in names:
            miss *= 1.0 - weights[n]
        return round(1.0 - miss, 4)

    def _severity(self, names: list[LeakEvidence], rate: float) -> Severity:
        if "moisture" in names or rate >= self.params.critical_rate_lpm:
            return "critical"
        return "warning"

    def _event(
        self, ep: dict[str, Any], phase: str, end_ms: int | None, reason: str
    ) -> LeakSuspected:
        return LeakSuspected(
            boiler=self.boiler,
            site=self.site,
            phase=phase,
            start_ms=int(ep["start"]),
            detected_ms=int(ep["detected"]),
            end_ms=end_ms,
            evidence=list(ep["evidence"]),
            confidence=float(ep["confidence"]),
            leak_rate_lpm=float(ep["rate"]),
            severity=ep["severity"],
            reason=reason[:500],
        )


def _rank(severity: str) -> int:
    return {"info": 0, "warning": 1, "critical": 2}[severity]
