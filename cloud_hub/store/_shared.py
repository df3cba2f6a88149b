"""Hub state every instance shares through the registry's SQLite file, held in memory.

Tombstones (erasure), field blocks (objection, suppression) and twin aliases (key
rotation) are written by whichever instance served the request and must reach every
instance's ingest within ``refresh_s``: each keeps a view of its table, re-read at most
that often, and a ``generation`` that grows whenever the view changed, so batches built
before a change can be re-checked just before they are written.
"""

from __future__ import annotations

import sqlite3
import time
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from ._sqlite import connect

__all__ = ["SharedView"]

T = TypeVar("T")


class SharedView(ABC, Generic[T]):
    """A table in the shared SQLite file and this instance's view of it."""

    #: the table(s), created if missing
    SCHEMA: ClassVar[str]

    def __init__(self, db_path: Path, refresh_s: float = 1.0) -> None:
        self._db_path = Path(db_path)
        self.refresh_s = refresh_s
        #: bumped whenever the view changed (batches built before are re-checked)
        self.generation = 0
        self._loaded_at = -1.0
        self._db_path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(self.SCHEMA)
        self._view: T = self._read()
        self._loaded_at = time.monotonic()

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect(self._db_path)

    @abstractmethod
    def _load(self, db: sqlite3.Connection) -> T:
        """The view, from the table."""

    def _read(self) -> T:
        with self._connect() as db:
            return self._load(db)

    def _changed(self) -> None:
        """Called after the view changed (for owners that track more than one view)."""

    def refresh(self) -> None:
        """Re-read the table now."""
        view = self._read()
        if view != self._view:
            self._view = view
            self.generation += 1
            self._changed()
        self._loaded_at = time.monotonic()

    @property
    def view(self) -> T:
        """The view, re-read if it is older than ``refresh_s`` (other instances' changes
        count too)."""
        if time.monotonic() - self._loaded_at > self.refresh_s:
            self.refresh()
        return self._view
