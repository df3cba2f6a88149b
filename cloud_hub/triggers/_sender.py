"""Deliver queued trigger events to their rules' webhooks, and follow the customer's
rights (objection, consent, erasure) into the trigger tables.

The sender is a background task of the hub like the privacy webhook sender
(cloud_hub.privacy._webhooks), and shares its signing and egress checks
(``post_signed``): every second it claims what is due (each the oldest waiting event of
its rule and twin, so a twin's events arrive in order), POSTs each signed with its
rule's secret, and backs off 1 s doubling to 5 minutes on a failure; a failed round
(the state store down) is logged, counted and retried. It also applies the event log's
retention once a minute.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from cloud_hub._metrics import Metrics
from cloud_hub.privacy import EgressPolicy, post_signed, send_forever
from protocol import Clock

from ._events import TriggerEvents

__all__ = ["TriggerSender", "follow_privacy"]

log = logging.getLogger("cloud_hub.triggers")

_PRUNE_EVERY_S = 60.0
#: the consent purposes that are profiling (cloud_hub.privacy._objection)
_PROFILING = ("analytics", "personalization")


def follow_privacy(
    events: TriggerEvents, clock: Clock, brand: str, event: str, data: dict[str, Any]
) -> None:
    """A privacy event (what the brand's privacy webhook also gets): an erasure forgets
    the twins' trigger events; an objection or consent to profiling withdrawn holds their
    triggers; consent to profiling given again releases them; a key rotation's relink
    moves a hold to the twin's new id."""
    receipt = data.get("receipt")
    twins = [str(t) for t in (receipt.get("twins", []) if isinstance(receipt, dict) else [])]
    if event == "erasure" and twins:
        events.forget(brand, twins)
    elif event == "objection" and twins:
        events.hold(brand, twins, "objection", clock.now_ms())
    elif event == "twin_relinked" and data.get("old") and data.get("new"):
        events.relink(brand, str(data["old"]), str(data["new"]))
    elif event == "consent":
        purposes = data.get("purposes", {})
        chosen = [purposes[p] for p in _PROFILING if p in purposes]
        twins = [str(t) for t in data.get("twins", [])]
        if twins and False in chosen:
            events.hold(brand, twins, "consent withdrawn", clock.now_ms())
        elif twins and True in chosen:
            events.release(brand, twins)


class TriggerSender:
    """Sends due trigger events; :meth:`run` until cancelled (owned by the hub)."""

    def __init__(
        self, *, events: TriggerEvents, egress: EgressPolicy, metrics: Metrics, clock: Clock
    ) -> None:
        self._events = events
        self._egress = egress
        self._metrics = metrics
        self._clock = clock
        self._pruned_at = float("-inf")  # loop time of the last prune (monotonic)

    async def run(self) -> None:
        """Send what is due every second, prune the log every minute; only cancellation
        ends this (a failed round is logged, counted and retried: ``send_forever``)."""
        await send_forever(
            self._round,
            egress=self._egress,
            metrics=self._metrics,
            metric="twinsync_hub_trigger_webhooks_total",
            what="trigger delivery",
        )

    async def _round(self, session: aiohttp.ClientSession) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._pruned_at >= _PRUNE_EVERY_S:
            await asyncio.to_thread(self._events.prune, self._clock.now_ms())
            self._pruned_at = loop.time()
        await self.round(session)

    async def round(self, session: aiohttp.ClientSession) -> int:
        """Send every event due now; return how many were delivered."""
        delivered = 0
        for queue_id, brand, url, secret, body, attempts in await asyncio.to_thread(
            self._events.due, self._clock.now_ms()
        ):
            ok, why, result = await post_signed(
                session, self._egress, url, secret, body.encode(), self._clock
            )
            if ok:
                await asyncio.to_thread(self._events.delivered, queue_id)
                self._metrics.inc("twinsync_hub_trigger_webhooks_total", result="delivered")
                delivered += 1
            else:
                now = self._clock.now_ms()
                await asyncio.to_thread(self._events.retry_later, queue_id, attempts, now)
                self._metrics.inc("twinsync_hub_trigger_webhooks_total", result=result)
                log.warning("trigger webhook of brand %s failed (%s); retrying", brand, why)
        return delivered
