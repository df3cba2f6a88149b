"""serve: the API's listening socket, bounded (docs/hub.md, "Connection limits").

Every connection costs a file descriptor, and the hub's other work (the registry's SQLite
files, InfluxDB, the broker, model files) needs descriptors too: a flood of idle
connections that takes them all makes that work fail. So:

- a **connection cap**: beyond ``api.max_connections`` a new connection is closed at
  once (counted in ``twinsync_hub_api_connections_refused_total``); the ones already
  open keep working. The cap defaults to what fits under the process's descriptor limit
  (read, and raised to the hard limit, at start-up) with :data:`RESERVED_FDS` kept back;
- **probe slots**: ``api.probe_connections`` more connections are let in past the cap,
  but may only ask ``/healthz``, ``/readyz`` and ``/metrics``, get one answer and are cut
  after :data:`PROBE_LIFETIME_S`, so an orchestrator's probe gets through a flood as far
  as the flood leaves slots free;
- **timeouts**: ``api.idle_timeout_s`` closes a connection that has not sent a whole
  request head since it opened or since its last answer (aiohttp's keep-alive timer,
  which it starts when the connection opens, so slow headers are cut as well);
  ``api.body_timeout_s`` closes one whose request body has not fully arrived in time.

The gate stands between asyncio and aiohttp's own protocol object, so the cap is
decided before aiohttp sees a byte. With TLS the gate sees a connection once its
handshake is done; the handshake itself is bounded by ``api.idle_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from cloud_hub._config import ApiSettings
from cloud_hub._metrics import Metrics

from ._errors import error_response

__all__ = [
    "LIMITS",
    "PROBE_LIFETIME_S",
    "RESERVED_FDS",
    "ConnectionGate",
    "GatedSite",
    "connection_cap",
    "connection_limits",
    "install",
]

log = logging.getLogger("cloud_hub.api")

#: descriptors kept for everything but API connections: SQLite files (one per thread
#: that opens the registry), InfluxDB and webhook connection pools, the broker, model
#: files, the event loop's own. Measured: an idle hub holds about a dozen.
RESERVED_FDS = 256
#: paho-mqtt waits on its socket with select(), which cannot take a descriptor numbered
#: 1024 or above; keeping every descriptor below it keeps a broker reconnect possible
#: while the API is full (the default cap fits under it)
SELECT_FD_LIMIT = 1024
#: a probe connection past the cap is cut after this long (or its idle timeout if shorter)
PROBE_LIFETIME_S = 5.0
#: what a probe connection may ask
PROBE_PATHS = frozenset(("/healthz", "/readyz", "/metrics"))
_MIN_CAP = 16

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def connection_cap(settings: ApiSettings) -> int:
    """The API's connection cap: ``api.max_connections``, or (0) what fits under the
    descriptor limit. Raises the soft limit to the hard one first when
    ``api.raise_fd_limit``; warns when the cap does not fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if settings.raise_fd_limit and soft != hard:
        # An infinite hard limit is not a value the kernel takes as a soft one.
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.info("file-descriptor limit raised from %d to %d", soft, target)
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the file-descriptor limit from %d: %s", soft, exc)
    probes = settings.probe_connections
    if settings.max_connections == 0:
        fitting = min(soft, SELECT_FD_LIMIT) - RESERVED_FDS - probes
        cap = max(_MIN_CAP, fitting)
        if fitting < _MIN_CAP:
            log.warning(
                "the file-descriptor limit %d leaves no room for API connections after "
                "the %d the hub keeps for itself; the cap is %d anyway: raise the limit "
                "(LimitNOFILE=65536 in the systemd unit, ulimit -n)",
                soft,
                RESERVED_FDS,
                cap,
            )
        return cap
    cap = settings.max_connections
    if cap + probes + RESERVED_FDS > soft:
        log.warning(
            "api.max_connections %d (+%d probe connections) does not fit under the "
            "file-descriptor limit %d with the %d the hub keeps for itself: a connection "
            "flood can make its own files fail to open; raise the limit (LimitNOFILE) "
            "or lower api.max_connections (0 sizes it from the limit)",
            cap,
            probes,
            soft,
            RESERVED_FDS,
        )
    elif cap + probes + RESERVED_FDS > SELECT_FD_LIMIT:
        log.warning(
            "api.max_connections %d: with that many API connections open, a broker "
            "reconnect can get a descriptor above %d, which the MQTT client cannot "
            "wait on, and retries until connections close; 0 sizes the cap below it",
            cap,
            SELECT_FD_LIMIT - 1,
        )
    return cap


class _Gated(asyncio.Protocol):
    """One connection: admitted (then aiohttp's protocol gets every call) or refused."""

    def __init__(self, gate: ConnectionGate, inner: asyncio.Protocol) -> None:
        self._gate = gate
        self._inner = inner
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._gate.admit(transport):
            transport.abort()  # type: ignore[attr-defined]
            return
        self._transport = transport
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._transport is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._gate.release(self._transport)
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._inner.resume_writing()


class ConnectionGate:
    """Counts the API's connections and decides which one may in."""

    def __init__(self, cap: int, probes: int, probe_lifetime_s: float, metrics: Metrics) -> None:
        self.cap = cap
        self.probes = probes
        self._probe_lifetime_s = probe_lifetime_s
        self._metrics = metrics
        self._open: set[asyncio.BaseTransport] = set()
        self._probing: dict[asyncio.BaseTransport, asyncio.TimerHandle] = {}
        metrics.set("twinsync_hub_api_max_connections", cap)

    def wrap(self, inner: asyncio.Protocol) -> asyncio.Protocol:
        """The protocol asyncio talks to for one new connection."""
        return _Gated(self, inner)

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        """Whether a new connection may in (as a probe when past the cap)."""
        if len(self._open) < self.cap:
            self._open.add(transport)
        elif len(self._probing) < self.probes:
            loop = asyncio.get_running_loop()
            self._probing[transport] = loop.call_later(
                self._probe_lifetime_s, self.cut, transport, "probe_lifetime"
            )
        else:
            self._metrics.inc("twinsync_hub_api_connections_refused_total")
            return False
        self._gauge()
        return True

    def release(self, transport: asyncio.BaseTransport) -> None:
        """A connection closed (by either side)."""
        self._open.discard(transport)
        timer = self._probing.pop(transport, None)
        if timer is not None:
            timer.cancel()
        self._gauge()

    def is_probe(self, transport: asyncio.BaseTransport | None) -> bool:
        """Whether ``transport`` came in past the cap (health routes only)."""
        return transport in self._probing

    def cut(self, transport: asyncio.BaseTransport, reason: str) -> None:
        """Close ``transport`` now (without flushing: its peer may not be reading),
        counted by ``reason``."""
        self._metrics.inc("twinsync_hub_api_connections_cut_total", reason=reason)
        transport.abort()  # type: ignore[attr-defined]

    def _gauge(self) -> None:
        self._metrics.set("twinsync_hub_api_connections", len(self._open) + len(self._probing))


@dataclass(frozen=True)
class _Limits:
    gate: ConnectionGate
    body_timeout_s: float


LIMITS = web.AppKey("connection_limits", _Limits)


def install(app: web.Application, gate: ConnectionGate, body_timeout_s: float) -> None:
    """Give :func:`connection_limits` its gate (before the app starts)."""
    app[LIMITS] = _Limits(gate, body_timeout_s)


@web.middleware
async def connection_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Probe connections get the health routes only; every body must arrive in time."""
    limits = request.app.get(LIMITS)
    if limits is None:  # an app served without the gate (tests of the routes alone)
        return await handler(request)
    if limits.gate.is_probe(request.transport):
        response: web.StreamResponse
        if request.path not in PROBE_PATHS:
            response = error_response(
                503,
                "too_many_connections",
                "the hub has api.max_connections connections open: retry later, or reuse "
                "a keep-alive connection",
                headers={"Retry-After": "1"},
            )
        else:
            response = await handler(request)
        response.force_close()  # one answer per probe connection
        return response
    if not request.body_exists or request.content.is_eof():
        return await handler(request)
    loop = asyncio.get_running_loop()
    timer = loop.call_later(limits.body_timeout_s, _body_late, request, limits.gate)
    try:
        return await handler(request)
    finally:
        timer.cancel()


def _body_late(request: web.Request, gate: ConnectionGate) -> None:
    if request.content.is_eof() or request.transport is None:
        return
    resource = request.match_info.route.resource
    where = resource.canonical if resource is not None else "(no route)"
    log.warning("api %s %s: request body not received in time; connection closed",
                request.method, where)  # fmt: skip
    gate.cut(request.transport, "body_timeout")


class GatedSite(web.BaseSite):
    """A TCP listener (like ``web.TCPSite``) whose connections pass a :class:`ConnectionGate`."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        gate: ConnectionGate,
        *,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout_s: float = 15.0,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._gate = gate
        self._handshake_timeout_s = handshake_timeout_s
        #: the port bound (``port`` 0 picks a free one)
        self.bound_port = port

    @property
    def name(self) -> str:
        """The listener's URL."""
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self.bound_port}"

    async def start(self) -> None:
        """Listen."""
        await super().start()
        server = self._runner.server
        assert server is not None, "runner.setup() first"
        gate = self._gate
        tls = self._ssl_context
        self._server = await asyncio.get_running_loop().create_server(
            lambda: gate.wrap(server()),
            self._host,
            self._port,
            ssl=tls,
            backlog=self._backlog,
            reuse_address=True,
            ssl_handshake_timeout=self._handshake_timeout_s if tls is not None else None,
        )
        sockets = self._server.sockets
        if sockets:
            self.bound_port = int(sockets[0].getsockname()[1])
