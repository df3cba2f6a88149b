"""Pseudonymization: raw customer identifier -> twin id, on the device.

``twin_id = f"{epoch}-{HMAC-SHA256(brand_key, domain || normalised(subject))[:16].hex()}"``

Every device of one brand maps the same customer to the same twin (same key), no two
brands can link theirs (different keys), and without the key the twin id reveals nothing
about the subject. The epoch names the key generation, so keys can rotate. Normalisation
(strip, Unicode NFC, case-fold e-mail addresses) makes "Ann@X.com " and "ann@x.com" the
same customer. See docs/privacy.md for what this does and does not protect against.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

from ._errors import TwinSyncError

__all__ = ["MIN_KEY_BYTES", "normalise_subject", "pseudonymize"]

MIN_KEY_BYTES = 32
_DOMAIN = b"twinsync/twin/v1\x00"


def normalise_subject(subject: str) -> str:
    """Canonical form of a raw identifier (what is hashed)."""
    text = unicodedata.normalize("NFC", subject.strip())
    return text.casefold() if "@" in text else text


def pseudonymize(brand_key: bytes, epoch: int, subject: str) -> str:
    """The twin id of ``subject`` under ``brand_key`` of key generation ``epoch``."""
    if len(brand_key) < MIN_KEY_BYTES:
        raise TwinSyncError(
            f"brand key must be at least {MIN_KEY_BYTES} bytes; generate one with "
            "'twinsync hub provision'",
            reason="bad_key",
        )
    if not 0 <= epoch <= 999_999:
        raise TwinSyncError(f"key epoch must be in [0, 999999], got {epoch}", reason="bad_key")
    canonical = normalise_subject(subject)
    if not canonical:
        raise TwinSyncError("subject identifier is empty", reason="bad_subject")
    digest = hmac.new(brand_key, _DOMAIN + canonical.encode("utf-8"), hashlib.sha256).digest()
    return f"{epoch}-{digest[:16].hex()}"
