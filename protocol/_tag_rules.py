"""The tag rule language: a yes/no condition over a product's shared features.

A rule compares feature values (:func:`protocol.feature_names`) with numbers, joined by
``and`` / ``or``, negated by ``not``, grouped by parentheses::

    share_weekend >= 0.45 and active_days_28d >= 0.25
    not (habit_share_eco < 0.3 and habit_setpoint_c > 19.5)

Operators: ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``; ``and`` binds tighter than ``or``.
Nothing else: no arithmetic, no calls, no names but features, so a rule can be read by
the customer it describes (the access export quotes it) and evaluated by any device in
microseconds. Hard limits keep a hostile catalog cheap to refuse: :data:`MAX_RULE_CHARS`
characters, :data:`MAX_COMPARISONS` comparisons, :data:`MAX_DEPTH` nested groups.

Every refusal is a :class:`TagError` that says where and what to change.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ._errors import SchemaError

__all__ = ["MAX_COMPARISONS", "MAX_DEPTH", "MAX_RULE_CHARS", "TagError", "TagRule"]

MAX_RULE_CHARS = 240
MAX_COMPARISONS = 8
MAX_DEPTH = 4

_TOKEN = re.compile(
    r"\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<op><=|>=|==|!=|<|>)|(?P<paren>[()])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<bad>\S))"
)
_OPS = ("<", "<=", ">", ">=", "==", "!=")


class TagError(SchemaError):
    """A tag definition or catalog is malformed: unknown feature, bad operator, too long,
    a bad name or product, or a catalog that does not parse."""

    reason = "bad_tag"


# A parsed rule is a tree of tuples: ("cmp", feature, op, number), ("not", node),
# ("and", (nodes...)), ("or", (nodes...)).
_Node = tuple[object, ...]


@dataclass(frozen=True)
class TagRule:
    """A parsed, validated rule; :meth:`holds` evaluates it on a feature vector."""

    text: str
    features: tuple[str, ...]
    _tree: _Node

    @classmethod
    def parse(cls, text: str, allowed: tuple[str, ...]) -> TagRule:
        """Parse ``text`` over the features ``allowed``; raise :class:`TagError`."""
        if not isinstance(text, str) or not text.strip():
            raise TagError("a tag rule is empty: write a comparison such as 'share_evening >= 0.4'")
        if len(text) > MAX_RULE_CHARS:
            raise TagError(
                f"tag rule is {len(text)} characters, at most {MAX_RULE_CHARS}: simplify it",
                reason="too_long",
            )
        parser = _Parser(text, allowed)
        tree = parser.expression(0)
        if parser.pos < len(parser.tokens):
            _kind, value, at = parser.tokens[parser.pos]
            raise TagError(f"tag rule {text!r}: unexpected {value!r} at character {at}")
        return cls(text, tuple(sorted(parser.used)), tree)

    def holds(self, values: Mapping[str, float]) -> bool:
        """Whether the rule is true for ``values`` (feature -> value; all its features)."""
        return _eval(self._tree, values)


def _eval(node: _Node, values: Mapping[str, float]) -> bool:
    kind = node[0]
    if kind == "cmp":
        _k, feature, op, number = node
        v = float(values[str(feature)])
        n = float(number)  # type: ignore[arg-type]
        if not math.isfinite(v):
            return False
        return {
            "<": v < n,
            "<=": v <= n,
            ">": v > n,
            ">=": v >= n,
            "==": v == n,
            "!=": v != n,
        }[str(op)]
    if kind == "not":
        return not _eval(node[1], values)  # type: ignore[arg-type]
    parts: tuple[_Node, ...] = node[1]  # type: ignore[assignment]
    if kind == "and":
        return all(_eval(p, values) for p in parts)
    return any(_eval(p, values) for p in parts)


class _Parser:
    """Recursive descent over the tokens, with the limits checked as it goes."""

    def __init__(self, text: str, allowed: tuple[str, ...]) -> None:
        self.text = text
        self.allowed = allowed
        self.used: set[str] = set()
        self.comparisons = 0
        self.pos = 0
        self.tokens: list[tuple[str, str, int]] = []
        for m in _TOKEN.finditer(text):
            kind = m.lastgroup
            if kind is None:
                continue
            if kind == "bad":
                raise TagError(
                    f"tag rule {text!r}: {m.group(kind)!r} at character {m.start(kind)} is not "
                    f"part of the language (features, numbers, {' '.join(_OPS)}, and, or, not, "
                    "parentheses)",
                    reason="bad_operator",
                )
            self.tokens.append((kind, m.group(kind), m.start(kind)))

    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _fail(self, expected: str) -> TagError:
        token = self._peek()
        where = f"{token[1]!r} at character {token[2]}" if token else "the end"
        return TagError(f"tag rule {self.text!r}: expected {expected}, found {where}")

    def expression(self, depth: int) -> _Node:
        parts = [self._conjunction(depth)]
        while (t := self._peek()) is not None and t[:2] == ("word", "or"):
            self.pos += 1
            parts.append(self._conjunction(depth))
        return parts[0] if len(parts) == 1 else ("or", tuple(parts))

    def _conjunction(self, depth: int) -> _Node:
        parts = [self._factor(depth)]
        while (t := self._peek()) is not None and t[:2] == ("word", "and"):
            self.pos += 1
            parts.append(self._factor(depth))
        return parts[0] if len(parts) == 1 else ("and", tuple(parts))

    def _factor(self, depth: int) -> _Node:
        token = self._peek()
        if token is None:
            raise self._fail("a comparison")
        if token[:2] == ("word", "not"):
            self.pos += 1
            return ("not", self._factor(depth))
        if token[:2] == ("paren", "("):
            if depth >= MAX_DEPTH:
                raise TagError(
                    f"tag rule {self.text!r}: more than {MAX_DEPTH} nested parentheses",
                    reason="too_long",
                )
            self.pos += 1
            inner = self.expression(depth + 1)
            if self._peek() is None or self._peek()[:2] != ("paren", ")"):  # type: ignore[index]
                raise self._fail("')'")
            self.pos += 1
            return inner
        return self._comparison()

    def _comparison(self) -> _Node:
        name = self._peek()
        if name is None or name[0] != "word" or name[1] in ("and", "or", "not"):
            raise self._fail("a feature name")
        if name[1] not in self.allowed:
            raise TagError(
                f"tag rule {self.text!r}: unknown feature {name[1]!r} at character {name[2]}; "
                f"this product's features are {', '.join(self.allowed)}",
                reason="unknown_feature",
            )
        self.pos += 1
        op = self._peek()
        if op is None or op[0] != "op":
            raise TagError(
                f"tag rule {self.text!r}: after {name[1]!r} write one of {' '.join(_OPS)}",
                reason="bad_operator",
            )
        self.pos += 1
        number = self._peek()
        if number is None or number[0] != "num":
            raise self._fail("a number")
        self.pos += 1
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise TagError(
                f"tag rule {self.text!r}: more than {MAX_COMPARISONS} comparisons; split it",
                reason="too_long",
            )
        self.used.add(name[1])
        return ("cmp", name[1], op[1], float(number[1]))
