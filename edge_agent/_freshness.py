"""freshness: a hub command is applied once, in order, and the device never goes back.

Every downlink is signed by the hub, but a signature says who, not when: a consent grant
captured off the broker verifies as well a month later, after the customer withdrew.
So the device remembers, in its SQLite file (the outbox's), what it has applied, and
compares only hub times with hub times (its own clock may be wrong):

- **consent commands** (``protocol.ConsentCommand``) are ordered per *target*: a twin's
  purpose, or a twin's field for ``suppress``/``restore``. Per target the device keeps
  the ``(ts_ms, request_id)`` of the last command it applied; a part of a command that is
  not newer is refused. Targets are independent, so a command of one hub instance about
  one twin never blocks a late one of another instance about another twin. The user's
  own change on the device (its app) moves the target's mark up to the newest hub time
  seen: a hub command issued before it cannot undo it when replayed.
- commands about twins the device does not hold are not applied (as before), but their
  time is kept per twin (as a digest, like erased twins): should the device meet that
  customer later, a replay of that command is refused too.
- a target without a mark falls back to the device's **floor**: the newest hub time seen
  minus :data:`COMMAND_WINDOW_MS`, and never below the first hub time this device saw
  (minus :data:`FIRST_CONTACT_SLACK_MS`): a command older than the device's first contact
  cannot have been queued for it, so only a replay brings it. Marks below the floor are
  pruned (the floor refuses what they would), which bounds the table; beyond
  :data:`MAX_MARKS` the oldest are dropped and the floor rises to them.
- **model sets** and **desired settings** carry a per-device version: one lower than the
  highest seen is refused (an equal one is the same content, e.g. the retained copy).
- **offers** (``protocol.OfferExposure``, the strategy lab's) are marked per twin and
  experiment: an experiment's offer reaches a twin's application at most once, and a
  replay (or any copy not newer than the one applied) is refused.
- **tombstones** are never refused (erasure only grows) and **acks** need nothing (a seq
  is never reused, so an ack replayed later deletes nothing that is still there).

Refusals are counted (``downlinks_refused``) and logged with the reason by the callers;
a refused command changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Iterable
from typing import Literal

from protocol import Desired, TwinSyncError, unpackb

from ._errors import OutboxError

__all__ = [
    "COMMAND_WINDOW_MS",
    "FIRST_CONTACT_SLACK_MS",
    "MAX_MARKS",
    "DownlinkFreshness",
    "TargetKind",
    "count_refusal",
]

log = logging.getLogger("edge_agent.freshness")

#: how far behind the newest hub time a command may be when the device has no mark for
#: its target (a late delivery from a hub instance that lost the broker for a while)
COMMAND_WINDOW_MS = 7 * 86_400_000
#: hub instances' clocks and publish queues differ a little: first contact allows this
FIRST_CONTACT_SLACK_MS = 10 * 60_000
#: consent marks kept at most (a device holds few twins; this bounds hostile traffic)
MAX_MARKS = 20_000
# Persist the newest hub time seen when it moved this much (acks arrive all the time).
_PERSIST_EVERY_MS = 60_000
_PRUNE_EVERY_MS = 3_600_000
# Sorts after every request id: the user's own change beats hub commands of the same ms.
_LOCAL = "\U0010ffff"

TargetKind = Literal["purpose", "field", "offer"]
_VERSIONED = ("model", "desired", "tags")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS downlink_clock (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    hub_ms INTEGER NOT NULL, floor_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS downlink_marks (
    twin TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    mark INTEGER NOT NULL, request TEXT NOT NULL, body BLOB,
    PRIMARY KEY (twin, kind, name)
);
"""
# Keep the newer of an existing mark and the one written (row values compare in order).
_UPSERT = (
    "INSERT INTO downlink_marks (twin, kind, name, mark, request, body) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (twin, kind, name) DO UPDATE SET "
    "mark = excluded.mark, request = excluded.request, body = excluded.body "
    "WHERE (excluded.mark, excluded.request) > (downlink_marks.mark, downlink_marks.request)"
)
_CONSENT_KINDS = "kind IN ('purpose', 'field', 'seen', 'offer')"


def _seen(twin: str) -> str:
    # Other customers' commands: enough to recognise the twin later, not its id.
    return hashlib.sha256(b"twinsync/seen/v1\x00" + twin.encode()).hexdigest()[:32]


def count_refusal(stats: dict[str, int], what: str, reason: str, detail: str) -> None:
    """Count and log one refused downlink (or refused part of one)."""
    stats["downlinks_refused"] = stats.get("downlinks_refused", 0) + 1
    log.warning("refused %s: %s (%s); nothing changed", what, reason, detail)


class DownlinkFreshness:
    """What the device applied of the hub's commands, persisted in the outbox's file.

    Shares the outbox's connection (one SQLite file, one event loop). :meth:`rename` and
    :meth:`forget` run inside the outbox's own transactions.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        window_ms: int = COMMAND_WINDOW_MS,
        max_marks: int = MAX_MARKS,
    ) -> None:
        self._db = db
        self.window_ms = window_ms
        self.max_marks = max_marks
        try:
            db.executescript(_SCHEMA)
            row = db.execute("SELECT hub_ms, floor_ms FROM downlink_clock").fetchone()
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open the downlink marks: {exc}") from exc
        #: the newest hub time seen on any verified downlink (0: never in contact)
        self.hub_ms, self._floor_ms = (0, 0) if row is None else (int(row[0]), int(row[1]))
        self._saved_ms = self.hub_ms
        self._pruned_ms = 0

    @property
    def floor_ms(self) -> int:
        """Commands about a target without a mark must be newer than this hub time."""
        return max(self._floor_ms, self.hub_ms - self.window_ms)

    def observe(self, hub_ms: int) -> None:
        """A verified downlink was sent at ``hub_ms`` (its signed ``sent_ms``)."""
        if hub_ms <= self.hub_ms:
            return
        first = self.hub_ms == 0
        self.hub_ms = hub_ms
        if first:
            self._floor_ms = max(self._floor_ms, hub_ms - FIRST_CONTACT_SLACK_MS)
        if first or hub_ms - self._saved_ms >= _PERSIST_EVERY_MS:
            self._save()
        if hub_ms - self._pruned_ms >= _PRUNE_EVERY_MS:
            self._prune()

    def refusal(self, twin: str, kind: TargetKind, name: str, ts_ms: int, request: str) -> str:
        """Why a command part about ``(twin, kind, name)`` must not be applied, or ``""``.

        ``stale``: not newer than the device's floor; ``not_newer``: not newer than the
        last command applied to the target (or than the user's own later change).
        """
        if ts_ms <= self.floor_ms:
            return "stale"
        rows = self._db.execute(
            "SELECT mark, request FROM downlink_marks WHERE (twin=? AND kind=? AND name=?) "
            "OR (twin=? AND kind='seen')",
            (twin, kind, name, _seen(twin)),
        ).fetchall()
        if any((ts_ms, request) <= (int(r[0]), str(r[1])) for r in rows):
            return "not_newer"
        return ""

    def applied(
        self, twin: str, kind: TargetKind, names: Iterable[str], ts_ms: int, request: str
    ) -> None:
        """Record a command part applied (call after applying it)."""
        self._mark([(twin, kind, n, ts_ms, request) for n in names])

    def local(self, twin: str, kind: TargetKind, names: Iterable[str]) -> None:
        """The user changed these targets on the device: hub commands from before the
        newest hub time seen are older than that change (one of that very millisecond is
        given the benefit of the doubt; one this device applied keeps its own mark)."""
        self._mark([(twin, kind, n, max(self.hub_ms - 1, 0), _LOCAL) for n in names])

    def unknown(self, twins: Iterable[str], ts_ms: int, request: str) -> None:
        """A command about twins this device does not hold (not applied, remembered)."""
        if ts_ms > self.floor_ms:
            self._mark([(_seen(t), "seen", "", ts_ms, request) for t in twins])

    def version(self, kind: Literal["model", "desired", "tags"]) -> int:
        """The highest version of ``kind`` seen (0: none)."""
        row = self._db.execute(
            "SELECT mark FROM downlink_marks WHERE twin='' AND kind=? AND name=''", (kind,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def set_version(
        self, kind: Literal["model", "desired", "tags"], version: int, body: bytes | None = None
    ) -> None:
        """Record ``version`` of ``kind`` as seen (with its body, to restore at start)."""
        assert kind in _VERSIONED
        try:
            self._db.execute(_UPSERT, ("", kind, "", version, "", body))
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot record {kind} version {version}: {exc}") from exc

    def admits(
        self, kind: Literal["model", "desired", "tags"], version: int, stats: dict[str, int]
    ) -> bool:
        """Whether a hub-signed ``kind`` of ``version`` may be taken: not lower than the
        highest seen (an equal one is the same content, e.g. the retained copy). A refusal
        is counted in ``stats`` and logged."""
        floor = self.version(kind)
        if version >= floor:
            return True
        count_refusal(
            stats, f"{kind} version {version}", "older than one this device has", f"has {floor}"
        )
        return False

    def body(self, kind: Literal["desired", "tags"]) -> bytes | None:
        """The body stored with the highest version of ``kind`` (None: none)."""
        row = self._db.execute(
            "SELECT body FROM downlink_marks WHERE twin='' AND kind=? AND name=''", (kind,)
        ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def desired(self) -> Desired | None:
        """The desired settings stored with the highest version (None: none, unreadable)."""
        row = self._db.execute(
            "SELECT body FROM downlink_marks WHERE twin='' AND kind='desired' AND name=''"
        ).fetchone()
        if row is None or row[0] is None:
            return None
        try:
            desired = Desired.from_wire(unpackb(bytes(row[0])))
        except TwinSyncError as exc:
            log.warning("stored desired settings unreadable (%s); waiting for the hub's", exc)
            return None
        assert isinstance(desired, Desired)  # type narrowing: from_wire returns its class
        return desired

    def rename(self, old: str, new: str) -> None:
        """Key rotation: ``old``'s marks are ``new``'s (inside the caller's transaction)."""
        self._db.execute("UPDATE OR IGNORE downlink_marks SET twin=? WHERE twin=?", (new, old))
        self._db.execute("DELETE FROM downlink_marks WHERE twin=?", (old,))

    def forget(self, twins: Iterable[str]) -> None:
        """Erased twins: drop their marks (inside the caller's transaction)."""
        self._db.executemany(
            "DELETE FROM downlink_marks WHERE twin IN (?, ?)", [(t, _seen(t)) for t in twins]
        )

    def _mark(self, rows: list[tuple[str, str, str, int, str]]) -> None:
        if not rows:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(_UPSERT, [(*r, None) for r in rows])
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise OutboxError(f"cannot record applied hub commands: {exc}") from exc
        count = self._db.execute(f"SELECT COUNT(*) FROM downlink_marks WHERE {_CONSENT_KINDS}")
        if int(count.fetchone()[0]) > self.max_marks:
            self._evict()

    def _evict(self) -> None:
        # Drop the oldest tenth; the floor rises to them, so what they refused stays
        # refused (only a target with no mark at all can be hit, and only by old news).
        cut = self._db.execute(
            f"SELECT mark FROM downlink_marks WHERE {_CONSENT_KINDS} ORDER BY mark "
            "LIMIT 1 OFFSET ?",
            (self.max_marks // 10,),
        ).fetchone()
        if cut is None:
            return
        self._floor_ms = max(self._floor_ms, int(cut[0]))
        self._db.execute(
            f"DELETE FROM downlink_marks WHERE {_CONSENT_KINDS} AND mark <= ?", (int(cut[0]),)
        )
        self._save()
        log.warning("downlink marks over %d: the oldest were dropped", self.max_marks)

    def _prune(self) -> None:
        self._pruned_ms = self.hub_ms
        try:
            self._db.execute(
                f"DELETE FROM downlink_marks WHERE {_CONSENT_KINDS} AND mark <= ?",
                (self.floor_ms,),
            )
        except sqlite3.Error as exc:
            log.warning("cannot prune old downlink marks (kept): %s", exc)

    def _save(self) -> None:
        try:
            self._db.execute(
                "INSERT INTO downlink_clock (id, hub_ms, floor_ms) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET hub_ms = excluded.hub_ms, "
                "floor_ms = excluded.floor_ms",
                (self.hub_ms, self._floor_ms),
            )
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot record the hub time seen: {exc}") from exc
        self._saved_ms = self.hub_ms
