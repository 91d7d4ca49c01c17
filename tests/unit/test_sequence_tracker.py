"""The intake's sequence tracker: its saved state is exactly its seen set, whatever arrives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from heatstream.streams.intake import SequenceTracker


def _runs_by_walking(values: set[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in sorted(values):
        if runs and runs[-1][1] == v - 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


@settings(max_examples=300, deadline=None)
@given(
    horizon=st.integers(1, 12),
    start=st.integers(0, 40),
    steps=st.lists(st.integers(-15, 6), min_size=1, max_size=80),
)
def test_saved_runs_are_the_seen_set(horizon: int, start: int, steps: list[int]) -> None:
    # Mostly in order, with repeats, steps back (late, duplicate, too old) and jumps (gaps).
    tracker = SequenceTracker(horizon)
    seq = start
    for step in steps:
        seq = max(0, seq + step)
        tracker.observe(seq)
        state = tracker.to_state()
        assert state["s"] == _runs_by_walking(tracker.seen)
        assert SequenceTracker.from_state(state).seen == tracker.seen


def test_one_run_and_a_gap() -> None:
    tracker = SequenceTracker(100)
    for seq in [*range(10, 20), *range(21, 30)]:
        tracker.observe(seq)
    assert tracker.to_state()["s"] == [(10, 19), (21, 29)]
    tracker.observe(20)
    assert tracker.to_state()["s"] == [(10, 29)]
