"""consent: the gate every accepted signal (and every model output) passes.

``service`` needs no consent. An optional purpose (analytics, personalization, marketing)
is allowed for a twin only when the customer's latest consent entry for it says yes;
without any entry it is ``consent.optional_default`` (off unless a deployment decides
otherwise). The state is the fold of the device's append-only consent ledger (rows in the
agent's SQLite file, written in the same transaction as the delta that carries them to
the hub), so it survives restarts and travels to the twin.
"""

from __future__ import annotations

from collections.abc import Iterable

from protocol import ConsentEntry, Purpose

__all__ = ["ConsentGate"]


class ConsentGate:
    """Decides whether a purpose may be processed for a twin."""

    def __init__(self, optional_default: bool = False) -> None:
        self.optional_default = optional_default
        self._state: dict[str, dict[str, bool]] = {}
        #: twin -> fields the customer suppressed through the brand (rectification)
        self._suppressed: dict[str, frozenset[str]] = {}

    def suppress(self, twin: str, fields: Iterable[str]) -> None:
        """Stop collecting ``fields`` for ``twin`` (the customer suppressed them)."""
        self._suppressed[twin] = self._suppressed.get(twin, frozenset()) | frozenset(fields)

    def restore(self, twin: str, fields: Iterable[str]) -> None:
        """Collect ``fields`` for ``twin`` again (the customer lifted the suppression)."""
        kept = self._suppressed.get(twin, frozenset()) - frozenset(fields)
        if kept:
            self._suppressed[twin] = kept
        else:
            self._suppressed.pop(twin, None)

    def suppressed(self, twin: str) -> frozenset[str]:
        """The fields of ``twin`` the customer suppressed."""
        return self._suppressed.get(twin, frozenset())

    def allows_field(self, twin: str, field: str, purpose: Purpose | str) -> bool:
        """True when ``field`` (of ``purpose``) may be kept for ``twin``: its purpose is
        allowed and the customer did not suppress it."""
        return self.allows(twin, purpose) and field not in self._suppressed.get(twin, ())

    def allows(self, twin: str, purpose: Purpose | str) -> bool:
        """True when ``purpose`` may be processed for ``twin`` now."""
        if purpose == "service":
            return True
        return self._state.get(twin, {}).get(purpose, self.optional_default)

    def apply(self, entries: Iterable[ConsentEntry]) -> None:
        """Fold ledger entries (in ledger order) into the current state."""
        for entry in entries:
            self._state.setdefault(entry.twin, {}).update(entry.purposes)

    def knows(self, twin: str) -> bool:
        """Whether the ledger has any entry for ``twin``."""
        return twin in self._state

    def rename(self, old: str, new: str) -> None:
        """Carry ``old``'s choices over to ``new`` (key rotation: same customer)."""
        if old in self._state:
            self._state[new] = {**self._state.pop(old), **self._state.get(new, {})}
        if old in self._suppressed:
            self._suppressed[new] = self._suppressed.pop(old) | self.suppressed(new)

    def forget(self, twins: Iterable[str]) -> None:
        """Drop the state of erased twins."""
        for twin in twins:
            self._state.pop(twin, None)
            self._suppressed.pop(twin, None)
