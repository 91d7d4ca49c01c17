"""Run the stack's async checks from synchronous callers (the CLI, sync fixtures).

Spawning stays in the caller's thread (see `process.spawn`); only the network
round trips run here, in a fresh event loop, or in a helper thread when the
caller already runs one (an async test calling `stack.status()`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion and return its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="heatstream-stack") as pool:
        return pool.submit(asyncio.run, coro).result()
