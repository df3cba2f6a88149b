"""Schema migrations on a real SQLite file and a real PostgreSQL database.

From an empty database to the hub's whole schema; run again, nothing changes; several
processes starting at once apply each migration exactly once; a database migrated by a
newer hub is refused untouched; a failed migration leaves nothing behind; an existing
SQLite file made by the hub's modules (before the store existed) is adopted with its rows.
Both backends end with the same tables, columns and indexes; migration 1 creates exactly
the tables the hub's modules created themselves before the store (legacy_schema.sql, their
schemas as they were), so a file an older hub wrote is adopted as it is.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from state_env import Target, read_json

from cloud_hub.store import (
    STATE_KEYS,
    STATE_TABLES,
    TWIN_INDEX_TABLES,
    Migration,
    StateSchemaError,
    StateStore,
    TwinIndex,
    open_state_store,
)

#: the tables the hub's modules made themselves until they moved onto the store
LEGACY_SCHEMA = Path(__file__).with_name("legacy_schema.sql")
#: every migration this hub ships, by number
SHIPPED = [
    (1, "hub state"),
    (2, "webhook queue due index"),
    (3, "twin query index"),
    (4, "triggers"),
    # 5 and 6 were handed out to parts that needed none: gaps are fine
    (7, "strategy lab experiments"),
]


def tables(store: StateStore) -> set[str]:
    with store.transaction(readonly=True) as tx:
        if store.dialect.name == "postgresql":
            rows = tx.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        else:
            rows = tx.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        return {r[0] for r in rows}


def columns(store: StateStore) -> dict[str, list[tuple[Any, ...]]]:
    """table -> [(column, not null, default, primary key position)] in declared order,
    the same shape on both backends (types differ by design: INTEGER -> BIGINT)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with store.transaction(readonly=True) as tx:
        for table in sorted(tables(store)):
            if store.dialect.name == "sqlite":
                # A key column counts as NOT NULL: PostgreSQL makes it so, and SQLite's
                # quirk of allowing NULL in a non-integer key is no column of ours to rely on.
                out[table] = [
                    (r[1], bool(r[3] or r[5]), r[4], r[5])
                    for r in tx.execute(f"PRAGMA table_info({table})")
                ]
                continue
            keys = [
                r[0]
                for r in tx.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                    "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                    "WHERE i.indrelid = CAST(? AS regclass) AND i.indisprimary "
                    "ORDER BY array_position(i.indkey, a.attnum)",
                    (table,),
                )
            ]
            out[table] = [
                (
                    r[0],
                    r[1] == "NO",
                    None if r[2] is None else re.sub(r"::\w+$", "", r[2]),
                    keys.index(r[0]) + 1 if r[0] in keys else 0,
                )
                for r in tx.execute(
                    "SELECT column_name, is_nullable, column_default FROM "
                    "information_schema.columns WHERE table_name = ? "
                    "AND table_schema = current_schema() ORDER BY ordinal_position",
                    (table,),
                )
            ]
    return out


def indexes(store: StateStore) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every index we made (not those of primary keys): name -> (table, columns)."""
    with store.transaction(readonly=True) as tx:
        if store.dialect.name == "sqlite":
            found = tx.execute(
                "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            ).fetchall()
            return {
                name: (table, tuple(r[2] for r in tx.execute(f"PRAGMA index_info({name})")))
                for name, table in found
            }
        rows = tx.execute(
            "SELECT i.relname, t.relname, a.attname FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
            "JOIN pg_namespace n ON n.oid = t.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(x.indkey) "
            "WHERE n.nspname = current_schema() AND NOT x.indisprimary "
            "ORDER BY i.relname, array_position(x.indkey, a.attnum)"
        ).fetchall()
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for name, table, column in rows:
        out[name] = (table, (*out.get(name, (table, ()))[1], column))
    return out


def test_migrating_an_empty_database_creates_the_whole_hub_schema(target: Target) -> None:
    with target.open(migrate=False) as store:
        assert store.version() == 0
        assert store.migrate() == [v for v, _name in SHIPPED]
        assert store.version() == SHIPPED[-1][0]
        assert tables(store) == {*STATE_TABLES, "schema_migrations"}
        with store.transaction(readonly=True) as tx:
            assert (
                tx.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()
                == SHIPPED
            )


def test_the_twin_index_of_a_new_store_is_complete(target: Target) -> None:
    """A store without devices has no twins in InfluxDB to index: migration 3 marks its
    (empty) twin index complete, so no rebuild is asked for."""
    with target.open() as store:
        assert TwinIndex(state=store).complete()


def test_migrating_again_changes_nothing(target: Target) -> None:
    with target.open() as store:
        with store.transaction() as tx:
            tx.insert("registry_meta", {"name": "generation", "value": 7})
        before = columns(store)
        with store.transaction(readonly=True) as tx:
            recorded = tx.execute("SELECT * FROM schema_migrations").fetchall()
    with target.open(migrate=False) as again:
        assert again.migrate() == []
        assert columns(again) == before
        with again.transaction(readonly=True) as tx:
            assert tx.execute("SELECT * FROM schema_migrations").fetchall() == recorded
            assert (
                tx.execute("SELECT value FROM registry_meta WHERE name = 'generation'").scalar()
                == 7
            )


def test_processes_starting_together_apply_each_migration_once(target: Target) -> None:
    """Four hub-like processes migrate one empty database at the same moment: one
    applies the migrations, the others find them applied; none fails."""
    workers = [target.worker("migrate") for _ in range(4)]
    try:
        assert [read_json(w) for w in workers] == ["ready"] * 4
        for w in workers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        answers = [read_json(w) for w in workers]
        assert [w.wait(60) for w in workers] == [0] * 4
    finally:
        for w in workers:
            w.kill()
            w.communicate()  # reaps it and closes its pipes
    every = [v for v, _name in SHIPPED]
    assert sorted(a["applied"] for a in answers) == [[], [], [], every]
    assert {a["version"] for a in answers} == {every[-1]}
    with target.open(migrate=False) as store, store.transaction(readonly=True) as tx:
        assert tx.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall() == [
            (v,) for v in every
        ]


def test_a_database_migrated_by_a_newer_hub_is_refused_untouched(target: Target) -> None:
    with target.open(migrate=False) as store:
        with store.transaction() as tx:
            tx.execute(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
            )
            tx.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', 0)")
        before = tables(store)
    with pytest.raises(StateSchemaError, match=r"schema version 99.*upgrade this hub"):
        target.open()
    with target.open(migrate=False) as store:
        assert tables(store) == before  # nothing of migration 1 was created


def test_a_failed_migration_leaves_nothing_behind(target: Target) -> None:
    with target.open(migrate=False) as store:
        shipped = store._migrations()
        broken = Migration(
            len(shipped) + 1,
            "broken",
            ("CREATE TABLE half_done (a INTEGER)", "CREATE TABLE (no name)"),
        )
        store._migrations = lambda: (*shipped, broken)  # type: ignore[method-assign]
        with pytest.raises(
            StateSchemaError, match=rf"migration {len(shipped) + 1} \(broken\).*nothing of this run"
        ):
            store.migrate()
        assert store.version() == 0  # the others ran in the same transaction: undone too
        assert tables(store) == set()


def test_both_backends_have_the_same_tables_columns_and_indexes(
    tmp_path: Path, postgres: Any
) -> None:
    with (
        open_state_store(f"sqlite:///{tmp_path / 's.sqlite'}") as lite,
        open_state_store(postgres.url, password=postgres.password) as pg,
    ):
        assert columns(lite) == columns(pg)
        assert indexes(lite) == indexes(pg)
        assert indexes(lite)["webhook_queue_due"] == ("webhook_queue", ("due_ms",))


def test_the_copy_keys_are_the_primary_keys(tmp_path: Path) -> None:
    """The copy command pages every table along STATE_KEYS: they must be its key."""
    with open_state_store(f"sqlite:///{tmp_path / 's.sqlite'}") as store:
        keys = {
            table: tuple(c[0] for c in sorted((c for c in cols if c[3]), key=lambda c: c[3]))
            for table, cols in columns(store).items()
            if table != "schema_migrations"
        }
    assert keys == STATE_KEYS


def test_migration_1_has_the_columns_the_hub_modules_created(tmp_path: Path) -> None:
    """What each module created with its own ``CREATE TABLE IF NOT EXISTS`` before the
    store (and the column the registry added to old files), kept verbatim in
    legacy_schema.sql, is exactly what migration 1 creates."""
    legacy = sqlite3.connect(tmp_path / "legacy.sqlite")
    legacy.executescript(LEGACY_SCHEMA.read_text())
    found = {
        r[0]: [
            (c[1], bool(c[3] or c[5]), c[4], c[5])
            for c in legacy.execute(f"PRAGMA table_info({r[0]})")
        ]
        for r in legacy.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
    }
    audit_index = [r[2] for r in legacy.execute("PRAGMA index_info(audit_brand)")]
    legacy.close()
    with open_state_store(f"sqlite:///{tmp_path / 'new.sqlite'}") as store:
        migrated = columns(store)
        assert indexes(store)["audit_brand"] == ("audit", tuple(audit_index))
    # the store's own, the twin query index (migration 3), triggers (4) and the lab's (7)
    # are new
    triggers = {t for t in STATE_TABLES if t.startswith("trigger_")}
    later = {"state_leases", *TWIN_INDEX_TABLES, *triggers, "experiments", "experiment_members"}
    assert set(found) == set(STATE_TABLES) - later
    assert {t: migrated[t] for t in found} == found


def test_an_existing_hub_file_is_adopted_with_its_rows(tmp_path: Path) -> None:
    """A registry file written by an older hub (the modules' own schemas, a devices
    table from before broker credentials) keeps every row and gains what it lacked."""
    path = tmp_path / "registry.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE devices (brand TEXT NOT NULL, device TEXT NOT NULL, "
        "product TEXT NOT NULL, public_key TEXT NOT NULL, created_ms INTEGER NOT NULL, "
        "revoked INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (brand, device));"
        "INSERT INTO devices VALUES ('acme', 'm-1', 'coffee', 'ab', 5, 1);"
        "CREATE TABLE tombstones (brand TEXT NOT NULL, twin TEXT NOT NULL, "
        "erased_ms INTEGER NOT NULL, request_id TEXT NOT NULL, PRIMARY KEY (brand, twin));"
        "INSERT INTO tombstones VALUES ('acme', '1-00', 9, 'r');"
    )
    old.close()
    with open_state_store(f"sqlite:///{path}") as store:
        assert store.version() == SHIPPED[-1][0]
        with store.transaction(readonly=True) as tx:
            assert tx.execute("SELECT * FROM devices").fetchall() == [
                ("acme", "m-1", "coffee", "ab", 5, 1, "")
            ]
            assert tx.execute("SELECT * FROM tombstones").fetchall() == [("acme", "1-00", 9, "r")]
        assert set(STATE_TABLES) <= tables(store)
        # Its twins are in InfluxDB only: the twin index waits for a rebuild.
        assert not TwinIndex(state=store).complete()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
