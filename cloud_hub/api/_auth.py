"""API keys: per-brand credentials with scopes, stored hashed, and the audit log.

A key is ``tsk_<id>_<secret>``: ``id`` (12 hex) finds the row, ``secret`` (32 random
bytes, base64url) is checked against its SHA-256 in constant time. The secret has 256
bits of entropy, so a fast hash is enough (nothing to brute-force); the plain key is
shown once, when it is created, and never stored or logged. Keys live in the state store
(cloud_hub.store), shared by every hub instance; a revoked key stops working on every
instance within :data:`_CACHE_S`.

Scopes: ``read`` (twins, history, devices, segments, models, rollouts), ``write``
(changes to twins), ``privacy`` (data-subject requests), ``admin`` (models, cohorts,
rollouts, keys, the audit log), ``triggers`` (trigger rules and their events). A key
belongs to one brand and is refused for any other.

The audit log records every request that changes something or reads privacy-relevant
data: when, brand, key id (never the key), method, route template (never the concrete
path, which may hold a twin id), status. No raw identifier can reach it.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from cloud_hub._errors import AuthError
from cloud_hub.store import StateStore, state_of
from protocol import Clock, SystemClock, check_brand

__all__ = ["SCOPES", "ApiKey", "ApiKeys"]

SCOPES: Final = ("read", "write", "privacy", "admin", "triggers")
_TOKEN = re.compile(r"^tsk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_CACHE_S = 5.0
_CACHE_MAX = 10_000
_AUDIT_MAX_ROWS = 1000


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key's public facts (never its secret)."""

    key_id: str
    brand: str
    name: str
    scopes: frozenset[str]
    created_ms: int
    revoked: bool

    def summary(self) -> dict[str, Any]:
        """The API's view of the key."""
        return {
            "key_id": self.key_id,
            "brand": self.brand,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "created_ms": self.created_ms,
            "revoked": self.revoked,
        }


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Validate scope names; raise AuthError naming the valid ones."""
    chosen = frozenset(scopes)
    unknown = sorted(chosen - set(SCOPES))
    if unknown or not chosen:
        raise AuthError(
            f"scopes must be a non-empty subset of {', '.join(SCOPES)}; got {sorted(chosen)}",
            reason="bad_scopes",
            status=400,
        )
    return chosen


class ApiKeys:
    """API keys and the audit log in the shared state store."""

    def __init__(
        self, state: StateStore | str | os.PathLike[str], *, clock: Clock | None = None
    ) -> None:
        # A path is the SQLite state file of a one-host hub (tools and tests).
        self._state = state_of(state)
        # The command line makes keys without a hub: the system clock then. The cache's
        # ages are monotonic (time.monotonic): a wall-clock step must not keep a revoked
        # key alive.
        self._clock: Clock = clock or SystemClock()
        self._cache: dict[str, tuple[float, ApiKey | None, str]] = {}

    def create(self, brand: str, name: str, scopes: Iterable[str]) -> tuple[ApiKey, str]:
        """A new key for ``brand``; returns it and the token (shown only this once)."""
        brand = check_brand(brand)
        chosen = check_scopes(scopes)
        if not 1 <= len(name) <= 64 or not name.isprintable():
            raise AuthError(
                "key names are 1-64 printable characters", reason="bad_name", status=400
            )
        key_id = secrets.token_hex(6)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        now = self._clock.now_ms()
        with self._state.transaction() as tx:
            tx.insert(
                "api_keys",
                {
                    "key_id": key_id,
                    "brand": brand,
                    "name": name,
                    "scopes": ",".join(sorted(chosen)),
                    "secret_hash": _hash(secret),
                    "created_ms": now,
                    "revoked": 0,
                },
            )
        return ApiKey(key_id, brand, name, chosen, now, False), f"tsk_{key_id}_{secret}"

    def authenticate(self, token: str) -> ApiKey:
        """The key ``token`` belongs to; raise AuthError (401) if it is not a valid key."""
        match = _TOKEN.match(token)
        if match is None:
            raise AuthError("malformed API key (expected tsk_<id>_<secret>)", reason="bad_key")
        key_id, secret = match.groups()
        cached = self._cache.get(key_id)
        if cached is None or time.monotonic() - cached[0] > _CACHE_S:
            if len(self._cache) >= _CACHE_MAX:
                # Random key ids from a scanner must not grow this without bound.
                self._cache.clear()
            cached = (time.monotonic(), *self._load(key_id))
            self._cache[key_id] = cached
        _, key, secret_hash = cached
        if key is None or not hmac.compare_digest(secret_hash, _hash(secret)):
            raise AuthError("unknown API key", reason="bad_key")
        if key.revoked:
            raise AuthError(f"API key {key_id} was revoked", reason="revoked_key")
        return key

    def _load(self, key_id: str) -> tuple[ApiKey | None, str]:
        with self._state.transaction(readonly=True) as tx:
            row = tx.execute(
                "SELECT brand, name, scopes, secret_hash, created_ms, revoked FROM api_keys "
                "WHERE key_id=?",
                (key_id,),
            ).fetchone()
        if row is None:
            return None, ""
        key = ApiKey(key_id, row[0], row[1], frozenset(row[2].split(",")), row[4], bool(row[5]))
        return key, row[3]

    def list(self, brand: str) -> list[ApiKey]:
        """Every key of ``brand`` (revoked ones included), oldest first."""
        with self._state.transaction(readonly=True) as tx:
            rows = tx.execute(
                "SELECT key_id, name, scopes, created_ms, revoked FROM api_keys WHERE brand=? "
                "ORDER BY created_ms, key_id",
                (brand,),
            ).fetchall()
        return [
            ApiKey(r[0], brand, r[1], frozenset(r[2].split(",")), r[3], bool(r[4])) for r in rows
        ]

    def revoke(self, brand: str, key_id: str) -> ApiKey:
        """Revoke one of ``brand``'s keys (AuthError 404 if it has no such key)."""
        with self._state.transaction() as tx:
            changed = tx.execute(
                "UPDATE api_keys SET revoked=1 WHERE brand=? AND key_id=?", (brand, key_id)
            ).rowcount
        if changed == 0:
            raise AuthError(
                f"brand {brand} has no key {key_id!r}", reason="unknown_key", status=404
            )
        self._cache.pop(key_id, None)
        key, _ = self._load(key_id)
        assert key is not None
        return key

    # -- audit -------------------------------------------------------------------------
    def audit(self, brand: str, key_id: str, method: str, route: str, status: int) -> None:
        """Record one request (route is the template, e.g. ``.../twins/{twin}``)."""
        row = {
            "ts_ms": self._clock.now_ms(),
            "brand": brand,
            "key_id": key_id,
            "method": method,
            "route": route,
            "status": status,
        }
        with self._state.transaction() as tx:
            tx.insert("audit", row)

    def audit_log(self, brand: str, limit: int = _AUDIT_MAX_ROWS) -> builtins.list[dict[str, Any]]:
        """The newest ``limit`` audit rows of ``brand``, newest first."""
        with self._state.transaction(readonly=True) as tx:
            rows = tx.execute(
                "SELECT ts_ms, key_id, method, route, status FROM audit WHERE brand=? "
                "ORDER BY id DESC LIMIT ?",
                (brand, min(limit, _AUDIT_MAX_ROWS)),
            ).fetchall()
        return [
            {"ts_ms": r[0], "key_id": r[1], "method": r[2], "route": r[3], "status": r[4]}
            for r in rows
        ]
