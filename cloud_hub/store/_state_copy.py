"""Copying the hub's state from one store to another (``twinsync hub state migrate``).

The way from the SQLite file of one host to PostgreSQL for several (or back): every row
of every table of the hub's state, with its keys and numbers, into a target that holds
none yet. The target is written in one transaction, so a copy that fails leaves it empty
and can simply be run again; the source is read in one transaction too (on SQLite a
consistent snapshot). Stop every hub instance first: a hub writing the source meanwhile
could have its change missed (PostgreSQL as the source reads each table as committed when
it gets to it).

Named leases (``state_leases``) are not copied: they belong to the instances that held
them. Tables are read in pages along their primary key, so memory stays bounded however
long the audit log is.
"""

from __future__ import annotations

from ._state import StateStore
from ._state_errors import StateConflictError
from ._state_schema import IDENTITY_COLUMNS, INDEX_COMPLETE, STATE_KEYS
from ._state_tx import Row, Tx, ident, marks

__all__ = ["COPIED_TABLES", "copy_state"]

#: what a copy takes: every table of the hub's state but the instances' leases
COPIED_TABLES = tuple(t for t in STATE_KEYS if t != "state_leases")
_PAGE = 2000


def copy_state(source: StateStore, target: StateStore) -> dict[str, int]:
    """Copy every row of :data:`COPIED_TABLES` from ``source`` to ``target``; return the
    rows copied per table. Both stores must be migrated to this hub's schema (as opening
    them does). Raises StateConflictError, changing nothing, when the target already
    holds hub state; StateStoreError when either store fails (the target then has none
    of it)."""
    counts: dict[str, int] = {}
    with source.transaction(readonly=True) as src, target.transaction() as dst:
        # A new store's one row of its own (its empty twin index is complete) is no hub
        # state: the source's word on its index replaces it.
        dst.execute("DELETE FROM registry_meta WHERE name = ?", (INDEX_COMPLETE,))
        held = [t for t in COPIED_TABLES if dst.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
        if held:
            raise StateConflictError(
                f"the target {target.url} already holds hub state (in {', '.join(held)}): "
                "copy into an empty database (a new one, or drop what is there first)"
            )
        for table in COPIED_TABLES:
            counts[table] = _copy_table(src, dst, table)
        for table, column in IDENTITY_COLUMNS.items():
            target.restart_identity(dst, table, column)
    return counts


def _copy_table(src: Tx, dst: Tx, table: str) -> int:
    name = ident(table)
    key = [ident(k) for k in STATE_KEYS[table]]
    order = ", ".join(key)
    copied = 0
    after: Row | None = None
    while True:
        # Keyset paging: rows after the last key copied (a row value compares as a tuple
        # on both backends, in the same byte order for text).
        where = f" WHERE ({order}) > ({marks(len(key))})" if after is not None else ""
        page = src.execute(
            f"SELECT * FROM {name}{where} ORDER BY {order} LIMIT ?", (*(after or ()), _PAGE)
        )
        if not page.rows:
            return copied
        columns = [ident(c) for c in page.columns]
        dst.executemany(
            f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks(len(columns))})",
            page.rows,
        )
        copied += len(page.rows)
        positions = [columns.index(k) for k in key]
        last = page.rows[-1]
        after = tuple(last[i] for i in positions)
