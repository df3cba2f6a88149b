"""Live segment changes: what ``GET .../segments/changes/stream`` sends to brand backends.

Devices write ``<product>.segment`` when their model's answer changes. The instance that
stores such an op (after the write is durable) announces it on the broker, on
``ts/v1/_hub/{brand}/segment-changes`` (QoS 1, JSON): with shared subscriptions every hub
instance stores a share of the deltas, so the broker is also how a stream served by one
instance hears about ops another stored. Devices cannot publish there (the broker ACL
confines them to their own subtree; ``_hub`` is no valid brand).

Each instance with open streams turns announcements into change events
``{twin, product, time_ms, device, from, to, model}`` with the query API's semantics: the
previous segment of the twin (``from``) comes from a bounded cache of the last segment
per twin, filled from InfluxDB on a miss, and an op that does not change the twin's
segment (another device agreeing, a redelivery) is no event. Delivery is at least once
and live only; a client that reconnects passes ``Last-Event-ID`` (or ``since``) and
gets what it missed from the query path first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from protocol import MODEL_FIELDS, PREFIX, PRODUCTS, TwinOps

from ._metrics import Metrics

__all__ = [
    "SEGMENT_EVENTS_FILTER",
    "SegmentFeed",
    "Subscriber",
    "is_event_topic",
    "segment_ops",
    "segment_topic",
]

log = logging.getLogger("cloud_hub.events")

_HUB = f"{PREFIX}/_hub"
_CHANNEL = "segment-changes"
#: what every instance subscribes to (not shared: each needs every announcement)
SEGMENT_EVENTS_FILTER = f"{_HUB}/+/{_CHANNEL}"
_SEGMENT = {MODEL_FIELDS[(p, "segment")]: p for p in PRODUCTS}
_REF = {MODEL_FIELDS[(p, "segment_model")] for p in PRODUCTS}
_CACHE_TWINS = 100_000
_BUS_QUEUE = 1024

# (brand, product, twin, before_ns) -> the twin's segment before that time, or None
PreviousSegment = Callable[[str, str, str, int], Awaitable[int | None]]


def segment_topic(brand: str) -> str:
    """Where segment ops of ``brand`` are announced between hub instances."""
    return f"{_HUB}/{brand}/{_CHANNEL}"


def is_event_topic(topic: str) -> bool:
    """Whether ``topic`` is a hub-to-hub announcement (not device traffic)."""
    return topic.startswith(_HUB + "/")


def segment_ops(device: str, twins: tuple[TwinOps, ...], out: list[list[Any]]) -> None:
    """Append ``[product, twin, device, time_ns, segment, model]`` for each segment op."""
    for twin_ops in twins:
        found = None
        for hlc, name, value in twin_ops.ops:
            product = _SEGMENT.get(name)
            if product is not None:
                found = found or []
                time_ns = (hlc >> 16) * 1_000_000 + (hlc & 0xFFFF)
                found.append([product, twin_ops.twin, device, time_ns, value, None])
        if found:
            # The agent writes the model ref right after the segment it produced.
            refs = [v for _h, n, v in twin_ops.ops if n in _REF]
            for row in found:
                row[5] = refs[-1] if refs else None
            out.extend(found)


@dataclass(eq=False)
class Subscriber:
    """One open stream: its product, its bounded queue (None = end), what it missed."""

    product: str
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=lambda: asyncio.Queue(1000))
    dropped: int = 0

    def put(self, event: dict[str, Any] | None) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1


class SegmentFeed:
    """Fans announced segment ops out to this instance's open streams.

    :meth:`run` (owned by the hub) turns announcements into events; :meth:`deliver` is
    called with each announcement's payload; :meth:`subscribe` opens a stream.
    """

    def __init__(self, previous: PreviousSegment, metrics: Metrics) -> None:
        self._previous = previous
        self._metrics = metrics
        self._subs: dict[str, set[Subscriber]] = {}
        self._last: OrderedDict[tuple[str, str, str], tuple[int, int]] = OrderedDict()
        self._bus: asyncio.Queue[tuple[str, list[list[Any]]]] = asyncio.Queue(_BUS_QUEUE)
        self._closed = False

    def deliver(self, topic: str, payload: bytes) -> None:
        """One announcement from the broker (on the event loop)."""
        brand = topic.split("/")[3]
        if brand not in self._subs:
            # Nobody listens here; what we cached about these twins may now be stale.
            for row in _rows(payload):
                self._last.pop((brand, row[0], row[1]), None)
            return
        try:
            self._bus.put_nowait((brand, _rows(payload)))
        except asyncio.QueueFull:
            self._metrics.inc("twinsync_hub_stream_dropped_total", len(_rows(payload)))

    async def run(self) -> None:
        """Turn announcements into events for the streams; until cancelled."""
        while True:
            brand, rows = await self._bus.get()
            for product, twin, device, time_ns, value, model in sorted(rows, key=lambda r: r[3]):
                try:
                    event = await self._event(brand, product, twin, device, time_ns, value, model)
                except Exception:
                    # One failed lookup (InfluxDB away) must not end every stream.
                    log.warning("segment event for %s/%s skipped", brand, twin, exc_info=True)
                    self._metrics.inc("twinsync_hub_stream_dropped_total")
                    continue
                if event is not None:
                    for sub in list(self._subs.get(brand, ())):
                        if sub.product == product:
                            sub.put(event)

    async def _event(
        self,
        brand: str,
        product: str,
        twin: str,
        device: str,
        time_ns: int,
        value: int,
        model: str | None,
    ) -> dict[str, Any] | None:
        key = (brand, product, twin)
        cached = self._last.get(key)
        if cached is not None and cached[0] < time_ns:
            before: int | None = cached[1]
        else:  # unknown, or an op older than what we know: ask the store
            before = await self._previous(brand, product, twin, time_ns)
        if cached is None or cached[0] <= time_ns:
            self._last[key] = (time_ns, value)
            self._last.move_to_end(key)
            while len(self._last) > _CACHE_TWINS:
                self._last.popitem(last=False)
        if before == value:
            return None
        return {
            "twin": twin,
            "product": product,
            "time_ms": time_ns // 1_000_000,
            "device": device,
            "from": before,
            "to": value,
            "model": model,
        }

    @contextlib.asynccontextmanager
    async def subscribe(self, brand: str, product: str) -> AsyncIterator[Subscriber]:
        """A stream's subscription (events are queued from the moment it opens)."""
        sub = Subscriber(product)
        self._subs.setdefault(brand, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._subs.get(brand, set())
            subs.discard(sub)
            if not subs:
                self._subs.pop(brand, None)

    def close(self) -> None:
        """End every open stream (hub shutdown)."""
        self._closed = True
        for subs in self._subs.values():
            for sub in subs:
                sub.put(None)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed


def _rows(payload: bytes) -> list[list[Any]]:
    try:
        rows = json.loads(payload)
    except ValueError:
        return []
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, list) and len(r) == 6]
