"""What of the values InfluxDB stored may enter the twin query index, asked inside the
index's own transaction (cloud_hub.store._twin_index).

Ingest checks every delta against this instance's views of tombstones, field blocks and
twin links (cloud_hub.privacy._policy), which another instance may have changed a moment
ago. InfluxDB copes with that by deleting until nothing is left; the index instead asks
again where it writes: it compares the views' stamps (``registry_meta``, moved by every
writer of those tables in its own transaction) with the stamps the batch was checked
against, and when one moved it reads the rows that concern the batch's twins, in the same
transaction. An erasure, objection, suppression or key rotation committed before the
index transaction is then applied to the batch; one committed after it waits for the
batch (the index lock, held shared by ingest) and then changes the index itself.

The rules are the policy's (the same order): values of erased twins and of twins of a
retired key epoch are left out, values of an aliased twin go to its new id, blocked
fields (a suppression, or every profile field after an objection) are left out. A
rebuild also leaves out values older than a field class's retention limit.
"""

from __future__ import annotations

from collections.abc import Mapping

from cloud_hub.store import Admit, IndexOp, Tx, chunks, marks
from protocol import FIELDS, Clock, twin_epoch

from ._erasure import Tombstones
from ._objection import PROFILE_BLOCK, PROFILE_FIELDS, FieldBlocks
from ._rekey import Relinks

__all__ = ["STAMPS", "Stamps", "index_gate", "stamps_in"]

Stamps = tuple[int, int, int]
#: the views whose changes the index must see: tombstones, field blocks, twin links
STAMPS = (Tombstones.STAMP, FieldBlocks.STAMP, Relinks.STAMP)
_CLASS_OF = {name: spec.field_class for name, spec in FIELDS.items()}


def stamps_in(tx: Tx) -> Stamps:
    """The three views' stamps as this transaction sees them."""
    found: dict[object, object] = dict(
        tx.execute(
            f"SELECT name, value FROM registry_meta WHERE name IN ({marks(len(STAMPS))})", STAMPS
        ).fetchall()
    )
    a, b, c = (int(str(found.get(name, 0))) for name in STAMPS)
    return a, b, c


def index_gate(
    seen: Stamps | None,
    *,
    retention: Mapping[str, int] | None = None,
    clock: Clock | None = None,
) -> Admit:
    """The ``admit`` step of :meth:`TwinIndex.apply` for values checked against the
    views at stamps ``seen`` (None: check every value). With ``retention`` (field class
    -> limit in ms) and ``clock``, values older than their class's limit are left out too."""

    def admit(tx: Tx, ops: list[IndexOp]) -> list[IndexOp]:
        if seen is None or stamps_in(tx) != seen:
            ops = _checked(tx, ops)
        if retention and clock is not None:
            now = clock.now_ms()
            ops = [
                op
                for op in ops
                if op[3] not in _CLASS_OF
                or _CLASS_OF[op[3]] not in retention
                or (op[4] >> 16) >= now - retention[_CLASS_OF[op[3]]]
            ]
        return ops

    return admit


def _rows(tx: Tx, sql: str, brand: str, keys: list[str]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for piece in chunks(keys):
        out += tx.execute(sql.format(marks(len(piece))), (brand, *piece)).fetchall()
    return out


def _checked(tx: Tx, ops: list[IndexOp]) -> list[IndexOp]:
    """``ops`` as the privacy tables allow them now (module docstring)."""
    kept: list[IndexOp] = []
    by_brand: dict[str, list[IndexOp]] = {}
    for op in ops:
        by_brand.setdefault(op[0], []).append(op)
    for brand, mine in by_brand.items():
        twins = sorted({op[1] for op in mine})
        retired = {
            int(r[0])
            for r in tx.execute("SELECT epoch FROM retired_epochs WHERE brand = ?", (brand,))
        }
        alias = {
            str(old): str(new)
            for old, new in _rows(
                tx,
                "SELECT old, new FROM twin_links WHERE brand = ? AND old IN ({}) "
                "AND state IN ('aliased', 'done')",
                brand,
                twins,
            )
        }
        every = sorted({*twins, *alias.values()})
        erased = {
            str(r[0])
            for r in _rows(
                tx, "SELECT twin FROM tombstones WHERE brand = ? AND twin IN ({})", brand, every
            )
        }
        blocked: dict[str, set[str]] = {}
        for twin, target in _rows(
            tx,
            "SELECT twin, target FROM field_blocks WHERE brand = ? AND twin IN ({})",
            brand,
            every,
        ):
            names = PROFILE_FIELDS if target == PROFILE_BLOCK else {str(target)}
            blocked.setdefault(str(twin), set()).update(names)
        kept += _allowed(mine, retired, alias, erased, blocked)
    return kept


def _allowed(
    ops: list[IndexOp],
    retired: set[int],
    alias: dict[str, str],
    erased: set[str],
    blocked: dict[str, set[str]],
) -> list[IndexOp]:
    out: list[IndexOp] = []
    for brand, twin, device, field, hlc, value in ops:
        if twin in erased or twin_epoch(twin) in retired:
            continue
        stored = alias.get(twin, twin)
        if stored in erased or field in blocked.get(stored, ()):
            continue
        out.append((brand, stored, device, field, hlc, value))
    return out
