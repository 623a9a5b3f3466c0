"""The mDNS sockets: one UDP socket per address family, bound to the mDNS port with
SO_REUSEADDR and SO_REUSEPORT (other mDNS stacks share the port), joined to the group on
chosen interfaces, and told which interface each datagram came in on.

Linux semantics: ``ip_mreqn`` joins, ``IP_PKTINFO`` to pick the interface of an IPv4
multicast and to learn the interface of arrival.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable

from stun.attributes import Address

from ..interfaces import host_addresses
from .errors import MdnsError

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
"""Linux's value; Python 3.11 does not name it."""
MAX_DATAGRAM = 9000
"""The largest mDNS message (RFC 6762 section 17); longer ones arrive cut and fail to parse."""
HOP_LIMIT = 255
"""IP TTL / hop limit of every mDNS packet (RFC 6762 section 11)."""

_IN_PKTINFO = struct.Struct("@i4s4s")  # ifindex, spec_dst, addr
_IN6_PKTINFO = struct.Struct("@16sI")  # addr, ifindex
_ANCILLARY = socket.CMSG_SPACE(_IN6_PKTINFO.size)


def interface_index(interface: str | int) -> int:
    """The index of an interface given by name or index; MdnsError for an unknown name."""
    if isinstance(interface, int):
        return interface
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        raise MdnsError(f"no interface named {interface!r}") from None


def default_interfaces(family: int) -> list[int]:
    """The interfaces that have a host address of ``family`` (IPv4: not loopback or
    link-local; IPv6: link-local counts, ff02::fb is link-scoped anyway)."""
    hosts = host_addresses(
        ipv4=family == socket.AF_INET,
        ipv6=family == socket.AF_INET6,
        include_link_local=family == socket.AF_INET6,
    )
    indices: dict[int, None] = {}
    for name in dict.fromkeys(host.interface for host in hosts):
        try:
            indices[socket.if_nametoindex(name)] = None
        except OSError:
            continue
    return list(indices)


def open_socket(
    family: int, group: str, port: int, interfaces: Iterable[int]
) -> tuple[socket.socket, tuple[int, ...]]:
    """A non-blocking socket bound to ``port`` and joined to ``group`` on each interface
    that allows it, with those interfaces; OSError when none does (or the bind fails)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        _configure(sock, family, port)
        joined = tuple(index for index in interfaces if _join(sock, family, group, index))
        if not joined:
            raise OSError(f"could not join {group} on any interface")
    except BaseException:
        sock.close()
        raise
    return sock, joined


def _configure(sock: socket.socket, family: int, port: int) -> None:
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
        sock.bind(("::", port))
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.bind(("0.0.0.0", port))


def _join(sock: socket.socket, family: int, group: str, index: int) -> bool:
    packed = socket.inet_pton(family, group)
    try:
        if family == socket.AF_INET6:
            request = packed + struct.pack("@I", index)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, request)
        else:
            request = struct.pack("@4s4si", packed, bytes(4), index)  # struct ip_mreqn
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, request)
    except OSError:
        return False
    return True


def receive(sock: socket.socket) -> tuple[bytes, Address, int]:
    """One datagram, its source and the index of the interface it came in on (0 unknown);
    BlockingIOError when there is none."""
    data, ancillary, _, source = sock.recvmsg(MAX_DATAGRAM, _ANCILLARY)
    index = 0
    for level, kind, value in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            index = _IN_PKTINFO.unpack_from(value)[0]
        elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
            index = _IN6_PKTINFO.unpack_from(value)[1]
    return data, (str(source[0]), int(source[1])), index


def send(sock: socket.socket, data: bytes, remote: Address, index: int) -> None:
    """Send ``data`` to ``remote`` out of interface ``index`` (the interface matters for
    multicast and IPv6 link-local destinations)."""
    if sock.family == socket.AF_INET6:
        sock.sendto(data, (remote[0], remote[1], 0, index))
        return
    pktinfo = _IN_PKTINFO.pack(index, bytes(4), bytes(4))
    sock.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)], 0, remote)
