"""serve: the HTTP API for brand backends (aiohttp).

Routes live under ``/v1/brands/{brand}/...`` so a tenancy/scope check can wrap them in
one place. Errors are JSON ``{"error": {"code", "message"}}`` with a message that says
what to change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from cloud_hub._errors import StoreError
from cloud_hub._metrics import Metrics
from cloud_hub.ingest import SegmentFeed, Subscriber
from cloud_hub.store import (
    DEFAULT_PAGE,
    MAX_BUCKETS,
    MAX_CHANGES,
    MAX_PAGE,
    Cursor,
    TwinReader,
    bucket_advice,
    bucket_count,
    parse_duration_ms,
)
from protocol import FIELDS, MODEL_FIELDS, PRODUCTS, TwinSyncError, check_brand, check_twin

from ._auth import ApiKeys
from ._errors import bad_request, error_body, error_response
from ._guard import add_key_routes, guard, route, setup
from ._listener import connection_limits
from ._params import query_int, query_text, query_time_ns

__all__ = ["READER", "build_app"]

log = logging.getLogger("cloud_hub.api")

READER = web.AppKey("reader", TwinReader)
FEED = web.AppKey("feed", SegmentFeed)
_KEEPALIVE_S = 15.0
METRICS = web.AppKey("metrics", Metrics)
ReadyProbe = Callable[[], Awaitable[dict[str, bool]]]
READY: web.AppKey[ReadyProbe] = web.AppKey("ready")


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """JSON bodies for every error, and every refused request counted and logged."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        _refused(request, exc.status, exc.reason)
        if exc.content_type != "application/json":
            return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        raise
    except StoreError as exc:
        return _store_error(request, exc)
    except ConnectionResetError:
        raise  # the client went away: nobody to answer
    except Exception:
        # A bug: logged with its traceback; the client gets the one error shape, not
        # aiohttp's text page with the exception's text.
        log.exception("api %s failed", _route(request))
        _refused(request, 500, "internal_error")
        return error_response(500, "internal_error", "the hub failed to answer; it logged why")
    if response.status >= 400:
        _refused(request, response.status, response.reason)
    return response


def _store_error(request: web.Request, exc: StoreError) -> web.Response:
    """InfluxDB's failure as an answer. Its own text (a parser message, a query) is only
    logged: it says nothing a client can act on and shows how queries are built."""
    where = _route(request)
    if exc.retryable:  # unreachable, timed out, 5xx: it may answer on a retry
        log.warning("api %s: InfluxDB unavailable: %s", where, exc)
        _refused(request, 503, "store_unavailable")
        return error_response(
            503,
            "store_unavailable",
            "the database is unavailable; retry later",
            headers={"Retry-After": "5"},
        )
    if "max-select-" in str(exc):  # InfluxDB's own read limits (points, series, buckets)
        log.warning("api %s: InfluxDB refused a read this large: %s", where, exc)
        _refused(request, 400, "query_too_large")
        return error_response(
            400,
            "query_too_large",
            "the database refused to read this much for one request: narrow the range "
            "(start, end) or ask for fewer points",
        )
    # Every parameter is checked before a query is built, so a refused query is a bug.
    log.error("api %s: InfluxDB refused the query: %s", where, exc)
    _refused(request, 500, "query_refused")
    return error_response(
        500, "query_refused", "the database refused this query; the hub logged why"
    )


def _route(request: web.Request) -> str:
    # The route template, not the path: a path can hold a twin id.
    resource = request.match_info.route.resource
    where = resource.canonical if resource is not None else "(no route)"
    return f"{request.method} {where}"


def _refused(request: web.Request, status: int, why: str) -> None:
    request.app[METRICS].inc("twinsync_hub_api_refused_total", status=str(status))
    log.info("api %s refused: %d %s", _route(request), status, why)


def _brand(request: web.Request) -> str:
    try:
        return check_brand(request.match_info["brand"])
    except TwinSyncError as exc:
        raise web.HTTPBadRequest(
            text=error_body("bad_brand", str(exc)), content_type="application/json"
        ) from None


def _twin(request: web.Request) -> str:
    try:
        return check_twin(request.match_info["twin"])
    except TwinSyncError as exc:
        raise web.HTTPBadRequest(
            text=error_body("bad_twin", str(exc)), content_type="application/json"
        ) from None


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: broker connected and InfluxDB answering."""
    checks = await request.app[READY]()
    return web.json_response(
        {"status": "ready" if all(checks.values()) else "unavailable", "checks": checks},
        status=200 if all(checks.values()) else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    return web.Response(
        text=request.app[METRICS].render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Version": "0.0.4"},
    )


async def list_twins(request: web.Request) -> web.Response:
    """``GET /v1/brands/{brand}/twins?limit=100&after=<twin>``."""
    brand = _brand(request)
    limit = query_int(request, "limit", 100, 1, 10_000)
    after = request.query.get("after")
    if after is not None:
        try:
            check_twin(after)
        except TwinSyncError:
            raise bad_request("bad_after", "after must be a twin id (the last of a page)") from None
    twins = await request.app[READER].list_twins(brand, limit, after)
    body: dict[str, Any] = {"brand": brand, "twins": twins}
    if len(twins) == limit:
        body["next"] = f"/v1/brands/{brand}/twins?limit={limit}&after={twins[-1]}"
    return web.json_response(body)


async def get_twin(request: web.Request) -> web.Response:
    """``GET /v1/brands/{brand}/twins/{twin}``: the merged current state."""
    brand, twin = _brand(request), _twin(request)
    state = await request.app[READER].state(brand, twin)
    if not state:
        return error_response(404, "twin_not_found", f"no twin {twin} for brand {brand}")
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


def _range_ns(request: web.Request) -> tuple[int, int]:
    """``start`` and ``end`` (Unix ms; default the last 7 days) in ns, start < end."""
    now_ms = time.time_ns() // 1_000_000
    end = query_time_ns(request, "end", now_ms + 1)
    start = query_time_ns(request, "start", max(0, now_ms - 7 * 86_400_000))
    if start >= end:
        raise bad_request("bad_range", "start must be before end")
    return start, end


async def twin_history(request: web.Request) -> web.Response:
    """``GET .../twins/{twin}/history?field=&start=&end=`` with ``every=`` (buckets) or
    ``limit=&after=`` (pages of raw points); see cloud_hub.store._history."""
    brand, twin = _brand(request), _twin(request)
    field = request.query.get("field", "")
    if field not in FIELDS:
        raise bad_request("bad_field", f"field must be one of: {', '.join(sorted(FIELDS))}")
    start, end = _range_ns(request)
    reader = request.app[READER]
    body: dict[str, Any] = {"brand": brand, "twin": twin, "field": field}
    every = request.query.get("every")
    if every is not None:
        try:
            every_ms = parse_duration_ms(every)
        except ValueError as exc:
            raise bad_request("bad_every", str(exc)) from None
        if "limit" in request.query or "after" in request.query:
            raise bad_request(
                "bad_limit", "limit and after page raw points: leave them out with every="
            )
        if bucket_count(start, end, every_ms) > MAX_BUCKETS:
            raise bad_request("too_many_buckets", bucket_advice(start, end, every_ms))
        try:
            points = await reader.history(brand, twin, field, start, end, every_ms)
        except OverflowError as exc:
            raise bad_request("too_many_points", str(exc)) from None
        return web.json_response({**body, "every": every, "points": points})
    limit = query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    after_raw = query_text(request, "after", 100)
    try:
        after = None if after_raw is None else Cursor.parse(after_raw)
    except ValueError as exc:
        raise bad_request("bad_after", str(exc)) from None
    try:
        points, cursor = await reader.history_page(brand, twin, field, start, end, limit, after)
    except OverflowError as exc:
        raise bad_request("too_many_points", str(exc)) from None
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


async def segment_change_events(request: web.Request) -> web.Response:
    """``GET /v1/brands/{brand}/segments/changes?product=&start=&end=&limit=``."""
    brand = _brand(request)
    product = request.query.get("product", "")
    start, end = _range_ns(request)
    limit = query_int(request, "limit", MAX_CHANGES, 1, MAX_CHANGES)
    try:
        events = await request.app[READER].segment_changes(brand, product, start, end, limit)
    except ValueError as exc:
        raise bad_request("bad_product", str(exc)) from None
    except OverflowError as exc:
        raise bad_request("too_many_changes", str(exc)) from None
    return web.json_response({"brand": brand, "product": product, "changes": events})


async def stream_segment_changes(request: web.Request) -> web.StreamResponse:
    """``GET /v1/brands/{brand}/segments/changes/stream?product=&since=``: Server-Sent
    Events, one ``segment_change`` per change as the hub stores it (see _events.py).

    ``since`` (Unix ms) or a ``Last-Event-ID`` header replays the changes from then on
    first (the query path), so a client that reconnects misses nothing; an event's id is
    its ``time_ms``. Delivery is at least once: dedupe on (twin, time_ms).
    """
    brand = _brand(request)
    product = request.query.get("product", "")
    if product not in PRODUCTS:
        raise bad_request("bad_product", f"product must be one of: {', '.join(sorted(PRODUCTS))}")
    since_raw = request.headers.get("Last-Event-ID") or request.query.get("since")
    # Checked before subscribing: a refused request leaves nothing behind.
    since_ns = None if since_raw is None else query_time_ns(request, "since", 0, raw=since_raw)
    feed = request.app[FEED]
    async with feed.subscribe(brand, product) as sub:  # before the replay: no gap
        replay: list[dict[str, Any]] = []
        if since_ns is not None:
            end_ns = time.time_ns() + 1
            try:
                replay = await request.app[READER].segment_changes(
                    brand, product, since_ns, end_ns, MAX_CHANGES
                )
            except OverflowError as exc:
                raise bad_request("too_many_changes", str(exc)) from None
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the client went away
            for event in replay:
                await response.write(_sse(event))
            await _pump(request, response, sub, feed)
    return response


async def _pump(
    request: web.Request, response: web.StreamResponse, sub: Subscriber, feed: SegmentFeed
) -> None:
    loop = asyncio.get_running_loop()
    quiet_since, dropped = loop.time(), 0
    while not feed.closed:
        # aiohttp does not cancel a handler whose client left: look every second.
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        try:
            async with asyncio.timeout(1.0):
                event = await sub.queue.get()
        except TimeoutError:
            if loop.time() - quiet_since >= _KEEPALIVE_S:
                await response.write(b": keepalive\n\n")
                quiet_since = loop.time()
            continue
        if event is None:
            return
        await response.write(_sse(event))
        quiet_since = loop.time()
        if sub.dropped != dropped:
            # The client is slower than the fleet: say so, it can re-query the range.
            dropped = sub.dropped
            note = json.dumps({"dropped": dropped})
            await response.write(f"event: overflow\ndata: {note}\n\n".encode())


def _sse(event: dict[str, Any]) -> bytes:
    return (
        f"id: {event['time_ms']}\nevent: segment_change\ndata: {json.dumps(event)}\n\n"
    ).encode()


async def list_devices(request: web.Request) -> web.Response:
    """``GET /v1/brands/{brand}/devices``: online status, last seen, seq, skew."""
    brand = _brand(request)
    return web.json_response({"brand": brand, "devices": await request.app[READER].devices(brand)})


def build_app(
    reader: TwinReader,
    metrics_: Metrics,
    ready: Callable[[], Awaitable[dict[str, bool]]],
    feed: SegmentFeed,
    keys: ApiKeys,
    url_signer: bytes,
) -> web.Application:
    """The aiohttp application with every route (each ``/v1`` route with its scope)."""
    # The limits before the guard: a probe connection past the cap gets health only.
    app = web.Application(middlewares=[_errors, connection_limits, guard])
    setup(app, keys, url_signer)
    app[READER] = reader
    app[FEED] = feed
    app[METRICS] = metrics_
    app[READY] = ready
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    base = "/v1/brands/{brand}"
    route(app, "GET", f"{base}/twins", list_twins, "read")
    route(app, "GET", f"{base}/twins/{{twin}}", get_twin, "read")
    route(app, "GET", f"{base}/twins/{{twin}}/history", twin_history, "read")
    route(app, "GET", f"{base}/devices", list_devices, "read")
    route(app, "GET", f"{base}/segments/changes", segment_change_events, "read")
    route(app, "GET", f"{base}/segments/changes/stream", stream_segment_changes, "read")
    add_key_routes(app)
    return app
