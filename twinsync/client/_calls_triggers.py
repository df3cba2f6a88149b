"""The request builders of triggers: rules, their events and the live stream (a part of
:class:`~twinsync.client._calls.Calls`)."""

from __future__ import annotations

from typing import Any

from ._calls_core import CallsCore
from ._trigger_results import (
    TriggerEvents,
    TriggerRuleCreated,
    TriggerRuleDeleted,
    TriggerRuleOne,
    TriggerRules,
)
from ._wire import Call, Request, json_result

__all__ = ["TriggerCalls"]


class TriggerCalls(CallsCore):
    """The builders of triggers: rules, their events and the live stream."""

    # -- triggers ---------------------------------------------------------------------------
    def create_trigger(
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
    ) -> Call[TriggerRuleCreated]:
        """Register a trigger rule (docs/brand-api.md, "Triggers"); the answer holds its
        webhook's signing secret, once."""
        body: dict[str, Any] = {"name": name, "kind": kind}
        optional = {
            "product": product,
            "threshold": threshold,
            "direction": direction,
            "tag": tag,
            "change": change,
            "where": where,
            "webhook": webhook,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._json("create_trigger", TriggerRuleCreated, body)

    def list_triggers(self) -> Call[TriggerRules]:
        """Every trigger rule of the brand."""
        return Call(self._request("list_triggers"), json_result(TriggerRules))

    def get_trigger(self, rule_id: str) -> Call[TriggerRuleOne]:
        """One trigger rule."""
        request = self._request("get_trigger", values={"rule": rule_id})
        return Call(request, json_result(TriggerRuleOne))

    def delete_trigger(self, rule_id: str) -> Call[TriggerRuleDeleted]:
        """Remove a trigger rule and its undelivered events."""
        request = self._request("delete_trigger", values={"rule": rule_id})
        return Call(request, json_result(TriggerRuleDeleted))

    def list_trigger_events(
        self, *, limit: int | None = None, after: int | None = None
    ) -> Call[TriggerEvents]:
        """The newest trigger events, or (``after`` a seq) those after it, oldest first."""
        request = self._request("list_trigger_events", params={"limit": limit, "after": after})
        return Call(request, json_result(TriggerEvents))

    def stream_trigger_events(
        self, *, after: int | None = None, last_event_id: str | None = None
    ) -> Request:
        """The trigger stream's request (the transports read its events)."""
        return self._request(
            "stream_trigger_events",
            params={"after": after},
            accept="text/event-stream",
            last_event_id=last_event_id,
        )
