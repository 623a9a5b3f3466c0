"""What candidate gathering is made of: the servers asked, the candidates built from the
answers, and the record of servers that failed. The sockets live in
:mod:`ice.connection`."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from stun.uri import ServerAddress, parse_server
from turn.uri import parse_turn_uri

from .candidate import (
    Address,
    Candidate,
    CandidateType,
    address_family_index,
    candidate_priority,
    local_preference,
    make_foundation,
)
from .interfaces import HostAddress

DEFAULT_GATHER_TIMEOUT = 3.0
"""How long a STUN or TURN server may take to answer before gathering gives up on it:
three transmissions of a Binding request at the RFC's 500 ms RTO."""


@dataclass(frozen=True, slots=True)
class TurnServer:
    """A TURN server to gather a relayed candidate from.

    ``url`` is a ``turn:`` / ``turns:`` URI (``?transport=tcp`` for TCP). Over TLS the
    certificate is checked with ``ssl`` (the system's trust store when None).
    """

    url: str
    username: str
    password: str = field(repr=False)
    ssl: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    @property
    def address(self) -> ServerAddress:
        """The parsed URI."""
        return parse_turn_uri(self.url)


def stun_server(url: str) -> ServerAddress:
    """Parse a ``stun:`` URI or ``host[:port]``; STUN candidates are gathered over UDP."""
    server = parse_server(url)
    if server.transport != "udp":
        raise ValueError(f"{url!r}: server-reflexive candidates are gathered over UDP only")
    return server


@dataclass(frozen=True, slots=True)
class ServerFailure:
    """A STUN or TURN server that gave no candidate, and why (timeout, 401, DNS, ...)."""

    server: str
    reason: str

    def __str__(self) -> str:
        return f"{self.server}: {self.reason}"


def host_preference(address: HostAddress) -> int:
    """The local preference of a host address: RFC 8421 order of families and interfaces."""
    return local_preference(address_family_index(address.ip), address.interface_index)


def host_candidate(address: Address, preference: int, component: int) -> Candidate:
    """A host candidate on a bound socket's address."""
    return _candidate(CandidateType.HOST, address, None, address, preference, component, None)


def reflexive_candidate(
    mapped: Address, base: Address, preference: int, component: int, server: str
) -> Candidate:
    """A server-reflexive candidate: ``mapped`` as a STUN server saw ``base``."""
    return _candidate(CandidateType.SRFLX, mapped, base, base, preference, component, server)


def relayed_candidate(
    relayed: Address, mapped: Address, preference: int, component: int, server: str
) -> Candidate:
    """A relayed candidate on a TURN allocation (its own base; ``mapped`` is where the
    server saw our client socket)."""
    return _candidate(CandidateType.RELAY, relayed, mapped, relayed, preference, component, server)


def _candidate(
    kind: CandidateType,
    address: Address,
    related: Address | None,
    base: Address,
    preference: int,
    component: int,
    server: str | None,
) -> Candidate:
    return Candidate(
        foundation=make_foundation(kind, base[0], "udp", server),
        component=component,
        protocol="udp",
        priority=candidate_priority(kind, preference, component),
        host=address[0],
        port=address[1],
        type=kind,
        related_address=related,
        base=base,
        server=server,
    )
