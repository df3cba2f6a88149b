"""Hub instances racing on the shared state store: each read-then-write that decides
something holds the database's own lock, so instances doing it at the same moment get one
answer between them. On both stores; PostgreSQL (READ COMMITTED) is where a missing lock
shows (SQLite's write transaction already excludes other writers).

Each "instance" is a store object of its own on one database, as hubs on several hosts
hold it, and they start together behind a barrier.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from hub_env import both_stores

from cloud_hub import HubConfig, Metrics, Registry, ensure_brand_key
from cloud_hub.models import ModelRepo, RolloutStore
from cloud_hub.privacy import FieldBlocks, Relinks, Tombstones
from cloud_hub.store import InfluxStore, StateStore, TwinIndex, open_state_store
from protocol import SigningKey, TwinLink

INSTANCES = 6
BRAND = "acme"
T = TypeVar("T")


@contextmanager
def instances(state_url: tuple[str, str], n: int = INSTANCES) -> Iterator[list[StateStore]]:
    """``n`` hub instances' own connections to one store."""
    url, password = state_url
    stores = [open_state_store(url, password=password) for _ in range(n)]
    try:
        yield stores
    finally:
        for store in stores:
            store.close()


def at_once(work: list[Callable[[], T]]) -> list[T]:
    """Run every callable in its own thread, released together."""
    start = threading.Barrier(len(work))

    def run(job: Callable[[], T]) -> T:
        start.wait()
        return job()

    with ThreadPoolExecutor(len(work)) as pool:
        return list(pool.map(run, work))


@both_stores
def test_instances_numbering_model_sets_at_once_hand_each_version_out_once(
    state_url: tuple[str, str], tmp_path: Path
) -> None:
    """Every instance's publisher numbers the sets that changed: one of them does, the
    others find the sets numbered (each version is published once, not six times)."""
    digests = {"": "E", "d1": "A", "d2": "A"}
    with instances(state_url) as stores:
        rollouts = [
            RolloutStore(
                state=s, repo=ModelRepo(state=s, models_dir=tmp_path), registry=Registry(s)
            )
            for s in stores
        ]
        numbered = at_once([lambda r=r: r.set_versions("acme", digests) for r in rollouts])
        assert sorted(numbered, key=len) == [{}] * (INSTANCES - 1) + [{"d1": 1, "d2": 1}]
        assert rollouts[0].set_versions("acme", digests, everything=True) == {"d1": 1, "d2": 1}


@both_stores
def test_instances_recording_rival_twin_links_at_once_keep_the_first(
    state_url: tuple[str, str], tmp_path: Path
) -> None:
    """Devices on several instances name different new ids for one old twin at the same
    moment (a compromised device racing the real one): one link is recorded, the others
    are refused and counted as conflicts, and no instance's ingest fails."""
    secrets = tmp_path / "secrets"
    for epoch in (1, 2):
        ensure_brand_key(secrets, "acme", epoch)
    old = "1-" + "0" * 32
    influx = InfluxStore(HubConfig().influx)  # not used by propose
    with instances(state_url) as stores:
        metrics = [Metrics() for _ in stores]
        relinks = [
            Relinks(state=s, secrets_dir=secrets, store=influx, index=TwinIndex(state=s), metrics=m)
            for s, m in zip(stores, metrics, strict=True)
        ]
        links = [TwinLink(old, f"2-{i:032x}") for i in range(INSTANCES)]
        at_once(
            [
                lambda r=r, link=link, device=f"d{i}": r.propose("acme", device, [link])
                for i, (r, link) in enumerate(zip(relinks, links, strict=True))
            ]
        )
        with stores[0].transaction(readonly=True) as tx:
            rows = tx.execute("SELECT old, new FROM twin_links WHERE brand = 'acme'").fetchall()
    assert len(rows) == 1
    assert rows[0][0] == old
    assert sum(m.get("twinsync_hub_twin_links_total", state="proposed") for m in metrics) == 1
    conflicts = sum(
        m.get("twinsync_hub_twin_links_total", state="refused", reason="link_conflict")
        for m in metrics
    )
    assert conflicts == INSTANCES - 1


@both_stores
def test_a_revocation_by_one_instance_reaches_another(state_url: tuple[str, str]) -> None:
    """The registry's generation moves on every change (an upsert that adds to the stored
    value: written so PostgreSQL takes it), and another instance drops its cache."""
    key = SigningKey.generate().public
    with instances(state_url, 2) as (one, two):
        writer, reader = Registry(one), Registry(two, refresh_s=0.0)
        writer.add_many([("acme", "m-1", "coffee", key)])
        record = reader.get("acme", "m-1")
        assert record is not None
        assert not record.revoked
        assert writer.revoke("acme", "m-1")
        writer.add_many([("acme", "m-2", "coffee", key)])  # the generation moves again
        record = reader.get("acme", "m-1")
        assert record is not None
        assert record.revoked
        with one.transaction(readonly=True) as tx:
            generation = tx.execute(
                "SELECT value FROM registry_meta WHERE name = 'generation'"
            ).scalar()
        assert generation == 3


@both_stores
def test_blocks_of_no_twins_are_none(state: StateStore) -> None:
    """An access export of a customer without twins asks for the blocks of none (an empty
    ``IN ()``, which PostgreSQL refuses)."""
    assert FieldBlocks(state).of_twins("acme", []) == []


@both_stores
def test_what_one_instance_blocks_or_erases_reaches_anothers_views(
    state_url: tuple[str, str],
) -> None:
    """Each writer moves its view's stamp in its own transaction, so another instance's
    next look re-reads the table (and a look that finds the stamp still is one row)."""
    twin, other = "1-" + "a" * 32, "1-" + "b" * 32
    with instances(state_url, 2) as (one, two):
        theirs_t, theirs_b = Tombstones(two), FieldBlocks(two)
        mine_b = FieldBlocks(one)
        mine_b.add(BRAND, [twin, other], "coffee.strength", "r-1", 5)
        theirs_b.refresh()
        assert theirs_b.hidden(BRAND, other) == frozenset({"coffee.strength"})
        mine_b.lift(BRAND, [other], "coffee.strength")
        theirs_b.refresh()
        assert theirs_b.hidden(BRAND, other) == frozenset()
        assert theirs_b.hidden(BRAND, twin) == frozenset({"coffee.strength"})
        with one.transaction() as tx:  # an erasure's step
            Tombstones.add_in(tx, BRAND, [twin], "r-2", 6)
            FieldBlocks.forget_in(tx, BRAND, [twin])
        before = theirs_t.generation
        theirs_t.refresh()
        theirs_b.refresh()
        assert theirs_t.erased(BRAND) == frozenset({twin})
        assert theirs_t.generation == before + 1
        assert theirs_b.hidden(BRAND, twin) == frozenset()
        theirs_t.refresh()  # nothing changed since: the view stays as it is
        assert theirs_t.generation == before + 1
