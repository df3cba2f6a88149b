"""A minimal MQTT 3.1.1 client on asyncio streams, for packing thousands of devices into
one process.

paho keeps a thread per client and aiomqtt a task group and a paho client each; the swarm
needs 10,000 connections on 2 cores, so each connection here is one socket, one reader
task and a few dicts. Only what a device uses: CONNECT (user, password, will), SUBSCRIBE,
QoS 0/1 PUBLISH both ways, PUBACK, PINGREQ, DISCONNECT. Not a general client: no QoS 2, no
reconnect (the swarm counts a lost connection as a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LiteClient", "MqttRefusedError", "Will"]

_CONNECT, _CONNACK, _PUBLISH, _PUBACK = 1, 2, 3, 4
_SUBSCRIBE, _SUBACK, _PINGREQ, _PINGRESP, _DISCONNECT = 8, 9, 12, 13, 14


class MqttRefusedError(ConnectionError):
    """The broker refused a CONNECT (``code``) or a SUBSCRIBE (code 0x80)."""

    def __init__(self, what: str, code: int) -> None:
        super().__init__(f"{what} refused by the broker (code {code})")
        self.code = code


@dataclass(frozen=True)
class Will:
    """The last will: published by the broker if the connection drops."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def _str(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def _bin(raw: bytes) -> bytes:
    return struct.pack(">H", len(raw)) + raw


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    size, length = len(body), bytearray()
    while True:
        byte, size = size % 128, size // 128
        length.append(byte | (0x80 if size else 0))
        if not size:
            break
    return bytes((kind << 4 | flags,)) + bytes(length) + body


class LiteClient:
    """One MQTT 3.1.1 connection. ``on_message(topic, payload)`` is called for every
    PUBLISH received (QoS 1 ones are PUBACKed right after it returns)."""

    def __init__(
        self,
        client_id: str,
        username: str,
        password: str,
        on_message: Callable[[str, bytes], None],
        *,
        keepalive_s: int = 600,
        clean_session: bool = False,
    ) -> None:
        self.client_id = client_id
        self._username = username
        self._password = password
        self._on_message = on_message
        self._keepalive = keepalive_s
        self._clean = clean_session
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._next_mid = 0
        self._waiting: dict[int, asyncio.Future[bytes]] = {}
        self._connack: asyncio.Future[bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        #: set once the connection ended (the broker closed it, or :meth:`close`)
        self.closed = asyncio.Event()
        #: PUBACKs received for our QoS 1 publishes
        self.pubacks = 0

    def _mid(self) -> int:
        self._next_mid = self._next_mid % 65535 + 1
        return self._next_mid

    async def connect(self, host: str, port: int, will: Will | None = None) -> bool:
        """Open the connection; return the CONNACK's session-present flag."""
        self._reader, self._writer = await asyncio.open_connection(host, port, limit=1 << 20)
        flags = 0x80 | 0x40 | (0x02 if self._clean else 0)
        payload = _str(self.client_id)
        if will is not None:
            flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
            payload += _str(will.topic) + _bin(will.payload)
        payload += _str(self._username) + _str(self._password)
        header = _str("MQTT") + bytes((4, flags)) + struct.pack(">H", self._keepalive)
        self._connack = asyncio.get_running_loop().create_future()
        self._writer.write(_packet(_CONNECT, 0, header + payload))
        self._task = asyncio.create_task(self._read(), name=f"mqtt-lite[{self.client_id}]")
        ack = await self._connack
        if ack[1] != 0:
            await self.close()
            raise MqttRefusedError(f"CONNECT of {self.client_id}", ack[1])
        return bool(ack[0] & 1)

    async def subscribe(self, topics: list[str], qos: int = 1) -> None:
        """Subscribe and wait for the SUBACK; raise MqttRefused if any filter is refused."""
        mid = self._mid()
        body = struct.pack(">H", mid) + b"".join(_str(t) + bytes((qos,)) for t in topics)
        codes = await self._request(mid, _packet(_SUBSCRIBE, 0x02, body))
        if any(c == 0x80 for c in codes):
            raise MqttRefusedError(f"SUBSCRIBE of {self.client_id} to {topics}", 0x80)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Queue one PUBLISH (QoS 1 PUBACKs are only counted: the device-level ack on its
        ack topic is what matters, as for a real agent)."""
        assert self._writer is not None
        body = _str(topic)
        if qos:
            body += struct.pack(">H", self._mid())
        self._writer.write(_packet(_PUBLISH, (qos << 1) | int(retain), body + payload))

    async def drain(self) -> None:
        """Wait until the socket's send buffer is below its high-water mark."""
        assert self._writer is not None
        await self._writer.drain()

    async def ping(self) -> None:
        """Send a PINGREQ (keeps the connection alive past its keepalive)."""
        assert self._writer is not None
        self._writer.write(_packet(_PINGREQ, 0, b""))
        await self._writer.drain()

    async def _request(self, mid: int, packet: bytes) -> bytes:
        assert self._writer is not None
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[mid] = future
        self._writer.write(packet)
        return await future

    async def _read(self) -> None:
        reader = self._reader
        assert reader is not None
        try:
            while True:
                first = await reader.readexactly(1)
                size, shift = 0, 0
                while True:
                    byte = (await reader.readexactly(1))[0]
                    size |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                body = await reader.readexactly(size) if size else b""
                self._dispatch(first[0] >> 4, first[0] & 0x0F, body)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.closed.set()
            for future in [self._connack, *self._waiting.values()]:
                if future is not None and not future.done():
                    future.set_exception(ConnectionError(f"{self.client_id}: connection closed"))

    def _dispatch(self, kind: int, flags: int, body: bytes) -> None:
        if kind == _PUBLISH:
            n = struct.unpack_from(">H", body)[0]
            topic = body[2 : 2 + n].decode()
            qos = (flags >> 1) & 3
            at = 2 + n
            mid = struct.unpack_from(">H", body, at)[0] if qos else 0
            self._on_message(topic, body[at + 2 if qos else at :])
            if qos and self._writer is not None:
                self._writer.write(_packet(_PUBACK, 0, struct.pack(">H", mid)))
        elif kind == _PUBACK:
            self.pubacks += 1
        elif kind == _CONNACK and self._connack is not None and not self._connack.done():
            self._connack.set_result(body)
        elif kind == _SUBACK:
            future = self._waiting.pop(struct.unpack_from(">H", body)[0], None)
            if future is not None and not future.done():
                future.set_result(body[2:])

    async def close(self) -> None:
        """DISCONNECT (the will is not published) and close the socket."""
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(ConnectionError, OSError):
                writer.write(_packet(_DISCONNECT, 0, b""))
                await writer.drain()
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            # asyncio.wait, not await: the reader's CancelledError is its own, and a
            # cancellation of close() itself must still propagate.
            await asyncio.wait([self._task])
