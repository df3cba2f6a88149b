"""Egress policy: where the hub may send a request that a tenant chose the address of.

A brand's admin key sets the brand's webhook URL, and the hub POSTs to it from inside the
operator's network. Without a policy that makes the hub a confused deputy: InfluxDB 1.x
runs the ``q`` of ``POST /query?q=...`` from the URL, so one brand's webhook pointed at the
hub's own InfluxDB deleted another brand's twins. The policy therefore refuses, for every
address a URL's host resolves to (all of them, so a name cannot hide a loopback answer
among public ones):

- the hub's own services: InfluxDB (``influx.url``), the broker (``mqtt.host``/``port``)
  and the API listener, on any of this host's addresses when they listen on one; nothing
  permits these;
- every address that is not public unicast: unspecified, loopback, link-local (cloud
  metadata services live there), multicast, private (RFC 1918, IPv6 unique local), the
  shared CGNAT range 100.64.0.0/10, reserved and other special-purpose ranges, and IPv6
  forms that embed such an IPv4 address (IPv4-mapped, NAT64, 6to4); the operator's
  ``webhooks.allow`` list (host names, addresses, CIDR networks, optionally with a port)
  permits these, which is how an internal receiver is allowed;
- plain ``http://`` unless ``webhooks.require_https`` is off.

It is checked when the URL is registered (a 400 naming the address and why) and again at
every delivery, when the connection is made: :meth:`EgressPolicy.connector` resolves
names itself and connects only to the addresses it checked, so a name whose DNS answer
changes after the check (rebinding) cannot pass the check and connect elsewhere.
Redirects are never followed (the sender treats a 3xx as a failed delivery), and proxies
from the environment are not used (aiohttp's ``trust_env`` stays off).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from cloud_hub._addresses import (
    AllowEntry,
    IPAddress,
    classify,
    ip_of,
    parse_allow,
)
from cloud_hub._errors import RequestError

if TYPE_CHECKING:
    from cloud_hub._config import HubConfig, WebhookSettings

__all__ = ["AllowEntry", "EgressPolicy", "Service", "classify", "parse_allow"]

_MAX_URL = 2048


@dataclass(frozen=True)
class Service:
    """One of the hub's own endpoints, which no webhook may reach."""

    #: what to call it in a refusal ("the hub's InfluxDB (influx.url)")
    name: str
    host: str
    port: int


def _is_local(ip: IPAddress) -> bool:
    """Whether ``ip`` is this host (loopback, or an address a socket can bind to)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_loopback:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((str(ip), 0))
    except OSError:
        return False
    return True


class EgressPolicy:
    """The rules above, for one hub; see the module docstring."""

    def __init__(
        self, settings: WebhookSettings, services: Callable[[], Iterable[Service]] = tuple
    ) -> None:
        self.settings = settings
        self._allow = [parse_allow(entry) for entry in settings.allow]
        self._services = services

    @classmethod
    def for_hub(cls, config: HubConfig, api_port: Callable[[], int]) -> EgressPolicy:
        """The policy of a hub with ``config`` whose API listens on ``api_port()`` (known
        only once it started when ``api.port`` is 0)."""
        influx = URL(config.influx.url)

        def services() -> list[Service]:
            out = [
                Service("the hub's MQTT broker (mqtt.host)", config.mqtt.host, config.mqtt.port),
                Service("the hub's own API (api.host)", config.api.host, api_port()),
            ]
            if influx.host is not None and influx.port is not None:
                out.append(Service("the hub's InfluxDB (influx.url)", influx.host, influx.port))
            return out

        return cls(config.webhooks, services)

    # -- checks ------------------------------------------------------------------------
    def check_url(self, url: str) -> URL:
        """Check ``url`` and every address its host resolves to now (blocking DNS: call
        from a thread); return the parsed URL or raise RequestError (400 ``bad_url`` or
        ``url_refused``) saying why and what to change."""
        parsed, host, port = self._parse(url)
        for ip in _literal(host) or self._resolve(host, port):
            self.check_address(host, ip, port)
        return parsed

    async def check_url_async(self, url: str) -> URL:
        """:meth:`check_url` in a thread, so DNS does not block the event loop."""
        return await asyncio.to_thread(self.check_url, url)

    def check_address(self, hostname: str, ip: IPAddress, port: int) -> None:
        """Raise RequestError (``url_refused``) unless ``ip``:``port`` may be reached
        for a URL naming ``hostname``."""
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            # A mapped address reaches the IPv4 host: compare and allow-list by that.
            ip = ip.ipv4_mapped
        for service in self._services():
            if self._is_service(ip, port, service):
                raise RequestError(
                    f"url reaches {_hostport(ip, port)}, {service.name}; webhooks may never "
                    "reach the hub's own services (no webhooks.allow entry permits them)",
                    reason="url_refused",
                )
        if any(entry.matches(hostname, ip, port) for entry in self._allow):
            return
        why = classify(ip)
        if why is not None:
            raise RequestError(
                f"url resolves to {ip}, {why}; webhooks may not reach loopback, private, "
                "link-local or other non-public addresses; the hub's operator can allow it "
                f'with webhooks.allow = ["{ip}"] (or its host name, or a CIDR network) in '
                "the hub config",
                reason="url_refused",
            )

    def _parse(self, url: str) -> tuple[URL, str, int]:
        if len(url) > _MAX_URL:
            raise RequestError(f"url is longer than {_MAX_URL} characters", reason="bad_url")
        try:
            parsed = URL(url)
        except ValueError as exc:
            raise RequestError(f"url is not a valid URL: {exc}", reason="bad_url") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise RequestError(
                'url must be an absolute http(s) URL, e.g. "https://hooks.example.com/twinsync"',
                reason="bad_url",
            )
        if parsed.scheme != "https" and self.settings.require_https:
            raise RequestError(
                "url must use https:// (plain http is refused while the hub's "
                "webhooks.require_https is on)",
                reason="url_refused",
            )
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        return parsed, parsed.host, port

    def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise RequestError(
                f"url host {host} does not resolve ({exc}); use a name the hub can resolve",
                reason="bad_url",
            ) from None
        return [ip_of(str(info[4][0])) for info in infos]

    def _is_service(self, ip: IPAddress, port: int, service: Service) -> bool:
        if port != service.port:
            return False
        for svc_ip in _literal(service.host) or self._service_ips(service):
            if svc_ip == ip or (_is_local(svc_ip) and _is_local(ip)):
                # Same port on this very host: the service (bound to it or to all).
                return True
        return False

    def _service_ips(self, service: Service) -> list[IPAddress]:
        if service.host in ("", "*"):
            return [ipaddress.IPv4Address(0)]
        try:
            return self._resolve(service.host, service.port)
        except RequestError:
            return []  # a service name that does not resolve cannot be reached by it either

    # -- the connection ------------------------------------------------------------------
    def connector(self) -> aiohttp.TCPConnector:
        """A connector that resolves every name through this policy and connects only to
        addresses it checked (no DNS cache: each connection resolves and checks anew)."""
        return aiohttp.TCPConnector(resolver=_PolicyResolver(self), use_dns_cache=False)


def _literal(host: str) -> list[IPAddress]:
    try:
        return [ip_of(host.strip("[]"))]
    except ValueError:
        return []


def _hostport(ip: IPAddress, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


class _PolicyResolver(ThreadedResolver):
    """aiohttp's resolver, refusing (RequestError) if any answer breaks the policy: the
    connection is then made to exactly the addresses that were checked."""

    def __init__(self, policy: EgressPolicy) -> None:
        super().__init__()
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await super().resolve(host, port, family)
        for answer in answers:
            await asyncio.to_thread(
                self._policy.check_address, host, ip_of(answer["host"]), answer["port"]
            )
        return answers
