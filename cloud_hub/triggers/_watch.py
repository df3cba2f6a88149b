"""Evaluate the brands' trigger rules where ingest merges a batch into the twin query
index, in the same transaction (``TwinIndex.apply``'s ``observe`` step).

Before the merge it reads, for the batch's twins, the current values of every field a
rule of their brand watches; after the merge it reads them again, and each watched
field whose value changed so that a rule's condition holds (cloud_hub.triggers._rules)
becomes an event, if the twin still matches the rule's ``where`` and its triggers are
not held (cloud_hub.triggers._events). The events commit with the values that caused
them: no event for a batch that was not stored, and a batch stored is never without its
events (at-least-once from there on). A replay changes no value, so it makes no event;
two instances merging one change derive one event id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cloud_hub._errors import CloudHubError
from cloud_hub._metrics import Metrics
from cloud_hub.privacy import PROFILE_BLOCK
from cloud_hub.store import Filter, IndexOp, Tx, chunks, marks, matching_twins, stored_value
from protocol import Clock

from ._events import TriggerEvents, event_id
from ._rules import StoredRule, rules_in

__all__ = ["ParseWhere", "TriggerWatch"]

log = logging.getLogger("cloud_hub.triggers")

#: the twin query language's parser (cloud_hub.api passes it in: ``where`` text, now_ms)
ParseWhere = Callable[[str, int], Filter]
_Values = dict[tuple[str, str], tuple[object, int]]


class TriggerWatch:
    """The ``observe`` step of ``TwinIndex.apply`` (module docstring)."""

    def __init__(self, *, parse_where: ParseWhere, clock: Clock, metrics: Metrics) -> None:
        self._parse_where = parse_where
        self._clock = clock
        self._metrics = metrics

    def __call__(self, tx: Tx, ops: list[IndexOp]) -> Callable[[], None] | None:
        plans: list[tuple[str, list[StoredRule], list[str], list[str], _Values]] = []
        for brand in sorted({op[0] for op in ops}):
            rules = rules_in(tx, brand)
            if not rules:
                continue
            watched = {f for r in rules for f in r.rule.fields()}
            mine = [op for op in ops if op[0] == brand and op[3] in watched]
            # only the watched fields this batch holds: nothing else of these twins changes
            fields = sorted({op[3] for op in mine})
            twins = sorted({op[1] for op in mine})
            if twins:
                plans.append((brand, rules, twins, fields, _values(tx, brand, twins, fields)))
        if not plans:
            return None

        def after() -> None:
            for brand, rules, twins, fields, before in plans:
                self._events(tx, brand, rules, twins, fields, before)

        return after

    def _events(
        self,
        tx: Tx,
        brand: str,
        rules: list[StoredRule],
        twins: list[str],
        fields: list[str],
        before: _Values,
    ) -> None:
        now = self._clock.now_ms()
        held = TriggerEvents.held_in(tx, brand, twins, PROFILE_BLOCK)
        watching: dict[str, list[StoredRule]] = {}
        for stored in rules:
            for name in stored.rule.fields():
                watching.setdefault(name, []).append(stored)
        fired: list[tuple[StoredRule, str, str, object, object, int]] = []
        for (twin, field), (value, hlc) in sorted(_values(tx, brand, twins, fields).items()):
            previous = before.get((twin, field), (None, 0))[0]
            if twin in held or previous == value:
                continue
            for stored in watching.get(field, ()):
                if stored.rule.fires(previous, value):
                    fired.append((stored, twin, field, previous, value, hlc))
        events: list[tuple[dict[str, Any], bool]] = []
        for stored in rules:
            mine = [f for f in fired if f[0] is stored]
            if mine and stored.rule.where is not None:
                try:
                    node = self._parse_where(stored.rule.where, now)
                except CloudHubError as exc:
                    # Checked when registered; a catalog that lost a field since must not
                    # stop ingest: this rule fires for nobody until it is replaced.
                    log.warning("trigger rule %s skipped: its where fails: %s", stored.rule_id, exc)
                    continue
                matching = matching_twins(tx, brand, {f[1] for f in mine}, node)
                mine = [f for f in mine if f[1] in matching]
            events += [(_body(brand, *f), stored.rule.webhook is not None) for f in mine]
        new = TriggerEvents.record_in(tx, brand, sorted(events, key=_order), now)
        if new:
            self._metrics.inc("twinsync_hub_trigger_events_total", new)


def _order(event: tuple[dict[str, Any], bool]) -> tuple[int, str]:
    # A twin's events in the order of their changes (the queue keeps it per rule and twin).
    return event[0]["hlc"], event[0]["event_id"]


def _body(
    brand: str,
    stored: StoredRule,
    twin: str,
    field: str,
    previous: object,
    value: object,
    hlc: int,
) -> dict[str, Any]:
    rule = stored.rule
    return {
        "event_id": event_id(brand, stored.rule_id, twin, field, hlc),
        "event": "trigger",
        "brand": brand,
        "rule_id": stored.rule_id,
        "rule_name": rule.name,
        "kind": rule.kind,
        "twin": twin,
        "field": field,
        "product": field.split(".", 1)[0],
        "from": previous,
        "to": value,
        "hlc": hlc,
        "changed_ms": hlc >> 16,
    }


def _values(tx: Tx, brand: str, twins: list[str], fields: list[str]) -> _Values:
    """(twin, field) -> (value, HLC) of the index as ``tx`` sees it."""
    out: _Values = {}
    for piece in chunks(twins):
        for twin, field, num, txt, hlc in tx.execute(
            "SELECT twin, field, num, txt, hlc FROM twin_fields WHERE brand = ? AND twin IN "
            f"({marks(len(piece))}) AND field IN ({marks(len(fields))})",
            (brand, *piece, *fields),
        ):
            out[(str(twin), str(field))] = (stored_value(str(field), num, txt), int(hlc))
    return out
