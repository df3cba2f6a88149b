"""Waiting on real processes: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, within: float = 30, every: float = 0.1
) -> bool:
    """Poll ``check`` until it is true; return its last verdict after ``within`` seconds.

    The systems under test are other processes (broker, database, hubs), so there is no
    event to await: polling with a deadline is the honest way to wait for them.
    """
    deadline = time.monotonic() + within
    while True:
        verdict = check()
        if not isinstance(verdict, bool):
            verdict = await verdict
        if verdict or time.monotonic() >= deadline:
            return verdict
        await asyncio.sleep(every)


async def idle() -> None:
    """A fault that breaks nothing (for runs that only need the stream to complete)."""
