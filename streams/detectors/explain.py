"""The sentences of efficiency anomalies: which kind a started anomaly is, and why.

Kept apart from the state machine so that the classification rules read as one
table (see docs/detections.md, "Efficiency"):

* loss track, loop hotter than baseline at the same IT load and weather -> efficiency_drop
  (fouled exchanger);
* loss track, flow well above baseline -> bypass_open;
* loss track, flow well below baseline with temperatures consistent with IT -> sensor_drift
  (the flow meter reads low);
* loss track otherwise -> efficiency_drop, cause not identified;
* meter track -> sensor_drift, naming the sensor whose residual moved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from heatstream.schemas.derived import Severity
from heatstream.streams.detectors.reading import Reading

if TYPE_CHECKING:
    from heatstream.streams.detectors.efficiency import EfficiencyParams


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _recovery(r: Reading) -> str:
    if r.expected_ratio is None or r.dev is None:
        return f"recovery {r.ratio:.3f} kWh heat per kWh IT (no baseline yet)"
    return (
        f"recovery {r.ratio:.3f} kWh heat per kWh IT against this boiler's learned "
        f"{r.expected_ratio:.3f} at {100 * r.load:.0f} % load ({r.dev:+.1%})"
    )


def classify_loss(r: Reading, p: EfficiencyParams, votes: str) -> tuple[str, Severity, str]:
    dev = r.dev
    critical = (dev is not None and dev <= -p.drop_critical) or r.supply_c >= p.critical_supply_c
    severity: Severity = "critical" if critical else "warning"
    hot, flow = r.hot_k, r.flow_change
    if hot is not None and hot >= p.hot_k:
        assert r.supply_res_k is not None and r.return_res_k is not None
        text = (
            f"The loop runs hotter than this boiler's baseline for the same IT load and "
            f"weather (supply {r.supply_res_k:+.1f} K at {r.supply_c:.1f} °C, return "
            f"{r.return_res_k:+.1f} K, threshold {p.hot_k:.1f} K) in {votes} steady windows; "
            f"{_recovery(r)}: the site heat exchanger passes less heat, it is fouling."
        )
        return "efficiency_drop", severity, text
    head = f"{_capital(_recovery(r))}, threshold -{p.drop:.0%}, in {votes} steady windows"
    if flow is not None and flow >= p.bypass_flow_rise:
        assert r.flow_lpm is not None and r.flow_base_lpm is not None
        text = (
            f"{head}; loop flow {r.flow_lpm:.1f} L/min is {flow:+.0%} over its "
            f"{r.flow_base_lpm:.1f} L/min baseline: water short-circuits the exchanger, a "
            "bypass valve is probably stuck open."
        )
        return "bypass_open", severity, text
    if flow is not None and flow <= -p.flow_drift:
        assert r.flow_lpm is not None and r.flow_base_lpm is not None
        text = (
            f"{head}; the flow reading {r.flow_lpm:.1f} L/min is {flow:+.0%} off its "
            f"{r.flow_base_lpm:.1f} L/min baseline while the loop temperatures match the IT "
            "load: the flow meter is drifting low."
        )
        return "sensor_drift", "warning", text
    return (
        "efficiency_drop",
        severity,
        f"{head}; the loop is not hotter than usual and flow is normal: cause not identified "
        "(heat lost before the meter, or a meter fault).",
    )


def classify_meter(r: Reading, p: EfficiencyParams, votes: str) -> tuple[str, Severity, str]:
    split = r.split_k
    # named as soon as one thermometer leans away alone, even below the split threshold
    leaning = r.one_sensor_moved(p.split_k / 2, p.split_clear_k / 2, p.split_other_share)
    if split is not None and leaning:
        assert r.supply_res_k is not None and r.return_res_k is not None
        supply_moved = abs(r.supply_res_k) >= abs(r.return_res_k)
        name, res, value = (
            ("supply", r.supply_res_k, r.supply_c)
            if supply_moved
            else ("return", r.return_res_k, r.return_c)
        )
        other = r.return_res_k if supply_moved else r.supply_res_k
        text = (
            f"The {name} temperature reads {value:.2f} °C, {res:+.2f} K off what this boiler's "
            f"IT load and the weather imply, while the other side is {other:+.2f} K off "
            f"(loop ΔT {split:+.2f} K from baseline, threshold {p.split_k:.1f} K) in {votes} "
            f"steady windows; {_recovery(r)}: the {name} temperature sensor is drifting."
        )
        return "sensor_drift", "warning", text
    flow = r.flow_change
    if r.erf > p.max_plausible_erf:
        what = f"heat out / (IT + aux) = {r.erf:.3f}, more than the boiler consumes"
    else:
        what = _recovery(r)
    sensor = (
        f"the flow meter reads {flow:+.0%} off its baseline"
        if flow is not None and abs(flow) >= p.flow_drift
        else "a heat-meter sensor reads high"
    )
    text = f"{_capital(what)}, in {votes} steady windows: physically implausible, {sensor} (drift)."
    return "sensor_drift", "warning", text


def end_reason(kind: str, r: Reading, p: EfficiencyParams, minutes: float) -> str:
    return (
        f"Back to normal for {p.off_n} consecutive steady windows ({_recovery(r)}"
        + (
            f"; supply {r.supply_res_k:+.1f} K, return {r.return_res_k:+.1f} K from baseline"
            if r.supply_res_k is not None and r.return_res_k is not None
            else ""
        )
        + f"); the {kind.replace('_', ' ')} lasted {minutes:.0f} min."
    )
