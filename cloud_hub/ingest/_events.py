"""Live segment changes: what ``GET .../segments/changes/stream`` sends to brand backends.

Devices write ``<product>.segment`` when their model's answer changes. The instance that
stores such an op (after the write is durable) announces it on the broker, on
``ts/v1/_hub/{brand}/segment-changes`` (QoS 1): with shared subscriptions every hub
instance stores a share of the deltas, so the broker is also how a stream served by one
instance hears about ops another stored. The broker ACL keeps devices off that topic
(``_hub`` is no valid brand), but the broker is not trusted with content: announcements
are sealed and signed with the key every hub instance shares (``protocol.HubSealer``), so
the broker sees no twin id, device or segment, and every instance refuses, counts
(``twinsync_hub_rejected_total{reason="event_..."}``) and logs an announcement that is
not the hub's (forged, tampered, moved to another brand), older than
:data:`EVENT_WINDOW_MS` by its own clock, or one it has already taken (a replay).

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
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cloud_hub._metrics import Metrics
from protocol import (
    MODEL_FIELDS,
    PREFIX,
    PRODUCTS,
    Clock,
    HubSealer,
    Limits,
    SigningKey,
    TwinOps,
    TwinSyncError,
    packb,
    unpackb,
)

__all__ = [
    "EVENT_WINDOW_MS",
    "MAX_ROWS_PER_EVENT",
    "SEGMENT_EVENTS_FILTER",
    "SegmentFeed",
    "Subscriber",
    "announcements",
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
#: an announcement further than this from the receiving instance's clock is refused (they
#: are live news: a reconnecting stream gets what it missed from the query path)
EVENT_WINDOW_MS = 5 * 60_000
#: rows per announcement (a large batch is announced in several)
MAX_ROWS_PER_EVENT = 1000
_MAX_EVENT_BYTES = 1 << 20
_ROW_LIMITS = Limits(max_bytes=_MAX_EVENT_BYTES, max_array=MAX_ROWS_PER_EVENT, max_map=0)
# Nonces of announcements taken within the window (replays are refused); beyond this many
# the oldest are forgotten and everything up to their time is refused instead.
_SEEN_MAX = 100_000

# (brand, product, twin, before_ns) -> the twin's segment before that time, or None
PreviousSegment = Callable[[str, str, str, int], Awaitable[int | None]]


def segment_topic(brand: str) -> str:
    """Where segment ops of ``brand`` are announced between hub instances."""
    return f"{_HUB}/{brand}/{_CHANNEL}"


def is_event_topic(topic: str) -> bool:
    """Whether ``topic`` is a hub-to-hub announcement (not device traffic)."""
    return topic.startswith(_HUB + "/")


def announcements(
    sealer: HubSealer, brand: str, rows: list[list[Any]], sent_ms: int
) -> list[tuple[str, bytes]]:
    """(topic, sealed payload) pairs announcing ``rows`` of ``brand`` to every instance."""
    where = segment_topic(brand)
    return [
        (
            where,
            sealer.seal(brand, _CHANNEL, packb(rows[i : i + MAX_ROWS_PER_EVENT]), sent_ms=sent_ms),
        )
        for i in range(0, len(rows), MAX_ROWS_PER_EVENT)
    ]


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

    def __init__(
        self,
        *,
        previous: PreviousSegment,
        metrics: Metrics,
        key: SigningKey,
        clock: Clock,
    ) -> None:
        self._previous = previous
        self._metrics = metrics
        self._sealer = HubSealer(key)
        self._clock = clock
        #: nonce -> sent_ms of announcements taken within the window
        self._seen: OrderedDict[bytes, int] = OrderedDict()
        self._seen_floor = 0
        self._subs: dict[str, set[Subscriber]] = {}
        self._last: OrderedDict[tuple[str, str, str], tuple[int, int]] = OrderedDict()
        self._bus: asyncio.Queue[tuple[str, list[list[Any]]]] = asyncio.Queue(_BUS_QUEUE)
        self._closed = False

    def deliver(self, topic: str, payload: bytes) -> None:
        """One announcement from the broker (on the event loop)."""
        brand = topic.split("/")[3]
        rows = self._open(topic, brand, payload)
        if rows is None:
            return
        if brand not in self._subs:
            # Nobody listens here; what we cached about these twins may now be stale.
            for row in rows:
                self._last.pop((brand, row[0], row[1]), None)
            return
        try:
            self._bus.put_nowait((brand, rows))
        except asyncio.QueueFull:
            self._metrics.inc("twinsync_hub_stream_dropped_total", len(rows))

    def _open(self, topic: str, brand: str, payload: bytes) -> list[list[Any]] | None:
        """The rows of an authentic, fresh, first-seen announcement; else None (counted)."""
        try:
            message = self._sealer.open(
                payload, brand=brand, channel=_CHANNEL, max_bytes=_MAX_EVENT_BYTES
            )
            rows = _rows(unpackb(message.body, _ROW_LIMITS))
        except TwinSyncError as exc:
            self._refuse(topic, exc.reason, str(exc))
            return None
        now = self._clock.now_ms()
        if abs(message.sent_ms - now) > EVENT_WINDOW_MS or message.sent_ms <= self._seen_floor:
            self._refuse(
                topic, "stale", f"sent at {message.sent_ms}, now {now} (window {EVENT_WINDOW_MS})"
            )
            return None
        if message.nonce in self._seen:
            self._refuse(topic, "replay", "this announcement was taken already")
            return None
        self._remember(message.nonce, message.sent_ms, now)
        return rows

    def _remember(self, nonce: bytes, sent_ms: int, now: int) -> None:
        seen = self._seen
        seen[nonce] = sent_ms
        # Insertion order is close to time order: forget from the front what the window
        # refuses anyway.
        while seen and next(iter(seen.values())) < now - EVENT_WINDOW_MS:
            seen.popitem(last=False)
        while len(seen) > _SEEN_MAX:
            _nonce, old = seen.popitem(last=False)
            self._seen_floor = max(self._seen_floor, old)

    def _refuse(self, topic: str, reason: str, detail: str) -> None:
        self._metrics.inc("twinsync_hub_rejected_total", reason=f"event_{reason}")
        log.warning("refused hub announcement on %s: %s (%s)", topic, reason, detail)

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


def _rows(rows: object) -> list[list[Any]]:
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, list) and len(r) == 6]
