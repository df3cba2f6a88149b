"""Rectification and "edit my twin" (GDPR Art. 16, 18): the customer corrects or
suppresses fields of their twin.

``set`` stores a customer-asserted value of a usage field beside the devices' readings:
a point from the source ``_customer`` (never a valid device id, so provenance is plain)
stamped with an HLC of now, so the merge rule (latest HLC wins) serves it until a device
reports a newer reading. Counters cannot be set (they are sums of what devices counted)
and neither can features or predictions (object to profiling, or suppress them).

``suppress`` stops a field for good for the customer's twins: a field block
(cloud_hub.privacy._objection) drops it at ingest on every instance and hides it from reads, the
devices get a hub-signed :class:`~protocol.ConsentCommand` naming it, and its stored
points are removed. InfluxDB 1.x deletes points, not fields, so removal is a journaled
job per (twin, field) in the shared SQLite file:

1. ``staged``: the points holding the field, and any other field sharing such a point
   (as line protocol to write back), are recorded in one transaction;
2. those points are deleted (idempotent), then the job is ``deleted``;
3. the recorded other fields are written back (idempotent: same series and time), a
   count checks the field is gone, and the job is ``done``.

A hub that dies anywhere resumes unfinished jobs at start-up (:meth:`Rectifier.resume`)
from their recorded state; a lease keeps two instances off one job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloud_hub._errors import CloudHubError, StoreError
from cloud_hub.store import (
    MEASUREMENT_OF,
    InfluxStore,
    connect,
    format_value,
    quote_ident,
    quote_str,
    typed_value,
)
from protocol import (
    CATALOG,
    FIELDS,
    HLC,
    ConsentCommand,
    Scalar,
    SchemaError,
    TwinSyncError,
    ValueType,
    check_signal_value,
)

from ._objection import twin_points_where

if TYPE_CHECKING:
    from ._erasure import Erasures

__all__ = ["CUSTOMER_SOURCE", "Rectification", "Rectifier", "parse_rectification"]

log = logging.getLogger("cloud_hub.rectify")

#: the ``device`` tag of customer-asserted values (device ids start with [a-z0-9])
CUSTOMER_SOURCE = "_customer"
_SIGNAL_OF = {spec.field: spec for spec in CATALOG.values()}
_MAX_FIELDS = 64
#: a job's lease, renewed while it runs: a job whose instance died is taken over after it
_LEASE_MS = 10_000
_DELETE_CHUNK = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rewrite_jobs (
    id          TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL,
    brand       TEXT NOT NULL,
    twin        TEXT NOT NULL,
    field       TEXT NOT NULL,
    state       TEXT NOT NULL,
    points      TEXT NOT NULL,
    keep        TEXT NOT NULL,
    lease_ms    INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class Rectification:
    """A checked request: values to set, fields to suppress, suppressions to lift."""

    values: dict[str, Scalar]
    suppress: tuple[str, ...] = ()
    restore: tuple[str, ...] = ()


def parse_rectification(body: dict[str, Any]) -> Rectification:
    """``set``, ``suppress`` and ``restore`` of a request body, checked against the
    catalog. Raises CloudHubError(reason='bad_rectification') naming the first problem."""

    def bad(message: str) -> CloudHubError:
        return CloudHubError(message, reason="bad_rectification")

    if set(body) - {"subject", "set", "suppress", "restore"}:
        raise bad(
            'send {"subject", "set": {field: value}, "suppress": [field, ...], '
            '"restore": [field, ...]}'
        )
    values = body.get("set", {})
    suppress, restore = body.get("suppress", []), body.get("restore", [])
    if not isinstance(values, dict) or not isinstance(suppress, list):
        raise bad('"set" must be a map of field -> value and "suppress" a list of fields')
    if not isinstance(restore, list):
        raise bad('"restore" must be a list of fields')
    if not values and not suppress and not restore:
        raise bad('nothing to do: give "set", "suppress" or "restore"')
    names = [*values, *suppress, *restore]
    if len(names) > _MAX_FIELDS or len(set(names)) != len(names):
        raise bad(f"at most {_MAX_FIELDS} distinct fields per request, each named once")
    checked: dict[str, Scalar] = {}
    for name, value in values.items():
        spec = FIELDS.get(name)
        signal = _SIGNAL_OF.get(name)
        if spec is None or not spec.shared:
            raise bad(f"unknown twin field {name!r}")
        if spec.merge != "lww" or signal is None or spec.field_class != "usage":
            raise bad(
                f"{name!r} cannot be set: counters are sums of what devices counted and "
                "features or predictions come from models; suppress it instead"
            )
        try:
            checked[name] = check_signal_value(signal, value)
        except SchemaError as exc:
            raise bad(f"{name}: {exc}") from None
    for name in [*suppress, *restore]:
        if not isinstance(name, str) or name not in FIELDS or not FIELDS[name].shared:
            raise bad(f"unknown twin field {name!r}")
    return Rectification(checked, tuple(suppress), tuple(restore))


class Rectifier:
    """Customer-asserted values, suppressions and the journaled field removal."""

    def __init__(self, db_path: Path, store: InfluxStore, erasures: Erasures) -> None:
        self._db_path = Path(db_path)
        self._store = store
        self._erasures = erasures
        self._db_path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect(self._db_path)

    async def rectify(self, brand: str, subject: str, request: Rectification) -> dict[str, Any]:
        """Apply a checked request (:func:`parse_rectification`); return the signed receipt.

        ``restore`` lifts suppressions: collection resumes on the devices (what was
        removed stays removed).

        Raises CloudHubError: ``unknown_brand``, ``field_suppressed`` (a value for a field
        the customer suppressed), ``rectification_incomplete``."""
        erasures = self._erasures
        values, suppress, restore = request.values, request.suppress, request.restore
        try:
            twins = erasures.twins_of(brand, subject)
        except TwinSyncError as exc:
            raise CloudHubError(str(exc), reason=exc.reason) from None
        hidden = {f for t in twins for f in erasures.blocks.hidden(brand, t)}
        if hidden & set(values):
            raise CloudHubError(
                f"{', '.join(sorted(hidden & set(values)))}: suppressed by the customer",
                reason="field_suppressed",
            )
        received = time.time_ns() // 1_000_000
        request_id = await asyncio.to_thread(
            erasures.open_request, brand, "rectification", received
        )
        if values:
            # The twin id devices use now: the newest key epoch's.
            current = max(twins, key=lambda t: int(t.split("-", 1)[0]))
            await self._store.write(_customer_lines(brand, current, values, received))
        if restore:
            for name in restore:
                await asyncio.to_thread(erasures.blocks.lift, brand, twins, name)
            command = _field_command(twins, (), restore, request_id, received)
            erasures.broadcast(brand, "consent", command, received)
        removed = 0
        if suppress:
            for name in suppress:
                await asyncio.to_thread(
                    erasures.blocks.add, brand, twins, name, request_id, received
                )
            command = _field_command(twins, suppress, (), request_id, received)
            erasures.broadcast(brand, "consent", command, received)
            # Every instance re-reads blocks within refresh_s; after that nobody writes them.
            await asyncio.sleep(erasures.blocks.refresh_s + 0.2)
            for twin in twins:
                for name in suppress:
                    removed += await self.remove_field(brand, twin, name, request_id)
        body = {
            "request_id": request_id,
            "kind": "rectification",
            "brand": brand,
            "twins": twins,
            "received_ms": received,
            "completed_ms": time.time_ns() // 1_000_000,
            "set": sorted(values),
            "suppressed": sorted(suppress),
            "restored": sorted(restore),
            "points_removed": removed,
            "points_left": 0,
        }
        receipt = await asyncio.to_thread(erasures.finish_request, body, "rectification")
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
        with self._connect() as db:
            db.execute(
                "INSERT INTO rewrite_jobs (id, request_id, brand, twin, field, state, points, "
                "keep) VALUES (?, ?, ?, ?, ?, 'staged', ?, ?)",
                (job, request_id, brand, twin, field, json.dumps(points), json.dumps(keep)),
            )
        return job, len(points)

    async def run(self, job: str) -> bool:
        """Steps 2-3 of ``job`` from its recorded state; False if another instance holds
        it. Raises CloudHubError if the field is still there afterwards."""
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
        await asyncio.to_thread(self._renew, job)
        await self._store.write(json.loads(keep))
        results = await self._store.query(
            f"SELECT count({quote_ident(field)}) FROM {measurement} WHERE {base}"
        )
        left = sum(v for s in results[0].get("series", []) or [] for v in s["values"][0][1:])
        if left:
            # A write that was on the wire before every instance knew the block: go again.
            await asyncio.to_thread(self._set_state, job, "failed")
            raise CloudHubError(
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
        with self._connect() as db:
            jobs = [r[0] for r in db.execute(
                "SELECT id FROM rewrite_jobs WHERE state IN ('staged', 'deleted')"
            )]  # fmt: skip
        done = 0
        for job in jobs:
            try:
                done += await self.run(job)
            except CloudHubError as exc:
                log.warning("field removal %s not finished: %s", job, exc)
        if done:
            log.info("resumed %d unfinished field removal(s)", done)
        return done

    def _claim(self, job: str) -> tuple[str, str, str, str, str, str] | None:
        now = time.time_ns() // 1_000_000
        with self._connect() as db:
            cur = db.execute(
                "UPDATE rewrite_jobs SET lease_ms = ? WHERE id = ? AND lease_ms < ? "
                "AND state IN ('staged', 'deleted')",
                (now + _LEASE_MS, job, now),
            )
            if cur.rowcount == 0:
                return None
            row = db.execute(
                "SELECT brand, twin, field, state, points, keep FROM rewrite_jobs WHERE id = ?",
                (job,),
            ).fetchone()
        brand, twin, field, state, points, keep = (str(v) for v in row)
        return brand, twin, field, state, points, keep

    def _renew(self, job: str) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE rewrite_jobs SET lease_ms = ? WHERE id = ?",
                (time.time_ns() // 1_000_000 + _LEASE_MS, job),
            )

    def _set_state(self, job: str, state: str) -> None:
        with self._connect() as db:
            # Done or failed: the point list is no longer needed (nor kept as evidence).
            if state in ("done", "failed"):
                db.execute(
                    "UPDATE rewrite_jobs SET state=?, points='[]', keep='[]', lease_ms=0 "
                    "WHERE id=?",
                    (state, job),
                )
            else:
                db.execute("UPDATE rewrite_jobs SET state=? WHERE id=?", (state, job))


def _format(name: str, value: object) -> str:
    """A field value read back from InfluxDB, in line protocol (typed by the catalog)."""
    if name in FIELDS:
        return format_value(name, value)
    kind: ValueType = (
        "bool" if isinstance(value, bool) else "str" if isinstance(value, str) else "float"
    )
    return typed_value(kind, value)


def _customer_lines(brand: str, twin: str, values: dict[str, Scalar], now_ms: int) -> list[str]:
    """Points of customer-asserted values: source ``_customer``, HLC of now."""
    ts = HLC(now_ms, 0).to_ns()
    tags = f"brand={brand},device={CUSTOMER_SOURCE},twin={twin}"
    return [f"{MEASUREMENT_OF[n]},{tags} {n}={format_value(n, v)} {ts}" for n, v in values.items()]


def _field_command(
    twins: list[str],
    suppress: tuple[str, ...],
    restore: tuple[str, ...],
    request_id: str,
    now: int,
) -> ConsentCommand:
    """The hub-signed command telling devices to stop (or resume) collecting fields."""
    return ConsentCommand(
        twins=tuple(twins),
        purposes={},
        notice="rectification",
        request_id=request_id,
        ts_ms=now,
        suppress=suppress,
        restore=restore,
    )
