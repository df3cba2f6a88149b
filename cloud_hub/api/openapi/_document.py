"""The hub's OpenAPI 3.1 document, assembled from the areas' operations and schemas.

Each area (service, twins, privacy, models, keys) lists its routes as
:class:`~._schema.Operation` values; a route the hub serves without one here, or an
operation no route serves, fails tests/hub/test_openapi.py, which compares this
document with the running hub's router. The refusals every route shares are added
here, from who may call it: the guard's 401 and 403, the state store's and the
connection cap's 503, the body limit's 413, InfluxDB's 503/400/500 for a route that
reads it, and 500 ``internal_error`` (cloud_hub/_errors.py draws the tree).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
from collections import defaultdict
from typing import Any, Final

from aiohttp import web

from . import (
    _dashboard,
    _keys,
    _lab,
    _models,
    _privacy,
    _segments,
    _service,
    _triggers,
    _twins,
)
from ._schema import Operation, Schema, obj, string

__all__ = ["OPERATIONS", "document", "document_bytes", "serve_document"]

#: every documented route: a new area adds its module here
_AREAS: Final = (
    _service,
    _twins,
    _segments,
    _privacy,
    _models,
    _keys,
    _dashboard,
    _triggers,
    _lab,
)
OPERATIONS: Final[tuple[Operation, ...]] = tuple(op for area in _AREAS for op in area.OPERATIONS)

_TAGS: Final = {
    "twins": "twin ids, state, history and consent (scope read)",
    "fleet": "devices: online, last seen, models (scope read)",
    "segments": "segment changes (queried or streamed), sizes over time, migration, "
    "profiles and share alerts (scope read)",
    "privacy": "data-subject requests: access, consent, erasure, objection, rectification",
    "webhooks": "where privacy events go (scope admin)",
    "models": "model files and their manifests",
    "rollouts": "cohorts and rollouts of models to devices",
    "keys": "API keys and the audit log (scope admin)",
    "service": "probes, metrics and this document (no key)",
    "lab": "the strategy lab: campaign forecasts (scope read) and experiments (write)",
    "dashboard": "the brand dashboard's pages (no key: they call the API with the user's)",
    "triggers": "trigger rules, their signed webhooks and event stream (scope triggers)",
}
_DESCRIPTION: Final = """\
The HTTP API of a TwinSync hub, for brand backends (docs/brand-api.md walks through it
with the Python client, `twinsync.client`).

**Keys.** Every `/v1/brands/{brand}/...` route takes a key of that brand as
`Authorization: Bearer tsk_<id>_<secret>` (`twinsync hub apikey create`). A key belongs
to one brand and carries scopes: `read` (twins, history, devices, segments, models,
cohorts, rollouts), `write`, `privacy` (data-subject requests), `admin` (model upload,
cohorts, rollouts, webhook, keys, audit log) and `triggers` (trigger rules and events).
Each operation's `security` names the scope it needs. 401 without a valid key, 403 for
another brand's key or a missing scope.

**Errors** are always `{"error": {"code": "...", "message": "..."}}`: `code` is stable (a
client branches on it), `message` says what to change. Each response lists the codes it
can carry. 503 answers may carry `Retry-After` (seconds).

**Limits.** Every number in a query or path is 1-19 ASCII digits within the bounds shown;
times are Unix milliseconds. JSON bodies are at most 1 MiB (413
`request_entity_too_large`).

**Pages.** A page that is not the last carries `next`, the URL of the next one.

Answers may gain members in later versions: ignore what you do not know."""


def _version() -> str:
    try:
        return importlib.metadata.version("twinsync")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "0+unknown"


def _error(codes: set[str]) -> Schema:
    return obj(
        {"error": obj({"code": string(enum=sorted(codes)), "message": string("what to change")})}
    )


def _error_codes(op: Operation) -> dict[int, set[str]]:
    codes: dict[int, set[str]] = defaultdict(set)
    for status, mine in op.errors.items():
        codes[status].update(mine)
    codes[500].add("internal_error")
    if op.path.startswith("/v1/"):
        codes[503].add("too_many_connections")  # past the connection cap (docs/hub.md)
    if op.scope != "public":
        codes[401].update(("unauthenticated", "bad_key", "revoked_key"))
        codes[403].update(("wrong_brand", "missing_scope"))
        codes[503].add("state_unavailable")  # the key could not be looked up
    if op.body is not None and op.body_type == "application/json":
        codes[413].add("request_entity_too_large")
    if op.store:
        codes[503].add("store_unavailable")
        codes[400].add("query_too_large")
        codes[500].add("query_refused")
    return codes


_HEADERS: Final = {
    401: {
        "WWW-Authenticate": {
            "description": "the Bearer challenge",
            "schema": string(),
        }
    },
    503: {
        "Retry-After": {
            "description": "seconds to wait before trying again (when it is worth it)",
            "schema": string(pattern="^[0-9]+$"),
        }
    },
}


def _content(media_type: str, schema: Schema | None) -> dict[str, Any]:
    if schema is None:
        schema = string(contentMediaType=media_type)
    return {media_type: {"schema": schema}}


def _security(op: Operation) -> list[dict[str, list[str]]]:
    if op.scope == "public":
        return []
    if op.scope == "device":
        return [{"brandKey": ["read"]}, {"signedUrl": []}]
    return [{"brandKey": [op.scope]}]


def _operation(op: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(op.status): {
            "description": op.answer_text,
            "content": _content(op.answer_type, op.answer),
        }
    }
    for status, (what, schema) in op.other_answers.items():
        responses[str(status)] = {"description": what, "content": _content(op.answer_type, schema)}
    for status, codes in sorted(_error_codes(op).items()):
        response: dict[str, Any] = {
            "description": ", ".join(sorted(codes)),
            "content": _content("application/json", _error(codes)),
        }
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        responses[str(status)] = response
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "security": _security(op),
        "parameters": [p.to_openapi() for p in op.params],
        "responses": responses,
    }
    if op.description:
        out["description"] = op.description
    if op.body is not None:
        body: dict[str, Any] = {"schema": op.body}
        if op.body_type == "multipart/form-data":
            body["encoding"] = {"manifest": {"contentType": "application/json"}}
        out["requestBody"] = {"required": True, "content": {op.body_type: body}}
    return out


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route the hub serves (a new dict each call)."""
    paths: dict[str, dict[str, Any]] = defaultdict(dict)
    for op in OPERATIONS:
        paths[op.path][op.method.lower()] = _operation(op)
    schemas: dict[str, Schema] = {
        "Error": _error({"<code>"})
        | {"description": "the one shape of every error (codes listed per response)"}
    }
    schemas["Error"]["properties"]["error"]["properties"]["code"] = string()
    for area in _AREAS:
        schemas.update(area.SCHEMAS)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TwinSync hub API",
            "version": _version(),
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [{"name": name, "description": text} for name, text in _TAGS.items()],
        "paths": dict(paths),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "brandKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "tsk_<id>_<secret>",
                    "description": "a brand's API key; the roles listed per operation are "
                    "the scope it needs (read, write, privacy, admin, triggers)",
                },
                "signedUrl": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "sig",
                    "description": "the signature of a model file URL from a device's "
                    "signed model set (with its sha256 parameter)",
                },
            },
        },
    }


@functools.cache
def document_bytes() -> bytes:
    """The document as served: JSON, built once per process (it never changes)."""
    return json.dumps(document(), separators=(",", ":")).encode()


async def serve_document(_request: web.Request) -> web.Response:
    """``GET /v1/openapi.json``: the document, to anyone (it holds no tenant's data)."""
    return web.Response(body=document_bytes(), content_type="application/json")
