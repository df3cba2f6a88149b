"""privacy: the customer's rights, enforced at ingest and on the stored twin.

What ingest may store (``IngestPolicy``: tombstones, field blocks, twin aliases, retired
key epochs, asked in one place, and once more by the twin query index: ``index_gate``);
the data-subject procedures, each recorded in the request ledger with its deadline and
finished with a signed receipt (``RequestLedger``):
access exports, consent changes, erasure, objection, rectification and suppression; key
rotation's twin links; retention sweeps; hub-signed commands to a brand's devices; and
the signed webhooks that tell a brand's systems (sent only where the egress policy
allows).
"""

from __future__ import annotations

from ._access import PURPOSE_TEXT, twin_export
from ._commands import DeviceCommands
from ._consent import ConsentChanges
from ._egress import EgressPolicy, classify, parse_allow
from ._erasure import Erasures, Tombstones
from ._index_gate import Stamps, index_gate
from ._ledger import DEADLINE_MS, RequestLedger, verify_receipt
from ._objection import PROFILE_BLOCK, PROFILE_FIELDS, FieldBlocks, Objections
from ._policy import Admitted, Generation, IngestPolicy
from ._rectify import Rectifier
from ._rekey import Relinks
from ._retention import RetentionSweeper, ensure_ceiling
from ._subjects import Subjects
from ._twin_edits import parse_rectification
from ._webhooks import (
    Webhooks,
    WebhookSender,
    post_signed,
    send_forever,
    sign,
    verify_signature,
)

__all__ = [
    "DEADLINE_MS",
    "PROFILE_BLOCK",
    "PROFILE_FIELDS",
    "PURPOSE_TEXT",
    "Admitted",
    "ConsentChanges",
    "DeviceCommands",
    "EgressPolicy",
    "Erasures",
    "FieldBlocks",
    "Generation",
    "IngestPolicy",
    "Objections",
    "Rectifier",
    "Relinks",
    "RequestLedger",
    "RetentionSweeper",
    "Stamps",
    "Subjects",
    "Tombstones",
    "WebhookSender",
    "Webhooks",
    "classify",
    "ensure_ceiling",
    "index_gate",
    "parse_allow",
    "parse_rectification",
    "post_signed",
    "send_forever",
    "sign",
    "twin_export",
    "verify_receipt",
    "verify_signature",
]
