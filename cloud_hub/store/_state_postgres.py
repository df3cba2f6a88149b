"""The state store on PostgreSQL (psycopg 3): shared by hub instances on several hosts.

psycopg and psycopg-pool (the ``postgres`` extra) are imported when a store is made, so a
hub on SQLite does not need them. Each instance keeps a small pool (``state.pool_size``);
a connection is checked before it is handed out, so one broken by a database restart is
replaced instead of failing a request. Transactions are READ COMMITTED; claims use
``SELECT ... FOR UPDATE SKIP LOCKED`` and named locks are transaction-scoped advisory
locks, which the server releases when the transaction ends or its connection dies.

Callers' SQL uses ``?`` placeholders; they become psycopg's ``%s`` here (outside quoted
literals and identifiers), and a literal ``%`` becomes ``%%``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from cloud_hub._errors import ConfigError
from cloud_hub._state_url import StateUrl

from ._state import Migration, StateStore
from ._state_errors import (
    StateConflictError,
    StateStoreError,
    StateUnavailableError,
)
from ._state_schema import POSTGRES_MIGRATIONS
from ._state_tx import Dialect, Params, Tx, ident

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["PostgresStateStore"]

POSTGRES = Dialect(
    "postgresql",
    now_ms="CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    skip_locked=" FOR UPDATE SKIP LOCKED",
)
#: what the server says when the user, password or database is wrong (a connection
#: failure carries no SQLSTATE in psycopg, only the server's message)
_CREDENTIALS = (
    "password authentication failed",
    "no password supplied",
    "no pg_hba.conf entry",
    "role ",
)
_NO_DATABASE = "does not exist"


@functools.lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """``?`` -> ``%s`` outside quotes, ``%`` -> ``%%`` everywhere (psycopg's syntax)."""
    out: list[str] = []
    quote = ""
    for char in sql:
        if quote:
            if char == quote:
                quote = ""
        elif char in ("'", '"'):
            quote = char
        elif char == "?":
            out.append("%s")
            continue
        out.append("%%" if char == "%" else char)
    return "".join(out)


def _translate(exc: Exception, url: str) -> StateStoreError:
    """psycopg's (or the pool's) error as ours, saying what to do about it."""
    import psycopg
    from psycopg_pool import PoolTimeout

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.IntegrityError):
        return StateConflictError(f"the state store refused the change: {text}")
    if isinstance(exc, PoolTimeout | psycopg.OperationalError):
        return StateUnavailableError(
            f"the state store {url} is unreachable or busy ({text}); retry later"
        )
    return StateStoreError(f"the state store {url} refused a statement: {text}")


class _PostgresTx(Tx):
    def __init__(self, cursor: psycopg.Cursor[Any], url: str, readonly: bool) -> None:
        super().__init__(POSTGRES, readonly)
        self._cursor = cursor
        self._url = url

    def _run(self, sql: str, params: Params) -> psycopg.Cursor[Any]:
        import psycopg

        try:
            return self._cursor.execute(to_pyformat(sql), tuple(params))
        except psycopg.Error as exc:
            raise _translate(exc, self._url) from exc

    def _run_many(self, sql: str, rows: list[Params]) -> int:
        import psycopg

        try:
            self._cursor.executemany(to_pyformat(sql), [tuple(r) for r in rows])
        except psycopg.Error as exc:
            raise _translate(exc, self._url) from exc
        return self._cursor.rowcount  # the sum over every row (psycopg >= 3.1)

    def _lock(self, key: int, *, wait: bool) -> bool:
        if wait:
            self.execute("SELECT pg_advisory_xact_lock(?)", (key,))
            return True
        return bool(self.execute("SELECT pg_try_advisory_xact_lock(?)", (key,)).scalar())

    def _lock_shared(self, key: int) -> None:
        self.execute("SELECT pg_advisory_xact_lock_shared(?)", (key,))


class PostgresStateStore(StateStore):
    """The state store in the PostgreSQL database ``target`` names (``state.url``)."""

    dialect = POSTGRES

    def __init__(
        self, target: StateUrl, *, password: str = "", pool_size: int = 4, timeout_s: float = 10.0
    ) -> None:
        try:
            import psycopg
            from psycopg.conninfo import make_conninfo
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise ConfigError(
                f"state.url is a PostgreSQL database but {exc.name} is not installed: "
                "pip install 'twinsync[hub,postgres]'"
            ) from None
        self.url = str(target)
        self.timeout_s = timeout_s
        conninfo = make_conninfo(
            host=target.host,
            port=target.port,
            user=target.user,
            dbname=target.database,
            password=password or None,
            connect_timeout=max(1, round(timeout_s)),
            # A lock held elsewhere (a named lock, a row) is waited for as long as a
            # SQLite writer waits for the file, then reported instead of hanging.
            options=f"-c lock_timeout={int(timeout_s * 1000)}",
            **{"application_name": "twinsync-hub", **target.options},
        )
        # One connection first, to say precisely what is wrong (the pool only retries).
        try:
            psycopg.connect(conninfo, autocommit=True).close()
        except psycopg.OperationalError as exc:
            raise self._refused(exc, target) from exc
        self._pool: ConnectionPool[Any] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            timeout=timeout_s,
            check=ConnectionPool.check_connection,
            name="twinsync-state",
            open=True,
        )

    def _refused(self, exc: Exception, target: StateUrl) -> Exception:
        text = str(exc).strip().splitlines()[0]
        if any(marker in text for marker in _CREDENTIALS):
            return ConfigError(
                f"PostgreSQL at {self.url} refused the hub's credentials ({text}): check the "
                "user in state.url and the password in state.password_file or "
                "TWINSYNC_HUB__STATE__PASSWORD"
            )
        if _NO_DATABASE in text:
            return ConfigError(
                f"PostgreSQL at {self.url} has no database {target.database!r} ({text}): "
                f'create it (CREATE DATABASE "{target.database}" OWNER "{target.user}") or '
                "fix state.url"
            )
        return StateUnavailableError(
            f"PostgreSQL at {self.url} is unreachable ({text}): start it, or fix the host "
            "and port in state.url"
        )

    def _migrations(self) -> tuple[Migration, ...]:
        return POSTGRES_MIGRATIONS

    def restart_identity(self, tx: Tx, table: str, column: str) -> None:
        """Move the identity sequence of ``table.column`` past its highest value."""
        name, col = ident(table), ident(column)
        tx.execute(
            f"SELECT setval(pg_get_serial_sequence(?, ?), "
            f"COALESCE((SELECT MAX({col}) FROM {name}), 0) + 1, false)",
            (name, col),
        )

    @contextmanager
    def _transaction(self, *, readonly: bool, wait: bool) -> Iterator[Tx | None]:
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self._pool.connection() as conn, conn.transaction():
                cursor = conn.cursor()
                if readonly:
                    cursor.execute("SET TRANSACTION READ ONLY")
                yield _PostgresTx(cursor, self.url, readonly)
        except (psycopg.Error, PoolTimeout) as exc:
            raise _translate(exc, self.url) from exc

    def close(self) -> None:
        """Close the pool's connections (idempotent)."""
        self._pool.close()
