"""The asyncio client's methods for twins: the twin list, a twin, its history and consent (a
part of :class:`~twinsync.client.AsyncClient`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import timedelta

from ._async_core import AsyncClientCore
from ._calls_core import Time
from ._results import (
    HistoryBuckets,
    HistoryPage,
    HistoryPoint,
    Twin,
    TwinConsent,
    TwinPage,
)

__all__ = ["AsyncTwinMethods"]


class AsyncTwinMethods(AsyncClientCore):
    """AsyncClient methods: twins: the twin list, a twin, its history and consent."""

    # -- twins ------------------------------------------------------------------------------
    async def list_twins(
        self,
        *,
        where: str | None = None,
        sort: str | None = None,
        fields: Iterable[str] | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> TwinPage:
        """A page of twins matching ``where`` (all without), in ``sort`` order, each
        item with the values of ``fields`` (``next`` names the following page)."""
        call = self._calls.list_twins(
            where=where, sort=sort, fields=fields, limit=limit, after=after
        )
        return await self._send(call)

    async def iter_twins(
        self, *, where: str | None = None, sort: str | None = None, limit: int | None = None
    ) -> AsyncIterator[str]:
        """Every twin id matching ``where`` (all without), in ``sort`` order, following
        the pages (``limit`` ids a page)."""
        page = await self.list_twins(where=where, sort=sort, limit=limit)
        for twin in page.twins:
            yield twin
        while page.next is not None:
            page = await self._send(self._calls.follow("list_twins", page.next, TwinPage))
            for twin in page.twins:
                yield twin

    async def get_twin(self, twin: str) -> Twin:
        """A twin's merged current state and scores."""
        return await self._send(self._calls.get_twin(twin))

    async def get_twin_history(
        self,
        twin: str,
        field: str,
        *,
        start: Time | None = None,
        end: Time | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> HistoryPage:
        """A page of ``field``'s raw points in [start, end) (default: the last 7 days)."""
        call = self._calls.get_twin_history(
            twin, field, start=start, end=end, limit=limit, after=after
        )
        return await self._send(call)

    async def iter_twin_history(
        self,
        twin: str,
        field: str,
        *,
        start: Time | None = None,
        end: Time | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[HistoryPoint]:
        """Every raw point of ``field`` in the range, following the pages."""
        page = await self.get_twin_history(twin, field, start=start, end=end, limit=limit)
        for point in page.points:
            yield point
        while page.next is not None:
            page = await self._send(self._calls.follow("get_twin_history", page.next, HistoryPage))
            for point in page.points:
                yield point

    async def get_twin_history_buckets(
        self,
        twin: str,
        field: str,
        every: str | timedelta,
        *,
        start: Time | None = None,
        end: Time | None = None,
    ) -> HistoryBuckets:
        """``field``'s history in buckets of ``every`` ("15m", "1h", a timedelta)."""
        call = self._calls.get_twin_history_buckets(twin, field, every, start=start, end=end)
        return await self._send(call)

    async def get_twin_consent(self, twin: str) -> TwinConsent:
        """A twin's consent: the current choice per purpose and the ledger."""
        return await self._send(self._calls.get_twin_consent(twin))
