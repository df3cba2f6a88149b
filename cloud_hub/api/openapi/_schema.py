"""The building blocks of the API's OpenAPI document: JSON Schema and :class:`Operation`.

OpenAPI 3.1 schemas are JSON Schema 2020-12, so these helpers write plain JSON Schema.
Each area of the API (api/openapi/_twins.py, _privacy.py, ...) declares its routes as
:class:`Operation` values next to the schemas of what they answer; _document.py
assembles them. An object's properties are never split across ``allOf`` parts: the
tests close every object schema (``additionalProperties: false``) to check that the hub
answers nothing undocumented, which a split object would not survive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "FIELD_VALUE",
    "MS",
    "Operation",
    "Param",
    "Schema",
    "array",
    "boolean",
    "integer",
    "mapping",
    "nullable",
    "number",
    "obj",
    "ref",
    "string",
]

Schema = dict[str, Any]


def string(description: str = "", **keywords: Any) -> Schema:
    """A string (``pattern``, ``enum``, ``maxLength`` ... as keywords)."""
    return _described({"type": "string", **keywords}, description)


def integer(description: str = "", **keywords: Any) -> Schema:
    """An integer (``minimum``, ``maximum`` ... as keywords)."""
    return _described({"type": "integer", **keywords}, description)


def number(description: str = "", **keywords: Any) -> Schema:
    """A number."""
    return _described({"type": "number", **keywords}, description)


def boolean(description: str = "") -> Schema:
    """true or false."""
    return _described({"type": "boolean"}, description)


def nullable(schema: Schema) -> Schema:
    """``schema`` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: Schema, description: str = "", **keywords: Any) -> Schema:
    """A list of ``items``."""
    return _described({"type": "array", "items": items, **keywords}, description)


def mapping(values: Schema, description: str = "", **keywords: Any) -> Schema:
    """An object keyed by data (field names, purposes, devices) with ``values``."""
    return _described({"type": "object", "additionalProperties": values, **keywords}, description)


def obj(
    required: Mapping[str, Schema],
    optional: Mapping[str, Schema] | None = None,
    description: str = "",
) -> Schema:
    """An object with these properties (every one of ``required`` always present)."""
    properties = {**required, **(optional or {})}
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = sorted(required)
    return _described(out, description)


def ref(name: str) -> Schema:
    """A reference to ``#/components/schemas/<name>``."""
    return {"$ref": f"#/components/schemas/{name}"}


def _described(schema: Schema, description: str) -> Schema:
    return {**schema, "description": description} if description else schema


#: a time: Unix milliseconds
MS: Final = integer("Unix milliseconds", minimum=0)
#: a twin field's value: its type is the catalog's (float, int, str or bool)
FIELD_VALUE: Final = {"type": ["string", "number", "boolean"]}


@dataclass(frozen=True, kw_only=True)
class Param:
    """A path, query or header parameter."""

    name: str
    where: Literal["path", "query", "header"]
    schema: Schema
    description: str
    required: bool = False
    #: a value the route accepts (tools show it; the tests call the route with it)
    example: Any = None

    def to_openapi(self) -> dict[str, Any]:
        """The Parameter Object."""
        out: dict[str, Any] = {
            "name": self.name,
            "in": self.where,
            "description": self.description,
            "required": self.required or self.where == "path",
            "schema": self.schema,
        }
        if self.example is not None:
            out["example"] = self.example
        return out


#: who may call a route: a key's scope, ``device`` (a ``read`` key or the signed URL of a
#: device's model set) or ``public`` (no key: health, metrics, this document)
Scope = Literal["read", "write", "privacy", "admin", "triggers", "device", "public"]


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One route and method: what it takes, what it answers, how it refuses."""

    method: Literal["GET", "POST", "PUT", "DELETE"]
    path: str
    #: the operation's id, also the name of the twinsync.client method that calls it
    operation_id: str
    summary: str
    tag: str
    scope: Scope
    description: str = ""
    params: tuple[Param, ...] = ()
    #: the request body's schema (None: no body)
    body: Schema | None = None
    body_type: str = "application/json"
    #: the success status, its schema (None: not JSON, see ``answer_type``) and meaning
    status: int = 200
    answer: Schema | None = None
    answer_type: str = "application/json"
    answer_text: str = "the answer"
    #: the error codes (``error.code``) the route itself answers, by HTTP status; the
    #: guard's, the body limit's and the database's are added by _document.py
    errors: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    #: other answers that are no error (``/readyz``'s 503): status -> (meaning, schema)
    other_answers: Mapping[int, tuple[str, Schema]] = field(default_factory=dict)
    #: reads or writes InfluxDB (its refusals: 503 ``store_unavailable`` and friends)
    store: bool = False
