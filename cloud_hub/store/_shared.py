"""Hub state every instance shares through the state store, held in memory.

Tombstones (erasure), field blocks (objection, suppression) and twin aliases (key
rotation) are written by whichever instance served the request and must reach every
instance's ingest within ``refresh_s``: each keeps a view of its table, re-read at most
that often, and a ``generation`` that grows whenever the view changed, so batches built
before a change can be re-checked just before they are written.

Every writer of a view's tables moves the view's stamp on in the same transaction
(:meth:`SharedView.changed_in`: a counter row in ``registry_meta``), so a look at the
store reads one row, and the tables only when the stamp moved. In a hub,
:meth:`SharedView.follow` looks in a thread several times per ``refresh_s``, so ingest
and the API read the view from memory and the event loop never waits for the database.
When the store is down the view goes stale, and a stale view is not used:
:attr:`SharedView.view` raises ``StateUnavailableError`` (fail closed: ingest stops and
retries rather than write a twin another instance erased meanwhile). Without a follower
(the command line, tests) a stale view is re-read where it is asked for.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from abc import ABC, abstractmethod
from typing import ClassVar, Generic, TypeVar

from ._state import StateStore
from ._state_errors import StateStoreError, StateUnavailableError
from ._state_tx import Tx

__all__ = ["SharedView"]

log = logging.getLogger("cloud_hub.state")

T = TypeVar("T")

#: a follower re-reads this many times per ``refresh_s``
_FOLLOW_PER_REFRESH = 4


class SharedView(ABC, Generic[T]):
    """A table in the state store and this instance's view of it."""

    #: what the view holds, for messages ("tombstones")
    WHAT = "shared state"
    #: the ``registry_meta`` row every writer of the view's tables moves on
    STAMP: ClassVar[str]

    def __init__(self, state: StateStore, refresh_s: float = 1.0) -> None:
        self._state = state
        self.refresh_s = refresh_s
        #: bumped whenever the view changed (batches built before are re-checked)
        self.generation = 0
        self._lock = threading.Lock()
        self._following = False
        #: the last re-read's failure (None once one succeeds)
        self._failure: StateStoreError | None = None
        #: monotonic start of the re-read under way, if one is
        self._reading_since: float | None = None
        read = self._read(None)
        assert read is not None
        self._stamp, self._view = read
        self._loaded_at = time.monotonic()

    @abstractmethod
    def _load(self, tx: Tx) -> T:
        """The view, from the table (in a read-only transaction)."""

    @classmethod
    def changed_in(cls, tx: Tx) -> None:
        """Say, in the writer's own transaction, that the view's tables changed: every
        instance re-reads them at its next look."""
        tx.upsert(
            "registry_meta",
            [{"name": cls.STAMP, "value": 1}],
            key=["name"],
            update={"value": "registry_meta.value + 1"},
        )

    def _read(self, known: int | None) -> tuple[int, T] | None:
        """(stamp, view), or None when the stamp is still ``known``. The stamp is read
        first: a change committed between the two reads is then read again next time,
        never missed."""
        with self._state.transaction(readonly=True) as tx:
            stamp = tx.execute(
                "SELECT value FROM registry_meta WHERE name = ?", (self.STAMP,)
            ).scalar()
            stamp = 0 if stamp is None else int(stamp)
            if stamp == known:
                return None
            return stamp, self._load(tx)

    def _changed(self) -> None:
        """Called after the view changed (for owners that track more than one view)."""

    def refresh(self) -> None:
        """Look now, re-reading the tables if their stamp moved (blocking: call it in a
        thread from async code). Raises StateStoreError when the store cannot answer; the
        view then stays as it was."""
        self._reading_since = time.monotonic()
        try:
            read = self._read(self._stamp)
        except StateStoreError as exc:
            self._failure = exc
            raise
        finally:
            self._reading_since = None
        with self._lock:
            self._failure = None
            if read is not None:
                self._stamp, view = read
                if view != self._view:
                    self._view = view
                    self.generation += 1
                    self._changed()
            self._loaded_at = time.monotonic()

    @property
    def stamp(self) -> int:
        """The stamp the view was last read at (it only grows): a writer that must know
        whether the tables changed since compares it with the stamp row in its own
        transaction (cloud_hub.privacy's index gate)."""
        return self._stamp

    @property
    def fresh(self) -> bool:
        """Whether the last re-read succeeded and was recent (a few ``refresh_s``): what
        readiness reports of the state store, without asking it."""
        age = time.monotonic() - self._loaded_at
        return self._failure is None and age <= self.refresh_s * _FOLLOW_PER_REFRESH

    @property
    def view(self) -> T:
        """The view, never older than ``refresh_s`` (other instances' changes count too).

        Raises StateUnavailableError when it is older and its follower cannot re-read it
        (the store is down or hangs): a stale view could let through what another
        instance has since forbidden."""
        now = time.monotonic()
        age = now - self._loaded_at
        if age <= self.refresh_s:
            return self._view
        if self._following:
            since = self._reading_since
            hanging = since is not None and now - since > self.refresh_s / 2
            if self._failure is not None or hanging:
                raise StateUnavailableError(
                    f"this instance's {self.WHAT} were last read {age:.1f}s ago and cannot be "
                    f"re-read now ({self._failure or 'the state store does not answer'}); "
                    "retrying"
                )
        self.refresh()  # the follower is late (or there is none): read here
        return self._view

    async def follow(self) -> None:
        """Re-read the view in a thread several times per ``refresh_s``, until cancelled.
        A failed re-read is logged (once per outage) and retried."""
        self._following = True
        down = False
        try:
            while True:
                try:
                    await asyncio.to_thread(self.refresh)
                    if down:
                        log.info("%s re-read again: the state store is back", self.WHAT)
                    down = False
                except StateStoreError as exc:
                    if not down:
                        log.warning("cannot re-read %s (%s); retrying", self.WHAT, exc)
                    down = True
                await asyncio.sleep(self.refresh_s / _FOLLOW_PER_REFRESH)
        finally:
            self._following = False
