"""The rows of the twin query index and how a change reaches them (cloud_hub.store._twin_index
has the tables' meaning and who writes them).

:func:`merge` takes ops as ``protocol.TwinState`` merges them, in SQL both backends run
the same: conditional upserts that keep the greater ``(hlc, device, value)`` of a field,
each device's latest counter total, and the earliest and latest op time of a twin; a
counter's value is then summed from its parts in device order (:func:`recount`). Row
locks are taken in one order in every transaction (counter totals, fields, counter parts,
twins, products, each sorted), so instances writing the same twins never deadlock.
:func:`refresh` puts a twin's own row right after values were removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias

from protocol import FIELDS, MODEL_FIELDS, PRODUCTS, Scalar

from ._state_tx import Tx, marks

__all__ = [
    "CHURN_FIELDS",
    "COUNTERS",
    "Admit",
    "IndexOp",
    "Observe",
    "chunks",
    "delete_twins",
    "field_product",
    "merge",
    "recount",
    "refresh",
    "stored_value",
]

#: one op as the index takes it: (brand, twin, device, field, packed HLC, value)
IndexOp: TypeAlias = tuple[str, str, str, str, int, Scalar]
#: inside the index's transaction: the ops that may be indexed now (the privacy layer's
#: answer, cloud_hub.privacy; it may leave ops out or move them to another twin id)
Admit: TypeAlias = Callable[[Tx, list[IndexOp]], list[IndexOp]]
#: inside the index's transaction, before the admitted ops are merged: returns what to
#: run after the merge, in the same transaction (None: nothing), so a watcher compares a
#: twin's values before and after a batch that is stored (cloud_hub.triggers)
Observe: TypeAlias = Callable[[Tx, list[IndexOp]], Callable[[], None] | None]

#: the fields whose highest value is a twin's ``churn_risk``
CHURN_FIELDS: tuple[str, ...] = tuple(
    MODEL_FIELDS[(p, "churn_risk")] for p in PRODUCTS if (p, "churn_risk") in MODEL_FIELDS
)
#: IN lists are sent in pieces of this many values (well under both backends' limits)
_CHUNK = 500
#: the counter fields (a sum of parts)
COUNTERS = frozenset(n for n, s in FIELDS.items() if s.merge == "counter")

_LOCK_TOTAL = (
    # Counter totals are read-modify-write: take each total's row lock first (inserting a
    # placeholder the same transaction overwrites), so instances summing parts of one
    # counter take turns and the last one sees every part.
    "INSERT INTO twin_fields (brand, twin, field, device, hlc, num, txt) "
    "VALUES (?, ?, ?, '', 0, 0, NULL) "
    "ON CONFLICT (brand, twin, field) DO UPDATE SET hlc = twin_fields.hlc"
)
_MERGE_FIELD = (
    "INSERT INTO twin_fields (brand, twin, field, device, hlc, num, txt) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (brand, twin, field) DO UPDATE SET "
    "device = excluded.device, hlc = excluded.hlc, num = excluded.num, txt = excluded.txt "
    # protocol.TwinState's order: (hlc, device, value); one of num/txt is NULL per field
    "WHERE excluded.hlc > twin_fields.hlc OR (excluded.hlc = twin_fields.hlc AND "
    "(excluded.device > twin_fields.device OR (excluded.device = twin_fields.device AND "
    "(excluded.num > twin_fields.num OR excluded.txt > twin_fields.txt))))"
)
_MERGE_PART = (
    "INSERT INTO twin_counter_parts (brand, twin, field, device, hlc, num) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (brand, twin, field, device) DO UPDATE SET "
    "hlc = excluded.hlc, num = excluded.num WHERE excluded.hlc > twin_counter_parts.hlc OR "
    "(excluded.hlc = twin_counter_parts.hlc AND excluded.num > twin_counter_parts.num)"
)
_MERGE_TWIN = (
    "INSERT INTO twin_index (brand, twin, first_seen_ms, last_seen_ms) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (brand, twin) DO UPDATE SET first_seen_ms = CASE WHEN "
    "excluded.first_seen_ms < twin_index.first_seen_ms THEN excluded.first_seen_ms "
    "ELSE twin_index.first_seen_ms END, last_seen_ms = CASE WHEN "
    "excluded.last_seen_ms > twin_index.last_seen_ms THEN excluded.last_seen_ms "
    "ELSE twin_index.last_seen_ms END"
)
_CHURN = (
    f"UPDATE twin_index SET churn_risk = (SELECT MAX(f.num) FROM twin_fields f "
    f"WHERE f.brand = twin_index.brand AND f.twin = twin_index.twin "
    f"AND f.field IN ({marks(len(CHURN_FIELDS))})) WHERE brand = ? AND twin = ?"
)


def field_product(field: str) -> str:
    """The product a field belongs to (``coffee.segment`` -> ``coffee``)."""
    spec = FIELDS.get(field)
    return spec.product if spec is not None else field.split(".", 1)[0]


def chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    """``items`` in pieces short enough for one IN list."""
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _columns(value: Scalar) -> tuple[float | None, str | None]:
    """A value as the (num, txt) pair it is stored as."""
    if isinstance(value, str):
        return None, value
    return float(value), None


def merge(tx: Tx, ops: Sequence[IndexOp]) -> None:
    """Merge ``ops`` into the index within ``tx`` (the caller holds the index lock)."""
    lww: dict[tuple[str, str, str], tuple[int, str, Scalar]] = {}
    parts: dict[tuple[str, str, str, str], tuple[int, Scalar]] = {}
    seen: dict[tuple[str, str], list[int]] = {}
    for brand, twin, device, field, hlc, value in ops:
        if field in COUNTERS:
            key4 = (brand, twin, field, device)
            part = parts.get(key4)
            if part is None or (hlc, value) > part:
                parts[key4] = (hlc, value)
        else:
            key3 = (brand, twin, field)
            current = lww.get(key3)
            if current is None or (hlc, device, value) > current:
                lww[key3] = (hlc, device, value)
        ms = hlc >> 16
        span = seen.get((brand, twin))
        if span is None:
            seen[(brand, twin)] = [ms, ms]
        elif ms < span[0]:
            span[0] = ms
        elif ms > span[1]:
            span[1] = ms
    totals = sorted({(b, t, f) for b, t, f, _d in parts})
    tx.executemany(_LOCK_TOTAL, totals)
    tx.executemany(
        _MERGE_FIELD,
        [(*key, d, h, *_columns(v)) for key, (h, d, v) in sorted(lww.items())],
    )
    tx.executemany(
        _MERGE_PART,
        [(*key, h, float(v)) for key, (h, v) in sorted(parts.items())],
    )
    recount(tx, totals)
    tx.executemany(_MERGE_TWIN, [(b, t, span[0], span[1]) for (b, t), span in sorted(seen.items())])
    churned = sorted({(b, t) for b, t, f in lww if f in CHURN_FIELDS})
    tx.executemany(_CHURN, [(*CHURN_FIELDS, b, t) for b, t in churned])
    products = {(b, field_product(f), t) for b, t, f in lww} | {
        (b, field_product(f), t) for b, t, f in totals
    }
    tx.executemany(
        "INSERT INTO twin_products (brand, product, twin) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        sorted(products),
    )


def recount(tx: Tx, keys: Sequence[tuple[str, str, str]]) -> None:
    """Set each counter total in ``keys`` to the sum of its parts, in device order as
    ``protocol.TwinState`` sums them (or remove it when no part is left)."""
    wanted = set(keys)
    found: dict[tuple[str, str, str], list[tuple[str, int, float]]] = {}
    by_brand: dict[str, list[str]] = {}
    for brand, twin, _field in keys:
        by_brand.setdefault(brand, []).append(twin)
    for brand, twins in by_brand.items():
        for piece in chunks(sorted(set(twins))):
            for twin, field, device, hlc, num in tx.execute(
                "SELECT twin, field, device, hlc, num FROM twin_counter_parts "
                f"WHERE brand = ? AND twin IN ({marks(len(piece))})",
                (brand, *piece),
            ):
                key = (brand, str(twin), str(field))
                if key in wanted:
                    found.setdefault(key, []).append((str(device), int(hlc), float(num)))
    sums, gone = [], []
    for key in sorted(wanted):
        got = found.get(key)
        if not got:
            gone.append(key)
            continue
        is_float = FIELDS[key[2]].type == "float" if key[2] in FIELDS else True
        total: float = 0
        for _device, _hlc, num in sorted(got):
            total += num if is_float else int(num)
        latest_hlc, latest_device = max((h, d) for d, h, _n in got)
        sums.append((latest_device, latest_hlc, float(total), *key))
    tx.executemany(
        "UPDATE twin_fields SET device = ?, hlc = ?, num = ?, txt = NULL "
        "WHERE brand = ? AND twin = ? AND field = ?",
        sums,
    )
    tx.executemany("DELETE FROM twin_fields WHERE brand = ? AND twin = ? AND field = ?", gone)


def delete_twins(tx: Tx, brand: str, twins: Sequence[str]) -> None:
    """Remove every row of ``twins``."""
    for piece in chunks(sorted(set(twins))):
        for table in ("twin_fields", "twin_counter_parts", "twin_products", "twin_index"):
            tx.execute(
                f"DELETE FROM {table} WHERE brand = ? AND twin IN ({marks(len(piece))})",
                (brand, *piece),
            )


def refresh(tx: Tx, brand: str, twins: Sequence[str]) -> None:
    """After values of ``twins`` were removed: their newest time, churn risk and
    products again, and no row for a twin with no value left."""
    names = sorted(set(twins))
    for piece in chunks(names):
        newest: dict[str, int] = dict(
            tx.execute(
                "SELECT twin, MAX(hlc) FROM twin_fields WHERE brand = ? AND twin IN "
                f"({marks(len(piece))}) GROUP BY twin",
                (brand, *piece),
            ).fetchall()
        )
        products: dict[str, set[str]] = {}
        for twin, field in tx.execute(
            "SELECT twin, field FROM twin_fields WHERE brand = ? AND twin IN "
            f"({marks(len(piece))})",
            (brand, *piece),
        ):
            products.setdefault(str(twin), set()).add(field_product(str(field)))
        tx.execute(
            f"DELETE FROM twin_products WHERE brand = ? AND twin IN ({marks(len(piece))})",
            (brand, *piece),
        )
        tx.executemany(
            "INSERT INTO twin_products (brand, twin, product) VALUES (?, ?, ?)",
            sorted((brand, t, p) for t, ps in products.items() for p in ps),
        )
        empty = [t for t in piece if t not in newest]
        tx.executemany(
            "DELETE FROM twin_index WHERE brand = ? AND twin = ?", [(brand, t) for t in empty]
        )
        tx.executemany(
            "UPDATE twin_index SET last_seen_ms = ? WHERE brand = ? AND twin = ?",
            [(int(h) >> 16, brand, t) for t, h in sorted(newest.items())],
        )
        tx.executemany(_CHURN, [(*CHURN_FIELDS, brand, t) for t in sorted(newest)])


def stored_value(field: str, num: object, txt: object) -> Scalar:
    """A stored (num, txt) pair as the catalog's value type."""
    if txt is not None:
        return str(txt)
    kind = FIELDS[field].type if field in FIELDS else "float"
    if kind == "int":
        return int(num)  # type: ignore[call-overload,no-any-return]
    if kind == "bool":
        return bool(num)
    return float(num)  # type: ignore[arg-type]
