-- The tables the hub's modules created themselves (CREATE TABLE IF NOT EXISTS in each
-- module) until they moved onto the state store (issue 10, phase 2), copied verbatim
-- from their source when they were removed. Migration 1 must create exactly these
-- (tests/store/test_state_migrations.py), so a file written by an older hub is adopted
-- as it is. Never edit: it records what older hubs wrote.

-- cloud_hub/api/_auth.py
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      TEXT PRIMARY KEY,
    brand       TEXT NOT NULL,
    name        TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    revoked     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms   INTEGER NOT NULL,
    brand   TEXT NOT NULL,
    key_id  TEXT NOT NULL,
    method  TEXT NOT NULL,
    route   TEXT NOT NULL,
    status  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_brand ON audit (brand, id);

-- cloud_hub/models/_repository.py
CREATE TABLE IF NOT EXISTS models (
    brand       TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    product     TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    manifest    TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (brand, name, version)
);

-- cloud_hub/models/_rollouts.py
CREATE TABLE IF NOT EXISTS cohorts (
    brand   TEXT NOT NULL,
    cohort  TEXT NOT NULL,
    device  TEXT NOT NULL,
    PRIMARY KEY (brand, cohort, device)
);
CREATE TABLE IF NOT EXISTS rollouts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    brand       TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    target      TEXT NOT NULL,
    value       TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rollout_members (
    rollout  INTEGER NOT NULL,
    device   TEXT NOT NULL,
    PRIMARY KEY (rollout, device)
);
CREATE TABLE IF NOT EXISTS model_sets (
    brand    TEXT NOT NULL,
    device   TEXT NOT NULL,
    version  INTEGER NOT NULL,
    digest   TEXT NOT NULL,
    PRIMARY KEY (brand, device)
);

-- cloud_hub/privacy/_erasure.py
CREATE TABLE IF NOT EXISTS tombstones (
    brand      TEXT NOT NULL,
    twin       TEXT NOT NULL,
    erased_ms  INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    PRIMARY KEY (brand, twin)
);

-- cloud_hub/privacy/_ledger.py
CREATE TABLE IF NOT EXISTS privacy_requests (
    id           TEXT PRIMARY KEY,
    brand        TEXT NOT NULL,
    kind         TEXT NOT NULL,
    received_ms  INTEGER NOT NULL,
    deadline_ms  INTEGER NOT NULL,
    completed_ms INTEGER,
    receipt      TEXT
);

-- cloud_hub/privacy/_objection.py
CREATE TABLE IF NOT EXISTS field_blocks (
    brand      TEXT NOT NULL,
    twin       TEXT NOT NULL,
    target     TEXT NOT NULL,
    since_ms   INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    PRIMARY KEY (brand, twin, target)
);

-- cloud_hub/privacy/_rectify.py
CREATE TABLE IF NOT EXISTS rewrite_jobs (
    id          TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL,
    brand       TEXT NOT NULL,
    twin        TEXT NOT NULL,
    field       TEXT NOT NULL,
    state       TEXT NOT NULL,
    points      TEXT NOT NULL,
    keep        TEXT NOT NULL,
    lease_ms    INTEGER NOT NULL DEFAULT 0
);

-- cloud_hub/privacy/_rekey.py
CREATE TABLE IF NOT EXISTS twin_links (
    brand TEXT NOT NULL, old TEXT NOT NULL, new TEXT NOT NULL, device TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    proposed_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
    points INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (brand, old)
);
CREATE TABLE IF NOT EXISTS retired_epochs (
    brand TEXT NOT NULL, epoch INTEGER NOT NULL, retired_ms INTEGER NOT NULL,
    PRIMARY KEY (brand, epoch)
);

-- cloud_hub/privacy/_retention.py
CREATE TABLE IF NOT EXISTS retention_sweeps (
    class    TEXT PRIMARY KEY,
    swept_ms INTEGER NOT NULL
);

-- cloud_hub/privacy/_webhooks.py
CREATE TABLE IF NOT EXISTS webhooks (
    brand  TEXT PRIMARY KEY,
    url    TEXT NOT NULL,
    secret TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_queue (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    brand     TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    body      TEXT NOT NULL,
    attempts  INTEGER NOT NULL DEFAULT 0,
    due_ms    INTEGER NOT NULL
);

-- cloud_hub/registry/_devices.py
CREATE TABLE IF NOT EXISTS devices (
    brand       TEXT NOT NULL,
    device      TEXT NOT NULL,
    product     TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    revoked     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (brand, device)
);
CREATE TABLE IF NOT EXISTS registry_meta (
    name        TEXT PRIMARY KEY,
    value       INTEGER NOT NULL
);

-- cloud_hub/registry/_devices.py: registries made before broker credentials lack this column
ALTER TABLE devices ADD COLUMN mqtt_hash TEXT NOT NULL DEFAULT '';
