"""Server-Sent Events, parsed without I/O: the live segment-change and trigger streams.

The hub sends ``event: segment_change`` with ``id: <time_ms>`` and the change as JSON
``data``, a comment line (``: keepalive``) every 15 s, and ``event: overflow`` with
``{"dropped": n}`` when this client fell behind; the trigger stream sends ``event:
trigger`` with ``id: <seq>``, and ``event: gap`` when the log's retention removed events
after the client's position. :class:`EventParser` takes lines as they arrive and yields
whole events (the SSE rules: ``field: value`` lines, a blank line ends an event, several
``data`` lines are joined by newlines, comments are skipped).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import ValidationError

from ._errors import ResponseError
from ._results import SegmentChange, StreamOverflow
from ._trigger_results import StreamGap, TriggerEvent

__all__ = ["EventParser", "ServerEvent", "StreamItem", "StreamReader", "stream_item"]

#: what a stream yields
StreamItem = SegmentChange | StreamOverflow | TriggerEvent | StreamGap

#: a longer event line is not the hub's: refuse it rather than grow without bound
_MAX_LINE = 1 << 20


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One event: its type, data and id."""

    event: str
    data: str
    id: str | None


class EventParser:
    """Whole events from the stream's lines (each line with or without its newline)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def line(self, raw: bytes) -> ServerEvent | None:
        """Take one line; return the event it completes, if it does."""
        if len(raw) > _MAX_LINE:
            raise ResponseError(f"an event stream line is longer than {_MAX_LINE} bytes")
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            return self._dispatch()
        if text.startswith(":"):
            return None  # a comment: the keepalive
        name, _, value = text.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None

    def _dispatch(self) -> ServerEvent | None:
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return ServerEvent(event, "\n".join(data), self._id)


def stream_item(event: ServerEvent) -> StreamItem | None:
    """What a stream event means to the caller (None: an event type it does not know)."""
    try:
        if event.event == "segment_change":
            return SegmentChange.model_validate_json(event.data)
        if event.event == "overflow":
            return StreamOverflow.model_validate(json.loads(event.data))
        if event.event == "trigger":
            return TriggerEvent.model_validate_json(event.data)
        if event.event == "gap":
            return StreamGap.model_validate_json(event.data)
    except (ValidationError, ValueError) as exc:
        raise ResponseError(f"unreadable {event.event} event: {exc}") from None
    return None


class StreamReader:
    """What both transports do with a line read: parse it, map a whole event to the
    caller's item, and remember the last event id (to resume from after a lost
    connection)."""

    def __init__(self) -> None:
        self._parser = EventParser()
        #: the id of the last event received
        self.last_event_id: str | None = None

    def feed(self, line: bytes) -> StreamItem | None:
        """Take one line; return the item it completes, if it completes one we know."""
        event = self._parser.line(line)
        if event is None:
            return None
        item = stream_item(event)
        if event.id is not None:
            self.last_event_id = event.id
        return item
