"""The state store on one SQLite file: the embedded default for a single host.

The same file the hub has always used (``registry.path``), in WAL mode so readers never
wait for the writer. Every transaction opens its own connection (cheap, and safe from any
thread: hub code runs the store through ``asyncio.to_thread``) and closes it at the end.
Transactions are explicit: ``BEGIN`` for readers, ``BEGIN IMMEDIATE`` for writers, so a
read-then-write transaction holds the file's write lock from its first statement and
never fails half-way on a lock upgrade; a writer waits up to ``timeout_s`` for another.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cloud_hub._errors import ConfigError

from ._state import Migration, StateStore
from ._state_errors import (
    StateConflictError,
    StateStoreError,
    StateUnavailableError,
)
from ._state_schema import SQLITE_MIGRATIONS
from ._state_tx import Dialect, Params, Tx

__all__ = ["SqliteStateStore"]

#: the page cache of each thread's kept connections (KiB; SQLite's default is 2 MiB)
_KEPT_CACHE_KIB = 32_768

SQLITE = Dialect(
    "sqlite",
    now_ms="CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    skip_locked="",  # the claim's immediate transaction already excludes other writers
)


def _translate(exc: sqlite3.Error, path: Path) -> StateStoreError:
    """sqlite3's error as ours, saying what to do about it."""
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        return StateConflictError(f"the state store refused the change: {text}")
    if isinstance(exc, sqlite3.OperationalError) and (
        "locked" in text or "busy" in text or "unable to open" in text or "disk I/O" in text
    ):
        return StateUnavailableError(
            f"the state file {path} is busy or cannot be opened now ({text}); retry later"
        )
    return StateStoreError(f"the state file {path} refused a statement: {text}")


class _SqliteTx(Tx):
    def __init__(self, db: sqlite3.Connection, path: Path, readonly: bool) -> None:
        super().__init__(SQLITE, readonly)
        self._db = db
        self._path = path

    def _run(self, sql: str, params: Params) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise _translate(exc, self._path) from exc

    def _run_many(self, sql: str, rows: list[Params]) -> int:
        try:
            return self._db.executemany(sql, [tuple(r) for r in rows]).rowcount
        except sqlite3.Error as exc:
            raise _translate(exc, self._path) from exc

    def _lock(self, key: int, *, wait: bool) -> bool:
        # BEGIN IMMEDIATE made this the only writer of the file until it ends.
        return True

    def _lock_shared(self, key: int) -> None:
        # The same: one writer at a time is stricter than any shared lock.
        return None


class SqliteStateStore(StateStore):
    """The state store in the SQLite file ``path`` (created, with its folder, if missing)."""

    dialect = SQLITE

    def __init__(self, path: Path, *, timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.timeout_s = timeout_s
        #: each thread's kept connections (reader, writer) and the file (inode) it opened
        self._readers = threading.local()
        self._reader_list: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._use_wal()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the state file {self.path} ({exc}): set state.url (or "
                "registry.path) to a file in a folder the hub may write"
            ) from exc

    def _use_wal(self) -> None:
        """Put the file in WAL mode (persistent in the file: every connection of every
        instance then uses it, and readers do not wait for the writer)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            db = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
            try:
                if db.execute("PRAGMA journal_mode").fetchone() == ("wal",):
                    return
                db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                # Switching needs the file to itself, and SQLite does not wait for that:
                # instances starting together on a new file take turns.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            finally:
                db.close()
            time.sleep(0.02)

    def _migrations(self) -> tuple[Migration, ...]:
        return SQLITE_MIGRATIONS

    @contextmanager
    def _transaction(self, *, readonly: bool, wait: bool) -> Iterator[Tx | None]:
        try:
            db = sqlite3.connect(
                self.path, timeout=self.timeout_s if wait else 0, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc
        try:
            try:
                if readonly:
                    db.execute("PRAGMA query_only = ON")  # as PostgreSQL's READ ONLY
                db.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not wait and "locked" in str(exc):
                    yield None  # another writer holds the file
                    return
                raise _translate(exc, self.path) from exc
            tx = _SqliteTx(db, self.path, readonly)
            try:
                yield tx
            except BaseException:
                db.rollback()
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.rollback()
                raise _translate(exc, self.path) from exc
        finally:
            db.close()

    @contextmanager
    def warm(self, *, readonly: bool) -> Iterator[Tx]:
        """A transaction on this thread's own connection for ``readonly`` work, kept
        between calls so its page cache stays warm (the twin query index reads and
        merges much of large tables); reopened when the file was replaced, dropped after
        an error. Writers take the write lock up front, as :meth:`transaction` does."""
        db = self._kept(readonly)
        try:
            db.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._drop(db, readonly)
            raise _translate(exc, self.path) from exc
        try:
            yield _SqliteTx(db, self.path, readonly)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.rollback()
            self._drop(db, readonly)
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.rollback()
            self._drop(db, readonly)
            raise _translate(exc, self.path) from exc

    def _kept(self, readonly: bool) -> sqlite3.Connection:
        try:
            inode = os.stat(self.path).st_ino
        except OSError as exc:
            raise StateUnavailableError(
                f"the state file {self.path} cannot be opened now ({exc.strerror}); retry later"
            ) from exc
        name = "reader" if readonly else "writer"
        held: tuple[sqlite3.Connection, int] | None = getattr(self._readers, name, None)
        if held is not None and held[1] == inode:
            return held[0]
        if held is not None:
            self._drop(held[0], readonly)
        try:
            # check_same_thread=False only so close() may close it from another thread:
            # it is used by this thread alone.
            db = sqlite3.connect(
                self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
            )
            if readonly:
                db.execute("PRAGMA query_only = ON")
            db.execute(f"PRAGMA cache_size = -{_KEPT_CACHE_KIB}")
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc
        setattr(self._readers, name, (db, inode))
        with self._reader_lock:
            self._reader_list.append(db)
        return db

    def _drop(self, db: sqlite3.Connection, readonly: bool) -> None:
        setattr(self._readers, "reader" if readonly else "writer", None)
        with self._reader_lock:
            if db in self._reader_list:
                self._reader_list.remove(db)
        db.close()

    def close(self) -> None:
        """Close the kept connections of :meth:`warm` (other transactions keep nothing
        open between them)."""
        with self._reader_lock:
            readers, self._reader_list = self._reader_list, []
        for db in readers:
            db.close()
