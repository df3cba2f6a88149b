"""The blocking client's methods for twins: the twin list, a twin, its history and consent (a
part of :class:`~twinsync.client.Client`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta

from ._calls_core import Time
from ._results import (
    HistoryBuckets,
    HistoryPage,
    HistoryPoint,
    Twin,
    TwinConsent,
    TwinPage,
)
from ._sync_core import ClientCore

__all__ = ["TwinMethods"]


class TwinMethods(ClientCore):
    """Client methods: twins: the twin list, a twin, its history and consent."""

    # -- twins ------------------------------------------------------------------------------
    def list_twins(
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
        return self._send(call)

    def iter_twins(
        self, *, where: str | None = None, sort: str | None = None, limit: int | None = None
    ) -> Iterator[str]:
        """Every twin id matching ``where`` (all without), in ``sort`` order, following
        the pages (``limit`` ids a page)."""
        page = self.list_twins(where=where, sort=sort, limit=limit)
        yield from page.twins
        while page.next is not None:
            page = self._send(self._calls.follow("list_twins", page.next, TwinPage))
            yield from page.twins

    def get_twin(self, twin: str) -> Twin:
        """A twin's merged current state and scores."""
        return self._send(self._calls.get_twin(twin))

    def get_twin_history(
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
        return self._send(call)

    def iter_twin_history(
        self,
        twin: str,
        field: str,
        *,
        start: Time | None = None,
        end: Time | None = None,
        limit: int | None = None,
    ) -> Iterator[HistoryPoint]:
        """Every raw point of ``field`` in the range, following the pages."""
        page = self.get_twin_history(twin, field, start=start, end=end, limit=limit)
        yield from page.points
        while page.next is not None:
            page = self._send(self._calls.follow("get_twin_history", page.next, HistoryPage))
            yield from page.points

    def get_twin_history_buckets(
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
        return self._send(call)

    def get_twin_consent(self, twin: str) -> TwinConsent:
        """A twin's consent: the current choice per purpose and the ledger."""
        return self._send(self._calls.get_twin_consent(twin))
