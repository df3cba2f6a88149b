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
from typing import NamedTuple

from ._errors import IdentifierError, SchemaError, TwinSyncError
from ._ids import check_twin

__all__ = [
    "MAX_LINKS_PER_DELTA",
    "MIN_KEY_BYTES",
    "TwinLink",
    "links_from_wire",
    "normalise_subject",
    "pseudonymize",
    "twin_epoch",
]

#: links one delta may carry (a device has few customers; rotation links each once)
MAX_LINKS_PER_DELTA = 256

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


def twin_epoch(twin: str) -> int:
    """The key epoch a (valid) twin id was computed under."""
    return int(check_twin(twin).split("-", 1)[0])


class TwinLink(NamedTuple):
    """``old`` (a twin id under an earlier key epoch) continues as ``new``.

    Sent by a device that holds both keys during a key rotation and has state of the
    customer under the old id; the hub moves the old series to the new id. Only a device
    can make it: the hub never sees the raw identifier both ids come from.
    """

    old: str
    new: str

    def to_wire(self) -> list[str]:
        """``[old, new]``."""
        return [self.old, self.new]


def links_from_wire(obj: object) -> tuple[TwinLink, ...]:
    """Validate a delta's ``"l"`` list: ``[[old, new], ...]``, old epoch < new epoch,
    each old id at most once."""
    if not isinstance(obj, list) or not 0 < len(obj) <= MAX_LINKS_PER_DELTA:
        raise SchemaError(f"twin links must be a list of 1..{MAX_LINKS_PER_DELTA} pairs")
    links: list[TwinLink] = []
    seen: set[str] = set()
    for raw in obj:
        if not isinstance(raw, list) or len(raw) != 2:
            raise SchemaError("each twin link must be [old_twin, new_twin]")
        try:
            old, new = check_twin(raw[0]), check_twin(raw[1])
        except IdentifierError as exc:
            raise SchemaError(str(exc), reason="bad_twin") from exc
        if twin_epoch(old) >= twin_epoch(new):
            raise SchemaError(
                f"twin link {old} -> {new} must go from an older key epoch to a newer one",
                reason="bad_link",
            )
        if old in seen:
            raise SchemaError(f"twin {old} is linked twice in one delta", reason="bad_link")
        seen.add(old)
        links.append(TwinLink(old, new))
    return tuple(links)
