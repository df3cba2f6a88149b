"""The device registry: which devices exist, their product and public key.

A SQLite file shared by every hub instance (and written by ``twinsync hub provision``).
Lookups are cached; a miss re-reads the file so devices provisioned while the hub runs are
accepted without a restart.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from protocol import VerifyKey, check_brand, check_device

from ._errors import RegistryError

__all__ = ["DeviceRecord", "Registry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    brand       TEXT NOT NULL,
    device      TEXT NOT NULL,
    product     TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    revoked     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (brand, device)
)
"""


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

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._cache: dict[tuple[str, str], DeviceRecord | None] = {}
        self._missed_at: dict[tuple[str, str], float] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open device registry {self.path}: {exc}") from exc
        return db

    def add_many(self, records: list[tuple[str, str, str, VerifyKey]]) -> None:
        """Register ``(brand, device, product, key)`` rows in one transaction (upsert)."""
        now = time.time_ns() // 1_000_000
        rows = [(check_brand(b), check_device(d), p, k.hex(), now) for b, d, p, k in records]
        with self._connect() as db:
            db.executemany(
                "INSERT INTO devices (brand, device, product, public_key, created_ms) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (brand, device) DO UPDATE SET "
                "product=excluded.product, public_key=excluded.public_key, revoked=0",
                rows,
            )
        for b, d, *_ in records:
            self._cache.pop((b, d), None)

    def revoke(self, brand: str, device: str) -> None:
        """Mark a device revoked: its messages are rejected from now on."""
        with self._connect() as db:
            db.execute("UPDATE devices SET revoked=1 WHERE brand=? AND device=?", (brand, device))
        self._cache.pop((brand, device), None)

    def get(self, brand: str, device: str) -> DeviceRecord | None:
        """The device's record, or None if unknown (misses are re-checked at most 1/s)."""
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

    def devices(self, brand: str) -> list[DeviceRecord]:
        """Every device of ``brand``, sorted by id."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT device, product, public_key, created_ms, revoked FROM devices "
                "WHERE brand=? ORDER BY device",
                (brand,),
            ).fetchall()
        return [
            DeviceRecord(brand, r[0], r[1], VerifyKey.from_hex(r[2]), r[3], bool(r[4]))
            for r in rows
        ]

    def brands(self) -> list[str]:
        """Every brand with at least one device."""
        with self._connect() as db:
            return [r[0] for r in db.execute("SELECT DISTINCT brand FROM devices ORDER BY brand")]
