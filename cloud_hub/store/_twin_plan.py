"""How a twin query reads the index (cloud_hub.store._twin_index_read runs it): the sort
order, the filter's driver and per-twin check, the count, and which of the two ways to a
page is cheaper.

The driver (``_twin_filter.driver``) gives the twin ids of index ranges holding every
match; the check is the rest of the filter, by key lookups per twin. A page is read
either *along* the sort order's index, checking twins until it is full, or *through* the
driver's ids, each one's sort value looked up by key, then sorted. Along costs the rows
walked before the page is full: at the density the count shows, (limit + 1) x the sort
index's rows / matches, each a random read (:data:`WALK_COST`); through costs the index
rows the driver reads.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from protocol import FIELDS

from ._state_tx import Tx
from ._twin_filter import Filter, Sql, driver, matches

__all__ = ["COLUMNS", "WALK_COST", "Plan", "Rows", "SortKey"]

#: the twin's own columns a query may sort by
COLUMNS = {
    "twin": "t.twin",
    "last_seen": "t.last_seen_ms",
    "first_seen": "t.first_seen_ms",
    "churn_risk": "t.churn_risk",
}
#: what a row walked along the sort order costs against a twin read from the driver's
#: ids (those come in key order, so their lookups hit the same pages; the walk's come in
#: sort order, so each is a random read): about eight times, measured at 100,000 twins
#: (docs/benchmarks.md, "Twin queries")
WALK_COST = 8


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


#: how long the size of a sort order's index (its rows) is taken as known: it only
#: steers the choice between the two ways, which give the same page
ROWS_TTL_S = 60.0


class Rows:
    """Sizes of sort orders' indexes, remembered a while (thread-safe)."""

    def __init__(self) -> None:
        self._known: dict[Sql, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def get(self, tx: Tx, sql: Sql) -> int:
        now = time.monotonic()
        with self._lock:
            known = self._known.get(sql)
        if known is not None and now - known[0] < ROWS_TTL_S:
            return known[1]
        rows = int(tx.execute(f"SELECT COUNT(*) FROM ({sql.text}) s", sql.params).scalar())
        with self._lock:
            if len(self._known) > 4096:  # one per brand and sort key: bounded all the same
                self._known.clear()
            self._known[sql] = (now, rows)
        return rows


class Plan:
    """One query's pieces in one transaction: the driver, the check, what things cost."""

    def __init__(self, tx: Tx, brand: str, where: Filter | None, sort: SortKey, rows: Rows) -> None:
        self.tx, self.brand, self.sort, self.where = tx, brand, sort, where
        self._rows = rows
        self._sizes: dict[Sql, int] = {}
        self.driver = driver(where, brand, self.size) if where is not None else None

    def size(self, sql: Sql) -> int:
        """How many twin ids ``sql`` yields (counted in the index, remembered)."""
        if sql not in self._sizes:
            found = self.tx.execute(f"SELECT COUNT(*) FROM ({sql.text}) s", sql.params).scalar()
            self._sizes[sql] = int(found)
        return self._sizes[sql]

    def check(self, twin: str, *, driven: bool, row: str | None = None) -> Sql:
        """The filter on the twin id expression ``twin`` (and its ``twin_index`` row
        ``row``, when joined): all of it, or for twins ``driven`` from the driver only
        what the driver's ids do not already hold (true when nothing is left)."""
        node = self.where
        if driven and self.driver is not None:
            node = self.driver.rest
        return Sql("1 = 1") if node is None else matches(node, self.brand, twin, row)

    def candidates(self) -> Sql:
        """The twins to look through: the driver's, or every twin of the brand."""
        if self.driver is not None:
            return self.driver.ids
        return Sql("SELECT twin FROM twin_index WHERE brand = ?", (self.brand,))

    def count(self, cap: int) -> int:
        """The matches, counted through the driver's twins (or every twin) up to ``cap + 1``."""
        if self.driver is None:
            source, check = Sql("twin_index t"), self.check("t.twin", driven=False, row="t")
            where, params = f"t.brand = ? AND {check.text}", (self.brand, *check.params)
        else:
            ids, check = self.driver.ids, self.check("c.twin", driven=True)
            source, where = Sql(f"({ids.text}) c", ids.params), check.text
            params = (*ids.params, *check.params)
        return int(
            self.tx.execute(
                f"SELECT COUNT(*) FROM (SELECT 1 FROM {source.text} WHERE {where} LIMIT ?) q",
                (*params, cap + 1),
            ).scalar()
        )

    def along_sort(self, limit: int, count: int) -> bool:
        """Whether walking the sort order's index is cheaper than sorting the driver's
        twins: the rows it would walk to fill a page, at the density the count shows
        (each a random read, :data:`WALK_COST`), against the index rows the driver
        reads."""
        if self.driver is None:
            return True
        if count == 0 or (limit + 1) * WALK_COST >= self.driver.cost:
            return False  # (the walk reads at least a page of rows)
        key = self.sort.key
        if key in ("twin", "last_seen", "first_seen"):
            rows = Sql("SELECT twin FROM twin_index WHERE brand = ?", (self.brand,))
        elif key == "churn_risk":
            rows = Sql(
                "SELECT twin FROM twin_index WHERE brand = ? AND churn_risk IS NOT NULL",
                (self.brand,),
            )
        else:
            # (the value's own partial index counts them: "field = ?" alone would not)
            column = "txt" if self.sort.text else "num"
            rows = Sql(
                f"SELECT twin FROM twin_fields WHERE brand = ? AND field = ? "
                f"AND {column} IS NOT NULL",
                (self.brand, key),
            )
        walk = (limit + 1) * self._rows.get(self.tx, rows) / count
        return walk * WALK_COST < self.driver.cost
