"""The client's sans-I/O core, named for tests (tests/client): requests built as data,
answers read into results or errors, the event-stream parser. Not a stable API."""

from __future__ import annotations

from ._calls import Calls
from ._sse import EventParser, ServerEvent, StreamReader, stream_item
from ._wire import (
    BaseUrl,
    Call,
    Request,
    Response,
    api_error,
    json_result,
    multipart,
    outcome,
    resolve_api_key,
)

__all__ = [
    "BaseUrl",
    "Call",
    "Calls",
    "EventParser",
    "Request",
    "Response",
    "ServerEvent",
    "StreamReader",
    "api_error",
    "json_result",
    "multipart",
    "outcome",
    "resolve_api_key",
    "stream_item",
]
