"""Consent changes the customer told the brand about (``POST .../privacy/consent``).

The hub cannot change consent itself: it lives on the devices, which gate every signal by
it. So a change is a hub-signed :class:`~protocol.ConsentCommand` to every device of the
brand (cloud_hub.privacy._commands); the devices that know one of the customer's twins
record it in their ledger (actor ``hub``), and their ledger entries reach the twin from
there. The request is recorded (cloud_hub.privacy._ledger) and sent to the brand's
webhook; consent to profiling given again also lifts an objection
(cloud_hub.privacy._objection).
"""

from __future__ import annotations

import asyncio
import uuid

from protocol import Clock

from ._commands import DeviceCommands
from ._ledger import Notify, RequestLedger
from ._objection import Objections

__all__ = ["ConsentChanges"]


class ConsentChanges:
    """Sends a brand's consent changes to its devices (module docstring)."""

    def __init__(
        self,
        *,
        commands: DeviceCommands,
        ledger: RequestLedger,
        objections: Objections,
        clock: Clock,
        notify: Notify | None = None,
    ) -> None:
        self._commands = commands
        self._ledger = ledger
        self._objections = objections
        self._clock = clock
        self._notify = notify

    async def change(
        self, brand: str, twins: list[str], purposes: dict[str, bool], notice: str
    ) -> str:
        """Broadcast the change of ``purposes`` for ``twins``; return the request id."""
        request_id = await asyncio.to_thread(self._send, brand, twins, purposes, notice)
        await self._objections.lift(brand, twins, purposes)
        return request_id

    def _send(self, brand: str, twins: list[str], purposes: dict[str, bool], notice: str) -> str:
        request_id = uuid.uuid4().hex
        now = self._clock.now_ms()
        self._commands.consent(brand, twins, purposes, notice, request_id, now)
        self._ledger.record(brand, "consent", now, {"twins": len(twins), "purposes": purposes})
        if self._notify is not None:
            data = {"request_id": request_id, "twins": twins, "purposes": purposes}
            self._notify(brand, "consent", {**data, "notice": notice})
        return request_id
