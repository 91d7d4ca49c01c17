"""The processor's parameters from the settings: one mapping for every caller.

The live worker (`streams/app.py`) and `heatstream replay` (`streams/replay.py`)
build their `Processor`s from the same `ProcessorParams`, so that a replay
computes what the worker computed. Kept apart from the Faust app so that replay
does not import Faust.
"""

from __future__ import annotations

from heatstream.settings import Settings
from heatstream.streams.processor import ProcessorParams
from heatstream.streams.windows import WindowParams


def processor_params(settings: Settings) -> ProcessorParams:
    """The windowing and silence thresholds of `settings.streams`, in milliseconds."""
    s = settings.streams
    return ProcessorParams(
        windows=WindowParams(
            window_ms=s.window_s * 1000,
            allowed_lateness_ms=s.allowed_lateness_s * 1000,
            max_gap_ms=int(s.max_gap_s * 1000),
            offline_hold_ms=s.offline_hold_s * 1000,
            close_spread_ms=int(s.close_spread_s * 1000),
        ),
        gateway_silent_ms=s.gateway_silent_s * 1000,
    )
