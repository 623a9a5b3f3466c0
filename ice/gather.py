"""What candidate gathering is made of: the servers asked, the candidates built from the
answers, and the record of servers that failed. The sockets live in
:mod:`ice.connection`."""

from __future__ import annotations

import errno
import os
import socket
import ssl
from dataclasses import dataclass, field

from stun.errors import REASON_PHRASES, ErrorResponse, ResolutionError
from stun.uri import ServerAddress, parse_server
from turn.errors import TurnError
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


_REFUSED = errno.ECONNREFUSED
_UNREACHABLE = (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN)


def failure_reason(exc: BaseException) -> str:
    """Why a STUN or TURN server gave no candidate, in a few words: one of

    - ``"timeout"`` (no answer in time: :class:`~stun.TransactionTimeout`,
      :class:`~turn.errors.TurnTimeout`, ``asyncio.TimeoutError``),
    - ``"DNS"`` (the name did not resolve: :class:`~stun.errors.ResolutionError`,
      ``socket.gaierror``),
    - ``"refused"`` (TCP RST, or ICMP port unreachable on UDP: ``ECONNREFUSED``),
    - ``"unreachable"`` (no route to the host or network),
    - ``"<code> <reason>"`` (an error response, e.g. ``"401 Unauthorized"``,
      ``"403 Forbidden"``),
    - ``"TLS"`` (the handshake or the certificate check failed),
    - ``"error"`` (anything else),

    followed by ``": "`` and the detail when there is one worth reading. The server's
    name is not repeated: :class:`ServerFailure` carries it.
    """
    if isinstance(exc, ssl.SSLError):  # an OSError; SSLCertVerificationError a ValueError
        detail = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
        return _reason("TLS", detail or str(exc))
    if isinstance(exc, TimeoutError):  # asyncio's, the socket's, TransactionTimeout
        return _reason("timeout", str(exc))
    code = exc.code if isinstance(exc, (ErrorResponse, TurnError)) else None
    if code is not None:
        reason = getattr(exc, "reason", "") or REASON_PHRASES.get(code, "")
        head = f"{code} {reason}".strip()
        text = str(exc)
        if isinstance(exc, ErrorResponse) or text.strip() == head:
            return head
        before, found, after = text.partition(head)
        parts = (before, after) if found else (text,)
        return _reason(head, ": ".join(p.strip(" :") for p in parts if p.strip(" :")))
    if isinstance(exc, (ResolutionError, socket.gaierror, socket.herror)):
        detail = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else str(exc)
        return _reason("DNS", detail)
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno == _REFUSED:
            return "refused"
        if exc.errno in _UNREACHABLE:
            return _reason("unreachable", os.strerror(exc.errno))
    cause = exc.__cause__
    if cause is not None and cause is not exc:
        reason = failure_reason(cause)
        if not reason.startswith("error"):
            return reason
    return _from_text(str(exc) or type(exc).__name__)


def _from_text(text: str) -> str:
    """Classify a message that wraps an OS error only in its text, such as the one for
    an ICMP error on a connected UDP socket: ``"the server is unreachable: [Errno 111]
    Connection refused"``."""
    if f"[Errno {_REFUSED}]" in text or os.strerror(_REFUSED) in text:
        return "refused"
    for number in _UNREACHABLE:
        if f"[Errno {number}]" in text or os.strerror(number) in text:
            return _reason("unreachable", os.strerror(number))
    return _reason("error", text)


def _reason(kind: str, detail: str) -> str:
    detail = " ".join(detail.split())
    prefix = detail[: len(kind) + 1].lower()
    if prefix in (kind.lower(), f"{kind.lower()}:"):  # not "timeout: timeout: ..."
        detail = detail[len(kind) :].lstrip(" :")
    return f"{kind}: {detail}" if detail else kind


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
