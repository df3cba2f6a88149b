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

    def forget(self, twins: Iterable[str]) -> None:
        """Drop the state of erased twins."""
        for twin in twins:
            self._state.pop(twin, None)
