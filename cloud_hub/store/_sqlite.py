"""The hub's shared state file (SQLite): one transaction per call.

Every hub instance on a host opens the same file (registry, API keys, tombstones,
requests, rollouts, webhook queue); SQLite's own locking serialises writers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cloud_hub._errors import CloudHubError

__all__ = ["connect"]


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """One transaction on the shared SQLite file (committed unless an exception escapes)."""
    try:
        db = sqlite3.connect(path, timeout=10)
    except sqlite3.Error as exc:
        raise CloudHubError(f"cannot open hub state {path}: {exc}") from exc
    try:
        with db:
            yield db
    finally:
        db.close()
