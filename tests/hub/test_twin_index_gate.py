"""The twin query index's gate: what ingest checked before a privacy change does not
reach the index after it, on a real SQLite file and a real PostgreSQL database.

A batch is checked against the privacy views at some stamps; an erasure, an objection,
a suppression, a key rotation's alias or a retired key epoch is committed; then the
batch is merged. The gate sees that the stamps moved and applies the change inside the
merge's own transaction. And a privacy change that starts while a merge is under way
waits for it (the lock ``twin_index:<brand>``), so it removes what that merge wrote.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from hub_env import both_stores

from cloud_hub.privacy import PROFILE_BLOCK, FieldBlocks, Relinks, Tombstones, index_gate
from cloud_hub.store import IndexOp, StateStore, TwinIndex, Tx, open_state_store
from protocol import HLC

BRAND = "acme"
ANN, BOB, CAT, DAN = (f"1-{c * 32}" for c in "abcd")
NEW_DAN = "2-" + "d" * 32


def ops() -> list[IndexOp]:
    at = HLC(1_700_000_000_000, 0).pack()
    return [
        (BRAND, twin, "dev-0", field, at, value)
        for twin in (ANN, BOB, CAT, DAN)
        for field, value in (("coffee.strength", 3), ("coffee.churn_risk", 0.5))
    ] + [(BRAND, "0-" + "e" * 32, "dev-0", "coffee.strength", at, 1)]


def fields(state: StateStore) -> set[tuple[str, str]]:
    with state.transaction(readonly=True) as tx:
        return {(str(t), str(f)) for t, f in tx.execute("SELECT twin, field FROM twin_fields")}


def stamps(state: StateStore) -> tuple[int, int, int]:
    views = (Tombstones(state), FieldBlocks(state))
    with state.transaction(readonly=True) as tx:
        links = tx.execute(
            "SELECT value FROM registry_meta WHERE name = ?", (Relinks.STAMP,)
        ).scalar()
    return views[0].stamp, views[1].stamp, int(links or 0)


@both_stores
def test_changes_committed_after_the_check_are_applied_at_the_merge(state: StateStore) -> None:
    seen = stamps(state)
    # What other instances commit after this batch was checked:
    with state.transaction() as tx:
        Tombstones.add_in(tx, BRAND, [ANN], "r-1", 1)  # erased
    blocks = FieldBlocks(state)
    blocks.add(BRAND, [BOB], PROFILE_BLOCK, "r-2", 2)  # objection: profile fields
    blocks.add(BRAND, [CAT], "coffee.strength", "r-3", 3)  # one field suppressed
    with state.transaction() as tx:
        tx.insert(
            "twin_links",
            {
                "brand": BRAND,
                "old": DAN,
                "new": NEW_DAN,
                "device": "dev-0",
                "state": "aliased",
                "proposed_ms": 1,
                "updated_ms": 1,
            },
        )
        tx.insert("retired_epochs", {"brand": BRAND, "epoch": 0, "retired_ms": 1})
        Relinks.changed_in(tx)
    TwinIndex(state=state).apply(ops(), admit=index_gate(seen))
    assert fields(state) == {
        (BOB, "coffee.strength"),  # usage stays, its churn risk (profile) does not
        (CAT, "coffee.churn_risk"),
        (NEW_DAN, "coffee.strength"),
        (NEW_DAN, "coffee.churn_risk"),
    }


@both_stores
def test_with_unmoved_stamps_the_batch_is_merged_as_checked(state: StateStore) -> None:
    """No change since the check: the gate reads one row and lets everything through."""
    TwinIndex(state=state).apply(ops(), admit=index_gate(stamps(state)))
    assert len(fields(state)) == 9


@both_stores
def test_an_erasure_waits_for_a_merge_under_way_and_removes_what_it_wrote(
    state: StateStore, state_url: tuple[str, str]
) -> None:
    """A merge holds the index lock shared; an erasure that starts meanwhile (its own
    connection, as another instance) waits for the lock, then sees the merged rows and
    removes them: the twin does not survive in the index."""
    inside, release = threading.Event(), threading.Event()

    def slow(tx: Tx, batch: list[IndexOp]) -> list[IndexOp]:
        inside.set()
        assert release.wait(10)
        return batch

    merged: list[Any] = []
    merge = threading.Thread(
        target=lambda: merged.append(TwinIndex(state=state).apply(ops(), admit=slow))
    )
    url, password = state_url
    with open_state_store(url, password=password) as other:
        merge.start()
        assert inside.wait(10)
        erased = threading.Event()

        def erase() -> None:
            TwinIndex(state=other).erase(BRAND, [ANN])
            erased.set()

        eraser = threading.Thread(target=erase)
        eraser.start()
        time.sleep(0.5)
        assert not erased.is_set()  # waiting for the merge's lock
        release.set()
        merge.join(10)
        eraser.join(10)
    assert merged == [9]
    assert erased.is_set()
    assert not {f for f in fields(state) if f[0] == ANN}
    assert len(fields(state)) == 7
