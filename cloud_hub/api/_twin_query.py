"""The twin query language of ``GET /v1/brands/{brand}/twins?where=...``: parsed into
the index's filter tree (cloud_hub.store's ``Filter``), with errors that say where.

Grammar (keywords in any case; docs/brand-api.md, "Finding twins", is the user's guide)::

    where     := or
    or        := and ("or" and)*
    and       := unary ("and" unary)*
    unary     := "not" unary | "(" or ")" | condition
    condition := FIELD OP value                 coffee.churn_risk > 0.7, thermostat.mode = eco
               | FIELD "in" "(" value ("," value)* ")"           coffee.segment in (1, 3)
               | "tag" "has" NAME                                 tag has weekend_heavy
               | "product" ("=" | "!=") NAME                      product = coffee
               | ("last_seen" | "first_seen") OP time             last_seen > -7d
               | "churn_risk" OP number                           churn_risk >= 0.5
    OP        := "=" | "!=" | "<" | "<=" | ">" | ">="
    value     := number | 'text' | "text" | bare-word | true | false
    time      := -<n>(s|m|h|d|w) (before now) | 2026-12-01[T10:00[:00][Z|+01:00]] | Unix ms

A value must suit its field's type (catalog: numbers for int and float fields, true or
false for booleans with ``=``/``!=``, text for text fields). Nothing parsed here becomes
SQL text: the tree's values are parameters of the SQL the store writes.

Hostile input is bounded before any work: the text (:data:`MAX_WHERE` printable ASCII
characters), nesting (:data:`MAX_DEPTH` levels of parentheses and ``not``), conditions
(:data:`MAX_TERMS`), values per ``in`` list (:data:`MAX_IN`) and text values
(:data:`MAX_TEXT`). Every refusal is 400 ``bad_where`` naming the character position
(1-based) and what was expected there.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from dataclasses import dataclass
from typing import Literal, NoReturn, cast

from cloud_hub._errors import RequestError
from cloud_hub.store import (
    And,
    Compare,
    Filter,
    HasProduct,
    HasTag,
    Not,
    OneOf,
    Or,
    TwinColumn,
)
from protocol import FIELDS, PRODUCTS

__all__ = ["MAX_DEPTH", "MAX_IN", "MAX_TERMS", "MAX_TEXT", "MAX_WHERE", "parse_where"]

#: the longest ``where`` text accepted (characters)
MAX_WHERE = 2000
#: the deepest nesting of parentheses and ``not``
MAX_DEPTH = 16
#: the most conditions in one query
MAX_TERMS = 32
#: the most values in one ``in (...)`` list
MAX_IN = 100
#: the longest text value
MAX_TEXT = 256

_UNITS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<op><=|>=|!=|=|<|>)
    |(?P<punct>[(),])
    |(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    |(?P<ago>-[0-9]{1,9}[smhdw](?![A-Za-z0-9_.]))
    |(?P<iso>[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?
        (?:Z|[+-][0-9]{2}:?[0-9]{2})?)?(?![A-Za-z0-9_.:]))
    |(?P<number>-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?(?![A-Za-z0-9_.]))
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)""",
    re.VERBOSE,
)
_KEYWORDS = frozenset({"and", "or", "not", "in", "has", "tag", "product", "true", "false"})
_SEEN = ("last_seen", "first_seen")
_TAG = re.compile(r"^[a-z0-9_]{1,64}$")
_NAMES = sorted([*FIELDS, *_SEEN, "churn_risk", "tag", "product"])

Kind = Literal["op", "punct", "string", "ago", "iso", "number", "name", "end"]


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Kind
    text: str
    at: int  # 0-based position in the where text

    @property
    def word(self) -> str:
        """A name token in lower case (keywords are case-free), else ''."""
        return self.text.lower() if self.kind == "name" else ""


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            _fail(text, at, f"unexpected character {text[at]!r}")
        if match.lastgroup != "ws":
            out.append(_Token(cast(Kind, match.lastgroup), match.group(), at))
        at = match.end()
    out.append(_Token("end", "", len(text)))
    return out


def _fail(text: str, at: int, why: str) -> NoReturn:
    near = text[at : at + 24]
    where = f"at character {at + 1}" + (f" ({near!r})" if near else " (the end)")
    raise RequestError(f"where, {where}: {why}", reason="bad_where")


class _Parser:
    def __init__(self, text: str, now_ms: int) -> None:
        self.text = text
        self.now_ms = now_ms
        self.tokens = _tokens(text)
        self.i = 0
        self.terms = 0

    # -- tokens -----------------------------------------------------------------------
    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, why: str, token: _Token | None = None) -> NoReturn:
        _fail(self.text, (token or self.tok).at, why)

    def expect_punct(self, char: str, what: str) -> None:
        if self.tok.kind != "punct" or self.tok.text != char:
            self.fail(f"expected {char!r} {what}")
        self.take()

    # -- grammar ----------------------------------------------------------------------
    def parse(self) -> Filter:
        node = self.or_(0)
        if self.tok.kind != "end":
            self.fail("expected 'and', 'or' or the end of the query")
        return node

    def or_(self, depth: int) -> Filter:
        parts = [self.and_(depth)]
        while self.tok.word == "or":
            self.take()
            parts.append(self.and_(depth))
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_(self, depth: int) -> Filter:
        parts = [self.unary(depth)]
        while self.tok.word == "and":
            self.take()
            parts.append(self.unary(depth))
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self, depth: int) -> Filter:
        if depth >= MAX_DEPTH:
            self.fail(f"nested more than {MAX_DEPTH} levels deep (parentheses and 'not')")
        if self.tok.word == "not":
            self.take()
            return Not(self.unary(depth + 1))
        if self.tok.kind == "punct" and self.tok.text == "(":
            self.take()
            node = self.or_(depth + 1)
            self.expect_punct(")", "to close the parenthesis")
            return node
        return self.condition()

    def condition(self) -> Filter:
        start = self.tok
        if start.kind != "name" or start.word in ("and", "or", "in", "has", "true", "false"):
            self.fail("expected a condition: a field, last_seen, churn_risk, tag or product")
        self.terms += 1
        if self.terms > MAX_TERMS:
            self.fail(f"more than {MAX_TERMS} conditions in one query")
        self.take()
        if start.word == "tag":
            return self.tag()
        if start.word == "product":
            return self.product()
        if start.word in _SEEN or start.word == "churn_risk":
            return self.column(start.word)  # words of the language: any case, as keywords
        name = start.text
        if name not in FIELDS:
            close = difflib.get_close_matches(name, _NAMES, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            self.fail(f"unknown field {name!r}{hint}; docs/brand-api.md lists them", start)
        if self.tok.word == "in":
            self.take()
            return self.one_of(name)
        op = self.operator()
        return Compare(name, op, self.value(name, op))

    def operator(self) -> Literal["=", "!=", "<", "<=", ">", ">="]:
        if self.tok.kind != "op":
            self.fail("expected an operator: =, !=, <, <=, >, >= (or 'in' for a field)")
        return cast(Literal["=", "!=", "<", "<=", ">", ">="], self.take().text)

    def tag(self) -> Filter:
        if self.tok.word != "has":
            self.fail("expected 'has' after 'tag' (tag has <name>)")
        self.take()
        token = self.take()
        if token.kind not in ("name", "string") or not _TAG.match(_unquote(token)):
            self.fail("expected a tag name (lower-case letters, digits, _)", token)
        return HasTag(_unquote(token))

    def product(self) -> Filter:
        op = self.operator()
        if op not in ("=", "!="):
            self.fail("a product is compared with = or !=")
        token = self.take()
        name = _unquote(token) if token.kind in ("name", "string") else ""
        if name not in PRODUCTS:
            self.fail(f"expected a product: one of {', '.join(PRODUCTS)}", token)
        node = HasProduct(name)
        return node if op == "=" else Not(node)

    def column(self, name: str) -> Filter:
        op = self.operator()
        token = self.take()
        if name == "churn_risk":
            if token.kind != "number":
                self.fail("churn_risk is compared with a number (0 to 1)", token)
            return TwinColumn("churn_risk", op, float(token.text))
        return TwinColumn(cast(Literal["last_seen", "first_seen"], name), op, self.time(token))

    def time(self, token: _Token) -> int:
        """Unix ms (an integer: compared with a float, PostgreSQL would not use the
        column's index)."""
        if token.kind == "ago":
            return self.now_ms - int(token.text[1:-1]) * _UNITS[token.text[-1]]
        if token.kind == "number" and token.text.isdigit() and len(token.text) <= 16:
            return int(token.text)
        if token.kind == "iso":
            try:
                when = dt.datetime.fromisoformat(token.text.replace("Z", "+00:00"))
            except ValueError as exc:
                self.fail(f"not a date: {exc}", token)
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            return round(when.timestamp() * 1000)
        return self.fail(
            "expected a time: -7d (s, m, h, d or w before now), an ISO date "
            "(2026-12-01 or 2026-12-01T10:00:00Z) or Unix ms",
            token,
        )

    def one_of(self, field: str) -> Filter:
        self.expect_punct("(", "after 'in'")
        values = [self.value(field, "=")]
        while self.tok.kind == "punct" and self.tok.text == ",":
            self.take()
            if len(values) >= MAX_IN:
                self.fail(f"more than {MAX_IN} values in one 'in' list")
            values.append(self.value(field, "="))
        self.expect_punct(")", "to close the 'in' list (values separated by ',')")
        return OneOf(field, tuple(values))

    def value(self, field: str, op: str) -> float | str:
        token = self.take()
        kind = FIELDS[field].type
        if kind == "bool":
            if token.word not in ("true", "false") or op not in ("=", "!="):
                self.fail(f"{field} is true or false, compared with = or !=", token)
            return 1.0 if token.word == "true" else 0.0
        if kind == "str":
            if token.kind == "string" or (token.kind == "name" and token.word not in _KEYWORDS):
                text = _unquote(token)
                if len(text) > MAX_TEXT:
                    self.fail(f"a text value is at most {MAX_TEXT} characters", token)
                return text
            self.fail(f"{field} holds text: give a word or a quoted text", token)
        if token.kind != "number":
            self.fail(f"{field} holds numbers: give a number", token)
        number = float(token.text)
        if not math.isfinite(number):
            self.fail("a number must be finite", token)
        return number


def _unquote(token: _Token) -> str:
    if token.kind != "string":
        return token.text
    return re.sub(r"\\(.)", r"\1", token.text[1:-1])


def parse_where(text: str, now_ms: int) -> Filter:
    """The filter ``text`` describes (module docstring); relative times count back from
    ``now_ms``. Raises RequestError ``bad_where`` naming the position of the problem."""
    if len(text) > MAX_WHERE or not (text.isascii() and text.isprintable()):
        raise RequestError(
            f"where must be at most {MAX_WHERE} printable ASCII characters", reason="bad_where"
        )
    if not text.strip():
        raise RequestError("where is empty: leave it out to list every twin", reason="bad_where")
    return _Parser(text, now_ms).parse()
