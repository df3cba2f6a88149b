"""The asyncio transport, on aiohttp: one session (a connection pool) per client.

aiohttp's failures become the client's :class:`~twinsync.client.TransportError` here,
and only here. No cookies, no redirects, no proxy from the environment: the key goes to
the hub named and nowhere else.
"""

from __future__ import annotations

import io
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp

from ._errors import RequestTimeoutError, ResponseError, TransportError
from ._sse import StreamItem, StreamReader
from ._transport import MAX_ANSWER_BYTES, Credentials
from ._wire import BaseUrl, Request, Response, api_error

__all__ = ["AiohttpTransport", "AsyncSegmentStream"]


def _translate(request: Request, base: BaseUrl, exc: BaseException) -> TransportError:
    where = f"{request.operation}: {base}"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return RequestTimeoutError(f"{where} did not answer in time")
    return TransportError(f"{where} did not answer: {exc!r}")


async def _body(request: Request, answer: aiohttp.ClientResponse) -> Response:
    body = await answer.content.read(MAX_ANSWER_BYTES + 1)
    if len(body) > MAX_ANSWER_BYTES:
        raise ResponseError(f"{request.operation}: the answer exceeds {MAX_ANSWER_BYTES} bytes")
    headers = {k.lower(): v for k, v in answer.headers.items()}
    return Response(answer.status, headers, body)


class AsyncSegmentStream:
    """The live segment changes: ``async with client.stream_segment_changes("coffee") as
    stream: async for item in stream: ...`` (see :class:`~twinsync.client.SegmentStream`)."""

    def __init__(
        self,
        request: Request,
        open_: Callable[[Request], Awaitable[aiohttp.ClientResponse]],
        base: BaseUrl,
    ) -> None:
        self._request, self._open, self._base = request, open_, base
        self._answer: aiohttp.ClientResponse | None = None
        #: the id of the last event received (resume from here)
        self.last_event_id: str | None = None

    async def __aenter__(self) -> AsyncSegmentStream:
        self._answer = await self._open(self._request)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.close()

    async def __aiter__(self) -> AsyncIterator[StreamItem]:
        if self._answer is None:
            await self.__aenter__()
        assert self._answer is not None
        reader = StreamReader()
        while True:
            try:
                line = await self._answer.content.readuntil(b"\n")
            except ValueError:  # over the reader's line limit
                raise ResponseError("an event stream line is too long") from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _translate(self._request, self._base, exc) from None
            if not line:
                return  # the hub closed the stream (shutting down)
            item = reader.feed(line)
            self.last_event_id = reader.last_event_id or self.last_event_id
            if item is not None:
                yield item

    def close(self) -> None:
        """Close the stream's connection."""
        if self._answer is not None:
            self._answer.close()
            self._answer = None


class AiohttpTransport:
    """Sends requests to one hub with one key over a pooled aiohttp session."""

    def __init__(
        self, creds: Credentials, *, timeout: float, ssl_context: ssl.SSLContext | None
    ) -> None:
        self._creds = creds
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _pool(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use: it needs the running loop
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def _answer(self, request: Request) -> aiohttp.ClientResponse:
        try:
            return await self._pool().request(
                request.method,
                self._creds.url(request),
                # A file-like body: aiohttp sends it in chunks (a model is up to 64 MiB)
                data=None if request.body is None else io.BytesIO(request.body),
                headers=self._creds.headers(request),
                allow_redirects=False,
                ssl=self._ssl,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(request, self._creds.base, exc) from None

    async def exchange(self, request: Request) -> Response:
        """Send ``request``; its whole answer."""
        answer = await self._answer(request)
        try:
            return await _body(request, answer)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(request, self._creds.base, exc) from None
        finally:
            answer.release()

    def stream(self, request: Request) -> AsyncSegmentStream:
        """The stream ``request`` opens (when it is entered or iterated)."""
        return AsyncSegmentStream(request, self._open_stream, self._creds.base)

    async def _open_stream(self, request: Request) -> aiohttp.ClientResponse:
        answer = await self._answer(request)
        if answer.status != 200:
            try:
                raise api_error(await _body(request, answer), request.operation)
            finally:
                answer.release()
        return answer
