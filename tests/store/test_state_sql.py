"""The store's SQL on both backends: one behaviour whatever the database.

Upsert and insert-or-ignore semantics, identity columns, ``?`` placeholders next to
literal ``?`` and ``%``, the database clock, byte-order sorting; a transaction that fails
(by the caller's exception or the database's) stores nothing; the database's errors reach
callers as the hub's exceptions, never as sqlite3's or psycopg's; table and column names
that are not plain identifiers are refused before they reach SQL text.
"""

from __future__ import annotations

import sqlite3
import time

import psycopg
import pytest

from cloud_hub import CloudHubError
from cloud_hub.store import (
    StateConflictError,
    StateStore,
    StateStoreError,
)

KV = "CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL, note TEXT NOT NULL DEFAULT '')"


def rows(store: StateStore, sql: str = "SELECT k, v, note FROM kv ORDER BY k") -> list[tuple]:
    with store.transaction(readonly=True) as tx:
        return tx.execute(sql).fetchall()


@pytest.fixture
def kv(store: StateStore) -> StateStore:
    with store.transaction() as tx:
        tx.execute(KV)
    return store


def test_upsert_inserts_then_updates_only_the_named_columns(kv: StateStore) -> None:
    with kv.transaction() as tx:
        assert tx.upsert("kv", [{"k": "a", "v": 1, "note": "first"}], key=["k"]) == 1
        assert tx.upsert("kv", [{"k": "a", "v": 2, "note": "second"}], key=["k"]) == 1
        assert tx.upsert("kv", [{"k": "b", "v": 5, "note": "x"}], key=["k"], update=["v"]) == 1
        assert tx.upsert("kv", [{"k": "b", "v": 6, "note": "ignored"}], key=["k"], update=["v"])
    assert rows(kv) == [("a", 2, "second"), ("b", 6, "x")]


def test_upsert_with_an_expression_reads_the_stored_row(kv: StateStore) -> None:
    """The registry's generation counter: ``value = value + 1`` on conflict (PostgreSQL
    needs the stored column qualified with the table's name; both accept that)."""
    bump = {"v": "kv.v + excluded.v"}
    with kv.transaction() as tx:
        for _ in range(3):
            tx.upsert("kv", [{"k": "generation", "v": 1}], key=["k"], update=bump)
    assert rows(kv) == [("generation", 3, "")]


def test_insert_ignore_leaves_existing_rows_alone(kv: StateStore) -> None:
    with kv.transaction() as tx:
        assert tx.insert_ignore("kv", [{"k": "a", "v": 1}, {"k": "b", "v": 2}]) == 2
        assert tx.insert_ignore("kv", [{"k": "a", "v": 100}, {"k": "c", "v": 3}]) == 1
        assert tx.insert_ignore("kv", []) == 0
    assert rows(kv) == [("a", 1, ""), ("b", 2, ""), ("c", 3, "")]


def test_insert_returns_the_identity_column(store: StateStore) -> None:
    row = {"brand": "acme", "event_id": "e", "body": "{}", "due_ms": 0}
    with store.transaction() as tx:
        first = tx.insert("webhook_queue", row, returning="id")
        second = tx.insert("webhook_queue", row, returning="id")
        assert tx.insert("webhook_queue", row) is None
    assert isinstance(first, int)
    assert second > first
    assert rows(store, "SELECT COUNT(*) FROM webhook_queue") == [(3,)]


def test_placeholders_are_told_from_literal_question_marks_and_percents(store: StateStore) -> None:
    with store.transaction(readonly=True) as tx:
        got = tx.execute("SELECT ?, '?', '100%', 'a''?' || ?, \"?\" FROM (SELECT 1 AS \"?\") s",
                         ("x", "%y"))  # fmt: skip
        assert got.fetchall() == [("x", "?", "100%", "a'?%y", 1)]


def test_text_sorts_by_code_point_on_both(kv: StateStore) -> None:
    words = ["b", "B", "a", "_", "é", "Z9", "z10", "z9"]
    with kv.transaction() as tx:
        tx.insert_ignore("kv", [{"k": w, "v": 0} for w in words])
    assert [r[0] for r in rows(kv)] == sorted(words)


def test_the_database_clock_is_unix_ms(store: StateStore) -> None:
    with store.transaction(readonly=True) as tx:
        now = tx.now_ms()
    assert abs(now - time.time() * 1000) < 60_000


def test_an_exception_in_the_block_rolls_everything_back(kv: StateStore) -> None:
    def change_then_fail() -> None:
        with kv.transaction() as tx:
            tx.insert("kv", {"k": "a", "v": 1})
            raise RuntimeError("caller changed its mind")

    with pytest.raises(RuntimeError, match="caller"):
        change_then_fail()
    assert rows(kv) == []


def test_a_refused_statement_rolls_back_what_came_before_it(kv: StateStore) -> None:
    def three_inserts() -> None:
        with kv.transaction() as tx:
            tx.insert("kv", {"k": "a", "v": 1})
            tx.insert("kv", {"k": "b", "v": 2})
            tx.insert("kv", {"k": "a", "v": 3})  # the key exists: refused

    with pytest.raises(StateConflictError):
        three_inserts()
    assert rows(kv) == []
    with kv.transaction() as tx:  # the store is fine afterwards
        tx.insert("kv", {"k": "a", "v": 1})
    assert rows(kv) == [("a", 1, "")]


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        ("SELEC nonsense", StateStoreError),
        ("SELECT * FROM no_such_table", StateStoreError),
        ("INSERT INTO kv (k) VALUES ('no value')", StateConflictError),
    ],
)
def test_database_errors_reach_callers_as_hub_errors(
    kv: StateStore, sql: str, error: type[StateStoreError]
) -> None:
    with pytest.raises(error) as caught, kv.transaction() as tx:
        tx.execute(sql)
    assert isinstance(caught.value, CloudHubError)
    assert not isinstance(caught.value, sqlite3.Error | psycopg.Error)
    # the driver's own error is kept for the log
    assert isinstance(caught.value.__cause__, sqlite3.Error | psycopg.Error)
    # ... and what the database said is in the message
    assert str(caught.value.__cause__).splitlines()[0] in str(caught.value)


def test_a_readonly_transaction_cannot_write(kv: StateStore) -> None:
    with pytest.raises(StateStoreError), kv.transaction(readonly=True) as tx:
        tx.execute("INSERT INTO kv (k, v) VALUES ('a', 1)")
    with (
        pytest.raises(StateStoreError, match="write transaction"),
        kv.transaction(readonly=True) as tx,
    ):
        tx.lock("x")
    assert rows(kv) == []


@pytest.mark.parametrize("name", ["kv; DROP TABLE kv", "kv --", "KV", 'kv"', "v = 1, note", ""])
def test_names_that_are_not_plain_identifiers_are_refused(kv: StateStore, name: str) -> None:
    """Table and column names are written into SQL text: an injected one never runs."""
    with kv.transaction() as tx:
        with pytest.raises(StateStoreError, match="not a plain SQL identifier"):
            tx.insert(name, {"k": "a", "v": 1})
        with pytest.raises(StateStoreError, match="not a plain SQL identifier"):
            tx.upsert("kv", [{"k": "a", name: 1}], key=["k"])
    with pytest.raises(StateStoreError, match="not a plain SQL identifier"):
        kv.claim("kv", lease_column=name, now_ms=0, lease_ms=1, key="k")
    with kv.transaction() as tx:
        tx.insert("kv", {"k": "still", "v": 1})  # the table is intact
    assert rows(kv) == [("still", 1, "")]
