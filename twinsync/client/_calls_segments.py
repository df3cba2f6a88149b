"""The request builders of the fleet and segments: devices, segment changes, sizes, migration,
profiles, share alerts and the live stream (a part of
:class:`~twinsync.client._calls.Calls`)."""

from __future__ import annotations

from datetime import timedelta

from ._calls_core import CallsCore, Time, to_every, to_ms
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
from ._wire import Call, Request, json_result

__all__ = ["SegmentCalls"]


class SegmentCalls(CallsCore):
    """The builders of the fleet and segments: devices, segment changes, sizes, migration,
    profiles, share alerts and the live stream."""

    # -- fleet and segments ---------------------------------------------------------------
    def list_devices(self) -> Call[DeviceList]:
        """The brand's devices."""
        return Call(self._request("list_devices"), json_result(DeviceList))

    def list_segment_changes(
        self,
        product: str,
        *,
        start: Time | None = None,
        end: Time | None = None,
        limit: int | None = None,
    ) -> Call[SegmentChanges]:
        """Segment changes of ``product`` in a range."""
        params = {
            "product": product,
            "start": to_ms(start, "start"),
            "end": to_ms(end, "end"),
            "limit": limit,
        }
        request = self._request("list_segment_changes", params=params)
        return Call(request, json_result(SegmentChanges))

    def get_segment_sizes(
        self,
        product: str,
        *,
        model: str | None = None,
        start: Time | None = None,
        end: Time | None = None,
        step: str | timedelta | None = None,
    ) -> Call[SegmentSizes]:
        """Segment sizes of ``product`` over time."""
        params = {
            "product": product,
            "model": model,
            "start": to_ms(start, "start"),
            "end": to_ms(end, "end"),
            "step": None if step is None else to_every(step),
        }
        return Call(self._request("get_segment_sizes", params=params), json_result(SegmentSizes))

    def get_segment_migration(
        self, product: str, *, from_: Time | None = None, to: Time | None = None
    ) -> Call[SegmentMigration]:
        """The migration matrix of ``product`` between two instants."""
        params = {"product": product, "from": to_ms(from_, "from_"), "to": to_ms(to, "to")}
        request = self._request("get_segment_migration", params=params)
        return Call(request, json_result(SegmentMigration))

    def get_segment_profile(
        self, product: str, *, model: str | None = None, top: int | None = None
    ) -> Call[SegmentProfiles]:
        """Segment profiles of ``product``."""
        params = {"product": product, "model": model, "top": top}
        request = self._request("get_segment_profile", params=params)
        return Call(request, json_result(SegmentProfiles))

    def get_segment_share_alerts(
        self,
        product: str,
        *,
        model: str | None = None,
        at: Time | None = None,
        baseline: int | None = None,
        k: int | None = None,
    ) -> Call[SegmentShareAlerts]:
        """Share alerts of ``product``'s segments."""
        params = {
            "product": product,
            "model": model,
            "at": to_ms(at, "at"),
            "baseline": baseline,
            "k": k,
        }
        request = self._request("get_segment_share_alerts", params=params)
        return Call(request, json_result(SegmentShareAlerts))

    def stream_segment_changes(
        self, product: str, *, since: Time | None = None, last_event_id: str | None = None
    ) -> Request:
        """The live stream's request (the transports read its events)."""
        params = {"product": product, "since": to_ms(since, "since")}
        return self._request(
            "stream_segment_changes",
            params=params,
            accept="text/event-stream",
            last_event_id=last_event_id,
        )
