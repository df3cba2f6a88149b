"""Checking a webhook event the hub sent: its ``TwinSync-Signature`` header.

The hub signs each event it POSTs with the brand's webhook secret (shown once, by
``set_webhook``): ``t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``. A receiver
accepts the event only if the MAC matches the body it got and ``t`` is recent, so a
captured event cannot be replayed later (docs/privacy.md, "Webhooks").
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["SIGNATURE_HEADER", "verify_webhook"]

#: the header that carries the signature
SIGNATURE_HEADER = "TwinSync-Signature"


def verify_webhook(
    secret: str, body: bytes, header: str, *, tolerance_s: float = 300, now_s: float | None = None
) -> bool:
    """Whether ``body`` was signed by the hub with ``secret`` at most ``tolerance_s``
    seconds before ``now_s`` (the system clock by default)."""
    try:
        fields = dict(item.split("=", 1) for item in header.split(","))
        at = fields["t"]
        given = fields["v1"]
    except (ValueError, KeyError):
        return False
    if not (at.isascii() and at.isdigit()):
        return False
    now = time.time() if now_s is None else now_s
    if abs(now - int(at)) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)
