"""ingest: the local interface firmware talks to (NDJSON over TCP loopback or a Unix socket).

Each request line is a ``protocol.SignalIn`` as JSON, a consent choice made on the device
``{"consent": {"subject": ..., "purposes": {"analytics": true}, "notice": "v3"}}``, or a
request for the device's privacy view of a user ``{"view": {"subject": ...}}`` (answered
with ``{"view": {...}}``), or the user's own suppression of fields on this device
``{"fields": {"subject": ..., "suppress": [...], "restore": [...]}}``;
each reply line is ``{"seq": n, "status": "accepted"|"duplicate"|"rejected", "reason":
...}`` (``seq`` null and reason ``consent`` for a recorded consent), in request order,
sent once the effect is durable. Clients may pipeline: lines are read
ahead and committed in groups. A malformed or overlong line gets a ``malformed`` reply
with a ``detail`` naming the wrong key (``_validate.explain_malformed``) and the
connection stays open. Raw subjects arrive here and go no further than the agent.

The Unix socket is made mode 0660 (the agent's user and group may connect), a stale one
left by a crash is replaced, a live one (another agent) is refused, and it is removed on
exit. A listener that cannot start raises ConfigError naming the setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from protocol import SignalIn

from ._errors import ConfigError
from ._twin import IngestResult
from ._validate import explain_malformed

__all__ = ["IngestServer"]

log = logging.getLogger("edge_agent.ingest")
Submit = Callable[[SignalIn], Awaitable[IngestResult]]
#: local requests other than signals: (kind, request) -> a reply
Local = Callable[[str, object], "IngestResult | dict[str, Any]"]
_PIPELINE = 1024  # replies awaited per connection: bounds memory per client
_SOCKET_MODE = 0o660  # the agent's user and group (firmware's user joins the group)
_MAX_SOCKET_PATH = 107  # bytes: sun_path is 108 on Linux, one is the terminating NUL
_LOG_EVERY_S = 1.0  # malformed lines are logged at most this often (firmware may loop)


class IngestServer:
    """Serves the ingest protocol; ``async with`` starts listening, exit stops it."""

    def __init__(
        self,
        *,
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
        self._socket_id: tuple[int, int] | None = None  # (dev, inode) of our socket file
        self._logged_at = float("-inf")
        #: malformed request lines so far (each got a ``malformed`` reply)
        self.malformed = 0

    @property
    def port(self) -> int:
        """The bound TCP port; 0 when not serving TCP (``ingest.port`` 0)."""
        for server in self._servers:
            for sock in server.sockets:
                name = sock.getsockname()
                if isinstance(name, tuple):
                    return int(name[1])
        return 0

    @property
    def address(self) -> str:
        """Where firmware reaches this server, e.g. ``unix:/run/twinsync/ingest.sock``."""
        where = [f"unix:{self._unix}"] if self._unix and self._socket_id else []
        if self.port:
            where.append(f"tcp:{self._host}:{self.port}")
        return ", ".join(where) or "nowhere"

    async def __aenter__(self) -> IngestServer:
        try:
            if self._port > 0 and self._host:
                self._servers.append(await self._start_tcp())
            if self._unix:
                self._servers.append(await self._start_unix())
        except BaseException:
            await self.__aexit__()
            raise
        # One line an operator (or a supervisor script) can act on: where to send signals.
        log.info("ingest listening on %s", self.address)
        return self

    async def _start_tcp(self) -> asyncio.Server:
        try:
            return await asyncio.start_server(
                self._serve, self._host, self._port, limit=self._limit
            )
        except OSError as exc:
            port, host = self._port, self._host
            if exc.errno == errno.EADDRINUSE:
                why = f"ingest.port {port} is in use (address already in use): set ingest.port"
                env = "PORT"
            elif exc.errno == errno.EACCES:
                why = f"ingest.port {port} needs privileges (permission denied): set ingest.port"
                env = "PORT"
            else:
                why = f"ingest.host {host} cannot be bound ({exc.strerror or exc}): set ingest.host"
                env = "HOST"
            raise ConfigError(f"{why} or TWINSYNC_EDGE__INGEST__{env}") from exc

    async def _start_unix(self) -> asyncio.Server:
        path = Path(self._unix)
        fix = "set ingest.unix_socket or TWINSYNC_EDGE__INGEST__UNIX_SOCKET"
        if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
            raise ConfigError(
                f"ingest.unix_socket {path} is longer than the {_MAX_SOCKET_PATH} bytes a "
                f"Unix socket path may have: {fix} (a shorter absolute path)"
            )
        if await self._listening(path):
            raise ConfigError(
                f"ingest.unix_socket {path} is in use (another process listens on it): {fix}"
            )
        try:
            # asyncio replaces a stale socket file (a crashed agent's); anything else that
            # is in the way is refused with EADDRINUSE.
            server = await asyncio.start_unix_server(self._serve, path, limit=self._limit)
            os.chmod(path, _SOCKET_MODE)
            info = os.stat(path)
        except OSError as exc:
            why = "it exists and is not a socket" if exc.errno == errno.EADDRINUSE else None
            raise ConfigError(
                f"ingest.unix_socket {path} cannot be created ({why or exc.strerror or exc}): {fix}"
            ) from exc
        self._socket_id = (info.st_dev, info.st_ino)
        return server

    @staticmethod
    async def _listening(path: Path) -> bool:
        """Whether a live process serves the socket file at ``path``."""
        try:
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                return False
        except OSError:
            return False
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(probe, str(path))
        except OSError:
            return False  # refused: a stale file, safe to replace
        finally:
            probe.close()
        return True

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
        self._remove_socket()

    def _remove_socket(self) -> None:
        """Remove our socket file (asyncio leaves it), unless another agent replaced it."""
        if self._socket_id is None:
            return
        with contextlib.suppress(OSError):
            info = os.stat(self._unix)
            if (info.st_dev, info.st_ino) == self._socket_id:
                os.unlink(self._unix)
        self._socket_id = None

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
                    detail = (
                        f"line longer than ingest.max_line_bytes ({self._limit} bytes); "
                        "nothing of it was used"
                    )
                    await replies.put(self._done(self._malformed(detail, detail)))
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
        # Without its terminator, so a JSON error's position is on the line firmware sent.
        line = line.rstrip(b"\r\n")
        try:
            signal = SignalIn.model_validate_json(line)
        except ValidationError as exc:
            request = _local_request(line)
            if request is not None:
                return self._done(self._local(*request))
            why = explain_malformed(exc)
            return self._done(self._malformed(why.detail, why.loggable))
        return asyncio.ensure_future(self._submit(signal))

    def _malformed(self, detail: str, loggable: str) -> dict[str, Any]:
        """The reply to a line that is not a request, counted and (rate-limited) logged.

        The contract replies seq=null: a line that is not a valid SignalIn has no
        trustworthy seq, and echoing a half-parsed one could confuse firmware. ``detail``
        is for the sender only; the log gets ``loggable`` (no key names firmware made up).
        """
        self.malformed += 1
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY_S:
            self._logged_at = now
            log.warning("malformed ingest line (%d so far): %s", self.malformed, loggable)
        return {"seq": None, "status": "rejected", "reason": "malformed", "detail": detail}

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
