"""What the trigger routes answer, as typed results (docs/brand-api.md, "Triggers")."""

from __future__ import annotations

from pydantic import Field, SecretStr

from ._results import Result, Scalar

__all__ = [
    "StreamGap",
    "TriggerEvent",
    "TriggerEvents",
    "TriggerRule",
    "TriggerRuleCreated",
    "TriggerRuleDeleted",
    "TriggerRuleOne",
    "TriggerRules",
]


class TriggerRule(Result):
    """A trigger rule as the hub keeps it (never its webhook's secret)."""

    rule_id: str
    created_ms: int
    name: str
    kind: str
    direction: str
    change: str
    #: the twin fields it watches
    fields: tuple[str, ...]
    product: str | None = None
    threshold: float | None = None
    tag: str | None = None
    where: str | None = None
    webhook: str | None = None


class TriggerRuleCreated(Result):
    """A rule registered: ``secret`` signs its webhook's events (shown only this once;
    None without a webhook)."""

    brand: str
    rule: TriggerRule
    secret: SecretStr | None = None


class TriggerRuleOne(Result):
    """One rule."""

    brand: str
    rule: TriggerRule


class TriggerRules(Result):
    """Every rule of the brand, oldest first."""

    brand: str
    rules: tuple[TriggerRule, ...]
    max_rules: int


class TriggerRuleDeleted(Result):
    """A rule removed with its undelivered events."""

    brand: str
    rule_id: str
    deleted: bool


class TriggerEvent(Result):
    """A rule's condition became true for a twin. ``event_id`` is the same for the same
    change seen twice (dedupe on it); ``seq`` is its place in the brand's log."""

    event_id: str
    event: str
    brand: str
    rule_id: str
    rule_name: str
    kind: str
    twin: str
    field: str
    product: str
    from_: Scalar | None = Field(alias="from")
    to: Scalar
    hlc: int
    changed_ms: int
    seq: int


class TriggerEvents(Result):
    """Trigger events, and how many wait for their webhook."""

    brand: str
    events: tuple[TriggerEvent, ...]
    pending_deliveries: int


class StreamGap(Result):
    """The log's retention removed events after the stream's position: re-read the
    twins you follow; the stream goes on from ``oldest``."""

    after: int
    oldest: int
    reason: str
