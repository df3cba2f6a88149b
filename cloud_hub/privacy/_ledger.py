"""The privacy request ledger and its signed receipts.

Every data-subject request (access, consent, erasure, objection, rectification) is
recorded in the state store (cloud_hub.store) when it arrives, with its deadline: one month
(Art. 12(3); :data:`DEADLINE_MS`, 30 days). A request that takes a procedure (erasure,
objection, rectification) stays ``open`` until it finishes with a **receipt** signed by
the hub's Ed25519 key (canonical JSON of the body, key id ``kid``), which goes to the
brand in the answer and in a webhook event; anyone with the hub's public key can check
it (:func:`verify_receipt`). Nothing here holds a raw identifier: requests name twins
(pseudonyms) at most, in their receipts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from cloud_hub.store import StateStore, Tx
from protocol import Clock, SigningKey, VerifyKey

__all__ = ["DEADLINE_MS", "Notify", "RequestLedger", "canonical", "verify_receipt"]

#: a data-subject request must be answered within one month (Art. 12(3)); we use 30 days
DEADLINE_MS = 30 * 86_400_000

#: (brand, event, data): queue a webhook event (cloud_hub.privacy._webhooks.Webhooks.emit)
Notify = Callable[[str, str, dict[str, Any]], object]


def canonical(body: dict[str, Any]) -> bytes:
    """The bytes a receipt's signature covers: ``body`` as sorted, compact JSON."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def verify_receipt(receipt: dict[str, Any], hub_key: VerifyKey) -> None:
    """Raise SignatureError unless ``receipt`` was signed by ``hub_key`` and is unaltered."""
    body = {k: v for k, v in receipt.items() if k != "signature"}
    hub_key.verify(bytes.fromhex(str(receipt.get("signature", ""))), canonical(body))


class RequestLedger:
    """Privacy requests of every brand (shared state store), and their receipts."""

    def __init__(
        self, *, state: StateStore, key: SigningKey, clock: Clock, notify: Notify | None = None
    ) -> None:
        self._state = state
        self._key = key
        self._clock = clock
        self._notify = notify

    def open(self, brand: str, kind: str, received: int) -> str:
        """Record a request being worked on (state ``open`` until :meth:`finish`); return
        its id."""
        request_id = uuid.uuid4().hex
        with self._state.transaction() as tx:
            self.open_in(tx, request_id, brand, kind, received)
        return request_id

    @staticmethod
    def open_in(tx: Tx, request_id: str, brand: str, kind: str, received: int) -> None:
        """:meth:`open` within the caller's transaction (an erasure records its request
        and its tombstones as one step)."""
        tx.insert(
            "privacy_requests",
            {
                "id": request_id,
                "brand": brand,
                "kind": kind,
                "received_ms": received,
                "deadline_ms": received + DEADLINE_MS,
            },
        )

    def finish(self, body: dict[str, Any], event: str | None = None) -> dict[str, Any]:
        """Sign ``body`` (with ``request_id``, ``brand``, ``completed_ms``) as a receipt,
        complete the request with it, queue webhook ``event`` carrying it; return the
        receipt."""
        body = {**body, "kid": self._key.kid}
        receipt = {**body, "signature": self._key.sign(canonical(body)).hex()}
        with self._state.transaction() as tx:
            tx.execute(
                "UPDATE privacy_requests SET completed_ms=?, receipt=? WHERE id=?",
                (body["completed_ms"], json.dumps(receipt), body["request_id"]),
            )
        if event is not None and self._notify is not None:
            self._notify(body["brand"], event, {"receipt": receipt})
        return receipt

    def record(self, brand: str, kind: str, received: int, summary: dict[str, Any]) -> str:
        """Record a request answered at once (access, consent) with its deadline."""
        request_id = uuid.uuid4().hex
        done = self._clock.now_ms()
        row = {
            "id": request_id,
            "brand": brand,
            "kind": kind,
            "received_ms": received,
            "deadline_ms": received + DEADLINE_MS,
            "completed_ms": done,
            "receipt": json.dumps(summary),
        }
        with self._state.transaction() as tx:
            tx.insert("privacy_requests", row)
        return request_id

    def requests(self, brand: str) -> list[dict[str, Any]]:
        """Every privacy request of ``brand`` with its deadline and state, newest first."""
        now = self._clock.now_ms()
        with self._state.transaction(readonly=True) as tx:
            rows = tx.execute(
                "SELECT id, kind, received_ms, deadline_ms, completed_ms, receipt "
                "FROM privacy_requests WHERE brand=? ORDER BY received_ms DESC",
                (brand,),
            ).fetchall()
        return [
            {
                "request_id": r[0],
                "kind": r[1],
                "received_ms": r[2],
                "deadline_ms": r[3],
                "completed_ms": r[4],
                "state": "done" if r[4] else ("overdue" if now > r[3] else "open"),
                "receipt": json.loads(r[5]) if r[5] else None,
            }
            for r in rows
        ]
