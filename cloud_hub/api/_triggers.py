"""serve: a brand's trigger rules and their events (scope ``triggers``; cloud_hub.triggers).

    POST   /v1/brands/{brand}/triggers                 register a rule (201; its secret once)
    GET    /v1/brands/{brand}/triggers                 every rule
    GET    /v1/brands/{brand}/triggers/events          recent events (?limit=, ?after=seq)
    GET    /v1/brands/{brand}/triggers/events/stream   Server-Sent Events, Last-Event-ID
    GET    /v1/brands/{brand}/triggers/{rule}          one rule
    DELETE /v1/brands/{brand}/triggers/{rule}          remove it and its undelivered events

The stream reads the shared event log (every instance sees every event, whichever stored
it) from the client's position on, at most a page at a time: a client's queue is that
page, never more. A client that stops reading is dropped when a write has waited
``triggers.stream_write_timeout_s`` (logged, ``twinsync_hub_trigger_streams_dropped_total{reason=
"slow_client"}``); it reconnects with ``Last-Event-ID`` and misses nothing the log still
holds. A position older than the log's retention gets an ``event: gap`` first, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from cloud_hub._errors import RequestError
from cloud_hub.triggers import (
    MAX_RULE_BYTES,
    MAX_RULES,
    SEQ_MAX,
    ParseWhere,
    Rules,
    TriggerEvents,
)
from cloud_hub.triggers import parse_rule as _parse_rule

from ._context import CLOCK, FEED, METRICS
from ._guard import route
from ._params import ascii_int, path_brand, query_int

__all__ = ["TRIGGERS", "TriggerContext", "add_trigger_routes"]

log = logging.getLogger("cloud_hub.triggers")

_KEEPALIVE_S = 15.0
_POLL_S = 1.0
_STREAM_PAGE = 100


@dataclass(frozen=True, kw_only=True)
class TriggerContext:
    """What the trigger routes need from the hub."""

    rules: Rules
    events: TriggerEvents
    parse_where: ParseWhere
    #: a stream client that takes no data for this long is dropped (triggers settings)
    write_timeout_s: float = 10.0


TRIGGERS = web.AppKey("triggers", TriggerContext)


async def create_rule(request: web.Request) -> web.Response:
    """``POST .../triggers``: check and keep a rule; 201 with it and, when it has a
    webhook, the signing secret (shown once)."""
    brand = path_brand(request)
    if (request.content_length or 0) > MAX_RULE_BYTES:
        raise RequestError(
            f"a rule is at most {MAX_RULE_BYTES} bytes of JSON", reason="rule_too_large", status=413
        )
    raw = b""  # read at most one byte past the limit, whatever the client sends
    while len(raw) <= MAX_RULE_BYTES:
        chunk = await request.content.read(MAX_RULE_BYTES + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    rule = _parse_rule(raw)
    ctx = request.app[TRIGGERS]
    if rule.where is not None:
        ctx.parse_where(rule.where, request.app[CLOCK].now_ms())  # 400 bad_where, here
    stored, secret = await asyncio.to_thread(ctx.rules.add, brand, rule)
    body: dict[str, Any] = {"brand": brand, "rule": stored.summary()}
    if secret is not None:
        body["secret"] = secret
    return web.json_response(body, status=201)


async def list_rules(request: web.Request) -> web.Response:
    """``GET .../triggers``: every rule of the brand, oldest first."""
    brand = path_brand(request)
    rules = await asyncio.to_thread(request.app[TRIGGERS].rules.list, brand)
    return web.json_response(
        {"brand": brand, "rules": [r.summary() for r in rules], "max_rules": MAX_RULES}
    )


async def get_rule(request: web.Request) -> web.Response:
    """``GET .../triggers/{rule}``."""
    brand = path_brand(request)
    stored = await asyncio.to_thread(
        request.app[TRIGGERS].rules.get, brand, request.match_info["rule"]
    )
    return web.json_response({"brand": brand, "rule": stored.summary()})


async def delete_rule(request: web.Request) -> web.Response:
    """``DELETE .../triggers/{rule}``: the rule and its undelivered events go."""
    brand, rule_id = path_brand(request), request.match_info["rule"]
    await asyncio.to_thread(request.app[TRIGGERS].rules.delete, brand, rule_id)
    return web.json_response({"brand": brand, "rule_id": rule_id, "deleted": True})


async def list_events(request: web.Request) -> web.Response:
    """``GET .../triggers/events?limit=&after=``: without ``after`` the newest events,
    newest first; with it (a ``seq``) the events after it, oldest first."""
    brand = path_brand(request)
    limit = query_int(request, "limit", 50, 1, 500)
    events = request.app[TRIGGERS].events
    if "after" in request.query:
        after = query_int(request, "after", 0, 0, SEQ_MAX)
        rows = await asyncio.to_thread(events.page, brand, after, limit)
    else:
        rows = await asyncio.to_thread(events.recent, brand, limit)
    pending = await asyncio.to_thread(events.pending, brand)
    return web.json_response({"brand": brand, "events": rows, "pending_deliveries": pending})


async def stream_events(request: web.Request) -> web.StreamResponse:
    """``GET .../triggers/events/stream``: Server-Sent Events ``trigger``, id = ``seq``;
    resumes after ``Last-Event-ID`` (or ``?after=``), else starts with what comes next."""
    brand = path_brand(request)
    raw = request.headers.get("Last-Event-ID") or request.query.get("after")
    after = None if raw is None else ascii_int(raw, 0, SEQ_MAX)
    if raw is not None and after is None:
        raise RequestError(
            f"Last-Event-ID / after must be an event's seq (0 to {SEQ_MAX})", reason="bad_after"
        )
    events = request.app[TRIGGERS].events
    gap = None
    if after is None:
        newest = await asyncio.to_thread(events.recent, brand, 1)
        after = newest[0]["seq"] if newest else 0
    else:
        oldest = await asyncio.to_thread(events.oldest, brand)
        if oldest is not None and after + 1 < oldest:
            gap = {
                "after": after,
                "oldest": oldest,
                "reason": "events after your position were removed by the log's retention "
                "(triggers.log_retention_days, triggers.log_max_events): re-read the twins "
                "you follow (GET .../twins) and go on from here",
            }
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    with contextlib.suppress(ConnectionResetError):  # the client went away
        if gap is not None:
            await response.write(f"event: gap\ndata: {json.dumps(gap)}\n\n".encode())
        await _pump(request, response, brand, after)
    return response


async def _pump(request: web.Request, response: web.StreamResponse, brand: str, after: int) -> None:
    ctx, feed = request.app[TRIGGERS], request.app[FEED]
    events = ctx.events
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while not feed.closed:  # the hub stopping closes the feed: streams end
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        page = await asyncio.to_thread(events.page, brand, after, _STREAM_PAGE)
        frames = b"".join(_sse(e) for e in page)
        if not page and loop.time() - quiet_since >= _KEEPALIVE_S:
            frames = b": keepalive\n\n"
        if frames:
            try:
                async with asyncio.timeout(ctx.write_timeout_s):
                    await response.write(frames)
            except TimeoutError:
                request.app[METRICS].inc(
                    "twinsync_hub_trigger_streams_dropped_total", reason="slow_client"
                )
                log.warning(
                    "trigger stream of brand %s dropped: the client read nothing for %.0fs "
                    "(it may reconnect with Last-Event-ID %d)",
                    brand,
                    ctx.write_timeout_s,
                    after,
                )
                transport.close()
                return
            quiet_since = loop.time()
        if page:
            after = page[-1]["seq"]
        if len(page) < _STREAM_PAGE:
            await asyncio.sleep(_POLL_S)


def _sse(event: dict[str, Any]) -> bytes:
    return f"id: {event['seq']}\nevent: trigger\ndata: {json.dumps(event)}\n\n".encode()


def add_trigger_routes(app: web.Application, ctx: TriggerContext) -> None:
    """Register the trigger routes (the fixed paths before ``{rule}``)."""
    app[TRIGGERS] = ctx
    base = "/v1/brands/{brand}/triggers"
    route(app, "POST", base, create_rule, "triggers")
    route(app, "GET", base, list_rules, "triggers")
    route(app, "GET", f"{base}/events", list_events, "triggers")
    route(app, "GET", f"{base}/events/stream", stream_events, "triggers")
    route(app, "GET", f"{base}/{{rule}}", get_rule, "triggers")
    route(app, "DELETE", f"{base}/{{rule}}", delete_rule, "triggers")
