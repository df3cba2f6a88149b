"""triggers: a brand's conditions on its twins, evaluated at ingest, delivered as signed
webhooks and as a resumable event stream (docs/brand-api.md, "Triggers").

``Rules`` keeps the brands' rules (``parse_rule`` checks one), ``TriggerWatch`` is the
index merge's ``observe`` step that turns changes into events, ``TriggerEvents`` holds the
event log, the delivery queue and the customer's holds, ``TriggerSender`` delivers, and
``follow_privacy`` applies objections, consent changes and erasures to them.
"""

from __future__ import annotations

from ._events import SEQ_MAX, TriggerEvents, event_id
from ._rules import MAX_RULE_BYTES, MAX_RULES, Rule, Rules, StoredRule, parse_rule
from ._sender import TriggerSender, follow_privacy
from ._watch import ParseWhere, TriggerWatch

__all__ = [
    "MAX_RULES",
    "MAX_RULE_BYTES",
    "SEQ_MAX",
    "ParseWhere",
    "Rule",
    "Rules",
    "StoredRule",
    "TriggerEvents",
    "TriggerSender",
    "TriggerWatch",
    "event_id",
    "follow_privacy",
    "parse_rule",
]
