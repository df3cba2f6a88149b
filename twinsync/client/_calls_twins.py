"""The request builders of twins: the twin list, a twin, its history and consent (a part of
:class:`~twinsync.client._calls.Calls`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from ._calls_core import CallsCore, Time, to_every, to_ms
from ._results import (
    HistoryBuckets,
    HistoryPage,
    Twin,
    TwinConsent,
    TwinPage,
)
from ._wire import Call, json_result

__all__ = ["TwinCalls"]


class TwinCalls(CallsCore):
    """The builders of twins: the twin list, a twin, its history and consent."""

    # -- twins ------------------------------------------------------------------------------
    def list_twins(
        self,
        *,
        where: str | None = None,
        sort: str | None = None,
        fields: Iterable[str] | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> Call[TwinPage]:
        """A page of twins matching ``where``, in ``sort`` order (docs/brand-api.md,
        "Finding twins"), with the values of ``fields``."""
        params = {
            "where": where,
            "sort": sort,
            "fields": None if fields is None else ",".join(fields),
            "limit": limit,
            "after": after,
        }
        return Call(self._request("list_twins", params=params), json_result(TwinPage))

    def get_twin(self, twin: str) -> Call[Twin]:
        """A twin's merged state."""
        return Call(self._request("get_twin", values={"twin": twin}), json_result(Twin))

    def get_twin_history(
        self,
        twin: str,
        field: str,
        *,
        start: Time | None = None,
        end: Time | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> Call[HistoryPage]:
        """A page of a field's raw points."""
        params = {
            "field": field,
            "start": to_ms(start, "start"),
            "end": to_ms(end, "end"),
            "limit": limit,
            "after": after,
        }
        request = self._request("get_twin_history", values={"twin": twin}, params=params)
        return Call(request, json_result(HistoryPage))

    def get_twin_history_buckets(
        self,
        twin: str,
        field: str,
        every: str | timedelta,
        *,
        start: Time | None = None,
        end: Time | None = None,
    ) -> Call[HistoryBuckets]:
        """A field's history in buckets of ``every``."""
        params = {
            "field": field,
            "every": to_every(every),
            "start": to_ms(start, "start"),
            "end": to_ms(end, "end"),
        }
        request = self._request("get_twin_history", values={"twin": twin}, params=params)
        return Call(request, json_result(HistoryBuckets))

    def get_twin_consent(self, twin: str) -> Call[TwinConsent]:
        """A twin's consent."""
        request = self._request("get_twin_consent", values={"twin": twin})
        return Call(request, json_result(TwinConsent))
