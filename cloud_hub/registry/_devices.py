"""The device registry: which devices exist, their product and public key.

Kept in the state store (cloud_hub.store: a SQLite file on one host, PostgreSQL across
hosts), shared by every hub instance and written by ``twinsync hub provision`` and
``twinsync hub device revoke``. Lookups are cached; a miss re-reads the store so devices
provisioned while the hub runs are accepted without a restart. Every change (provision,
re-provision, revoke) bumps a generation number in the store; each instance reads it at
most once per ``refresh_s`` and drops its cache when it moved, so a revocation or a
re-provisioned key reaches running hubs within about a second, without a restart.

When the store cannot answer, a lookup raises ``StateUnavailableError`` rather than say
"unknown device": the verifier lets it end the batch (nothing written or acked) and ingest
retries once the store is back (cloud_hub.ingest._verify).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from cloud_hub.store import StateStore, Tx, state_of
from protocol import Clock, SystemClock, VerifyKey, check_brand, check_device

__all__ = ["DeviceRecord", "Registry"]

#: how often a running instance looks for changes made by other processes (seconds)
REFRESH_S = 1.0


def _bump(tx: Tx) -> None:
    """Move the generation on: every instance drops its cache within ``refresh_s``."""
    # registry_meta.value, qualified: PostgreSQL finds a bare "value" ambiguous here.
    tx.upsert(
        "registry_meta",
        [{"name": "generation", "value": 1}],
        key=["name"],
        update={"value": "registry_meta.value + 1"},
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
    """The device registry in the shared state store."""

    def __init__(
        self,
        state: StateStore | str | os.PathLike[str],
        refresh_s: float = REFRESH_S,
        *,
        clock: Clock | None = None,
    ) -> None:
        # A path is the SQLite state file of a one-host hub (tools and tests).
        self._state = state_of(state)
        self.refresh_s = refresh_s
        # Provisioning and the command line use a registry without a hub: the system clock
        # then. Cache ages below are monotonic (time.monotonic): a step of the wall clock
        # must neither freeze nor flush the cache.
        self._clock: Clock = clock or SystemClock()
        self._cache: dict[tuple[str, str], DeviceRecord | None] = {}
        self._missed_at: dict[tuple[str, str], float] = {}
        self._generation = -1
        self._checked_at = float("-inf")

    def add_many(
        self,
        records: list[tuple[str, str, str, VerifyKey]],
        mqtt_hashes: dict[tuple[str, str], str] | None = None,
    ) -> None:
        """Register ``(brand, device, product, key)`` rows in one transaction, with each
        device's broker password hash (mosquitto format) when given. An existing device is
        replaced: new key, hash and provisioning time, no longer revoked (callers decide
        whether that is wanted: see ``existing`` and provisioning's ``force``)."""
        now = self._clock.now_ms()
        hashes = mqtt_hashes or {}
        rows = [
            {
                "brand": check_brand(b),
                "device": check_device(d),
                "product": p,
                "public_key": k.hex(),
                "created_ms": now,
                "mqtt_hash": hashes.get((b, d), ""),
            }
            for b, d, p, k in records
        ]
        with self._state.transaction() as tx:
            tx.upsert(
                "devices",
                rows,
                key=["brand", "device"],
                update={
                    "product": "excluded.product",
                    "public_key": "excluded.public_key",
                    "created_ms": "excluded.created_ms",
                    "mqtt_hash": "excluded.mqtt_hash",
                    "revoked": "0",
                },
            )
            _bump(tx)
        for b, d, *_ in records:
            self._cache.pop((b, d), None)

    def revoke(self, brand: str, device: str) -> bool:
        """Mark a device revoked: its messages are rejected from now on (by every hub
        instance within ``refresh_s``). False when the registry has no such device."""
        with self._state.transaction() as tx:
            found = tx.execute(
                "UPDATE devices SET revoked=1 WHERE brand=? AND device=?", (brand, device)
            ).rowcount
            _bump(tx)
        self._cache.pop((brand, device), None)
        return found > 0

    def _follow_changes(self) -> None:
        """Drop the cache when another process changed the registry (at most every
        ``refresh_s``): a cached record must not outlive its revocation or key."""
        now = time.monotonic()
        if now - self._checked_at < self.refresh_s:
            return
        with self._state.transaction(readonly=True) as tx:
            row = tx.execute("SELECT value FROM registry_meta WHERE name='generation'").fetchone()
        # Only a check that answered counts: while the store is down every lookup asks
        # again (and fails), rather than trust the cache past a revocation it cannot see.
        self._checked_at = now
        generation = 0 if row is None else int(row[0])
        if generation != self._generation:
            self._generation = generation
            self._cache.clear()
            self._missed_at.clear()

    def get(self, brand: str, device: str) -> DeviceRecord | None:
        """The device's record, or None if unknown (misses are re-checked at most 1/s;
        changes by other processes are seen within ``refresh_s``). Blocking (call it in a
        thread); raises StateUnavailableError when the store cannot tell."""
        self._follow_changes()
        key = (brand, device)
        if key in self._cache:
            record = self._cache[key]
            if record is not None or time.monotonic() - self._missed_at.get(key, 0) < 1.0:
                return record
        with self._state.transaction(readonly=True) as tx:
            row = tx.execute(
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
        with self._state.transaction(readonly=True) as tx:
            if brand is None:
                rows = tx.execute(query + " ORDER BY brand, device").fetchall()
            else:
                rows = tx.execute(query + " WHERE brand=? ORDER BY device", (brand,)).fetchall()
        return [
            DeviceRecord(r[0], r[1], r[2], VerifyKey.from_hex(r[3]), r[4], bool(r[5])) for r in rows
        ]

    def existing(self, brand: str, devices: list[str]) -> list[DeviceRecord]:
        """The records of those of ``devices`` (of ``brand``) already in the registry, read
        from the store (not the cache), sorted by id."""
        wanted = set(devices)
        return [r for r in self.devices(brand) if r.device in wanted]

    def broker_users(self) -> list[tuple[str, str, str]]:
        """``(brand, device, mqtt_hash)`` of every device that may connect to the broker
        (provisioned with credentials and not revoked), sorted."""
        with self._state.transaction(readonly=True) as tx:
            return [
                (r[0], r[1], r[2])
                for r in tx.execute(
                    "SELECT brand, device, mqtt_hash FROM devices "
                    "WHERE revoked=0 AND mqtt_hash != '' ORDER BY brand, device"
                )
            ]

    def brands(self) -> list[str]:
        """Every brand with at least one device."""
        with self._state.transaction(readonly=True) as tx:
            return [r[0] for r in tx.execute("SELECT DISTINCT brand FROM devices ORDER BY brand")]
