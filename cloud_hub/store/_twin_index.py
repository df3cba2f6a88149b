"""The twin query index: each twin's current state as rows a query can filter and sort.

InfluxDB holds every twin's history; brand backends also need to *find* twins ("churn
risk above 0.7, seen this week, in segment 2 or 3"), which InfluxDB cannot answer over
100,000 twins. The index keeps, per (brand, twin), what InfluxDB's last values say, in
the state store every hub instance shares (tables of migration 3, ``_state_schema``):

- ``twin_fields``: one row per field, its merged value (``num`` for numbers and booleans,
  ``txt`` for text), the HLC and device of the op that set it; the merge rule is
  ``protocol.TwinState``'s: a ``lww`` field keeps the op with the highest ``(hlc, device,
  value)``, a ``counter`` field the sum of each device's latest cumulative total, in
  device order (``twin_counter_parts`` keeps those totals);
- ``twin_index``: one row per twin: ``first_seen_ms`` (the oldest op time taken in),
  ``last_seen_ms`` (the newest op time it holds: the time of its newest value) and
  ``churn_risk`` (the highest of its products' ``<product>.churn_risk``, as the twin
  API's ``scores`` say);
- ``twin_products``: the products a twin holds fields of.

Segments, scores and behaviour tags are fields like any other (``<product>.segment``,
``<product>.churn_risk``, ``<product>.anomalies_total``; a tag is a boolean field
``<product>.tag_<name>``), so a field a newer catalog adds needs no migration.

**Who writes.** Ingest merges each batch once InfluxDB has stored it, in one transaction
(:meth:`TwinIndex.apply`); merging is idempotent and order-free like the twin itself, so
replays, out-of-order deltas and several hub instances give the index InfluxDB's last
values. The customer's rights change it where they change InfluxDB: an erasure removes
the twins (:meth:`erase`), an objection or a suppression their fields
(:meth:`drop_fields`), a key rotation moves a twin (:meth:`move`), retention expires old
values (:meth:`expire`). Those hold the lock ``twin_index:<brand>`` exclusively, ingest
holds it shared, so a change never interleaves with a batch whose rows it must see; and
ingest's ``admit`` step (cloud_hub.privacy's index gate) looks at the privacy tables in
the same transaction, so a batch checked before an erasure is not indexed after it.
Every transaction takes its row locks in one order (counter totals, fields, counter
parts, twins, products; each sorted by key), so two instances never deadlock.

The rows and their SQL: ``_twin_rows``; reading the index: ``_twin_index_read``;
rebuilding it from InfluxDB: ``_twin_index_rebuild``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ._state import StateStore
from ._state_schema import INDEX_COMPLETE
from ._state_tx import marks
from ._twin_rows import (
    COUNTERS,
    Admit,
    IndexOp,
    Observe,
    chunks,
    delete_twins,
    merge,
    recount,
    refresh,
    stored_value,
)

__all__ = ["TwinIndex", "index_lock"]


def index_lock(brand: str) -> str:
    """The lock ingest holds shared and the privacy changes exclusively (module docstring)."""
    return f"twin_index:{brand}"


class TwinIndex:
    """Writes the twin query index (module docstring); thread-safe, blocking: call it
    through ``asyncio.to_thread`` from async code."""

    def __init__(self, *, state: StateStore) -> None:
        self._state = state

    # -- ingest --------------------------------------------------------------------------
    def apply(
        self,
        ops: Sequence[IndexOp],
        *,
        admit: Admit | None = None,
        observe: Observe | None = None,
    ) -> int:
        """Merge ``ops`` (values InfluxDB has stored) in one transaction, after ``admit``
        (run inside it) kept what may be indexed; ``observe`` sees the kept ops before
        the merge and what it returns runs after it, in the same transaction (trigger
        events commit with the values that caused them, or not at all); return how many
        ops were taken."""
        if not ops:
            return 0
        # (a kept connection on SQLite: merging touches pages all over large tables)
        with self._state.warm(readonly=False) as tx:
            for brand in sorted({op[0] for op in ops}):
                tx.lock_shared(index_lock(brand))
            kept = admit(tx, list(ops)) if admit is not None else list(ops)
            after = observe(tx, kept) if observe is not None and kept else None
            merge(tx, kept)
            if after is not None:
                after()
        return len(kept)

    # -- the customer's rights, retention, rebuild ----------------------------------------
    def erase(self, brand: str, twins: Sequence[str]) -> None:
        """Remove ``twins`` entirely (erasure, a retired key epoch's twins)."""
        with self._state.transaction() as tx:
            tx.lock(index_lock(brand))
            delete_twins(tx, brand, twins)

    def drop_fields(self, brand: str, twins: Sequence[str], fields: Iterable[str]) -> None:
        """Remove ``fields`` of ``twins`` (objection: every profile field; suppression:
        one field), as InfluxDB no longer holds any of their points."""
        names = sorted(set(fields))
        with self._state.transaction() as tx:
            tx.lock(index_lock(brand))
            for piece in chunks(sorted(set(twins))):
                for table in ("twin_fields", "twin_counter_parts"):
                    tx.execute(
                        f"DELETE FROM {table} WHERE brand = ? AND twin IN "
                        f"({marks(len(piece))}) AND field IN ({marks(len(names))})",
                        (brand, *piece, *names),
                    )
            refresh(tx, brand, twins)

    def move(self, brand: str, old: str, new: str) -> None:
        """Merge twin ``old`` into ``new`` and remove ``old`` (key rotation moved its
        points to the new id: InfluxDB's last values of ``new`` are now those of both)."""
        with self._state.transaction() as tx:
            tx.lock(index_lock(brand))
            rows = tx.execute(
                "SELECT field, device, hlc, num, txt FROM twin_fields WHERE brand = ? "
                "AND twin = ? AND field NOT IN (SELECT field FROM twin_counter_parts "
                "WHERE brand = ? AND twin = ?)",
                (brand, old, brand, old),
            ).fetchall()
            ops: list[IndexOp] = [
                (brand, new, str(d), str(f), int(h), stored_value(str(f), n, t))
                for f, d, h, n, t in rows
            ]
            ops += [
                (brand, new, str(d), str(f), int(h), stored_value(str(f), n, None))
                for f, d, h, n in tx.execute(
                    "SELECT field, device, hlc, num FROM twin_counter_parts "
                    "WHERE brand = ? AND twin = ?",
                    (brand, old),
                )
            ]
            first = tx.execute(
                "SELECT first_seen_ms FROM twin_index WHERE brand = ? AND twin = ?", (brand, old)
            ).scalar()
            delete_twins(tx, brand, [old])
            if ops:
                merge(tx, ops)
            if first is not None:
                tx.execute(
                    "UPDATE twin_index SET first_seen_ms = ? WHERE brand = ? AND twin = ? "
                    "AND first_seen_ms > ?",
                    (first, brand, new, first),
                )

    def expire(
        self,
        brand: str,
        fields: Iterable[str],
        cutoff_ms: int,
        *,
        after: str = "",
        limit: int = 1000,
    ) -> str | None:
        """Retention: remove values of ``fields`` older than ``cutoff_ms`` (InfluxDB's
        sweep deleted their points) for up to ``limit`` twins after twin id ``after``;
        return the last twin id looked at (None: the brand is done). Short transactions,
        so ingest waits for none of them long."""
        names = sorted(set(fields))
        cutoff = cutoff_ms << 16
        with self._state.transaction() as tx:
            tx.lock(index_lock(brand))
            twins = [
                str(r[0])
                for r in tx.execute(
                    "SELECT twin FROM twin_index WHERE brand = ? AND twin > ? ORDER BY twin "
                    "LIMIT ?",
                    (brand, after, limit),
                )
            ]
            if not twins:
                return None
            span = (brand, *twins, *names, cutoff)
            where = (
                f"brand = ? AND twin IN ({marks(len(twins))}) AND field IN "
                f"({marks(len(names))}) AND hlc < ?"
            )
            old = tx.execute(f"SELECT DISTINCT twin FROM twin_fields WHERE {where}", span)
            stale = {str(r[0]) for r in old}
            counters = sorted(
                {
                    (brand, str(t), str(f))
                    for t, f in tx.execute(
                        f"SELECT twin, field FROM twin_counter_parts WHERE {where}", span
                    )
                }
            )
            tx.execute(f"DELETE FROM twin_counter_parts WHERE {where}", span)
            # A counter total's time is its newest part's: recount rather than delete it.
            tx.execute(
                f"DELETE FROM twin_fields WHERE {where} AND field NOT IN ({marks(len(COUNTERS))})",
                (*span, *sorted(COUNTERS)),
            )
            recount(tx, counters)
            refresh(tx, brand, sorted(stale | {t for _b, t, _f in counters}))
        return twins[-1]

    def clear(self, brand: str) -> None:
        """Remove every twin of ``brand`` (the first step of a rebuild)."""
        with self._state.transaction() as tx:
            tx.lock(index_lock(brand))
            for table in ("twin_fields", "twin_counter_parts", "twin_products", "twin_index"):
                tx.execute(f"DELETE FROM {table} WHERE brand = ?", (brand,))

    def lower_first_seen(self, brand: str, first: dict[str, int]) -> None:
        """Move each twin's ``first_seen_ms`` back to the given time where it is later
        (a rebuild: the oldest point InfluxDB still holds)."""
        with self._state.transaction() as tx:
            tx.lock_shared(index_lock(brand))
            tx.executemany(
                "UPDATE twin_index SET first_seen_ms = ? WHERE brand = ? AND twin = ? "
                "AND first_seen_ms > ?",
                [(ms, brand, twin, ms) for twin, ms in sorted(first.items())],
            )

    # -- bookkeeping ----------------------------------------------------------------------
    def brands(self) -> list[str]:
        """Every brand with a twin in the index."""
        with self._state.transaction(readonly=True) as tx:
            return [str(r[0]) for r in tx.execute("SELECT DISTINCT brand FROM twin_index")]

    def complete(self) -> bool:
        """Whether the index holds every twin InfluxDB holds (a fresh store, or rebuilt
        since this hub's index was added or last disabled)."""
        with self._state.transaction(readonly=True) as tx:
            return bool(
                tx.execute(
                    "SELECT value FROM registry_meta WHERE name = ?", (INDEX_COMPLETE,)
                ).scalar()
            )

    def mark_complete(self, complete: bool) -> None:
        """Record whether the index is complete (see :meth:`complete`)."""
        with self._state.transaction() as tx:
            tx.upsert(
                "registry_meta", [{"name": INDEX_COMPLETE, "value": int(complete)}], key=["name"]
            )
