"""Reading the twin query index: filtered pages in a stable order, counts, and the twins
of a page with what a brand backend lists them by.

A page is keyset-paged: the query resumes after the last (sort value, twin id) it gave,
never at an offset, so a page costs the same however deep it is, and a twin whose sort
value did not change while a client paged appears exactly once. Sorting by a field or by
``churn_risk`` lists the twins that hold a value first (phase 1, in the asked order),
then those without one (phase 2, by twin id), so every match appears whatever the sort.
Counts stop at a cap (a count is exact up to it). Reads are one read-only transaction
each: a snapshot of the index as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from protocol import FIELDS, MODEL_FIELDS, PRODUCTS, Scalar

from ._state import StateStore
from ._state_tx import Tx, marks
from ._twin_filter import Filter, to_sql
from ._twin_rows import stored_value

__all__ = ["IndexPage", "IndexReader", "Position", "SortKey"]

#: the twin's own columns a query may sort by
_COLUMNS = {
    "twin": "t.twin",
    "last_seen": "t.last_seen_ms",
    "first_seen": "t.first_seen_ms",
    "churn_risk": "t.churn_risk",
}
_SEGMENTS = {MODEL_FIELDS[(p, "segment")]: p for p in PRODUCTS if (p, "segment") in MODEL_FIELDS}
_SELECT = "t.twin, t.first_seen_ms, t.last_seen_ms, t.churn_risk"


@dataclass(frozen=True, slots=True)
class SortKey:
    """What a page is ordered by: ``twin`` (the default), ``last_seen``, ``first_seen``,
    ``churn_risk`` or a twin field, ascending or descending."""

    key: str = "twin"
    descending: bool = False

    @property
    def nullable(self) -> bool:
        """Whether some twins have no value to sort by (they come after, by twin id)."""
        return self.key not in ("twin", "last_seen", "first_seen")

    @property
    def text(self) -> bool:
        """Whether the values are text (a ``str`` field)."""
        spec = FIELDS.get(self.key)
        return spec is not None and spec.type == "str"

    def __str__(self) -> str:
        return f"-{self.key}" if self.descending else self.key


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: the phase (1: twins with a sort value, 2: without), the last
    sort value and the last twin id."""

    phase: Literal[1, 2]
    value: float | str | None
    twin: str


@dataclass
class IndexPage:
    """One page: the twins, each with what the index holds about it, and where the next
    page starts (None: this was the last)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    next: Position | None = None


class IndexReader:
    """Queries on the twin query index (module docstring); blocking, thread-safe."""

    def __init__(self, *, state: StateStore) -> None:
        self._state = state

    def page(
        self,
        brand: str,
        where: Filter | None,
        sort: SortKey,
        limit: int,
        after: Position | None = None,
        fields: Sequence[str] = (),
    ) -> IndexPage:
        """Up to ``limit`` twins of ``brand`` matching ``where`` in ``sort`` order after
        ``after``, with the values of ``fields`` (and the sort field)."""
        wanted = [*fields, *([sort.key] if sort.key in FIELDS and sort.key not in fields else [])]
        with self._state.transaction(readonly=True) as tx:
            rows: list[tuple[Literal[1, 2], tuple[Any, ...]]] = []
            if after is None or after.phase == 1:
                rows = [(1, r) for r in self._phase1(tx, brand, where, sort, limit + 1, after)]
            if sort.nullable and len(rows) <= limit:
                resume = after if after is not None and after.phase == 2 else None
                more = self._phase2(tx, brand, where, sort, limit + 1 - len(rows), resume)
                rows += [(2, (*r, None)) for r in more]
            page = IndexPage()
            if len(rows) > limit:
                phase, last = rows[limit - 1]
                page.next = Position(phase, last[4], str(last[0]))
                rows = rows[:limit]
            page.items = self._items(tx, brand, [r for _p, r in rows], wanted)
        return page

    def _phase1(
        self,
        tx: Tx,
        brand: str,
        where: Filter | None,
        sort: SortKey,
        limit: int,
        after: Position | None,
    ) -> list[tuple[Any, ...]]:
        params: list[object] = []
        if sort.key in _COLUMNS:
            value = _COLUMNS[sort.key]
            source, conditions = "twin_index t", ["t.brand = ?"]
            params.append(brand)
            if sort.nullable:
                conditions.append(f"{value} IS NOT NULL")
        else:
            value = "s.txt" if sort.text else "s.num"
            source = "twin_fields s JOIN twin_index t ON t.brand = s.brand AND t.twin = s.twin"
            conditions = ["s.brand = ?", "s.field = ?", f"{value} IS NOT NULL"]
            params += [brand, sort.key]
        if where is not None:
            sql, more = to_sql(where, brand)
            conditions.append(sql)
            params += more
        twin = "t.twin"
        way, cmp = ("DESC", "<") if sort.descending else ("ASC", ">")
        if after is not None:
            if sort.key == "twin":
                conditions.append(f"t.twin {cmp} ?")
                params.append(after.twin)
            else:
                conditions.append(f"({value} {cmp} ? OR ({value} = ? AND {twin} {cmp} ?))")
                params += [after.value, after.value, after.twin]
        order = f"{twin} {way}" if sort.key == "twin" else f"{value} {way}, {twin} {way}"
        return tx.execute(
            f"SELECT {_SELECT}, {value} FROM {source} WHERE {' AND '.join(conditions)} "
            f"ORDER BY {order} LIMIT ?",
            (*params, limit),
        ).fetchall()

    def _phase2(
        self,
        tx: Tx,
        brand: str,
        where: Filter | None,
        sort: SortKey,
        limit: int,
        after: Position | None,
    ) -> list[tuple[Any, ...]]:
        conditions: list[str] = ["t.brand = ?"]
        params: list[object] = [brand]
        if sort.key in _COLUMNS:
            conditions.append(f"{_COLUMNS[sort.key]} IS NULL")
        else:
            conditions.append(
                "NOT EXISTS (SELECT 1 FROM twin_fields s WHERE s.brand = t.brand "
                "AND s.twin = t.twin AND s.field = ?)"
            )
            params.append(sort.key)
        if where is not None:
            sql, more = to_sql(where, brand)
            conditions.append(sql)
            params += more
        if after is not None:
            conditions.append("t.twin > ?")
            params.append(after.twin)
        return tx.execute(
            f"SELECT {_SELECT} FROM twin_index t WHERE {' AND '.join(conditions)} "
            "ORDER BY t.twin LIMIT ?",
            (*params, limit),
        ).fetchall()

    def count(self, brand: str, where: Filter | None, cap: int) -> int:
        """How many twins of ``brand`` match ``where``, counted up to ``cap + 1`` (a result
        above ``cap`` means "more than cap")."""
        conditions = "t.brand = ?"
        params: list[object] = [brand]
        if where is not None:
            sql, more = to_sql(where, brand)
            conditions += f" AND {sql}"
            params += more
        with self._state.transaction(readonly=True) as tx:
            return int(
                tx.execute(
                    f"SELECT COUNT(*) FROM (SELECT 1 FROM twin_index t WHERE {conditions} "
                    "LIMIT ?) q",
                    (*params, cap + 1),
                ).scalar()
            )

    @staticmethod
    def _items(
        tx: Tx, brand: str, rows: list[tuple[Any, ...]], fields: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Each twin of a page with its products, devices, segments, tags and ``fields``."""
        twins = [str(r[0]) for r in rows]
        if not twins:
            return []
        inside = f"brand = ? AND twin IN ({marks(len(twins))})"
        products: dict[str, list[str]] = {t: [] for t in twins}
        devices: dict[str, set[str]] = {t: set() for t in twins}
        segments: dict[str, dict[str, Scalar]] = {t: {} for t in twins}
        tags: dict[str, set[str]] = {t: set() for t in twins}
        values: dict[str, dict[str, Scalar]] = {t: {} for t in twins}
        for twin, product in tx.execute(
            f"SELECT twin, product FROM twin_products WHERE {inside} ORDER BY product",
            (brand, *twins),
        ):
            products[str(twin)].append(str(product))
        for table in ("twin_fields", "twin_counter_parts"):
            for twin, device in tx.execute(
                f"SELECT DISTINCT twin, device FROM {table} WHERE {inside}", (brand, *twins)
            ):
                devices[str(twin)].add(str(device))
        names = sorted({*fields, *_SEGMENTS})
        # "field || ''" keeps the twins' key driving the read (an OR of conditions on
        # the field could otherwise send it through the value index, across every twin)
        for twin, raw, num, txt in tx.execute(
            f"SELECT twin, field, num, txt FROM twin_fields WHERE {inside} AND "
            f"((field || '') IN ({marks(len(names))}) OR "
            "((field || '') LIKE ? ESCAPE '!' AND num = 1))",
            (brand, *twins, *names, "%.tag!_%"),
        ):
            name = str(raw)
            value = stored_value(name, num, txt)
            if name in _SEGMENTS:
                segments[str(twin)][_SEGMENTS[name]] = value
            if name in fields:
                values[str(twin)][name] = value
            elif ".tag_" in name and value:
                tags[str(twin)].add(name.split(".tag_", 1)[1])
        return [
            {
                "twin": twin,
                "first_seen_ms": int(first),
                "last_seen_ms": int(last),
                "churn_risk": None if churn is None else float(churn),
                "products": products[twin],
                "devices": sorted(devices[twin]),
                "segments": segments[twin],
                "tags": sorted(tags[twin]),
                "fields": values[twin],
            }
            for twin, (_t, first, last, churn, *_rest) in zip(twins, rows, strict=True)
        ]
