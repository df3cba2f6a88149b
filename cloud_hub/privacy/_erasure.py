"""Erasure (GDPR Art. 17): delete a customer's twin for good, with a verifiable receipt.

The brand backend names the customer by the identifier it knows; the hub recomputes the
twin id under every key epoch it holds for the brand (cloud_hub.privacy._subjects: there
is no lookup table from twins back to people) and then:

1. records a **tombstone** per twin id in the state store (with the request, and without
   the twins' field blocks, in one transaction): from then on every hub instance drops
   ops for that twin, from any device, whatever their timestamp (an outbox that was
   offline during the erasure cannot bring it back), and filters them out of batches
   built before it learnt of the tombstone, just before writing (cloud_hub.privacy._policy);
2. broadcasts a signed tombstone to every device of the brand (they drop the twins'
   state and unsent ops and store nothing for them again);
3. waits until every instance has learnt of it (``refresh_s``), deletes the twin's series
   from InfluxDB, and checks, deleting again if a write that was already on the wire
   landed meanwhile, until no point is left; then removes the twins from the twin query
   index (cloud_hub.store.TwinIndex, which a batch checked before the tombstone cannot
   bring back: cloud_hub.privacy._index_gate);
4. answers with a **receipt** signed by the hub's Ed25519 key: request id, brand, twin ids,
   when, points found and points left (0). Anyone with the hub's public key can check it
   (cloud_hub.privacy._ledger).

The raw identifier is used in memory to compute the pseudonyms and is never stored or
logged; requests are recorded with their deadline (one month) and completion time.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from cloud_hub._errors import IncompleteError
from cloud_hub.store import (
    TWIN_MEASUREMENTS,
    Experiments,
    InfluxStore,
    SharedView,
    StateStore,
    TwinIndex,
    Tx,
)
from protocol import Clock

from ._commands import DeviceCommands
from ._ledger import RequestLedger
from ._objection import FieldBlocks
from ._points import delete_until_gone, twin_points_where
from ._subjects import Subjects

__all__ = ["Erasures", "Tombstones"]

log = logging.getLogger("cloud_hub.erasure")


class Tombstones(SharedView[dict[str, frozenset[str]]]):
    """Erased twin ids of every brand (shared state store), as ingestion asks them.

    Its ``generation`` grows whenever a tombstone appeared (cloud_hub.privacy._policy
    re-checks batches built before)."""

    WHAT = "tombstones"
    STAMP = "view:tombstones"

    def _load(self, tx: Tx) -> dict[str, frozenset[str]]:
        by_brand: dict[str, set[str]] = {}
        for brand, twin in tx.execute("SELECT brand, twin FROM tombstones"):
            by_brand.setdefault(brand, set()).add(twin)
        return {b: frozenset(t) for b, t in by_brand.items()}

    def erased(self, brand: str) -> frozenset[str]:
        """Tombstoned twin ids of ``brand`` (re-read from the store at least every
        ``refresh_s``, so other instances' erasures count too)."""
        return self.view.get(brand, frozenset())

    def is_erased(self, brand: str, twin: str) -> bool:
        """Whether ``twin`` of ``brand`` is tombstoned (see :meth:`erased`)."""
        return twin in self.erased(brand)

    def holds(self, brand: str, twin: str) -> bool:
        """Whether the view as it is now (not re-read) tombstones ``twin``: for batches
        re-checked right after the view changed."""
        return twin in self._view.get(brand, ())

    @staticmethod
    def add_in(tx: Tx, brand: str, twins: list[str], request_id: str, erased_ms: int) -> None:
        """Tombstone ``twins`` within the caller's transaction (then :meth:`refresh`); a
        twin erased before keeps its first tombstone."""
        tx.insert_ignore(
            "tombstones",
            [
                {"brand": brand, "twin": t, "erased_ms": erased_ms, "request_id": request_id}
                for t in twins
            ],
        )
        Tombstones.changed_in(tx)


class Erasures:
    """The erasure procedure (module docstring)."""

    def __init__(
        self,
        *,
        state: StateStore,
        tombstones: Tombstones,
        blocks: FieldBlocks,
        subjects: Subjects,
        ledger: RequestLedger,
        commands: DeviceCommands,
        store: InfluxStore,
        index: TwinIndex,
        clock: Clock,
    ) -> None:
        self._state = state
        self._index = index
        self._tombstones = tombstones
        #: per-twin blocked fields (an erased twin's are dropped with it)
        self.blocks = blocks
        self._subjects = subjects
        self._ledger = ledger
        self._commands = commands
        self._store = store
        self._clock = clock

    async def erase(self, brand: str, subject: str) -> dict[str, Any]:
        """Erase the subject's twins; return the signed receipt.

        Raises RequestError (``unknown_brand``, ``bad_subject``), IncompleteError
        (``erasure_incomplete``: retry)."""
        twins = self._subjects.twins(brand, subject)
        request_id = uuid.uuid4().hex
        received = self._clock.now_ms()
        await asyncio.to_thread(self._record, brand, twins, request_id, received)
        self._commands.tombstones(brand, twins, request_id, received)
        # Every instance re-reads tombstones within refresh_s; after that nobody writes them.
        await asyncio.sleep(self._tombstones.refresh_s + 0.2)
        where = twin_points_where(brand, twins)
        # Every field class's measurement. DELETE also drops the twin's series from the
        # index; InfluxDB 1.x keeps their tag values until an offline index rebuild (DROP
        # SERIES does not change that): docs/privacy.md, "Erasure";
        # tests/hub/test_influx_index.py.
        found, left = await delete_until_gone(self._store, TWIN_MEASUREMENTS, where)
        # The twin's consent history goes with it (the request record remains).
        await self._store.query(f'DELETE FROM "consent" WHERE {where}', write=True)
        # And its rows in the twin query index (after InfluxDB's: an index row is never
        # the only trace of what InfluxDB still holds, but always gone with the twin).
        await asyncio.to_thread(self._index.erase, brand, twins)
        if left:
            raise IncompleteError(
                f"{left} points of the erased twins are still in InfluxDB; retry the request",
                reason="erasure_incomplete",
            )
        body = {
            "request_id": request_id,
            "kind": "erasure",
            "brand": brand,
            "twins": twins,
            "received_ms": received,
            "completed_ms": self._clock.now_ms(),
            "points_found": found,
            "points_left": 0,
        }
        receipt = await asyncio.to_thread(self._ledger.finish, body, "erasure")
        log.info("erasure %s of brand %s: %d points deleted", request_id, brand, found)
        return receipt

    def _record(self, brand: str, twins: list[str], request_id: str, received: int) -> None:
        # One transaction: a request on record always has its tombstones, and the other
        # way round.
        with self._state.transaction() as tx:
            self._tombstones.add_in(tx, brand, twins, request_id, received)
            self.blocks.forget_in(tx, brand, twins)
            Experiments.forget(tx, brand, twins)  # an erased twin leaves every experiment
            self._ledger.open_in(tx, request_id, brand, "erasure", received)
        self._tombstones.refresh()
