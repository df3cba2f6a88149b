"""Moving a hub's state to another store (``twinsync hub state migrate``), e.g. from the
SQLite file of one host to PostgreSQL for several.

The source is a state file written by the hub's own components (devices, a revocation,
API keys and audit rows, an erasure's tombstone and request, a field block, a webhook and
its queued event, a cohort, a rollout, a twin link, a retention turn, a removal job, the
twin query index's rows);
the target is an empty store on each backend (``target``: a second SQLite file, then
PostgreSQL). Every row arrives as it was, numbered columns go on after the copied
numbers, the components work on the copy, and a target that already holds state is
refused untouched.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from state_env import Target

from cloud_hub import SCOPES, ApiKeys, Metrics, Registry, WebhookSettings
from cloud_hub.api import parse_where
from cloud_hub.models import ModelRepo, RolloutStore
from cloud_hub.privacy import EgressPolicy, FieldBlocks, RequestLedger, Tombstones, Webhooks
from cloud_hub.store import (
    COPIED_TABLES,
    STATE_KEYS,
    Experiments,
    ExperimentSpec,
    StateConflictError,
    StateStore,
    TwinIndex,
    copy_state,
    open_state_store,
)
from cloud_hub.triggers import Rules, TriggerEvents, TriggerWatch, parse_rule
from protocol import HLC, SigningKey, SystemClock

BRAND = "acme"
ANN = "1-" + "a" * 32


def _fill(store: StateStore) -> str:
    """State as a running hub leaves it; returns an API key's token."""
    clock = SystemClock()
    registry = Registry(store)
    keys = [SigningKey.generate().public for _ in range(3)]
    registry.add_many([(BRAND, f"m-{i}", "coffee", k) for i, k in enumerate(keys)])
    registry.revoke(BRAND, "m-2")
    api = ApiKeys(store, clock=clock)
    _key, token = api.create(BRAND, "crm", SCOPES)
    for status in (200, 403, 200):
        api.audit(BRAND, "k", "GET", "/v1/brands/{brand}/twins", status)
    ledger = RequestLedger(state=store, key=SigningKey.generate(), clock=clock)
    tombstones, blocks = Tombstones(store), FieldBlocks(store)
    with store.transaction() as tx:
        tombstones.add_in(tx, BRAND, [ANN], "r-1", 5)
        ledger.open_in(tx, "r-1", BRAND, "erasure", 5)
    blocks.add(BRAND, ["1-" + "b" * 32], "class:profile", "r-2", 6)
    egress = EgressPolicy(WebhookSettings(allow=["127.0.0.1"], require_https=False))
    hooks = Webhooks(state=store, clock=clock, egress=egress)
    hooks.register(BRAND, "http://127.0.0.1:9/hooks")
    for n in range(3):
        hooks.emit(BRAND, "consent", {"n": n})
    repo = ModelRepo(state=store, models_dir=Path("models"))  # (no file is written)
    rollouts = RolloutStore(state=store, repo=repo, registry=registry)
    rollouts.put_cohort(BRAND, "beta", ["m-0", "m-1"])
    with store.transaction() as tx:
        rollout = {"brand": BRAND, "name": "churn-coffee", "version": 2, "target": "percent"}
        first = tx.insert("rollouts", {**rollout, "value": "50.0", "created_ms": 7}, returning="id")
        tx.insert("rollout_members", {"rollout": first, "device": "m-0"})
        model = {"brand": BRAND, "name": "churn-coffee", "version": 2, "product": "coffee"}
        tx.insert("models", {**model, "sha256": "0" * 64, "manifest": "{}", "created_ms": 7})
        tx.insert("model_sets", {"brand": BRAND, "device": "m-0", "version": 3, "digest": "d"})
        tx.insert(
            "twin_links",
            {
                "brand": BRAND,
                "old": "1-" + "c" * 32,
                "new": "2-" + "c" * 32,
                "device": "m-0",
                "state": "aliased",
                "proposed_ms": 8,
                "updated_ms": 9,
            },
        )
        tx.insert("retired_epochs", {"brand": BRAND, "epoch": 0, "retired_ms": 1})
        tx.insert("retention_sweeps", {"class": "profile", "swept_ms": 11})
        job = {"request_id": "r-3", "brand": BRAND, "twin": ANN, "field": "coffee.strength"}
        tx.insert(
            "rewrite_jobs",
            {**job, "id": "j-1", "state": "staged", "points": "[]", "keep": "[]"},
        )
    store.try_lease("retention:profile", "hub-1", now_ms=1, ttl_ms=10**12)
    # the twin query index: a lww field, a counter's part and a churn score
    TwinIndex(state=store).apply(
        [
            (BRAND, ANN, "m-0", "coffee.strength", HLC(10, 0).pack(), 3),
            (BRAND, ANN, "m-0", "coffee.brews_total", HLC(10, 1).pack(), 12),
            (BRAND, ANN, "m-1", "coffee.churn_risk", HLC(11, 0).pack(), 0.25),
        ]
    )
    # triggers: a rule with a webhook, its event (log and queue), a held twin
    rule = b'{"name": "seg", "kind": "segment_change", "webhook": "http://127.0.0.1:9/hooks"}'
    Rules(state=store, clock=clock, egress=egress).add(BRAND, parse_rule(rule))
    watch = TriggerWatch(parse_where=parse_where, clock=clock, metrics=Metrics())
    TwinIndex(state=store).apply(
        [(BRAND, ANN, "m-0", "coffee.segment", HLC(12, 0).pack(), 2)], observe=watch
    )
    events = TriggerEvents(state=store, max_events=1000, retention_ms=10**12)
    events.hold(BRAND, ["1-" + "d" * 32], "objection", 5)
    # the strategy lab: an experiment and its members (migration 7)
    spec = ExperimentSpec(None, "offer", 1.0, 0.5, "churned", 86_400_000, 3_600_000)
    twins = [("1-" + "d" * 32, "coffee=1"), ("1-" + "e" * 32, "coffee=1")]
    Experiments(state=store, clock=SystemClock()).create(BRAND, spec, twins)
    return token


def _rows(store: StateStore) -> dict[str, list[tuple[object, ...]]]:
    with store.transaction(readonly=True) as tx:
        return {
            table: tx.execute(
                f"SELECT * FROM {table} ORDER BY {', '.join(STATE_KEYS[table])}"
            ).fetchall()
            for table in COPIED_TABLES
        }


@pytest.fixture
def source(tmp_path: Path) -> StateStore:
    """A one-host hub's state file, filled by its components."""
    store = open_state_store(f"sqlite:///{tmp_path / 'registry.sqlite'}")
    _fill(store)
    return store


def test_every_row_arrives_and_the_hub_works_on_the_copy(
    source: StateStore, target: Target
) -> None:
    before = _rows(source)
    assert all(before.values()), [t for t, rows in before.items() if not rows]
    with target.open() as dest:
        counts = copy_state(source, dest)
        assert counts == {t: len(rows) for t, rows in before.items()}
        assert _rows(dest) == before
        with dest.transaction(readonly=True) as tx:  # an instance's lease is not copied
            assert tx.execute("SELECT COUNT(*) FROM state_leases").scalar() == 0
        # Numbered columns continue after the copied numbers.
        api = ApiKeys(dest)
        api.audit(BRAND, "k", "GET", "/", 200)
        assert [r["status"] for r in api.audit_log(BRAND)] == [200, 200, 403, 200]
        with dest.transaction() as tx:
            row = {"brand": BRAND, "name": "x", "version": 1, "target": "all", "value": ""}
            assert tx.insert("rollouts", {**row, "created_ms": 1}, returning="id") == 2
        egress = EgressPolicy(WebhookSettings(allow=["127.0.0.1"], require_https=False))
        hooks = Webhooks(state=dest, clock=SystemClock(), egress=egress)
        hooks.emit(BRAND, "erasure", {})
        assert [r[0] for r in hooks.due(2**62, limit=10)] == [1, 2, 3, 4]
        # The components read the copy as they read the file.
        assert Tombstones(dest).erased(BRAND) == frozenset({ANN})
        registry = Registry(dest)
        assert [(r.device, r.revoked) for r in registry.devices(BRAND)] == [
            ("m-0", False),
            ("m-1", False),
            ("m-2", True),
        ]
        assert registry.broker_users() == []  # provisioned without broker passwords


def test_a_target_that_holds_state_is_refused_and_left_as_it_was(
    source: StateStore, target: Target
) -> None:
    with target.open() as dest:
        Registry(dest).add_many([(BRAND, "other", "tv", SigningKey.generate().public)])
        held = _rows(dest)
        with pytest.raises(StateConflictError, match=r"already holds hub state \(in devices"):
            copy_state(source, dest)
        assert _rows(dest) == held


def test_the_migrate_command_moves_a_hubs_file_to_postgresql(
    source: StateStore, tmp_path: Path, postgres: object
) -> None:
    """As an operator does it: hub.toml still names the file; --to names the database,
    its password in a file; then hub.toml names the database and the state is there."""
    from twinsync.services import PostgresDatabase

    assert isinstance(postgres, PostgresDatabase)
    (tmp_path / "hub.toml").write_text('[registry]\npath = "registry.sqlite"\n')
    secret = tmp_path / "state.password"
    secret.write_text(postgres.password + "\n")
    secret.chmod(0o600)
    argv = [sys.executable, "-m", "twinsync", "hub", "state", "migrate"]
    argv += ["--config", str(tmp_path / "hub.toml"), "--to", postgres.url]
    done = subprocess.run(
        [*argv, "--to-password-file", str(secret)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "devices            3" in done.stdout
    assert f'state.url = "{postgres.url}"' in done.stdout
    assert postgres.password not in done.stdout + done.stderr
    with open_state_store(postgres.url, password=postgres.password) as copied:
        assert _rows(copied) == _rows(source)
    # Again: the database now holds state, so nothing is copied over it.
    again = subprocess.run(
        [*argv, "--to-password-file", str(secret)], capture_output=True, text=True, check=False
    )
    assert again.returncode == 2
    assert "already holds hub state" in again.stderr
    assert "Traceback" not in again.stderr
    # Into itself, or without the password: a one-line error.
    same = subprocess.run(
        [*argv[:-1], f"sqlite:///{tmp_path / 'registry.sqlite'}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert same.returncode == 2
    assert "names the store being copied" in same.stderr
    nopass = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert nopass.returncode == 2
    assert "refused the hub's credentials" in nopass.stderr
    # The hub's config now names the database; its commands find the devices there.
    (tmp_path / "hub.toml").write_text(
        f'[state]\nurl = "{postgres.url}"\npassword_file = "{secret}"\n'
    )
    listed = subprocess.run(
        [*argv[:4], "device", "list", "--config", str(tmp_path / "hub.toml"), "--brand", BRAND],
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[1] for line in listed.stdout.splitlines()[1:]] == ["m-0", "m-1", "m-2"]
    assert listed.stdout.count("revoked") == 1
