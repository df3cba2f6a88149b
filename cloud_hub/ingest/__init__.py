"""ingest: MQTT in, verified and merged ops out, acks back.

``HubMqtt`` (the shared subscription and the inbox), ``Verifier`` (size, schema,
signature, seal, replay, time window), ``Pipeline`` (batch, merge, write, ack after the
write is durable), and the sealed hub-to-hub announcements behind the segment stream.
"""

from __future__ import annotations

from ._events import SegmentFeed, Subscriber, segment_topic
from ._inbox import Inbox
from ._mqtt import HubMqtt, Incoming
from ._pipeline import Pipeline
from ._verify import Accepted, Rejected, ReplayWindows, Verifier

__all__ = [
    "Accepted",
    "HubMqtt",
    "Inbox",
    "Incoming",
    "Pipeline",
    "Rejected",
    "ReplayWindows",
    "SegmentFeed",
    "Subscriber",
    "Verifier",
    "segment_topic",
]
