"""serve: who may call which route (API keys, brands, scopes) and the audit trail.

Every route under ``/v1/`` is registered with :func:`route` and the scope it needs; the
:func:`guard` middleware then answers, before any handler runs:

- 401 ``unauthenticated`` without ``Authorization: Bearer <key>``, ``bad_key`` /
  ``revoked_key`` for a key that is not valid;
- 403 ``wrong_brand`` when the key belongs to another brand than the path's;
- 403 ``missing_scope`` when the key lacks the route's scope.

A route registered with scope ``"public"`` (the OpenAPI document) takes no key: it
answers the same to everyone and holds no tenant's data.

A route registered with scope ``"device"`` (the model file download) also accepts a
capability instead of a key: the ``sig`` parameter of the URL the hub put in a device's
signed model set, an HMAC over brand, model and file hash with a secret derived from the
hub's signing key (so every instance sharing ``hub.key`` accepts it; nobody without it
can make one).

Refusals are raised as :class:`~cloud_hub.AuthError` and answered by the API's one error
path (cloud_hub.api._errors). Requests that change something, and every ``privacy`` or
``admin`` request, are written to the audit log with the route *template*, never the
concrete path, and the status they were answered with.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from cloud_hub._errors import AuthError, CloudHubError, RequestError
from cloud_hub.models import model_url_signature

from ._auth import SCOPES, ApiKey, ApiKeys
from ._errors import status_of
from ._params import ascii_int, query_int

__all__ = [
    "KEYS",
    "add_key_routes",
    "guard",
    "route",
    "route_scopes",
    "setup",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KEYS = web.AppKey("api_keys", ApiKeys)
_SCOPES = web.AppKey("route_scopes", dict[tuple[str, str], str])
_SIGNER = web.AppKey("url_signer", bytes)
_AUDITED_SCOPES = frozenset(("privacy", "admin"))
#: what a route may be registered with: a key's scope, "device" (a key with read or a
#: model file's signed URL), "public" (no key)
_ROUTE_SCOPES = frozenset((*SCOPES, "device", "public"))


def setup(app: web.Application, keys: ApiKeys, signer: bytes) -> None:
    """Attach the key store and URL signer the guard uses."""
    app[KEYS] = keys
    app[_SIGNER] = signer
    app[_SCOPES] = {}


def route(app: web.Application, method: str, path: str, handler: Handler, scope: str) -> None:
    """Register ``handler`` and the scope a key needs to call it."""
    if scope not in _ROUTE_SCOPES:
        # A typo here would leave a route unguarded or unusable: refuse to start.
        raise ValueError(f"route {method} {path}: unknown scope {scope!r}")
    app.router.add_route(method, path, handler)
    app[_SCOPES][(method, path)] = scope
    if method == "GET":
        app[_SCOPES][("HEAD", path)] = scope


def route_scopes(app: web.Application) -> dict[tuple[str, str], str]:
    """(method, route template) -> scope, of every ``/v1`` route of ``app`` (``public``:
    no key)."""
    scopes: dict[tuple[str, str], str] = app[_SCOPES]
    return dict(scopes)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate and authorise ``/v1`` requests; audit what must be audited."""
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else ""
    scope = request.app[_SCOPES].get((request.method, path)) if path.startswith("/v1/") else None
    if scope is None or scope == "public":
        return await handler(request)  # health, metrics, the OpenAPI document, 404, 405
    brand = request.match_info.get("brand", "")
    if scope == "device" and _capability_ok(request, brand):
        return await handler(request)
    key = await _authenticate(request)
    needed = "read" if scope == "device" else scope
    if key.brand != brand:
        raise AuthError(
            f"this key belongs to brand {key.brand!r}, not {brand!r}",
            reason="wrong_brand",
            status=403,
        )
    if needed not in key.scopes:
        raise AuthError(
            f"{request.method} {path} needs scope {needed!r}; this key has {sorted(key.scopes)}",
            reason="missing_scope",
            status=403,
        )
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except (web.HTTPException, CloudHubError) as exc:
        status = status_of(exc)  # what the error path answers for it
        raise
    finally:
        if request.method not in ("GET", "HEAD") or scope in _AUDITED_SCOPES:
            await asyncio.to_thread(
                request.app[KEYS].audit, key.brand, key.key_id, request.method, path, status
            )


async def _authenticate(request: web.Request) -> ApiKey:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError(
            "send the brand's API key as 'Authorization: Bearer <key>' "
            "(create one with 'twinsync hub apikey create')",
            reason="unauthenticated",
        )
    return await asyncio.to_thread(request.app[KEYS].authenticate, token.strip())


def _capability_ok(request: web.Request, brand: str) -> bool:
    sig = request.query.get("sig")
    sha = request.query.get("sha256")
    if not sig or not sha:
        return False
    info = request.match_info
    version = ascii_int(info.get("version", ""), 0, 10**12)
    if version is None:
        return False
    expected = model_url_signature(request.app[_SIGNER], brand, info.get("name", ""), version, sha)
    # The handler serves the file only if its hash is this sha256 (see model_file).
    return hmac.compare_digest(expected, sig)


async def _json_object(request: web.Request) -> dict[str, object]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise RequestError("send a JSON object", reason="bad_json")
    return body


async def create_key(request: web.Request) -> web.Response:
    """``POST /v1/brands/{brand}/keys`` ``{"name", "scopes": [...]}``: the token, once."""
    body = await _json_object(request)
    name, scopes = body.get("name"), body.get("scopes")
    if not isinstance(name, str) or not isinstance(scopes, list):
        raise AuthError(
            '"name" (text) and "scopes" (list) are required', reason="bad_key_request", status=400
        )
    key, token = await asyncio.to_thread(
        request.app[KEYS].create, request.match_info["brand"], name, [str(s) for s in scopes]
    )
    return web.json_response({**key.summary(), "token": token}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    """``GET /v1/brands/{brand}/keys``: every key's facts (never a secret)."""
    brand = request.match_info["brand"]
    keys = await asyncio.to_thread(request.app[KEYS].list, brand)
    return web.json_response({"brand": brand, "keys": [k.summary() for k in keys]})


async def revoke_key(request: web.Request) -> web.Response:
    """``DELETE /v1/brands/{brand}/keys/{key_id}``."""
    key = await asyncio.to_thread(
        request.app[KEYS].revoke, request.match_info["brand"], request.match_info["key_id"]
    )
    return web.json_response(key.summary())


async def audit_log(request: web.Request) -> web.Response:
    """``GET /v1/brands/{brand}/audit?limit=``: newest first."""
    brand = request.match_info["brand"]
    limit = query_int(request, "limit", 100, 1, 1000)
    rows = await asyncio.to_thread(request.app[KEYS].audit_log, brand, limit)
    return web.json_response({"brand": brand, "audit": rows})


def add_key_routes(app: web.Application) -> None:
    """Key management and the audit log (scope ``admin``)."""
    base = "/v1/brands/{brand}"
    route(app, "POST", f"{base}/keys", create_key, "admin")
    route(app, "GET", f"{base}/keys", list_keys, "admin")
    route(app, "DELETE", f"{base}/keys/{{key_id}}", revoke_key, "admin")
    route(app, "GET", f"{base}/audit", audit_log, "admin")
