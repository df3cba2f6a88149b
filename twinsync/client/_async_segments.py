"""The asyncio client's methods for the fleet and segments: devices, segment changes, sizes,
migration, profiles, share alerts and the live stream (a part of
:class:`~twinsync.client.AsyncClient`)."""

from __future__ import annotations

from datetime import timedelta

from ._aiohttp import AsyncSegmentStream
from ._async_core import AsyncClientCore
from ._calls_core import Time
from ._results import (
    DeviceList,
    SegmentChanges,
)
from ._segment_results import (
    SegmentMigration,
    SegmentProfiles,
    SegmentShareAlerts,
    SegmentSizes,
)

__all__ = ["AsyncSegmentMethods"]


class AsyncSegmentMethods(AsyncClientCore):
    """AsyncClient methods: the fleet and segments: devices, segment changes, sizes, migration,
    profiles, share alerts and the live stream."""

    # -- fleet and segments ---------------------------------------------------------------
    async def list_devices(self) -> DeviceList:
        """The brand's devices: online, last seen, models."""
        return await self._send(self._calls.list_devices())

    async def list_segment_changes(
        self,
        product: str,
        *,
        start: Time | None = None,
        end: Time | None = None,
        limit: int | None = None,
    ) -> SegmentChanges:
        """Segment changes of ``product``'s twins in [start, end), oldest first."""
        return await self._send(
            self._calls.list_segment_changes(product, start=start, end=end, limit=limit)
        )

    async def get_segment_sizes(
        self,
        product: str,
        *,
        model: str | None = None,
        start: Time | None = None,
        end: Time | None = None,
        step: str | timedelta | None = None,
    ) -> SegmentSizes:
        """Twins per (model, segment) of ``product`` at start, start + ``step``, ... < end
        (point in time; ``model``: only what that model version scored)."""
        call = self._calls.get_segment_sizes(product, model=model, start=start, end=end, step=step)
        return await self._send(call)

    async def get_segment_migration(
        self, product: str, *, from_: Time | None = None, to: Time | None = None
    ) -> SegmentMigration:
        """Who moved from which segment to which between ``from_`` and ``to``."""
        return await self._send(self._calls.get_segment_migration(product, from_=from_, to=to))

    async def get_segment_profile(
        self, product: str, *, model: str | None = None, top: int | None = None
    ) -> SegmentProfiles:
        """Per model version and segment of ``product``: size, share and the ``top``
        features that set it apart from the population, in numbers and words."""
        return await self._send(self._calls.get_segment_profile(product, model=model, top=top))

    async def get_segment_share_alerts(
        self,
        product: str,
        *,
        model: str | None = None,
        at: Time | None = None,
        baseline: int | None = None,
        k: int | None = None,
    ) -> SegmentShareAlerts:
        """Each segment's share at ``at`` (default now) against its normal variation over
        the ``baseline`` days before; ``alerts`` counts those beyond ``k`` sigma."""
        call = self._calls.get_segment_share_alerts(
            product, model=model, at=at, baseline=baseline, k=k
        )
        return await self._send(call)

    def stream_segment_changes(
        self, product: str, *, since: Time | None = None, last_event_id: str | None = None
    ) -> AsyncSegmentStream:
        """The live stream of ``product``'s segment changes (replayed from ``since`` or
        ``last_event_id`` first); use it in an ``async with`` block."""
        request = self._calls.stream_segment_changes(
            product, since=since, last_event_id=last_event_id
        )
        return self._transport.stream(request)
