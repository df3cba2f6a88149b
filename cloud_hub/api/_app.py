"""serve: the HTTP API for brand backends (aiohttp).

Routes live under ``/v1/brands/{brand}/...`` so a tenancy/scope check can wrap them in
one place (cloud_hub.api._guard). Handlers raise what refuses a request; the one error
middleware (cloud_hub.api._errors) answers it as JSON ``{"error": {"code", "message"}}``
with a message that says what to change, counts it and logs why. Every wall-clock time a
route reads comes from the hub's clock (``CLOCK``).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from aiohttp import web

from cloud_hub._errors import RequestError
from cloud_hub._metrics import Metrics
from cloud_hub.ingest import SegmentFeed
from cloud_hub.store import (
    DEFAULT_PAGE,
    MAX_BUCKETS,
    MAX_PAGE,
    Cursor,
    IndexReader,
    SegmentProfiles,
    TwinReader,
    bucket_advice,
    bucket_count,
    parse_duration_ms,
)
from protocol import FIELDS, MODEL_FIELDS, Clock

from ._auth import ApiKeys
from ._context import CLOCK, FEED, INDEX, METRICS, PROFILES, READER, READY, ReadyProbe
from ._dashboard import add_dashboard_routes
from ._errors import refusals
from ._guard import add_key_routes, guard, route, setup
from ._listener import connection_limits
from ._params import path_brand, path_twin, query_int, query_text, time_range_ns
from ._segments import (
    segment_migration,
    segment_profile,
    segment_share_alerts,
    segment_sizes,
)
from ._stream import segment_change_events, stream_segment_changes
from ._twins import list_twins
from .openapi import serve_document

__all__ = ["build_app", "twin_scores"]


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: broker connected, InfluxDB and the state store answering."""
    checks = await request.app[READY]()
    return web.json_response(
        {"status": "ready" if all(checks.values()) else "unavailable", "checks": checks},
        status=200 if all(checks.values()) else 503,
    )


async def metrics_text(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    return web.Response(
        text=request.app[METRICS].render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Version": "0.0.4"},
    )


async def get_twin(request: web.Request) -> web.Response:
    """``GET /v1/brands/{brand}/twins/{twin}``: the merged current state."""
    brand, twin = path_brand(request), path_twin(request)
    state = await request.app[READER].state(brand, twin)
    if not state:
        raise RequestError(f"no twin {twin} for brand {brand}", reason="twin_not_found", status=404)
    fields = {
        name: {"value": fv.value, "updated_ms": fv.updated_ms, "device": fv.device}
        for name, fv in state.fields().items()
    }
    devices = sorted({fv["device"] for fv in fields.values()})
    body = {"brand": brand, "twin": twin, "fields": fields, "devices": devices}
    return web.json_response({**body, "scores": twin_scores(fields)})


def twin_scores(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Customer-level scores from the products' own: the churn risk of a customer is the
    highest of their devices' products (one product going quiet is the customer leaving;
    docs/models.md measures this at the twin level)."""
    risks = [
        (fields[f]["value"], product)
        for (product, output), f in MODEL_FIELDS.items()
        if output == "churn_risk" and f in fields
    ]
    if not risks:
        return {}
    value, product = max(risks)
    model_field = MODEL_FIELDS[(product, "churn_model")]
    return {
        "churn_risk": {
            "value": value,
            "product": product,
            "model": fields.get(model_field, {}).get("value"),
            "updated_ms": fields[MODEL_FIELDS[(product, "churn_risk")]]["updated_ms"],
        }
    }


async def twin_history(request: web.Request) -> web.Response:
    """``GET .../twins/{twin}/history?field=&start=&end=`` with ``every=`` (buckets) or
    ``limit=&after=`` (pages of raw points); see cloud_hub.store._history."""
    brand, twin = path_brand(request), path_twin(request)
    field = request.query.get("field", "")
    if field not in FIELDS:
        raise RequestError(f"field must be one of: {', '.join(sorted(FIELDS))}", reason="bad_field")
    start, end = time_range_ns(request)
    reader = request.app[READER]
    body: dict[str, Any] = {"brand": brand, "twin": twin, "field": field}
    every = request.query.get("every")
    if every is not None:
        try:
            every_ms = parse_duration_ms(every)
        except ValueError as exc:
            raise RequestError(str(exc), reason="bad_every") from None
        if "limit" in request.query or "after" in request.query:
            raise RequestError(
                "limit and after page raw points: leave them out with every=", reason="bad_limit"
            )
        if bucket_count(start, end, every_ms) > MAX_BUCKETS:
            raise RequestError(bucket_advice(start, end, every_ms), reason="too_many_buckets")
        try:
            points = await reader.history(brand, twin, field, start, end, every_ms)
        except OverflowError as exc:
            raise RequestError(str(exc), reason="too_many_points") from None
        return web.json_response({**body, "every": every, "points": points})
    limit = query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    after_raw = query_text(request, "after", 100)
    try:
        after = None if after_raw is None else Cursor.parse(after_raw)
    except ValueError as exc:
        raise RequestError(str(exc), reason="bad_after") from None
    try:
        points, cursor = await reader.history_page(brand, twin, field, start, end, limit, after)
    except OverflowError as exc:
        raise RequestError(str(exc), reason="too_many_points") from None
    body.update(every=None, points=points)
    if cursor is not None:
        query = {
            "field": field,
            "start": start // 1_000_000,
            "end": end // 1_000_000,
            "limit": limit,
            "after": cursor.encode(),
        }
        body["next"] = f"{request.path}?{urllib.parse.urlencode(query)}"
    return web.json_response(body)


async def list_devices(request: web.Request) -> web.Response:
    """``GET /v1/brands/{brand}/devices``: online status, last seen, seq, skew."""
    brand = path_brand(request)
    return web.json_response({"brand": brand, "devices": await request.app[READER].devices(brand)})


def build_app(
    *,
    reader: TwinReader,
    index: IndexReader | None,
    metrics: Metrics,
    ready: ReadyProbe,
    feed: SegmentFeed,
    keys: ApiKeys,
    url_signer: bytes,
    clock: Clock,
    profiles: SegmentProfiles | None = None,
) -> web.Application:
    """The aiohttp application with every route (each ``/v1`` route with its scope);
    ``index`` answers twin queries and ``profiles`` segment profiles (None: this instance
    does not keep the index)."""
    # The error path outermost: it answers what the limits, the guard and the handlers
    # raise. The limits before the guard: a probe connection past the cap gets health only.
    app = web.Application(middlewares=[refusals, connection_limits, guard])
    setup(app, keys, url_signer)
    app[READER] = reader
    app[INDEX] = index
    app[PROFILES] = profiles
    app[FEED] = feed
    app[METRICS] = metrics
    app[READY] = ready
    app[CLOCK] = clock
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_text)
    base = "/v1/brands/{brand}"
    route(app, "GET", f"{base}/twins", list_twins, "read")
    route(app, "GET", f"{base}/twins/{{twin}}", get_twin, "read")
    route(app, "GET", f"{base}/twins/{{twin}}/history", twin_history, "read")
    route(app, "GET", f"{base}/devices", list_devices, "read")
    route(app, "GET", f"{base}/segments/changes", segment_change_events, "read")
    route(app, "GET", f"{base}/segments/changes/stream", stream_segment_changes, "read")
    route(app, "GET", f"{base}/segments/sizes", segment_sizes, "read")
    route(app, "GET", f"{base}/segments/migration", segment_migration, "read")
    route(app, "GET", f"{base}/segments/profile", segment_profile, "read")
    route(app, "GET", f"{base}/segments/alerts", segment_share_alerts, "read")
    add_key_routes(app)
    # Every route is described there (cloud_hub/api/openapi/, one module per area).
    route(app, "GET", "/v1/openapi.json", serve_document, "public")
    # The brand dashboard: static pages that call the routes above (docs/dashboard.md).
    add_dashboard_routes(app)
    return app
