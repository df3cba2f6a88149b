"""The twin query index against InfluxDB: rebuild it from there, or check it matches
(``twinsync hub index rebuild`` and ``... check``).

Both read, per brand, every field's last value per (twin, device) (``SELECT last(f) ...
GROUP BY twin, device``, a few fields per request), which is what the index holds after
``protocol.TwinState``'s merge.

**Rebuild** (a deployment that ran before the index existed; recovery): the brand's index
is emptied, those values are merged through :meth:`TwinIndex.apply` with the caller's
``admit`` (the privacy layer's full check: erased twins, blocked fields, twin aliases) in
pieces of bounded size, and each twin's oldest point gives its ``first_seen_ms``. Ingest
may run meanwhile: it merges what it writes as always, and merging is order-free, so
whatever InfluxDB holds ends up indexed either way; a query during the rebuild may miss
twins not reached yet.

**Check**: field by field, the merged values InfluxDB gives against the index's rows,
then each twin's newest time, churn risk and products; it lists the differences (none:
the index equals InfluxDB). ``first_seen_ms`` is not compared: retention may have deleted
the oldest points the index took in.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Sequence
from typing import Any

from protocol import FIELDS, HLC, Scalar, TwinState

from ._influx import InfluxStore, quote_ident, quote_str
from ._lines import MEASUREMENT_OF, TWIN_MEASUREMENTS
from ._state import StateStore
from ._twin_index import TwinIndex
from ._twin_rows import CHURN_FIELDS, Admit, IndexOp, field_product, stored_value

__all__ = ["check_index", "index_brands", "rebuild_index"]

#: fields read per InfluxDB request, and ops merged per index transaction
_FIELDS_PER_QUERY = 8
_OPS_PER_TX = 20_000
#: differences a check reports at most
_MAX_DIFFERENCES = 50


def _typed(field: str, value: Any) -> Scalar:
    # InfluxDB's JSON renders the float 21.0 as 21: the catalog says what it is.
    kind = FIELDS[field].type
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(value)
    return value  # type: ignore[no-any-return]


async def index_brands(store: InfluxStore) -> list[str]:
    """Every brand InfluxDB holds twin points of."""
    names = ",".join(quote_ident(m) for m in TWIN_MEASUREMENTS)
    results = await store.query(f'SHOW TAG VALUES FROM {names} WITH KEY = "brand"')
    return sorted({v[1] for s in results[0].get("series", []) or [] for v in s["values"]})


async def _last_values(store: InfluxStore, brand: str) -> AsyncIterator[tuple[str, list[IndexOp]]]:
    """Per field of the catalog: the last value of each (twin, device) of ``brand``."""
    names = sorted(FIELDS)
    for i in range(0, len(names), _FIELDS_PER_QUERY):
        part = names[i : i + _FIELDS_PER_QUERY]
        query = ";".join(
            f"SELECT last({quote_ident(f)}) FROM {quote_ident(MEASUREMENT_OF[f])} "
            f'WHERE "brand" = {quote_str(brand)} GROUP BY "twin", "device"'
            for f in part
        )
        for name, result in zip(part, await store.query(query), strict=True):
            ops: list[IndexOp] = []
            for series in result.get("series", []) or []:
                twin, device = series["tags"]["twin"], series["tags"]["device"]
                for ts, value in series["values"]:
                    if value is not None:
                        hlc = HLC.from_ns(int(ts)).pack()
                        ops.append((brand, twin, device, name, hlc, _typed(name, value)))
            yield name, ops


async def rebuild_index(
    index: TwinIndex, store: InfluxStore, *, admit: Admit, brands: Sequence[str] = ()
) -> dict[str, int]:
    """Rebuild the index of ``brands`` (default: every brand InfluxDB holds twins of)
    from InfluxDB; return the twins indexed per brand."""
    done: dict[str, int] = {}
    for brand in brands or await index_brands(store):
        await asyncio.to_thread(index.clear, brand)
        pending: list[IndexOp] = []
        twins: set[str] = set()
        async for _name, ops in _last_values(store, brand):
            pending += ops
            twins.update(op[1] for op in ops)
            if len(pending) >= _OPS_PER_TX:
                await asyncio.to_thread(functools.partial(index.apply, pending, admit=admit))
                pending = []
        if pending:
            await asyncio.to_thread(functools.partial(index.apply, pending, admit=admit))
        await asyncio.to_thread(index.lower_first_seen, brand, await _first_seen(store, brand))
        done[brand] = len(twins)
    return done


async def _first_seen(store: InfluxStore, brand: str) -> dict[str, int]:
    """Each twin's oldest point (Unix ms) over every twin measurement."""
    first: dict[str, int] = {}
    query = ";".join(
        f'SELECT * FROM {quote_ident(m)} WHERE "brand" = {quote_str(brand)} '
        'GROUP BY "twin" ORDER BY time ASC LIMIT 1'
        for m in TWIN_MEASUREMENTS
    )
    for result in await store.query(query):
        for series in result.get("series", []) or []:
            twin = series["tags"]["twin"]
            ms = int(series["values"][0][0]) // 1_000_000
            first[twin] = min(first.get(twin, ms), ms)
    return first


async def check_index(state: StateStore, store: InfluxStore, brand: str) -> list[str]:
    """The differences between ``brand``'s index and InfluxDB's last values (at most
    fifty, each a line naming the twin and field); empty when they agree."""
    out: list[str] = []
    newest: dict[str, int] = {}
    products: dict[str, set[str]] = {}
    churn: dict[str, float] = {}
    async for name, ops in _last_values(store, brand):
        merged: dict[str, TwinState] = {}
        for _b, twin, device, field, hlc, value in ops:
            merged.setdefault(twin, TwinState()).apply(device, hlc, field, value)
        want = {t: s.fields()[name] for t, s in merged.items()}
        got = await asyncio.to_thread(_field_rows, state, brand, name)
        for twin in sorted(set(want) | set(got)):
            mine = (want[twin].value, want[twin].hlc, want[twin].device) if twin in want else None
            if mine != got.get(twin):
                out.append(f"{twin} {name}: InfluxDB {mine}, index {got.get(twin)}")
        for twin, fv in want.items():
            newest[twin] = max(newest.get(twin, 0), fv.hlc >> 16)
            products.setdefault(twin, set()).add(field_product(name))
            if name in CHURN_FIELDS:
                churn[twin] = max(churn.get(twin, float("-inf")), float(fv.value))
    rows, indexed = await asyncio.to_thread(_twin_rows, state, brand)
    for twin in sorted(set(newest) | set(rows)):
        want_row = (newest[twin], churn.get(twin)) if twin in newest else None
        if want_row != rows.get(twin) or products.get(twin, set()) != indexed.get(twin, set()):
            out.append(
                f"{twin}: InfluxDB (last_seen_ms, churn_risk) {want_row} products "
                f"{sorted(products.get(twin, ()))}, index {rows.get(twin)} "
                f"{sorted(indexed.get(twin, ()))}"
            )
    return out[:_MAX_DIFFERENCES]


def _field_rows(state: StateStore, brand: str, field: str) -> dict[str, tuple[Scalar, int, str]]:
    with state.transaction(readonly=True) as tx:
        return {
            str(twin): (stored_value(field, num, txt), int(hlc), str(device))
            for twin, device, hlc, num, txt in tx.execute(
                "SELECT twin, device, hlc, num, txt FROM twin_fields WHERE brand = ? AND field = ?",
                (brand, field),
            )
        }


def _twin_rows(
    state: StateStore, brand: str
) -> tuple[dict[str, tuple[int, float | None]], dict[str, set[str]]]:
    with state.transaction(readonly=True) as tx:
        rows = {
            str(twin): (int(last), None if risk is None else float(risk))
            for twin, last, risk in tx.execute(
                "SELECT twin, last_seen_ms, churn_risk FROM twin_index WHERE brand = ?", (brand,)
            )
        }
        products: dict[str, set[str]] = {}
        for twin, product in tx.execute(
            "SELECT twin, product FROM twin_products WHERE brand = ?", (brand,)
        ):
            products.setdefault(str(twin), set()).add(str(product))
    return rows, products
