"""Which address a request came from, when reverse proxies stand in front (PENPAY_TRUSTED_PROXIES).

One rule for the HTTP bridge, the gRPC API's per-IP rate limits and the M-Pesa callback allow-list:
the peer is the client unless it is a trusted proxy; then X-Forwarded-For is walked from the right
(each proxy appends the address it saw) and the first hop that is not a trusted proxy is the client.
Hops left of it were written by that client and could be anything, so they are never believed. A
garbled hop ends the walk at the trusted hop that passed it on.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str | Iterable[str] | None) -> tuple[IpNetwork, ...]:
    """ "1.2.3.4, 10.0.0.0/8" (or a list of such) -> networks. Blank entries are ignored; a bad one
    raises ValueError naming it."""
    parts = (text or "").replace(";", ",").split(",") if isinstance(text, str | None) else list(text)
    out: list[IpNetwork] = []
    for part in parts:
        part = part.strip()
        if part:
            try:
                out.append(ipaddress.ip_network(part, strict=False))
            except ValueError as exc:
                raise ValueError(f"not an IP address or network: {part!r}") from exc
    return tuple(out)


def normalized_ip(text: str | None) -> str | None:
    """The address in canonical form (an IPv4-mapped IPv6 address as IPv4), None when not an IP."""
    if not text:
        return None
    return _normalized(text)


# Every call asks this of its peer (and of its X-Forwarded-For hops): parsing each again was a visible
# part of the API's CPU per call. A pure function of the text; the cache is bounded.
@functools.lru_cache(maxsize=4096)
def _normalized(text: str) -> str | None:
    try:
        ip = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@functools.lru_cache(maxsize=4096)
def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(ip)


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[IpNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str | Iterable[str] | None) -> TrustedProxies:
        return cls(parse_networks(text))

    @classmethod
    def of(cls, value: TrustedProxies | str | Iterable[str] | None) -> TrustedProxies:
        return value if isinstance(value, TrustedProxies) else cls.parse(value)

    def trusts(self, address: str | None) -> bool:
        ip = normalized_ip(address)
        return ip is not None and any(_address(ip) in net for net in self.networks)

    def client_address(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address: see the module's docstring. `peer` None (a Unix socket): None."""
        current = normalized_ip(peer)
        if current is None or not forwarded_for or not self.trusts(current):
            return current
        for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
            ip = normalized_ip(hop)
            if ip is None:
                return current  # the trusted hop that passed a garbled value on
            current = ip
            if not self.trusts(ip):
                return ip
        return current  # every hop is one of ours: the left-most is where the request entered
