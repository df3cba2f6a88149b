"""Supervision of the hub's background loops: a transient error restarts one, never the hub.

Each loop (ingest, publisher, feed, webhooks, relinks, removals, retention) runs until it
is cancelled. If one raises, :func:`supervise` logs it with its traceback, counts it in
``twinsync_hub_task_restarts_total{task}`` and starts it again after a capped, jittered
backoff (0.5 s doubling to 30 s; back to 0.5 s once a run lasted a minute). The loops
already retry the failures they expect (InfluxDB away); this catches the rest: a SQLite
file that cannot be opened while descriptors run out, a bug hit by one odd record.

Fatal, on purpose: :class:`ConfigError` (a setting is wrong; restarting cannot fix it and
the operator must see the process stop with the message) and anything that is not an
``Exception`` (cancellation, KeyboardInterrupt, SystemExit). Cancellation always
propagates, so shutdown cancels and awaits every loop as before.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from ._errors import ConfigError
from ._metrics import Metrics

__all__ = ["FIRST_DELAY_S", "HEALTHY_AFTER_S", "MAX_DELAY_S", "supervise"]

log = logging.getLogger("cloud_hub")

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
#: a run this long resets the backoff: the next failure is a new incident
HEALTHY_AFTER_S = 60.0


def _fatal(exc: Exception) -> bool:
    if isinstance(exc, ExceptionGroup):  # from a loop's own TaskGroup
        return exc.subgroup(ConfigError) is not None
    return isinstance(exc, ConfigError)


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    metrics: Metrics,
    *,
    first_delay_s: float = FIRST_DELAY_S,
    max_delay_s: float = MAX_DELAY_S,
    healthy_after_s: float = HEALTHY_AFTER_S,
) -> None:
    """Run ``run()`` until cancelled, restarting it whenever it raises or returns."""
    loop = asyncio.get_running_loop()
    delay = first_delay_s
    while True:
        started = loop.time()
        try:
            await run()
        except Exception as exc:
            if _fatal(exc):
                raise
            why: str = repr(exc)
            failure: Exception | None = exc
        else:
            # The loops run until cancelled: returning is a bug, but not the hub's end.
            why, failure = "it returned", None
        if loop.time() - started >= healthy_after_s:
            delay = first_delay_s
        metrics.inc("twinsync_hub_task_restarts_total", task=name)
        log.error(
            "hub task %s stopped (%s); restarting in %.1fs", name, why, delay, exc_info=failure
        )
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        delay = min(delay * 2, max_delay_s)
