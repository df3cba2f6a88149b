"""The state-store interface: the hub's shared state behind one API, on SQLite or PostgreSQL.

Hub instances keep no state of their own: the registry, API keys and audit, tombstones and
privacy requests, field blocks, twin links, retention turns, removal jobs, models and
rollouts, webhooks and their queue live in one database every instance opens. SQLite (a
file, WAL) is the embedded default for one host; PostgreSQL (psycopg 3, a small pool)
serves several hosts. The differences between the two are handled here and in the two
backends, nowhere else:

- **SQL**: callers write ``?`` placeholders (as sqlite3 does) and portable SQL on a
  :class:`Tx` (``_state_tx``: the portable upsert, insert-ignore and identity insert);
  the PostgreSQL backend rewrites them to ``%s``.
- **Transactions**: :meth:`StateStore.transaction` commits when the block ends and rolls
  back when an exception escapes it. A write transaction is exclusive on SQLite (``BEGIN
  IMMEDIATE``: one writer at a time, readers go on) and READ COMMITTED on PostgreSQL,
  where :meth:`Tx.lock` serialises read-then-write sections that must not interleave.
- **Leases**: :meth:`StateStore.claim` hands each due row to one claimer (SQLite: the
  immediate transaction; PostgreSQL: ``FOR UPDATE SKIP LOCKED``) and pushes its lease
  column forward, so a claimer that dies leaves the rows to be claimed again when the lease
  ends; :meth:`StateStore.try_lease` is a named lease (one holder at a time, e.g. a
  sweep's turn); :meth:`StateStore.exclusive` holds a named lock for the length of a
  transaction, released by the database when the transaction or its process ends.
- **Schema**: numbered migrations per backend (``_state_schema``), recorded in
  ``schema_migrations`` and applied by :meth:`StateStore.migrate` under a lock, so
  instances starting together apply each once; a database newer than the code is refused.

The API is synchronous and thread-safe: hub code calls it through ``asyncio.to_thread``
(one connection per transaction on SQLite, a pooled connection on PostgreSQL), never
from the event loop where it could wait for a lock or a database that is down. Errors:
``_state_errors``; opening one: ``_state_open``. Lease times come from the caller (the hub's
clock), so tests can step them; hosts sharing a database need synchronised clocks (NTP),
as the leases are seconds to minutes long.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from types import TracebackType

from ._state_errors import StateSchemaError, StateStoreError
from ._state_tx import Dialect, Params, Row, Tx, ident, lock_key

__all__ = ["MIGRATION_LOCK", "Migration", "StateStore"]

#: the lock instances take to apply migrations one at a time
MIGRATION_LOCK = "twinsync:schema_migrations"

Upgrade = Callable[[Tx], None]


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change of one backend: statements, then an optional step in
    Python (e.g. adding a column that files made by older hubs lack)."""

    version: int
    name: str
    statements: tuple[str, ...]
    upgrade: Upgrade | None = None


class StateStore(ABC):
    """The hub's shared state (module docstring); a context manager that closes it."""

    dialect: Dialect

    #: the database, for messages and logs (never a password)
    url: str

    @abstractmethod
    def _transaction(self, *, readonly: bool, wait: bool) -> AbstractContextManager[Tx | None]:
        """Begin; yield the transaction (None: ``wait`` is False and the SQLite write
        lock is taken); commit at the end, roll back on an exception."""

    @abstractmethod
    def _migrations(self) -> tuple[Migration, ...]:
        """This backend's migrations, by version."""

    @abstractmethod
    def close(self) -> None:
        """Release connections (idempotent)."""

    def restart_identity(self, tx: Tx, table: str, column: str) -> None:  # noqa: B027
        """Make ``table``'s numbered ``column`` continue after the highest value in it (after
        rows were inserted with their numbers, as a copy does). SQLite's AUTOINCREMENT
        already does, so this does nothing (deliberately not abstract); PostgreSQL's
        identity sequence must be moved."""

    # -- transactions --------------------------------------------------------------------
    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Tx]:
        """A transaction, committed when the block ends, rolled back when an exception
        escapes it (nothing of it is then stored)."""
        with self._transaction(readonly=readonly, wait=True) as tx:
            assert tx is not None  # waiting transactions always begin, or raise
            yield tx

    def warm(self, *, readonly: bool) -> AbstractContextManager[Tx]:
        """A transaction for work on large tables done again and again (the twin query
        index: its queries, ingest's merges): :meth:`transaction`, except that the SQLite
        store keeps a connection per thread for these, so the pages they touch stay in its
        cache from one transaction to the next (PostgreSQL's pooled connections and shared
        buffers already do). As durable as :meth:`transaction`."""
        return self.transaction(readonly=readonly)

    @contextmanager
    def exclusive(self, name: str, *, wait: bool = True) -> Iterator[Tx | None]:
        """A write transaction holding the lock ``name`` (None when ``wait`` is False and
        another transaction holds it). The database releases it when the transaction ends
        or its process dies. On SQLite every such lock is the one database write lock:
        hold it briefly."""
        with self._transaction(readonly=False, wait=wait) as tx:
            if tx is not None and tx._lock(lock_key(name), wait=wait):
                yield tx
            else:
                yield None

    # -- schema --------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply the migrations this database lacks, in order, in one transaction under
        the migration lock; return the versions applied (empty: already current). Raises
        StateSchemaError when the database was migrated by a newer hub."""
        migrations = self._migrations()
        known = migrations[-1].version if migrations else 0
        with self.transaction() as tx:
            tx.lock(MIGRATION_LOCK)
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
            )
            applied = {int(r[0]) for r in tx.execute("SELECT version FROM schema_migrations")}
            if applied and max(applied) > known:
                raise StateSchemaError(
                    f"the state store {self.url} is at schema version {max(applied)}, newer "
                    f"than this hub knows ({known}): upgrade this hub to the version the "
                    "other instances run"
                )
            done = []
            for migration in migrations:
                if migration.version in applied:
                    continue
                try:
                    for statement in migration.statements:
                        tx.execute(statement)
                    if migration.upgrade is not None:
                        migration.upgrade(tx)
                except StateStoreError as exc:
                    raise StateSchemaError(
                        f"migration {migration.version} ({migration.name}) of {self.url} "
                        f"failed; nothing of this run was applied: {exc}"
                    ) from exc
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_ms) "
                    f"VALUES (?, ?, {self.dialect.now_ms})",
                    (migration.version, migration.name),
                )
                done.append(migration.version)
        return done

    def version(self) -> int:
        """The newest migration applied (0: none)."""
        with self.transaction(readonly=True) as tx:
            found = tx.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_name = 'schema_migrations' "
                "AND table_schema = current_schema()"
                if self.dialect.name == "postgresql"
                else "SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'"
            ).fetchone()
            if found is None:
                return 0
            return int(tx.execute("SELECT MAX(version) FROM schema_migrations").scalar() or 0)

    # -- leases --------------------------------------------------------------------------
    def claim(
        self,
        table: str,
        *,
        lease_column: str,
        now_ms: int,
        lease_ms: int,
        columns: Sequence[str] = (),
        key: str = "id",
        where: str = "",
        params: Params = (),
        order_by: str = "",
        limit: int = 1,
    ) -> list[Row]:
        """Take up to ``limit`` rows of ``table`` that are due (``lease_column <=
        now_ms``, and ``where`` with ``params``), in ``order_by`` order (default ``key``),
        and move their ``lease_column`` to ``now_ms + lease_ms``, in one transaction.
        Two claimers never get the same row; a row whose claimer died is due again when
        its lease ends. Returns ``(key, *columns)`` per row taken. ``where`` and
        ``order_by`` are SQL written by code (values go in ``params``), never a user's."""
        cols = ", ".join([ident(key), *(ident(c) for c in columns)])
        lease = ident(lease_column)
        extra = f" AND ({where})" if where else ""
        with self.transaction() as tx:
            rows = tx.execute(
                f"SELECT {cols} FROM {ident(table)} WHERE {lease} <= ?{extra} "
                f"ORDER BY {order_by or ident(key)} LIMIT ?{self.dialect.skip_locked}",
                (now_ms, *params, limit),
            ).fetchall()
            tx.executemany(
                f"UPDATE {ident(table)} SET {lease} = ? WHERE {ident(key)} = ?",
                [(now_ms + lease_ms, row[0]) for row in rows],
            )
        return rows

    def try_lease(self, name: str, holder: str, *, now_ms: int, ttl_ms: int) -> bool:
        """Take or renew the named lease for ``holder`` until ``now_ms + ttl_ms``; False
        while another holder's lease runs."""
        with self.transaction() as tx:
            row = tx.execute(
                "INSERT INTO state_leases (name, holder, expires_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "expires_ms = excluded.expires_ms WHERE state_leases.holder = excluded.holder "
                "OR state_leases.expires_ms <= ? RETURNING holder",
                (name, holder, now_ms + ttl_ms, now_ms),
            ).fetchone()
        return row is not None

    def release_lease(self, name: str, holder: str) -> bool:
        """End ``holder``'s lease ``name`` now (False: it held none)."""
        with self.transaction() as tx:
            gone = tx.execute(
                "DELETE FROM state_leases WHERE name = ? AND holder = ?", (name, holder)
            ).rowcount
        return gone > 0

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
