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
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from ._errors import CloudHubError

if TYPE_CHECKING:
    from ._config import HubConfig, WebhookSettings

__all__ = ["AllowEntry", "EgressPolicy", "Service", "classify", "parse_allow"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_ULA = ipaddress.ip_network("fc00::/7")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_MAX_URL = 2048


def classify(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address, as a phrase ("a loopback address");
    None when it is one."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and any(ip in net for net in _NAT64):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = classify(embedded)
            # The IPv6 form reaches the IPv4 address it carries (mapped sockets, NAT64
            # and 6to4 gateways): judge that address.
            return None if inner is None else f"an IPv6 form of {embedded}, {inner}"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip in _CGNAT:
        return "a shared (CGNAT, RFC 6598) address"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _ULA:
        return "a unique local (private) address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        # RFC 1918 and the other special-purpose ranges Python lists as private
        return "a private address"
    if not ip.is_global:
        return "a non-public address"
    return None


@dataclass(frozen=True)
class AllowEntry:
    """One ``webhooks.allow`` entry: a host name or an address/network, maybe a port."""

    #: lower-case host name (matched against the URL's host), or None
    host: str | None
    #: address or network the resolved address must lie in, or None
    network: IPNetwork | None
    #: the only port allowed, or None for any
    port: int | None

    def matches(self, hostname: str, ip: IPAddress, port: int) -> bool:
        """Whether this entry permits connecting to ``ip``:``port`` for ``hostname``."""
        if self.port is not None and port != self.port:
            return False
        if self.host is not None:
            return _norm_host(hostname) == self.host
        return (
            self.network is not None and ip.version == self.network.version and ip in self.network
        )


def parse_allow(text: str) -> AllowEntry:
    """Parse ``"hooks.internal"``, ``"10.0.0.0/8"``, ``"127.0.0.1:8443"``,
    ``"[fd00::/8]:443"`` or ``"::1"``; raise ValueError saying what is wrong."""
    raw = text.strip()
    body, port = raw, None
    if raw.startswith("["):  # [IPv6] or [IPv6/len], maybe with :port
        body, sep, rest = raw[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"webhooks.allow entry {text!r}: use [IPv6] or [IPv6]:port")
        port = _port(text, rest[1:]) if rest else None
    elif raw.count(":") == 1:  # host:port or IPv4:port (a bare IPv6 has several colons)
        body, port_text = raw.split(":")
        port = _port(text, port_text)
    try:
        network = ipaddress.ip_network(body, strict=False)
    except ValueError:
        host = _norm_host(body)
        if ":" in body or "/" in body or not _HOSTNAME.match(host):
            raise ValueError(
                f"webhooks.allow entry {text!r} is neither a host name nor an IP address or "
                'CIDR network (e.g. "hooks.internal", "10.1.2.3", "10.0.0.0/8", '
                '"127.0.0.1:8443", "[fd00::/8]:443")'
            ) from None
        return AllowEntry(host, None, port)
    return AllowEntry(None, network, port)


def _port(text: str, value: str) -> int:
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError(f"webhooks.allow entry {text!r}: the port must be 1-65535")
    return int(value)


def _norm_host(host: str) -> str:
    return host.lower().rstrip(".")


def _ip(text: str) -> IPAddress:
    # getaddrinfo may answer a scoped IPv6 address ("fe80::1%eth0"): the scope is no part
    # of what the address is.
    return ipaddress.ip_address(text.split("%", 1)[0])


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
        from a thread); return the parsed URL or raise CloudHubError (``bad_url`` or
        ``url_refused``) saying why and what to change."""
        parsed, host, port = self._parse(url)
        for ip in _literal(host) or self._resolve(host, port):
            self.check_address(host, ip, port)
        return parsed

    async def check_url_async(self, url: str) -> URL:
        """:meth:`check_url` in a thread, so DNS does not block the event loop."""
        return await asyncio.to_thread(self.check_url, url)

    def check_address(self, hostname: str, ip: IPAddress, port: int) -> None:
        """Raise CloudHubError (``url_refused``) unless ``ip``:``port`` may be reached
        for a URL naming ``hostname``."""
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            # A mapped address reaches the IPv4 host: compare and allow-list by that.
            ip = ip.ipv4_mapped
        for service in self._services():
            if self._is_service(ip, port, service):
                raise CloudHubError(
                    f"url reaches {_hostport(ip, port)}, {service.name}; webhooks may never "
                    "reach the hub's own services (no webhooks.allow entry permits them)",
                    reason="url_refused",
                )
        if any(entry.matches(hostname, ip, port) for entry in self._allow):
            return
        why = classify(ip)
        if why is not None:
            raise CloudHubError(
                f"url resolves to {ip}, {why}; webhooks may not reach loopback, private, "
                "link-local or other non-public addresses; the hub's operator can allow it "
                f'with webhooks.allow = ["{ip}"] (or its host name, or a CIDR network) in '
                "the hub config",
                reason="url_refused",
            )

    def _parse(self, url: str) -> tuple[URL, str, int]:
        if len(url) > _MAX_URL:
            raise CloudHubError(f"url is longer than {_MAX_URL} characters", reason="bad_url")
        try:
            parsed = URL(url)
        except ValueError as exc:
            raise CloudHubError(f"url is not a valid URL: {exc}", reason="bad_url") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise CloudHubError(
                'url must be an absolute http(s) URL, e.g. "https://hooks.example.com/twinsync"',
                reason="bad_url",
            )
        if parsed.scheme != "https" and self.settings.require_https:
            raise CloudHubError(
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
            raise CloudHubError(
                f"url host {host} does not resolve ({exc}); use a name the hub can resolve",
                reason="bad_url",
            ) from None
        return [_ip(str(info[4][0])) for info in infos]

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
        except CloudHubError:
            return []  # a service name that does not resolve cannot be reached by it either

    # -- the connection ------------------------------------------------------------------
    def connector(self) -> aiohttp.TCPConnector:
        """A connector that resolves every name through this policy and connects only to
        addresses it checked (no DNS cache: each connection resolves and checks anew)."""
        return aiohttp.TCPConnector(resolver=_PolicyResolver(self), use_dns_cache=False)


def _literal(host: str) -> list[IPAddress]:
    try:
        return [_ip(host.strip("[]"))]
    except ValueError:
        return []


def _hostport(ip: IPAddress, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


class _PolicyResolver(ThreadedResolver):
    """aiohttp's resolver, refusing (CloudHubError) if any answer breaks the policy: the
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
                self._policy.check_address, host, _ip(answer["host"]), answer["port"]
            )
        return answers
