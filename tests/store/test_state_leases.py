"""Leases on both backends, with real processes that claim, hold and die.

Claims (the webhook queue, removal jobs): concurrent claimers never get one row twice and
together get every row; a claimed row is due again exactly when its lease ends, also when
its claimer was killed mid-work. Named locks (``exclusive``): held by one transaction at a
time and released by the database when the process holding one is killed. Named leases
(``try_lease``, a sweep's turn): one holder at a time, renewable, taken over once expired.
Lease times are the caller's clock, so the tests step them instead of sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from state_env import Target, read_json, until

from cloud_hub.store import StateStore, StateUnavailableError

ROWS = 300
HOUR = 3_600_000


def queue(store: StateStore, n: int) -> list[int]:
    """``n`` webhook events due at time 0; their ids."""
    row = {"brand": "acme", "event_id": "e", "body": "{}", "due_ms": 0}
    with store.transaction() as tx:
        return [tx.insert("webhook_queue", row, returning="id") for _ in range(n)]


@pytest.fixture
def killed() -> Iterator[list]:
    """Worker processes to kill at the end whatever happens."""
    procs: list = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.communicate()  # reaps it and closes its pipes


def test_concurrent_claimers_never_get_the_same_row(
    target: Target, store: StateStore, killed: list
) -> None:
    ids = queue(store, ROWS)
    # One row per claim: each worker runs hundreds of claim transactions at once.
    workers = [target.worker("claim", "webhook_queue", "1", "1000", str(HOUR)) for _ in range(3)]
    killed += workers
    assert [read_json(w) for w in workers] == ["ready"] * 3
    for w in workers:
        w.stdin.write("go\n")
        w.stdin.flush()
    taken = [read_json(w) for w in workers]
    claimed = [i for t in taken for i in t]
    assert sorted(claimed) == sorted(ids)  # every row once: no duplicates, none missed


def test_a_claimed_row_is_due_again_when_its_lease_ends(store: StateStore) -> None:
    (row,) = queue(store, 1)

    def claim(now: int) -> list[int]:
        got = store.claim("webhook_queue", lease_column="due_ms", now_ms=now, lease_ms=500)
        return [r[0] for r in got]

    assert claim(1000) == [row]
    assert claim(1000) == []
    assert claim(1499) == []
    assert claim(1500) == [row]
    with store.transaction(readonly=True) as tx:
        assert tx.execute("SELECT due_ms FROM webhook_queue").scalar() == 2000


def test_claim_takes_due_rows_in_order_with_a_condition(store: StateStore) -> None:
    with store.transaction() as tx:
        for job, state, lease in [("j1", "staged", 0), ("j2", "done", 0), ("j3", "deleted", 50),
                                  ("j4", "staged", 999_999)]:  # fmt: skip
            tx.insert(
                "rewrite_jobs",
                {"id": job, "request_id": "r", "brand": "acme", "twin": "t", "field": "f",
                 "state": state, "points": "[]", "keep": "[]", "lease_ms": lease},
            )  # fmt: skip
    got = store.claim(
        "rewrite_jobs",
        lease_column="lease_ms",
        now_ms=100,
        lease_ms=10_000,
        columns=["state", "brand"],
        where="state IN (?, ?)",
        params=("staged", "deleted"),
        order_by="id DESC",
        limit=5,
    )
    assert got == [("j3", "deleted", "acme"), ("j1", "staged", "acme")]


def test_rows_of_a_killed_claimer_come_back_when_their_lease_ends(
    target: Target, store: StateStore, killed: list
) -> None:
    """A hub instance claims webhook events and dies before sending them: nobody else
    takes them while its lease runs, and the first claimer after that gets them all."""
    ids = queue(store, 8)
    worker = target.worker("claim-and-hang", "webhook_queue", "5", "1000", "60000")
    killed.append(worker)
    held = read_json(worker)
    assert held == ids[:5]
    worker.kill()
    worker.wait()

    def claim(now: int) -> list[int]:
        rows = store.claim("webhook_queue", lease_column="due_ms", now_ms=now, lease_ms=60_000,
                           limit=100)  # fmt: skip
        return [r[0] for r in rows]

    assert claim(30_000) == ids[5:]  # the dead instance's lease still runs
    assert claim(61_000) == held  # ... and ended: its events are sent by another


def test_a_lock_is_released_when_the_process_holding_it_is_killed(
    target: Target, store: StateStore, killed: list
) -> None:
    worker = target.worker("hold", "publisher")
    killed.append(worker)
    assert read_json(worker) == "held"
    with store.exclusive("publisher", wait=False) as tx:
        assert tx is None  # held by the worker
    with store.exclusive("another", wait=False) as tx:
        # PostgreSQL locks by name; on SQLite every lock is the file's one write lock.
        assert (tx is not None) == (store.dialect.name == "postgresql")
    worker.kill()
    worker.wait()

    def free() -> bool:
        with store.exclusive("publisher", wait=False) as tx:
            return tx is not None

    assert until(free)  # the database let go of the dead process's lock


def test_a_held_lock_makes_a_waiting_writer_give_up_after_its_timeout(
    target: Target, store: StateStore, killed: list
) -> None:
    worker = target.worker("hold", "publisher")
    killed.append(worker)
    assert read_json(worker) == "held"
    with target.open(timeout_s=0.3, migrate=False) as impatient:

        def take() -> None:
            with impatient.exclusive("publisher") as tx:
                raise AssertionError(f"got the lock the worker holds: {tx}")

        with pytest.raises(StateUnavailableError) as caught:
            take()
    assert caught.value.retryable


def test_one_holder_per_named_lease(store: StateStore) -> None:
    assert store.try_lease("sweep:usage", "hub-1", now_ms=1000, ttl_ms=500)
    assert not store.try_lease("sweep:usage", "hub-2", now_ms=1200, ttl_ms=500)
    assert store.try_lease("sweep:usage", "hub-1", now_ms=1400, ttl_ms=500)  # renewed
    assert not store.try_lease("sweep:usage", "hub-2", now_ms=1800, ttl_ms=500)
    assert store.try_lease("sweep:profile", "hub-2", now_ms=1800, ttl_ms=500)  # another name
    assert store.try_lease("sweep:usage", "hub-2", now_ms=1900, ttl_ms=500)  # hub-1's ended
    assert not store.try_lease("sweep:usage", "hub-1", now_ms=1950, ttl_ms=500)
    assert not store.release_lease("sweep:usage", "hub-1")  # not its lease any more
    assert store.release_lease("sweep:usage", "hub-2")
    assert store.try_lease("sweep:usage", "hub-1", now_ms=1960, ttl_ms=500)


def test_instances_racing_for_a_free_lease_get_it_once(store: StateStore) -> None:
    start = threading.Barrier(8)
    won: list[str] = []

    def contend(holder: str) -> None:
        start.wait()
        if store.try_lease("publisher", holder, now_ms=5000, ttl_ms=10_000):
            won.append(holder)

    threads = [threading.Thread(target=contend, args=(f"hub-{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
