"""Host addresses for ICE gathering (RFC 8445 section 5.1.1.1) and UDP sockets bound to them.

The interfaces are enumerated with ``ifaddr`` once per process and cached; ``refresh=True``
enumerates them again. The list interleaves the address families, IPv6 first (RFC 8421
section 4), so that a candidate's local preference can be derived from its position.
"""

from __future__ import annotations

import errno
import ipaddress
import random
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import zip_longest

import ifaddr

__all__ = ["HostAddress", "bind_udp", "host_addresses", "usable"]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_RANDOM = random.SystemRandom()


@dataclass(frozen=True, slots=True)
class HostAddress:
    """One address of a local interface that host candidates can be gathered on."""

    ip: str
    """Canonical text (IPv6 compressed, without a ``%scope`` suffix)."""
    interface: str
    """The interface's name as ``ifaddr`` reports it."""
    interface_index: int
    """0-based position of the interface among those with an address kept by the built-in rules."""
    family: int
    """``socket.AF_INET`` or ``socket.AF_INET6``."""
    scope_id: int
    """IPv6 scope id: the interface index for a link-local address, else 0."""
    is_loopback: bool
    is_link_local: bool


def _parse(ip: str) -> _IPAddress | None:
    """``ip`` (a ``%scope`` suffix allowed and dropped) as an address object, None if invalid."""
    try:
        return ipaddress.ip_address(ip.partition("%")[0])
    except ValueError:
        return None


def _allowed(addr: _IPAddress, include_loopback: bool, include_link_local: bool) -> bool:
    if addr.is_unspecified or addr.is_multicast:
        return False
    if isinstance(addr, ipaddress.IPv4Address):
        # 0.0.0.0/8 is "this network" and 255.255.255.255 the limited broadcast: never a source.
        if addr.packed[0] == 0 or addr == ipaddress.IPv4Address("255.255.255.255"):
            return False
    elif (
        addr.ipv4_mapped is not None
        or addr.is_site_local  # fec0::/10, deprecated (RFC 3879); RFC 8445 5.1.1.1
        or (int(addr) >> 32 == 0 and not addr.is_loopback)  # IPv4-compatible ::a.b.c.d
    ):
        return False
    if addr.is_loopback:
        return include_loopback
    if addr.is_link_local:
        return include_link_local
    return True


def usable(ip: str, *, include_loopback: bool, include_link_local: bool) -> bool:
    """Whether ``ip`` may become a host candidate.

    Never: invalid text, unspecified, multicast, 0.0.0.0/8, 255.255.255.255, IPv4-mapped and
    IPv4-compatible IPv6, site-local fec0::/10. Loopback and link-local only when asked for.
    """
    addr = _parse(ip)
    return addr is not None and _allowed(addr, include_loopback, include_link_local)


_Options = tuple[bool, bool, bool, bool]

_lock = threading.Lock()
_adapters: list[ifaddr.Adapter] | None = None
_by_options: dict[_Options, tuple[HostAddress, ...]] = {}


def _collect(adapters: list[ifaddr.Adapter], options: _Options) -> tuple[HostAddress, ...]:
    ipv4, ipv6, include_loopback, include_link_local = options
    families: dict[int, list[HostAddress]] = {socket.AF_INET6: [], socket.AF_INET: []}
    kept = 0
    for adapter in adapters:
        found = False
        for entry in adapter.ips:
            if isinstance(entry.ip, tuple):
                family, wanted, (text, _flowinfo, scope_id) = socket.AF_INET6, ipv6, entry.ip
            else:
                family, wanted, text, scope_id = socket.AF_INET, ipv4, entry.ip, 0
            addr = _parse(text) if wanted else None
            if addr is None or not _allowed(addr, include_loopback, include_link_local):
                continue
            link_local = addr.is_link_local
            if family == socket.AF_INET6:
                # Only a link-local address is scoped; ifaddr may leave its scope id at 0.
                scope_id = (scope_id or adapter.index or 0) if link_local else 0
            families[family].append(
                HostAddress(
                    ip=str(addr),
                    interface=adapter.nice_name or adapter.name,
                    interface_index=kept,
                    family=family,
                    scope_id=scope_id,
                    is_loopback=addr.is_loopback,
                    is_link_local=link_local,
                )
            )
            found = True
        kept += found
    pairs = zip_longest(families[socket.AF_INET6], families[socket.AF_INET])
    return tuple(host for pair in pairs for host in pair if host is not None)


def host_addresses(
    *,
    ipv4: bool = True,
    ipv6: bool = True,
    include_loopback: bool = False,
    include_link_local: bool = False,
    address_filter: Callable[[HostAddress], bool] | None = None,
    refresh: bool = False,
) -> list[HostAddress]:
    """The local addresses to gather host candidates on, best first.

    Within a family, addresses follow the interfaces' enumeration order; the families
    alternate, IPv6 first, and the longer one's remainder comes last. ``address_filter``
    sees each address that passed the built-in rules (see :func:`usable`) and keeps those it
    returns True for. Calls with the same options return the same objects until
    ``refresh=True`` enumerates the interfaces again.
    """
    global _adapters
    options = (ipv4, ipv6, include_loopback, include_link_local)
    with _lock:
        if refresh or _adapters is None:
            _adapters = list(ifaddr.get_adapters())
            _by_options.clear()
        hosts = _by_options.get(options)
        if hosts is None:
            hosts = _by_options[options] = _collect(_adapters, options)
    if address_filter is None:
        return list(hosts)
    return [host for host in hosts if address_filter(host)]


def _random_order(low: int, high: int) -> Iterator[int]:
    """Every integer in ``[low, high]`` once, in uniformly random order, drawn lazily
    (a Fisher-Yates shuffle that stores only the positions it has swapped)."""
    size = high - low + 1
    swapped: dict[int, int] = {}
    for i in range(size):
        j = _RANDOM.randrange(i, size)
        yield low + swapped.get(j, j)
        swapped[j] = swapped.get(i, i)


def _sockaddr(address: HostAddress | str) -> tuple[int, str, int]:
    """(family, canonical ip, scope id) of ``address``; a string may carry a ``%scope``."""
    if isinstance(address, HostAddress):
        return address.family, address.ip, address.scope_id
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"not an IP address: {address!r}") from None
    if isinstance(addr, ipaddress.IPv4Address):
        return socket.AF_INET, str(addr), 0
    scope = addr.scope_id or ""
    scope_id = int(scope) if scope.isdigit() else socket.if_nametoindex(scope) if scope else 0
    return socket.AF_INET6, str(addr).partition("%")[0], scope_id


def bind_udp(
    address: HostAddress | str, port: int = 0, port_range: tuple[int, int] | None = None
) -> socket.socket:
    """A non-blocking UDP socket bound to ``address`` (IPv6 sockets are IPv6-only).

    With ``port_range`` (inclusive), its ports are tried in random order until one is free;
    OSError (EADDRINUSE) naming the range if none is. ValueError for a bad ``port`` or
    ``port_range``, or for both given. A link-local IPv6 string needs its ``%scope``.
    """
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0..65535")
    if port_range is not None:
        low, high = port_range
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"bad port range {low}-{high}: need 1 <= low <= high <= 65535")
        if port:
            raise ValueError("give port or port_range, not both")
    family, ip, scope_id = _sockaddr(address)

    def endpoint(number: int) -> tuple[str, int] | tuple[str, int, int, int]:
        return (ip, number, 0, scope_id) if family == socket.AF_INET6 else (ip, number)

    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if port_range is None:
            sock.bind(endpoint(port))
            return sock
        for number in _random_order(low, high):
            try:
                sock.bind(endpoint(number))
            except OSError as exc:
                if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise
            else:
                return sock
        raise OSError(errno.EADDRINUSE, f"no free UDP port in range {low}-{high} on {ip}")
    except BaseException:
        sock.close()
        raise
