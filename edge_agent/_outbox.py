"""outbox: the durable store of everything not yet acked (SQLite, WAL).

One transaction per group commit holds the new deltas *and* the agent state that produced
them (firmware seq, HLC, twin values, next delta seq), so after a power cut the agent
resumes exactly at its last commit: nothing acked to firmware is lost, nothing is redone.
``synchronous=FULL`` makes each commit durable before firmware is told "accepted".

Bounds: ``max_bytes`` and ``max_age_s``. Beyond them the oldest deltas are dropped, the
count is persisted and reported in the device status, and a warning is logged.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol import (
    HLC,
    BoxPrivateKey,
    ConsentEntry,
    HybridClock,
    Scalar,
    TwinLink,
    packb,
    unpackb,
)

from ._errors import OutboxError
from ._freshness import DownlinkFreshness
from ._twin import TwinBook, erased_digest

__all__ = ["Outbox", "OutboxRow"]

log = logging.getLogger("edge_agent.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    fw_seq INTEGER NOT NULL, hlc INTEGER NOT NULL, next_seq INTEGER NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS twin_state (
    twin TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (twin, field)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY, created_ms INTEGER NOT NULL, body BLOB NOT NULL,
    ops INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS erased (digest TEXT PRIMARY KEY, erased_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS box_key (
    id INTEGER PRIMARY KEY CHECK (id = 1), private BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS suppressed (
    twin TEXT NOT NULL, field TEXT NOT NULL, PRIMARY KEY (twin, field)
);
CREATE TABLE IF NOT EXISTS consent_ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, twin TEXT NOT NULL, ts_ms INTEGER NOT NULL,
    purposes TEXT NOT NULL, actor TEXT NOT NULL, notice TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One sealed delta waiting for its ack."""

    seq: int
    created_ms: int
    body: bytes


class Outbox:
    """The agent's SQLite file. Not thread-safe: the agent uses it from its event loop."""

    def __init__(self, path: Path, max_bytes: int, max_age_ms: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age_ms = max_age_ms
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # Deleted rows are overwritten, not left in free pages (erasure is for real).
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        #: what the device applied of the hub's commands (same file: see _freshness)
        self.freshness = DownlinkFreshness(self._db)
        self.bytes = int(
            self._db.execute("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM outbox").fetchone()[0]
        )
        self.depth = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        """Close the database (every commit is already durable)."""
        self._db.close()

    def load(self, book: TwinBook, initial_seq: int) -> tuple[int, int]:
        """Restore ``book`` from disk; return (next delta seq, dropped count)."""
        row = self._db.execute("SELECT fw_seq, hlc, next_seq, dropped FROM meta").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta (id, fw_seq, hlc, next_seq) VALUES (1, -1, 0, ?)", (initial_seq,)
            )
            return initial_seq, 0
        book.fw_seq = row[0]
        book.clock = HybridClock(HLC.unpack(row[1]))
        for twin, field, value in self._db.execute("SELECT twin, field, value FROM twin_state"):
            book.values[(twin, field)] = json.loads(value)
        book.erased = {r[0] for r in self._db.execute("SELECT digest FROM erased")}
        book.gate.apply(self.consent_ledger())
        for twin, field in self._db.execute("SELECT twin, field FROM suppressed"):
            book.gate.suppress(twin, (field,))
        book.restored()
        return int(row[2]), int(row[3])

    def box_key(self) -> BoxPrivateKey:
        """The device box key sealed deltas are encrypted with, made on first use.

        It lives in this file beside ``next_seq`` on purpose: sealing derives its nonces
        from seqs, so key and counter must survive (or vanish) together. A wiped outbox
        restarts seqs from the clock, which may be wrong, but it also gets a new key, so
        a (key, nonce) pair can never come back (docs/privacy.md, "Sealed deltas").
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT private FROM box_key").fetchone()
            if row is None:
                key = BoxPrivateKey.generate()
                self._db.execute(
                    "INSERT INTO box_key (id, private) VALUES (1, ?)", (key.to_bytes(),)
                )
            else:
                key = BoxPrivateKey.from_bytes(bytes(row[0]))
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise OutboxError(f"cannot read or store the device box key: {exc}") from exc
        return key

    def commit(
        self,
        book: TwinBook,
        bodies: list[bytes],
        ops: list[int],
        next_seq: int,
        now_ms: int,
        consent: Sequence[ConsentEntry] = (),
        links: Sequence[TwinLink] = (),
    ) -> list[int]:
        """Persist state, new deltas and consent ledger rows in one transaction; return
        the seqs assigned. ``links`` (key rotation) rename a twin's state and ledger rows
        in the same transaction as the delta that tells the hub."""
        seqs = list(range(next_seq, next_seq + len(bodies)))
        state = [(t, f, json.dumps(v)) for t, f, v in book.take_dirty()]
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for old, new in links:
                self._db.execute("UPDATE OR REPLACE twin_state SET twin=? WHERE twin=?", (new, old))
                self._db.execute("UPDATE consent_ledger SET twin=? WHERE twin=?", (new, old))
                self._db.execute("UPDATE OR REPLACE suppressed SET twin=? WHERE twin=?", (new, old))
                self.freshness.rename(old, new)
            self._db.executemany(
                "INSERT INTO outbox (seq, created_ms, body, ops) VALUES (?, ?, ?, ?)",
                [(s, now_ms, b, n) for s, b, n in zip(seqs, bodies, ops, strict=True)],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO twin_state (twin, field, value) VALUES (?, ?, ?)", state
            )
            self._db.executemany(
                "INSERT INTO consent_ledger (twin, ts_ms, purposes, actor, notice) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (e.twin, e.ts_ms, json.dumps(dict(e.purposes)), e.actor, e.notice)
                    for e in consent
                ],
            )
            self._db.execute(
                "UPDATE meta SET fw_seq=?, hlc=?, next_seq=?",
                (book.fw_seq, book.hlc.pack(), next_seq + len(bodies)),
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise OutboxError(f"outbox commit failed: {exc}") from exc
        self.bytes += sum(map(len, bodies))
        self.depth += len(bodies)
        return seqs

    def enforce_bounds(self, now_ms: int) -> int:
        """Drop the oldest deltas beyond the age or byte bound; return how many."""
        dropped = 0
        cutoff = now_ms - self.max_age_ms
        old = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM outbox WHERE created_ms < ?",
            (cutoff,),
        ).fetchone()
        if old[0]:
            self._db.execute("DELETE FROM outbox WHERE created_ms < ?", (cutoff,))
            dropped += old[0]
            self.bytes -= old[1]
            log.warning(
                "outbox: dropped %d deltas older than %d s (never acked)",
                old[0],
                self.max_age_ms // 1000,
            )
        while self.bytes > self.max_bytes:
            row = self._db.execute(
                "SELECT seq, LENGTH(body) FROM outbox ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is None:
                break
            self._db.execute("DELETE FROM outbox WHERE seq=?", (row[0],))
            self.bytes -= row[1]
            dropped += 1
        if dropped:
            self.depth = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            self._db.execute("UPDATE meta SET dropped = dropped + ?", (dropped,))
            if self.bytes <= self.max_bytes and not old[0]:
                log.warning(
                    "outbox: over %d bytes, dropped the %d oldest deltas", self.max_bytes, dropped
                )
        return dropped

    def unacked(self, limit: int, after_seq: int = -1) -> list[OutboxRow]:
        """Oldest-first deltas with seq > ``after_seq``."""
        rows = self._db.execute(
            "SELECT seq, created_ms, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [OutboxRow(int(r[0]), int(r[1]), bytes(r[2])) for r in rows]

    def get(self, seq: int) -> OutboxRow | None:
        """One delta by seq, if still unacked."""
        r = self._db.execute(
            "SELECT seq, created_ms, body FROM outbox WHERE seq=?", (seq,)
        ).fetchone()
        return None if r is None else OutboxRow(int(r[0]), int(r[1]), bytes(r[2]))

    def delete(self, seqs: list[int]) -> int:
        """Remove acked (or hub-rejected) deltas; return how many were present."""
        if not seqs:
            return 0
        marks = ",".join("?" * len(seqs))
        size, count = self._db.execute(
            f"SELECT COALESCE(SUM(LENGTH(body)), 0), COUNT(*) FROM outbox WHERE seq IN ({marks})",
            seqs,
        ).fetchone()
        if count:
            self._db.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", seqs)
            self.bytes -= size
            self.depth -= count
        return int(count)

    def forget(self, twins: set[str], erased_ms: int) -> tuple[int, int]:
        """Erase ``twins``: their state rows, and their ops from every unsent delta (a
        delta left empty is deleted); remember them as erased (by digest only).

        Returns (deltas rewritten, deltas deleted). ``secure_delete`` and a WAL checkpoint
        leave no old page holding their data."""
        rewrite: list[tuple[bytes, int, int]] = []
        delete: list[int] = []
        for seq, body in self._db.execute("SELECT seq, body FROM outbox").fetchall():
            wire: dict[str, list[list[Any]]] = unpackb(bytes(body))  # type: ignore[assignment]
            ops = [e for e in wire["t"] if e[0] not in twins]
            consent = [e for e in wire.get("c", []) if e[0] not in twins]
            links = [e for e in wire.get("l", []) if e[0] not in twins and e[1] not in twins]
            if (
                len(ops) == len(wire["t"])
                and len(consent) == len(wire.get("c", []))
                and len(links) == len(wire.get("l", []))
            ):
                continue
            if ops or consent or links:
                kept: dict[str, object] = {
                    "t": ops,
                    **({"c": consent} if consent else {}),
                    **({"l": links} if links else {}),
                }
                rewrite.append((packb(kept), sum(len(e[1]) for e in ops), seq))
            else:
                delete.append(seq)
        marks = ",".join("?" * len(twins))
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("UPDATE outbox SET body=?, ops=? WHERE seq=?", rewrite)
            self._db.executemany("DELETE FROM outbox WHERE seq=?", [(s,) for s in delete])
            self._db.execute(f"DELETE FROM twin_state WHERE twin IN ({marks})", sorted(twins))
            self._db.execute(f"DELETE FROM consent_ledger WHERE twin IN ({marks})", sorted(twins))
            self._db.execute(f"DELETE FROM suppressed WHERE twin IN ({marks})", sorted(twins))
            self.freshness.forget(sorted(twins))
            self._db.executemany(
                "INSERT OR IGNORE INTO erased (digest, erased_ms) VALUES (?, ?)",
                [(erased_digest(t), erased_ms) for t in sorted(twins)],
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise OutboxError(f"outbox erasure failed: {exc}") from exc
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.bytes = int(
            self._db.execute("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM outbox").fetchone()[0]
        )
        self.depth = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        return len(rewrite), len(delete)

    def suppress(self, twins: Sequence[str], fields: Sequence[str], *, lift: bool = False) -> None:
        """Persist that the customer suppressed ``fields`` of ``twins`` (or, with
        ``lift``, lifted that suppression); survives restarts."""
        sql = (
            "DELETE FROM suppressed WHERE twin=? AND field=?"
            if lift
            else "INSERT OR IGNORE INTO suppressed (twin, field) VALUES (?, ?)"
        )
        try:
            self._db.executemany(sql, [(t, f) for t in twins for f in fields])
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox cannot record a suppression change: {exc}") from exc

    def consent_ledger(self, twin: str | None = None) -> list[ConsentEntry]:
        """The consent ledger (oldest first), of one twin or all."""
        query = "SELECT twin, ts_ms, purposes, actor, notice FROM consent_ledger"
        rows = (
            self._db.execute(query + " ORDER BY id")
            if twin is None
            else self._db.execute(query + " WHERE twin=? ORDER BY id", (twin,))
        )
        return [
            ConsentEntry(r[0], r[1], tuple(sorted(json.loads(r[2]).items())), r[3], r[4])
            for r in rows
        ]

    def state_value(self, twin: str, field: str) -> Scalar | None:
        """A persisted twin value (for tests and the local view)."""
        r = self._db.execute(
            "SELECT value FROM twin_state WHERE twin=? AND field=?", (twin, field)
        ).fetchone()
        if r is None:
            return None
        value: Scalar = json.loads(r[0])
        return value
