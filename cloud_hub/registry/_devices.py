"""The device registry: which devices exist, their product and public key.

A SQLite file shared by every hub instance (and written by ``twinsync hub provision`` and
``twinsync hub device revoke``). Lookups are cached; a miss re-reads the file so devices
provisioned while the hub runs are accepted without a restart. Every change (provision,
re-provision, revoke) bumps a generation number in the file; each instance reads it at
most once per ``refresh_s`` and drops its cache when it moved, so a revocation or a
re-provisioned key reaches running hubs within about a second, without a restart.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from cloud_hub._errors import RegistryError
from protocol import VerifyKey, check_brand, check_device

__all__ = ["DeviceRecord", "Registry"]

#: how often a running instance looks for changes made by other processes (seconds)
REFRESH_S = 1.0

_SCHEMA = """
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
"""

_BUMP = (
    "INSERT INTO registry_meta (name, value) VALUES ('generation', 1) "
    "ON CONFLICT (name) DO UPDATE SET value = value + 1"
)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """One provisioned device."""

    brand: str
    device: str
    product: str
    key: VerifyKey
    created_ms: int
    revoked: bool


class Registry:
    """SQLite-backed device registry."""

    def __init__(self, path: Path, refresh_s: float = REFRESH_S) -> None:
        self.path = Path(path)
        self.refresh_s = refresh_s
        self._cache: dict[tuple[str, str], DeviceRecord | None] = {}
        self._missed_at: dict[tuple[str, str], float] = {}
        self._generation = -1
        self._checked_at = float("-inf")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(devices)")}
            if "mqtt_hash" not in columns:  # registries made before broker credentials
                db.execute("ALTER TABLE devices ADD COLUMN mqtt_hash TEXT NOT NULL DEFAULT ''")

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open device registry {self.path}: {exc}") from exc
        return db

    def add_many(
        self,
        records: list[tuple[str, str, str, VerifyKey]],
        mqtt_hashes: dict[tuple[str, str], str] | None = None,
    ) -> None:
        """Register ``(brand, device, product, key)`` rows in one transaction, with each
        device's broker password hash (mosquitto format) when given. An existing device is
        replaced: new key, hash and provisioning time, no longer revoked (callers decide
        whether that is wanted: see ``existing`` and provisioning's ``force``)."""
        now = time.time_ns() // 1_000_000
        hashes = mqtt_hashes or {}
        rows = [
            (check_brand(b), check_device(d), p, k.hex(), now, hashes.get((b, d), ""))
            for b, d, p, k in records
        ]
        with self._connect() as db:
            db.executemany(
                "INSERT INTO devices (brand, device, product, public_key, created_ms, mqtt_hash) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (brand, device) DO UPDATE SET "
                "product=excluded.product, public_key=excluded.public_key, revoked=0, "
                "created_ms=excluded.created_ms, "
                "mqtt_hash=excluded.mqtt_hash",
                rows,
            )
            db.execute(_BUMP)
        for b, d, *_ in records:
            self._cache.pop((b, d), None)

    def revoke(self, brand: str, device: str) -> bool:
        """Mark a device revoked: its messages are rejected from now on (by every hub
        instance within ``refresh_s``). False when the registry has no such device."""
        with self._connect() as db:
            found = db.execute(
                "UPDATE devices SET revoked=1 WHERE brand=? AND device=?", (brand, device)
            ).rowcount
            db.execute(_BUMP)
        self._cache.pop((brand, device), None)
        return found > 0

    def _follow_changes(self) -> None:
        """Drop the cache when another process changed the registry (at most every
        ``refresh_s``): a cached record must not outlive its revocation or key."""
        now = time.monotonic()
        if now - self._checked_at < self.refresh_s:
            return
        self._checked_at = now
        with self._connect() as db:
            row = db.execute("SELECT value FROM registry_meta WHERE name='generation'").fetchone()
        generation = 0 if row is None else int(row[0])
        if generation != self._generation:
            self._generation = generation
            self._cache.clear()
            self._missed_at.clear()

    def get(self, brand: str, device: str) -> DeviceRecord | None:
        """The device's record, or None if unknown (misses are re-checked at most 1/s;
        changes by other processes are seen within ``refresh_s``)."""
        self._follow_changes()
        key = (brand, device)
        if key in self._cache:
            record = self._cache[key]
            if record is not None or time.monotonic() - self._missed_at.get(key, 0) < 1.0:
                return record
        with self._connect() as db:
            row = db.execute(
                "SELECT product, public_key, created_ms, revoked FROM devices "
                "WHERE brand=? AND device=?",
                key,
            ).fetchone()
        record = (
            None
            if row is None
            else DeviceRecord(
                brand, device, row[0], VerifyKey.from_hex(row[1]), row[2], bool(row[3])
            )
        )
        self._cache[key] = record
        if record is None:
            self._missed_at[key] = time.monotonic()
        return record

    def devices(self, brand: str | None = None) -> list[DeviceRecord]:
        """Every device of ``brand`` (None: of every brand), sorted by brand and id."""
        query = "SELECT brand, device, product, public_key, created_ms, revoked FROM devices"
        with self._connect() as db:
            if brand is None:
                rows = db.execute(query + " ORDER BY brand, device").fetchall()
            else:
                rows = db.execute(query + " WHERE brand=? ORDER BY device", (brand,)).fetchall()
        return [
            DeviceRecord(r[0], r[1], r[2], VerifyKey.from_hex(r[3]), r[4], bool(r[5])) for r in rows
        ]

    def existing(self, brand: str, devices: list[str]) -> list[DeviceRecord]:
        """The records of those of ``devices`` (of ``brand``) already in the registry, read
        from the file (not the cache), sorted by id."""
        wanted = set(devices)
        return [r for r in self.devices(brand) if r.device in wanted]

    def broker_users(self) -> list[tuple[str, str, str]]:
        """``(brand, device, mqtt_hash)`` of every device that may connect to the broker
        (provisioned with credentials and not revoked), sorted."""
        with self._connect() as db:
            return [
                (r[0], r[1], r[2])
                for r in db.execute(
                    "SELECT brand, device, mqtt_hash FROM devices "
                    "WHERE revoked=0 AND mqtt_hash != '' ORDER BY brand, device"
                )
            ]

    def brands(self) -> list[str]:
        """Every brand with at least one device."""
        with self._connect() as db:
            return [r[0] for r in db.execute("SELECT DISTINCT brand FROM devices ORDER BY brand")]
