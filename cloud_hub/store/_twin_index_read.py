"""Reading the twin query index: a filtered page in a stable order, with the count of
matches, and the twins of the page with what a brand backend lists them by.

One read-only transaction per query (a snapshot of the index). The filter's pieces
(``_twin_filter``): a *driver*, the twin ids of its most selective condition's index
range, and a *check* of the whole filter per twin by key lookups. The count goes
through the driver's twins (or every twin, when no condition has an index range), checks
each, and stops at the cap. The page then takes the cheaper of two ways, judged by the
count just made: along the sort order's index, checking twins until the page is full
(cheap when matches are dense), or through the driver's twins, checking and sorting them
(cheap when they are few).

A page is keyset-paged: the query resumes after the last (sort value, twin id) it gave,
never at an offset, so a page costs the same however deep it is, and a twin whose sort
value did not change while a client paged appears exactly once. Sorting by a field or by
``churn_risk`` lists the twins that hold a value first (phase 1, in the asked order),
then those without one (phase 2, by twin id), so every match appears whatever the sort.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from protocol import FIELDS, MODEL_FIELDS, PRODUCTS, Scalar

from ._state import StateStore
from ._state_tx import Tx, marks
from ._twin_filter import Filter
from ._twin_plan import COLUMNS, Plan, Rows, SortKey
from ._twin_rows import stored_value

__all__ = ["IndexPage", "IndexReader", "Position", "SortKey"]

_SEGMENTS = {MODEL_FIELDS[(p, "segment")]: p for p in PRODUCTS if (p, "segment") in MODEL_FIELDS}


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: the phase (1: twins with a sort value, 2: without), the last
    sort value and the last twin id."""

    phase: Literal[1, 2]
    value: float | str | None
    twin: str


@dataclass
class IndexPage:
    """One page: the twins, each with what the index holds about it, where the next page
    starts (None: this was the last), and how many twins match (counted up to the cap
    and one more: a count above the cap means "more than the cap")."""

    items: list[dict[str, Any]] = field(default_factory=list)
    next: Position | None = None
    count: int = 0


class IndexReader:
    """Queries on the twin query index (module docstring); blocking, thread-safe."""

    def __init__(self, *, state: StateStore) -> None:
        self._state = state
        self._rows = Rows()

    def query(
        self,
        brand: str,
        where: Filter | None,
        sort: SortKey,
        limit: int,
        after: Position | None = None,
        fields: Sequence[str] = (),
        cap: int = 10_000,
        way: Literal["cheaper", "along", "through"] = "cheaper",
    ) -> IndexPage:
        """Up to ``limit`` twins of ``brand`` matching ``where`` in ``sort`` order after
        ``after``, with the values of ``fields`` (and the sort field), and how many match
        (counted up to ``cap + 1``). ``way`` forces the page along the sort order or
        through the driver's twins (tests and diagnostics: both give the same page)."""
        wanted = [*fields, *([sort.key] if sort.key in FIELDS and sort.key not in fields else [])]
        with self._state.warm(readonly=True) as tx:
            plan = Plan(tx, brand, where, sort, self._rows)
            page = IndexPage(count=plan.count(cap))
            if page.count == 0:
                return page
            along = (
                plan.along_sort(limit, min(page.count, cap))
                if way == "cheaper" or plan.driver is None
                else way == "along"
            )
            rows: list[tuple[Literal[1, 2], tuple[Any, ...]]] = []
            if after is None or after.phase == 1:
                found = self._phase1(plan, limit + 1, after, along)
                rows = [(1, r) for r in found]
            if sort.nullable and len(rows) <= limit:
                resume = after if after is not None and after.phase == 2 else None
                more = self._phase2(plan, limit + 1 - len(rows), resume, along)
                rows += [(2, (r[0], None)) for r in more]
            if len(rows) > limit:
                phase, last = rows[limit - 1]
                page.next = Position(phase, last[1], str(last[0]))
                rows = rows[:limit]
            page.items = self._items(tx, brand, [str(r[0]) for _p, r in rows], wanted)
        return page

    @staticmethod
    def _phase1(
        plan: Plan, limit: int, after: Position | None, along: bool
    ) -> list[tuple[Any, ...]]:
        """(twin, sort value) of the next twins that hold a sort value."""
        sort = plan.sort
        field_sort = sort.key not in COLUMNS
        way, cmp = ("DESC", "<") if sort.descending else ("ASC", ">")
        params: list[object]
        if along:
            # Walk the sort order's index: the field's (brand, field, value, twin) or the
            # twin row's; the twin id of the walked index itself, so SQLite reads (value,
            # twin) in the index's order instead of sorting each value's twins.
            if field_sort:
                value = "s.txt" if sort.text else "s.num"
                source = "twin_fields s JOIN twin_index t ON t.brand = s.brand AND t.twin = s.twin"
                conditions = ["s.brand = ?", "s.field = ?", f"{value} IS NOT NULL"]
                params, twin = [plan.brand, sort.key], "s.twin"
            else:
                value, twin = COLUMNS[sort.key], "t.twin"
                source, conditions, params = "twin_index t", ["t.brand = ?"], [plan.brand]
                if sort.nullable:
                    conditions.append(f"{value} IS NOT NULL")
            check = plan.check("t.twin", driven=False, row="t")
            head = f"SELECT {twin} AS twin, {value} AS v FROM {source} WHERE "
            conditions.append(check.text)
            params += check.params
        else:
            # Through the driver's ids (materialized: never merged into a join a planner
            # could misjudge), each one's sort value looked up by key.
            ids = plan.candidates()
            check = plan.check("c.twin", driven=True)
            if field_sort:
                column = "txt" if sort.text else "num"
                lookup = (
                    f"(SELECT {column} FROM twin_fields WHERE brand = ? AND twin = c.twin "
                    "AND field = ?)"
                )
                lookup_params: list[object] = [plan.brand, sort.key]
            elif sort.key == "twin":
                lookup, lookup_params = "c.twin", []
            else:
                column = COLUMNS[sort.key].removeprefix("t.")
                lookup = f"(SELECT {column} FROM twin_index WHERE brand = ? AND twin = c.twin)"
                lookup_params = [plan.brand]
            source = "c"
            if plan.tx.dialect.name == "postgresql" and sort.key != "twin":
                # PostgreSQL runs a scalar subquery as a sub-plan per row, far dearer than
                # a join (SQLite's are cheap, and its joins the ones misjudged).
                if field_sort:
                    source = (
                        "c LEFT JOIN twin_fields l ON l.brand = ? AND l.twin = c.twin "
                        "AND l.field = ?"
                    )
                    lookup = f"l.{column}"
                else:
                    source = "c JOIN twin_index l ON l.brand = ? AND l.twin = c.twin"
                    lookup = f"l.{column}"
            head = (
                f"WITH c AS MATERIALIZED ({ids.text}) SELECT twin, v FROM (SELECT c.twin AS "
                f"twin, {lookup} AS v FROM {source} WHERE {check.text}) x WHERE "
            )
            params = [*ids.params, *lookup_params, *check.params]
            value, twin = "v", "twin"
            conditions = ["v IS NOT NULL"]
        if after is not None:
            if sort.key == "twin":
                conditions.append(f"{twin} {cmp} ?")
                params.append(after.twin)
            else:
                conditions.append(f"({value} {cmp} ? OR ({value} = ? AND {twin} {cmp} ?))")
                params += [after.value, after.value, after.twin]
        order = f"{twin} {way}" if sort.key == "twin" else f"{value} {way}, {twin} {way}"
        return plan.tx.execute(
            f"{head}{' AND '.join(conditions)} ORDER BY {order} LIMIT ?", (*params, limit)
        ).fetchall()

    @staticmethod
    def _phase2(
        plan: Plan, limit: int, after: Position | None, along: bool
    ) -> list[tuple[Any, ...]]:
        """(twin,) of the next twins that hold no sort value, by twin id."""
        sort, brand = plan.sort, plan.brand
        if sort.key in COLUMNS:
            absent = (
                f"NOT EXISTS (SELECT 1 FROM twin_index WHERE brand = ? AND twin = {{twin}} "
                f"AND {COLUMNS[sort.key].removeprefix('t.')} IS NOT NULL)"
            )
        else:
            absent = (
                "NOT EXISTS (SELECT 1 FROM twin_fields WHERE brand = ? AND twin = {twin} "
                "AND field = ?)"
            )
        absent_params: list[object] = [brand] if sort.key in COLUMNS else [brand, sort.key]
        params: list[object]
        if along:
            check = plan.check("t.twin", driven=False, row="t")
            head = "SELECT t.twin FROM twin_index t WHERE t.brand = ? AND "
            params, twin = [brand], "t.twin"
        else:
            ids = plan.candidates()
            check = plan.check("c.twin", driven=True)
            head = f"WITH c AS MATERIALIZED ({ids.text}) SELECT c.twin FROM c WHERE "
            params, twin = [*ids.params], "c.twin"
        conditions = [absent.format(twin=twin), check.text]
        params += [*absent_params, *check.params]
        if after is not None:
            conditions.append(f"{twin} > ?")
            params.append(after.twin)
        return plan.tx.execute(
            f"{head}{' AND '.join(conditions)} ORDER BY {twin} LIMIT ?", (*params, limit)
        ).fetchall()

    @staticmethod
    def _items(tx: Tx, brand: str, twins: list[str], fields: Sequence[str]) -> list[dict[str, Any]]:
        """Each twin of a page with its own row, products, devices, segments, tags and
        ``fields``."""
        if not twins:
            return []
        inside = f"brand = ? AND twin IN ({marks(len(twins))})"
        own = {
            str(r[0]): r[1:]
            for r in tx.execute(
                f"SELECT twin, first_seen_ms, last_seen_ms, churn_risk FROM twin_index "
                f"WHERE {inside}",
                (brand, *twins),
            )
        }
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
            for twin in twins
            for first, last, churn in (own[twin],)
        ]
