"""Both transports on real sockets, against servers that misbehave the ways networks
do: nothing listening, a server that never answers, a redirect to another host, TLS
to a plain server. Each becomes a :class:`TransportError` (or the answer a
:class:`ResponseError`), retried only as the policy says, and the key goes nowhere but
the host named."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from _poll import eventually

from twinsync.client import (
    AsyncClient,
    Client,
    RequestTimeoutError,
    ResponseError,
    RetryPolicy,
    TransportError,
)
from twinsync.services import free_port

KEY = "tsk_0123456789ab_" + "k" * 43
FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.02)


def _blocking(url: str, **kw: Any) -> Callable[[], Any]:
    client = Client(url, "acme", api_key=KEY, **kw)
    return client.list_twins


def _asyncio(url: str, **kw: Any) -> Callable[[], Any]:
    if "sleep" in kw:
        record = kw.pop("sleep")

        async def sleep(wait: float) -> None:
            record(wait)

        kw["sleep"] = sleep

    async def run() -> Any:
        async with AsyncClient(url, "acme", api_key=KEY, **kw) as client:
            return await client.list_twins()

    return lambda: asyncio.run(run())


FLAVOURS = pytest.mark.parametrize("flavour", [_blocking, _asyncio], ids=["blocking", "asyncio"])


@FLAVOURS
def test_nothing_listening_is_a_transport_error_after_the_policys_tries(
    flavour: Callable[..., Callable[[], Any]],
) -> None:
    waits: list[float] = []
    call = flavour(f"http://127.0.0.1:{free_port()}", retry=FAST, sleep=waits.append)
    with pytest.raises(TransportError) as refused:
        call()
    assert not isinstance(refused.value, RequestTimeoutError)
    assert str(refused.value).startswith("list_twins: http://127.0.0.1:")
    assert KEY not in str(refused.value)
    assert len(waits) == 2  # three tries in all


class Silent(int):
    """The port of a server that never answers, and the connections it holds."""

    held: list[socket.socket]


@pytest.fixture
def silent() -> Iterator[Silent]:
    """A server that accepts connections, reads, and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = Silent(server.getsockname()[1])
    port.held = held
    yield port
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@FLAVOURS
def test_a_server_that_never_answers_is_a_timeout(
    flavour: Callable[..., Callable[[], Any]], silent: int
) -> None:
    call = flavour(f"http://127.0.0.1:{silent}", timeout=0.3, retry=RetryPolicy(attempts=1))
    with pytest.raises(RequestTimeoutError, match="did not answer in time"):
        call()


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[int, str | None]]
    location = ""

    def do_GET(self) -> None:
        self.seen.append((self.server.server_address[1], self.headers.get("Authorization")))
        if self.location:
            self.send_response(302)
            self.send_header("Location", self.location)
            self.send_header("Content-Length", "0")
        else:
            body = b'{"brand": "acme", "twins": []}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def redirecting() -> Iterator[tuple[int, int, list[tuple[int, str | None]]]]:
    """A server that redirects every request to a second one; both record what they got."""
    seen: list[tuple[int, str | None]] = []
    other = ThreadingHTTPServer(("127.0.0.1", 0), type("Other", (_Recorder,), {"seen": seen}))
    location = f"http://127.0.0.1:{other.server_address[1]}/v1/brands/acme/twins"
    first = ThreadingHTTPServer(
        ("127.0.0.1", 0), type("First", (_Recorder,), {"seen": seen, "location": location})
    )
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (first, other)]
    for t in threads:
        t.start()
    yield first.server_address[1], other.server_address[1], seen
    for s in (first, other):
        s.shutdown()
        s.server_close()


@FLAVOURS
def test_a_redirect_is_not_followed_and_the_key_goes_nowhere_else(
    flavour: Callable[..., Callable[[], Any]], redirecting: tuple[int, int, list[Any]]
) -> None:
    first, other, seen = redirecting
    with pytest.raises(ResponseError, match=r"\(302\) is not a TwinPage"):
        flavour(f"http://127.0.0.1:{first}")()
    assert seen == [(first, f"Bearer {KEY}")]
    assert flavour(f"http://127.0.0.1:{other}")() is not None  # the other server works


@FLAVOURS
def test_tls_to_a_plain_server_is_a_transport_error(
    flavour: Callable[..., Callable[[], Any]], redirecting: tuple[int, int, list[Any]]
) -> None:
    _first, other, seen = redirecting
    with pytest.raises(TransportError) as failed:
        flavour(f"https://127.0.0.1:{other}", retry=RetryPolicy(attempts=1))()
    assert "did not answer" in str(failed.value)
    assert seen == []  # nothing readable reached it, the key least of all


def _closed_by_peer(conn: socket.socket) -> bool:
    """Whether the client closed ``conn`` (what it sent read, then end of stream)."""
    conn.settimeout(5)
    try:
        while chunk := conn.recv(65536):
            del chunk
    except TimeoutError:
        return False
    return True


async def test_cancelling_an_async_call_propagates_and_leaves_no_connection_open(
    silent: Silent,
) -> None:
    """A call waiting for an answer is cancelled: the caller gets CancelledError (not a
    TransportError, not swallowed), and closing the client closes the connection."""
    client = AsyncClient(f"http://127.0.0.1:{silent}", "acme", api_key=KEY, timeout=60)
    waiting = asyncio.create_task(client.list_twins())
    assert await eventually(lambda: bool(silent.held), within=10, every=0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await client.aclose()
    assert await asyncio.to_thread(lambda: all(_closed_by_peer(c) for c in silent.held))
