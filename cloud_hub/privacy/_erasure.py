"""Erasure (GDPR Art. 17): delete a customer's twin for good, with a verifiable receipt.

The brand backend names the customer by the identifier it knows; the hub recomputes the
twin id under every key epoch it holds for the brand (there is no lookup table from twins
back to people) and then:

1. records a **tombstone** per twin id in the shared SQLite file: from then on every hub
   instance drops ops for that twin, from any device, whatever their timestamp (an outbox
   that was offline during the erasure cannot bring it back), and filters them out of
   batches built before it learnt of the tombstone, just before writing;
2. broadcasts a signed tombstone to every device of the brand (they drop the twins'
   state and unsent ops and store nothing for them again);
3. waits until every instance has learnt of it (``refresh_s``), deletes the twin's series
   from InfluxDB, and checks, deleting again if a write that was already on the wire
   landed meanwhile, until no point is left;
4. answers with a **receipt** signed by the hub's Ed25519 key: request id, brand, twin ids,
   when, points found and points left (0). Anyone with the hub's public key can check it.

The raw identifier is used in memory to compute the pseudonyms and is never stored or
logged; requests are recorded with their deadline (one month) and completion time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloud_hub._downlink import seal_downlink
from cloud_hub._errors import CloudHubError
from cloud_hub.store import TWIN_MEASUREMENTS, InfluxStore, SharedView, count_values, quote_str
from protocol import (
    BROADCAST,
    ConsentCommand,
    MessageKind,
    SigningKey,
    Tombstones,
    TwinSyncError,
    VerifyKey,
    broadcast_topic,
    check_brand,
    pseudonymize,
)

from ._objection import FieldBlocks

__all__ = ["DEADLINE_MS", "Erasures", "verify_receipt"]

log = logging.getLogger("cloud_hub.erasure")
_TWIN_LINE = tuple(f"{m}," for m in TWIN_MEASUREMENTS)
#: a data-subject request must be answered within one month (Art. 12(3)); we use 30 days
DEADLINE_MS = 30 * 86_400_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tombstones (
    brand      TEXT NOT NULL,
    twin       TEXT NOT NULL,
    erased_ms  INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    PRIMARY KEY (brand, twin)
);
CREATE TABLE IF NOT EXISTS privacy_requests (
    id           TEXT PRIMARY KEY,
    brand        TEXT NOT NULL,
    kind         TEXT NOT NULL,
    received_ms  INTEGER NOT NULL,
    deadline_ms  INTEGER NOT NULL,
    completed_ms INTEGER,
    receipt      TEXT
);
"""


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def verify_receipt(receipt: dict[str, Any], hub_key: VerifyKey) -> None:
    """Raise SignatureError unless ``receipt`` was signed by ``hub_key`` and is unaltered."""
    body = {k: v for k, v in receipt.items() if k != "signature"}
    hub_key.verify(bytes.fromhex(str(receipt.get("signature", ""))), _canonical(body))


class Erasures(SharedView[dict[str, frozenset[str]]]):
    """Tombstones and erasure requests (shared SQLite file) plus the erasure procedure."""

    SCHEMA = _SCHEMA

    def __init__(
        self,
        db_path: Path,
        secrets_dir: Path,
        store: InfluxStore,
        key: SigningKey,
        *,
        publish: Callable[[str, bytes], None] | None = None,
        notify: Callable[[str, str, dict[str, Any]], object] | None = None,
        refresh_s: float = 1.0,
    ) -> None:
        self._publish = publish
        #: called with (brand, event, data) after an erasure or a consent change (webhooks)
        self._notify = notify
        self._secrets = Path(secrets_dir)
        self._store = store
        self._key = key
        # generation: bumped whenever the tombstones or the field blocks change (batches
        # built before are re-checked, see :meth:`without_erased`)
        super().__init__(db_path, refresh_s)
        #: per-twin blocked fields (objection, suppression): see cloud_hub.privacy._objection
        self.blocks = FieldBlocks(self._db_path, refresh_s, on_change=self._bump)

    def _bump(self) -> None:
        self.generation += 1

    def _load(self, db: sqlite3.Connection) -> dict[str, frozenset[str]]:
        by_brand: dict[str, set[str]] = {}
        for brand, twin in db.execute("SELECT brand, twin FROM tombstones"):
            by_brand.setdefault(brand, set()).add(twin)
        return {b: frozenset(t) for b, t in by_brand.items()}

    # -- what ingestion asks ------------------------------------------------------------
    def erased(self, brand: str) -> frozenset[str]:
        """Tombstoned twin ids of ``brand`` (refreshed from the shared file at most every
        ``refresh_s``, so other instances' erasures count too)."""
        return self.view.get(brand, frozenset())

    # -- the procedure -----------------------------------------------------------------
    def twins_of(self, brand: str, subject: str) -> list[str]:
        """The subject's twin id under every key epoch held for ``brand``."""
        keys = sorted((self._secrets / "brands" / check_brand(brand)).glob("*.key"))
        if not keys:
            raise CloudHubError(
                f"no pseudonymization key for brand {brand}", reason="unknown_brand"
            )
        twins = []
        for path in keys:
            if path.stem.isdigit():
                twins.append(pseudonymize(path.read_bytes(), int(path.stem), subject))
        return twins

    async def erase(self, brand: str, subject: str) -> dict[str, Any]:
        """Erase the subject's twins; return the signed receipt."""
        try:
            twins = self.twins_of(brand, subject)
        except TwinSyncError as exc:
            raise CloudHubError(str(exc), reason=exc.reason) from None
        request_id = uuid.uuid4().hex
        received = time.time_ns() // 1_000_000
        await asyncio.to_thread(self._record, brand, twins, request_id, received)
        self._tell_devices(brand, twins, request_id, received)
        # Every instance re-reads tombstones within refresh_s; after that nobody writes them.
        await asyncio.sleep(self.refresh_s + 0.2)
        where = (
            f'"brand" = {quote_str(brand)} AND ('
            + " OR ".join(f'"twin" = {quote_str(t)}' for t in twins)
            + ")"
        )
        found = await count_values(self._store, where)
        left = found
        for attempt in range(5):
            # Every field class's measurement (InfluxQL's DELETE takes one at a time).
            # DELETE also drops the twin's series from the index; InfluxDB 1.x keeps
            # their tag values until an offline index rebuild (DROP SERIES does not
            # change that): docs/privacy.md, "Erasure"; tests/hub/test_influx_index.py.
            await self._store.query(
                ";".join(f'DELETE FROM "{m}" WHERE {where}' for m in TWIN_MEASUREMENTS),
                write=True,
            )
            await asyncio.sleep(0.2 * (attempt + 1))  # a write already on the wire lands
            left = await count_values(self._store, where)
            if left == 0:
                break
        # The twin's consent history goes with it (the request record remains).
        await self._store.query(f'DELETE FROM "consent" WHERE {where}', write=True)
        if left:
            raise CloudHubError(
                f"{left} points of the erased twins are still in InfluxDB; retry the request",
                reason="erasure_incomplete",
            )
        done = time.time_ns() // 1_000_000
        body = {
            "request_id": request_id,
            "kind": "erasure",
            "brand": brand,
            "twins": twins,
            "received_ms": received,
            "completed_ms": done,
            "points_found": found,
            "points_left": 0,
            "kid": self._key.kid,
        }
        receipt = {**body, "signature": self._key.sign(_canonical(body)).hex()}
        await asyncio.to_thread(self._complete, request_id, done, receipt)
        if self._notify is not None:
            await asyncio.to_thread(self._notify, brand, "erasure", {"receipt": receipt})
        log.info("erasure %s of brand %s: %d points deleted", request_id, brand, found)
        return receipt

    def broadcast_consent(
        self,
        brand: str,
        twins: list[str],
        purposes: dict[str, bool],
        notice: str,
        request_id: str,
        now: int,
    ) -> None:
        """Publish a hub-signed :class:`ConsentCommand` to every device of ``brand``."""
        body = ConsentCommand(
            twins=tuple(twins), purposes=purposes, notice=notice, request_id=request_id, ts_ms=now
        )
        self.broadcast(brand, "consent", body, now)

    def broadcast(self, brand: str, kind: MessageKind, body: Any, now: int) -> None:
        """Publish a hub-signed ``kind`` message to every device of ``brand`` (QoS 1)."""
        if self._publish is not None:
            message = seal_downlink(self._key, kind, brand, BROADCAST, body, sent_ms=now)
            self._publish(broadcast_topic(brand, kind), message)

    def send_consent(
        self, brand: str, twins: list[str], purposes: dict[str, bool], notice: str
    ) -> str:
        """Broadcast a signed consent change for ``twins``; devices that know a twin
        record it in their ledger (actor ``hub``) and it reaches the twin from there."""
        request_id = uuid.uuid4().hex
        now = time.time_ns() // 1_000_000
        self.broadcast_consent(brand, twins, purposes, notice, request_id, now)
        self.record(brand, "consent", now, {"twins": len(twins), "purposes": purposes})
        if self._notify is not None:
            data = {"request_id": request_id, "twins": twins, "purposes": purposes}
            self._notify(brand, "consent", {**data, "notice": notice})
        return request_id

    def _tell_devices(self, brand: str, twins: list[str], request_id: str, when: int) -> None:
        """Broadcast a signed tombstone: devices drop the twins' state and unsent ops.
        QoS 1 to persistent sessions, so an offline device gets it when it returns."""
        if self._publish is None:
            return
        body = Tombstones(twins=tuple(twins), request_id=request_id, erased_ms=when)
        message = seal_downlink(self._key, "tombstone", brand, BROADCAST, body)
        self._publish(broadcast_topic(brand, "tombstone"), message)

    def without_erased(self, lines: list[str]) -> list[str]:
        """``lines`` minus the twin points of tombstoned twins (line protocol as
        ``cloud_hub.store._lines`` writes it: ``twin,brand=..,device=..,twin=.. ...``, and
        ``twin_profile,...`` alike).

        Blocked fields of a twin (cloud_hub.privacy._objection) are left out the same way."""
        kept = []
        for line in lines:
            if line.startswith(_TWIN_LINE):
                tags = line.split(" ", 1)[0].split(",")
                brand, twin = tags[1][len("brand=") :], tags[3][len("twin=") :]
                if twin in self._view.get(brand, ()) or self.blocks.drops_line(brand, twin, line):
                    continue
            kept.append(line)
        return kept

    def _record(self, brand: str, twins: list[str], request_id: str, received: int) -> None:
        with self._connect() as db:
            db.executemany(
                "INSERT OR IGNORE INTO tombstones VALUES (?, ?, ?, ?)",
                [(brand, t, received, request_id) for t in twins],
            )
            # An erased twin needs no field blocks: nothing of it is stored again anyway.
            db.executemany(
                "DELETE FROM field_blocks WHERE brand=? AND twin=?", [(brand, t) for t in twins]
            )
            db.execute(
                "INSERT INTO privacy_requests (id, brand, kind, received_ms, deadline_ms) "
                "VALUES (?, ?, 'erasure', ?, ?)",
                (request_id, brand, received, received + DEADLINE_MS),
            )
        self.refresh()

    def open_request(self, brand: str, kind: str, received: int) -> str:
        """Record a request being worked on (state ``open`` until :meth:`finish_request`)."""
        request_id = uuid.uuid4().hex
        with self._connect() as db:
            db.execute(
                "INSERT INTO privacy_requests (id, brand, kind, received_ms, deadline_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                (request_id, brand, kind, received, received + DEADLINE_MS),
            )
        return request_id

    def finish_request(self, body: dict[str, Any], event: str | None = None) -> dict[str, Any]:
        """Sign ``body`` (with ``request_id``, ``completed_ms``) as a receipt, complete the
        request with it, queue webhook ``event`` carrying it; return the receipt."""
        body = {**body, "kid": self._key.kid}
        receipt = {**body, "signature": self._key.sign(_canonical(body)).hex()}
        self._complete(body["request_id"], body["completed_ms"], receipt)
        if event is not None and self._notify is not None:
            self._notify(body["brand"], event, {"receipt": receipt})
        return receipt

    def record(self, brand: str, kind: str, received: int, summary: dict[str, Any]) -> str:
        """Record a completed request of another kind (e.g. access) with its deadline."""
        request_id = uuid.uuid4().hex
        done = time.time_ns() // 1_000_000
        with self._connect() as db:
            db.execute(
                "INSERT INTO privacy_requests VALUES (?, ?, ?, ?, ?, ?, ?)",
                (request_id, brand, kind, received, received + DEADLINE_MS, done,
                 json.dumps(summary)),
            )  # fmt: skip
        return request_id

    def _complete(self, request_id: str, done: int, receipt: dict[str, Any]) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE privacy_requests SET completed_ms=?, receipt=? WHERE id=?",
                (done, json.dumps(receipt), request_id),
            )

    def requests(self, brand: str) -> list[dict[str, Any]]:
        """Every privacy request of ``brand`` with its deadline and state, newest first."""
        now = time.time_ns() // 1_000_000
        with self._connect() as db:
            rows = db.execute(
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
