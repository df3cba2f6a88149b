"""One transaction on the state store: statements with ``?`` placeholders, the portable
forms of what differs between SQLite and PostgreSQL, and transaction-scoped locks.

A :class:`Tx` is what :meth:`StateStore.transaction <cloud_hub.store.StateStore>` yields;
each backend (``_state_sqlite``, ``_state_postgres``) provides how a statement runs and
how a lock is taken, and nothing else. Callers write ``?`` placeholders and portable SQL;
:meth:`Tx.upsert`, :meth:`Tx.insert_ignore` and :meth:`Tx.insert` (``RETURNING`` an
identity column) stand for ``INSERT OR REPLACE``, ``INSERT OR IGNORE`` and
``cursor.lastrowid``; :attr:`Dialect.now_ms` is the database's clock in Unix ms.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ._state_errors import StateStoreError

__all__ = ["Dialect", "Params", "Result", "Row", "Tx", "ident", "lock_key", "marks"]

Row = tuple[Any, ...]
Params = Sequence[object]
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def ident(name: str) -> str:
    """``name`` if it is a plain lower-case SQL identifier; table and column names are
    written into SQL text, so nothing else gets through."""
    if not _IDENT.match(name):
        raise StateStoreError(f"not a plain SQL identifier: {name!r}")
    return name


def lock_key(name: str) -> int:
    """A lock name as the signed 64-bit key PostgreSQL's advisory locks take."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), signed=True)


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the backends' SQL."""

    name: Literal["sqlite", "postgresql"]
    #: an expression for the database's clock, Unix ms (integer)
    now_ms: str
    #: appended to the SELECT of a claim: lock the rows taken, skip those others hold
    skip_locked: str


class Result:
    """The rows (all fetched), their column names and the row count of one statement."""

    __slots__ = ("columns", "rowcount", "rows")

    def __init__(self, rows: list[Row], rowcount: int, columns: tuple[str, ...] = ()) -> None:
        self.rows = rows
        #: rows changed (INSERT/UPDATE/DELETE); -1 when the driver does not know
        self.rowcount = rowcount
        #: the names of the columns of ``rows`` (empty for a statement without rows)
        self.columns = columns

    def fetchone(self) -> Row | None:
        """The first row, or None."""
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Row]:
        """Every row."""
        return list(self.rows)

    def scalar(self) -> Any:
        """The first column of the first row, or None."""
        return self.rows[0][0] if self.rows else None

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)


class _Cursor(Protocol):
    """The part of a DB-API cursor (sqlite3, psycopg) a transaction uses."""

    @property
    def description(self) -> Any: ...

    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> Any: ...


class Tx(ABC):
    """One open transaction: statements run on it, commit or roll back with the block."""

    def __init__(self, dialect: Dialect, readonly: bool) -> None:
        self.dialect = dialect
        self.readonly = readonly

    # -- what a backend provides -------------------------------------------------------
    @abstractmethod
    def _run(self, sql: str, params: Params) -> _Cursor:
        """Execute ``sql`` (``?`` placeholders) with foreign errors translated."""

    @abstractmethod
    def _run_many(self, sql: str, rows: list[Params]) -> int:
        """Execute ``sql`` once per row; the total row count."""

    @abstractmethod
    def _lock(self, key: int, *, wait: bool) -> bool:
        """Take the named lock until the transaction ends (False: held elsewhere)."""

    @abstractmethod
    def _lock_shared(self, key: int) -> None:
        """Wait for the named lock in shared mode and hold it until the transaction ends."""

    # -- statements ----------------------------------------------------------------------
    def execute(self, sql: str, params: Params = ()) -> Result:
        """Run one statement with ``?`` placeholders; its rows are fetched at once."""
        cursor = self._run(sql, params)
        if cursor.description is None:
            return Result([], cursor.rowcount)
        columns = tuple(str(d[0]) for d in cursor.description)
        return Result([tuple(r) for r in cursor.fetchall()], cursor.rowcount, columns)

    def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        """Run one statement for each parameter row; return the rows changed in all."""
        batch = list(rows)
        return self._run_many(sql, batch) if batch else 0

    def insert(self, table: str, row: Mapping[str, object], *, returning: str = "") -> Any:
        """INSERT one row; return column ``returning`` of it (an identity column's new
        value, what ``cursor.lastrowid`` gave), or None."""
        cols = [ident(c) for c in row]
        sql = f"INSERT INTO {ident(table)} ({', '.join(cols)}) VALUES ({marks(len(cols))})"
        if returning:
            return self.execute(f"{sql} RETURNING {ident(returning)}", list(row.values())).scalar()
        self.execute(sql, list(row.values()))
        return None

    def insert_ignore(self, table: str, rows: Sequence[Mapping[str, object]]) -> int:
        """INSERT rows, leaving those whose key exists untouched (``INSERT OR IGNORE``);
        return how many were inserted."""
        if not rows:
            return 0
        cols = [ident(c) for c in rows[0]]
        sql = (
            f"INSERT INTO {ident(table)} ({', '.join(cols)}) VALUES ({marks(len(cols))}) "
            "ON CONFLICT DO NOTHING"
        )
        return self.executemany(sql, [[r[c] for c in cols] for r in rows])

    def upsert(
        self,
        table: str,
        rows: Sequence[Mapping[str, object]],
        key: Sequence[str],
        update: Sequence[str] | Mapping[str, str] | None = None,
    ) -> int:
        """INSERT rows; a row whose ``key`` exists is updated instead: the columns named in
        ``update`` (default: every column not in ``key``) from the new row, or with a
        mapping, column -> SQL expression (code-written: ``excluded.col`` is the new row,
        ``<table>.col`` the stored one; PostgreSQL refuses an unqualified column there).
        Returns the rows inserted or updated."""
        if not rows:
            return 0
        cols = [ident(c) for c in rows[0]]
        keys = [ident(k) for k in key]
        if update is None:
            update = [c for c in cols if c not in keys]
        sets = (
            [f"{ident(c)} = {expr}" for c, expr in update.items()]
            if isinstance(update, Mapping)
            else [f"{ident(c)} = excluded.{ident(c)}" for c in update]
        )
        action = f"DO UPDATE SET {', '.join(sets)}" if sets else "DO NOTHING"
        sql = (
            f"INSERT INTO {ident(table)} ({', '.join(cols)}) VALUES ({marks(len(cols))}) "
            f"ON CONFLICT ({', '.join(keys)}) {action}"
        )
        return self.executemany(sql, [[r[c] for c in cols] for r in rows])

    def now_ms(self) -> int:
        """The database's clock, Unix ms (one clock for every host sharing the store)."""
        return int(self.execute(f"SELECT {self.dialect.now_ms}").scalar())

    # -- locks ---------------------------------------------------------------------------
    def lock(self, name: str) -> None:
        """Wait for the lock ``name`` and hold it until this transaction ends, so
        read-then-write sections of several instances do not interleave. (SQLite: a write
        transaction already excludes every other writer.)"""
        self._check_writable("lock")
        self._lock(lock_key(name), wait=True)

    def lock_shared(self, name: str) -> None:
        """Wait for the lock ``name`` in shared mode and hold it until this transaction
        ends: any number of transactions hold it shared at once, none while another holds
        it with :meth:`lock` (which waits for every shared holder to end). For many
        writers that must not interleave with one rarer writer (ingest's index updates
        and a privacy request's index change). (SQLite: a write transaction already
        excludes every other writer.)"""
        self._check_writable("lock_shared")
        self._lock_shared(lock_key(name))

    def try_lock(self, name: str) -> bool:
        """Take the lock ``name`` until this transaction ends if nobody holds it."""
        self._check_writable("try_lock")
        return self._lock(lock_key(name), wait=False)

    def _check_writable(self, what: str) -> None:
        if self.readonly:
            raise StateStoreError(f"{what}() needs a write transaction (readonly=False)")


def marks(n: int) -> str:
    """``n`` placeholders, comma-separated (``?, ?, ?``)."""
    return ", ".join("?" * n)
