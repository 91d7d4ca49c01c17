"""Data-quality detectors: stuck sensors, clock skew, gateway silence."""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from heatstream.streams.detectors import (
    ClockSkewTracker,
    GatewayLiveness,
    QualityDetector,
    QualityParams,
    SkewParams,
    WindowContext,
    clock_skew,
)
from heatstream.streams.detectors.quality import (
    ClockSkewTracker as ClockSkewTrackerFromQuality,
)
from heatstream.streams.detectors.quality import GatewayLiveness as GatewayLivenessFromQuality
from heatstream.streams.detectors.quality import clock_skew as clock_skew_from_quality
from tests.unit.test_detect_synthetic import (
    Scenario,
    const,
    minute_of,
    ramp,
    run,
    run_with_restart,
    step,
    windows,
)

BASE = Scenario(minutes=200, start_c=20.0, it=ramp(0, 15, 0.0, 90.0))
T = 1_735_689_600_000


def quality(sc: Scenario, params: QualityParams | None = None) -> list:
    p = {"quality": params} if params else None
    return [(i, e) for i, _, e in run(sc, kinds=("quality",), params=p)]


# -- stuck sensors -------------------------------------------------------------------------


def test_stuck_sensor_starts_at_the_first_stuck_window_and_ends_when_it_varies() -> None:
    events = quality(replace(BASE, stuck={"supply_temp_c": (100, 160)}))
    assert [(e.kind, e.channel, e.end_ms is None) for _, e in events] == [
        ("sensor_stuck", "supply_temp_c", True),
        ("sensor_stuck", "supply_temp_c", False),
    ]
    (i, start), (_, end) = events
    assert minute_of(start.start_ms) == 100 and i + 1 - 100 == 5
    assert start.boiler == "boiler-0001" and start.gateway == "gw-01" and start.site == "site-01"
    assert end.start_ms == start.start_ms and minute_of(end.end_ms) == 160
    assert end.count >= 60 and "varies again" in end.detail
    assert "exactly" in start.detail


def test_every_noisy_channel_is_watched() -> None:
    for channel in ("return_temp_c", "flow_lpm", "pressure_bar", "it_power_kw"):
        events = quality(replace(BASE, stuck={channel: (100, 200)}))
        assert [e.channel for _, e in events] == [channel], channel


def test_healthy_boiler_with_devices_off_and_flat_channels_raises_nothing() -> None:
    # servers off for an hour (IT reads exactly 0), the pump stopped with them (flow 0),
    # make-up flow always 0, moisture flat: none of it is a stuck sensor
    sc = replace(
        BASE,
        it=lambda m: 0.0 if 60 <= m < 120 else 90.0,
        pump=lambda m: 0.0 if 60 <= m < 120 else 1.0,
        moisture_pct=const(3.0),
    )
    assert quality(sc) == []


def test_it_power_pinned_at_a_planned_cap_is_not_stuck() -> None:
    ws = windows(replace(BASE, it=const(40.0), cap_kw=const(40.0), noise=1.0))
    det = QualityDetector("boiler-0001", "site-01")
    out = []
    for w, ctx in ws[:40]:
        out += det.update(w, ctx)
    # now feed windows where the IT reading is exactly the cap in every sample
    for w, ctx in ws[40:80]:
        flat = replace(
            w,
            spread={**w.spread, "it_power_kw": 0.0},
            last_values={**w.last_values, "it_power_kw": 40.0},
        )
        out += det.update(flat, ctx)
    assert out == []
    # without the cap in the context the same readings are a stuck sensor
    det2 = QualityDetector("boiler-0001", "site-01")
    nocap = WindowContext(nominal_it_kw=100.0, loop_volume_l=500.0)
    out2 = []
    for w, _ in ws[:40]:
        out2 += det2.update(w, nocap)
    for w, _ in ws[40:80]:
        flat = replace(
            w,
            spread={**w.spread, "it_power_kw": 0.0},
            last_values={**w.last_values, "it_power_kw": 40.0},
        )
        out2 += det2.update(flat, nocap)
    assert [e.channel for e in out2] == ["it_power_kw"]


def test_a_channel_never_seen_varying_is_not_judged() -> None:
    events = quality(replace(BASE, stuck={"supply_temp_c": (0, 200)}))
    assert events == []


def test_per_channel_epsilon() -> None:
    sc = replace(BASE, stuck={"pressure_bar": (100, 200)})
    loose = QualityParams(channel_epsilon=(("supply_temp_c", 0.5),))
    # a 0.5 K epsilon on the supply makes its noise look flat: reported as stuck
    events = quality(sc, loose)
    assert {e.channel for _, e in events} == {"pressure_bar", "supply_temp_c"}


def test_stuck_state_round_trip() -> None:
    ws = windows(replace(BASE, stuck={"supply_temp_c": (100, 160), "flow_lpm": (150, 170)}))
    whole = run_with_restart(ws, -1, "quality")
    assert len(whole) == 4
    for cut in (0, 50, 102, 104, 105, 155, 161, 199):
        assert run_with_restart(ws, cut, "quality") == whole


# -- clock skew --------------------------------------------------------------------------


def test_clock_ahead_is_skew_on_the_first_frame() -> None:
    issue = clock_skew(T + 60_000, T, "gw-01", "site-01", max_skew_ms=5_000)
    assert issue is not None and issue.kind == "clock_skew" and issue.start_ms == T
    assert "60.0 s ahead" in issue.detail
    assert clock_skew(T + 4_000, T, "gw-01", "site-01", max_skew_ms=5_000) is None


def test_clock_behind_is_never_skew_for_one_frame() -> None:
    assert clock_skew(T - 6 * 3_600_000, T, "gw-01", "site-01") is None


def test_helpers_are_exported_from_quality() -> None:
    assert clock_skew_from_quality is clock_skew
    assert GatewayLivenessFromQuality is GatewayLiveness
    assert ClockSkewTrackerFromQuality is ClockSkewTracker


def _frames(start: int, seconds: int, lag_ms: object) -> list[tuple[int, int]]:
    """(event, ingest) of one frame a second; lag_ms(i) = ingest - event."""
    return [(start + i * 1000 - lag_ms(i), start + i * 1000) for i in range(seconds)]  # type: ignore[operator]


def test_tracker_reports_one_episode_for_a_clock_ahead() -> None:
    tracker = ClockSkewTracker()
    frames = _frames(T, 120, lambda i: 0) + _frames(T + 120_000, 300, lambda i: -30_000)
    frames += _frames(T + 420_000, 60, lambda i: 0)
    out = [x for e, g in frames for x in tracker.observe("gw-01", "site-01", e, g)]
    assert [x.end_ms is None for x in out] == [True, False]
    assert out[0].start_ms == T + 120_000 and out[1].end_ms == T + 420_000
    assert out[1].count == 300


def test_tracker_tells_a_constant_lag_from_a_draining_backlog() -> None:
    p = SkewParams()
    # a gateway back from a 2-hour outage sends its spool 20x faster than real time
    backlog = ClockSkewTracker(p)
    frames = [(T + i * 20_000, T + 7_200_000 + i * 1000) for i in range(360)]
    assert [x for e, g in frames for x in backlog.observe("gw-01", "site-01", e, g)] == []
    # a gateway whose clock is 3 minutes behind, live
    behind = ClockSkewTracker(p)
    frames = _frames(T, 900, lambda i: 180_000 + (i % 7) * 100)
    out = [x for e, g in frames for x in behind.observe("gw-02", "site-01", e, g)]
    assert len(out) == 1 and "behind" in out[0].detail
    assert out[0].start_ms == T  # dated from when the constant lag began


def test_tracker_reports_a_clock_90_s_behind_after_five_minutes() -> None:
    tracker = ClockSkewTracker()
    out = []
    for k, (e, g) in enumerate(_frames(T, 400, lambda i: 90_000 + (i % 3) * 200)):
        for issue in tracker.observe("gw-01", "site-01", e, g):
            out.append((k, issue))
    assert len(out) == 1
    k, issue = out[0]
    assert 300 <= k <= 301 and issue.start_ms == T and "behind" in issue.detail


def test_tracker_state_round_trip() -> None:
    frames = _frames(T, 200, lambda i: 0) + _frames(T + 200_000, 100, lambda i: -10_000)
    frames += _frames(T + 300_000, 50, lambda i: 0)
    whole = ClockSkewTracker()
    expected = [x for e, g in frames for x in whole.observe("gw-01", "site-01", e, g)]
    for cut in (0, 150, 250, 305, 349):
        t = ClockSkewTracker()
        got = []
        for k, (e, g) in enumerate(frames):
            if k == cut:
                t = ClockSkewTracker.from_state(json.loads(json.dumps(t.to_state())))
            got += t.observe("gw-01", "site-01", e, g)
        assert got == expected


# -- gateway liveness ----------------------------------------------------------------------


def _partition(silent_from: int, silent_to: int, backlog: bool) -> list[tuple[str, int]]:
    """Two gateways, a frame a second each; gw-02 stops sending in [from, to) seconds."""
    frames = []
    for s in range(0, 1800):
        frames.append(("gw-01", T + s * 1000))
        if not silent_from <= s < silent_to:
            frames.append(("gw-02", T + s * 1000))
        if backlog and s == silent_to:
            # on return it sends its spool first: old event times, arriving now
            frames.extend(("gw-02", T + b * 1000) for b in range(silent_from, silent_to))
    return frames


def _observe(live: GatewayLiveness, frames: list[tuple[str, int]]) -> list:
    out = []
    for gw, t in frames:
        out += live.observe(gw, "site-01", t)
    return out


def test_silent_gateway_starts_and_ends() -> None:
    out = _observe(GatewayLiveness(silent_ms=300_000), _partition(600, 1200, backlog=False))
    assert [(x.kind, x.gateway, x.end_ms is None) for x in out] == [
        ("gateway_silent", "gw-02", True),
        ("gateway_silent", "gw-02", False),
    ]
    assert out[0].start_ms == T + 599_000  # its last event time
    assert out[1].end_ms == T + 1_200_000 and out[1].start_ms == out[0].start_ms


def test_draining_backlog_does_not_flap() -> None:
    out = _observe(GatewayLiveness(silent_ms=300_000), _partition(600, 1200, backlog=True))
    assert [x.end_ms is None for x in out] == [True, False]


def test_short_gaps_are_not_silence() -> None:
    assert _observe(GatewayLiveness(silent_ms=300_000), _partition(600, 840, backlog=False)) == []


@settings(max_examples=20, deadline=None)
@given(cut=st.integers(0, 3000))
def test_liveness_state_round_trip(cut: int) -> None:
    frames = _partition(600, 1200, backlog=True)
    expected = _observe(GatewayLiveness(), frames)
    live = GatewayLiveness()
    got = []
    for k, (gw, t) in enumerate(frames):
        if k == cut:
            live = GatewayLiveness.from_state(json.loads(json.dumps(live.to_state())))
        got += live.observe(gw, "site-01", t)
    assert got == expected


def test_wall_clock_check_is_separate_from_the_projection() -> None:
    live = GatewayLiveness(silent_ms=300_000)
    live.observe("gw-01", "site-01", T)
    before = live.to_state()
    out = live.check_wall(T + 400_000)
    assert [(x.kind, x.end_ms) for x in out] == [("gateway_offline", None)]
    assert live.check_wall(T + 500_000) == []  # reported once
    assert live.to_state() == before  # wall-clock flags are not part of the state
    assert live.observe("gw-01", "site-01", T + 500_000) == []  # observe never ends it
    back = live.check_wall(T + 510_000)
    assert [(x.kind, x.end_ms) for x in back] == [("gateway_offline", T + 500_000)]


def test_a_clock_jumping_ahead_silences_nobody_when_flagged() -> None:
    def run_pair(flag: bool) -> list:
        live, out = GatewayLiveness(silent_ms=60_000), []
        for s in range(300):
            t = T + s * 1000
            out += live.observe("gw-01", "site-01", t)
            skewed = t + 600_000  # gw-02's clock jumped 10 minutes ahead
            ok = clock_skew(skewed, t, "gw-02", "site-01") is None if flag else True
            out += live.observe("gw-02", "site-01", skewed, advances_clock=ok)
        return out

    assert run_pair(flag=True) == []
    assert "gw-01" in {x.gateway for x in run_pair(flag=False)}  # what the flag prevents


def test_partition_max_given_by_the_caller() -> None:
    live = GatewayLiveness(silent_ms=60_000)
    assert live.observe("gw-01", "site-01", T) == []
    out = live.observe("gw-02", "site-01", T + 1000, partition_max_ms=T + 120_000)
    assert [x.gateway for x in out] == ["gw-01"]


def test_stuck_and_silent_on_one_run() -> None:
    # a stuck sensor in a fleet window run is reported for its own boiler only
    a = quality(replace(BASE, boiler="boiler-0002", seed=4))
    b = quality(replace(BASE, boiler="boiler-0003", seed=5, stuck={"flow_lpm": (100, 200)}))
    assert a == [] and {e.boiler for _, e in b} == {"boiler-0003"}
    assert step(0, 0, 0)(1) == 0
