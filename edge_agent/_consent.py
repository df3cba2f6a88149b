"""consent: the gate every accepted signal passes before it touches the twin.

Issue 4 brings per-purpose consent with a ledger. Until then the gate admits every
purpose the catalog declares, and is the single place that decision is made.
"""

from __future__ import annotations

from protocol import Purpose

__all__ = ["ConsentGate"]


class ConsentGate:
    """Decides whether a signal of a given purpose may be processed for a twin."""

    def allows(self, twin: str, purpose: Purpose) -> bool:
        """True when ``purpose`` is consented for ``twin``."""
        del twin, purpose
        return True
