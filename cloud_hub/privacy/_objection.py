"""Objection to profiling (GDPR Art. 21) and the per-twin field blocks it shares with
rectification's suppressions.

A **field block** says "do not store field F of twin T" (or every field of the
``profile`` class); blocks live in the state store, every instance re-reads them at
least every ``refresh_s`` (like tombstones) and drops blocked ops at ingest, filters them
out of batches built before it learnt of the block, and hides the fields from reads.

An objection, for each twin id of the customer (one per key epoch):

1. records the request (deadline one month) and a ``profile`` block per twin;
2. broadcasts a hub-signed consent withdrawal of the profiling purposes
   (:data:`PROFILING_PURPOSES`) with notice ``"objection"``: devices stop computing and
   sending features and predictions for the twin, and their ledger records it;
3. once every instance has learnt of the block, deletes the twins' ``twin_profile``
   series and checks none is left (deleting again if a write already on the wire landed),
   and removes the twins' profile fields from the twin query index;
4. answers with a receipt signed by the hub key and sends it in an ``objection`` webhook.

The block holds until the brand records the customer's consent to a profiling purpose
again (``POST .../privacy/consent``), which lifts it. Usage fields keep flowing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cloud_hub._errors import IncompleteError
from cloud_hub.store import CLASS_MEASUREMENT, InfluxStore, SharedView, TwinIndex, Tx, marks
from protocol import FIELDS, Clock, TwinOps

from ._commands import DeviceCommands
from ._ledger import RequestLedger
from ._points import delete_until_gone, twin_points_where
from ._subjects import Subjects

__all__ = ["PROFILE_BLOCK", "PROFILE_FIELDS", "PROFILING_PURPOSES", "FieldBlocks", "Objections"]

log = logging.getLogger("cloud_hub.objection")

#: the block target covering every field of the ``profile`` class
PROFILE_BLOCK = "class:profile"
#: the purposes profiling serves: features are ``analytics``, segments and churn scores
#: ``personalization`` (protocol catalog); withdrawing them stops the device's models
#: from keeping or sending any profile field
PROFILING_PURPOSES = ("analytics", "personalization")
#: every field of the ``profile`` class (what an objection removes)
PROFILE_FIELDS = frozenset(n for n, s in FIELDS.items() if s.field_class == "profile")

Blocked = dict[str, frozenset[str]]


class FieldBlocks(SharedView[dict[str, Blocked]]):
    """Per-twin blocked fields (shared state store), as ingestion and reads ask them.

    Its ``generation`` grows whenever the blocks changed (cloud_hub.privacy._policy
    re-checks batches built before)."""

    WHAT = "field blocks"
    STAMP = "view:field_blocks"

    def _load(self, tx: Tx) -> dict[str, Blocked]:
        fields: dict[str, dict[str, set[str]]] = {}
        for brand, twin, target in tx.execute("SELECT brand, twin, target FROM field_blocks"):
            names = PROFILE_FIELDS if target == PROFILE_BLOCK else {target}
            fields.setdefault(brand, {}).setdefault(twin, set()).update(names)
        return {b: {t: frozenset(f) for t, f in tw.items()} for b, tw in fields.items()}

    def blocked(self, brand: str) -> Blocked:
        """Twin -> blocked field names of ``brand`` (re-read at most every refresh_s)."""
        return self.view.get(brand, {})

    def hidden(self, brand: str, twin: str) -> frozenset[str]:
        """The twin's blocked fields (what reads leave out)."""
        return self.blocked(brand).get(twin, frozenset())

    def keep(self, brand: str, twins: tuple[TwinOps, ...]) -> tuple[tuple[TwinOps, ...], int]:
        """``twins`` without blocked ops, and how many were dropped (the ingest filter)."""
        blocked = self.blocked(brand)
        if not blocked or not any(t.twin in blocked for t in twins):
            return twins, 0
        kept, dropped = [], 0
        for twin_ops in twins:
            fields = blocked.get(twin_ops.twin)
            if not fields:
                kept.append(twin_ops)
                continue
            ops = tuple(op for op in twin_ops.ops if op.field not in fields)
            dropped += len(twin_ops.ops) - len(ops)
            kept.append(twin_ops._replace(ops=ops))
        return tuple(kept), dropped

    def drops_line(self, brand: str, twin: str, line: str) -> bool:
        """Whether a twin point ``line`` (as ``cloud_hub.store._lines`` writes it) is blocked."""
        fields = self._view.get(brand, {}).get(twin)
        if not fields:
            return False
        # ``measurement,tags field=value ts``: one field per line (cloud_hub.store._lines)
        return line.split(" ", 2)[1].split("=", 1)[0] in fields

    def add(self, brand: str, twins: list[str], target: str, request_id: str, now: int) -> None:
        """Block ``target`` (a field name or :data:`PROFILE_BLOCK`) for ``twins``."""
        rows = [
            {"brand": brand, "twin": t, "target": target, "since_ms": now, "request_id": request_id}
            for t in twins
        ]
        with self._state.transaction() as tx:
            tx.insert_ignore("field_blocks", rows)
            self.changed_in(tx)
        self.refresh()

    @staticmethod
    def forget_in(tx: Tx, brand: str, twins: list[str]) -> None:
        """Drop every block of ``twins`` within the caller's transaction (an erased twin
        needs none: nothing of it is stored again, and its id should not linger here)."""
        tx.executemany(
            "DELETE FROM field_blocks WHERE brand=? AND twin=?", [(brand, t) for t in twins]
        )
        FieldBlocks.changed_in(tx)

    def lift(self, brand: str, twins: list[str], target: str) -> int:
        """Remove the block of ``target`` for ``twins``; return how many were lifted."""
        with self._state.transaction() as tx:
            lifted = tx.executemany(
                "DELETE FROM field_blocks WHERE brand=? AND twin=? AND target=?",
                [(brand, t, target) for t in twins],
            )
            self.changed_in(tx)
        self.refresh()
        return lifted

    def of_twins(self, brand: str, twins: list[str]) -> list[dict[str, Any]]:
        """The blocks of ``twins`` for an access export: twin, target, since, request."""
        if not twins:
            return []  # "IN ()" is an error on PostgreSQL (SQLite takes it)
        with self._state.transaction(readonly=True) as tx:
            rows = tx.execute(
                "SELECT twin, target, since_ms, request_id FROM field_blocks WHERE brand=? "
                f"AND twin IN ({marks(len(twins))}) ORDER BY since_ms, twin, target",
                (brand, *twins),
            ).fetchall()
        return [
            {
                "twin": twin,
                "kind": "objection" if target == PROFILE_BLOCK else "suppression",
                "field": None if target == PROFILE_BLOCK else target,
                "since_ms": since,
                "request_id": request_id,
            }
            for twin, target, since, request_id in rows
        ]


class Objections:
    """The objection procedure (module docstring)."""

    def __init__(
        self,
        *,
        subjects: Subjects,
        ledger: RequestLedger,
        blocks: FieldBlocks,
        commands: DeviceCommands,
        store: InfluxStore,
        index: TwinIndex,
        clock: Clock,
    ) -> None:
        self._subjects = subjects
        self._ledger = ledger
        self._blocks = blocks
        self._commands = commands
        self._store = store
        self._index = index
        self._clock = clock

    async def object(self, brand: str, subject: str) -> dict[str, Any]:
        """Object to profiling for the subject's twins; return the signed receipt.

        Raises RequestError (``unknown_brand``, ``bad_subject``), IncompleteError
        (``objection_incomplete``)."""
        twins = self._subjects.twins(brand, subject)
        received = self._clock.now_ms()
        request_id = await asyncio.to_thread(self._ledger.open, brand, "objection", received)
        await asyncio.to_thread(self._blocks.add, brand, twins, PROFILE_BLOCK, request_id, received)
        purposes = dict.fromkeys(PROFILING_PURPOSES, False)
        self._commands.consent(brand, twins, purposes, "objection", request_id, received)
        # Every instance re-reads blocks within refresh_s; after that nobody writes them.
        await asyncio.sleep(self._blocks.refresh_s + 0.2)
        measurement = CLASS_MEASUREMENT["profile"]
        found, left = await delete_until_gone(
            self._store, (measurement,), twin_points_where(brand, twins)
        )
        await asyncio.to_thread(self._index.drop_fields, brand, twins, PROFILE_FIELDS)
        if left:
            raise IncompleteError(
                f"{left} profile points of the twins are still in InfluxDB; retry the request",
                reason="objection_incomplete",
            )
        body = {
            "request_id": request_id,
            "kind": "objection",
            "brand": brand,
            "twins": twins,
            "received_ms": received,
            "completed_ms": self._clock.now_ms(),
            "purposes_withdrawn": list(PROFILING_PURPOSES),
            "field_class_removed": "profile",
            "points_found": found,
            "points_left": 0,
        }
        receipt = await asyncio.to_thread(self._ledger.finish, body, "objection")
        log.info("objection %s of brand %s: %d profile points deleted", request_id, brand, found)
        return receipt

    async def lift(self, brand: str, twins: list[str], purposes: dict[str, bool]) -> int:
        """Consent to a profiling purpose given again through the brand: lift the block."""
        if not any(purposes.get(p) for p in PROFILING_PURPOSES):
            return 0
        return await asyncio.to_thread(self._blocks.lift, brand, twins, PROFILE_BLOCK)
