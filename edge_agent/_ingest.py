"""ingest: the local interface firmware talks to (NDJSON over TCP loopback or a Unix socket).

Each request line is a ``protocol.SignalIn`` as JSON, a consent choice made on the device
``{"consent": {"subject": ..., "purposes": {"analytics": true}, "notice": "v3"}}``, or a
request for the device's privacy view of a user ``{"view": {"subject": ...}}`` (answered
with ``{"view": {...}}``), or the user's own suppression of fields on this device
``{"fields": {"subject": ..., "suppress": [...], "restore": [...]}}``;
each reply line is ``{"seq": n, "status": "accepted"|"duplicate"|"rejected", "reason":
...}`` (``seq`` null and reason ``consent`` for a recorded consent), in request order,
sent once the effect is durable. Clients may pipeline: lines are read
ahead and committed in groups. A malformed or overlong line gets a ``malformed`` reply and
the connection stays open. Raw subjects arrive here and go no further than the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from protocol import SignalIn

from ._twin import IngestResult

__all__ = ["IngestServer"]

log = logging.getLogger("edge_agent.ingest")
Submit = Callable[[SignalIn], Awaitable[IngestResult]]
#: local requests other than signals: (kind, request) -> a reply
Local = Callable[[str, object], "IngestResult | dict[str, Any]"]
_PIPELINE = 1024  # replies awaited per connection: bounds memory per client


class IngestServer:
    """Serves the ingest protocol; ``async with`` starts listening, exit stops it."""

    def __init__(
        self,
        submit: Submit,
        local: Local,
        host: str,
        port: int,
        unix_socket: str,
        max_line_bytes: int,
    ) -> None:
        self._submit = submit
        self._local = local
        self._host, self._port, self._unix = host, port, unix_socket
        self._limit = max_line_bytes
        self._servers: list[asyncio.Server] = []
        self._clients: set[asyncio.Task[None]] = set()
        self.malformed = 0

    @property
    def port(self) -> int:
        """The bound TCP port (useful when configured as 0 = pick a free one)."""
        for server in self._servers:
            for sock in server.sockets:
                name = sock.getsockname()
                if isinstance(name, tuple):
                    return int(name[1])
        return 0

    async def __aenter__(self) -> IngestServer:
        if self._port >= 0 and self._host:
            self._servers.append(
                await asyncio.start_server(self._serve, self._host, self._port, limit=self._limit)
            )
        if self._unix:
            self._servers.append(
                await asyncio.start_unix_server(self._serve, self._unix, limit=self._limit)
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._clients):
            task.cancel()
        for task in list(self._clients):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for server in self._servers:
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        replies: asyncio.Queue[asyncio.Future[Any] | None] = asyncio.Queue(_PIPELINE)
        sender = asyncio.create_task(self._reply(replies, writer), name="edge_agent.ingest.reply")
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.LimitOverrunError:
                    # Skip the rest of the overlong line, report it, keep the connection.
                    await self._skip_line(reader)
                    await replies.put(self._done(IngestResult(None, "rejected", "malformed")))
                    continue
                except asyncio.IncompleteReadError:
                    break
                if not line.strip():
                    continue
                await replies.put(self._parse_and_submit(line))
        except ConnectionError:
            pass
        finally:
            await replies.put(None)
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await sender
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._clients.discard(task)

    async def _skip_line(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                await reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await reader.readexactly(exc.consumed)

    def _done(self, result: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(result)
        return future

    def _parse_and_submit(self, line: bytes) -> asyncio.Future[Any]:
        try:
            signal = SignalIn.model_validate_json(line)
        except ValidationError:
            request = _local_request(line)
            if request is not None:
                return self._done(self._local(*request))
            # The contract replies seq=null: a line that is not a valid SignalIn has no
            # trustworthy seq, and echoing a half-parsed one could confuse firmware.
            self.malformed += 1
            return self._done(IngestResult(None, "rejected", "malformed"))
        return asyncio.ensure_future(self._submit(signal))

    async def _reply(
        self,
        replies: asyncio.Queue[asyncio.Future[Any] | None],
        writer: asyncio.StreamWriter,
    ) -> None:
        while (future := await replies.get()) is not None:
            result = await future
            if isinstance(result, IngestResult):
                reply: dict[str, Any] = {
                    "seq": result.seq,
                    "status": result.status,
                    "reason": result.reason,
                }
            else:
                reply = result
            writer.write(json.dumps(reply).encode() + b"\n")
            if replies.empty():
                await writer.drain()


def _local_request(line: bytes) -> tuple[str, object] | None:
    """``(kind, inner)`` of a one-key ``{"consent" | "view" | "fields": {...}}`` line,
    else None."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if isinstance(obj, dict) and len(obj) == 1:
        ((kind, inner),) = obj.items()
        if kind in ("consent", "view", "fields"):
            return kind, inner
    return None
