"""`summarise_many` (a gateway's windows at once) equals `summarise` per window, bit for bit.

The window engine closes the windows of a gateway's boilers in one
`summarise_many` call; every figure it gives must be exactly what `summarise`
gives for each window alone, whatever the windows hold: empty ones, one
sample, gaps around max_gap, NaN holes, absent channels, samples on both
sides of the edges, windows of different boilers and times side by side.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from heatstream.schemas.telemetry import CHANNEL_NAMES
from heatstream.streams.stats import WindowInput, summarise, summarise_many
from tests.unit.test_stats_vectorised import T0, WINDOW_MS, windows

N = len(CHANNEL_NAMES)


def _input(case: dict, k: int, start: int, length: int) -> WindowInput:
    t = case["t_ms"]
    values = np.full((N + 1, t.size), np.nan)  # + the engine's quarantine row
    values[N] = 0.0
    for name, column in case["cols"].items():
        values[CHANNEL_NAMES.index(name)] = column
    return WindowInput(
        boiler=f"b{k}",
        gateway="gw",
        site="site",
        start_ms=start,
        end_ms=start + length,
        t_ms=t,
        values=values,
        quarantined=case["quarantined"],
        meter_on_supply=case["meter_on_supply"],
    )


def _alone(w: WindowInput, max_gap_ms: float) -> object:
    # The channels the engine hands `summarise`: those with a finite value, in
    # CHANNEL_NAMES order.
    cols = {n: w.values[i] for i, n in enumerate(CHANNEL_NAMES) if np.isfinite(w.values[i]).any()}
    return summarise(
        w.boiler, w.gateway, w.site, w.start_ms, w.end_ms, w.t_ms, cols,
        w.quarantined, max_gap_ms, meter_on_supply=w.meter_on_supply,
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(windows(), st.integers(-20_000, 20_000), st.sampled_from([WINDOW_MS, 30_000])),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from([5_000.0, 10_000.0, 12_500.5]),
)
def test_summarise_many_equals_summarise_per_window(
    cases: list[tuple[dict, int, int]], max_gap_ms: float
) -> None:
    inputs = [_input(case, k, T0 + shift, length) for k, (case, shift, length) in enumerate(cases)]
    got = summarise_many(inputs, max_gap_ms)
    want = [_alone(w, max_gap_ms) for w in inputs]
    assert got == want  # dataclass equality: every float identical, not merely close


def test_a_gateway_minute_of_realistic_boilers_is_identical() -> None:
    # 100 boilers at 1 Hz from 10 s before to 10 s after the window, some with
    # a flow hole, some without a supply flow meter, some metered on supply.
    rng = np.random.default_rng(11)
    inputs = []
    for k in range(100):
        t = T0 - 10_000 + np.arange(80, dtype=np.int64) * 1_000 + k % 7
        values = 20.0 + rng.standard_normal((N + 1, t.size))
        values[N] = 0.0
        if k % 5 == 0:
            values[CHANNEL_NAMES.index("flow_lpm"), 30:33] = np.nan
        if k % 3 == 0:
            values[CHANNEL_NAMES.index("supply_flow_lpm")] = np.nan
        inputs.append(
            WindowInput(f"b{k}", "gw", "site", T0, T0 + WINDOW_MS, t, values, k % 2, k % 4 == 0)
        )
    got = summarise_many(inputs, 10_000.0)
    assert got == [_alone(w, 10_000.0) for w in inputs]
    assert [w.samples for w in got] == [60] * 100
    assert sum(w.coverage < 1.0 for w in got) == 20  # the flow holes, and only them


def test_no_windows_no_stats() -> None:
    assert summarise_many([], 10_000.0) == []
