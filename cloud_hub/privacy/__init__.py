"""privacy: the customer's rights, enforced at ingest and on the stored twin.

Erasure with tombstones and receipts, objection, rectification and suppression, key
rotation's twin links, retention sweeps, access exports, and the signed webhooks that
tell a brand's systems (sent only where the egress policy allows).
"""

from __future__ import annotations

from ._access import PURPOSE_TEXT, twin_export
from ._egress import EgressPolicy, classify, parse_allow
from ._erasure import Erasures, verify_receipt
from ._objection import Objections
from ._rectify import Rectifier, parse_rectification
from ._rekey import Relinks
from ._retention import RetentionSweeper, ensure_ceiling
from ._webhooks import Webhooks, WebhookSender, sign, verify_signature

__all__ = [
    "PURPOSE_TEXT",
    "EgressPolicy",
    "Erasures",
    "Objections",
    "Rectifier",
    "Relinks",
    "RetentionSweeper",
    "WebhookSender",
    "Webhooks",
    "classify",
    "ensure_ceiling",
    "parse_allow",
    "parse_rectification",
    "sign",
    "twin_export",
    "verify_receipt",
    "verify_signature",
]
