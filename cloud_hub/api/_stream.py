"""serve: segment changes of a brand, queried or streamed live (Server-Sent Events).

    GET /v1/brands/{brand}/segments/changes?product=&start=&end=&limit=
    GET /v1/brands/{brand}/segments/changes/stream?product=&since=

Live events come from this instance's :class:`~cloud_hub.ingest.SegmentFeed` (every
instance hears what any of them stored); a reconnecting client gets what it missed from
the query path first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from cloud_hub._errors import RequestError
from cloud_hub.ingest import SegmentFeed, Subscriber
from cloud_hub.store import MAX_CHANGES
from protocol import PRODUCTS

from ._context import CLOCK, FEED, READER
from ._params import path_brand, query_int, query_time_ns, time_range_ns

__all__ = ["segment_change_events", "stream_segment_changes"]

_KEEPALIVE_S = 15.0


async def segment_change_events(request: web.Request) -> web.Response:
    """``GET /v1/brands/{brand}/segments/changes?product=&start=&end=&limit=``."""
    brand = path_brand(request)
    product = request.query.get("product", "")
    start, end = time_range_ns(request)
    limit = query_int(request, "limit", MAX_CHANGES, 1, MAX_CHANGES)
    try:
        events = await request.app[READER].segment_changes(brand, product, start, end, limit)
    except ValueError as exc:
        raise RequestError(str(exc), reason="bad_product") from None
    except OverflowError as exc:
        raise RequestError(str(exc), reason="too_many_changes") from None
    return web.json_response({"brand": brand, "product": product, "changes": events})


async def stream_segment_changes(request: web.Request) -> web.StreamResponse:
    """``GET /v1/brands/{brand}/segments/changes/stream?product=&since=``: Server-Sent
    Events, one ``segment_change`` per change as the hub stores it (see _events.py).

    ``since`` (Unix ms) or a ``Last-Event-ID`` header replays the changes from then on
    first (the query path), so a client that reconnects misses nothing; an event's id is
    its ``time_ms``. Delivery is at least once: dedupe on (twin, time_ms).
    """
    brand = path_brand(request)
    product = request.query.get("product", "")
    if product not in PRODUCTS:
        raise RequestError(
            f"product must be one of: {', '.join(sorted(PRODUCTS))}", reason="bad_product"
        )
    since_raw = request.headers.get("Last-Event-ID") or request.query.get("since")
    # Checked before subscribing: a refused request leaves nothing behind.
    since_ns = None if since_raw is None else query_time_ns(request, "since", 0, raw=since_raw)
    feed = request.app[FEED]
    async with feed.subscribe(brand, product) as sub:  # before the replay: no gap
        replay: list[dict[str, Any]] = []
        if since_ns is not None:
            # everything stored until now, by the hub's clock
            end_ns = (request.app[CLOCK].now_ms() + 1) * 1_000_000
            try:
                replay = await request.app[READER].segment_changes(
                    brand, product, since_ns, end_ns, MAX_CHANGES
                )
            except OverflowError as exc:
                raise RequestError(str(exc), reason="too_many_changes") from None
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
    # Keepalives are paced by the loop's monotonic time, not the (wall) clock.
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
