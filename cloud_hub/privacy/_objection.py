"""Objection to profiling (GDPR Art. 21) and the per-twin field blocks it shares with
rectification's suppressions.

A **field block** says "do not store field F of twin T" (or every field of the
``profile`` class); blocks live in the shared SQLite file, every instance re-reads them at
least every ``refresh_s`` (like tombstones) and drops blocked ops at ingest, filters them
out of batches built before it learnt of the block, and hides the fields from reads.

An objection, for each twin id of the customer (one per key epoch):

1. records the request (deadline one month) and a ``profile`` block per twin;
2. broadcasts a hub-signed consent withdrawal of the profiling purposes
   (:data:`PROFILING_PURPOSES`) with notice ``"objection"``: devices stop computing and
   sending features and predictions for the twin, and their ledger records it;
3. once every instance has learnt of the block, deletes the twins' ``twin_profile``
   series and checks none is left (deleting again if a write already on the wire landed);
4. answers with a receipt signed by the hub key and sends it in an ``objection`` webhook.

The block holds until the brand records the customer's consent to a profiling purpose
again (``POST .../privacy/consent``), which lifts it. Usage fields keep flowing.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloud_hub._errors import CloudHubError
from cloud_hub.store import (
    CLASS_MEASUREMENT,
    TWIN_MEASUREMENTS,
    InfluxStore,
    SharedView,
    count_values,
    quote_ident,
    quote_str,
)
from protocol import FIELDS, TwinOps, TwinSyncError

if TYPE_CHECKING:
    from ._erasure import Erasures

__all__ = ["PROFILE_BLOCK", "PROFILING_PURPOSES", "FieldBlocks", "Objections"]

log = logging.getLogger("cloud_hub.objection")

#: the block target covering every field of the ``profile`` class
PROFILE_BLOCK = "class:profile"
#: the purposes profiling serves: features are ``analytics``, segments and churn scores
#: ``personalization`` (protocol catalog); withdrawing them stops the device's models
#: from keeping or sending any profile field
PROFILING_PURPOSES = ("analytics", "personalization")
_PROFILE_FIELDS = frozenset(n for n, s in FIELDS.items() if s.field_class == "profile")
_TWIN_LINE = tuple(f"{m}," for m in TWIN_MEASUREMENTS)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS field_blocks (
    brand      TEXT NOT NULL,
    twin       TEXT NOT NULL,
    target     TEXT NOT NULL,
    since_ms   INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    PRIMARY KEY (brand, twin, target)
);
"""

Blocked = dict[str, frozenset[str]]


class FieldBlocks(SharedView[dict[str, Blocked]]):
    """Per-twin blocked fields (shared SQLite file), as ingestion and reads ask them."""

    SCHEMA = _SCHEMA

    def __init__(
        self, db_path: Path, refresh_s: float = 1.0, on_change: Callable[[], None] | None = None
    ) -> None:
        #: called when the set of blocks changed (batches built before must be re-checked)
        self.on_change = on_change
        super().__init__(db_path, refresh_s)

    def _load(self, db: sqlite3.Connection) -> dict[str, Blocked]:
        fields: dict[str, dict[str, set[str]]] = {}
        for brand, twin, target in db.execute("SELECT brand, twin, target FROM field_blocks"):
            names = _PROFILE_FIELDS if target == PROFILE_BLOCK else {target}
            fields.setdefault(brand, {}).setdefault(twin, set()).update(names)
        return {b: {t: frozenset(f) for t, f in tw.items()} for b, tw in fields.items()}

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

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
        with self._connect() as db:
            db.executemany(
                "INSERT OR IGNORE INTO field_blocks VALUES (?, ?, ?, ?, ?)",
                [(brand, t, target, now, request_id) for t in twins],
            )
        self.refresh()

    def lift(self, brand: str, twins: list[str], target: str) -> int:
        """Remove the block of ``target`` for ``twins``; return how many were lifted."""
        with self._connect() as db:
            cur = db.executemany(
                "DELETE FROM field_blocks WHERE brand=? AND twin=? AND target=?",
                [(brand, t, target) for t in twins],
            )
            lifted = cur.rowcount
        self.refresh()
        return lifted

    def of_twins(self, brand: str, twins: list[str]) -> list[dict[str, Any]]:
        """The blocks of ``twins`` for an access export: twin, target, since, request."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT twin, target, since_ms, request_id FROM field_blocks WHERE brand=? "
                f"AND twin IN ({','.join('?' * len(twins))}) ORDER BY since_ms",
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


def twin_points_where(brand: str, twins: list[str]) -> str:
    """InfluxQL condition selecting ``twins`` of ``brand``."""
    return (
        f'"brand" = {quote_str(brand)} AND ('
        + " OR ".join(f'"twin" = {quote_str(t)}' for t in twins)
        + ")"
    )


async def delete_until_gone(store: InfluxStore, measurement: str, where: str) -> tuple[int, int]:
    """DELETE ``where`` from ``measurement`` until a count finds nothing (a write already on
    the wire may land after the first delete); return (points found, points left)."""
    m = quote_ident(measurement)
    found = left = await count_values(store, where, (measurement,))
    for attempt in range(5):
        await store.query(f"DELETE FROM {m} WHERE {where}", write=True)
        await asyncio.sleep(0.2 * (attempt + 1))
        left = await count_values(store, where, (measurement,))
        if left == 0:
            break
    return found, left


class Objections:
    """The objection procedure (module docstring)."""

    def __init__(self, erasures: Erasures, store: InfluxStore) -> None:
        self._erasures = erasures
        self._store = store

    async def object(self, brand: str, subject: str) -> dict[str, Any]:
        """Object to profiling for the subject's twins; return the signed receipt.

        Raises CloudHubError (``unknown_brand``, ``objection_incomplete``)."""
        erasures = self._erasures
        try:
            twins = erasures.twins_of(brand, subject)
        except TwinSyncError as exc:
            raise CloudHubError(str(exc), reason=exc.reason) from None
        received = time.time_ns() // 1_000_000
        request_id = await asyncio.to_thread(erasures.open_request, brand, "objection", received)
        await asyncio.to_thread(
            erasures.blocks.add, brand, twins, PROFILE_BLOCK, request_id, received
        )
        purposes = dict.fromkeys(PROFILING_PURPOSES, False)
        erasures.broadcast_consent(brand, twins, purposes, "objection", request_id, received)
        # Every instance re-reads blocks within refresh_s; after that nobody writes them.
        await asyncio.sleep(erasures.blocks.refresh_s + 0.2)
        measurement = CLASS_MEASUREMENT["profile"]
        found, left = await delete_until_gone(
            self._store, measurement, twin_points_where(brand, twins)
        )
        if left:
            raise CloudHubError(
                f"{left} profile points of the twins are still in InfluxDB; retry the request",
                reason="objection_incomplete",
            )
        body = {
            "request_id": request_id,
            "kind": "objection",
            "brand": brand,
            "twins": twins,
            "received_ms": received,
            "completed_ms": time.time_ns() // 1_000_000,
            "purposes_withdrawn": list(PROFILING_PURPOSES),
            "field_class_removed": "profile",
            "points_found": found,
            "points_left": 0,
        }
        receipt = await asyncio.to_thread(erasures.finish_request, body, "objection")
        log.info("objection %s of brand %s: %d profile points deleted", request_id, brand, found)
        return receipt

    async def lift(self, brand: str, twins: list[str], purposes: dict[str, bool]) -> int:
        """Consent to a profiling purpose given again through the brand: lift the block."""
        if not any(purposes.get(p) for p in PROFILING_PURPOSES):
            return 0
        return await asyncio.to_thread(self._erasures.blocks.lift, brand, twins, PROFILE_BLOCK)
