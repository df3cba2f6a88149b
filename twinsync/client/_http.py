"""The blocking transport, on the standard library only (http.client): no dependency.

One connection per request (closed after its answer): nothing to share between
threads, and never a request sent on a connection the hub already closed as idle. A
live stream holds its own connection until it is closed. Socket, TLS and HTTP failures
become the client's :class:`~twinsync.client.TransportError` here, and only here.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Callable, Iterator
from types import TracebackType

from ._errors import RequestTimeoutError, ResponseError, TransportError
from ._sse import StreamItem, StreamReader
from ._transport import MAX_ANSWER_BYTES, Credentials
from ._wire import BaseUrl, Request, Response, api_error

__all__ = ["HttpTransport", "SegmentStream"]

#: the longest event line read (the parser refuses it: no hub event is near this)
_MAX_LINE = (1 << 20) + 2


class _Connection:
    """One request's connection, its errors translated to the client's."""

    def __init__(self, creds: Credentials, timeout: float, context: ssl.SSLContext | None) -> None:
        base = creds.base
        self._creds = creds
        self._conn: http.client.HTTPConnection
        if base.scheme == "https":
            self._conn = http.client.HTTPSConnection(
                base.host, base.port, timeout=timeout, context=context
            )
        else:
            self._conn = http.client.HTTPConnection(base.host, base.port, timeout=timeout)

    def open(self, request: Request) -> http.client.HTTPResponse:
        """Send ``request``; the answer's head (its body still to read)."""
        with self.translated(request):
            self._conn.request(
                request.method,
                self._creds.base.prefix + request.path,
                body=request.body,
                headers=self._creds.headers(request),
            )
            return self._conn.getresponse()

    def read(self, request: Request, answer: http.client.HTTPResponse) -> Response:
        """The whole answer (at most :data:`MAX_ANSWER_BYTES`)."""
        with self.translated(request):
            body = answer.read(MAX_ANSWER_BYTES + 1)
        if len(body) > MAX_ANSWER_BYTES:
            raise ResponseError(f"{request.operation}: the answer exceeds {MAX_ANSWER_BYTES} bytes")
        headers = {k.lower(): v for k, v in answer.getheaders()}
        return Response(answer.status, headers, body)

    def translated(self, request: Request) -> _Translate:
        """A context that raises the client's errors for socket and HTTP failures."""
        return _Translate(request, self._creds.base)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


class _Translate:
    def __init__(self, request: Request, base: BaseUrl) -> None:
        self._request, self._base = request, base

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        where = f"{self._request.operation}: {self._base}"
        if isinstance(exc, TimeoutError):
            raise RequestTimeoutError(f"{where} did not answer in time") from None
        if isinstance(exc, OSError | http.client.HTTPException):
            raise TransportError(f"{where} did not answer: {exc!r}") from None


class SegmentStream:
    """The live segment changes: ``with client.stream_segment_changes("coffee") as
    stream: for item in stream: ...``. Items are :class:`SegmentChange` and, when the
    client fell behind, :class:`StreamOverflow`. Delivery is at least once (dedupe on
    twin and ``time_ms``); after a lost connection, open a new stream with
    ``last_event_id=stream.last_event_id`` to get what was missed. The trigger stream
    (``stream_trigger_events``) is one too: its items are :class:`TriggerEvent` (dedupe
    on ``event_id``) and :class:`StreamGap`."""

    def __init__(
        self,
        request: Request,
        open_: Callable[[Request], tuple[_Connection, http.client.HTTPResponse]],
    ) -> None:
        self._request = request
        self._open = open_
        self._conn: _Connection | None = None
        self._answer: http.client.HTTPResponse | None = None
        #: the id of the last event received (resume from here)
        self.last_event_id: str | None = None

    def __enter__(self) -> SegmentStream:
        self._conn, self._answer = self._open(self._request)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[StreamItem]:
        if self._answer is None:
            self.__enter__()
        assert self._conn is not None
        assert self._answer is not None
        reader = StreamReader()
        while True:
            with self._conn.translated(self._request):
                line = self._answer.readline(_MAX_LINE)
            if not line:
                return  # the hub closed the stream (shutting down)
            item = reader.feed(line)
            self.last_event_id = reader.last_event_id or self.last_event_id
            if item is not None:
                yield item

    def close(self) -> None:
        """Close the stream's connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = self._answer = None


class HttpTransport:
    """Sends requests to one hub with one key, a connection each."""

    def __init__(
        self, creds: Credentials, *, timeout: float, ssl_context: ssl.SSLContext | None
    ) -> None:
        self._creds, self._timeout, self._ssl = creds, timeout, ssl_context

    def exchange(self, request: Request) -> Response:
        """Send ``request``; its whole answer."""
        conn = _Connection(self._creds, self._timeout, self._ssl)
        try:
            return conn.read(request, conn.open(request))
        finally:
            conn.close()

    def stream(self, request: Request) -> SegmentStream:
        """The stream ``request`` opens (when it is entered or iterated)."""
        return SegmentStream(request, self._open_stream)

    def _open_stream(self, request: Request) -> tuple[_Connection, http.client.HTTPResponse]:
        conn = _Connection(self._creds, self._timeout, self._ssl)
        try:
            answer = conn.open(request)
            if answer.status != 200:
                raise api_error(conn.read(request, answer), request.operation)
        except BaseException:
            conn.close()
            raise
        return conn, answer
