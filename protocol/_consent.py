"""Consent: what a customer agreed to, per purpose, as ledger entries and commands.

``service`` (the product working at all) needs no consent; the optional purposes
(:data:`OPTIONAL_PURPOSES`) are off until the customer says yes. Every change is a
:class:`ConsentEntry` appended to the device's ledger: who changed it (``device``: the
customer through the device's own app; ``hub``: the brand backend through the hub), when,
which purposes, and which version of the notice the customer was shown. Entries travel to
the hub inside deltas (key ``"c"``), so the twin carries its own consent history; the hub
sends brand-side changes to devices as a signed :class:`ConsentCommand` broadcast.

An entry's ``ts_ms`` is Unix milliseconds below :data:`CONSENT_TIME_LIMIT_MS` (what the
wire can carry); the hub further refuses a delta whose entries lie outside its own time
window, the one it applies to ops (docs/privacy.md, "Consent").
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from ._catalog import PURPOSES
from ._errors import IdentifierError, SchemaError
from ._ids import check_twin

__all__ = [
    "CONSENT_TIME_LIMIT_MS",
    "MAX_CONSENT_ENTRIES",
    "OPTIONAL_PURPOSES",
    "ConsentEntry",
    "check_consent_time",
    "check_notice",
    "check_purposes",
    "consent_from_wire",
]

#: purposes that need the customer's consent (off by default)
OPTIONAL_PURPOSES: tuple[str, ...] = tuple(p for p in PURPOSES if p != "service")
MAX_CONSENT_ENTRIES = 256
#: consent times are Unix ms below this (47 bits, like an HLC's milliseconds)
CONSENT_TIME_LIMIT_MS = 1 << 47
Actor = Literal["device", "hub"]


class ConsentEntry(NamedTuple):
    """One change of one twin's consent (an append-only ledger row)."""

    twin: str
    ts_ms: int
    #: (purpose, granted), sorted by purpose; purposes not named keep their state
    purposes: tuple[tuple[str, bool], ...]
    actor: str
    notice: str

    def to_wire(self) -> list[object]:
        """``[twin, ts_ms, {purpose: granted}, actor, notice]``."""
        return [self.twin, self.ts_ms, dict(self.purposes), self.actor, self.notice]


def check_purposes(purposes: object) -> tuple[tuple[str, bool], ...]:
    """Validate ``{purpose: granted}`` for optional purposes; sorted pairs."""
    if not isinstance(purposes, dict) or not purposes:
        raise SchemaError("purposes must be a non-empty map of purpose -> true/false")
    for name, granted in purposes.items():
        if name not in OPTIONAL_PURPOSES:
            raise SchemaError(
                f"purpose {name!r} cannot be consented to; optional purposes: "
                f"{', '.join(OPTIONAL_PURPOSES)} ('service' needs no consent)",
                reason="bad_purpose",
            )
        if not isinstance(granted, bool):
            raise SchemaError(f"consent for {name!r} must be true or false")
    return tuple(sorted(purposes.items()))


def check_consent_time(ts_ms: object) -> int:
    """A consent entry's time: Unix milliseconds in ``[0, CONSENT_TIME_LIMIT_MS)``.

    Raises SchemaError (reason ``timestamp``), so a device whose clock is beyond that
    range records nothing rather than a ledger row no hub can accept.
    """
    if type(ts_ms) is not int or not 0 <= ts_ms < CONSENT_TIME_LIMIT_MS:
        raise SchemaError(
            f"consent ts_ms must be Unix milliseconds in [0, {CONSENT_TIME_LIMIT_MS}), "
            f"got {ts_ms!r}",
            reason="timestamp",
        )
    return ts_ms


def check_notice(notice: object) -> str:
    """A notice version: 1-32 printable characters."""
    if not isinstance(notice, str) or not 1 <= len(notice) <= 32 or not notice.isprintable():
        raise SchemaError("notice must be the version of the notice shown (1-32 characters)")
    return notice


def consent_from_wire(raw: object) -> tuple[ConsentEntry, ...]:
    """Validate a delta's ``"c"`` list."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_CONSENT_ENTRIES:
        raise SchemaError(f"consent must be a list of 1..{MAX_CONSENT_ENTRIES} entries")
    out = []
    for item in raw:
        if not isinstance(item, list) or len(item) != 5:
            raise SchemaError("a consent entry is [twin, ts_ms, {purpose: granted}, actor, notice]")
        twin, ts_ms, purposes, actor, notice = item
        try:
            twin = check_twin(twin)
        except IdentifierError as exc:
            raise SchemaError(str(exc), reason="bad_twin") from exc
        check_consent_time(ts_ms)
        if actor not in ("device", "hub"):
            raise SchemaError("consent actor must be 'device' or 'hub'")
        out.append(ConsentEntry(twin, ts_ms, check_purposes(purposes), actor, check_notice(notice)))
    return tuple(out)
