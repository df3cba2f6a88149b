"""The typed application keys through which the hub hands the routes what they use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from cloud_hub._metrics import Metrics
from cloud_hub.ingest import SegmentFeed
from cloud_hub.store import IndexReader, SegmentProfiles, TwinReader
from protocol import Clock

__all__ = [
    "CLOCK",
    "FEED",
    "INDEX",
    "METRICS",
    "PROFILES",
    "READER",
    "READY",
    "ReadyProbe",
]

ReadyProbe = Callable[[], Awaitable[dict[str, bool]]]

#: the hub's clock: every wall-clock time a route reads or stamps comes from it
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
FEED = web.AppKey("feed", SegmentFeed)
#: the twin query index's reader (None: this instance does not keep the index)
INDEX: web.AppKey[IndexReader | None] = web.AppKey("index")
METRICS = web.AppKey("metrics", Metrics)
#: segment profiles from the twin query index (None: this instance does not keep it)
PROFILES: web.AppKey[SegmentProfiles | None] = web.AppKey("profiles")
READER = web.AppKey("reader", TwinReader)
READY: web.AppKey[ReadyProbe] = web.AppKey("ready")
