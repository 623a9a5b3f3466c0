"""One sans-I/O mDNS endpoint: datagrams in, the responder and the resolver behind it,
datagrams, events and one deadline out (the house ``handle_*`` / ``poll_*`` shape)."""

from __future__ import annotations

import random

from stun.attributes import Address

from .errors import DnsParseError
from .message import parse
from .resolver import MAX_QUERIES, Resolver, ResolverEvent
from .responder import Responder
from .types import DEFAULT_TTL, MDNS_PORT, Link, MdnsStats, Transmit


class MdnsEndpoint:
    """The responder (``.responder``: our names) and resolver (``.resolver``: lookups)
    sharing one socket's worth of traffic and one set of :class:`MdnsStats`.

    A datagram that is not a DNS message is counted in ``stats.dropped_malformed`` and
    dropped; one that mDNS says to ignore (non-zero opcode or rcode, a response from a port
    other than ``port``) in ``stats.dropped_ignored``. Nothing from the network raises.
    """

    def __init__(
        self,
        *,
        port: int = MDNS_PORT,
        ttl: int = DEFAULT_TTL,
        announcements: int = 2,
        max_queries: int = MAX_QUERIES,
        rng: random.Random | None = None,
    ) -> None:
        self._port = port
        self.stats = MdnsStats()
        self.responder = Responder(
            self.stats, port=port, ttl=ttl, announcements=announcements, rng=rng
        )
        self.resolver = Resolver(self.stats, max_queries=max_queries)

    def handle_datagram(self, now: float, data: bytes, source: Address, link: Link) -> None:
        """Take one datagram from ``source`` that came in on ``link``."""
        self.stats.received += 1
        try:
            message = parse(data)
        except DnsParseError:
            self.stats.dropped_malformed += 1
            return
        if message.opcode or message.rcode:
            self.stats.dropped_ignored += 1
        elif not message.is_response:
            self.responder.handle_query(now, message, source, link)
        elif source[1] != self._port:
            self.stats.dropped_ignored += 1
        else:
            self.resolver.handle_response(now, message)

    def handle_timeout(self, now: float) -> None:
        """Run what is due: announcements, retransmissions, lookup deadlines."""
        self.responder.handle_timeout(now)
        self.resolver.handle_timeout(now)

    def poll_timeout(self) -> float | None:
        """When :meth:`handle_timeout` next has work, None when nothing is scheduled."""
        times = (self.responder.poll_timeout(), self.resolver.poll_timeout())
        return min((t for t in times if t is not None), default=None)

    def poll_transmits(self) -> list[Transmit]:
        """The datagrams to send, the responder's first."""
        return self.responder.poll_transmits() + self.resolver.poll_transmits()

    def poll_events(self) -> list[ResolverEvent]:
        """The lookups that ended since the last call."""
        return self.resolver.poll_events()
