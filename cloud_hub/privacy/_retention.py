"""Retention per field class: the hub's own sweeps under an InfluxDB policy ceiling.

Each field class (``protocol.FieldClass``) lives in its own measurement
(``cloud_hub.store._lines``), so a class's limit is one ``DELETE FROM <measurement> WHERE
time < now - limit`` (for the brands this hub serves, or the whole measurement when it
serves every brand); the twin query index then drops the same values. InfluxDB 1.x
retention policies are per database, not per measurement, so the policy named
``influx.retention_policy`` is only the database-wide ceiling (``retention.ceiling``),
created or altered at start-up; the sweeps enforce the shorter per-class limits.

Several hub instances share the work through the state store: an instance sweeps a
class only when nobody did for ``sweep_s``; it reads and claims the turn in one
transaction holding the lock ``retention:<class>``, so one instance gets it (and should
two ever both run, the ``DELETE`` is idempotent). The time of the last sweep of each
class is in the store, so every instance reports the same
``twinsync_hub_retention_swept_ms{class}``.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from cloud_hub._config import RetentionSettings, duration_ms
from cloud_hub._errors import StoreError
from cloud_hub._metrics import Metrics
from cloud_hub.store import (
    CLASS_MEASUREMENT,
    InfluxStore,
    StateStore,
    TwinIndex,
    quote_ident,
    quote_str,
)
from protocol import FIELD_CLASSES, FIELDS, Clock, FieldClass

__all__ = ["RetentionSweeper", "ensure_ceiling"]

log = logging.getLogger("cloud_hub.retention")


async def ensure_ceiling(store: InfluxStore, policy: str, ceiling: str) -> None:
    """Create or alter retention policy ``policy`` to keep ``ceiling`` (idempotent).

    CREATE refuses an existing policy with other settings, so ALTER follows it; both are
    safe to repeat from every instance. InfluxDB expects ``h``/``d``/``w`` as we do.
    """
    duration_ms(ceiling)  # validated by the config; guards direct callers too
    db = quote_ident(store.settings.database)
    name = quote_ident(policy)
    try:
        await store.query(
            f"CREATE RETENTION POLICY {name} ON {db} DURATION {ceiling} REPLICATION 1",
            write=True,
        )
    except StoreError as exc:
        if "already exists" not in str(exc):
            raise
    await store.query(f"ALTER RETENTION POLICY {name} ON {db} DURATION {ceiling}", write=True)


class RetentionSweeper:
    """Deletes points of each field class older than its limit, every ``sweep_s``."""

    def __init__(
        self,
        settings: RetentionSettings,
        *,
        state: StateStore,
        store: InfluxStore,
        index: TwinIndex,
        clock: Clock,
        metrics: Metrics,
        brands: list[str],
    ) -> None:
        self._limits = settings.limits_ms()
        self._index = index
        self._interval_ms = int(settings.sweep_s * 1000)
        self._store = store
        self._state = state
        self._clock = clock
        self._metrics = metrics
        self._brands = list(brands)

    async def run(self) -> None:
        """Sweep what is due, forever; cancel to stop. A failed sweep (InfluxDB down) is
        logged and retried at the next turn: retention is late, never lost."""
        if not self._limits:
            await asyncio.Event().wait()  # no class has a limit: nothing ever to do
        while True:
            try:
                await self.sweep_due()
            except StoreError as exc:
                # (The state store away raises out of here: the supervisor restarts the
                # loop, logging it, as every loop's state-store trouble.)
                log.warning("retention sweep failed (next try in %.0fs): %s", self.wait_s, exc)
            await asyncio.sleep(self.wait_s)

    @property
    def wait_s(self) -> float:
        """Seconds between checks: a tenth of the interval, so a turn another instance
        left is taken soon, and at least every minute."""
        return min(self._interval_ms / 10_000, 60.0)

    async def sweep_due(self) -> list[FieldClass]:
        """Sweep every class whose turn came (none swept it for ``sweep_s``); return them."""
        swept: list[FieldClass] = []
        try:
            for cls in FIELD_CLASSES:
                if cls not in self._limits:
                    continue
                previous = await asyncio.to_thread(self._claim, cls)
                if previous is None:
                    continue  # another instance swept it within the interval
                try:
                    await self.sweep(cls)
                except BaseException:
                    # Give the turn back, so this or another instance retries soon.
                    await asyncio.to_thread(self._done, cls, previous)
                    raise
                swept.append(cls)
        finally:
            await asyncio.to_thread(self._report)
        return swept

    async def sweep(self, cls: FieldClass) -> None:
        """Delete ``cls`` points older than its limit now, and record when."""
        now = self._clock.now_ms()
        cutoff_ns = (now - self._limits[cls]) * 1_000_000
        measurement = quote_ident(CLASS_MEASUREMENT[cls])
        wheres = [f'"brand" = {quote_str(b)} AND ' for b in self._brands] or [""]
        await self._store.query(
            ";".join(f"DELETE FROM {measurement} WHERE {w}time < {cutoff_ns}" for w in wheres),
            write=True,
        )
        # The twin query index drops the same values, a chunk of twins per transaction.
        fields = [name for name, spec in FIELDS.items() if spec.field_class == cls]
        cutoff_ms = now - self._limits[cls]
        for brand in self._brands or await asyncio.to_thread(self._index.brands):
            after: str | None = ""
            while after is not None:
                after = await asyncio.to_thread(
                    functools.partial(self._index.expire, brand, fields, cutoff_ms, after=after)
                )
        await asyncio.to_thread(self._done, cls, now)
        log.info("retention: %s points older than %d ms deleted", cls, self._limits[cls])

    def _claim(self, cls: str) -> int | None:
        """Take this class's turn unless another instance swept it within the interval;
        return the previous sweep time (0 if never), or None when it is not our turn.
        The claim moves ``swept_ms`` forward so the others skip it; a crash before the
        sweep finishes only delays it by one interval."""
        now = self._clock.now_ms()
        with self._state.transaction() as tx:
            tx.lock(f"retention:{cls}")  # read and claim as one step among instances
            row = tx.execute(
                "SELECT swept_ms FROM retention_sweeps WHERE class = ?", (cls,)
            ).fetchone()
            previous = 0 if row is None else int(row[0])
            if row is not None and previous > now - self._interval_ms:
                return None
            tx.upsert("retention_sweeps", [{"class": cls, "swept_ms": now}], key=["class"])
            return previous

    def _done(self, cls: str, when: int) -> None:
        with self._state.transaction() as tx:
            tx.execute("UPDATE retention_sweeps SET swept_ms = ? WHERE class = ?", (when, cls))

    def _report(self) -> None:
        for cls, swept_ms in self.last_swept().items():
            self._metrics.set("twinsync_hub_retention_swept_ms", swept_ms, **{"class": cls})

    def last_swept(self) -> dict[str, int]:
        """Field class -> Unix ms of its last sweep by any instance."""
        with self._state.transaction(readonly=True) as tx:
            rows = tx.execute("SELECT class, swept_ms FROM retention_sweeps").fetchall()
        return {str(cls): int(swept_ms) for cls, swept_ms in rows}
