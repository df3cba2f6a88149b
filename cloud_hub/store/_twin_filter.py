"""What a twin query asks, as a tree, and that tree as parameterised SQL on the index.

The API parses the ``where`` text (cloud_hub.api._twin_query) into these nodes; only
this module knows the index's tables (``_twin_index``), and it writes SQL text from code
alone: every field name, tag, product, number, text and time a client sent is a
parameter (:class:`Sql`). A filter becomes two pieces (the reader,
``_twin_index_read``, puts them together):

- :func:`driver`: the twin ids of the fewest index rows that hold every match: one
  condition's range in ``(brand, field, value, twin)``, ``(brand, product, twin)`` or a
  twin column's index; for ``and`` the smallest of its parts' (counted on the store),
  for ``or`` the union of its parts';
- :func:`matches`: whether one twin matches the whole filter, each condition a lookup by
  the tables' keys (``EXISTS`` on ``(brand, twin, field)`` and the like).

So a query reads what its most selective condition names and looks up the rest per twin:
its cost follows the matches, not the brand's size (docs/benchmarks.md, "Twin queries").

Semantics, as docs/brand-api.md states them: a comparison holds for twins that hold the
field with a value that compares so (``coffee.strength != 3`` needs the field;
``not coffee.strength = 3`` does not); ``churn_risk`` is the twin's highest product
churn risk; ``tag has x`` holds when any product's ``<product>.tag_x`` is true.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from protocol import PRODUCTS

from ._state_tx import marks

__all__ = [
    "OPERATORS",
    "And",
    "Compare",
    "Driver",
    "Filter",
    "HasProduct",
    "HasTag",
    "Not",
    "OneOf",
    "Or",
    "Size",
    "Sql",
    "TwinColumn",
    "driver",
    "matches",
    "tag_fields",
]

Operator: TypeAlias = Literal["=", "!=", "<", "<=", ">", ">="]
#: comparison operators and their SQL
OPERATORS: dict[str, str] = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
#: the twin's own columns a query may compare: name -> column of ``twin_index``
_TWIN_COLUMNS = {
    "last_seen": "t.last_seen_ms",
    "first_seen": "t.first_seen_ms",
    "churn_risk": "t.churn_risk",
}


@dataclass(frozen=True, slots=True)
class Compare:
    """``field op value``: a twin field (``num`` for numbers and booleans, ``txt`` for text)."""

    field: str
    op: Operator
    value: float | str


@dataclass(frozen=True, slots=True)
class OneOf:
    """``field in (v1, v2, ...)``."""

    field: str
    values: tuple[float | str, ...]


@dataclass(frozen=True, slots=True)
class TwinColumn:
    """``last_seen``, ``first_seen`` (Unix ms, an integer) or ``churn_risk`` compared
    with a number."""

    name: Literal["last_seen", "first_seen", "churn_risk"]
    op: Operator
    value: float | int


@dataclass(frozen=True, slots=True)
class HasTag:
    """``tag has name``: any product's boolean field ``<product>.tag_<name>`` is true."""

    tag: str


@dataclass(frozen=True, slots=True)
class HasProduct:
    """``product = name``: the twin holds a field of that product."""

    product: str


@dataclass(frozen=True, slots=True)
class And:
    """``a and b and ...``."""

    parts: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """``a or b or ...``."""

    parts: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """``not a``."""

    part: Filter


Filter: TypeAlias = Compare | OneOf | TwinColumn | HasTag | HasProduct | And | Or | Not


def tag_fields(tag: str) -> tuple[str, ...]:
    """The fields that carry behaviour tag ``tag``: one per product."""
    return tuple(f"{product}.tag_{tag}" for product in PRODUCTS)


@dataclass(frozen=True, slots=True)
class Sql:
    """A piece of SQL written by this module and its parameters (values a client sent
    are only ever here, never in ``text``)."""

    text: str
    params: tuple[object, ...] = ()


#: how many twins a source yields, counted on the store (the reader passes it in)
Size: TypeAlias = Callable[[Sql], int]


def _column(value: float | str) -> str:
    return "txt" if isinstance(value, str) else "num"


def _source(node: Filter, brand: str) -> Sql | None:
    """A query of twin ids (column ``twin``) holding every twin that matches the
    condition ``node`` (a leaf), from one index range; None when no index range serves
    it (``!=``: its matches are most twins)."""
    if isinstance(node, Compare) and node.op != "!=":
        column = _column(node.value)
        return Sql(
            f"SELECT twin FROM twin_fields WHERE brand = ? AND field = ? "
            f"AND {column} {OPERATORS[node.op]} ?",
            (brand, node.field, node.value),
        )
    if isinstance(node, OneOf):
        return Sql(
            f"SELECT twin FROM twin_fields WHERE brand = ? AND field = ? "
            f"AND {_column(node.values[0])} IN ({marks(len(node.values))})",
            (brand, node.field, *node.values),
        )
    if isinstance(node, HasTag):
        names = tag_fields(node.tag)
        return Sql(
            f"SELECT twin FROM twin_fields WHERE brand = ? AND field IN ({marks(len(names))}) "
            "AND num = 1",
            (brand, *names),
        )
    if isinstance(node, HasProduct):
        return Sql(
            "SELECT twin FROM twin_products WHERE brand = ? AND product = ?", (brand, node.product)
        )
    if isinstance(node, TwinColumn):
        column = _TWIN_COLUMNS[node.name].removeprefix("t.")
        return Sql(
            f"SELECT twin FROM twin_index WHERE brand = ? AND {column} {OPERATORS[node.op]} ?",
            (brand, node.value),
        )
    return None


@dataclass(frozen=True, slots=True)
class Driver:
    """The twin ids of the index rows that hold every match of a filter, and what is
    left to check of the filter for each (None: nothing, the ids are the matches)."""

    ids: Sql
    rest: Filter | None
    #: the index rows reading the ids takes (the sizes of the ranges it reads)
    cost: int


def _parts(node: Filter) -> list[Filter]:
    """The conditions of a conjunction, nested ones flattened."""
    if isinstance(node, And):
        return [leaf for part in node.parts for leaf in _parts(part)]
    return [node]


def _ids(node: Filter, brand: str) -> Sql | None:
    """The twin ids that match ``node`` exactly, each once, from index ranges: a
    condition's range, or for ``or`` the union of its parts' (when each has one)."""
    if isinstance(node, Or):
        parts = [_ids(part, brand) for part in node.parts]
        chosen = [p for p in parts if p is not None]
        if len(chosen) != len(parts):
            return None
        return Sql(
            " UNION ".join(p.text for p in chosen), tuple(v for p in chosen for v in p.params)
        )
    leaf = _source(node, brand)
    if leaf is None or not isinstance(node, HasTag):
        return leaf
    # A twin may hold a tag under several products: each once.
    return Sql(f"SELECT DISTINCT twin FROM ({leaf.text}) d", leaf.params)


#: conditions whose ids are at most this many times the fewest are intersected with
#: them (reading an index range in order is far cheaper than a lookup per twin)
_INTERSECT_RATIO = 20


def _in_key_order(node: Filter) -> bool:
    """Whether the ids of ``node``'s range come in twin order (one value, or a few: the
    index is (brand, field, value, twin)), so lookups for them hit neighbouring pages."""
    return isinstance(node, OneOf | HasProduct | HasTag) or (
        isinstance(node, Compare) and node.op == "="
    )


def driver(node: Filter, brand: str, size: Size) -> Driver | None:
    """The fewest twin ids that hold every match of ``node``, from index ranges, and the
    conditions left to check per twin. Of a conjunction's conditions that have a range
    (``size`` counts their ids on the store), the fewest ids; when those come in value
    order (a range), intersected with those of the others within
    :data:`_INTERSECT_RATIO` of it; the rest is checked per twin.
    None: no condition has an index range (a ``not``, a ``!=``, an ``or`` with such a
    part); the reader then goes through every twin of the brand, or along the sort
    order."""
    parts = _parts(node)
    options = [(ids, part) for part in parts if (ids := _ids(part, brand)) is not None]
    if not options:
        return None
    ids, first = min(options, key=lambda option: size(option[0]))
    chosen = [(ids, first)]
    if not _in_key_order(first):
        # A range yields its twins in value order: a lookup per twin lands on a random
        # page, so the other ranges are read (in order) and intersected instead.
        limit = _INTERSECT_RATIO * size(ids)
        chosen += [(i, part) for i, part in options if part is not first and size(i) <= limit]
    served = [part for _ids_, part in chosen]
    rest = [part for part in parts if all(part is not s for s in served)]
    ids = Sql(
        " INTERSECT ".join(i.text for i, _part in chosen),
        tuple(v for i, _part in chosen for v in i.params),
    )
    cost = sum(size(i) for i, _part in chosen)
    left = None if not rest else rest[0] if len(rest) == 1 else And(tuple(rest))
    return Driver(ids, left, cost)


def matches(node: Filter, brand: str, twin: str, row: str | None = None) -> Sql:
    """Whether the twin whose id is the SQL expression ``twin`` matches ``node``: each
    condition a lookup by the index tables' keys, so it costs the same whatever the
    brand's size. With ``row``, the alias of the twin's ``twin_index`` row in the query,
    its own columns are compared there (so a range on the sort column bounds the walk)."""
    params: list[object] = []
    return Sql(_match(node, brand, twin, row, params), tuple(params))


def _probe(table: str, condition: str) -> str:
    return f"EXISTS (SELECT 1 FROM {table} WHERE brand = ? AND twin = {{twin}} AND {condition})"


def _match(node: Filter, brand: str, twin: str, row: str | None, params: list[object]) -> str:
    if isinstance(node, Compare):
        params += [brand, node.field, node.value]
        condition = f"field = ? AND {_column(node.value)} {OPERATORS[node.op]} ?"
        return _probe("twin_fields", condition).format(twin=twin)
    if isinstance(node, OneOf):
        params += [brand, node.field, *node.values]
        condition = f"field = ? AND {_column(node.values[0])} IN ({marks(len(node.values))})"
        return _probe("twin_fields", condition).format(twin=twin)
    if isinstance(node, HasTag):
        names = tag_fields(node.tag)
        params += [brand, *names]
        condition = f"field IN ({marks(len(names))}) AND num = 1"
        return _probe("twin_fields", condition).format(twin=twin)
    if isinstance(node, HasProduct):
        params += [brand, node.product]
        return _probe("twin_products", "product = ?").format(twin=twin)
    if isinstance(node, TwinColumn):
        column = _TWIN_COLUMNS[node.name].removeprefix("t.")
        comparison = f"{column} {OPERATORS[node.op]} ?"
        if row is not None:
            params.append(node.value)
            if node.name != "churn_risk":
                return f"{row}.{comparison}"
            # no churn risk (NULL): false, so "not churn_risk > x" holds for such twins
            return f"({row}.{column} IS NOT NULL AND {row}.{comparison})"
        params += [brand, node.value]
        return _probe("twin_index", comparison).format(twin=twin)
    if isinstance(node, Not):
        return f"NOT ({_match(node.part, brand, twin, row, params)})"
    joiner = " AND " if isinstance(node, And) else " OR "
    return "(" + joiner.join(_match(p, brand, twin, row, params) for p in node.parts) + ")"
