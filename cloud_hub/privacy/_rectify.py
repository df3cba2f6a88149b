"""Rectification and "edit my twin" (GDPR Art. 16, 18): the customer corrects or
suppresses fields of their twin.

A request is checked against the catalog before anything changes
(cloud_hub.privacy._twin_edits). ``set`` stores a customer-asserted value of a usage
field beside the devices' readings:
a point from the source ``_customer`` (never a valid device id, so provenance is plain)
stamped with an HLC of now, so the merge rule (latest HLC wins) serves it until a device
reports a newer reading. Counters cannot be set (they are sums of what devices counted)
and neither can features or predictions (object to profiling, or suppress them).

``suppress`` stops a field for good for the customer's twins: a field block
(cloud_hub.privacy._objection) drops it at ingest on every instance and hides it from reads, the
devices get a hub-signed :class:`~protocol.ConsentCommand` naming it, and its stored
points are removed. InfluxDB 1.x deletes points, not fields, so removal is a journaled
job per (twin, field) in the state store:

1. ``staged``: the points holding the field, and any other field sharing such a point
   (as line protocol to write back), are recorded in one transaction;
2. those points are deleted (idempotent), then the job is ``deleted``; the field leaves
   the twin query index;
3. the recorded other fields are written back (idempotent: same series and time), a
   count checks the field is gone, and the job is ``done``.

A hub that dies anywhere resumes unfinished jobs at start-up (:meth:`Rectifier.resume`)
from their recorded state; a lease keeps two instances off one job (``StateStore.claim``:
the job's ``lease_ms`` is pushed forward by whoever takes it, and renewed while it runs).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from cloud_hub._errors import CloudHubError, IncompleteError, RequestError, StoreError
from cloud_hub.store import (
    MEASUREMENT_OF,
    InfluxStore,
    StateStore,
    TwinIndex,
    format_value,
    parse_twin_lines,
    quote_ident,
    quote_str,
    typed_value,
)
from protocol import (
    FIELDS,
    Clock,
    ValueType,
)

from ._commands import DeviceCommands
from ._index_gate import index_gate
from ._ledger import RequestLedger
from ._objection import FieldBlocks
from ._points import twin_points_where
from ._subjects import Subjects
from ._twin_edits import Rectification, customer_lines, field_command

__all__ = ["Rectifier"]

log = logging.getLogger("cloud_hub.rectify")

#: a job's lease, renewed while it runs: a job whose instance died is taken over after it
_LEASE_MS = 10_000
_DELETE_CHUNK = 200


class Rectifier:
    """Customer-asserted values, suppressions and the journaled field removal."""

    def __init__(
        self,
        *,
        state: StateStore,
        subjects: Subjects,
        ledger: RequestLedger,
        blocks: FieldBlocks,
        commands: DeviceCommands,
        store: InfluxStore,
        index: TwinIndex,
        clock: Clock,
    ) -> None:
        self._state = state
        self._index = index
        self._subjects = subjects
        self._ledger = ledger
        self._blocks = blocks
        self._commands = commands
        self._store = store
        self._clock = clock

    async def rectify(self, brand: str, subject: str, request: Rectification) -> dict[str, Any]:
        """Apply a checked request (:func:`parse_rectification`); return the signed receipt.

        ``restore`` lifts suppressions: collection resumes on the devices (what was
        removed stays removed).

        Raises RequestError: ``unknown_brand``, ``bad_subject``, ``field_suppressed``
        (409: a value for a field the customer suppressed); IncompleteError
        ``rectification_incomplete``."""
        blocks, commands = self._blocks, self._commands
        values, suppress, restore = request.values, request.suppress, request.restore
        twins = self._subjects.twins(brand, subject)
        hidden = {f for t in twins for f in blocks.hidden(brand, t)}
        if hidden & set(values):
            raise RequestError(
                f"{', '.join(sorted(hidden & set(values)))}: suppressed by the customer",
                reason="field_suppressed",
                status=409,
            )
        received = self._clock.now_ms()
        request_id = await asyncio.to_thread(self._ledger.open, brand, "rectification", received)
        if values:
            # The twin id devices use now: the newest key epoch's.
            current = max(twins, key=lambda t: int(t.split("-", 1)[0]))
            lines = customer_lines(brand, current, values, received)
            await self._store.write(lines)
            # Into the twin query index like any written value (a block since is respected).
            await asyncio.to_thread(
                self._index.apply, parse_twin_lines(lines), admit=index_gate(None)
            )
        if restore:
            for name in restore:
                await asyncio.to_thread(blocks.lift, brand, twins, name)
            command = field_command(twins, (), restore, request_id, received)
            commands.broadcast(brand, "consent", command, received)
        removed = 0
        if suppress:
            for name in suppress:
                await asyncio.to_thread(blocks.add, brand, twins, name, request_id, received)
            command = field_command(twins, suppress, (), request_id, received)
            commands.broadcast(brand, "consent", command, received)
            # Every instance re-reads blocks within refresh_s; after that nobody writes them.
            await asyncio.sleep(blocks.refresh_s + 0.2)
            for twin in twins:
                for name in suppress:
                    removed += await self.remove_field(brand, twin, name, request_id)
        body = {
            "request_id": request_id,
            "kind": "rectification",
            "brand": brand,
            "twins": twins,
            "received_ms": received,
            "completed_ms": self._clock.now_ms(),
            "set": sorted(values),
            "suppressed": sorted(suppress),
            "restored": sorted(restore),
            "points_removed": removed,
            "points_left": 0,
        }
        receipt = await asyncio.to_thread(self._ledger.finish, body, "rectification")
        log.info("rectification %s of brand %s: %d point(s) removed", request_id, brand, removed)
        return receipt

    # -- the journaled removal -------------------------------------------------------------
    async def remove_field(self, brand: str, twin: str, field: str, request_id: str) -> int:
        """Remove every stored point of ``field`` of ``twin``; return how many held it."""
        job, found = await self.stage(brand, twin, field, request_id)
        if job is not None:
            await self.run(job)
        return found

    async def stage(
        self, brand: str, twin: str, field: str, request_id: str
    ) -> tuple[str | None, int]:
        """Step 1: journal the points to delete and what to write back; return the job id
        (None when nothing holds the field) and the number of points."""
        measurement = MEASUREMENT_OF[field]
        results = await self._store.query(
            f"SELECT * FROM {quote_ident(measurement)} WHERE {twin_points_where(brand, [twin])} "
            "GROUP BY *"
        )
        points: list[list[Any]] = []
        keep: list[str] = []
        for series in results[0].get("series", []) or []:
            tags = series["tags"]
            prefix = ",".join(f"{k}={v}" for k, v in sorted(tags.items()) if v)
            columns = series["columns"]
            for row in series["values"]:
                values = dict(zip(columns, row, strict=True))
                if values.get(field) is None:
                    continue
                points.append([tags["device"], row[0]])
                others = [
                    f"{name}={_format(name, value)}"
                    for name, value in values.items()
                    if name not in ("time", field) and value is not None
                ]
                if others:
                    keep.append(f"{measurement},{prefix} {','.join(others)} {row[0]}")
        if not points:
            return None, 0
        job = uuid.uuid4().hex
        row = {
            "id": job,
            "request_id": request_id,
            "brand": brand,
            "twin": twin,
            "field": field,
            "state": "staged",
            "points": json.dumps(points),
            "keep": json.dumps(keep),
        }
        await asyncio.to_thread(self._insert, row)
        return job, len(points)

    def _insert(self, row: dict[str, object]) -> None:
        with self._state.transaction() as tx:
            tx.insert("rewrite_jobs", row)

    async def run(self, job: str) -> bool:
        """Steps 2-3 of ``job`` from its recorded state; False if another instance holds
        it. Raises IncompleteError if the field is still there afterwards."""
        row = await asyncio.to_thread(self._claim, job)
        if row is None:
            return False
        brand, twin, field, state, points, keep = row
        measurement = quote_ident(MEASUREMENT_OF[field])
        base = twin_points_where(brand, [twin])
        if state == "staged":
            deletes = [
                f'DELETE FROM {measurement} WHERE {base} AND "device" = {quote_str(d)} '
                f"AND time = {t}"
                for d, t in json.loads(points)
            ]
            for i in range(0, len(deletes), _DELETE_CHUNK):
                await asyncio.to_thread(self._renew, job)
                await self._store.query(";".join(deletes[i : i + _DELETE_CHUNK]), write=True)
            await asyncio.to_thread(self._set_state, job, "deleted")
        # The field leaves the twin query index with its points (also when resumed).
        await asyncio.to_thread(self._index.drop_fields, brand, [twin], [field])
        await asyncio.to_thread(self._renew, job)
        await self._store.write(json.loads(keep))
        results = await self._store.query(
            f"SELECT count({quote_ident(field)}) FROM {measurement} WHERE {base}"
        )
        left = sum(v for s in results[0].get("series", []) or [] for v in s["values"][0][1:])
        if left:
            # A write that was on the wire before every instance knew the block: go again.
            await asyncio.to_thread(self._set_state, job, "failed")
            raise IncompleteError(
                f"{left} point(s) of a suppressed field are still stored; retry the request",
                reason="rectification_incomplete",
            )
        await asyncio.to_thread(self._set_state, job, "done")
        return True

    async def keep_resuming(self) -> None:
        """Forever: finish the jobs a stopped instance left, once their lease lapsed
        (at start-up, and every half lease after). Cancel to stop."""
        delay = 0.2
        while True:
            try:
                await self.resume()
                delay = _LEASE_MS / 2000
            except StoreError as exc:
                log.warning("resuming field removals failed (retry in %.1fs): %s", delay, exc)
                delay = min(delay * 2, _LEASE_MS / 2000)
            await asyncio.sleep(delay)

    async def resume(self) -> int:
        """Finish the jobs a stopped instance left; return how many were run."""
        jobs = await asyncio.to_thread(self._unfinished)
        done = 0
        for job in jobs:
            try:
                done += await self.run(job)
            except CloudHubError as exc:
                log.warning("field removal %s not finished: %s", job, exc)
        if done:
            log.info("resumed %d unfinished field removal(s)", done)
        return done

    def _unfinished(self) -> list[str]:
        with self._state.transaction(readonly=True) as tx:
            return [
                str(r[0])
                for r in tx.execute(
                    "SELECT id FROM rewrite_jobs WHERE state IN ('staged', 'deleted') ORDER BY id"
                )
            ]

    def _claim(self, job: str) -> tuple[str, str, str, str, str, str] | None:
        """Take ``job`` unless another instance holds its lease (or it is finished)."""
        rows = self._state.claim(
            "rewrite_jobs",
            lease_column="lease_ms",
            now_ms=self._clock.now_ms(),
            lease_ms=_LEASE_MS,
            columns=["brand", "twin", "field", "state", "points", "keep"],
            where="id = ? AND state IN ('staged', 'deleted')",
            params=(job,),
        )
        if not rows:
            return None
        _id, brand, twin, field, state, points, keep = (str(v) for v in rows[0])
        return brand, twin, field, state, points, keep

    def _renew(self, job: str) -> None:
        with self._state.transaction() as tx:
            tx.execute(
                "UPDATE rewrite_jobs SET lease_ms = ? WHERE id = ?",
                (self._clock.now_ms() + _LEASE_MS, job),
            )

    def _set_state(self, job: str, state: str) -> None:
        with self._state.transaction() as tx:
            # Done or failed: the point list is no longer needed (nor kept as evidence).
            if state in ("done", "failed"):
                tx.execute(
                    "UPDATE rewrite_jobs SET state=?, points='[]', keep='[]', lease_ms=0 "
                    "WHERE id=?",
                    (state, job),
                )
            else:
                tx.execute("UPDATE rewrite_jobs SET state=? WHERE id=?", (state, job))


def _format(name: str, value: object) -> str:
    """A field value read back from InfluxDB, in line protocol (typed by the catalog)."""
    if name in FIELDS:
        return format_value(name, value)
    kind: ValueType = (
        "bool" if isinstance(value, bool) else "str" if isinstance(value, str) else "float"
    )
    return typed_value(kind, value)
