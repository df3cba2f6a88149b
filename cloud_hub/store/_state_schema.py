"""The hub's schema as numbered migrations, one list per backend.

Migration 1 is every table the hub keeps in its shared state, with the columns the hub's
modules created themselves before the state store existed (``CREATE TABLE IF NOT EXISTS``
in each module, kept verbatim in tests/store/legacy_schema.sql), plus the store's own
``state_leases``. Migration 2 indexes the webhook queue's due time. On SQLite migration 1
is written so that it also adopts a file made by an older hub: every statement is ``IF NOT
EXISTS`` and a registry from before broker credentials gets its ``mqtt_hash`` column.
Migration 3 adds the twin query index (cloud_hub/store/_twin_index.py), complete at once
on a store without devices, to be rebuilt from InfluxDB on one an older hub wrote.
Migration 4 adds the brands' trigger rules, their event log and delivery queue
(cloud_hub/triggers). On
PostgreSQL the types are mapped: INTEGER -> BIGINT (times are Unix ms), ``INTEGER PRIMARY KEY
AUTOINCREMENT`` -> an identity column, TEXT -> ``TEXT COLLATE "C"`` so ``ORDER BY`` sorts
by code point as SQLite does, whatever the database's locale (and BLOB -> BYTEA, should a
later migration add one).

A new migration is appended to both lists with the next number (never edit one that has
shipped: databases record what they applied). tests/store/test_state_migrations.py checks
that both backends end with the same tables, columns and indexes, and that migration 1
creates exactly what the modules created (tests/store/legacy_schema.sql).
"""

from __future__ import annotations

from ._state import Migration
from ._state_tx import Tx

__all__ = [
    "IDENTITY_COLUMNS",
    "INDEX_COMPLETE",
    "POSTGRES_MIGRATIONS",
    "SQLITE_MIGRATIONS",
    "STATE_KEYS",
    "STATE_TABLES",
    "TWIN_INDEX_TABLES",
]

#: every table of the hub's state and its primary key, the store's own last (the order
#: the copy command walks them in: tests/store/test_state_migrations.py checks the keys)
STATE_KEYS: dict[str, tuple[str, ...]] = {
    "devices": ("brand", "device"),
    "registry_meta": ("name",),
    "api_keys": ("key_id",),
    "audit": ("id",),
    "cohorts": ("brand", "cohort", "device"),
    "rollouts": ("id",),
    "rollout_members": ("rollout", "device"),
    "model_sets": ("brand", "device"),
    "models": ("brand", "name", "version"),
    "tombstones": ("brand", "twin"),
    "privacy_requests": ("id",),
    "field_blocks": ("brand", "twin", "target"),
    "twin_links": ("brand", "old"),
    "retired_epochs": ("brand", "epoch"),
    "retention_sweeps": ("class",),
    "rewrite_jobs": ("id",),
    "webhooks": ("brand",),
    "webhook_queue": ("id",),
    # the twin query index (migration 3, cloud_hub/store/_twin_index.py)
    "twin_index": ("brand", "twin"),
    "twin_fields": ("brand", "twin", "field"),
    "twin_counter_parts": ("brand", "twin", "field", "device"),
    "twin_products": ("brand", "twin", "product"),
    # triggers (migration 4, cloud_hub/triggers)
    "trigger_rules": ("brand", "rule_id"),
    "trigger_events": ("id",),
    "trigger_queue": ("id",),
    "trigger_holds": ("brand", "twin"),
    # the strategy lab's experiments (migration 7, cloud_hub/store/_experiments.py)
    "experiments": ("brand", "id"),
    "experiment_members": ("brand", "experiment", "twin"),
    "state_leases": ("name",),
}
#: every table of the hub's state, the store's own last
STATE_TABLES = tuple(STATE_KEYS)
#: the tables of the twin query index (migration 3): derived from InfluxDB, rebuildable
TWIN_INDEX_TABLES = ("twin_index", "twin_fields", "twin_counter_parts", "twin_products")
#: the ``registry_meta`` row saying the index holds every twin InfluxDB holds (set by
#: migration 3 on a store with no devices yet, and by ``twinsync hub index rebuild``)
INDEX_COMPLETE = "twin_index:complete"
#: the tables whose key the database numbers (``AUTOINCREMENT``, an identity column)
IDENTITY_COLUMNS = {
    "audit": "id",
    "rollouts": "id",
    "webhook_queue": "id",
    "trigger_events": "id",
    "trigger_queue": "id",
}

_SQLITE_1 = (
    # registry (cloud_hub/registry/_devices.py)
    """CREATE TABLE IF NOT EXISTS devices (
        brand TEXT NOT NULL, device TEXT NOT NULL, product TEXT NOT NULL,
        public_key TEXT NOT NULL, created_ms INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0, mqtt_hash TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (brand, device))""",
    "CREATE TABLE IF NOT EXISTS registry_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    # API keys and audit (cloud_hub/api/_auth.py)
    """CREATE TABLE IF NOT EXISTS api_keys (
        key_id TEXT PRIMARY KEY, brand TEXT NOT NULL, name TEXT NOT NULL,
        scopes TEXT NOT NULL, secret_hash TEXT NOT NULL, created_ms INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, brand TEXT NOT NULL,
        key_id TEXT NOT NULL, method TEXT NOT NULL, route TEXT NOT NULL,
        status INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS audit_brand ON audit (brand, id)",
    # models and rollouts (cloud_hub/models/_rollouts.py, _repository.py)
    """CREATE TABLE IF NOT EXISTS cohorts (
        brand TEXT NOT NULL, cohort TEXT NOT NULL, device TEXT NOT NULL,
        PRIMARY KEY (brand, cohort, device))""",
    """CREATE TABLE IF NOT EXISTS rollouts (
        id INTEGER PRIMARY KEY AUTOINCREMENT, brand TEXT NOT NULL, name TEXT NOT NULL,
        version INTEGER NOT NULL, target TEXT NOT NULL, value TEXT NOT NULL,
        created_ms INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rollout_members (
        rollout INTEGER NOT NULL, device TEXT NOT NULL, PRIMARY KEY (rollout, device))""",
    """CREATE TABLE IF NOT EXISTS model_sets (
        brand TEXT NOT NULL, device TEXT NOT NULL, version INTEGER NOT NULL,
        digest TEXT NOT NULL, PRIMARY KEY (brand, device))""",
    """CREATE TABLE IF NOT EXISTS models (
        brand TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
        product TEXT NOT NULL, sha256 TEXT NOT NULL, manifest TEXT NOT NULL,
        created_ms INTEGER NOT NULL, PRIMARY KEY (brand, name, version))""",
    # privacy (cloud_hub/privacy/)
    """CREATE TABLE IF NOT EXISTS tombstones (
        brand TEXT NOT NULL, twin TEXT NOT NULL, erased_ms INTEGER NOT NULL,
        request_id TEXT NOT NULL, PRIMARY KEY (brand, twin))""",
    """CREATE TABLE IF NOT EXISTS privacy_requests (
        id TEXT PRIMARY KEY, brand TEXT NOT NULL, kind TEXT NOT NULL,
        received_ms INTEGER NOT NULL, deadline_ms INTEGER NOT NULL, completed_ms INTEGER,
        receipt TEXT)""",
    """CREATE TABLE IF NOT EXISTS field_blocks (
        brand TEXT NOT NULL, twin TEXT NOT NULL, target TEXT NOT NULL,
        since_ms INTEGER NOT NULL, request_id TEXT NOT NULL,
        PRIMARY KEY (brand, twin, target))""",
    """CREATE TABLE IF NOT EXISTS twin_links (
        brand TEXT NOT NULL, old TEXT NOT NULL, new TEXT NOT NULL, device TEXT NOT NULL,
        state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', proposed_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL, points INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (brand, old))""",
    """CREATE TABLE IF NOT EXISTS retired_epochs (
        brand TEXT NOT NULL, epoch INTEGER NOT NULL, retired_ms INTEGER NOT NULL,
        PRIMARY KEY (brand, epoch))""",
    """CREATE TABLE IF NOT EXISTS retention_sweeps (
        class TEXT PRIMARY KEY, swept_ms INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rewrite_jobs (
        id TEXT PRIMARY KEY, request_id TEXT NOT NULL, brand TEXT NOT NULL,
        twin TEXT NOT NULL, field TEXT NOT NULL, state TEXT NOT NULL, points TEXT NOT NULL,
        keep TEXT NOT NULL, lease_ms INTEGER NOT NULL DEFAULT 0)""",
    # webhooks (cloud_hub/privacy/_webhooks.py)
    """CREATE TABLE IF NOT EXISTS webhooks (
        brand TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS webhook_queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT, brand TEXT NOT NULL, event_id TEXT NOT NULL,
        body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, due_ms INTEGER NOT NULL)""",
    # the store's named leases (StateStore.try_lease)
    """CREATE TABLE IF NOT EXISTS state_leases (
        name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_ms INTEGER NOT NULL)""",
)


def _registry_credentials(tx: Tx) -> None:
    # Registries made before broker credentials have no mqtt_hash (what the registry
    # module added itself with ALTER TABLE until the state store took over).
    columns = {row[1] for row in tx.execute("PRAGMA table_info(devices)")}
    if "mqtt_hash" not in columns:
        tx.execute("ALTER TABLE devices ADD COLUMN mqtt_hash TEXT NOT NULL DEFAULT ''")


#: migration 2: the webhook sender claims due events every second (``due_ms <= now``);
#: without an index each claim reads the whole queue, which grows while an endpoint is down
_WEBHOOK_DUE = "CREATE INDEX IF NOT EXISTS webhook_queue_due ON webhook_queue (due_ms)"


def _index(text: str, integer: str, real: str, clustered: str) -> tuple[str, ...]:
    """Migration 3, the twin query index (cloud_hub/store/_twin_index.py), in a backend's
    types: ``text``, ``integer`` (Unix ms, packed HLCs) and ``real`` (numbers);
    ``clustered`` ends a table stored in its key's order (SQLite's ``WITHOUT ROWID``: a
    twin's rows are read as one range, as a page's details and every merge read them)."""
    t, i, r, c = text, integer, real, clustered
    return (
        # one row per twin: what every query lists, pages and sorts by
        f"""CREATE TABLE twin_index (
            brand {t} NOT NULL, twin {t} NOT NULL, first_seen_ms {i} NOT NULL,
            last_seen_ms {i} NOT NULL, churn_risk {r}, PRIMARY KEY (brand, twin)){c}""",
        "CREATE INDEX twin_index_last_seen ON twin_index (brand, last_seen_ms, twin)",
        "CREATE INDEX twin_index_first_seen ON twin_index (brand, first_seen_ms, twin)",
        "CREATE INDEX twin_index_churn ON twin_index (brand, churn_risk, twin) "
        "WHERE churn_risk IS NOT NULL",
        # one row per (twin, field): the merged value, numbers in num, text in txt
        f"""CREATE TABLE twin_fields (
            brand {t} NOT NULL, twin {t} NOT NULL, field {t} NOT NULL, device {t} NOT NULL,
            hlc {i} NOT NULL, num {r}, txt {t}, PRIMARY KEY (brand, twin, field)){c}""",
        "CREATE INDEX twin_fields_num ON twin_fields (brand, field, num, twin) "
        "WHERE num IS NOT NULL",
        "CREATE INDEX twin_fields_txt ON twin_fields (brand, field, txt, twin) "
        "WHERE txt IS NOT NULL",
        # each device's latest cumulative total of a counter field (the G-counter parts)
        f"""CREATE TABLE twin_counter_parts (
            brand {t} NOT NULL, twin {t} NOT NULL, field {t} NOT NULL, device {t} NOT NULL,
            hlc {i} NOT NULL, num {r} NOT NULL, PRIMARY KEY (brand, twin, field, device)){c}""",
        # which products a twin holds fields of (``product = coffee``)
        f"""CREATE TABLE twin_products (
            brand {t} NOT NULL, twin {t} NOT NULL, product {t} NOT NULL,
            PRIMARY KEY (brand, twin, product)){c}""",
        "CREATE INDEX twin_products_product ON twin_products (brand, product, twin)",
    )


def _experiments(text: str, integer: str, real: str) -> tuple[str, ...]:
    """Migration 7, the strategy lab's experiments (cloud_hub/store/_experiments.py):
    one row per experiment (its result as JSON once finished), one per assigned twin."""
    t, i, r = text, integer, real
    return (
        f"""CREATE TABLE experiments (
            brand {t} NOT NULL, id {t} NOT NULL, created_ms {i} NOT NULL, salt {t} NOT NULL,
            where_text {t}, offer {t} NOT NULL, cost {r} NOT NULL, holdout {r} NOT NULL,
            metric {t} NOT NULL, window_ms {i} NOT NULL, quiet_ms {i} NOT NULL,
            ends_ms {i} NOT NULL, excluded {i} NOT NULL, finished_ms {i}, result {t},
            PRIMARY KEY (brand, id))""",
        f"""CREATE TABLE experiment_members (
            brand {t} NOT NULL, experiment {t} NOT NULL, twin {t} NOT NULL,
            arm {t} NOT NULL, stratum {t} NOT NULL, exposed_ms {i},
            PRIMARY KEY (brand, experiment, twin))""",
    )


def _index_complete_if_new(tx: Tx) -> None:
    # A store with no devices has no twins in InfluxDB to index: complete as it is. One
    # that has devices was written by an older hub: a rebuild fills it (docs/hub.md).
    tx.execute(
        "INSERT INTO registry_meta (name, value) SELECT ?, 1 "
        "WHERE NOT EXISTS (SELECT 1 FROM devices)",
        (INDEX_COMPLETE,),
    )


def _triggers(text: str, integer: str, identity: str) -> tuple[str, ...]:
    """Migration 4, triggers (cloud_hub/triggers), in a backend's types: the rules, the
    event log (its ids are the SSE stream's ``Last-Event-ID``), the delivery queue and
    the twins whose triggers the customer stopped (objection, consent withdrawn)."""
    t, i = text, integer
    return (
        f"""CREATE TABLE trigger_rules (
            brand {t} NOT NULL, rule_id {t} NOT NULL, rule {t} NOT NULL, url {t},
            secret {t}, created_ms {i} NOT NULL, PRIMARY KEY (brand, rule_id))""",
        f"""CREATE TABLE trigger_events (
            id {identity}, brand {t} NOT NULL, event_id {t} NOT NULL, rule_id {t} NOT NULL,
            twin {t} NOT NULL, body {t} NOT NULL, created_ms {i} NOT NULL)""",
        "CREATE UNIQUE INDEX trigger_events_event ON trigger_events (brand, event_id)",
        "CREATE INDEX trigger_events_brand ON trigger_events (brand, id)",
        "CREATE INDEX trigger_events_twin ON trigger_events (brand, twin)",
        f"""CREATE TABLE trigger_queue (
            id {identity}, brand {t} NOT NULL, rule_id {t} NOT NULL, twin {t} NOT NULL,
            event_id {t} NOT NULL, body {t} NOT NULL, attempts {i} NOT NULL DEFAULT 0,
            due_ms {i} NOT NULL)""",
        "CREATE INDEX trigger_queue_due ON trigger_queue (due_ms)",
        "CREATE INDEX trigger_queue_twin ON trigger_queue (brand, rule_id, twin, id)",
        f"""CREATE TABLE trigger_holds (
            brand {t} NOT NULL, twin {t} NOT NULL, reason {t} NOT NULL, since_ms {i} NOT NULL,
            PRIMARY KEY (brand, twin))""",
    )


SQLITE_MIGRATIONS = (
    Migration(1, "hub state", _SQLITE_1, _registry_credentials),
    Migration(2, "webhook queue due index", (_WEBHOOK_DUE,)),
    Migration(
        3,
        "twin query index",
        _index("TEXT", "INTEGER", "REAL", " WITHOUT ROWID"),
        _index_complete_if_new,
    ),
    Migration(4, "triggers", _triggers("TEXT", "INTEGER", "INTEGER PRIMARY KEY AUTOINCREMENT")),
    # 5 and 6 were handed out to parts that needed none: the runner applies what it has,
    # in order
    Migration(7, "strategy lab experiments", _experiments("TEXT", "INTEGER", "REAL")),
)

_T = 'TEXT COLLATE "C"'  # byte-order sorting and comparison, as in SQLite
_I = "BIGINT"
_ID = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"

_POSTGRES_1 = (
    f"""CREATE TABLE devices (
        brand {_T} NOT NULL, device {_T} NOT NULL, product {_T} NOT NULL,
        public_key {_T} NOT NULL, created_ms {_I} NOT NULL, revoked {_I} NOT NULL DEFAULT 0,
        mqtt_hash {_T} NOT NULL DEFAULT '', PRIMARY KEY (brand, device))""",
    f"CREATE TABLE registry_meta (name {_T} PRIMARY KEY, value {_I} NOT NULL)",
    f"""CREATE TABLE api_keys (
        key_id {_T} PRIMARY KEY, brand {_T} NOT NULL, name {_T} NOT NULL,
        scopes {_T} NOT NULL, secret_hash {_T} NOT NULL, created_ms {_I} NOT NULL,
        revoked {_I} NOT NULL DEFAULT 0)""",
    f"""CREATE TABLE audit (
        id {_ID}, ts_ms {_I} NOT NULL, brand {_T} NOT NULL, key_id {_T} NOT NULL,
        method {_T} NOT NULL, route {_T} NOT NULL, status {_I} NOT NULL)""",
    "CREATE INDEX audit_brand ON audit (brand, id)",
    f"""CREATE TABLE cohorts (
        brand {_T} NOT NULL, cohort {_T} NOT NULL, device {_T} NOT NULL,
        PRIMARY KEY (brand, cohort, device))""",
    f"""CREATE TABLE rollouts (
        id {_ID}, brand {_T} NOT NULL, name {_T} NOT NULL, version {_I} NOT NULL,
        target {_T} NOT NULL, value {_T} NOT NULL, created_ms {_I} NOT NULL)""",
    f"""CREATE TABLE rollout_members (
        rollout {_I} NOT NULL, device {_T} NOT NULL, PRIMARY KEY (rollout, device))""",
    f"""CREATE TABLE model_sets (
        brand {_T} NOT NULL, device {_T} NOT NULL, version {_I} NOT NULL,
        digest {_T} NOT NULL, PRIMARY KEY (brand, device))""",
    f"""CREATE TABLE models (
        brand {_T} NOT NULL, name {_T} NOT NULL, version {_I} NOT NULL, product {_T} NOT NULL,
        sha256 {_T} NOT NULL, manifest {_T} NOT NULL, created_ms {_I} NOT NULL,
        PRIMARY KEY (brand, name, version))""",
    f"""CREATE TABLE tombstones (
        brand {_T} NOT NULL, twin {_T} NOT NULL, erased_ms {_I} NOT NULL,
        request_id {_T} NOT NULL, PRIMARY KEY (brand, twin))""",
    f"""CREATE TABLE privacy_requests (
        id {_T} PRIMARY KEY, brand {_T} NOT NULL, kind {_T} NOT NULL,
        received_ms {_I} NOT NULL, deadline_ms {_I} NOT NULL, completed_ms {_I},
        receipt {_T})""",
    f"""CREATE TABLE field_blocks (
        brand {_T} NOT NULL, twin {_T} NOT NULL, target {_T} NOT NULL,
        since_ms {_I} NOT NULL, request_id {_T} NOT NULL, PRIMARY KEY (brand, twin, target))""",
    f"""CREATE TABLE twin_links (
        brand {_T} NOT NULL, old {_T} NOT NULL, new {_T} NOT NULL, device {_T} NOT NULL,
        state {_T} NOT NULL, reason {_T} NOT NULL DEFAULT '', proposed_ms {_I} NOT NULL,
        updated_ms {_I} NOT NULL, points {_I} NOT NULL DEFAULT 0, PRIMARY KEY (brand, old))""",
    f"""CREATE TABLE retired_epochs (
        brand {_T} NOT NULL, epoch {_I} NOT NULL, retired_ms {_I} NOT NULL,
        PRIMARY KEY (brand, epoch))""",
    f"CREATE TABLE retention_sweeps (class {_T} PRIMARY KEY, swept_ms {_I} NOT NULL)",
    f"""CREATE TABLE rewrite_jobs (
        id {_T} PRIMARY KEY, request_id {_T} NOT NULL, brand {_T} NOT NULL, twin {_T} NOT NULL,
        field {_T} NOT NULL, state {_T} NOT NULL, points {_T} NOT NULL, keep {_T} NOT NULL,
        lease_ms {_I} NOT NULL DEFAULT 0)""",
    f"CREATE TABLE webhooks (brand {_T} PRIMARY KEY, url {_T} NOT NULL, secret {_T} NOT NULL)",
    f"""CREATE TABLE webhook_queue (
        id {_ID}, brand {_T} NOT NULL, event_id {_T} NOT NULL, body {_T} NOT NULL,
        attempts {_I} NOT NULL DEFAULT 0, due_ms {_I} NOT NULL)""",
    f"""CREATE TABLE state_leases (
        name {_T} PRIMARY KEY, holder {_T} NOT NULL, expires_ms {_I} NOT NULL)""",
)

POSTGRES_MIGRATIONS = (
    Migration(1, "hub state", _POSTGRES_1),
    Migration(2, "webhook queue due index", (_WEBHOOK_DUE,)),
    Migration(
        3, "twin query index", _index(_T, _I, "DOUBLE PRECISION", ""), _index_complete_if_new
    ),
    Migration(4, "triggers", _triggers(_T, _I, _ID)),
    Migration(7, "strategy lab experiments", _experiments(_T, _I, "DOUBLE PRECISION")),
)
