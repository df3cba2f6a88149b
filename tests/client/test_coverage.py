"""The client covers the hub's API as its OpenAPI document describes it.

- every operation of the document is a client call (:data:`twinsync.client.ROUTES`, same
  method and route), except the unauthenticated service routes, listed with why;
- :class:`Client` and :class:`AsyncClient` have the same methods with the same
  parameters, one per operation plus the named helpers;
- each method's result type has exactly the members the document's answer has, at every
  level (a member added to the hub's answer and its document without the client, or the
  other way round, fails here; tests/hub/test_openapi.py ties the document to the hub).

No hub is needed: the document is built in-process (``cloud_hub.api.openapi_document``).
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

from pydantic import BaseModel

from cloud_hub.api import openapi_document
from twinsync.client import ROUTES, AsyncClient, Client

#: operations no client method calls, and why
NOT_IN_CLIENT = {
    "get_health": "a load balancer's probe, no key",
    "get_readiness": "a load balancer's probe, no key",
    "get_metrics": "Prometheus scrapes it",
    "get_openapi": "for tools; the client is its Python form",
    "get_dashboard": "a page for a browser (docs/dashboard.md)",
    "get_dashboard_css": "the page's style sheet",
    "get_dashboard_module": "the page's scripts",
}
#: methods that are not one operation: (operation they use, or None)
HELPERS = {
    "iter_twins": "list_twins",
    "iter_twin_history": "get_twin_history",
    "get_twin_history_buckets": "get_twin_history",
    "close": None,
    "aclose": None,
    "brand": None,
}


def _operations() -> dict[str, tuple[str, str, dict[str, Any]]]:
    doc = openapi_document()
    return {
        op["operationId"]: (method.upper(), path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }


def _methods(cls: type) -> set[str]:
    # the clients join one mixin per API area: the methods of every class they are made of
    own = (vars(klass) for klass in cls.__mro__ if klass is not object)
    return {name for names in own for name in names if not name.startswith("_")}


def test_every_operation_is_a_client_call_on_its_route() -> None:
    operations = _operations()
    assert set(ROUTES) | set(NOT_IN_CLIENT) == set(operations)
    assert not set(ROUTES) & set(NOT_IN_CLIENT)
    for name, (method, path) in ROUTES.items():
        assert operations[name][:2] == (method, path), name


def test_both_clients_have_the_same_methods_with_the_same_parameters() -> None:
    sync_methods, async_methods = _methods(Client), _methods(AsyncClient)
    assert sync_methods - {"close"} == async_methods - {"aclose"}
    assert sync_methods - set(HELPERS) == set(ROUTES)
    for name in sync_methods - {"close", "aclose", "brand"}:
        blocking = inspect.signature(getattr(Client, name))
        awaited = inspect.signature(getattr(AsyncClient, name))
        assert blocking.parameters == awaited.parameters, name
        if name.startswith(("iter_", "stream_")):
            continue
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name
        assert blocking.return_annotation == awaited.return_annotation, name
    for name in sync_methods:
        assert getattr(Client, name).__doc__, f"Client.{name} has no docstring"


#: members the client keeps as a plain mapping on purpose: a rollout's target is one of
#: {"all": true}, {"percent": p}, {"cohort": name}, as the hub wrote it
AS_MAPPING = ("target",)


def _deref(node: Any, root: dict[str, Any]) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        parts = node["$ref"].removeprefix("#/").split("/")
        node = root
        for part in parts:
            node = node[part]
    if isinstance(node, dict) and "anyOf" in node:
        rest = [alt for alt in node["anyOf"] if alt != {"type": "null"}]
        if len(rest) == 1:
            return _deref(rest[0], root)
    return node


def _compare(
    mine: Any, doc: Any, where: str, roots: tuple[dict[str, Any], dict[str, Any]]
) -> list[str]:
    """How the client's schema ``mine`` differs from the document's ``doc``: the member
    names of every object, level by level (scalar types are the document's business)."""
    mine, doc = _deref(mine, roots[0]), _deref(doc, roots[1])
    if not isinstance(mine, dict) or not isinstance(doc, dict):
        return []
    if where.rsplit(".", 1)[-1] in AS_MAPPING and "additionalProperties" in mine:
        return []
    choices = doc.get("oneOf") or doc.get("anyOf")
    if choices:
        tried = [_compare(mine, alt, where, roots) for alt in choices]
        return [] if any(t == [] for t in tried) else [f"{where}: matches no alternative"]
    if "properties" in doc:
        theirs, ours = set(doc["properties"]), set(mine.get("properties", {}))
        if theirs != ours:
            return [f"{where}: document {sorted(theirs)} != client {sorted(ours)}"]
        problems = []
        for name in sorted(theirs):
            problems += _compare(
                mine["properties"][name], doc["properties"][name], f"{where}.{name}", roots
            )
        return problems
    if isinstance(doc.get("additionalProperties"), dict):
        values = mine.get("additionalProperties")
        return _compare(values, doc["additionalProperties"], f"{where}[*]", roots)
    if doc.get("type") == "array":
        return _compare(mine.get("items"), doc.get("items"), f"{where}[]", roots)
    return []


def test_each_result_type_has_the_documented_members() -> None:
    doc = openapi_document()
    operations = _operations()
    compared = 0
    for name in sorted(_methods(Client)):
        operation = name if name in ROUTES else HELPERS.get(name)
        if operation is None or name.startswith("iter_"):
            continue
        result = typing.get_type_hints(getattr(Client, name))["return"]
        if not (inspect.isclass(result) and issubclass(result, BaseModel)):
            continue  # bytes (a model file), the live stream
        _method, _path, op = operations[operation]
        status = next(s for s in op["responses"] if s.startswith("2"))
        schema = op["responses"][status]["content"]["application/json"]["schema"]
        mine = result.model_json_schema(by_alias=True)
        problems = _compare(mine, schema, f"{name} ({result.__name__})", (mine, doc))
        assert problems == [], problems
        compared += 1
    assert compared >= 25
