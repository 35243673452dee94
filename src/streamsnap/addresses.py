"""Client addresses: who a request comes from, as the per-address limits, logs and hooks see it.

Two rules. An IPv6 client is counted by its /64 (one host usually holds a whole /64, and
can pick any address in it), an IPv4 client (or IPv4-mapped IPv6) by its address. And a
peer inside `trusted_proxies` is a reverse proxy: the client is the nearest address of
its `X-Forwarded-For` (or `Forwarded: for=`) that is not itself a trusted proxy; the scheme
and host the client used are the first proxy's `X-Forwarded-Proto`/`X-Forwarded-Host` (or
`Forwarded: proto=`/`host=`), so that absolute urls the server writes (WHIP's `Location`)
point where the client can reach. From any other peer those headers are ignored, since anyone
can write them.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping

IPV6_PREFIX = 64
"IPv6 clients are counted by this prefix."

_FORWARDED_FOR = re.compile(r'(?:^|[;,\s])for\s*=\s*("[^"]*"|[^;,\s]*)', re.IGNORECASE)
_FORWARDED_PROTO = re.compile(r'(?:^|[;,\s])proto\s*=\s*"?([A-Za-z]+)"?', re.IGNORECASE)
_FORWARDED_HOST = re.compile(r'(?:^|[;,\s])host\s*=\s*"?([^";,\s]+)"?', re.IGNORECASE)
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$")


def client_key(address: str | None) -> str | None:
    """What the per-address limits count `address` as: an IPv6 address's /64, else the address."""
    if address is None:
        return None
    return _key_of(address)


@functools.lru_cache(maxsize=4096)  # asked for every session on each new connection: parse each address once
def _key_of(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


def _parse(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = address.strip().strip('"')
    if text.startswith("["):  # Forwarded: for="[2001:db8::1]:4711"
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # 192.0.2.1:4711
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class TrustedProxies:
    """The reverse proxies whose forwarding headers are believed."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str | None) -> bool:
        """Whether `address` is a trusted proxy."""
        if not self.networks or address is None:
            return False
        ip = _parse(address)
        return ip is not None and any(ip in network for network in self.networks)

    def client(self, peer: str | None, headers: Mapping[str, str]) -> str | None:
        """The client's address: `peer`, or, when `peer` is a trusted proxy, what its headers say."""
        if not self.trusts(peer):
            return peer
        hops = self._forwarded(headers)
        for hop in reversed(hops):  # nearest first: the proxies appended their peers at the end
            ip = _parse(hop)
            if ip is None:
                return peer  # an unreadable hop: stop believing the chain there
            if not any(ip in network for network in self.networks):
                return str(ip)
        first = _parse(hops[0]) if hops else None
        return str(first) if first is not None else peer

    def origin(self, peer: str | None, headers: Mapping[str, str]) -> tuple[str | None, str | None]:
        """The scheme (http, https) and host the client used, when `peer` is a trusted proxy that says so."""
        if not self.trusts(peer):
            return None, None
        forwarded = _all(headers, "Forwarded")
        proto_match = _FORWARDED_PROTO.search(forwarded) if forwarded else None
        host_match = _FORWARDED_HOST.search(forwarded) if forwarded else None
        proto = proto_match.group(1) if proto_match else _all(headers, "X-Forwarded-Proto").split(",")[0].strip()
        host = host_match.group(1) if host_match else _all(headers, "X-Forwarded-Host").split(",")[0].strip()
        scheme = proto.lower() if proto.lower() in ("http", "https") else None
        return scheme, host if _HOST.match(host) else None

    @staticmethod
    def _forwarded(headers: Mapping[str, str]) -> list[str]:
        forwarded = _all(headers, "Forwarded")
        if forwarded:
            return [match.group(1) for match in _FORWARDED_FOR.finditer(forwarded)]
        xff = _all(headers, "X-Forwarded-For")
        return [part for part in (p.strip() for p in xff.split(",")) if part]


def _all(headers: Mapping[str, str], name: str) -> str:
    """Every line of header `name`, joined as one list (a proxy may add a line rather than extend one)."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return ",".join(getall(name, []))
    return headers.get(name, "")
