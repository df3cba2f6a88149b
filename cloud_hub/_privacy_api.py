"""serve: data-subject requests (scope ``privacy``); see _erasure.py and docs/privacy.md.

    POST /v1/brands/{brand}/privacy/erasure   {"subject": "<the brand's customer id>"}
    GET  /v1/brands/{brand}/privacy/requests  every request, its deadline and receipt

The subject identifier travels in the body (never in a URL, which proxies log), is used
to recompute the twin ids and is then forgotten: it is not stored, logged or audited.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from ._erasure import Erasures
from ._errors import CloudHubError
from ._guard import route

__all__ = ["ERASURES", "add_privacy_routes"]

ERASURES = web.AppKey("erasures", Erasures)
_SUBJECT_MAX = 256


def _fail(status: int, code: str, message: str) -> web.Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, text=body, content_type="application/json")


async def erase(request: web.Request) -> web.Response:
    """Erase one customer's twin; answers with the signed receipt."""
    brand = request.match_info["brand"]
    try:
        body = await request.json()
    except ValueError:
        body = None
    subject = body.get("subject") if isinstance(body, dict) else None
    if not isinstance(subject, str) or not 1 <= len(subject.strip()) <= _SUBJECT_MAX:
        return _fail(400, "bad_subject", f'send {{"subject": "<1-{_SUBJECT_MAX} characters>"}}')
    try:
        receipt = await request.app[ERASURES].erase(brand, subject)
    except CloudHubError as exc:
        status = {"unknown_brand": 404, "bad_subject": 400}.get(exc.reason, 503)
        return _fail(status, exc.reason, str(exc))
    return web.json_response(receipt)


async def list_requests(request: web.Request) -> web.Response:
    """Every privacy request of the brand, newest first."""
    brand = request.match_info["brand"]
    rows = await asyncio.to_thread(request.app[ERASURES].requests, brand)
    return web.json_response({"brand": brand, "requests": rows})


def add_privacy_routes(app: web.Application, erasures: Erasures) -> None:
    """Register the data-subject routes."""
    app[ERASURES] = erasures
    base = "/v1/brands/{brand}/privacy"
    route(app, "POST", f"{base}/erasure", erase, "privacy")
    route(app, "GET", f"{base}/requests", list_requests, "privacy")
