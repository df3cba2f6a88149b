"""Trigger events: the durable log (the event stream's source), the delivery queue, and
the twins whose triggers the customer stopped.

An event is written by ingest in the transaction that merges the change into the twin
query index (cloud_hub.triggers._watch), once into the log and, for a rule with a
webhook, once into the queue. Its ``event_id`` is derived from (rule, twin, field, the
change's HLC): a replayed delta or a second hub instance merging the same change derives
the same id, and the log's unique (brand, event_id) keeps one. Receivers dedupe on
``event_id``. Log ids (``seq``) are the stream's ``Last-Event-ID``: writers of a brand's
events take the lock ``trigger_log:<brand>`` before their first insert, so ids are
committed in order (a reader that saw id n never later finds a smaller one appear).

The queue is ordered per (rule, twin): a twin's later event is not claimed while an
earlier one waits (in flight, or backing off after a failure). Claims lease an event
(``StateStore.claim``) so two instances never send it at once; one that dies mid-send
leaves it due again when the lease ends: at-least-once.

The customer's rights: an objection or a withdrawal of consent to profiling *holds* the
twin's triggers (no event is recorded for it after that, its queued events are dropped)
until consent to profiling is given again, and follows the twin to its new id when a key
rotation moves it; an erasure removes its events from the log
and the queue and its hold (nothing of the twin is kept). Retention: the log keeps
``triggers.log_retention`` worth and at most ``triggers.log_max_events`` per brand.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from cloud_hub.store import StateStore, Tx, chunks, marks

__all__ = ["SEQ_MAX", "TriggerEvents", "event_id", "log_lock"]

_MAX_BACKOFF_S = 300.0
#: a delivery attempt takes at most webhooks.timeout_s (<= 30 s): well inside this
_LEASE_MS = 60_000
#: the largest ``seq`` a client may name (a resume position)
SEQ_MAX = 2**62
#: the most events one stream or list read returns (a client's bounded batch)
PAGE_MAX = 500


def event_id(brand: str, rule_id: str, twin: str, field: str, hlc: int) -> str:
    """The event's id: the same change seen twice (a replay, another instance) has the
    same one; receivers dedupe on it."""
    text = f"{brand}\x00{rule_id}\x00{twin}\x00{field}\x00{hlc}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def log_lock(brand: str) -> str:
    """Held while a brand's events are inserted (ids committed in order, module docstring)."""
    return f"trigger_log:{brand}"


class TriggerEvents:
    """The log, the queue and the holds in the shared state store (blocking: call from a
    thread)."""

    def __init__(self, *, state: StateStore, max_events: int, retention_ms: int) -> None:
        self._state = state
        self._max_events = max_events
        self._retention_ms = retention_ms

    # -- written by ingest, inside the index transaction ------------------------------
    @staticmethod
    def record_in(
        tx: Tx, brand: str, events: Sequence[tuple[dict[str, Any], bool]], now_ms: int
    ) -> int:
        """Append ``events`` (body, whether its rule has a webhook) to the log and queue;
        those whose ``event_id`` is logged already are left out. Returns how many were new."""
        if not events:
            return 0
        tx.lock(log_lock(brand))
        new = 0
        for body, queued in events:
            row = {
                "brand": brand,
                "event_id": body["event_id"],
                "rule_id": body["rule_id"],
                "twin": body["twin"],
                "body": json.dumps(body, sort_keys=True),
                "created_ms": now_ms,
            }
            # One statement: an event_id already logged (unique per brand) returns no id.
            seq = tx.execute(
                "INSERT INTO trigger_events (brand, event_id, rule_id, twin, body, created_ms) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
                list(row.values()),
            ).scalar()
            if seq is None:
                continue
            new += 1
            if queued:
                sent = json.dumps({**body, "seq": int(seq)}, sort_keys=True)
                tx.insert(
                    "trigger_queue",
                    {k: row[k] for k in ("brand", "event_id", "rule_id", "twin")}
                    | {"body": sent, "due_ms": now_ms},
                )
        return new

    @staticmethod
    def held_in(tx: Tx, brand: str, twins: Sequence[str], profile_block: str) -> set[str]:
        """The twins of ``twins`` whose triggers are stopped: held (objection, consent
        withdrawn) or objected to (a profile block, before the hold is written)."""
        out: set[str] = set()
        for piece in chunks(sorted(set(twins))):
            out |= {
                str(r[0])
                for r in tx.execute(
                    f"SELECT twin FROM trigger_holds WHERE brand = ? AND twin IN "
                    f"({marks(len(piece))}) UNION SELECT twin FROM field_blocks WHERE "
                    f"brand = ? AND target = ? AND twin IN ({marks(len(piece))})",
                    (brand, *piece, brand, profile_block, *piece),
                )
            }
        return out

    # -- the stream and the list ---------------------------------------------------------
    def page(self, brand: str, after: int, limit: int = PAGE_MAX) -> list[dict[str, Any]]:
        """The brand's events with ``seq`` above ``after``, oldest first."""
        with self._state.transaction(readonly=True) as tx:
            rows = tx.execute(
                "SELECT id, body FROM trigger_events WHERE brand = ? AND id > ? ORDER BY id "
                "LIMIT ?",
                (brand, after, min(limit, PAGE_MAX)),
            ).fetchall()
        return [{**json.loads(str(body)), "seq": int(seq)} for seq, body in rows]

    def recent(self, brand: str, limit: int) -> list[dict[str, Any]]:
        """The brand's newest ``limit`` events, newest first."""
        with self._state.transaction(readonly=True) as tx:
            rows = tx.execute(
                "SELECT id, body FROM trigger_events WHERE brand = ? ORDER BY id DESC LIMIT ?",
                (brand, min(limit, PAGE_MAX)),
            ).fetchall()
        return [{**json.loads(str(body)), "seq": int(seq)} for seq, body in rows]

    def oldest(self, brand: str) -> int | None:
        """The smallest ``seq`` the log still holds for ``brand`` (None: none)."""
        with self._state.transaction(readonly=True) as tx:
            found = tx.execute(
                "SELECT MIN(id) FROM trigger_events WHERE brand = ?", (brand,)
            ).scalar()
        return None if found is None else int(found)

    def pending(self, brand: str) -> int:
        """How many events of ``brand`` wait for delivery."""
        with self._state.transaction(readonly=True) as tx:
            return int(
                tx.execute("SELECT COUNT(*) FROM trigger_queue WHERE brand = ?", (brand,)).scalar()
            )

    # -- delivery ------------------------------------------------------------------------
    def due(self, now_ms: int, limit: int = 50) -> list[tuple[int, str, str, str, str, int]]:
        """Claim due events, each the oldest waiting one of its (rule, twin): (queue id,
        brand, url, secret, body, attempts); leased so no other instance sends them."""
        claimed = self._state.claim(
            "trigger_queue",
            lease_column="due_ms",
            now_ms=now_ms,
            lease_ms=_LEASE_MS,
            columns=["brand", "rule_id", "body", "attempts"],
            where=(
                "NOT EXISTS (SELECT 1 FROM trigger_queue q WHERE q.brand = trigger_queue.brand "
                "AND q.rule_id = trigger_queue.rule_id AND q.twin = trigger_queue.twin "
                "AND q.id < trigger_queue.id) AND NOT EXISTS (SELECT 1 FROM trigger_holds h "
                "WHERE h.brand = trigger_queue.brand AND h.twin = trigger_queue.twin)"
            ),
            limit=limit,
        )
        if not claimed:
            return []
        keys = sorted({(str(r[1]), str(r[2])) for r in claimed})
        with self._state.transaction(readonly=True) as tx:
            # Read after the claim: a rule deleted in between has no endpoint any more.
            endpoints = {}
            for brand, rule_id in keys:
                row = tx.execute(
                    "SELECT url, secret FROM trigger_rules WHERE brand = ? AND rule_id = ?",
                    (brand, rule_id),
                ).fetchone()
                if row is not None and row[0] is not None:
                    endpoints[(brand, rule_id)] = (str(row[0]), str(row[1]))
        out = []
        for queue_id, brand, rule_id, body, attempts in claimed:
            target = endpoints.get((str(brand), str(rule_id)))
            if target is None:
                self.delivered(int(queue_id))  # its rule is gone: nowhere to send it
                continue
            out.append((int(queue_id), str(brand), *target, str(body), int(attempts)))
        return out

    def delivered(self, queue_id: int) -> None:
        """Drop a delivered event from the queue (the log keeps it)."""
        with self._state.transaction() as tx:
            tx.execute("DELETE FROM trigger_queue WHERE id = ?", (queue_id,))

    def retry_later(self, queue_id: int, attempts: int, now_ms: int) -> None:
        """Back off: 1 s doubling to 5 minutes (the twin's later events wait behind it)."""
        delay = min(2.0**attempts, _MAX_BACKOFF_S)
        with self._state.transaction() as tx:
            tx.execute(
                "UPDATE trigger_queue SET attempts = ?, due_ms = ? WHERE id = ?",
                (attempts + 1, now_ms + int(delay * 1000), queue_id),
            )

    # -- the customer's rights and retention ------------------------------------------
    def hold(self, brand: str, twins: Sequence[str], reason: str, now_ms: int) -> int:
        """Stop the triggers of ``twins`` (objection, consent to profiling withdrawn):
        drop their queued events; returns how many were dropped."""
        with self._state.transaction() as tx:
            tx.executemany(
                "INSERT INTO trigger_holds (brand, twin, reason, since_ms) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (brand, twin) DO UPDATE SET reason = excluded.reason",
                [(brand, t, reason, now_ms) for t in sorted(set(twins))],
            )
            return _delete(tx, "trigger_queue", brand, twins)

    def release(self, brand: str, twins: Sequence[str]) -> None:
        """Consent to profiling given again: triggers for ``twins`` resume."""
        with self._state.transaction() as tx:
            _delete(tx, "trigger_holds", brand, twins)

    def relink(self, brand: str, old: str, new: str) -> None:
        """Key rotation moved twin ``old`` to ``new``: a hold follows it."""
        with self._state.transaction() as tx:
            tx.execute(
                "INSERT INTO trigger_holds (brand, twin, reason, since_ms) SELECT brand, ?, "
                "reason, since_ms FROM trigger_holds WHERE brand = ? AND twin = ? "
                "ON CONFLICT DO NOTHING",
                (new, brand, old),
            )
            _delete(tx, "trigger_holds", brand, [old])

    def forget(self, brand: str, twins: Sequence[str]) -> None:
        """Erasure: remove every event, queued event and hold of ``twins``."""
        with self._state.transaction() as tx:
            for table in ("trigger_queue", "trigger_events", "trigger_holds"):
                _delete(tx, table, brand, twins)

    def prune(self, now_ms: int) -> int:
        """Apply the log's retention (age, then count per brand); returns rows removed."""
        with self._state.transaction() as tx:
            gone = tx.execute(
                "DELETE FROM trigger_events WHERE created_ms < ?", (now_ms - self._retention_ms,)
            ).rowcount
            for (brand,) in tx.execute("SELECT DISTINCT brand FROM trigger_events").fetchall():
                cut = tx.execute(
                    "SELECT id FROM trigger_events WHERE brand = ? ORDER BY id DESC "
                    "LIMIT 1 OFFSET ?",
                    (brand, self._max_events),
                ).scalar()
                if cut is not None:
                    gone += tx.execute(
                        "DELETE FROM trigger_events WHERE brand = ? AND id <= ?", (brand, cut)
                    ).rowcount
        return max(gone, 0)


def _delete(tx: Tx, table: str, brand: str, twins: Sequence[str]) -> int:
    gone = 0
    for piece in chunks(sorted(set(twins))):
        gone += tx.execute(
            f"DELETE FROM {table} WHERE brand = ? AND twin IN ({marks(len(piece))})",
            (brand, *piece),
        ).rowcount
    return gone
