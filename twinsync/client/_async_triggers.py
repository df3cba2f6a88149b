"""The asyncio client's methods for triggers: rules, their events and the live stream (a part
of :class:`~twinsync.client.AsyncClient`)."""

from __future__ import annotations

from ._aiohttp import AsyncSegmentStream
from ._async_core import AsyncClientCore
from ._trigger_results import (
    TriggerEvents,
    TriggerRuleCreated,
    TriggerRuleDeleted,
    TriggerRuleOne,
    TriggerRules,
)

__all__ = ["AsyncTriggerMethods"]


class AsyncTriggerMethods(AsyncClientCore):
    """AsyncClient methods: triggers: rules, their events and the live stream."""

    # -- triggers ---------------------------------------------------------------------------
    async def create_trigger(
        self,
        name: str,
        kind: str,
        *,
        product: str | None = None,
        threshold: float | None = None,
        direction: str | None = None,
        tag: str | None = None,
        change: str | None = None,
        where: str | None = None,
        webhook: str | None = None,
    ) -> TriggerRuleCreated:
        """Register a trigger rule (docs/brand-api.md, "Triggers"): ``kind`` churn_risk
        (``threshold``, ``direction``), segment_change, tag (``tag``, ``change``) or
        anomaly; ``where`` restricts it to matching twins; ``webhook`` gets its events
        signed with the answer's ``secret`` (shown once)."""
        call = self._calls.create_trigger(
            name,
            kind,
            product=product,
            threshold=threshold,
            direction=direction,
            tag=tag,
            change=change,
            where=where,
            webhook=webhook,
        )
        return await self._send(call)

    async def list_triggers(self) -> TriggerRules:
        """Every trigger rule of the brand."""
        return await self._send(self._calls.list_triggers())

    async def get_trigger(self, rule_id: str) -> TriggerRuleOne:
        """One trigger rule."""
        return await self._send(self._calls.get_trigger(rule_id))

    async def delete_trigger(self, rule_id: str) -> TriggerRuleDeleted:
        """Remove a trigger rule and its undelivered events."""
        return await self._send(self._calls.delete_trigger(rule_id))

    async def list_trigger_events(
        self, *, limit: int | None = None, after: int | None = None
    ) -> TriggerEvents:
        """The newest trigger events, or (``after`` a seq) those after it, oldest first."""
        return await self._send(self._calls.list_trigger_events(limit=limit, after=after))

    def stream_trigger_events(
        self, *, after: int | None = None, last_event_id: str | None = None
    ) -> AsyncSegmentStream:
        """The live trigger events (after ``after`` or ``last_event_id``; else from
        now); use it in an ``async with`` block and reopen it with
        ``last_event_id=stream.last_event_id`` to resume after a lost connection."""
        request = self._calls.stream_trigger_events(after=after, last_event_id=last_event_id)
        return self._transport.stream(request)
