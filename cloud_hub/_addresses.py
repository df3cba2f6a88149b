"""Network addresses the hub judges: is an address public, and the operator's allow entries.

Shared by the configuration (``webhooks.allow`` entries are checked when the config
loads) and the egress policy (cloud_hub.privacy, which applies them to every outbound
connection a tenant chose the address of).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = ["AllowEntry", "IPAddress", "IPNetwork", "classify", "ip_of", "norm_host", "parse_allow"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_ULA = ipaddress.ip_network("fc00::/7")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


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
            return norm_host(hostname) == self.host
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
        host = norm_host(body)
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


def norm_host(host: str) -> str:
    return host.lower().rstrip(".")


def ip_of(text: str) -> IPAddress:
    # getaddrinfo may answer a scoped IPv6 address ("fe80::1%eth0"): the scope is no part
    # of what the address is.
    return ipaddress.ip_address(text.split("%", 1)[0])
