"""serve: data-subject requests (scope ``privacy``); see _erasure.py and docs/privacy.md.

    POST /v1/brands/{brand}/privacy/access    {"subject": "<the brand's customer id>"}
    POST /v1/brands/{brand}/privacy/erasure   {"subject": "<the brand's customer id>"}
    POST /v1/brands/{brand}/privacy/objection {"subject": ...}: no more profiling
    POST /v1/brands/{brand}/privacy/rectification
         {"subject", "set": {field: value}, "suppress": [field, ...]}: edit the twin
    GET  /v1/brands/{brand}/privacy/requests  every request, its deadline and receipt

The subject identifier travels in the body (never in a URL, which proxies log), is used
to recompute the twin ids and is then forgotten: it is not stored, logged or audited.
Refusals are raised (a :class:`~cloud_hub.RequestError` for the request, an
:class:`~cloud_hub.IncompleteError` when a procedure could not finish) and answered by the
API's one error path (cloud_hub.api._errors).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cloud_hub._config import InfluxSettings, RetentionSettings
from cloud_hub._errors import RequestError
from cloud_hub.privacy import (
    PURPOSE_TEXT,
    ConsentChanges,
    Erasures,
    FieldBlocks,
    Objections,
    Rectifier,
    RequestLedger,
    Subjects,
    Webhooks,
    parse_rectification,
    twin_export,
)
from cloud_hub.store import TwinReader
from protocol import (
    DEFAULT_TAGS,
    OPTIONAL_PURPOSES,
    TagCatalog,
    TwinSyncError,
    check_notice,
    check_purposes,
)

from ._auth import ApiKeys
from ._context import CLOCK
from ._guard import route
from ._params import path_twin

__all__ = ["PRIVACY", "PrivacyContext", "add_privacy_routes"]


@dataclass(frozen=True, kw_only=True)
class PrivacyContext:
    """What the data-subject routes need from the hub."""

    subjects: Subjects
    ledger: RequestLedger
    blocks: FieldBlocks
    erasures: Erasures
    objections: Objections
    rectifier: Rectifier
    consent: ConsentChanges
    webhooks: Webhooks
    reader: TwinReader
    keys: ApiKeys
    influx: InfluxSettings
    retention: RetentionSettings
    #: the tag catalogs whose rules the access export can quote, by ref (tags@<n>)
    tag_catalogs: Mapping[str, TagCatalog] = field(
        default_factory=lambda: {DEFAULT_TAGS.ref: DEFAULT_TAGS}
    )


PRIVACY = web.AppKey("privacy", PrivacyContext)
_SUBJECT_MAX = 256


async def _subject_request(
    request: web.Request,
    act: Callable[[PrivacyContext, str, str, dict[str, Any]], Awaitable[dict[str, Any]]],
) -> web.Response:
    """Check a request about one subject, run ``act(ctx, brand, subject, body)`` and
    answer its signed receipt."""
    body, subject = await _request(request)
    receipt = await act(request.app[PRIVACY], request.match_info["brand"], subject, body)
    return web.json_response(receipt)


async def erase(request: web.Request) -> web.Response:
    """Erase one customer's twin; answers with the signed receipt."""
    return await _subject_request(
        request, lambda ctx, brand, subject, _body: ctx.erasures.erase(brand, subject)
    )


async def objection(request: web.Request) -> web.Response:
    """Objection to profiling (Art. 21): features and predictions of the customer's twins
    stop being computed on their devices, are removed and no longer stored, until they
    consent again; answers with the signed receipt (see cloud_hub.privacy._objection)."""
    return await _subject_request(
        request, lambda ctx, brand, subject, _body: ctx.objections.object(brand, subject)
    )


async def rectification(request: web.Request) -> web.Response:
    """Rectification / "edit my twin" (Art. 16, 18): customer-asserted values (``set``),
    fields no longer collected (``suppress``) or collected again (``restore``); answers
    with the signed receipt (see cloud_hub.privacy._rectify). A bad field or value is refused
    before anything changes."""
    return await _subject_request(
        request,
        lambda ctx, brand, subject, body: ctx.rectifier.rectify(
            brand, subject, parse_rectification(body)
        ),
    )


def _retention(ctx: PrivacyContext, database_policy: str) -> dict[str, str]:
    """How long each field class is kept, as the access export states it."""
    settings = ctx.retention
    out = {}
    for cls in ("usage", "profile"):
        limit = getattr(settings, cls)
        out[f"twin_{cls}_fields"] = f"{limit}, or until erased" if limit else "until erased"
    out["twin_points"] = database_policy  # InfluxDB's policy: the ceiling for all
    return out


async def access(request: web.Request) -> web.Response:
    """Everything held about one customer (Art. 15/20): fields, sources, purposes,
    predictions with their model and an explanation, recipients, retention."""
    brand = request.match_info["brand"]
    _body, subject = await _request(request)
    ctx = request.app[PRIVACY]
    clock = request.app[CLOCK]
    received = clock.now_ms()
    twins = ctx.subjects.twins(brand, subject)
    exports = []
    for twin in twins:
        state = await ctx.reader.state(brand, twin)
        if state:
            points = await ctx.reader.point_count(brand, twin)
            exports.append(twin_export(twin, state, points, catalogs=ctx.tag_catalogs))
    keys = await asyncio.to_thread(ctx.keys.list, brand)
    recipients = sorted(k.name for k in keys if not k.revoked and "read" in k.scopes)
    settings = ctx.influx
    kept = await ctx.reader.retention(settings.database, settings.retention_policy)
    request_id = await asyncio.to_thread(
        ctx.ledger.record,
        brand,
        "access",
        received,
        {"twins": len(exports), "fields": sum(len(e["fields"]) for e in exports)},
    )
    return web.json_response(
        {
            "request_id": request_id,
            "brand": brand,
            "generated_ms": clock.now_ms(),
            "twins": exports,
            "purposes": PURPOSE_TEXT,
            "recipients": {
                "brand_backends": recipients,
                "note": f"systems of {brand} holding an API key that may read twins",
            },
            "retention": {**_retention(ctx, kept), "device_outbox": "until the hub confirms"},
            # objections and suppressions in force (the fields they cover are not stored)
            "restrictions": await asyncio.to_thread(ctx.blocks.of_twins, brand, twins),
            "pseudonymization": "your identifier never left your devices; twins are keyed "
            "by a keyed hash of it (docs/privacy.md)",
        }
    )


async def _request(request: web.Request) -> tuple[dict[str, Any], str]:
    """The JSON body and its checked ``subject`` (400 ``bad_subject`` otherwise)."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    subject = body.get("subject") if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or not isinstance(subject, str)
        or not 1 <= len(subject.strip()) <= _SUBJECT_MAX
    ):
        raise RequestError(
            f'send {{"subject": "<1-{_SUBJECT_MAX} characters>"}}', reason="bad_subject"
        )
    return body, subject


async def change_consent(request: web.Request) -> web.Response:
    """The customer told the brand: change their consent on every device that knows them.

    ``{"subject", "purposes": {"marketing": false}, "notice": "v3"}``; answers 202: the
    devices apply it within seconds and their ledger entries reach the twin
    (``GET .../twins/{twin}/consent``)."""
    brand = request.match_info["brand"]
    body, subject = await _request(request)
    try:
        purposes = dict(check_purposes(body.get("purposes")))
        notice = check_notice(body.get("notice"))
    except TwinSyncError as exc:
        raise RequestError(str(exc), reason="bad_consent") from None
    ctx = request.app[PRIVACY]
    twins = ctx.subjects.twins(brand, subject)
    # Consent to profiling given again ends an objection (cloud_hub.privacy._objection).
    request_id = await ctx.consent.change(brand, twins, purposes, notice)
    return web.json_response(
        {"request_id": request_id, "twins": twins, "purposes": purposes, "notice": notice},
        status=202,
    )


async def twin_consent(request: web.Request) -> web.Response:
    """``GET .../twins/{twin}/consent``: the current choice per purpose and the ledger."""
    brand, twin = request.match_info["brand"], path_twin(request)
    ledger = await request.app[PRIVACY].reader.consent(brand, twin)
    current: dict[str, dict[str, object]] = {}
    for entry in ledger:  # oldest first: later entries win
        for purpose in OPTIONAL_PURPOSES:
            if entry.get(purpose) is not None:
                current[purpose] = {
                    "granted": entry[purpose],
                    "since_ms": entry["time_ms"],
                    "by": entry["actor"],
                    "notice": entry["notice"],
                }
    return web.json_response(
        {
            "brand": brand,
            "twin": twin,
            "current": current,
            "default": "optional purposes are off until the customer agrees",
            "ledger": ledger,
        }
    )


async def put_webhook(request: web.Request) -> web.Response:
    """``PUT .../webhook`` ``{"url"}``: where erasure and consent events go; answers the
    signing secret (shown once). A URL the egress policy refuses is 400 ``bad_url`` or
    ``url_refused`` (cloud_hub.privacy._egress)."""
    brand = request.match_info["brand"]
    try:
        body = await request.json()
    except ValueError:
        body = None
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str):
        raise RequestError('send {"url": "https://..."}', reason="bad_url")
    secret = await asyncio.to_thread(request.app[PRIVACY].webhooks.register, brand, url)
    return web.json_response({"brand": brand, "url": url, "secret": secret})


async def get_webhook(request: web.Request) -> web.Response:
    """``GET .../webhook``: the endpoint and how many events wait for it."""
    brand = request.match_info["brand"]
    endpoint = await asyncio.to_thread(request.app[PRIVACY].webhooks.endpoint, brand)
    if endpoint is None:
        raise RequestError("no webhook registered for this brand", reason="no_webhook", status=404)
    return web.json_response({"brand": brand, **endpoint})


async def list_requests(request: web.Request) -> web.Response:
    """Every privacy request of the brand, newest first."""
    brand = request.match_info["brand"]
    rows = await asyncio.to_thread(request.app[PRIVACY].ledger.requests, brand)
    return web.json_response({"brand": brand, "requests": rows})


def add_privacy_routes(app: web.Application, ctx: PrivacyContext) -> None:
    """Register the data-subject routes."""
    app[PRIVACY] = ctx
    base = "/v1/brands/{brand}/privacy"
    route(app, "POST", f"{base}/access", access, "privacy")
    route(app, "POST", f"{base}/consent", change_consent, "privacy")
    route(app, "PUT", "/v1/brands/{brand}/webhook", put_webhook, "admin")
    route(app, "GET", "/v1/brands/{brand}/webhook", get_webhook, "admin")
    route(app, "GET", "/v1/brands/{brand}/twins/{twin}/consent", twin_consent, "read")
    route(app, "POST", f"{base}/erasure", erase, "privacy")
    route(app, "POST", f"{base}/objection", objection, "privacy")
    route(app, "POST", f"{base}/rectification", rectification, "privacy")
    route(app, "GET", f"{base}/requests", list_requests, "privacy")
