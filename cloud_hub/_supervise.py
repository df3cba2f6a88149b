"""Supervision of the hub's background loops: a transient error restarts one, never the hub.

Each loop (ingest, publisher, feed, webhooks, relinks, removals, retention) runs until it
is cancelled. If one raises, :func:`supervise` logs it with its traceback, counts it in
``twinsync_hub_task_restarts_total{task}`` and starts it again after a capped, jittered
backoff (0.5 s doubling to 30 s; back to 0.5 s once a run lasted a minute). The loops
already retry the failures they expect (InfluxDB away); this catches the rest: the state
store unavailable (ingest stops rather than decide a device is unknown or write a twin it
cannot check: the broker redelivers what it held when the next session starts), a file
that cannot be opened while descriptors run out, a bug hit by one odd record. An outage
(an error marked ``retryable``) is logged by its message, anything else with its
traceback.

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

from ._errors import CloudHubError, ConfigError
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


def _outage(exc: Exception) -> bool:
    if isinstance(exc, ExceptionGroup):
        return all(_outage(e) for e in exc.exceptions if isinstance(e, Exception))
    return isinstance(exc, CloudHubError) and bool(getattr(exc, "retryable", False))


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
    # How long a run lasted is the loop's monotonic time, not the hub's (wall) clock.
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
            # An outage the loop could not ride out (the state store or InfluxDB away,
            # ``retryable``) needs no traceback: its message says what is down.
            failure: Exception | None = None if _outage(exc) else exc
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
