"""What a twin query asks, as a tree, and that tree as parameterised SQL on the index.

The API parses the ``where`` text (cloud_hub.api._twin_query) into these nodes; only
this module knows the index's tables (``_twin_index``), and it writes SQL text from code
alone: every field name, tag, product, number, text and time a client sent is a
parameter. Each node is a condition on the twin row ``t`` of ``twin_index``; a field
condition is a membership test in the twins whose ``twin_fields`` row matches
(``t.twin IN (SELECT ...)``), which both backends answer from the index on (brand,
field, value) whether it is selective or not.

Semantics, as docs/brand-api.md states them: a comparison holds for twins that hold the
field with a value that compares so (``coffee.strength != 3`` needs the field;
``not coffee.strength = 3`` does not); ``churn_risk`` is the twin's highest product
churn risk; ``tag has x`` holds when any product's ``<product>.tag_x`` is true.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from protocol import PRODUCTS

from ._state_tx import marks

__all__ = [
    "OPERATORS",
    "And",
    "Compare",
    "Filter",
    "HasProduct",
    "HasTag",
    "Not",
    "OneOf",
    "Or",
    "TwinColumn",
    "tag_fields",
    "to_sql",
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
    """``last_seen``, ``first_seen`` (Unix ms) or ``churn_risk`` compared with a number."""

    name: Literal["last_seen", "first_seen", "churn_risk"]
    op: Operator
    value: float


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


def _column(value: float | str) -> str:
    return "f.txt" if isinstance(value, str) else "f.num"


def to_sql(node: Filter, brand: str) -> tuple[str, list[object]]:
    """``node`` as a condition on ``twin_index t`` of ``brand``, and its parameters."""
    params: list[object] = []
    return _sql(node, brand, params), params


def _fields(condition: str) -> str:
    return f"t.twin IN (SELECT f.twin FROM twin_fields f WHERE f.brand = ? AND {condition})"


def _sql(node: Filter, brand: str, params: list[object]) -> str:
    if isinstance(node, Compare):
        params += [brand, node.field, node.value]
        return _fields(f"f.field = ? AND {_column(node.value)} {OPERATORS[node.op]} ?")
    if isinstance(node, OneOf):
        params += [brand, node.field, *node.values]
        return _fields(f"f.field = ? AND {_column(node.values[0])} IN ({marks(len(node.values))})")
    if isinstance(node, TwinColumn):
        params.append(node.value)
        return f"{_TWIN_COLUMNS[node.name]} {OPERATORS[node.op]} ?"
    if isinstance(node, HasTag):
        names = tag_fields(node.tag)
        params += [brand, *names]
        return _fields(f"f.field IN ({marks(len(names))}) AND f.num = 1")
    if isinstance(node, HasProduct):
        params += [brand, node.product]
        return "t.twin IN (SELECT p.twin FROM twin_products p WHERE p.brand = ? AND p.product = ?)"
    if isinstance(node, Not):
        # A NULL column (no churn risk) makes the comparison unknown: "not" of it holds.
        return f"NOT COALESCE(({_sql(node.part, brand, params)}), FALSE)"
    joiner = " AND " if isinstance(node, And) else " OR "
    return "(" + joiner.join(_sql(part, brand, params) for part in node.parts) + ")"
