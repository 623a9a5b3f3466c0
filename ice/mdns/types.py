"""What the sans-I/O mDNS parts and the asyncio shell pass between them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from stun.attributes import Address

MDNS_PORT = 5353
MDNS_GROUP4 = "224.0.0.251"
MDNS_GROUP6 = "ff02::fb"
DEFAULT_TTL = 120
"""Seconds a host address record lives in caches (RFC 6762 section 10)."""

Link = tuple[int, int]
"""Where a datagram arrived and where an answer to it leaves: ``(address family,
interface index)``. Opaque to the cores, which only hand it back."""


class Transmit(NamedTuple):
    """A datagram to send.

    ``remote`` None means the multicast group: on ``link``, or on every link the endpoint
    has joined when ``link`` is None too. Otherwise it is a unicast reply to ``remote``,
    sent through ``link`` (the link the question came in on).
    """

    data: bytes
    link: Link | None = None
    remote: Address | None = None


@dataclass(slots=True)
class MdnsStats:
    """Counters of one mDNS endpoint."""

    received: int = 0
    dropped_malformed: int = 0
    """Datagrams that were not well-formed DNS messages."""
    dropped_ignored: int = 0
    """Well-formed messages mDNS says to ignore (an opcode or rcode other than 0, a response
    from a port other than the mDNS port) or that came in on an interface not joined."""
    queries_sent: int = 0
    answers_sent: int = 0
    answers_held_back: int = 0
    """Multicast answers not sent because the record went out on that link less than a
    second before (RFC 6762 section 6)."""
    announcements_sent: int = 0
    goodbyes_sent: int = 0
    send_errors: int = 0
